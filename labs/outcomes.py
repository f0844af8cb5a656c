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

What propagates anyway (a bug, a host no lab foresaw) is caught where the agent runs a lab's cases:
guarded_results() makes it the `error` of the cases it hit, its detail from unexpected(), and the run goes on.
"""
import contextlib
import os
import traceback

from labs.vocabulary import ERROR, INCONCLUSIVE, OK, UNSUPPORTED
from labs.witness import WitnessError

# The agent's own failures: every lab's, before the ones a lab adds.
FAILURES = (OSError, RuntimeError, WitnessError)


LABS_FOLDER = os.path.dirname(os.path.abspath(__file__))  # inside the .pyz too: .../socklab-agent.pyz/labs


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


def unexpected(exc):
    """An exception no lab turned into an outcome, as a detail: its type, the innermost place in labs/ that it
    passed through, its message."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [frame for frame in frames if os.path.abspath(frame.filename).startswith(LABS_FOLDER + os.sep)]
    where = ""
    if ours:
        where = " in labs/{}:{} ({})".format(os.path.basename(ours[-1].filename), ours[-1].lineno, ours[-1].name)
    return "unexpected {}{}: {}".format(type(exc).__name__, where, exc)


def failure(detail):
    """The result of a case the agent could not run: `error`, and why."""
    return {"outcome": ERROR, "witness": "", "detail": detail, "errno": None}


def guarded_results(lab, context, part):
    """The results of `part`, a batch of a lab's cases (lab.run_batch) or one case (lab.run_case); an exception
    that escapes them is every one of those cases' error (the others' results are unknown), not the run's end."""
    try:
        if hasattr(lab, "run_batch"):
            return lab.run_batch(context, part)
        return [lab.run_case(context, part[0])]
    except Exception as exc:
        return [failure(unexpected(exc))] * len(part)
