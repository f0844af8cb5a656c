"""socklab's tasks: `invoke --list` shows them, `invoke --help TASK` explains one.

Exit status: 0 all went well; 1 a host did not complete or could not be reached (run-all, run, import, hosts,
baseline), a case disagrees with the expectations (check), a witnessed case changed (regress), or a test bed could
not be built or removed (lab-up, lab-vm-up, ...); 2 a mistake in what was given (a file, a name, an option), told
in one line naming file, line and field.
"""
import functools
import json
import os
import platform
import sys
import time

from invoke import Exit, task

from collect.errors import UserError
from testbed import LabError

# Defaults live in the checkout, wherever invoke is started from; paths a user gives are taken as given.
HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.relpath(os.path.join(HERE, "results"))
ARCHIVE = os.path.join(HERE, "archive")
EXPECTATIONS = os.path.join(HERE, "expectations")
INVENTORY = os.path.relpath(os.path.join(HERE, "hosts.yaml"))
LAB = os.path.relpath(os.path.join(HERE, ".lab"))
VM = os.path.relpath(os.path.join(HERE, ".vm"))


def ends_in_one_line(kind, code):
    """A decorator: an error of this kind ends the task with its one line and this exit status, no traceback."""
    def decorate(body):
        @functools.wraps(body)
        def guarded(*args, **kwargs):
            try:
                return body(*args, **kwargs)
            except kind as exc:
                raise Exit("error: {}".format(exc), code=code) from None
        return guarded
    return decorate


user_errors = ends_in_one_line(UserError, 2)  # a mistake in what was given
lab_errors = ends_in_one_line(LabError, 1)  # a test bed that cannot be built or removed


def console():
    from rich.console import Console
    return Console(highlight=False)


def checked_labs(labs, where):
    """The lab names asked for (all when none), each known, and the --where columns each of them has."""
    from labs import LABS, module
    from labs.selection import check_where, parse_where
    for name in labs:
        if name not in LABS:
            raise UserError("unknown lab {!r} (labs: {})".format(name, ", ".join(LABS)), field="--lab")
    chosen = list(labs) or list(LABS)
    try:
        check_where([module(name) for name in chosen], parse_where(where))
    except ValueError as exc:
        raise UserError(str(exc), field="--where") from None
    return chosen


def run_dir_or_latest(run, out):
    from analysis.results import latest_run
    return run or latest_run(out)


def judged_runs(runs, expectations, archive=True):
    """The runs' results, with the archived published runs beside them, each row judged."""
    from analysis.expectations import judge, load_expectations
    from analysis.results import load_runs, run_dirs
    chosen = [os.path.normpath(run) for run in runs]
    chosen += [run for run in (run_dirs(ARCHIVE) if archive else []) if os.path.normpath(run) not in chosen]
    return judge(load_runs(chosen), load_expectations([expectations]))


def write_report(runs, expectations=EXPECTATIONS, out=None):
    """The report of the first run, the others (and the archive) beside it, into <first run>/report/ or `out`."""
    from analysis import report
    from analysis.results import read_manifest
    judged = judged_runs(runs, expectations)
    return report.write(judged, runs[0], read_manifest(runs[0]), out or os.path.join(runs[0], "report"))


def summarise(store):
    """Report the run; print each host's status and the verdicts; exit 1 unless every host completed."""
    from rich.table import Table
    path, counts, wrong = write_report([store.path])
    table = Table("host", "status", "cases", "reason", title="run {}".format(store.run_id))
    for name, entry in store.manifest["hosts"].items():
        table.add_row(name, entry["status"], str(entry["cases"]), entry["reason"])
    out = console()
    out.print(table)
    out.print("verdicts: " + ", ".join("{} {}".format(count, verdict) for verdict, count in counts.sum().items()))
    out.print("results: {}\nreport:  {}".format(os.path.join(store.path, "results.csv"), path))
    if not store.completed:
        raise Exit("not every host completed: see {}; `invoke run-all --resume {}` runs what is missing".format(
            os.path.join(store.path, "manifest.json"), store.path), code=1)


def measure(store, jobs, inventory, parallel, accept_new):
    from collect.runner import run_hosts
    from collect.transports import for_host
    run_hosts(jobs, store, lambda host: for_host(host, inventory.hosts, accept_new), parallel=int(parallel))
    summarise(store)


