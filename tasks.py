"""socklab's tasks: `./socklab --list` shows them, `./socklab --help TASK` explains one. Each task checks what it
was given and hands it to the controller (collect/) or the analysis (analysis/); what they do lives there.

Exit status: 0 all went well; 1 a host did not complete or could not be reached (run-all, run, import, hosts,
baseline), a case disagrees with the expectations (check), a witnessed case changed or a host of the baseline is
missing (regress), or a test bed could not be built or removed (lab-up, lab-vm-up, ...); 2 a mistake in what was
given (a file, a name, an option, a run without a case), told in one line naming file, line and field.
"""
import os
import platform
import sys
import tempfile
import time

from invoke import Exit

from cli import task

# Defaults live in the checkout, wherever ./socklab is started from; paths a user gives are the user's.
HERE = os.path.dirname(os.path.abspath(__file__))


def in_checkout(name):
    """A default path in the checkout, as short as it can be said from the user's directory."""
    path = os.path.join(HERE, name)
    shorter = os.path.relpath(path)
    return path if shorter.startswith(os.pardir) else shorter


RESULTS = in_checkout("results")
ARCHIVE = os.path.join(HERE, "archive")
EXPECTATIONS = os.path.join(HERE, "expectations")
INVENTORY = in_checkout("hosts.yaml")
BASELINES = in_checkout("baselines")
LAB = os.path.join(HERE, ".lab")
VM = os.path.join(HERE, ".vm")


def console():
    from rich.console import Console
    return Console(highlight=False)


def newest_run(run, out=RESULTS):
    """A run given on the command line (its directory or its id under `out`), else the newest under `out`."""
    from formats import rundir
    return rundir.resolve(run, out) if run else rundir.latest_run(out)


def concluded(store):
    """Report a run the controller stored (a step of its own on the terminal), print its summary, and end with its
    exit status."""
    from analysis.terminal import written_report
    from collect import runs
    out = console()
    report = written_report(out, [store.path], EXPECTATIONS, ARCHIVE) if runs.case_count(store) else None
    code, message = runs.summary(store, out, report)
    raise Exit(message, code=code)


MEASURE_HELP = {
    "hosts": "the inventory file (default hosts.yaml)",
    "lab": "a lab to run; repeat for several (default: every lab)",
    "where": "only cases with these values, e.g. --where state=LISTEN,TIME_WAIT (a lab without the column runs "
             "none), or a lab's size, e.g. --where pairs=2000; repeatable. A value the labs do not have, or a "
             "selection that leaves no case, is an error",
    "out": "where runs are stored (default results/)",
    "parallel": "hosts measured at once, 1-256 (default 8)",
    "accept-new": "record the SSH host keys of hosts never seen before (as ssh's StrictHostKeyChecking=accept-new)"
                  "; a changed key is refused all the same",
}


@task(iterable=["lab", "where"], help=dict(MEASURE_HELP, **{
    "hosts": "the inventory file (default hosts.yaml; with --resume, the inventory the run recorded)",
    "resume": "a run (its directory, or its id under --out) to complete: only its unfinished hosts run, and only "
              "the cases they have not given yet",
}))
def run_all(c, hosts=None, lab=None, where=None, out=RESULTS, parallel=8, resume=None, accept_new=False):
    """Measure every host of the inventory in parallel; store the run and its report under results/<run_id>/.

    Exit status 0 only if every host completed; a host that failed keeps what it sent, and --resume RUN later
    runs only what is missing."""
    from collect import inventory as inventories
    from collect import runs
    if resume:
        store, jobs, inventory = runs.resumable(resume, out, hosts, lab, where)
        if not jobs:
            console().print("run {} is complete: nothing to resume".format(store.run_id))
            return
        runs.resume(store, jobs, inventory)
    else:
        inventory = inventories.load(hosts or INVENTORY)
        store, jobs = runs.new_run(inventory, [], lab, where, out)
    runs.measure(store, jobs, inventory, parallel, accept_new)
    concluded(store)


@task(iterable=["lab", "where"], help=dict(MEASURE_HELP, host="the host's (or group's) name in the inventory"))
def run(c, host, hosts=INVENTORY, lab=None, where=None, out=RESULTS, parallel=8, accept_new=False):
    """Measure one host (or one group); the run is stored and reported like run-all's."""
    from collect import inventory as inventories
    from collect import runs
    inventory = inventories.load(hosts)
    store, jobs = runs.new_run(inventory, [host], lab, where, out)
    runs.measure(store, jobs, inventory, parallel, accept_new)
    concluded(store)


