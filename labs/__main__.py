"""python3 -m labs [--lab NAME]... [--where COLUMN=VALUE[,VALUE]]... [--facts] [--out FILE] | --serve

Prints JSON lines: {"record": "host", facts...}; per lab {"record": "plan", "lab", "cases"} then one
{"record": "case", ...} per case as it completes; {"record": "end", ...} when every lab has run. Exit status 2 for
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
import traceback

from labs import LABS, case_id, hostfacts, module
from labs.selection import check_where, parse_where, selected
from labs.session import Session, read_request
from labs.sockopts import platform_family
from labs.vocabulary import ERROR
from labs.witness import Witness, WitnessError


LABS_FOLDER = os.path.dirname(os.path.abspath(__file__))  # inside the .pyz too: .../socklab-agent.pyz/labs


def emit(out, record):
    send(out, json.dumps(record))


def send(out, line):
    out.write(line + "\n")
    out.flush()  # the controller stores each line as it arrives: nothing waits in a buffer


def unexpected(exc):
    """An exception no lab turned into an outcome, as a detail: its type, the innermost place in labs/ that it
    passed through, its message."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [frame for frame in frames if os.path.abspath(frame.filename).startswith(LABS_FOLDER + os.sep)]
    where = ""
    if ours:
        where = " in labs/{}:{} ({})".format(os.path.basename(ours[-1].filename), ours[-1].lineno, ours[-1].name)
    return "unexpected {}{}: {}".format(type(exc).__name__, where, exc)


def witness_method():
    """The host's connection-table reader, or why it has none (every lab that needs one then records why)."""
    try:
        with Witness(platform_family()) as witness:
            return witness.method
    except WitnessError as exc:
        return "none: {}".format(exc)


def plan(names, where, skip):
    """[(name, module, [params...])] for the labs asked for, less the cases in `skip` ({lab: [case_id]})."""
    host = hostfacts.collect(witness_method())
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


def run(host, plans, facts_only, out):
    """Emits the host record, then (unless `facts_only`) each lab's plan and cases and the end record, to `out`."""
    started = time.time()
    emit(out, dict(record="host", **host))
    if facts_only:
        return
    count = 0
    for name, lab, chosen in plans:
        emit(out, {"record": "plan", "lab": name, "cases": len(chosen)})
        if not chosen:
            continue
        try:
            context = lab.Context(host)
        except Exception as exc:  # the lab cannot start here: each of its cases says why
            failed = "the lab could not start: " + unexpected(exc)
            for params in chosen:
                emit(out, case_record(name, lab, params, failure(failed)))
            count += len(chosen)
            continue
        try:
            for params in chosen:
                try:  # a value JSON cannot hold is this case's failure too
                    line = json.dumps(case_record(name, lab, params, lab.run_case(context, params)))
                except Exception as exc:  # a bug, or a host no lab foresaw: this case only
                    line = json.dumps(case_record(name, lab, params, failure(unexpected(exc))))
                send(out, line)
                count += 1
        finally:
            close_context(name, context)
    used = os.times()  # the probers are waited for by now, so their CPU time is in the children's share
    emit(out, {"record": "end", "cases": count, "seconds": round(time.time() - started, 3),
          "cpu_seconds": round(used[0] + used[1] + used[2] + used[3], 3)})


def case_record(name, lab, params, result):
    return dict(record="case", lab=name, case_id=case_id(lab, params), **params, **result)


def failure(detail):
    return {"outcome": ERROR, "witness": "", "detail": detail, "errno": None}


def close_context(name, context):
    """Ends a lab's Context; a failure there is told on stderr, since every case of the lab is in already."""
    try:
        context.close()
    except Exception as exc:
        sys.stderr.write("socklab agent: {}: closing it: {}\n".format(name, unexpected(exc)))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m labs", description=__doc__.split("\n\n")[1])
    parser.add_argument("--lab", action="append", choices=LABS, help="a lab to run (default: all)")
    parser.add_argument("--where", action="append", default=[], metavar="COLUMN=VALUE[,VALUE]",
                        help="run only the cases with one of these values in this parameter column")
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
                request = {"labs": args.lab, "where": args.where, "facts": args.facts}
            names = list(LABS) if request.get("labs") is None else request["labs"]  # [] is none, not all
            host, plans = plan(names, parse_where(request.get("where") or []), request.get("skip") or {})
        except ValueError as exc:
            parser.exit(2, "{}: error: {}\n".format(parser.prog, exc))
        if args.out:
            try:
                out = open(args.out, "w", encoding="utf-8", newline="\n")
            except OSError as exc:
                parser.exit(2, "{}: error: --out {}: {}\n".format(parser.prog, args.out, exc.strerror))
            with out:
                run(host, plans, bool(request.get("facts")), out)
        else:
            run(host, plans, bool(request.get("facts")), sys.stdout)
    finally:
        if session is not None:
            session.close()


if __name__ == "__main__":
    main()
