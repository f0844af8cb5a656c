"""The tuple_reuse lab on this machine's real sockets: bind and connect over a TIME_WAIT 4-tuple, the facts recorded
beside them (tcp_tw_reuse, timestamps), the witness gate, and what a host without TCP_INFO or an option records."""
import contextlib
import functools
import errno
import json
import os
import re
import shutil
import socket
import subprocess
import sys

import pytest

import labs
from labs import connection, hostfacts, tuple_reuse
from labs.connection import Loopback
from labs.sockopts import Options, platform_family
from tests.conftest import REPO, case_params

LINUX = platform_family() == "linux"
needs_linux = pytest.mark.skipif(not LINUX, reason="Linux outcomes")
needs_namespaces = pytest.mark.skipif(
    not LINUX or os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"),
    reason="a private network namespace (unshare -n, ip) needs Linux and root")


@pytest.fixture(scope="module")
def context(host):
    with contextlib.closing(tuple_reuse.Context(host)) as context:
        yield host, context


params = functools.partial(case_params, tuple_reuse)  # params(family, ...): a case


def run_agent(*prefix):
    """The lab's case records from the agent, run as a subprocess (after `prefix`, e.g. inside a namespace)."""
    command = list(prefix) + [sys.executable, "-m", "labs", "--lab", "tuple_reuse"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120, check=True)
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert records[0]["record"] == "host" and records[-1]["record"] == "end"
    return [record for record in records if record["record"] == "case"]


def test_the_table_has_each_option_the_host_knows(context):
    host, _ = context
    cases = list(tuple_reuse.cases(host))
    assert len(cases) == 2 * (1 + len(host["options"])) * 2
    assert len({labs.case_id(tuple_reuse, case) for case in cases}) == len(cases)
    assert {case["opts"] for case in tuple_reuse.cases(dict(host, options=["SO_REUSEADDR"]))} == {
        "none", "SO_REUSEADDR"}


@needs_linux
@pytest.mark.parametrize("family", tuple_reuse.FAMILIES)
@pytest.mark.parametrize("target", tuple_reuse.TARGETS)
@pytest.mark.parametrize("opts", ["none", "SO_REUSEADDR", "SO_REUSEPORT"])
def test_linux_over_a_time_wait_4_tuple(context, family, opts, target):
    """socket(7) NOTES for the plain bind; with timestamps (the host default), tcp_twsk_unique() takes the TIME_WAIT
    4-tuple over after an explicit bind(), whatever tcp_tw_reuse says; another remote is a new 4-tuple."""
    host, context = context
    record = tuple_reuse.run_case(context, params(family, opts, target))
    assert record["witness"] == "TIME_WAIT"
    assert record["tcp_tw_reuse"] == host["sysctls"]["net.ipv4.tcp_tw_reuse"]
    assert record["timestamps"] == ("no" if host["sysctls"]["net.ipv4.tcp_timestamps"] == "0" else "yes")
    if opts == "none":
        assert (record["outcome"], record["bind"], record.get("connect")) == ("EADDRINUSE", "EADDRINUSE", None)
    elif record["timestamps"] == "yes" or target == "other_remote":
        assert (record["outcome"], record["bind"], record["connect"]) == ("ok", "ok", "ok")
    else:
        assert (record["outcome"], record["connect"]) == ("EADDRNOTAVAIL", "EADDRNOTAVAIL")


@needs_namespaces
@pytest.mark.parametrize("tw_reuse", ["0", "1", "2"])
def test_without_timestamps_the_same_4_tuple_is_refused_whatever_tcp_tw_reuse_says(tw_reuse):
    """In a private network namespace with its own sysctls: source G's "otherwise EADDRNOTAVAIL"."""
    script = "ip link set lo up && sysctl -qw net.ipv4.tcp_timestamps=0 net.ipv4.tcp_tw_reuse={} && exec \"$@\"".format(
        tw_reuse)
    cases = run_agent("unshare", "-n", "sh", "-c", script, "sh")
    reused = [case for case in cases if case["opts"] != "none"]
    assert {(case["tcp_tw_reuse"], case["timestamps"]) for case in cases} == {(tw_reuse, "no")}
    assert {(case["target"], case["outcome"]) for case in reused} == {("same_remote", "EADDRNOTAVAIL"),
                                                                      ("other_remote", "ok")}


def test_established_connections_are_aborted_and_nothing_else_is_left(context):
    """After a case whose new connection was made, only A's TIME_WAIT is in the table on A, B and C."""
    _, context = context
    record = tuple_reuse.run_case(context, params("inet", "SO_REUSEADDR", "other_remote"))
    assert record["outcome"] == "ok"
    ports = [int(port) for port in re.findall(r"\b[ABC] (\d+)", record["detail"])]
    assert len(ports) == 3
    assert [context.witness.states("tcp", port) for port in ports] == [("TIME_WAIT",), (), ()]


def test_a_time_wait_not_on_port_a_is_inconclusive(context, monkeypatch):
    """The server end closes first instead: its port B holds the TIME_WAIT, A holds nothing."""
    _, context = context
    client_first = Loopback.close_first
    monkeypatch.setattr(Loopback, "close_first", lambda self, closer, peer: client_first(self, peer, closer))
    monkeypatch.setattr(connection, "STATE_DEADLINE", 0.2)
    record = tuple_reuse.run_case(context, params("inet", "SO_REUSEADDR", "same_remote"))
    assert record["outcome"] == "inconclusive"
    assert record["witness"] == ""
    assert "(shows LISTEN+TIME_WAIT)" in record["detail"]
    assert "bind" not in record


def test_a_host_without_tcp_info_records_unknown_timestamps(context, monkeypatch):
    _, context = context
    monkeypatch.delattr(socket, "TCP_INFO", raising=False)
    record = tuple_reuse.run_case(context, params("inet", "SO_REUSEADDR", "other_remote"))
    assert record["timestamps"] == "unknown"
    assert record["outcome"] == "ok"


def test_an_option_the_host_refuses_records_unsupported(context, monkeypatch):
    _, context = context

    def refuse(self, sock, names):
        if names:
            raise OSError(errno.ENOPROTOOPT, "Protocol not available")
    monkeypatch.setattr(Options, "enable", refuse)
    record = tuple_reuse.run_case(context, params("inet", "SO_REUSEPORT", "same_remote"))
    assert record["outcome"] == "unsupported"
    assert "ENOPROTOOPT" in record["detail"]


def test_a_host_without_sysctls_records_an_empty_tcp_tw_reuse():
    host = hostfacts.collect("test")
    context = tuple_reuse.Context(dict(host, sysctls={}))
    try:
        assert context.tcp_tw_reuse == ""
    finally:
        context.close()


def test_the_agent_runs_the_lab(context):
    host, _ = context
    cases = run_agent()
    assert [case["case_id"] for case in cases] == [labs.case_id(tuple_reuse, case)
                                                   for case in tuple_reuse.cases(host)]
    assert all(case["witness"] == "TIME_WAIT" for case in cases)
