"""The runtime_defaults lab on this machine's real sockets: the host Python's server helpers, what they set, and
whether their servers share a port or restart over TIME_WAIT (seed 004's restart, here with Python's helpers)."""
import contextlib
import http.server
import json
import os
import socket
import socketserver
import subprocess
import sys

import pandas as pd
import pytest

import labs
from analysis.expectations import judge, load_expectations
from formats import hostlog
from formats.table import COLUMNS
from labs import runtime_defaults
from labs.sockopts import platform_family
from tests.conftest import REPO

needs_linux = pytest.mark.skipif(platform_family() != "linux", reason="the documented Linux rows need Linux")
needs_proc = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open files in /proc")

# What socket(7), bind_timewait and seed 004 say of these helpers on Linux (expectations/runtime_defaults.yaml):
# no copy of a listening server shares its port; only a helper that sets SO_REUSEADDR restarts over TIME_WAIT.
LINUX_SERVING = {
    "create_server": ("EADDRINUSE", "ok"),
    "socketserver_tcp": ("EADDRINUSE", "EADDRINUSE"),
    "http_server": ("EADDRINUSE", "ok"),
    "asyncio_start_server": ("EADDRINUSE", "ok"),
    "asyncio_datagram_endpoint": ("EADDRINUSE", None),
}


@pytest.fixture
def context(host):
    with contextlib.closing(runtime_defaults.Context(host)) as context:
        yield context


def params(helper, family):
    return {"helper": helper, "family": family}


def run_agent():
    """The agent as the local transport runs it: (host record, case records)."""
    done = subprocess.run([sys.executable, "-m", "labs", "--lab", "runtime_defaults"], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=True)
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert records[0]["record"] == "host" and records[-1]["record"] == "end"
    return records, [record for record in records if record["record"] == "case"]


def test_every_helper_in_every_family_it_takes(host):
    cases = list(runtime_defaults.cases(host))
    assert len(cases) == 11 == len({labs.case_id(runtime_defaults, case) for case in cases})
    assert {case["helper"] for case in cases} == set(runtime_defaults.AXES["helper"])
    assert [case["family"] for case in cases if case["helper"] == "create_server"] == ["inet", "inet6", "dual"]
    assert all(case["family"] in runtime_defaults.AXES["family"] for case in cases)


def test_every_case_runs_witnessed_through_the_agent():
    _, cases = run_agent()
    assert len(cases) == 11
    assert [case["outcome"] for case in cases] == ["ok"] * 11, [case["detail"] for case in cases]
    for case in cases:
        if case["helper"] == "asyncio_datagram_endpoint":
            assert case["witness"] == "second_copy BOUND" and "restart" not in case
        else:
            assert case["witness"] == "second_copy LISTEN, restart TIME_WAIT"
        assert ("v6only" in case) == (case["family"] != "inet")


@needs_linux
@pytest.mark.parametrize("helper, family", [(case["helper"], case["family"])
                                            for case in runtime_defaults.cases({})])
def test_linux_servers_share_no_port_and_restart_only_with_so_reuseaddr(context, helper, family):
    record = runtime_defaults.run_case(context, params(helper, family))
    assert record["outcome"] == "ok", record["detail"]
    assert (record["second_copy"], record.get("restart")) == LINUX_SERVING[helper]
    assert record["exclusiveaddruse"] == "absent"


@pytest.mark.parametrize("helper, server_type", [("socketserver_tcp", socketserver.TCPServer),
                                                 ("http_server", http.server.HTTPServer)])
def test_socketserver_read_backs_are_what_the_class_asks_for(context, helper, server_type):
    """The read-back is the socket's, the class attributes are what server_bind() acts on: they agree."""
    record = runtime_defaults.run_case(context, params(helper, "inet"))
    assert record["reuseaddr"] == ("set" if server_type.allow_reuse_address else "unset")
    if record["reuseport"] != "absent":
        assert record["reuseport"] == ("set" if getattr(server_type, "allow_reuse_port", False) else "unset")


