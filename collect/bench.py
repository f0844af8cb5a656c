"""Speed figures of the agent and the controller for `./socklab bench`: printed, never asserted (a test suite
must not fail on a busy machine). The analysis's figures are analysis/bench.py's.

- the agent: the whole bind matrix as the agent runs it (every prober, witness on every case), in cells per second,
  on this machine as it is, and inside a network namespace of its own that holds 100,000 TIME_WAIT entries (made
  for it, removed after: root); the floor beside them (the same cases' states driven by events in one process,
  the second bind in the same process, no witness) and each figure's ratio to it; the requests each witness reader
  makes of the OS per case (sock_diag and /proc/net on this machine's matrix; the BSD, macOS and Windows netstat
  readers on recorded listings, tests/data/netstat); socketpair_churn's socket pairs per second and unix_sockets'
  connects per second (figures the labs measure);
- the controller: run-all's wall time over 1 and over 8 lab hosts in network namespaces (testbed/), each a real
  sshd, and the ratio of the two (the target: 8 hosts take at most 1.5x the time of one);
- a real run of this machine's whole bind matrix, which analysis/bench.py grows into a 1,000,000-row run;
- bind_matrix cells per second inside a Debian 12 VM under QEMU's software emulation (testbed.vm).
"""
import contextlib
import os
import subprocess
import sys
import tempfile
import time

from rich.console import Console

from collect import inventory as inventories
from collect.inventory import Host
from collect.runner import new_job, run_hosts
from collect.store import RunStore
from collect.transports import for_host
from formats import hostlog, records, rundir


AGENT_HOME = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cells_per_second(launcher=(), workers=None):
    """(cells, seconds, witness method) of the whole bind matrix as the agent runs it by hand (every prober, witness
    on every case), from its plan record to its end record; under `launcher` (["ip", "netns", "exec", NAME]); in
    `workers` processes (default: the agent's, one per core)."""
    command = list(launcher) + [sys.executable, "-m", "labs", "--lab", "bind_matrix"] + (
        ["--workers", str(workers)] if workers else [])
    cases, started, witness = 0, None, None
    with subprocess.Popen(command, cwd=AGENT_HOME, stdout=subprocess.PIPE, text=True) as agent:
        for line in agent.stdout:
            record = records.parse(line)
            if record["record"] == records.CASE:
                cases += 1
            elif record["record"] == records.PLAN:
                started = time.perf_counter()
            elif record["record"] == records.HOST:
                witness = record.get("witness")
        seconds = time.perf_counter() - started
    if agent.returncode != 0:
        raise RuntimeError("{} exited with status {}".format(" ".join(command), agent.returncode))
    return cases, seconds, witness


def floor_cells_per_second(host):
    """(cells, seconds) of the floor: every case of the matrix driven into its state by events in this one process,
    its second socket's bind (and listen) tried in the same process, no witness and no prober process."""
    from labs import bind_matrix
    from labs.outcomes import recorded
    from labs.prober import try_second
    cases = list(bind_matrix.cases(host))
    context = bind_matrix.Context(host)
    try:
        started = time.perf_counter()
        for params in cases:
            earlier = bind_matrix.Earlier(context, params)
            try:
                with recorded({}):  # a case this host cannot build costs what it cost
                    bind_matrix.DRIVERS[params["proto"], params["state"]](earlier)
                    try_second(context.options, bind_matrix.second_request(earlier))
            finally:
                earlier.close()
        return len(cases), time.perf_counter() - started
    finally:
        context.close()


def sockstat_time_waits(text):
    """The TIME_WAIT count in the text of /proc/net/sockstat ("TCP: inuse 3 orphan 0 tw 812 alloc 4 mem 1")."""
    for line in text.splitlines():
        fields = line.split()
        if fields[:1] == ["TCP:"] and "tw" in fields:
            return int(fields[fields.index("tw") + 1])
    raise RuntimeError("no TCP line with a tw count in /proc/net/sockstat")


