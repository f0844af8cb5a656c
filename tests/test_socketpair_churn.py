"""The socketpair_churn lab on this machine's real sockets (small N, small windows), and Witness.count(), the
one-read count of table entries over many ports that the lab's time_wait_left uses: on connection tables recorded
on other systems (tests/data/netstat/README.md names each source) and on this machine's readers."""
import contextlib
import json
import os
import socket
import subprocess
import sys

import pandas as pd
import pytest

import labs
from analysis.expectations import judge, load_expectations
from formats.table import COLUMNS
from labs import hostfacts, socketpair_churn
from labs.sockopts import platform_family
from labs.witness import (
    Reader, Witness, WitnessError, ip_helper_entries, netstat_bsd_entries, netstat_linux_entries,
    netstat_windows_entries, parse_netstat_bsd, parse_netstat_linux, parse_netstat_windows, parse_proc_net,
    proc_net_entries,
)
from tests.conftest import REPO
from tests.test_witness import fake_netstat, ip_helper_table, recorded  # noqa: F401 (fake_netstat: a fixture)

LINUX_ONLY = pytest.mark.skipif(platform_family() != "linux", reason="Linux kernel behaviour and readers")
EXPECTATIONS = os.path.join(REPO, "expectations", "socketpair_churn.yaml")


# --- Witness.count on recorded tables ------------------------------------------------------------------------------

# (recorded file(s), entries parser, its per-port reading, proto, state, ports, expected count). Every file here is
# recorded output; none of the BSD or macOS recordings holds a TIME_WAIT row, so they are counted on other states.
RECORDED_COUNTS = [
    # Windows 10 `netstat -an` (mozilla/mig): five TIME_WAITs to remote servers; 49671 is ESTABLISHED, 443 only
    # ever a remote port
    (("windows-10_netstat-an_mozilla-mig.txt",), netstat_windows_entries, parse_netstat_windows, "tcp", "TIME_WAIT",
     {49672, 49676, 49677, 49680, 49698, 49671, 443}, 5),
    (("windows-10_netstat-an_mozilla-mig.txt",), netstat_windows_entries, parse_netstat_windows, "tcp", "LISTEN",
     {135, 445, 139}, 5),
    (("windows-10_netstat-an_mozilla-mig.txt",), netstat_windows_entries, parse_netstat_windows, "udp", "BOUND",
     {1900, 54109}, 5),
    # Windows 10 `netstat -aon` (jc), CRLF and a PID column
    (("windows-10_netstat-aon_jc.txt",), netstat_windows_entries, parse_netstat_windows, "tcp", "ESTABLISHED",
     {1031, 1032}, 2),
    # seed 004, Windows XP SP3 `netstat -anp tcp` at every step: one TIME_WAIT row, on the server's 60000
    (("seed004_winxp-sp3_default.txt",), netstat_windows_entries, parse_netstat_windows, "tcp", "TIME_WAIT",
     {60000, 2592}, 1),
    # seed 004, Linux 2.6.18 net-tools netstat
    (("seed004_fedora-core-6_default.txt",), netstat_linux_entries, parse_netstat_linux, "tcp", "TIME_WAIT",
     {60000, 59817}, 1),
    # Linux 6.18 (the development VM), net-tools netstat and /proc/net read at one moment
    (("linux-6.18_netstat-an-tcp-udp.txt",), netstat_linux_entries, parse_netstat_linux, "tcp", "TIME_WAIT",
     {60000, 60001, 60002, 60003, 60004, 34044}, 1),
    (("linux-6.18_netstat-an-tcp-udp.txt",), netstat_linux_entries, parse_netstat_linux, "tcp", "FIN_WAIT_2",
     {60001, 36002, 45762}, 2),
    (("linux-6.18_proc-net-tcp.txt", "linux-6.18_proc-net-tcp6.txt"), proc_net_entries, parse_proc_net, "tcp",
     "TIME_WAIT", {60000, 60001, 60002, 60003, 60004, 34044}, 1),
    (("linux-6.18_proc-net-tcp.txt", "linux-6.18_proc-net-tcp6.txt"), proc_net_entries, parse_proc_net, "tcp",
     "LISTEN", {60000, 60004, 2024}, 3),
    (("linux-6.18_proc-net-udp.txt", "linux-6.18_proc-net-udp6.txt"), proc_net_entries, parse_proc_net, "udp",
     "ESTABLISHED", {60005, 60006, 60007}, 1),
    # FreeBSD 12 `netstat -an` (jc): tcp4 and tcp6 *.22 listeners and an ssh session
    (("freebsd-12_netstat-an_jc.txt",), netstat_bsd_entries, parse_netstat_bsd, "tcp", "LISTEN", {22, 25}, 3),
    (("freebsd-12_netstat-an_jc.txt",), netstat_bsd_entries, parse_netstat_bsd, "tcp", "TIME_WAIT", {22, 25}, 0),
    (("freebsd-12_netstat-an_jc.txt",), netstat_bsd_entries, parse_netstat_bsd, "udp", "BOUND", {514}, 2),
    # macOS 10.14.6 `netstat -An` (jc) and the PostgresApp issue's two rows
    (("macos-10.14.6_netstat-An_jc.txt",), netstat_bsd_entries, parse_netstat_bsd, "tcp", "ESTABLISHED",
     {53755, 53763, 58704}, 2),
    (("macos_postgresapp-issue-676.txt",), netstat_bsd_entries, parse_netstat_bsd, "tcp", "FIN_WAIT_2",
     {5432, 49565}, 1),
]