def resumed(run, out, inventory, lab, where):
    """The store and jobs that complete an earlier run: its unfinished hosts, without the cases they gave."""
    from collect.runner import resumed_job
    from collect.store import RunStore
    if lab or where:
        raise UserError("a resumed run keeps its own labs and --where: leave them out", field="--resume")
    store = RunStore.reopen(run if os.path.isdir(run) else os.path.join(out, run))
    for name in store.unfinished:
        if name not in inventory.hosts:
            raise UserError("the run's host {!r} is not in this inventory".format(name), path=inventory.path)
    return store, [resumed_job(inventory.hosts[name], store) for name in store.unfinished]


MEASURE_HELP = {
    "hosts": "the inventory file (default hosts.yaml)",
    "lab": "a lab to run; repeat for several (default: every lab)",
    "where": "only cases with these values, e.g. --where state=LISTEN,TIME_WAIT (a lab without the column runs "
             "none), or a lab's size, e.g. --where pairs=2000; repeatable",
    "out": "where runs are stored (default results/)",
    "accept-new": "record the SSH host keys of hosts never seen before (as ssh's StrictHostKeyChecking=accept-new)"
                  "; a changed key is refused all the same",
}


@task(iterable=["lab", "where"], help=dict(MEASURE_HELP, **{
    "parallel": "hosts measured at once (default 8)",
    "resume": "a run (its directory, or its id under --out) to complete: only its unfinished hosts run, and only "
              "the cases they have not given yet",
}))
@user_errors
def run_all(c, hosts=INVENTORY, lab=None, where=None, out=RESULTS, parallel=8, resume=None, accept_new=False):
    """Measure every host of the inventory in parallel; store the run and its report under results/<run_id>/.

    Exit status 0 only if every host completed; a host that failed keeps what it sent, and --resume RUN later
    runs only what is missing."""
    from collect import inventory as inventories
    from collect.runner import new_job
    from collect.store import RunStore
    inventory = inventories.load(hosts)
    if resume:
        store, jobs = resumed(resume, out, inventory, lab, where)
        if not jobs:
            console().print("run {} is complete: nothing to resume".format(store.run_id))
            return
    else:
        labs = checked_labs(lab, where)
        chosen = inventory.select()
        store = RunStore(out, [host.name for host in chosen], labs, where)
        jobs = [new_job(host, labs, where) for host in chosen]
    measure(store, jobs, inventory, parallel, accept_new)


@task(iterable=["lab", "where"], help=dict(MEASURE_HELP, host="the host's (or group's) name in the inventory"))
@user_errors
def run(c, host, hosts=INVENTORY, lab=None, where=None, out=RESULTS, accept_new=False):
    """Measure one host (or one group); the run is stored and reported like run-all's."""
    from collect import inventory as inventories
    from collect.runner import new_job
    from collect.store import RunStore
    inventory = inventories.load(hosts)
    labs = checked_labs(lab, where)
    chosen = inventory.select([host])
    store = RunStore(out, [entry.name for entry in chosen], labs, where)
    measure(store, [new_job(entry, labs, where) for entry in chosen], inventory, 8, accept_new)


def host_facts(host, inventory, accept_new):
    """The host's facts record, or the one-line reason it could not be reached."""
    from collect.errors import TransportError
    from collect.transports import for_host
    try:
        with for_host(host, inventory.hosts, accept_new).run_agent({"facts": True}) as lines:
            return json.loads(next(iter(lines), "{}")), ""
    except TransportError as exc:
        return None, str(exc)
    except ValueError:
        return None, "the agent's first line is not JSON"


@task(help={"hosts": "the inventory file (default hosts.yaml)", "accept-new": MEASURE_HELP["accept-new"],
            "parallel": "hosts reached at once (default 8)"})