def test_ipv6_read_backs(context):
    """create_server and asyncio set IPV6_V6ONLY themselves; socketserver keeps the host's default."""
    if context.v6only_default is None:
        pytest.skip("no IPv6 here")
    read = {(helper, family): runtime_defaults.run_case(context, params(helper, family))
            for helper, family in [("create_server", "inet6"), ("create_server", "dual"),
                                   ("asyncio_start_server", "inet6"), ("socketserver_tcp", "inet6")]}
    assert [record["v6only"] for record in read.values()] == ["set", "unset", "set", context.v6only_default]
    assert {record["v6only_default"] for record in read.values()} == {context.v6only_default}


@needs_proc
def test_cases_leave_no_socket_or_loop_open(host, context):
    before = len(os.listdir("/proc/self/fd"))
    records = [runtime_defaults.run_case(context, case) for case in runtime_defaults.cases(host)]
    assert {record["outcome"] for record in records} == {"ok"}
    assert len(os.listdir("/proc/self/fd")) == before


def test_a_time_wait_that_is_not_witnessed_is_inconclusive(context, monkeypatch):
    """The restart's client never closes: the server end stays in FIN_WAIT_2, a real socket in the wrong state,
    which the witness must catch; the client is aborted when the case ends."""
    def client_stays(case, server):
        family, host = runtime_defaults.endpoints.peer_of(case.params["family"], "wildcard")
        client = socket.socket(runtime_defaults.endpoints.SOCKET_FAMILY[family], socket.SOCK_STREAM)
        case.clients.append(client)
        client.connect((host, case.port))
        case.helper.take_connection(server)
        assert client.recv(1) == b""
        case.context.options.ack_now(client)
    monkeypatch.setattr(runtime_defaults.Case, "client_closes_after_server", client_stays)
    monkeypatch.setattr(runtime_defaults, "STATE_DEADLINE", 0.3)
    record = runtime_defaults.run_case(context, params("create_server", "inet"))
    assert record["outcome"] == "inconclusive"
    assert record["witness"] == "second_copy LISTEN, restart FIN_WAIT_2"
    assert "restart" not in record and record["second_copy"] in ("ok", "EADDRINUSE")


@pytest.mark.parametrize("absent, case", [
    ("has_ipv6", params("socketserver_tcp", "inet6")),
    ("has_dualstack_ipv6", params("create_server", "dual")),
    ("create_server", params("create_server", "inet")),
])
def test_what_this_python_lacks_is_unsupported(context, monkeypatch, absent, case):
    if absent == "create_server":
        monkeypatch.delattr(socket, "create_server")
    else:
        monkeypatch.setattr(socket, absent, (lambda: False) if absent == "has_dualstack_ipv6" else False)
    record = runtime_defaults.run_case(context, case)
    assert record["outcome"] == "unsupported" and record["detail"]
    assert "reuseaddr" not in record


def test_an_option_the_host_lacks_reads_absent(context, monkeypatch):
    monkeypatch.delitem(context.options.values, "SO_REUSEPORT", raising=False)
    record = runtime_defaults.run_case(context, params("create_server", "inet"))
    assert record["reuseport"] == "absent" and record["outcome"] == "ok"


@needs_linux
def test_this_linux_run_has_no_mismatch_with_the_shipped_expectations(tmp_path):
    records, _ = run_agent()
    log = tmp_path / "local.jsonl"
    log.write_text("".join(json.dumps(record) + "\n" for record in records))
    cases = hostlog.read(str(log)).cases
    frame = pd.DataFrame([dict(case, run_id="r", host="local") for case in cases]).reindex(columns=COLUMNS)
    judged = judge(frame, load_expectations())
    assert (judged["verdict"] != "mismatch").all(), judged[judged.verdict == "mismatch"][
        ["case_id", "expected", "source"]].to_string()
    assert (judged["verdict"] == "match").sum() >= 9