class RecordedReader(Reader):
    """A reader of recorded output (a table and its *_entries parser), counted as every reader counts."""

    def __init__(self, parse, table, *layout):
        self.parse, self.table, self.layout = parse, table, layout

    def entries(self, proto, ports, state=None):
        return self.parse(self.table, ports, proto, *self.layout)


@pytest.mark.parametrize("names, entries, parse, proto, state, ports, expected", RECORDED_COUNTS,
                         ids=lambda value: value[0] if isinstance(value, tuple) else None)
def test_count_on_recorded_tables(names, entries, parse, proto, state, ports, expected):
    """The entries on a set of ports are the per-port readings together: the same rows, read the same way."""
    text = recorded(*names)
    assert RecordedReader(entries, text).count(proto, state, ports) == expected
    assert sorted(entries(text, ports, proto)) == sorted(
        (port, named) for port in ports for named in parse(text, port, proto))
    assert sum(parse(text, port, proto).count(state) for port in ports) == expected


def test_count_on_a_constructed_bsd_time_wait_row():
    """Constructed from the BSD format (no recorded BSD or macOS output holds a TIME_WAIT row)."""
    rows = ("tcp4       0      0  127.0.0.1.16385        127.0.0.1.16384        TIME_WAIT\n"
            "tcp6       0      0  ::1.16385              ::1.16384              TIME_WAIT\n")
    reader = RecordedReader(netstat_bsd_entries, rows)
    assert reader.count("tcp", "TIME_WAIT", {16385}) == 2
    assert reader.count("tcp", "TIME_WAIT", {16384}) == 0  # the foreign port only


@pytest.mark.parametrize("ipv6", [False, True])
def test_count_on_constructed_ip_helper_tables(ipv6):
    """MIB_TCP(6)ROW_OWNER_PID / MIB_UDP(6)ROW_OWNER_PID rows built from the documented layouts (tcpmib.h; state
    11 TIME_WAIT, 5 ESTABLISHED), as tests/test_witness.py builds them."""
    tcp = ip_helper_table([(16385, 11), (16387, 11), (16384, 5), (0x1234, 11)], "tcp", ipv6)
    assert RecordedReader(ip_helper_entries, tcp, ipv6).count("tcp", "TIME_WAIT", {16384, 16385, 16387}) == 2
    assert RecordedReader(ip_helper_entries, tcp, ipv6).count("tcp", "TIME_WAIT", {0x3412}) == 0  # byte order
    udp = ip_helper_table([(5353, None), (5353, None), (53, None)], "udp", ipv6)
    assert RecordedReader(ip_helper_entries, udp, ipv6).count("udp", "BOUND", {5353, 53}) == 3


