"""python3 -m labs [--lab NAME]... [--where COLUMN=VALUE[,VALUE]]...

Prints JSON lines: {"record": "host", facts...}; per lab {"record": "plan", "lab", "cases"} then one
{"record": "case", ...} per case as it completes; {"record": "end", ...} when every lab has run. Exit status 2 for
a bad argument (message on stderr), 0 otherwise: a failing case is a result, not a failure of the agent.
"""
import argparse
import importlib
import json
import sys
import time

from labs import LABS, hostfacts
from labs.selection import parse_where, selected
from labs.sockopts import platform_family
from labs.witness import Witness


def emit(record):
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()  # the controller stores each line as it arrives: nothing waits in a buffer


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m labs", description=__doc__.split("\n\n")[1])
    parser.add_argument("--lab", action="append", choices=LABS, help="a lab to run (default: all)")
    parser.add_argument("--where", action="append", default=[], metavar="COLUMN=VALUE[,VALUE]",
                        help="run only the cases with one of these values in this parameter column")
    parser.add_argument("--facts", action="store_true", help="print the host record only")
    args = parser.parse_args(argv)
    names = args.lab or list(LABS)
    started = time.time()
    with Witness(platform_family()) as witness:
        host = hostfacts.collect(witness.method)
    try:
        where = parse_where(args.where)
        plans = [(name, importlib.import_module("labs." + name)) for name in names]
        plans = [(name, lab, selected(lab, host, where)) for name, lab in plans]
    except ValueError as exc:
        parser.exit(2, "{}: error: {}\n".format(parser.prog, exc))
    emit(dict(record="host", **host))
    if args.facts:
        return
    count = 0
    for name, lab, chosen in plans:
        emit({"record": "plan", "lab": name, "cases": len(chosen)})
        context = lab.Context(host)
        try:
            for params in chosen:
                result = lab.run_case(context, params)
                emit(dict(record="case", lab=name, case_id=lab.case_id(params), **params, **result))
                count += 1
        finally:
            context.close()
    emit({"record": "end", "cases": count, "seconds": round(time.time() - started, 3)})


if __name__ == "__main__":
    main()