@task(help={"hosts": "the inventory file (default hosts.yaml)", "accept-new": MEASURE_HELP["accept-new"],
            "parallel": "hosts reached at once, 1-256 (default 8)"})
def hosts(c, hosts=INVENTORY, accept_new=False, parallel=8):
    """Reach every host in parallel and print its facts (OS, release, Python, admin, witness), or why not.

    Exit status 1 if a host could not be reached."""
    from collect import inventory as inventories
    from collect.facts import show_hosts
    raise Exit(code=show_hosts(inventories.load(hosts), accept_new, parallel, console()))


@task(name="import", help={"path": "the agent's output captured on a host (python3 socklab-agent.pyz > FILE), or a "
                                   "folder of them, one <host>.jsonl per host",
                           "host": "the name to store a file under (a folder's files are named by their host)",
                           "run": "add them to this run (directory or id under --out) instead of a new run",
                           "out": "where runs are stored (default results/)"})
def import_output(c, path, host=None, run=None, out=RESULTS):
    """Store agent output captured by hand on hosts that SSH cannot reach, as a run (or more hosts of --run).

    On the host: copy the agent there (`./socklab agent` writes it) and run `python3 socklab-agent.pyz > FILE`.
    A bad file is told in one line (exit status 2) and not stored; the good ones are."""
    from collect.imports import import_output as stored
    store, problems = stored(path, host, run, out)
    failures = "\n".join("error: " + problem for problem in problems)
    if store is None:
        raise Exit(failures, code=2)
    if problems:
        console().print("stored in {}: {}".format(store.path, ", ".join(store.manifest["hosts"])))
        raise Exit(failures, code=2)
    concluded(store)


@task(help={"run": "a run directory or id (default: the newest under results/)",
            "expectations": "a file or directory of expectation tables (default expectations/)",
            "json": "print JSON instead: run, cases, exit_status, verdicts (host, lab and a count per verdict), "
                    "mismatches (host, lab, case_id, expected, measured, witness, source)"})
def check(c, run=None, expectations=EXPECTATIONS, json=False):
    """Judge a run against the expectations; list each mismatch with its source, exit 1 if any.

    Prints the count of cases per verdict and host (match, mismatch, undocumented, inconclusive, unsupported,
    error), then every mismatch with what was expected, what was measured, the witness and the source. A run
    with no case is an error (exit status 2): a check does not pass on nothing."""
    from analysis.check import check as judged
    raise Exit(code=judged(newest_run(run), expectations, console(), as_json=json))


@task(iterable=["run"], help={
    "run": "a run directory or id (default: the newest under results/); repeat to show several runs side by side",
    "expectations": "a file or directory of expectation tables (default expectations/)",
    "out": "where the report goes (default <first run>/report/)"})
def report(c, run=None, expectations=EXPECTATIONS, out=None):
    """Write the report of one run, or several side by side, into <run>/report/: HTML, Markdown, CSV, a picture.

    The verdicts, every mismatch with its source, then one section per lab (its table: rows system x its cases,
    columns its main parameter): bind_matrix in seed 004's layout for every system of the runs and of the archived
    published runs (archive/), and every option pair; and a heat map of outcomes by system and case (PNG, SVG)."""
    from analysis.terminal import written_report
    written_report(console(), [newest_run(name) for name in run] or [newest_run(None)], expectations, ARCHIVE, out)


@task(iterable=["pair"], help={
    "baseline": "a run directory, or a baseline folder (default baselines/)",
    "current": "a run directory or id (default: the newest under results/)",
    "out": "where regress.md and regress.json go (default <current>/regress/)",
    "pair": "BASELINE_HOST=CURRENT_HOST: compare two different hosts case by case, e.g. local=debian12-vm "
            "(this machine against a VM with another kernel); repeatable"})
