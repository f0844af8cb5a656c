"""Speed figures for `invoke bench`: printed, never asserted (a test suite must not fail on a busy machine).

- the agent: bind_matrix cells per second on this machine (other_process prober, witness on every case);
- the controller: run-all's wall time over 1 and over 8 lab hosts in network namespaces (testbed/), each a real
  sshd, and the ratio of the two (the target: 8 hosts take at most 1.5x the time of one).
"""
import json
import os
import tempfile
import time

from rich.console import Console

from collect import inventory as inventories
from collect.inventory import Host
from collect.runner import new_job, run_hosts
from collect.store import RunStore
from collect.transports import for_host


def cells_per_second(where):
    """(cells, seconds, witness method) of one local run of bind_matrix's cases selected by `where`."""
    cases, started, witness = 0, None, None
    with for_host(Host("local", {"transport": "local"})).run_agent({"labs": ["bind_matrix"], "where": where}) as lines:
        for line in lines:
            kind = line[:40]
            if '"record": "case"' in kind:
                cases += 1
            elif '"record": "plan"' in kind:
                started = time.perf_counter()
            elif '"record": "host"' in kind:
                witness = line.rsplit('"witness": "', 1)[1].split('"', 1)[0]
    return cases, time.perf_counter() - started, witness


def agents_cpu_seconds(store):
    """The CPU time the agents and their probers used on the hosts, from their end records."""
    total = 0.0
    for name in store.manifest["hosts"]:
        with open(os.path.join(store.path, name + ".jsonl"), encoding="utf-8") as stream:
            total += sum(json.loads(line).get("cpu_seconds", 0) for line in stream if '"record": "end"' in line)
    return total


def run_wall_time(hosts, inventory, where, folder):
    """(seconds, cases, agents' CPU seconds) of the collection part of run-all (connect, push if needed, run,
    store every line)."""
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
    return seconds, sum(entry["cases"] for entry in store.manifest["hosts"].values()), agents_cpu_seconds(store)


def hosts_wall_times(where, counts=(1, 8), rounds=3):
    """{count: [(seconds, cases, agents' CPU seconds) per round]} over that many namespace hosts; the agent is pushed before timing."""
    from testbed.lab import Lab
    with tempfile.TemporaryDirectory() as folder:
        lab = Lab.up(os.path.join(folder, "lab"), count=max(counts))
        try:
            inventory = inventories.load(lab.inventory)
            hosts = inventory.select()
            run_wall_time(hosts, inventory, where, os.path.join(folder, "runs"))  # pushes the agent everywhere
            return {count: [run_wall_time(hosts[:count], inventory, where, os.path.join(folder, "runs"))
                            for _ in range(rounds)] for count in counts}
        finally:
            lab.down()