def test_an_unknown_state_is_an_error_only_on_the_ports_counted():
    row = "  TCP    0.0.0.0:50930          0.0.0.0:0              ABH\u00d6REN         4\n"
    reader = RecordedReader(netstat_windows_entries, row)
    assert reader.count("tcp", "TIME_WAIT", {50931}) == 0
    with pytest.raises(WitnessError):
        reader.count("tcp", "TIME_WAIT", {50930})


@pytest.mark.skipif(os.name != "posix", reason="the fake netstat is a shell script")
def test_the_netstat_readers_count(fake_netstat):
    fake_netstat("freebsd-12_netstat-an_jc.txt")
    with Witness("freebsd") as freebsd:
        assert freebsd.count("tcp", "LISTEN", [22, 25]) == 3
        assert freebsd.count("tcp", "LISTEN", []) == 0
    fake_netstat("windows-10_netstat-an_mozilla-mig.txt")
    with Witness("cygwin") as cygwin:  # one netstat run per family, each printing the whole recorded table
        assert cygwin.count("tcp", "TIME_WAIT", range(49672, 49699)) == 2 * 5


@LINUX_ONLY
@pytest.mark.parametrize("method", ["sock_diag", "/proc/net"])
def test_count_on_this_machine(method):
    """Clients bound to ports that hold no TIME_WAIT (bind(0) can hand out a port whose TIME_WAITs are another
    address's or family's: such a draw is kept bound, so not drawn again, and another taken), each closed first:
    exactly one TIME_WAIT on each client port, none on the listeners' ports."""
    clients, listeners, draws = [], [], []
    with Witness("linux", method=method) as reader:
        def clean_port():
            while True:
                sock = socket.socket()
                draws.append(sock)
                sock.bind(("127.0.0.1", 0))
                if reader.count("tcp", "TIME_WAIT", [sock.getsockname()[1]]) == 0:
                    return sock
        try:
            for _ in range(5):
                listener, client = clean_port(), clean_port()
                listener.listen(1)
                client.connect(listener.getsockname())
                accepted, _ = listener.accept()
                clients.append(client.getsockname()[1])
                listeners.append(listener.getsockname()[1])
                client.close()
                accepted.close()
                listener.close()
        finally:
            for sock in draws:
                sock.close()
        assert reader.count("tcp", "TIME_WAIT", clients) == 5
        assert reader.count("tcp", "TIME_WAIT", clients[:2]) == 2
        assert reader.count("tcp", "TIME_WAIT", listeners) == 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            assert reader.count("udp", "BOUND", [udp.getsockname()[1]]) == 1


# --- the lab ---------------------------------------------------------------------------------------------------

@pytest.fixture
def context(host):
    with contextlib.closing(socketpair_churn.Context(host)) as context:
        yield context


@pytest.fixture
def small_windows(monkeypatch):
    """Sequential windows of 4 pairs (8 ports): the lab looks for a free one among 2,048 in SEQUENTIAL_PORTS, so a
    window these tests used a moment ago (its TIME_WAITs stay a minute) does not make the next case
    inconclusive."""
    monkeypatch.setattr(socketpair_churn, "WINDOW_PAIRS", 4)


def run(context, strategy, opts="none", pairs=8):
    return socketpair_churn.run_case(context, {"strategy": strategy, "opts": opts, "pairs": str(pairs)})


def test_the_table_of_cases(host):
    cases = list(socketpair_churn.cases(host))
    assert [labs.case_id(socketpair_churn, case) for case in cases] == [
        "sequential/none/20000", "sequential/SO_REUSEADDR/20000", "os_assigned/none/20000",
        "os_assigned/SO_REUSEADDR/20000", "random/none/20000", "random/SO_REUSEADDR/20000",
        "python_socketpair/none/20000"]


@pytest.mark.parametrize("strategy, opts", [
    ("sequential", "none"), ("sequential", "SO_REUSEADDR"), ("os_assigned", "none"), ("os_assigned", "SO_REUSEADDR"),
    ("random", "none"), ("random", "SO_REUSEADDR")])
