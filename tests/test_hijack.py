"""The hijack lab on this machine's real sockets: who accepts the connections, the witness gate, what is
unsupported, and that nothing is left behind in either process."""
import io
import json
import os
import socket
import subprocess
import sys

import pytest

import labs
from labs import bind_matrix, endpoints, hijack, hostfacts
from labs.polling import poll
from labs.prober import ProberProcess, serve
from labs.sockopts import Options, platform_family
from labs.witness import Witness
from tests.conftest import REPO

needs_linux = pytest.mark.skipif(platform_family() != "linux", reason="these outcomes are Linux's")
needs_root = pytest.mark.skipif(not hostfacts.is_admin(), reason="other_user needs root")
needs_proc = pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")


@pytest.fixture(scope="module")
def lab():
    with Witness(platform_family()) as witness:
        host = hostfacts.collect(witness.method)
    context = hijack.Context(host)
    yield host, context
    context.close()


def case(family, first_opts, second_opts, first_addr, second_addr, prober="other_process", proto="tcp"):
    return dict(zip(hijack.PARAMETERS, (family, first_opts, second_opts, first_addr, second_addr, prober, proto)))


# Linux 6.x, a second process of the same user: (outcome, accepted_by, after_close). Without SO_REUSEPORT on both
# sockets nothing binds beside a listener that covers the address; with it, a specific address takes every
# connection from a wildcard listener (seed 003's hijack), identical addresses share them.
LINUX_CELLS = [
    (case("inet", "none", "none", "wildcard", "loopback"), ("EADDRINUSE", None, None)),
    (case("inet", "SO_REUSEADDR", "SO_REUSEADDR", "wildcard", "loopback"), ("EADDRINUSE", None, None)),
    (case("inet", "SO_REUSEADDR", "SO_REUSEADDR", "loopback", "loopback"), ("EADDRINUSE", None, None)),
    (case("inet", "SO_REUSEPORT", "SO_REUSEPORT", "wildcard", "wildcard"), ("ok", "both", "second")),
    (case("inet", "SO_REUSEPORT", "SO_REUSEPORT", "wildcard", "loopback"), ("ok", "second", "second")),
    (case("inet", "SO_REUSEPORT", "SO_REUSEPORT", "loopback", "wildcard"), ("ok", "first", "second")),
    (case("inet6", "SO_REUSEPORT", "SO_REUSEPORT", "wildcard", "loopback"), ("ok", "second", "second")),
    (case("dual", "SO_REUSEPORT", "SO_REUSEPORT", "wildcard", "v4mapped"), ("ok", "second", "second")),
    # ::1 and ::ffff:127.0.0.1 do not overlap: both bind, and each keeps its own clients.
    (case("dual", "none", "none", "loopback", "v4mapped"), ("ok", "first", "refused")),
]


@needs_linux
@pytest.mark.parametrize("params, expected", LINUX_CELLS, ids=[labs.case_id(hijack, p) for p, _ in LINUX_CELLS])
def test_who_accepts_on_linux(lab, params, expected):
    _, context = lab
    record = hijack.run_case(context, params)
    assert record["witness"] == "LISTEN"
    assert (record["outcome"], record.get("accepted_by"), record.get("after_close")) == expected
    if record.get("accepted_by"):
        first, second = map(int, record["split"].split("/"))
        assert first + second == hijack.CONNECTIONS
    else:
        assert "split" not in record and record["bind"] == record["outcome"]


@needs_linux
@needs_root
@pytest.mark.parametrize("params, expected", [
    (case("inet", "SO_REUSEPORT", "SO_REUSEPORT", "wildcard", "wildcard", "other_user"), ("EADDRINUSE", None)),
    (case("inet", "SO_REUSEPORT", "SO_REUSEPORT", "wildcard", "loopback", "other_user"), ("EADDRINUSE", None)),
    (case("dual", "none", "none", "v4mapped", "loopback", "other_user"), ("ok", "first")),
])
def test_another_user_takes_nothing_on_linux(lab, params, expected):
    _, context = lab
    record = hijack.run_case(context, params)
    assert (record["outcome"], record.get("accepted_by")) == expected


