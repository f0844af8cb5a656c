"""python3 -m labs [--lab NAME]... [--where COLUMN=VALUE[,VALUE]]... [--batch K] [--workers W] [--facts] [--out FILE]
                   | --serve

Prints JSON lines: {"record": "host", facts...}; per lab {"record": "plan", "lab", "cases"} then one
{"record": "case", ...} per case as it completes; {"record": "end", ...} when every lab has run. A served request
with "why" has the agent answer `./socklab why` first (labs/why.py: its port, holder and answer records). Exit status 2 for
a bad argument or request (message on stderr), 3 when a controller went away (--serve), 0 otherwise: a failing
case is a result, not a failure of the agent.

--out FILE writes the lines to FILE (UTF-8, LF endings) instead: a shell's `> FILE` may re-encode what it passes on
(Windows PowerShell 5 writes UTF-16, PowerShell 7 CRLF). The lines are ASCII either way (JSON escapes the rest), so
no console code page can change them.

A lab that meets something no lab expected (an exception its case does not turn into an outcome, or a Context that
cannot be made) does not end the run: that case, or every case of that lab, is `error`, its detail the exception
and where in labs/ it was raised, and the run goes on with the next.
"""
import argparse
import json
import os
import sys
import time

from labs import LABS, case_id, endpoints, hostfacts, module, why
from labs import workers as labs_workers
from labs.outcomes import failure, guarded_results, unexpected
from labs.selection import check_where, parse_where, selected
from labs.session import Session, read_request
from labs.sockopts import system_family
from labs.witness import Witness, WitnessError


def emit(out, record):
    send(out, json.dumps(record))


def send(out, line):
    # one line a write: the controller stores each line as it arrives, nothing waits in a buffer, and a broken link
    # cuts the output between lines
    out.write(line + "\n")
    out.flush()


def witness_method():
    """The host's connection-table reader, or why it has none (every lab that needs one then records why)."""
    try:
        with Witness(system_family()) as witness:
            return witness.method
    except WitnessError as exc:
        return "none: {}".format(exc)


def plan(names, where, skip, launcher=None):
    """The host's facts and [(name, module, [params...])] for the labs asked for, less the cases in `skip` ({lab:
    [case_id]}); `launcher` is the request's (labs/hostfacts.py)."""
    host = hostfacts.collect(witness_method(), launcher)
    for name in names:
        if name not in LABS:
            raise ValueError("unknown lab {!r} (labs: {})".format(name, ", ".join(LABS)))
    check_where([module(name) for name in names], where)
    sizes = [column for name in names for column in module(name).TUNABLE]
    plans = []
    for name in names:
        lab = module(name)
        done = set(skip.get(name, ()))
        plans.append((name, lab, [params for params in selected(lab, host, where, sizes)
                                  if case_id(lab, params) not in done]))
    return host, plans


def results(name, lab, host, chosen, batch=None, workers=None):
    """[(params, result)] of each batch of the chosen cases, in order. A lab with run_batch runs them in batches of
    `batch` cases (by default the lab's batch_size for this host and this many workers), spread over `workers`
    processes (by default one per core: labs/workers.py) when there is more than one batch; other labs one case at
    a time. What no lab foresaw (a lab that cannot start, a bug, a host no lab expected) is the error of the cases
    it hit, and the run goes on (outcomes.guarded_results)."""
    endpoints.set_port_share(0, 1, endpoints.ephemeral_range(host))
    if hasattr(lab, "run_batch"):
        workers = labs_workers.count(workers)
        size = batch or lab.batch_size(host, workers)
        batches = [chosen[start:start + size] for start in range(0, len(chosen), size)]
        if min(workers, len(batches)) > 1:
            yield from labs_workers.run(name, host, batches, min(workers, len(batches)))
            return
    else:
        batches = [[params] for params in chosen]
    try:
        context = lab.Context(host)
    except Exception as exc:  # the lab cannot start here: each of its cases says why
        failed = failure("the lab could not start: " + unexpected(exc))
        yield [(params, failed) for params in chosen]
        return
    try:
        for part in batches:
            yield list(zip(part, guarded_results(lab, context, part)))
    finally:
        close_context(name, context)