def test_every_tcp_strategy_makes_every_pair_and_leaves_a_time_wait_per_pair(context, small_windows, strategy, opts):
    """Within one lap of the window nothing collides; each pair's client closed first, so each client port holds
    a TIME_WAIT (the count is of every TIME_WAIT on the ports used: other connections' may share a port the OS
    or the random draw chose, never the sequential window's)."""
    result = run(context, strategy, opts, pairs=4)
    assert (result["outcome"], result["made"], result["miswired"], result["check"]) == ("ok", 4, 0, "ok")
    assert result["failures"] == "" or strategy == "random"
    assert result["time_wait_left"] == 4 if strategy == "sequential" else result["time_wait_left"] >= 4
    assert result["witness"] == "TIME_WAIT"
    assert result["pairs_per_second"] > 0
    assert result["wrapped"] == ("no" if strategy == "sequential" else "")
    if platform_family() == "linux" and context.witness is not None:
        sysctl = hostfacts.linux_sysctls().get("net.ipv4.tcp_timestamps")
        assert result["timestamps"] == ("no" if sysctl == "0" else "yes")


@LINUX_ONLY
def test_sequential_wraps_into_its_own_time_waits(context, small_windows, host):
    """Three laps of a 4-pair window. Without options each client bind() after the first lap meets the TIME_WAIT
    its predecessor left (EADDRINUSE); with SO_REUSEADDR the bind succeeds and, the pairs having used timestamps,
    connect() takes each TIME_WAIT 4-tuple over: every pair is made and one lap of TIME_WAITs is left. The results
    are judged against expectations/socketpair_churn.yaml: the Linux rows match."""
    plain, reuse = run(context, "sequential", "none", 12), run(context, "sequential", "SO_REUSEADDR", 12)
    assert (plain["outcome"], plain["errno"], plain["made"], plain["wrapped"]) == ("EADDRINUSE", 98, 4, "yes")
    assert (plain["listener_bind"], plain["client_bind"], plain["connect"]) == ("ok", "EADDRINUSE", "ok")
    assert plain["failures"] == "client_bind EADDRINUSE 8"
    assert plain["time_wait_left"] == 4
    assert reuse["timestamps"] == "yes", "this test needs net.ipv4.tcp_timestamps on"
    assert (reuse["outcome"], reuse["made"], reuse["failures"], reuse["time_wait_left"]) == ("ok", 12, "", 4)
    rows = [dict(run_id="r", host="local", lab="socketpair_churn", strategy="sequential", opts=opts, pairs="12",
                 case_id="sequential/{}/12".format(opts), os_family=host["os_family"],
                 os_release=host["os_release"], os_version=host["os_version"], **result)
            for opts, result in (("none", plain), ("SO_REUSEADDR", reuse))]
    judged = judge(pd.DataFrame(rows).reindex(columns=COLUMNS), load_expectations(EXPECTATIONS))
    assert list(judged["verdict"]) == ["match", "match"]


def test_a_window_holding_time_waits_is_not_walked_again(context, small_windows, monkeypatch):
    """The same case twice within the TIME_WAIT period: the second walks another window, since the first one's
    ports hold its TIME_WAITs; with no free window left the case is inconclusive and makes no pair."""
    first = run(context, "sequential", "none", 4)
    again = run(context, "sequential", "none", 4)
    assert first["outcome"] == again["outcome"] == "ok"
    window = first["detail"].split("ports ")[1].split(";")[0]
    assert window not in again["detail"]
    start = int(window.split("-")[0])
    monkeypatch.setattr(socketpair_churn, "SEQUENTIAL_PORTS", (start, start + 8))
    busy = run(context, "sequential", "none", 4)
    assert busy["outcome"] == "inconclusive" and busy["errno"] is None and "made" not in busy
    assert "no window of 8 ports" in busy["detail"]


