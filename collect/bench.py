"""Speed figures for `invoke bench`: printed, never asserted (a test suite must not fail on a busy machine).

- the agent: the whole bind matrix as the agent runs it (every prober, witness on every case), in cells per second,
  on this machine as it is, and inside a network namespace of its own that holds 100,000 TIME_WAIT entries (made
  for it, removed after: root); the floor beside them (the same cases' states driven by events in one process,
  the second bind in the same process, no witness) and each figure's ratio to it; the requests each witness reader
  makes of the OS per case (sock_diag and /proc/net on this machine's matrix; the BSD, macOS and Windows netstat
  readers on recorded listings, tests/data/netstat); socketpair_churn's socket pairs per second and unix_sockets'
  connects per second (figures the labs measure);
- the controller: run-all's wall time over 1 and over 8 lab hosts in network namespaces (testbed/), each a real
  sshd, and the ratio of the two (the target: 8 hosts take at most 1.5x the time of one);
- the analysis: load + expectations diff + report of a synthetic 1,000,000-row run of 100 hosts (targets: under
  10 s, under 2 GB);
- bind_matrix cells per second inside a Debian 12 VM under QEMU's software emulation (testbed.vm).
"""
import contextlib
import json
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
            kind = line[:40]
            if '"record": "case"' in kind:
                cases += 1
            elif '"record": "plan"' in kind:
                started = time.perf_counter()
            elif '"record": "host"' in kind:
                witness = json.loads(line)["witness"]
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
        records = [json.loads(line) for line in lines]
    return [(record["case_id"], record["outcome"], record.get(measure)) for record in records
            if record.get("record") == "case"]


def end_records(store):
    """The agents' end records of a stored run (cases, seconds, cpu_seconds), one per host."""
    ends = []
    for name in store.manifest["hosts"]:
        with open(os.path.join(store.path, name + ".jsonl"), encoding="utf-8") as stream:
            ends += [json.loads(line) for line in stream if '"record": "end"' in line]
    return ends


def run_wall_time(hosts, inventory, where, folder):
    """(seconds, cases, agents' CPU seconds, the stored run) of the collection part of run-all (connect, push if
    needed, run, store every line)."""
    store = RunStore(folder, [host.name for host in hosts], ["bind_matrix"], where)
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


def synthetic_run(out, source_run, hosts=100, rows=1_000_000, seed=4):
    """A run of `hosts` hosts made from a real run's cases and written as the store writes one (manifest, host
    logs, results.csv): each host gets rows/hosts cases, the real ones repeated with '#n' on the case id where
    there are fewer, and 1% of outcomes flipped between ok and EADDRINUSE so the hosts differ. Returns its path."""
    import numpy as np
    import pandas as pd
    from analysis.results import FACT_COLUMNS, TABLE, load_run, read_host_log, write_csv
    base = load_run(source_run)
    source_host = base["host"].iloc[0]
    base = base[base["host"] == source_host]
    facts, _ = read_host_log(os.path.join(source_run, source_host + ".jsonl"))
    per_host = rows // hosts
    repeat = np.arange(per_host) // len(base)
    one = base.iloc[np.resize(np.arange(len(base)), per_host)].reset_index(drop=True)
    one["case_id"] = one["case_id"].where(repeat == 0, one["case_id"] + "#" + repeat.astype(str))
    names = ["host{:03d}".format(number) for number in range(hosts)]
    store = RunStore(out, names, ["bind_matrix"])
    table = pd.concat([one.assign(host=name, run_id=store.run_id) for name in names], ignore_index=True)
    flip = np.random.default_rng(seed).random(len(table)) < 0.01
    swapped = table["outcome"].map({"ok": "EADDRINUSE", "EADDRINUSE": "ok"})
    table.loc[flip & swapped.notna(), ["outcome", "bind"]] = swapped[flip & swapped.notna()]
    cases = table.drop(columns=["run_id", "host"] + list(FACT_COLUMNS))  # the host record holds the facts
    for name, part in cases.groupby(table["host"], sort=False):
        with open(os.path.join(store.path, name + ".jsonl"), "w", encoding="utf-8") as stream:
            stream.write(json.dumps(facts) + "\n")
            stream.write(part.assign(record="case").to_json(orient="records", lines=True))
            stream.write(json.dumps({"record": "end", "cases": len(part)}) + "\n")
        store.update_host(name, status="completed", cases=len(part))
    store.manifest["ended"] = store.manifest["started"]
    store.save()
    write_csv(table, os.path.join(store.path, TABLE))
    return store.path


def report_figures(run_dir, archive, expectations, out_dir):
    """Seconds of each step (load, judge, report) for a run beside the archive, and the peak memory (MB) of this
    process: call it in a fresh process for a true peak."""
    import resource
    from analysis import report
    from analysis.expectations import judge, load_expectations
    from analysis.results import load_runs, read_manifest, run_dirs
    seconds = {}
    started = time.perf_counter()
    results = load_runs([run_dir] + run_dirs(archive))
    seconds["load"] = time.perf_counter() - started
    started = time.perf_counter()
    judged = judge(results, load_expectations([expectations]))
    seconds["judge"] = time.perf_counter() - started
    started = time.perf_counter()
    report.write(judged, run_dir, read_manifest(run_dir), out_dir)
    seconds["report"] = time.perf_counter() - started
    return len(results), seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def local_run(out):
    """A real run of this machine's whole bind matrix, stored under `out`; returns its path."""
    host = Host("local", {"transport": "local"})
    store = RunStore(out, ["local"], ["bind_matrix"])
    with open(os.devnull, "w") as quiet:
        run_hosts([new_job(host, ["bind_matrix"], [])], store, for_host, console=Console(file=quiet))
    return store.path


def report_at_scale(archive, expectations, hosts=100, rows=1_000_000):
    """(rows, seconds per step, peak MB) of report_figures on a synthetic run made from a real run of this
    machine, measured in a fresh process so that the peak memory is the analysis's alone."""
    with tempfile.TemporaryDirectory() as folder:
        run = synthetic_run(os.path.join(folder, "synthetic"), local_run(os.path.join(folder, "real")), hosts, rows)
        code = ("import json, sys; from collect.bench import report_figures; "
                "print(json.dumps(report_figures(*sys.argv[1:])))")
        done = subprocess.run([sys.executable, "-c", code, run, archive, expectations, os.path.join(folder, "report")],
                              cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), capture_output=True,
                              text=True, check=True)
        return json.loads(done.stdout)


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
            with open(os.path.join(store.path, vm.name + ".jsonl"), encoding="utf-8") as stream:
                release = json.loads(stream.readline())["os_release"]
            return end["cases"], end["seconds"], release
        finally:
            vm.down()