@user_errors
def hosts(c, hosts=INVENTORY, accept_new=False, parallel=8):
    """Reach every host in parallel and print its facts (OS, release, Python, admin, witness), or why not.

    Exit status 1 if a host could not be reached."""
    from concurrent.futures import ThreadPoolExecutor
    from rich.table import Table
    from collect import inventory as inventories
    inventory = inventories.load(hosts)
    chosen = inventory.select()
    with ThreadPoolExecutor(max_workers=max(1, int(parallel))) as pool:
        answers = list(pool.map(lambda host: host_facts(host, inventory, accept_new), chosen))
    table = Table("host", "OS", "release", "Python", "admin", "witness", "problem")
    for host, (facts, problem) in zip(chosen, answers):
        if facts is None:
            table.add_row(host.name, "", "", "", "", "", problem)
        else:
            table.add_row(host.name, facts.get("os_family", ""), facts.get("os_release", ""),
                          facts.get("python", ""), "yes" if facts.get("admin") else "no", facts.get("witness", ""),
                          "")
    console().print(table)
    if any(facts is None for facts, _ in answers):
        raise Exit(code=1)


@task(name="import", help={"file": "the agent's output, captured on the host (python3 socklab-agent.pyz > FILE)",
                           "host": "the name to store it under",
                           "run": "add it to this run (directory or id under --out) instead of a new run",
                           "out": "where runs are stored (default results/)"})
@user_errors
def import_output(c, file, host, run=None, out=RESULTS):
    """Store agent output captured by hand on a host that SSH cannot reach, as a run (or one more host of --run).

    On the host: copy the agent there (`invoke agent` writes it) and run `python3 socklab-agent.pyz > FILE`."""
    from collect.inventory import Host, check_host_name
    from collect.runner import Job, run_hosts
    from collect.store import RunStore
    from collect.transports.captured import CapturedTransport
    check_host_name(host, field="--host")
    if run:
        store = RunStore.reopen(run if os.path.isdir(run) else os.path.join(out, run))
        store.add_host(host)
    else:
        store = RunStore(out, [host], [])
    run_hosts([Job(Host(host), {})], store, lambda _: CapturedTransport(file))
    summarise(store)


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
    judged = judged_runs([run_dir], expectations, archive=False)
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


@task(iterable=["run"], help={
    "run": "a run directory (default: the newest under results/); repeat to show several runs side by side",
    "expectations": "a file or directory of expectation tables (default expectations/)",
    "out": "where the report goes (default <first run>/report/)"})
@user_errors
def report(c, run=None, expectations=EXPECTATIONS, out=None):
    """Write the report of one run, or several side by side, into <run>/report/: HTML, Markdown, CSV, a picture.

    The verdicts, every mismatch with its source, then one section per lab (its table: rows system x its cases,
    columns its main parameter): bind_matrix in seed 004's layout for every system of the runs and of the archived
    published runs (archive/), and every option pair; and a heat map of outcomes by system and case (PNG, SVG)."""
    path, _, _ = write_report(run or [run_dir_or_latest(None, RESULTS)], expectations, out)
    console().print("report: {}".format(path))


BASELINES = os.path.relpath(os.path.join(HERE, "baselines"))


@task(iterable=["pair"], help={
    "baseline": "a run directory, or a baseline folder (default baselines/)",
    "current": "a run directory (default: the newest under results/)",
    "out": "where regress.md and regress.json go (default <current>/regress/)",
    "pair": "BASELINE_HOST=CURRENT_HOST: compare two different hosts case by case, e.g. local=debian12-vm "
            "(this machine against a VM with another kernel); repeatable"})
@user_errors
def regress(c, baseline=BASELINES, current=None, out=None, pair=None):
    """Cases that changed per host between two runs (or a run and its baselines), with the host facts that changed.

    Writes Markdown and JSON; exit 1 if a case with a result on both sides changed its outcome (inconclusive, added
    and removed cases are listed, and do not fail)."""
    from analysis.regress import regress as regression
    pairs = [tuple(text.split("=", 1)) for text in pair]
    if any(len(names) != 2 or not all(names) for names in pairs):
        raise UserError("write each pair as BASELINE_HOST=CURRENT_HOST", field="--pair")
    raise Exit(code=regression(baseline, current or run_dir_or_latest(None, RESULTS), out, console(), pairs))


@task(help={"run": "the run whose hosts become the baseline", "folder": "where baselines live (default baselines/)"})
@user_errors
def baseline(c, run, folder=BASELINES):
    """Promote a run to the baseline of its hosts: <folder>/<host>.csv (sorted, small, for version control) and
    <host>.facts.json. Exit 1 if a host did not complete (it is not promoted)."""
    from analysis.regress import promote_baseline
    raise Exit(code=promote_baseline(run, folder, console()))