def run(host, plans, facts_only, out, batch=None, workers=None, question=None):
    """Emits the host record, then (unless `facts_only`) the answer to a `why` question (labs/why.py), each lab's
    plan and cases and the end record, to `out`."""
    started = time.time()
    emit(out, dict(record="host", **host))
    if facts_only:
        return
    if question is not None:
        why.run(host, question, lambda record: emit(out, record))
    count = 0
    for name, lab, chosen in plans:
        emit(out, {"record": "plan", "lab": name, "cases": len(chosen)})
        if not chosen:
            continue
        for done in results(name, lab, host, chosen, batch, workers):
            for params, result in done:
                try:  # a value JSON cannot hold is this case's failure too
                    line = json.dumps(case_record(name, lab, params, result))
                except Exception as exc:
                    line = json.dumps(case_record(name, lab, params, failure(unexpected(exc))))
                send(out, line)
            count += len(done)
    used = os.times()  # probers and workers are waited for by now, so their CPU time is in the children's share
    emit(out, {"record": "end", "cases": count, "seconds": round(time.time() - started, 3),
               "cpu_seconds": round(used[0] + used[1] + used[2] + used[3], 3)})


def case_record(name, lab, params, result):
    return dict(record="case", lab=name, case_id=case_id(lab, params), **params, **result)


def close_context(name, context):
    """Ends a lab's Context; a failure there is told on stderr, since every case of the lab is in already."""
    try:
        context.close()
    except Exception as exc:
        sys.stderr.write("socklab agent: {}: closing it: {}\n".format(name, unexpected(exc)))


def positive(text):
    value = int(text)
    if value <= 0:
        raise ValueError(text)
    return value


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m labs", description=__doc__.split("\n\n")[1])
    parser.add_argument("--lab", action="append", choices=LABS, help="a lab to run (default: all)")
    parser.add_argument("--where", action="append", default=[], metavar="COLUMN=VALUE[,VALUE]",
                        help="run only the cases with one of these values in this parameter column")
    parser.add_argument("--batch", type=positive, metavar="K",
                        help="cases a lab that batches runs together (default: what the host allows)")
    parser.add_argument("--workers", type=positive, metavar="W",
                        help="processes a lab that batches spreads its batches over (default: one per core)")
    parser.add_argument("--facts", action="store_true", help="print the host record only")
    parser.add_argument("--out", metavar="FILE",
                        help="write the JSON lines to FILE (UTF-8, LF line endings) instead of standard output")
    parser.add_argument("--serve", action="store_true",
                        help="take the request from a controller on stdin (see labs/session.py)")
    args = parser.parse_args(argv)
    session = None
    try:
        try:
            if args.serve:
                request = read_request(sys.stdin)
                session = Session(request, sys.stdin)
            else:
                request = {"labs": args.lab, "where": args.where, "facts": args.facts, "batch": args.batch,
                           "workers": args.workers}
            names = list(LABS) if request.get("labs") is None else request["labs"]  # [] is none, not all
            host, plans = plan(names, parse_where(request.get("where") or []), request.get("skip") or {},
                              request.get("launcher"))
            question = why.checked(request["why"]) if request.get("why") is not None else None
        except ValueError as exc:
            parser.exit(2, "{}: error: {}\n".format(parser.prog, exc))
        facts_only, batch, workers = bool(request.get("facts")), request.get("batch"), request.get("workers")
        if args.out:
            try:
                out = open(args.out, "w", encoding="utf-8", newline="\n")
            except OSError as exc:
                parser.exit(2, "{}: error: --out {}: {}\n".format(parser.prog, args.out, exc.strerror))
            with out:
                run(host, plans, facts_only, out, batch, workers, question)
        else:
            run(host, plans, facts_only, sys.stdout, batch, workers, question)
    finally:
        if session is not None:
            session.close()


if __name__ == "__main__":
    main()