class Draws:
    """A stand-in for random.SystemRandom: the ports given, in order."""

    def __init__(self, ports):
        self.ports = list(ports)

    def randrange(self, start, stop):
        assert (start, stop) == socketpair_churn.RANDOM_PORTS
        return self.ports.pop(0)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_random_retries_a_busy_port(context):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        context.random = Draws([busy.getsockname()[1], free_port(), free_port()])
        result = run(context, "random", pairs=1)
    assert (result["outcome"], result["made"], result["retries"]) == ("ok", 1, 1)
    assert (result["listener_bind"], result["client_bind"]) == ("EADDRINUSE", "ok")
    assert result["failures"] == "listener_bind EADDRINUSE 1"


def test_random_gives_up_after_its_attempts(context, monkeypatch):
    monkeypatch.setattr(socketpair_churn, "RANDOM_ATTEMPTS", 3)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        context.random = Draws([busy.getsockname()[1]] * 3)
        result = run(context, "random", pairs=1)
    assert (result["outcome"], result["made"], result["retries"]) == ("EADDRINUSE", 0, 2)
    assert result["failures"] == "listener_bind EADDRINUSE 3"
    assert (result["connect"], result["check"]) == ("", "")  # never reached


def test_a_stray_connection_accepted_is_a_miswired_pair(context, monkeypatch):
    """A stranger connects to the listener before the pair's client: accept() returns the stranger's connection,
    whose peer is not the client."""
    strays = []
    bind_and_listen = socketpair_churn.Pairs.bind_and_listen

    def with_a_stray(self, sock):
        bind_and_listen(self, sock)
        stray = socket.socket()
        strays.append(stray)
        stray.connect(sock.getsockname())

    monkeypatch.setattr(socketpair_churn.Pairs, "bind_and_listen", with_a_stray)
    try:
        result = run(context, "os_assigned", pairs=2)
    finally:
        for stray in strays:
            context.options.abort(stray)
    assert (result["miswired"], result["made"], result["check"], result["outcome"]) == (2, 0, "miswired", "ok")


def test_python_socketpair(context):
    result = run(context, "python_socketpair", pairs=20)
    assert (result["outcome"], result["made"], result["check"], result["socketpair"]) == ("ok", 20, "ok", "ok")
    assert (result["listener_bind"], result["connect"], result["wrapped"]) == ("", "", "")
    family = "AF_UNIX" if hasattr(socket, "AF_UNIX") else "AF_INET"
    assert result["detail"] == "socket.socketpair() gave " + family


