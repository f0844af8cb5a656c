"""Shared fixtures: the checkout, ./socklab run as a user runs it (a subprocess in the checkout), and what the
tests over real sshd lab hosts (testbed/) share."""
import json
import os
import subprocess
import sys

import pytest
import yaml

from labs import hostfacts
from labs.polling import poll
from labs.sockopts import platform_family
from labs.witness import Witness

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The least host record a log may begin with (formats.records: what a host is).
HOST_RECORD = {"record": "host", "os_family": "linux", "os_release": "6.1.0", "os_version": "#1 SMP"}


def socklab_command(*args):
    """The command line of `./socklab ARGS` without its shell script: the program it runs (cli/)."""
    return [sys.executable, "-m", "cli"] + list(args)


@pytest.fixture
def invoke():
    """invoke(*args) -> CompletedProcess of `./socklab ARGS` run in the checkout, as the README's commands do."""
    def run(*args, timeout=600):
        return subprocess.run(socklab_command(*args), cwd=REPO, capture_output=True, text=True, timeout=timeout)
    return run


@pytest.fixture(scope="session")
def host():
    """This machine's host facts, as the agent's first record gives them (a lab's Context is made from them)."""
    with Witness(platform_family()) as witness:
        return hostfacts.collect(witness.method)


def case_params(lab, *values):
    """A case of `lab` (its module) from its parameter values in PARAMETERS order."""
    return dict(zip(lab.PARAMETERS, values))


def in_own_network(command, sysctls=None):
    """`command` run in a network namespace of its own (loopback only, up, with these network sysctls set), so that
    no other program on this machine has a socket on its ports: `unshare --net`, which takes root."""
    steps = ["ip link set lo up"] + ["echo {} > /proc/sys/{}".format(int(value), name.replace(".", "/"))
                                     for name, value in (sysctls or {}).items()]
    return ["unshare", "--net", "sh", "-c", " && ".join(steps) + ' && exec "$@"', "sh"] + list(command)


# The lab hosts are real sshds, users and network namespaces: making them takes root.
requires_root = pytest.mark.skipif(os.geteuid() != 0, reason="lab hosts (sshd, users, namespaces) need root")


def write_inventory(path, hosts, **sections):
    with open(str(path), "w") as stream:
        yaml.safe_dump(dict(hosts=hosts, **sections), stream)
    return str(path)


def only_run(out):
    """(path, manifest) of the one run directory under `out`."""
    (run_dir,) = [path for path in out.iterdir() if (path / "manifest.json").exists()]
    return str(run_dir), json.loads((run_dir / "manifest.json").read_text())


def cases_in(out, host, at_least, deadline=60):
    """Waits (bounded) until the run under `out` holds at least that many cases from `host`; returns the count."""
    def count():
        logs = [os.path.join(out, run, host + ".jsonl") for run in os.listdir(str(out))] if os.path.isdir(
            str(out)) else []
        logs = [log for log in logs if os.path.exists(log)]
        if not logs:
            return 0
        with open(logs[0]) as stream:
            return stream.read().count('"record": "case"')
    return poll(count, lambda found: found >= at_least, deadline)


def leftovers_gone(lab, name, deadline=40):
    """Asserts that the lab host comes to have no agent process and no work folder (only agent files in
    ~/.socklab). Bounded wait: an agent whose controller went away ends itself within its watchdog time."""
    def leftovers():
        processes = lab.processes(name, "socklab-agent") + lab.processes(name, "labs.prober")
        return processes, [entry for entry in lab.home_entries(name) if not entry.endswith(".pyz")]
    found = poll(leftovers, lambda found: not any(found), deadline)
    assert not any(found), "left on {}: processes {}, files {}".format(name, *found)
    return True