def make_time_waits(count, listeners=128):
    """Loopback connections whose server end closes first, each leaving a TIME_WAIT on one of `listeners` listener
    ports (a busy server's ports hold them so; the ephemeral range stays free), made until this network
    namespace's table holds `count` TIME_WAITs; returns how many it holds. A client port that comes round to a
    listener again may recycle an old TIME_WAIT, hence the count, not the connections, decides when to stop."""
    import socket
    servers = []
    try:
        for _ in range(listeners):
            server = socket.socket()
            server.bind(("127.0.0.1", 0))
            server.listen(512)
            servers.append(server)
        made = 0
        for _round in range(4 * count // 10000 + 1):
            for number in range(10000):
                with socket.socket() as client:
                    client.connect(servers[number % listeners].getsockname())
                    server_end, _ = servers[number % listeners].accept()
                    server_end.close()  # the active closer holds the TIME_WAIT
                    client.recv(1)
            with open("/proc/net/sockstat") as stream:
                made = sockstat_time_waits(stream.read())
            if made >= count:
                return made
        raise RuntimeError("only {} TIME_WAITs after {} connections".format(made, 4 * count))
    finally:
        for server in servers:
            server.close()


@contextlib.contextmanager
def time_wait_namespace(count):
    """A network namespace of its own (loopback only: no link leaves it) holding at least `count` TIME_WAIT
    entries; yields (the `ip netns exec` launcher, the count, a function that counts them again). The namespace, and
    everything in it, is removed after: the machine is left as it was (root)."""
    name = "socklab-bench-{}".format(os.getpid())
    launcher = ["ip", "netns", "exec", name]
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(launcher + ["ip", "link", "set", "lo", "up"], check=True)
        # room for them all (the default in a namespace may be less): a setting of this namespace alone
        subprocess.run(launcher + ["sysctl", "-qw", "net.ipv4.tcp_max_tw_buckets={}".format(2 * count)], check=True)
        code = "import sys; from collect.bench import make_time_waits; print(make_time_waits(int(sys.argv[1])))"
        made = subprocess.run(launcher + [sys.executable, "-c", code, str(count)], cwd=AGENT_HOME, check=True,
                              capture_output=True, text=True).stdout

        def now():
            return sockstat_time_waits(subprocess.run(launcher + ["cat", "/proc/net/sockstat"], check=True,
                                                      capture_output=True, text=True).stdout)
        yield launcher, int(made), now
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


def reads_per_case(host, method, workers=1):
    """({kind: requests per case}, cases, batch size) of the witness reader `method` over the whole matrix, in
    this process, in the batches the agent makes with `workers` workers (every prober)."""
    from labs import bind_matrix
    cases = list(bind_matrix.cases(host))
    size = bind_matrix.batch_size(host, workers)
    context = bind_matrix.Context(dict(host, witness=method))
    try:
        for start in range(0, len(cases), size):
            bind_matrix.run_batch(context, cases[start:start + size])
        return {kind: count / len(cases) for kind, count in sorted(context.witness.reads.items())}, len(cases), size
    finally:
        context.close()


# Recorded listings (tests/data/netstat/README.md says where each was recorded) and the reader that parses them.
RECORDED_NETSTAT = (
    ("freebsd", "FreeBSD 12 netstat -an", "freebsd-12_netstat-an_jc.txt"),
    ("darwin", "macOS 10.14.6 netstat -An", "macos-10.14.6_netstat-An_jc.txt"),
    ("windows", "Windows 10 netstat -aon", "windows-10_netstat-aon_jc.txt"),
)
RECORDED = os.path.join(AGENT_HOME, "tests", "data", "netstat")


@contextlib.contextmanager
def recorded_netstat(sample):
    """A `netstat` first on PATH, for this process, that prints a recorded listing whatever it is asked."""
    with tempfile.TemporaryDirectory() as folder:
        program = os.path.join(folder, "netstat")
        with open(program, "w") as stream:
            stream.write("#!/bin/sh\ncat '{}'\n".format(os.path.join(RECORDED, sample)))
        os.chmod(program, 0o755)
        path = os.environ.get("PATH", "")
        os.environ["PATH"] = folder + os.pathsep + path
        try:
            yield
        finally:
            os.environ["PATH"] = path


def recorded_reads_per_case(os_family, sample, size):
    """netstat runs per case of the `os_family` reader for one batch of `size` TCP ports (1 to size) fed a recorded
    listing: each port settles at the first read, as a batch of cases already in their states does."""
    from labs.witness import Watch, Witness, watch
    with recorded_netstat(sample), Witness(os_family) as reader:
        watches = [Watch("tcp", port) for port in range(1, size + 1)]
        first = reader.read(watches)
        reader.reads.clear()
        watch(reader, watches, lambda index, reading: reading.states == first[index].states, 5.0)
        return reader.reads["netstat"] / size


def print_agent_figures(out, rounds):
    """Prints the agent's figures on the console `out`: the load, the TIME_WAITs the machine holds, the floor, the
    whole bind matrix quiet (the agent's workers, and one process), with 100,000 TIME_WAITs in a network
    namespace of its own (root) and inside gVisor (root, runsc), and the witness readers' requests per case."""
    from labs import bind_matrix, hostfacts
    from labs import workers as labs_workers
    from labs.sockopts import platform_family
    from labs.witness import Witness
    if hasattr(os, "getloadavg"):
        out.print("load average (1, 5, 15 min) at the start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    waiting = time_wait_entries()
    if waiting:
        out.print("TIME_WAIT entries on this machine now: {:,} (a run of socketpair_churn leaves ~90,000 for a "
                  "minute)".format(waiting))
    with Witness(platform_family()) as witness:
        host = hostfacts.collect(witness.method)
    floor = max(cases / seconds for cases, seconds in (floor_cells_per_second(host) for _ in range(rounds)))
    out.print("floor: the matrix's {:,} cases driven by events in one process, second bind in the same process, no "
              "witness: {:,.0f} cells/s (best of {})".format(len(list(bind_matrix.cases(host))), floor, rounds))
    workers = labs_workers.count()
    quiet = bind_matrix_rounds(out, cells_per_second, rounds, "quiet, {} worker(s)".format(workers), floor)
    alone = bind_matrix_rounds(out, lambda: cells_per_second(workers=1), rounds, "quiet, one process",
                               floor)
    out.print("target: >= 5,000 cells/s quiet (best round {:,.0f}); {} workers / one process: {:.2f}x".format(
        quiet, workers, quiet / alone))
    if os.geteuid() == 0:
        with time_wait_namespace(100_000) as (launcher, made, now):
            busy = bind_matrix_rounds(out, lambda: cells_per_second(launcher), rounds,
                                      "{:,} TIME_WAIT entries in its network namespace, {} worker(s)".format(
                                          made, workers), floor)
            left = now()
        out.print("with TIME_WAITs / quiet: {:.0%} (target >= 80%); {:,} of them left when the rounds ended; the "
                  "namespace is removed".format(busy / quiet, left))
    else:
        out.print("bind_matrix with 100,000 TIME_WAITs: skipped (its network namespace needs root)")
    gvisor_figure(out, rounds, floor)
    for method in ("sock_diag", "/proc/net") if platform_family() == "linux" else ():
        reads, cases, size = reads_per_case(host, method, workers)
        out.print("witness reads per case, {} (the whole matrix, {:,} cases in batches of {}): {}".format(
            method, cases, size, ", ".join("{} {:.3f}".format(kind, count) for kind, count in reads.items())))
    size = bind_matrix.batch_size(host, workers)
    for os_family, name, sample in RECORDED_NETSTAT if os.name == "posix" else ():
        out.print("witness reads per case, {} (recorded; a batch of {} TCP cases in their states): {:.4f} netstat "
                  "runs".format(name, size, recorded_reads_per_case(os_family, sample, size)))


def gvisor_figure(out, rounds, floor):
    """The whole bind matrix inside gVisor (`runsc --network=none do`, Debian's runsc): its cells/s, or why it was
    skipped (runsc needs root, and a machine where it can start a sandbox)."""
    from testbed import system
    from testbed.errors import LabError
    if os.geteuid() != 0:
        out.print("bind_matrix inside gVisor: skipped (`runsc do` runs a sandbox as root only)")
        return
    try:
        runsc = system.require_runsc()
    except LabError as exc:
        out.print("bind_matrix inside gVisor: skipped ({})".format(exc))
        return
    trial = subprocess.run([runsc, "--network=none", "do", "/bin/true"], capture_output=True, text=True)
    if trial.returncode != 0:
        out.print("bind_matrix inside gVisor: skipped (runsc cannot run a sandbox here: {})".format(
            (trial.stderr.strip().splitlines() or ["exit status {}".format(trial.returncode)])[-1]))
        return
    bind_matrix_rounds(out, lambda: cells_per_second([runsc, "--network=none", "do"]), rounds,
                       "inside gVisor (runsc --network=none do, its netstack)", floor)


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


# Figures the labs measure themselves: (lab, --where, the measure column, its unit).
LAB_FIGURES = (
    ("socketpair_churn", [], "pairs_per_second", "pairs/s"),
    ("unix_sockets", ["scenario=race"], "connects_per_second", "connects/s"),
)


def time_wait_entries():
    """How many TIME_WAIT entries this machine's connection table holds (0 where it cannot be read)."""
    from labs.sockopts import platform_family
    from labs.witness import Witness, WitnessError
    try:
        with Witness(platform_family()) as witness:
            return witness.count("tcp", "TIME_WAIT", range(1, 65536))
    except (OSError, WitnessError):
        return 0


def lab_figures(lab, where, measure):
    """[(case_id, outcome, the case's `measure`)] of one local run of a lab's cases selected by `where`."""
    with for_host(Host("local", {"transport": "local"})).run_agent({"labs": [lab], "where": where}) as lines:
        found = [records.parse(line) for line in lines]
    return [(record["case_id"], record["outcome"], record.get(measure)) for record in found
            if record["record"] == records.CASE]


def end_records(store):
    """The agents' end records of a stored run (cases, seconds, cpu_seconds), one per host."""
    return [end for name in store.manifest["hosts"] for end in hostlog.read(rundir.log_path(store.path, name)).ends]


def run_wall_time(hosts, inventory, where, folder):
    """(seconds, cases, agents' CPU seconds, the stored run) of the collection part of run-all (connect, push if
    needed, run, store every line)."""
    store = RunStore.create(folder, [host.name for host in hosts], ["bind_matrix"], where)
    jobs = [new_job(host, ["bind_matrix"], where) for host in hosts]
    started = time.perf_counter()
    with open(os.devnull, "w") as quiet:
        run_hosts(jobs, store, lambda host: for_host(host, inventory.hosts), parallel=len(hosts),
                  console=Console(file=quiet))
    seconds = time.perf_counter() - started
    failed = [name for name, entry in store.manifest["hosts"].items() if entry["status"] != "completed"]
    if failed:
        raise RuntimeError("bench run failed on {}: {}".format(failed[0], store.manifest["hosts"][failed[0]]))
    ends = end_records(store)
    return seconds, sum(end["cases"] for end in ends), sum(end.get("cpu_seconds", 0) for end in ends), store


def hosts_wall_times(where, counts=(1, 8), rounds=3):
    """{count: [(seconds, cases, agents' CPU seconds) per round]} over that many namespace hosts; the agent is
    pushed before timing."""
    from testbed.lab import Lab
    with tempfile.TemporaryDirectory() as folder:
        lab = Lab.up(os.path.join(folder, "lab"), count=max(counts))
        try:
            inventory = inventories.load(lab.inventory)
            hosts = inventory.select()
            run_wall_time(hosts, inventory, where, os.path.join(folder, "runs"))  # pushes the agent everywhere
            return {count: [run_wall_time(hosts[:count], inventory, where, os.path.join(folder, "runs"))[:3]
                            for _ in range(rounds)] for count in counts}
        finally:
            lab.down()


def local_run(out):
    """A real run of this machine's whole bind matrix, stored under `out`; returns its path."""
    host = Host("local", {"transport": "local"})
    store = RunStore.create(out, ["local"], ["bind_matrix"])
    with open(os.devnull, "w") as quiet:
        run_hosts([new_job(host, ["bind_matrix"], [])], store, for_host, console=Console(file=quiet))
    return store.path


def vm_cells_per_second(where, progress=print):
    """(cases, the agent's seconds from its start to its end record, the guest's kernel) of bind_matrix in the
    Debian 12 VM (testbed.vm), booted for it and powered off after."""
    from testbed.vm import Vm
    with tempfile.TemporaryDirectory() as folder:
        vm = Vm.up(os.path.join(folder, "vm"), progress=progress)
        try:
            inventory = inventories.load(vm.inventory)
            _, _, _, store = run_wall_time(inventory.select(), inventory, where, os.path.join(folder, "runs"))
            (end,) = end_records(store)
            release = hostlog.read(rundir.log_path(store.path, vm.name)).facts["os_release"]
            return end["cases"], end["seconds"], release
        finally:
            vm.down()