@task(help={"host": "the host's name", "runs": "a folder of runs (default: results/ and archive/)"})
@user_errors
def history(c, host, runs=None):
    """When each case's outcome changed on a host, across all stored runs, and with which OS release."""
    from analysis.history import history as host_history
    host_history([runs] if runs else [RESULTS, ARCHIVE], host, console())


@task(iterable=["run"], help={"a": "a host name or an OS family (e.g. local, linux, winxp-sp3, windows)",
                              "b": "the other host or OS family",
                              "run": "a run to take the cases from; repeatable (default: the newest run and the "
                                     "archive)"})
@user_errors
def compare(c, a, b, run=None):
    """The cases where two systems behave differently: what cross-platform code must do differently on each."""
    from analysis.compare import compare as system_compare
    from analysis.results import run_dirs
    system_compare(run or [run_dir_or_latest(None, RESULTS)] + run_dirs(ARCHIVE), a, b, console())


@task(help={"count": "how many lab hosts (default 4)",
            "folder": "where the lab's keys, state and hosts.yaml go (default .lab/)"})
@lab_errors
def lab_up(c, count=4, folder=LAB):
    """Start COUNT lab hosts on this machine (root): network namespaces on a private bridge, one real sshd, user
    and address each, their own sysctls (tcp_tw_reuse 0, 1, 2, ...). Writes FOLDER/hosts.yaml for them.

    Then `invoke run-all --hosts .lab/hosts.yaml`; `invoke lab-down` removes every trace."""
    from rich.table import Table
    from testbed.lab import Lab
    if os.path.exists(os.path.join(folder, "lab.json")):
        raise LabError("a lab is already up in {}: `invoke lab-down` first".format(folder))
    started = time.perf_counter()
    lab = Lab.up(folder, count=int(count))
    table = Table("host", "address", "user", "sysctls", title="{} lab hosts up in {:.2f} s".format(
        len(lab.hosts), time.perf_counter() - started))
    for host in lab.hosts:
        table.add_row(host.name, "{}:{}".format(host.address, host.port), host.user,
                      ", ".join("{}={}".format(key, value) for key, value in host.sysctls.items()))
    out = console()
    out.print(table)
    out.print("inventory: {}\nnext: ./socklab run-all --hosts {}".format(lab.inventory, lab.inventory))


@task(help={"folder": "the lab's folder (default .lab/)"})
@lab_errors
def lab_down(c, folder=LAB):
    """Remove the lab hosts lab-up made: processes, namespaces, links, users, homes and the lab's files."""
    from testbed.lab import down
    down(folder)
    console().print("lab in {} is down".format(folder))


@task(help={"folder": "where the VM's keys, state, console log and hosts.yaml go (default .vm/)",
            "cache": "where the built disk image is kept (default ~/.cache/socklab/vm)",
            "timeout": "seconds to wait for an SSH login (default 180)"})
@lab_errors
def lab_vm_up(c, folder=VM, cache=None, timeout=180):
    """Boot a Debian 12 VM (kernel 6.1) under QEMU as a lab host on 127.0.0.1; the first call builds its image.

    Building (debootstrap, as root, ~2 min) is cached; booting under software emulation takes ~25 s. Writes
    FOLDER/hosts.yaml: then `invoke run-all --hosts .vm/hosts.yaml`, and `invoke lab-vm-down` powers it off."""
    from testbed.vm import DEFAULT_CACHE, Vm
    # plain print for progress: the guest's console lines ("[  OK  ]") would read as rich markup
    vm = Vm.up(folder, cache_dir=cache or DEFAULT_CACHE, progress=print, timeout=float(timeout))
    console().print("inventory: {}\nnext: ./socklab run-all --hosts {}".format(vm.inventory, vm.inventory))


@task(help={"folder": "the VM's folder (default .vm/)"})
@lab_errors
def lab_vm_down(c, folder=VM):
    """Power off the VM lab-vm-up started and remove its files (the cached image stays for the next time)."""
    from testbed.vm import down
    down(folder)
    console().print("VM in {} is down".format(folder))


