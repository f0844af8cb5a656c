"""What ends a lab's case early, and the outcome the case gets.

A lab's run_case() runs its case inside `with recorded(record):`; whatever ends the case early is raised from
wherever it is found and becomes the record's outcome there:

    Unsupported     the host cannot build this case: an option, family or feature it lacks, a first socket or
                    server the OS refuses                                         -> `unsupported`
    Unwitnessed     a precondition of the case was not seen (in the OS table, the file system, a child process)
                                                                                  -> `inconclusive`
    OSError, RuntimeError, labs.witness.WitnessError, and a lab's own `failures` (subprocess.SubprocessError, ...):
                    the agent itself failed                                       -> `error`

A case that ran to its end takes its outcome from its steps: record_steps() and first_failure().

Each appends its message to what the record's detail already said ("<detail so far>; <message>", the message alone
when there was none); an error's message is "<ExceptionType>: <text>". The record's errno becomes None. Anything
else propagates. What a lab must close stays in its own `finally`, around the `with`.
"""
import contextlib

from labs.vocabulary import ERROR, INCONCLUSIVE, OK, UNSUPPORTED
from labs.witness import WitnessError

# The agent's own failures: every lab's, before the ones a lab adds.
FAILURES = (OSError, RuntimeError, WitnessError)


class Unsupported(Exception):
    """The host cannot build this case: the case is `unsupported` (the message says what it lacks or refused)."""


class Unwitnessed(Exception):
    """A precondition of the case was not seen: the case is `inconclusive` (the message says what was seen)."""


def _end(record, outcome, message):
    """Gives `record` the outcome of a case ended early, its message after the detail it had."""
    detail = record.get("detail") or ""
    record.update(outcome=outcome, detail="{}; {}".format(detail, message) if detail else message, errno=None)


@contextlib.contextmanager
def recorded(record, failures=()):
    """Runs the body of a case: Unsupported, Unwitnessed and the agent's failures (FAILURES and `failures`) raised
    in it end the case with their outcome in `record` (see the module's docstring) instead of propagating."""
    try:
        yield record
    except Unsupported as exc:
        _end(record, UNSUPPORTED, str(exc))
    except Unwitnessed as exc:
        _end(record, INCONCLUSIVE, str(exc))
    except FAILURES + tuple(failures) as exc:
        _end(record, ERROR, "{}: {}".format(type(exc).__name__, exc))


def first_failure(record, steps, values=None):
    """The outcome of a case that ran: the first of `steps` whose result in `record` is an error name (not ok, not
    one of the step's `values`, {step: values} as a lab's STEP_VALUES), else ok."""
    values = values or {}
    return next((record[step] for step in steps if record.get(step, OK) not in (OK,) + tuple(values.get(step, ()))),
                OK)


def record_steps(record, answer, steps):
    """Puts into `record` a second socket's step results ({step: outcome, "errno": n}, as labs.prober answers) for
    the lab's `steps`, its errno, and the outcome they give."""
    record["errno"] = answer.get("errno")
    record.update((step, answer[step]) for step in steps if step in answer)
    record["outcome"] = first_failure(record, steps)
