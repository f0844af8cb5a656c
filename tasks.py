"""socklab's tasks: `invoke --list` shows them, `invoke --help TASK` explains one.

Exit status: 0 all went well; 1 a host did not complete (run, run-all) or a case disagrees with the expectations
(check); 2 a mistake in what was given (a file, a name, an option), told in one line naming file, line and field.
"""
import functools
import importlib
import json
import os
import platform
import sys
import time

from invoke import Exit, task

from collect.errors import UserError

# Defaults live in the checkout, wherever invoke is started from; paths a user gives are taken as given.
HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.relpath(os.path.join(HERE, "results"))
ARCHIVE = os.path.join(HERE, "archive")
EXPECTATIONS = os.path.join(HERE, "expectations")
INVENTORY = os.path.relpath(os.path.join(HERE, "hosts.yaml"))


def user_errors(body):
    """A UserError ends the task with its one line and exit status 2, never a traceback."""
    @functools.wraps(body)
    def guarded(*args, **kwargs):
        try:
            return body(*args, **kwargs)
        except UserError as exc:
            raise Exit("error: {}".format(exc), code=2) from None
    return guarded


def console():
    from rich.console import Console
    return Console(highlight=False)


def checked_labs(labs, where):
    """The lab names asked for (all when none), each known, and the --where columns each of them has."""
    from labs import LABS
    from labs.selection import check_where, parse_where
    for name in labs:
        if name not in LABS:
            raise UserError("unknown lab {!r} (labs: {})".format(name, ", ".join(LABS)), field="--lab")
    chosen = list(labs) or list(LABS)
    try:
        parsed = parse_where(where)
        for name in chosen:
            check_where(importlib.import_module("labs." + name), parsed)
    except ValueError as exc:
        raise UserError(str(exc), field="--where") from None
    return chosen


def run_dir_or_latest(run, out):
    from analysis.results import latest_run
    return run or latest_run(out)


def judged_runs(run_dir, expectations, archive=True):
    """The run's results, with the archived published runs beside them, each row judged."""
    from analysis.expectations import judge, load_expectations
    from analysis.results import load_runs, run_dirs
    runs = [run_dir] + (run_dirs(ARCHIVE) if archive else [])
    return judge(load_runs(runs), load_expectations([expectations]))


def write_report(run_dir, expectations=EXPECTATIONS):
    from analysis import report
    from analysis.results import read_manifest
    judged = judged_runs(run_dir, expectations)
    return report.write(judged, run_dir, read_manifest(run_dir), os.path.join(run_dir, "report"))


def measure(hosts, labs, where, out, parallel):
    """Run, store, report; the exit status says whether every host completed."""
    from collect.runner import run_hosts
    from collect.store import RunStore
    from rich.table import Table
    store = RunStore(out, [host.name for host in hosts], labs)
    run_hosts(hosts, labs, where, store, parallel=parallel)
    path, counts, wrong = write_report(store.path)
    table = Table("host", "status", "cases", "reason", title="run {}".format(store.run_id))
    for name, entry in store.manifest["hosts"].items():
        table.add_row(name, entry["status"], str(entry["cases"]), entry["reason"])
    out = console()
    out.print(table)
    out.print("verdicts: " + ", ".join("{} {}".format(count, verdict) for verdict, count in counts.sum().items()))
    out.print("results: {}\nreport:  {}".format(os.path.join(store.path, "results.csv"), path))
    if not store.completed:
        raise Exit("not every host completed: see {}".format(os.path.join(store.path, "manifest.json")), code=1)


@task(iterable=["lab", "where"], help={
    "hosts": "the inventory file (default hosts.yaml)",
    "lab": "a lab to run; repeat for several (default: every lab)",
    "where": "only cases with these values, e.g. --where state=LISTEN,TIME_WAIT; repeatable",
    "out": "where runs are stored (default results/)",
    "parallel": "hosts measured at once (default 8)",
})
@user_errors
def run_all(c, hosts=INVENTORY, lab=None, where=None, out=RESULTS, parallel=8):
    """Measure every host of the inventory in parallel; store the run and its report under results/<run_id>/."""
    from collect import inventory
    labs = checked_labs(lab, where)
    measure(inventory.load(hosts).select(), labs, where, out, parallel)