def tcp_socketpair():
    """CPython's _fallback_socketpair() in short, for a Python that defines it only where the platform has no
    socketpair() (3.11 here): a listener on 127.0.0.1 port 0, a client, the accepted end; (accepted, client)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = socket.socket()
        client.connect(listener.getsockname())
        return listener.accept()[0], client


def test_python_socketpair_as_on_windows(context, monkeypatch):
    """CPython's TCP emulation (what Windows gets), made the host's socketpair(): AF_INET pairs, each leaving a
    TIME_WAIT on the port of its client end, which is closed first."""
    monkeypatch.setattr(socket, "socketpair", getattr(socket, "_fallback_socketpair", tcp_socketpair))
    result = run(context, "python_socketpair", pairs=5)
    assert (result["outcome"], result["made"], result["check"]) == ("ok", 5, "ok")
    assert result["detail"] == "socket.socketpair() gave AF_INET"
    assert result["time_wait_left"] >= 5


def test_the_emulations_own_miswiring_check_counts_as_miswired(context, monkeypatch):
    def refuses(*args):
        raise ConnectionError("Unexpected peer connection")  # _fallback_socketpair's words
    monkeypatch.setattr(socket, "socketpair", refuses)
    result = run(context, "python_socketpair", pairs=3)
    assert (result["miswired"], result["made"], result["check"], result["outcome"]) == (3, 0, "miswired", "ok")


def test_a_failing_socketpair_is_its_errno(context, monkeypatch):
    def exhausted(*args):
        raise OSError(24, "Too many open files")
    monkeypatch.setattr(socket, "socketpair", exhausted)
    result = run(context, "python_socketpair", pairs=3)
    assert (result["outcome"], result["errno"], result["socketpair"], result["made"]) == ("EMFILE", 24, "EMFILE", 0)
    assert result["failures"] == "socketpair EMFILE 3"


def test_an_option_the_host_lacks_or_refuses_is_unsupported(context, monkeypatch):
    monkeypatch.setitem(context.options.values, "SO_REUSEADDR", 0x7ABC)  # no such option: the OS refuses it
    refused = run(context, "random", "SO_REUSEADDR")
    assert refused["outcome"] == "unsupported" and refused["detail"].startswith("setsockopt SO_REUSEADDR: ")
    monkeypatch.delitem(context.options.values, "SO_REUSEADDR")
    assert run(context, "random", "SO_REUSEADDR")["detail"] == "no SO_REUSEADDR on this host"


def test_without_a_witness_nothing_is_counted_and_sequential_is_inconclusive(context, small_windows):
    context.witness.close()
    context.witness, context.witness_problem = None, "no connection-table reader works here"
    os_assigned, sequential = run(context, "os_assigned", pairs=4), run(context, "sequential", pairs=4)
    assert (os_assigned["outcome"], os_assigned["time_wait_left"], os_assigned["witness"]) == ("ok", "", "")
    assert "TIME_WAIT not counted: no connection-table reader" in os_assigned["detail"]
    assert sequential["outcome"] == "inconclusive" and "made" not in sequential
    assert sequential["detail"] == "no connection-table reader works here"


def test_time_waits_the_os_dropped_make_the_case_inconclusive(context, monkeypatch):
    """A full TIME_WAIT table (Linux counts the connections it closed without one) takes away the state the
    collisions come from: the figures stand, the outcome is no result."""
    if platform_family() == "linux":
        assert isinstance(socketpair_churn.time_wait_overflows(), int)
    counts = iter([100, 103])
    monkeypatch.setattr(socketpair_churn, "time_wait_overflows", lambda: next(counts))
    result = run(context, "os_assigned", pairs=2)
    assert (result["outcome"], result["made"]) == ("inconclusive", 2)
    assert "TIME_WAIT table was full: 3 connections closed without one" in result["detail"]


def test_without_tcp_info_timestamps_are_unknown(context, monkeypatch):
    monkeypatch.delattr(socket, "TCP_INFO", raising=False)
    assert run(context, "os_assigned")["timestamps"] == "unknown"


@LINUX_ONLY
def test_nothing_is_left_open(context, small_windows):
    """Every socket a case opens is closed: the process holds the same descriptors, and no port it used is left
    listening or connected (its TIME_WAITs are the OS's, not the process's)."""
    before = sorted(os.listdir("/proc/self/fd"))
    for strategy in socketpair_churn.STRATEGIES:
        run(context, strategy, pairs=8)
    assert sorted(os.listdir("/proc/self/fd")) == before
    windows = range(*socketpair_churn.SEQUENTIAL_PORTS)
    for state in ("LISTEN", "ESTABLISHED", "CLOSE_WAIT", "FIN_WAIT_2", "LAST_ACK"):
        assert context.witness.count("tcp", state, windows) == 0, state


def test_the_agent_reports_pairs_per_second():
    """What `./socklab bench` reads: the agent run with --where pairs=N gives every case with that many pairs and
    its pairs_per_second. (Outcomes are not asserted: right after a full run of the lab most ports hold
    TIME_WAITs for a minute, and the random strategy may then run out of draws.)"""
    done = subprocess.run([sys.executable, "-m", "labs", "--lab", "socketpair_churn", "--where", "pairs=30",
                           "--where", "strategy=os_assigned,random,python_socketpair"], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=True)
    cases = [json.loads(line) for line in done.stdout.splitlines()]
    cases = [case for case in cases if case["record"] == "case"]
    assert [case["case_id"] for case in cases] == [
        "os_assigned/none/30", "os_assigned/SO_REUSEADDR/30", "random/none/30", "random/SO_REUSEADDR/30",
        "python_socketpair/none/30"]
    assert all(case["pairs"] == "30" and case["made"] > 0 and case["pairs_per_second"] > 0 for case in cases)
    assert set(socketpair_churn.STEPS + socketpair_churn.MEASURES) <= set(cases[0])