def regress(c, baseline=BASELINES, current=None, out=None, pair=None):
    """Cases that changed per host between two runs (or a run and its baselines), with the host facts that changed.

    Writes Markdown and JSON; exit 1 if a case with a result on both sides changed its outcome, or a host of the
    baseline is not in the current run (inconclusive, added and removed cases are listed, and do not fail)."""
    from analysis.regress import regress as regression
    from formats.errors import UserError
    pairs = [tuple(text.split("=", 1)) for text in pair]
    if any(len(names) != 2 or not all(names) for names in pairs):
        raise UserError("write each pair as BASELINE_HOST=CURRENT_HOST", field="--pair")
    raise Exit(code=regression(baseline, newest_run(current), out, console(), pairs))


@task(help={"run": "the run whose hosts become the baseline", "folder": "where baselines live (default baselines/)"})
def baseline(c, run, folder=BASELINES):
    """Promote a run to the baseline of its hosts: <folder>/<host>.csv (sorted, small, for version control) and
    <host>.facts.json. Exit 1 if a host did not complete (it is not promoted)."""
    from analysis.regress import promote_baseline
    raise Exit(code=promote_baseline(newest_run(run), folder, console()))


@task(help={"host": "the host's name", "runs": "a folder of runs (default: results/ and archive/)",
            "json": "print JSON instead: host, runs (run_id, started, os_release, agent), changes (run_id, "
                    "started, previous_run_id, lab, case_id, parameters, before, after, os_release, facts_changed)"})
def history(c, host, runs=None, json=False):
    """When each case's outcome changed on a host, across all stored runs, and with which OS release."""
    from analysis.history import history as host_history
    raise Exit(code=host_history([runs] if runs else [RESULTS, ARCHIVE], host, console(), as_json=json))


@task(iterable=["run"], help={"a": "a host name or an OS family (e.g. local, linux, winxp-sp3, windows)",
                              "b": "the other host or OS family",
                              "run": "a run to take the cases from; repeatable (default: the newest run and the "
                                     "archive)",
                              "json": "print JSON instead: a, b, systems (the hosts each stands for), "
                                      "cases_compared, differences (lab, case_id, parameters, a, b)"})
def compare(c, a, b, run=None, json=False):
    """The cases where two systems behave differently: what cross-platform code must do differently on each."""
    from analysis.compare import compare as system_compare
    from formats import rundir
    if run:
        raise Exit(code=system_compare([newest_run(name) for name in run], a, b, console(), as_json=json))
    raise Exit(code=system_compare([newest_run(None)], a, b, console(), beside=rundir.run_dirs(ARCHIVE),
                                   as_json=json))


@task(help={"port": "the port, 1-65535",
            "host": "the inventory host to ask (default local: this machine)",
            "hosts": "the inventory file (default hosts.yaml)",
            "address": "the address a new server would bind (default 0.0.0.0; :: is dual-stack, IPV6_V6ONLY off)",
            "proto": "tcp (default) or udp",
            "opts": "only this option set, e.g. SO_REUSEADDR+SO_REUSEPORT or none (default: every one the host "
                    "knows; the exit status is a bind with none)",
            "runs": "where the measured runs are (default results/)",
            "baseline": "the baseline folder, asked after the runs (default baselines/)",
            "expectations": "a file or directory of expectation tables (default expectations/)",
            "accept-new": MEASURE_HELP["accept-new"],
            "json": "print JSON instead (keys in the README)"})
def why(c, port, host="local", hosts=INVENTORY, address="0.0.0.0", proto="tcp", opts=None, runs=RESULTS,
        baseline=BASELINES, expectations=EXPECTATIONS, accept_new=False, json=False):
    """Why a server cannot bind PORT on a host now, and what would let it: who holds the port (state, addresses,
    owner, a TIME_WAIT's time left), a bind() with each option set tried now from another process (never
    listen()ed: the holder loses nothing; UDP beside a holder is not tried), each answer beside the host's
    measured bind_matrix cases, or the documented expectation where nothing was measured.

    Exit status 0 if a bind with --opts (default none) succeeds now, 1 if not (or the host cannot be asked), 2 for
    a mistake (a port, host, address or option set that is not one)."""
    from analysis import terminal
    from analysis import why as explanation
    from collect import inventory as inventories
    from collect.errors import TransportError
    from collect.why import ask
    from formats.errors import UserError
    from labs import why as question
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise UserError("{!r} is not a port (1-65535)".format(port), field="PORT")
    if proto not in question.PROTOCOLS:
        raise UserError("{!r} is not tcp or udp".format(proto), field="--proto")
    try:
        family, literal = question.server_address(address)
        chosen = None if opts is None else [question.option_set(opts)]
    except ValueError as exc:
        raise UserError(str(exc), field="--address" if "address" in str(exc) else "--opts") from None
    inventory = inventories.load(hosts)
    try:
        asked = ask(inventory, host, {"proto": proto, "port": int(port), "address": literal, "opts": chosen},
                    accept_new)
    except TransportError as exc:
        raise Exit("error: {}: {}".format(host, exc), code=1) from None
    document = explanation.explain(asked, host, runs, baseline, expectations,
                                   None if hosts == INVENTORY else hosts)
    if json:
        terminal.print_json(document)
    else:
        explanation.show(document, console())
    raise Exit(code=document["exit_status"])