REUSEADDR, REUSEPORT, BOTH = "SO_REUSEADDR", "SO_REUSEPORT", "SO_REUSEADDR+SO_REUSEPORT"
# Linux 6.x, UDP: (outcome, received_by, wildcard_only, after_close). udp_lib_lport_inuse() lets a second socket bind
# with SO_REUSEADDR on both, or SO_REUSEPORT on both and the same user; the delivery lookup (__udp4_lib_lookup)
# tries the exact address before the wildcard, and among equals takes the first socket of the chain, where the
# last one bound was put at the head: the newcomer takes every datagram. A SO_REUSEPORT group (same user, same
# address) spreads them by the sender's 4-tuple: 16 senders, both get some.
LINUX_UDP_CELLS = [
    (case("inet", "none", "none", "wildcard", "wildcard", proto="udp"), ("EADDRINUSE", None, None, None)),
    (case("inet", "none", REUSEADDR, "wildcard", "wildcard", proto="udp"), ("EADDRINUSE", None, None, None)),
    (case("inet", REUSEADDR, REUSEADDR, "wildcard", "wildcard", proto="udp"), ("ok", "second", None, "second")),
    (case("inet6", REUSEADDR, REUSEADDR, "loopback", "loopback", proto="udp"), ("ok", "second", None, "second")),
    (case("inet", REUSEADDR, BOTH, "wildcard", "wildcard", proto="udp"), ("ok", "second", None, "second")),
    (case("inet", REUSEPORT, REUSEPORT, "wildcard", "wildcard", proto="udp"), ("ok", "both", None, "second")),
    # a specific address takes what is sent to it; what only the wildcard covers (127.0.0.2, dual's other
    # loopback) goes to the wildcard socket
    (case("inet", REUSEADDR, REUSEADDR, "wildcard", "loopback", proto="udp"), ("ok", "second", "first", "second")),
    (case("inet", REUSEADDR, REUSEADDR, "loopback", "wildcard", proto="udp"), ("ok", "first", "second", "second")),
    (case("dual", REUSEPORT, REUSEPORT, "wildcard", "v4mapped", proto="udp"), ("ok", "second", "first", "second")),
    # ::1 and ::ffff:127.0.0.1 do not overlap: each gets its own, and once the first is gone the sender is told
    (case("dual", "none", "none", "loopback", "v4mapped", proto="udp"), ("ok", "first", None, "refused")),
]


@needs_linux
@pytest.mark.parametrize("params, expected", LINUX_UDP_CELLS,
                         ids=[labs.case_id(hijack, p) for p, _ in LINUX_UDP_CELLS])
def test_who_receives_the_datagrams_on_linux(lab, params, expected):
    _, context = lab
    record = hijack.run_case(context, params)
    assert record["witness"] == "BOUND"
    assert (record["outcome"], record.get("received_by"), record.get("wildcard_only"),
            record.get("after_close")) == expected
    if record.get("received_by"):
        first, second = map(int, record["split"].split("/"))
        assert first + second == hijack.DATAGRAMS and "accepted_by" not in record
    else:
        assert "split" not in record and record["bind"] == record["outcome"]


@needs_linux
@needs_root
@pytest.mark.parametrize("params, expected", [
    # SO_REUSEADDR on both lets another user bind beside the first socket, and take its datagrams
    (case("inet", REUSEADDR, REUSEADDR, "wildcard", "wildcard", "other_user", "udp"), ("ok", "second")),
    (case("inet", BOTH, BOTH, "wildcard", "wildcard", "other_user", "udp"), ("ok", "second")),
    (case("inet", REUSEPORT, REUSEPORT, "wildcard", "wildcard", "other_user", "udp"), ("EADDRINUSE", None)),
])
def test_another_user_on_a_udp_port_on_linux(lab, params, expected):
    _, context = lab
    record = hijack.run_case(context, params)
    assert (record["outcome"], record.get("received_by")) == expected