def machine_summary():
    model = ""
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as stream:
            model = next((line.split(":", 1)[1].strip() for line in stream if line.startswith("model name")), "")
    return "{} ({} cores), {} {}, Python {}".format(model or platform.processor() or platform.machine(),
                                                     os.cpu_count(), platform.system(), platform.release(),
                                                     platform.python_version())


@task(iterable=["where"], help={
    "rounds": "how many times to run each measurement (default 3)",
    "where": "the cases of the 1-vs-8-hosts runs (default: proto=tcp, state=LISTEN,TIME_WAIT); repeatable",
})
@lab_errors
def bench(c, rounds=3, where=None):
    """Print speed figures: bind_matrix cells/s here, quiet and with 100,000 TIME_WAITs, beside the floor; witness
    reads per case; load + judge + report of 1,000,000 rows; run-all over 1 and 8 lab hosts; cells/s in a VM;
    socketpair_churn's pairs/s and unix_sockets' connects/s.

    The TIME_WAITs, lab hosts and the VM need root: a network namespace of bench's own holds the TIME_WAITs while
    the agent runs inside it (removed after); 8 lab hosts in network namespaces (as lab-up does), then the Debian 12
    VM (as lab-vm-up does: the first time builds its image, ~2 min); all are removed after. The labs' own figures
    come last: socketpair_churn leaves ~90,000 TIME_WAITs for a minute. Targets: >= 5,000 cells/s for the whole
    matrix, >= 80% of that with 100,000 TIME_WAITs; 1,000,000 rows analysed in < 10 s and < 2 GB; 8 hosts in at
    most 1.5x the time of one."""
    from collect import bench as figures
    from labs import bind_matrix, hostfacts
    from labs import workers as labs_workers
    from labs.sockopts import platform_family
    from labs.witness import Witness
    out = console()
    rounds = int(rounds)
    out.print("machine: " + machine_summary())
    if hasattr(os, "getloadavg"):
        out.print("load average (1, 5, 15 min) at the start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    waiting = figures.time_wait_entries()
    if waiting:
        out.print("TIME_WAIT entries on this machine now: {:,} (a run of socketpair_churn leaves ~90,000 for a "
                  "minute)".format(waiting))
    with Witness(platform_family()) as witness:
        host = hostfacts.collect(witness.method)
    floor = max(cases / seconds for cases, seconds in (figures.floor_cells_per_second(host) for _ in range(rounds)))
    out.print("floor: the matrix's {:,} cases driven by events in one process, second bind in the same process, no "
              "witness: {:,.0f} cells/s (best of {})".format(len(list(bind_matrix.cases(host))), floor, rounds))
    workers = labs_workers.count()
    quiet = bind_matrix_rounds(out, figures.cells_per_second, rounds, "quiet, {} worker(s)".format(workers), floor)
    alone = bind_matrix_rounds(out, lambda: figures.cells_per_second(workers=1), rounds, "quiet, one process",
                               floor)
    out.print("target: >= 5,000 cells/s quiet (best round {:,.0f}); {} workers / one process: {:.2f}x".format(
        quiet, workers, quiet / alone))
    if os.geteuid() == 0:
        with figures.time_wait_namespace(100_000) as (launcher, made, now):
            busy = bind_matrix_rounds(out, lambda: figures.cells_per_second(launcher), rounds,
                                      "{:,} TIME_WAIT entries in its network namespace, {} worker(s)".format(
                                          made, workers), floor)
            left = now()
        out.print("with TIME_WAITs / quiet: {:.0%} (target >= 80%); {:,} of them left when the rounds ended; the "
                  "namespace is removed".format(busy / quiet, left))
    else:
        out.print("bind_matrix with 100,000 TIME_WAITs: skipped (its network namespace needs root)")
    for method in ("sock_diag", "/proc/net") if platform_family() == "linux" else ():
        reads, cases, size = figures.reads_per_case(host, method, workers)
        out.print("witness reads per case, {} (the whole matrix, {:,} cases in batches of {}): {}".format(
            method, cases, size, ", ".join("{} {:.3f}".format(kind, count) for kind, count in reads.items())))
    size = bind_matrix.batch_size(host, workers)
    for os_family, name, sample in figures.RECORDED_NETSTAT if os.name == "posix" else ():
        out.print("witness reads per case, {} (recorded; a batch of {} TCP cases in their states): {:.4f} netstat "
                  "runs".format(name, size, figures.recorded_reads_per_case(os_family, sample, size)))
    rows, seconds, megabytes = figures.report_at_scale(ARCHIVE, EXPECTATIONS)
    out.print("analysis of a synthetic run of 100 hosts + the archive, {:,} rows: {} = {:.1f} s (target < 10 s); "
              "peak memory {:,.0f} MB (target < 2,048 MB)".format(rows, ", ".join(
                  "{} {:.1f} s".format(step, value) for step, value in seconds.items()), sum(seconds.values()),
                  megabytes))
    if os.geteuid() == 0:
        lab_host_figures(out, figures, where or ["proto=tcp", "state=LISTEN,TIME_WAIT"], rounds)
    else:
        out.print("run-all over 1 and 8 lab hosts, and the VM: skipped (lab hosts need root)")
    for lab, lab_where, measure, unit in figures.LAB_FIGURES:
        for case, outcome, value in figures.lab_figures(lab, lab_where, measure):
            out.print("{} {}: {} {} (outcome {})".format(lab, case, value, unit, outcome))


def bind_matrix_rounds(out, measure, rounds, condition, floor):
    """Prints each round of the whole bind matrix as the agent runs it; returns the best cells/s."""
    best = 0
    for number in range(1, rounds + 1):
        cases, seconds, witness = measure()
        best = max(best, cases / seconds)
        out.print("bind_matrix, the whole matrix (every prober, witness {} on every case), {}, round {}: {:,} cells in "
                  "{:.2f} s = {:,.0f} cells/s = {:.0%} of the floor".format(witness, condition, number, cases, seconds,
                                                                         cases / seconds, cases / seconds / floor))
    return best


def lab_host_figures(out, figures, where, rounds):
    """bench's run-all over 1 and 8 namespace lab hosts, and its VM figure."""
    times = figures.hosts_wall_times(where, rounds=rounds)
    for count, runs in times.items():
        out.print("run-all over {} lab host(s), --where {}: {} cases; wall {} s; agents' CPU {} s".format(
            count, " --where ".join(where), runs[0][1], " / ".join("{:.2f}".format(run[0]) for run in runs),
            " / ".join("{:.2f}".format(run[2]) for run in runs)))
    (one, _, _), (eight, _, cpu) = (min(times[count]) for count in (1, 8))
    out.print("8 hosts / 1 host (best rounds): {:.2f}x (target <= 1.5x). The 8 lab hosts share this machine's {} "
              "cores: their agents alone needed {:.2f} CPU-s, so no controller could finish here in under "
              "{:.2f} s = {:.2f}x".format(eight / one, os.cpu_count(), cpu, cpu / os.cpu_count(),
                                         cpu / os.cpu_count() / one))
    cases, seconds, release = figures.vm_cells_per_second(["prober=other_process"], progress=lambda line: None)
    out.print("bind_matrix other_process inside the Debian 12 VM (kernel {}, QEMU TCG): {} cells in {:.1f} s = "
              "{:.0f} cells/s".format(release, cases, seconds, cases / seconds))


@task(help={"out": "the file to write (default socklab-agent.pyz)"})
def agent(c, out="socklab-agent.pyz"):
    """Write the agent as one file, for a host SSH cannot reach: there, `python3 socklab-agent.pyz > FILE`.

    Bring FILE back and store it with `invoke import FILE --host NAME`."""
    from collect.agent import build
    name, data, sha256 = build()
    with open(out, "wb") as stream:
        stream.write(data)
    console().print("{}: {} ({} bytes, sha256 {})".format(out, name, len(data), sha256))


@task(help={"args": "extra pytest arguments, e.g. -k witness",
            "slow": "also the slow tests, which boot a QEMU VM (minutes)"})
def test(c, args="", slow=False):
    """Run the test suite (pytest); --slow adds the tests that boot a lab VM."""
    with c.cd(HERE):
        c.run("{} -m pytest {}".format(sys.executable, args), pty=False, env={"SOCKLAB_SLOW": "1"} if slow else {})