@task(help={"count": "how many lab hosts, 1-200 (default 4)",
            "folder": "where the lab's keys, state and hosts.yaml go (default .lab/)"})
def lab_up(c, count=4, folder=LAB):
    """Start COUNT lab hosts on this machine (root): network namespaces on a private bridge, one real sshd, user
    and address each, their own sysctls (tcp_tw_reuse 0, 1, 2, ...). Writes FOLDER/hosts.yaml for them.

    Then `./socklab run-all --hosts .lab/hosts.yaml`; `./socklab lab-down` removes every trace."""
    from rich.table import Table
    from testbed import LabError
    from testbed.lab import Lab
    if os.path.exists(os.path.join(folder, "lab.json")):
        raise LabError("a lab is already up in {}: `./socklab lab-down` first".format(folder))
    started = time.perf_counter()
    lab = Lab.up(os.path.abspath(folder), count=count)
    table = Table("host", "address", "user", "sysctls", title="{} lab hosts up in {:.2f} s".format(
        len(lab.hosts), time.perf_counter() - started))
    for host in lab.hosts:
        table.add_row(host.name, "{}:{}".format(host.address, host.port), host.user,
                      ", ".join("{}={}".format(key, value) for key, value in host.sysctls.items()))
    out = console()
    out.print(table)
    out.print("inventory: {}\nnext: ./socklab run-all --hosts {}".format(lab.inventory, lab.inventory))


@task(help={"folder": "the lab's folder (default .lab/)"})
def lab_down(c, folder=LAB):
    """Remove the lab hosts lab-up made: processes, namespaces, links, users, homes and the lab's files."""
    from testbed.lab import down
    down(os.path.abspath(folder))
    console().print("lab in {} is down".format(folder))


@task(help={"folder": "where the VM's keys, state, console log and hosts.yaml go (default .vm/)",
            "cache": "where the built disk image is kept (default ~/.cache/socklab/vm)",
            "timeout": "seconds to wait for an SSH login, 1-86400 (default 180)"})
def lab_vm_up(c, folder=VM, cache=None, timeout=180):
    """Boot a Debian 12 VM (kernel 6.1) under QEMU as a lab host on 127.0.0.1; the first call builds its image.

    Building (debootstrap, as root, ~2 min) is cached; booting under software emulation takes ~25 s. Writes
    FOLDER/hosts.yaml: then `./socklab run-all --hosts .vm/hosts.yaml`, and `./socklab lab-vm-down` powers it
    off."""
    from testbed.vm import DEFAULT_CACHE, Vm
    # plain print for progress: the guest's console lines ("[  OK  ]") would read as rich markup
    vm = Vm.up(os.path.abspath(folder), cache_dir=cache or DEFAULT_CACHE, progress=print, timeout=float(timeout))
    console().print("inventory: {}\nnext: ./socklab run-all --hosts {}".format(vm.inventory, vm.inventory))


@task(help={"folder": "the VM's folder (default .vm/)"})
def lab_vm_down(c, folder=VM):
    """Power off the VM lab-vm-up started and remove its files (the cached image stays for the next time)."""
    from testbed.vm import down
    down(os.path.abspath(folder))
    console().print("VM in {} is down".format(folder))