def test_the_prober_holds_a_udp_socket_between_requests():
    """listen (for UDP: bind), received (the payloads of the datagrams that arrived), close; the socket is bound
    in between, and closed after."""
    prober = ProberProcess()
    try:
        port = endpoints.fresh_port(Options(platform_family()), "udp")
        steps = prober.listen_second({"proto": "udp", "family": "inet", "addr": "loopback", "port": port, "opts": []})
        assert steps == {"setsockopt": "ok", "bind": "ok"}
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.sendto(b"one", ("127.0.0.1", port))
            sender.sendto(b"two", ("127.0.0.1", port))
            seen = []
            poll(lambda: seen.extend(prober.received()) or seen, lambda got: len(got) >= 2, 2.0)
        assert seen == ["one", "two"]
        prober.close_second()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", port))  # nothing holds the port any more
    finally:
        prober.close()


def test_every_axis_is_covered(lab):
    host, _ = lab
    cases = list(hijack.cases(host))
    options = len(hijack.option_sets(host["options"]))
    pairs = sum(len(names) ** 2 for names in hijack.ADDRESSES.values())
    assert len(cases) == options ** 2 * pairs * len(hijack.PROBERS) * len(hijack.PROTOS)
    assert len({labs.case_id(hijack, params) for params in cases}) == len(cases)
    # a TCP case's id is what it was before UDP cases existed; a UDP case's ends in udp
    assert {labs.case_id(hijack, params).endswith("/udp") for params in cases if params["proto"] == "udp"} == {True}
    assert {labs.case_id(hijack, params).count("/") for params in cases if params["proto"] == "tcp"} == {5}


def test_a_first_socket_that_does_not_listen_is_inconclusive(lab, monkeypatch):
    """The first socket is bound but never listens: a real socket in the wrong state, which the witness catches
    before the prober is asked anything."""
    _, context = lab
    monkeypatch.setattr(hijack, "listen", lambda sock: None)
    monkeypatch.setattr(hijack, "STATE_DEADLINE", 0.3)
    record = hijack.run_case(context, case("inet", "none", "none", "wildcard", "wildcard"))
    assert record["outcome"] == "inconclusive"
    assert record["witness"] != "LISTEN"
    assert "bind" not in record and "accepted_by" not in record


@pytest.mark.parametrize("admin, why", [
    (True, "no other user: the agent runs as root or administrator, but there is no unprivileged account to drop to"),
    (False, "no other user: the agent does not run as root or administrator")])
def test_no_other_user_is_unsupported_and_says_why(lab, monkeypatch, admin, why):
    """An administrator with no account to drop to (Windows, where there are no uids) and an agent that is not
    root: other_user is unsupported, and the detail says which."""
    host, _ = lab
    monkeypatch.setattr(bind_matrix, "unprivileged_user", lambda: None)
    context = hijack.Context(dict(host, admin=admin))
    try:
        record = hijack.run_case(context, case("inet", "none", "none", "wildcard", "wildcard", "other_user"))
    finally:
        context.close()
    assert (record["outcome"], record["detail"]) == ("unsupported", why)


def test_an_option_the_host_refuses_on_the_first_socket_is_unsupported(lab, monkeypatch):
    """As on a host without SO_REUSEPORT: the option number is one the kernel does not know."""
    _, context = lab
    monkeypatch.setitem(context.options.values, "SO_REUSEPORT", 0x7FFF)
    record = hijack.run_case(context, case("inet", "SO_REUSEPORT", "none", "wildcard", "wildcard"))
    assert record["outcome"] == "unsupported"
    assert "first socket" in record["detail"] and "bind" not in record


def socket_count(pid):
    """Open sockets of a process, from its file descriptors."""
    fds = "/proc/{}/fd".format(pid)
    count = 0
    for fd in os.listdir(fds):
        try:
            count += os.readlink(os.path.join(fds, fd)).startswith("socket:")
        except OSError:
            continue  # closed while listed
    return count


