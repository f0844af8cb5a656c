"""Speed figures of the agent and the controller for `./socklab bench`: printed, never asserted (a test suite
must not fail on a busy machine). The analysis's figures are analysis/bench.py's.

- the agent: bind_matrix cells per second on this machine (other_process prober, witness on every case);
  socketpair_churn's socket pairs per second and unix_sockets' connects per second (figures the labs measure);
- the controller: run-all's wall time over 1 and over 8 lab hosts in network namespaces (testbed/), each a real
  sshd, and the ratio of the two (the target: 8 hosts take at most 1.5x the time of one);
- a real run of this machine's whole bind matrix, which analysis/bench.py grows into a 1,000,000-row run;
- bind_matrix cells per second inside a Debian 12 VM under QEMU's software emulation (testbed.vm).
"""
import os
import tempfile
import time

from rich.console import Console

from collect import inventory as inventories
from collect.inventory import Host
from collect.runner import new_job, run_hosts
from collect.store import RunStore
from collect.transports import for_host
from formats import hostlog, records, rundir


def cells_per_second(where):
    """(cells, seconds, witness method) of one local run of bind_matrix's cases selected by `where`."""
    cases, started, witness = 0, None, None
    with for_host(Host("local", {"transport": "local"})).run_agent({"labs": ["bind_matrix"], "where": where}) as lines:
        for line in lines:
            record = records.parse(line)
            if record["record"] == records.CASE:
                cases += 1
            elif record["record"] == records.PLAN:
                started = time.perf_counter()
            elif record["record"] == records.HOST:
                witness = record.get("witness")
    return cases, time.perf_counter() - started, witness


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