@task(iterable=["lab", "where"], help={
    "host": "the host's name in the inventory",
    "hosts": "the inventory file (default hosts.yaml)",
    "lab": "a lab to run; repeat for several (default: every lab)",
    "where": "only cases with these values, e.g. --where proto=tcp; repeatable",
    "out": "where runs are stored (default results/)",
})
@user_errors
def run(c, host, hosts=INVENTORY, lab=None, where=None, out=RESULTS):
    """Measure one host; the run is stored and reported like run-all's."""
    from collect import inventory
    labs = checked_labs(lab, where)
    measure(inventory.load(hosts).select([host]), labs, where, out, 1)


@task(help={"hosts": "the inventory file (default hosts.yaml)"})
@user_errors
def hosts(c, hosts=INVENTORY):
    """Reach every host and print its facts (OS, release, Python, admin, witness), or why it could not be reached."""
    from rich.table import Table
    from collect import inventory, transports
    from collect.errors import TransportError
    table = Table("host", "OS", "release", "Python", "admin", "witness", "problem")
    for host in inventory.load(hosts).select():
        try:
            with transports.for_host(host).run_agent(["--facts"]) as lines:
                facts = json.loads(next(iter(lines), "{}"))
            table.add_row(host.name, facts["os_family"], facts["os_release"], facts["python"],
                          "yes" if facts["admin"] else "no", facts["witness"], "")
        except (TransportError, ValueError, KeyError) as exc:
            table.add_row(host.name, "", "", "", "", "", str(exc) or type(exc).__name__)
    console().print(table)


@task(help={"run": "a run directory (default: the newest under results/)",
            "expectations": "a file or directory of expectation tables (default expectations/)"})
@user_errors
def check(c, run=None, expectations=EXPECTATIONS):
    """Judge a run against the expectations; list each mismatch with its source, exit 1 if any.

    Prints the count of cases per verdict and host (match, mismatch, undocumented, inconclusive, unsupported,
    error), then every mismatch with what was expected, what was measured, the witness and the source."""
    from rich.table import Table
    from analysis import report
    run_dir = run_dir_or_latest(run, RESULTS)
    judged = judged_runs(run_dir, expectations, archive=False)
    out = console()
    out.print("run {}: {} cases".format(run_dir, len(judged)))
    out.print(report.verdict_counts(judged).to_string())
    wrong = report.mismatches(judged)
    if wrong.empty:
        out.print("no mismatches")
        return
    table = Table(*wrong.columns, title="{} mismatches".format(len(wrong)))
    for row in wrong.astype(str).itertuples(index=False):
        table.add_row(*row)
    out.print(table)
    raise Exit(code=1)


@task(help={"run": "a run directory (default: the newest under results/)",
            "expectations": "a file or directory of expectation tables (default expectations/)"})
@user_errors
def report(c, run=None, expectations=EXPECTATIONS):
    """Write a run's report (Markdown and CSVs) into <run>/report/.

    The Markdown has seed 004's layout (rows: system x options, columns: states) for every host of the run beside
    the archived published runs (archive/), the verdicts, every mismatch, and every option pair per host."""
    run_dir = run_dir_or_latest(run, RESULTS)
    path, _, _ = write_report(run_dir, expectations)
    console().print("report: {}".format(path))


def machine_summary():
    model = ""
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as stream:
            model = next((line.split(":", 1)[1].strip() for line in stream if line.startswith("model name")), "")
    return "{} ({} cores), {} {}, Python {}".format(model or platform.processor() or platform.machine(),
                                                     os.cpu_count(), platform.system(), platform.release(),
                                                     platform.python_version())


@task(help={"rounds": "how many times to run the measured cases (default 3)"})
def bench(c, rounds=3):
    """Print speed figures: bind_matrix cells per second (other_process prober, witness included)."""
    from collect.inventory import Host
    from collect.transports import for_host
    out = console()
    out.print("machine: " + machine_summary())
    arguments = ["--lab", "bind_matrix", "--where", "prober=other_process"]
    for number in range(1, int(rounds) + 1):
        cases, started = 0, None
        with for_host(Host("local", {"transport": "local"})).run_agent(arguments) as lines:
            for line in lines:
                record = json.loads(line)
                if record["record"] == "host":
                    witness = record["witness"]
                elif record["record"] == "plan":
                    started = time.perf_counter()
                elif record["record"] == "case":
                    cases += 1
        seconds = time.perf_counter() - started
        out.print("bind_matrix other_process, round {}: {} cells in {:.2f} s = {:.0f} cells/s (witness: {}; "
                  "target >= 1000)".format(number, cases, seconds, cases / seconds, witness))


@task(help={"args": "extra pytest arguments, e.g. -k witness"})
def test(c, args=""):
    """Run the test suite (pytest)."""
    with c.cd(HERE):
        c.run("{} -m pytest {}".format(sys.executable, args), pty=False)