@needs_proc
@pytest.mark.parametrize("proto", hijack.PROTOS)
def test_nothing_is_left_behind(lab, monkeypatch, proto):
    """Cases that share connections (datagrams), hand them over after close, are refused or fail to bind:
    afterwards no socket holds their ports (no TIME_WAIT either) and neither process has more sockets open than
    before."""
    _, context = lab
    prober = context.probers["other_process"]
    ports = []

    def fresh_port(options, proto):
        ports.append(real_fresh_port(options, proto))
        return ports[-1]

    real_fresh_port = endpoints.fresh_port
    monkeypatch.setattr(endpoints, "fresh_port", fresh_port)
    before = socket_count(os.getpid()), socket_count(prober.process.pid)
    options = hijack.option_sets(context.options.known)[-1]  # every option the host has, on both sockets
    for params in (case("inet", options, options, "wildcard", "wildcard", proto=proto),
                   case("dual", "none", "none", "loopback", "v4mapped", proto=proto),
                   case("inet", "none", "none", "wildcard", "wildcard", proto=proto)):
        assert hijack.run_case(context, params)["outcome"] in ("ok", "EADDRINUSE")
    assert len(ports) == 3
    for port in ports:
        assert poll(lambda: context.witness.states(proto, port), lambda states: not states, 2.0) == ()
    assert (socket_count(os.getpid()), socket_count(prober.process.pid)) == before


def test_the_prober_holds_a_listener_between_requests():
    """The protocol the lab drives: listen, accepted (peers' ports), close; the socket really listens in between."""
    prober = ProberProcess()
    try:
        port = endpoints.fresh_port(Options(platform_family()), "tcp")
        steps = prober.listen_second({"proto": "tcp", "family": "inet", "addr": "loopback", "port": port, "opts": [],
                                      "backlog": 4})
        assert steps == {"setsockopt": "ok", "bind": "ok", "listen": "ok"}
        with socket.create_connection(("127.0.0.1", port), timeout=2) as client:
            mine = client.getsockname()[1]
            seen = set()
            poll(lambda: seen.update(prober.accepted()) or seen, lambda peers: mine in peers, 2.0)
            assert seen == {mine}
        prober.close_second()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    finally:
        prober.close()


def test_serve_answers_both_kinds_of_request():
    """bind_matrix's request (no "op") is answered as before; the held socket is closed when the input ends."""
    requests = [{"proto": "tcp", "family": "inet", "addr": "loopback", "port": 0, "opts": []},
                {"op": "listen", "proto": "tcp", "family": "inet", "addr": "loopback", "port": 0, "opts": []},
                {"op": "accepted"},
                {"op": "close"}]
    out = io.BytesIO()
    serve(io.BytesIO(b"".join(json.dumps(request).encode() + b"\n" for request in requests)), out)
    answers = [json.loads(line) for line in out.getvalue().splitlines()]
    assert answers == [{"setsockopt": "ok", "bind": "ok", "listen": "ok"},
                       {"setsockopt": "ok", "bind": "ok", "listen": "ok"}, {"peers": []}, {}]


def test_the_agent_runs_the_lab_end_to_end():
    done = subprocess.run([sys.executable, "-m", "labs", "--lab", "hijack", "--where", "family=inet",
                           "--where", "prober=other_process"], cwd=REPO, capture_output=True, text=True,
                          timeout=120, check=True)
    records = [json.loads(line) for line in done.stdout.splitlines()]
    cases = [record for record in records if record["record"] == "case"]
    assert records[-1] == dict(records[-1], record="end", cases=len(cases))
    assert {record["proto"] for record in cases} == {"tcp", "udp"}
    assert cases and all(record["witness"] == {"tcp": "LISTEN", "udp": "BOUND"}[record["proto"]]
                         for record in cases)
    assert not [record for record in cases if record["outcome"] in ("error", "inconclusive")]


def test_a_prober_that_answers_something_not_json_is_ended_and_fails_every_later_request():
    """Its next line could answer an earlier request: once one answer is not JSON, no later one is taken. The
    prober here is a real one that writes a stray line (as a library printing to stdout would) before serving."""
    prober = ProberProcess()
    prober.process.kill()
    prober.process.wait()
    prober.process = subprocess.Popen(
        [sys.executable, "-c", "import sys; print('a stray line', flush=True); from labs.prober import main; main([])"],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    request = {"proto": "tcp", "family": "inet", "addr": "loopback", "opts": [],
               "port": endpoints.fresh_port(Options(platform_family()), "tcp")}
    try:
        with pytest.raises(labs.prober.ProberDied, match="not JSON \\(b'a stray line"):
            prober.try_second(request)
        assert prober.process.wait(timeout=10) != 0  # ended, not left to answer the wrong request
        with pytest.raises(labs.prober.ProberDied, match="not JSON"):
            prober.try_second(request)
    finally:
        prober.close()