@task(iterable=["where"], help={
    "rounds": "how many times to run each measurement, 1-1000 (default 3)",
    "where": "the cases of the 1-vs-8-hosts runs (default: proto=tcp, state=LISTEN,TIME_WAIT); repeatable",
})
def bench(c, rounds=3, where=None):
    """Print speed figures: bind_matrix cells/s here, quiet and with 100,000 TIME_WAITs, beside the floor; witness
    reads per case; load + judge + report of 1,000,000 rows; history over 365 nightly runs; run-all over 1 and 8
    lab hosts; cells/s in a VM; socketpair_churn's pairs/s and unix_sockets' connects/s.

    The TIME_WAITs, lab hosts and the VM need root: a network namespace of bench's own holds the TIME_WAITs while
    the agent runs inside it (removed after); 8 lab hosts in network namespaces (as lab-up does), then the Debian 12
    VM (as lab-vm-up does: the first time builds its image, ~2 min); all are removed after. The labs' own figures
    come last: socketpair_churn leaves ~90,000 TIME_WAITs for a minute. Targets: >= 5,000 cells/s for the whole
    matrix, >= 80% of that with 100,000 TIME_WAITs; 1,000,000 rows analysed in <= 5 s and <= 1.5 GB; history over
    365 runs in <= 10 s; 8 hosts in at most 1.5x the time of one."""
    from analysis.bench import history_at_scale, report_at_scale
    from collect import bench as figures
    from collect.runs import checked_selection
    where = where or ["proto=tcp", "state=LISTEN,TIME_WAIT"]
    checked_selection(["bind_matrix"], where)
    out = console()
    out.print("machine: " + machine_summary())
    figures.print_agent_figures(out, rounds)
    with tempfile.TemporaryDirectory() as folder:
        real = figures.local_run(folder)
        rows, seconds, megabytes = report_at_scale(real, ARCHIVE, EXPECTATIONS)
        out.print("analysis of a synthetic run of 100 hosts + the archive, {:,} rows: {} = {:.2f} s (target <= 5 s); "
                  "peak memory {:,.0f} MB (target <= 1,536 MB)".format(rows, ", ".join(
                      "{} {:.2f} s".format(step, value) for step, value in seconds.items()), sum(seconds.values()),
                      megabytes))
        history_seconds, runs, changes = history_at_scale(real)
        out.print("history --host over {} nightly runs of 8,000 cases: {:.1f} s, {:,} changes (target <= 10 s)".format(
            runs, history_seconds, changes))
    if os.geteuid() == 0:
        lab_host_figures(out, figures, where, rounds)
    else:
        out.print("run-all over 1 and 8 lab hosts, and the VM: skipped (lab hosts need root)")
    for lab, lab_where, measure, unit in figures.LAB_FIGURES:
        for case, outcome, value in figures.lab_figures(lab, lab_where, measure):
            out.print("{} {}: {} {} (outcome {})".format(lab, case, value, unit, outcome))


def machine_summary():
    model = ""
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as stream:
            model = next((line.split(":", 1)[1].strip() for line in stream if line.startswith("model name")), "")
    return "{} ({} cores), {} {}, Python {}".format(model or platform.processor() or platform.machine(),
                                                     os.cpu_count(), platform.system(), platform.release(),
                                                     platform.python_version())


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

    Bring FILE back and store it with `./socklab import FILE --host NAME`."""
    from collect.agent import build
    from formats.errors import UserError
    name, data, sha256 = build()
    try:
        with open(out, "wb") as stream:
            stream.write(data)
    except OSError as exc:
        raise UserError(exc.strerror or str(exc), path=out, field="--out") from None
    console().print("{}: {} ({} bytes, sha256 {})".format(out, name, len(data), sha256))


@task(help={"out": "the file to write (default .github/workflows/labs.yml, in the directory ./socklab was started in)",
            "force": "replace a different file that is there"})
def workflow(c, out=None, force=False):
    """Write the workflow that runs the agent on GitHub-hosted runners (Windows Server 2022 and 2025, macOS 14 and
    15, Ubuntu 24.04, FreeBSD 14 in a VM) and imports their output as one run with its report, for your repository.

    It is this checkout's .github/workflows/labs.yml, byte for byte; a different file already at --out is left
    alone unless --force."""
    from collect.workflow import DEFAULT_OUT, write
    console().print(write(out or DEFAULT_OUT, force))


@task(help={"args": "extra pytest arguments, e.g. -k witness",
            "slow": "also the slow tests, which boot a QEMU VM (minutes)"})
def test(c, args="", slow=False):
    """Run the test suite (pytest); --slow adds the tests that boot a lab VM."""
    with c.cd(HERE):
        c.run("{} -m pytest {}".format(sys.executable, args), pty=False, env={"SOCKLAB_SLOW": "1"} if slow else {})
