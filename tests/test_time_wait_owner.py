"""The time_wait_owner lab on this machine's real sockets: who holds TIME_WAIT after each close, the plain rebind of
the server's port, the witness gates (simultaneous close precondition, a close that never settles), portability."""
import contextlib
import functools
import errno
import json
import os
import re
import subprocess
import sys

import pytest

import labs
from labs import connection, time_wait_owner
from labs.sockopts import platform_family
from tests.conftest import REPO, case_params

needs_linux = pytest.mark.skipif(platform_family() != "linux", reason="Linux outcomes and /proc/self/fd")

# RFC 793 Figures 13 and 14 (and seed 003): the end that closes first holds TIME_WAIT, both after a simultaneous
# close, neither after an RST.
OWNER = {("orderly", "client"): "client", ("orderly", "server"): "server", ("shutdown", "client"): "client",
         ("shutdown", "server"): "server", ("abortive", "client"): "neither", ("abortive", "server"): "neither",
         ("simultaneous", "both"): "both"}
# Linux: a plain bind() fails while the server's port is in TIME_WAIT (bind_timewait.c, socket(7) NOTES).
LINUX_BIND = {"client": "ok", "neither": "ok", "server": "EADDRINUSE", "both": "EADDRINUSE"}


@pytest.fixture(scope="module")
def context(host):
    with contextlib.closing(time_wait_owner.Context(host)) as context:
        yield host, context


params = functools.partial(case_params, time_wait_owner)  # params(family, ...): a case


def test_the_table_has_every_close_and_closer(context):
    host, _ = context
    cases = list(time_wait_owner.cases(host))
    assert [(case["close"], case["closer"]) for case in cases] == list(OWNER) * 2
    assert len({labs.case_id(time_wait_owner, case) for case in cases}) == len(cases) == 14


@pytest.mark.parametrize("family", time_wait_owner.FAMILIES)
@pytest.mark.parametrize("close, closer", list(OWNER))
def test_the_active_closer_holds_time_wait(context, family, close, closer):
    _, context = context
    record = time_wait_owner.run_case(context, params(family, close, closer))
    owner = OWNER[close, closer]
    assert record["time_wait"] == owner, record
    holders = ("client", "server") if owner == "both" else (owner,)
    assert record["witness"] == " ".join(
        "{}={}".format(end, "TIME_WAIT" if end in holders else "") for end in ("client", "server"))
    if platform_family() == "linux":
        assert record["bind"] == record["outcome"] == LINUX_BIND[owner]
        assert record.get("listen") == ("ok" if LINUX_BIND[owner] == "ok" else None)


def test_a_simultaneous_close_is_witnessed_before_either_fin_arrives(context):
    _, context = context
    record = time_wait_owner.run_case(context, params("inet", "simultaneous", "both"))
    assert "before either FIN arrived client=FIN_WAIT_1 server=FIN_WAIT_1" in record["detail"]


def test_a_simultaneous_close_whose_fins_get_through_is_inconclusive(context, monkeypatch):
    """Without the filled windows, the first FIN arrives at once: the other end is in CLOSE_WAIT when it shuts down,
    never FIN_WAIT_1, and the case is no result."""
    _, context = context
    monkeypatch.setattr(time_wait_owner, "fill_peer_window", lambda sock: sock.setblocking(False))
    monkeypatch.setattr(connection, "STATE_DEADLINE", 0.2)
    record = time_wait_owner.run_case(context, params("inet", "simultaneous", "both"))
    assert record["outcome"] == "inconclusive"
    assert re.fullmatch(r"client port \d+, server port \d+; after both shutdown\(SHUT_WR\): .* \(both FIN_WAIT_1 "
                        r"wanted\)", record["detail"])
    assert "time_wait" not in record and "bind" not in record


def test_a_close_that_does_not_settle_is_inconclusive(context, monkeypatch):
    """The other end never closes: the closer stays in FIN_WAIT_2 and the other in CLOSE_WAIT."""
    _, context = context
    monkeypatch.setitem(time_wait_owner.CLOSES, "orderly", lambda context, loopback, closer, other:
                        loopback.close_one(closer))
    monkeypatch.setattr(connection, "STATE_DEADLINE", 0.2)
    record = time_wait_owner.run_case(context, params("inet", "orderly", "client"))
    assert record["outcome"] == "inconclusive"
    assert record["witness"] == "client=FIN_WAIT_2 server=CLOSE_WAIT"
    assert record["detail"].endswith("; still closing after 0.2 s")
    assert "time_wait" not in record


def test_a_failure_of_the_agent_is_an_error_after_the_detail_so_far(context, monkeypatch):
    _, context = context

    def fails(context, loopback, closer, other):
        raise RuntimeError("no FIN")
    monkeypatch.setitem(time_wait_owner.CLOSES, "orderly", fails)
    record = time_wait_owner.run_case(context, params("inet", "orderly", "client"))
    assert (record["outcome"], record["errno"]) == ("error", None)
    assert re.fullmatch(r"client port \d+, server port \d+; RuntimeError: no FIN", record["detail"])


def test_a_host_without_the_family_records_unsupported(context, monkeypatch):
    _, context = context

    def no_ipv6(*arguments):
        raise OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol")
    monkeypatch.setattr(connection.endpoints, "new_socket", no_ipv6)
    record = time_wait_owner.run_case(context, params("inet6", "orderly", "client"))
    assert record["outcome"] == "unsupported"
    assert "EAFNOSUPPORT" in record["detail"]


@needs_linux
def test_a_case_leaves_no_socket_open(context):
    _, context = context
    before = set(os.listdir("/proc/self/fd"))
    for close, closer in OWNER:
        time_wait_owner.run_case(context, params("inet", close, closer))
    assert set(os.listdir("/proc/self/fd")) == before


def test_the_agent_runs_the_lab():
    done = subprocess.run([sys.executable, "-m", "labs", "--lab", "time_wait_owner"], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=True)
    records = [json.loads(line) for line in done.stdout.splitlines()]
    cases = [record for record in records if record["record"] == "case"]
    assert len(cases) == 14 and records[-1]["record"] == "end"
    assert {case["outcome"] for case in cases} <= {"ok", "EADDRINUSE"}


def test_a_host_whose_table_omits_time_wait_is_inconclusive(context, monkeypatch):
    """macOS's netstat leaves TIME_WAIT out: there "neither" would be a guess, so no case claims a result."""
    _, context = context
    monkeypatch.setattr(context.witness, "sees_time_wait", False)
    record = time_wait_owner.run_case(context, {"family": "inet", "close": "orderly", "closer": "client"})
    assert record["outcome"] == "inconclusive" and "does not list TIME_WAIT" in record["detail"]
