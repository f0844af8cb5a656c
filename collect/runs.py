"""run-all, run and run-all --resume as the controller does them. Every input is checked before a run is made or
touched (the labs, --where against the labs' AXES and cases, the inventory, the run to resume); then the hosts run
in parallel (collect.runner) and summary() says how each ended."""
import os

from rich.table import Table

from collect import inventory as inventories
from collect.runner import new_job, resumed_job, run_hosts
from collect.store import RunStore
from collect.transports import for_host
from formats import rundir
from formats.errors import UserError
from labs import LABS, module
from labs.selection import check_where, parse_where, unmatched


def checked_selection(labs, where):
    """The lab names asked for (all when none); UserError for an unknown lab, a --where column or value the labs
    do not have, or a --where that leaves no case (naming the filter after which none is left)."""
    for name in labs:
        if name not in LABS:
            raise UserError("unknown lab {!r} (labs: {})".format(name, ", ".join(LABS)), field="--lab")
    chosen = list(labs) or list(LABS)
    modules = [module(name) for name in chosen]
    try:
        filters = parse_where(where)
        check_where(modules, filters)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    found = unmatched(modules, filters)
    if found:
        failing, before = found
        raise UserError("--where: {} matches no case of {}{}".format(
            failing, ", ".join(chosen) if labs else "any lab", " with " + " and ".join(before) if before else ""))
    return chosen


def new_run(inventory, names, labs, where, out):
    """(store, jobs) of a new run of the hosts (or groups) `names` of the inventory, all when none."""
    chosen = inventory.select(names)
    labs = checked_selection(labs, where)
    store = RunStore.create(out, [host.name for host in chosen], labs, where,
                            inventories.recorded(inventory, chosen))
    return store, [new_job(host, labs, where) for host in chosen]


def resumable(run, out, hosts_file, labs, where):
    """(store, jobs, inventory) that complete an earlier run: its unfinished hosts, without the cases they gave,
    reached as the run recorded them (or as the inventory `hosts_file` says). Checked, not yet reopened: nothing
    of the run is written until store.reopen()."""
    if labs or where:
        raise UserError("a resumed run keeps its own labs and --where: leave them out", field="--resume")
    store = RunStore.existing(rundir.resolve(run, out))
    inventory = inventories.load(hosts_file) if hosts_file else inventories.from_run(store.path, store.manifest)
    for name in store.unfinished:
        if name not in inventory.hosts:
            raise UserError("the run's host {!r} is not in this inventory".format(name), path=inventory.path)
    hosts = [inventory.hosts[name] for name in store.unfinished]
    return store, [resumed_job(host, store) for host in hosts], inventory


def resume(store, jobs, inventory):
    """Reopen a checked run for its jobs; the hosts' settings of this inventory are recorded for the next time."""
    store.reopen(inventory=inventories.recorded(inventory, [job.host for job in jobs]))


def measure(store, jobs, inventory, parallel, accept_new):
    run_hosts(jobs, store, lambda host: for_host(host, inventory.hosts, accept_new), parallel=parallel)


def case_count(store):
    return sum(entry.get("cases", 0) for entry in store.manifest["hosts"].values())


def summary(store, console, report=None):
    """Print each host's status, the verdicts and where results and report are; returns the exit status and the
    message of a failure: 1 unless every host completed; 2 when they all did without a case (the selection and
    the hosts' `labs:` left none)."""
    table = Table("host", "status", "cases", "reason", title="run {}".format(store.run_id))
    for name, entry in store.manifest["hosts"].items():
        table.add_row(name, entry.get("status", ""), str(entry.get("cases", 0)), entry.get("reason", ""))
    console.print(table)
    if report is not None:
        path, counts, _ = report
        console.print("verdicts: " + ", ".join("{} {}".format(count, verdict)
                                                for verdict, count in counts.sum().items()))
        console.print("results: {}\nreport:  {}".format(os.path.join(store.path, "results.csv"), path))
    if not store.completed:
        return 1, "not every host completed: see {}; `./socklab run-all --resume {}` runs what is missing".format(
            os.path.join(store.path, "manifest.json"), store.path)
    if not case_count(store):
        return 2, "error: {}: every host completed without a case: the labs and --where asked for (and the " \
                  "hosts' labs: settings) match none of their cases".format(store.path)
    return 0, None
