"""The listener_drain lab on this machine's real sockets: the queues it fills are counted by the OS, and what the
closing listener's connections became follows net.ipv4.tcp_migrate_req (run in network namespaces of the tests'
own, with the sysctl at 0 and at 1, when root); a host that cannot count a queue (gVisor) is inconclusive; nothing
is left behind."""
import json
import os
import subprocess
import sys

import pytest

from labs import endpoints, listener_drain
from labs.polling import poll
from labs.sockopts import platform_family
from tests.conftest import REPO, in_own_network
from tests.test_gvisor_expectations import runsc  # noqa: F401 (a fixture: installs Debian's runsc when missing)

needs_linux = pytest.mark.skipif(platform_family() != "linux", reason="tcp_migrate_req and TCP_INFO are Linux's")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="a network namespace of its own needs root")
ONE_CASE = ["--where", "family=inet", "--where", "addr=loopback", "--where", "opts=SO_REUSEPORT"]


def run_agent(*arguments, migrate_req=None, launcher=()):
    """The lab's case records from an agent run here, or in a namespace of its own with tcp_migrate_req set."""
    command = list(launcher) + [sys.executable if not launcher else "python3", "-m", "labs", "--lab",
                                "listener_drain"] + list(arguments)
    if migrate_req is not None:
        command = in_own_network(command, {"net.ipv4.tcp_migrate_req": migrate_req})
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, check=True)
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert records[0]["record"] == "host" and records[-1]["record"] == "end"
    return [record for record in records if record["record"] == "case"]


def test_the_cases_are_the_options_that_share_a_listening_port():
    linux = list(listener_drain.cases({"options": ["SO_REUSEADDR", "SO_REUSEPORT"]}))
    assert sorted({case["opts"] for case in linux}) == ["SO_REUSEADDR+SO_REUSEPORT", "SO_REUSEPORT"]
    assert len(linux) == 2 * 2 * 2 and {case["listeners"] for case in linux} == {"2"}
    freebsd = {case["opts"] for case in listener_drain.cases(
        {"options": ["SO_REUSEADDR", "SO_REUSEPORT", "SO_REUSEPORT_LB"]})}
    assert {"SO_REUSEPORT", "SO_REUSEPORT_LB", "SO_REUSEPORT+SO_REUSEPORT_LB"} <= freebsd
    assert list(listener_drain.cases({"options": ["SO_REUSEADDR", "SO_EXCLUSIVEADDRUSE"]})) == []  # Windows


def assert_accounted(case):
    """Every count the case gives adds up: the queues hold every client, the first one's were moved, reset or lost."""
    queues = [int(part) for part in case["split"].split("/")]
    assert len(queues) == int(case["listeners"]) and sum(queues) == case["connected"]
    assert case["queued"] == queues[0]
    assert case["moved"] + case["reset"] + case["lost"] == case["queued"]


@needs_linux
@needs_root
@pytest.mark.parametrize("migrate_req, drain", [(0, "reset"), (1, "moved")])
def test_a_closing_listener_s_queue_follows_tcp_migrate_req(migrate_req, drain):
    """Each case with the sysctl at 0: the queued connections are reset; at 1: moved to the other listener. Every
    listener's queue held connections before (spread all), each counted by the kernel, none lost."""
    cases = run_agent(migrate_req=migrate_req)
    assert len(cases) == len(list(listener_drain.cases({"options": ["SO_REUSEADDR", "SO_REUSEPORT"]})))
    for case in cases:
        assert (case["outcome"], case["witness"], case["tcp_migrate_req"]) == ("ok", "LISTEN+LISTEN",
                                                                              str(migrate_req)), case
        assert (case["spread"], case["drain"], case["lost"]) == ("all", drain, 0), case
        assert_accounted(case)
        assert case["queued"] >= listener_drain.QUEUED


@needs_linux
def test_the_sysctl_of_this_namespace_is_recorded_and_decides():
    """Without a namespace of its own: the value the case read is the one /proc/sys shows, and the drain is what
    it says (0: reset, anything else: moved)."""
    with open(listener_drain.MIGRATE_REQ) as stream:
        value = stream.read().strip()
    (case,) = run_agent(*ONE_CASE)
    assert case["tcp_migrate_req"] == value
    assert case["drain"] == ("reset" if value == "0" else "moved")
    assert_accounted(case)


@needs_linux
@needs_root
def test_three_listeners_share_the_queue_and_the_closed_one_s_go_to_the_other_two():
    (case,) = run_agent(*ONE_CASE, "--where", "listeners=3", migrate_req=1)
    assert (case["listeners"], case["witness"], case["spread"], case["drain"]) == (
        "3", "LISTEN+LISTEN+LISTEN", "all", "moved")
    assert_accounted(case)


def test_a_host_that_cannot_count_a_queue_is_inconclusive(runsc):  # noqa: F811
    """gVisor answers TCP_INFO on a listener with the queue length left zero (labs.sockopts), so the agent, knowing
    it runs in gVisor, does not read it there: the queues are unknown and the case claims nothing."""
    (case,) = run_agent(*ONE_CASE, launcher=(runsc, "--network=none", "do"))
    assert case["outcome"] == "inconclusive"
    assert case["detail"] == "this host does not say how many connections a listener holds queued"
    assert "drain" not in case and "spread" not in case


def open_sockets():
    fds = "/proc/self/fd"
    count = 0
    for fd in os.listdir(fds):
        try:
            count += os.readlink(os.path.join(fds, fd)).startswith("socket:")
        except OSError:
            continue  # closed while listed
    return count


@needs_linux
def test_nothing_is_left_behind(host, monkeypatch):
    """After each case, no socket of the agent is open any more and the port holds nothing (no TIME_WAIT either:
    what is still open at the end is reset)."""
    ports = []

    def fresh_port(options, proto):
        ports.append(real_fresh_port(options, proto))
        return ports[-1]

    real_fresh_port = endpoints.fresh_port
    monkeypatch.setattr(endpoints, "fresh_port", fresh_port)
    context = listener_drain.Context(host)
    try:
        before = open_sockets()
        for params in listener_drain.cases(host):
            assert listener_drain.run_case(context, params)["outcome"] == "ok"
        assert open_sockets() == before
        assert len(ports) == len(list(listener_drain.cases(host)))
        for port in ports:
            assert poll(lambda: context.witness.states("tcp", port), lambda states: not states, 2.0) == ()
    finally:
        context.close()
