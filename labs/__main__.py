"""python3 -m labs [--lab NAME]... [--where COLUMN=VALUE[,VALUE]]... [--batch K] [--workers W] [--facts] | --serve

Prints JSON lines: {"record": "host", facts...}; per lab {"record": "plan", "lab", "cases"} then one
{"record": "case", ...} per case as it completes; {"record": "end", ...} when every lab has run. Exit status 2 for
a bad argument or request (message on stderr), 3 when a controller went away (--serve), 0 otherwise: a failing
case is a result, not a failure of the agent.
"""
import argparse
import json
import os
import sys
import time

from labs import LABS, case_id, endpoints, hostfacts, module
from labs import workers as labs_workers
from labs.selection import check_where, parse_where, selected
from labs.session import Session, read_request
from labs.sockopts import platform_family
from labs.witness import Witness


def emit(record):
    # one line a write: the controller stores each line as it arrives, nothing waits in a buffer, and a broken link
    # cuts the output between lines
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def plan(names, where, skip):
    """[(name, module, [params...])] for the labs asked for, less the cases in `skip` ({lab: [case_id]})."""
    with Witness(platform_family()) as witness:
        host = hostfacts.collect(witness.method)
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
    a time."""
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
    context = lab.Context(host)
    try:
        for part in batches:
            yield list(zip(part, lab.run_batch(context, part) if hasattr(lab, "run_batch")
                           else [lab.run_case(context, part[0])]))
    finally:
        context.close()


def run(host, plans, facts_only, batch=None, workers=None):
    started = time.time()
    emit(dict(record="host", **host))
    if facts_only:
        return
    count = 0
    for name, lab, chosen in plans:
        emit({"record": "plan", "lab": name, "cases": len(chosen)})
        if not chosen:
            continue
        for done in results(name, lab, host, chosen, batch, workers):
            for params, result in done:
                emit(dict(record="case", lab=name, case_id=case_id(lab, params), **params, **result))
            count += len(done)
    used = os.times()  # probers and workers are waited for by now, so their CPU time is in the children's share
    emit({"record": "end", "cases": count, "seconds": round(time.time() - started, 3),
          "cpu_seconds": round(used[0] + used[1] + used[2] + used[3], 3)})


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
            host, plans = plan(names, parse_where(request.get("where") or []), request.get("skip") or {})
        except ValueError as exc:
            parser.exit(2, "{}: error: {}\n".format(parser.prog, exc))
        run(host, plans, bool(request.get("facts")), request.get("batch"), request.get("workers"))
    finally:
        if session is not None:
            session.close()


if __name__ == "__main__":
    main()
