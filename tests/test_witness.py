"""labs/witness.py: its parsers on connection tables recorded on other systems (tests/data/netstat/README.md names
each source), and its Linux readers on real loopback sockets driven into every state the labs use."""
import os
import socket
import stat
import struct
import sys
import time

import pytest

from labs import witness
from labs.bind_matrix import witness_way
from labs.vocabulary import TCP_STATES, join_states
from labs.witness import (
    BsdNetstatReader, End, SockDiagReader, Watch, Witness, WitnessError, WindowsNetstatReader, parse_ip_helper_table,
    parse_netstat_bsd, parse_netstat_linux, parse_netstat_windows, parse_proc_net, port_filter_bytecode,
    proc_net_rows, watch,
)

DATA = os.path.join(os.path.dirname(__file__), "data", "netstat")


def recorded(*names):
    """The recorded files, concatenated, line endings as recorded."""
    text = ""
    for name in names:
        with open(os.path.join(DATA, name), newline="") as sample:
            text += sample.read()
    return text


# --- seed 004: Windows XP SP3 and Linux 2.4/2.6 netstat at each step of the experiment ---------------------------

# file, parser, the client's ephemeral port in that run
SEED004_RUNS = [
    ("seed004_winxp-sp3_default.txt", parse_netstat_windows, 2592),
    ("seed004_winxp-sp3_so_reuseaddr.txt", parse_netstat_windows, 2161),
    ("seed004_winxp-sp3_so_exclusiveaddruse.txt", parse_netstat_windows, 2142),
    ("seed004_fedora-core-6_default.txt", parse_netstat_linux, 59817),
    ("seed004_fedora-core-6_so_reuseaddr.txt", parse_netstat_linux, 60356),
    ("seed004_redhat-8.0_default.txt", parse_netstat_linux, 2364),
    ("seed004_redhat-8.0_so_reuseaddr.txt", parse_netstat_linux, 2363),
    ("seed004_ubuntu-8.04_default.txt", parse_netstat_linux, 46401),
    ("seed004_ubuntu-8.04_so_reuseaddr.txt", parse_netstat_linux, 46400),
]
# The seed's test.bat / test.sh run netstat four times; its result table names the steps LISTEN, ESTABLISHED
# (listener still open), FIN_WAIT_2 (server closed first; the client's row is CLOSE_WAIT) and TIME_WAIT.
SEED004_SERVER_PORT = 60000
SEED004_SERVER_STEPS = ["LISTEN", "LISTEN+ESTABLISHED", "FIN_WAIT_2", "TIME_WAIT"]
SEED004_CLIENT_STEPS = ["", "ESTABLISHED", "CLOSE_WAIT", ""]


def netstat_snapshots(text):
    """The separate netstat outputs in a seed 004 run: runs of table rows between the programs' own messages."""
    snapshots, rows = [], []
    for line in text.splitlines() + [""]:
        if line.split()[:1] in (["tcp"], ["TCP"]):
            rows.append(line)
        elif rows:
            snapshots.append("\n".join(rows))
            rows = []
    return snapshots


@pytest.mark.parametrize("name, parse, client_port", SEED004_RUNS)
def test_seed004_steps(name, parse, client_port):
    """Seed 004's own netstat rows (Windows XP SP3 `netstat -anp tcp`, Linux `netstat -an --tcp`): port 60000 shows
    the state the seed names at each step, and the client's rows, whose foreign port is 60000, are not counted."""
    steps = netstat_snapshots(recorded(name))
    assert len(steps) == 4
    assert [join_states(parse(step, SEED004_SERVER_PORT)) for step in steps] == SEED004_SERVER_STEPS
    assert [join_states(parse(step, client_port)) for step in steps] == SEED004_CLIENT_STEPS
    # one entry per row: listener and accepted connection, not the client's ESTABLISHED row as well
    assert sorted(parse(steps[1], SEED004_SERVER_PORT)) == ["ESTABLISHED", "LISTEN"]


# --- other recorded systems -----------------------------------------------------------------------------------

@pytest.mark.parametrize("proto, port, states", [
    ("tcp", 22, ("ESTABLISHED", "LISTEN", "LISTEN")),  # an ssh session to 192.168.71.163.22; tcp4 and tcp6 *.22
    ("tcp", 25, ("LISTEN",)),
    ("tcp", 56321, ()),  # the ssh client's port: in the foreign column only
    ("udp", 514, ("BOUND", "BOUND")),  # udp4 and udp6 *.514
    ("tcp", 514, ()),
])
def test_freebsd12(proto, port, states):
    """FreeBSD 12 `netstat -an` (kellyjonbrazil/jc), UNIX-domain section included."""
    assert parse_netstat_bsd(recorded("freebsd-12_netstat-an_jc.txt"), port, proto) == states


@pytest.mark.parametrize("proto, port, states", [
    ("tcp", 53755, ("ESTABLISHED",)),  # 127.0.0.1.53755 <-> 127.0.0.1.53763, both directions listed
    ("tcp", 53763, ("ESTABLISHED",)),
    ("tcp", 9592, ("CLOSE_WAIT",)),
    ("tcp", 58704, ()),  # 9592's peer: foreign only
    ("udp", 63995, ("BOUND",)),
    ("udp", 61224, ("BOUND",)),  # udp46
    ("udp", 61982, ("BOUND", "BOUND")),  # udp6 and udp4
    ("udp", 5353, ("BOUND",) * 10),
    ("tcp", 5353, ()),
])
def test_macos_netstat_with_pcb_columns(proto, port, states):
    """macOS 10.14.6 `netstat -An` (kellyjonbrazil/jc): two columns before the protocol, still parsed."""
    assert parse_netstat_bsd(recorded("macos-10.14.6_netstat-An_jc.txt"), port, proto) == states


@pytest.mark.parametrize("port, states", [(5432, ("FIN_WAIT_2",)), (49565, ("CLOSE_WAIT",))])
def test_macos_server_closed_first(port, states):
    """macOS rows from PostgresApp issue 676: the server port in FIN_WAIT_2, its client in CLOSE_WAIT (seed 004's
    FIN_WAIT_2 step, on macOS)."""
    assert parse_netstat_bsd(recorded("macos_postgresapp-issue-676.txt"), port, "tcp") == states


@pytest.mark.parametrize("proto, port, states", [
    ("tcp", 135, ("LISTEN", "LISTEN")),  # 0.0.0.0:135 and [::]:135
    ("tcp", 8307, ("LISTEN", "LISTEN")),  # 127.0.0.1 and [::1]
    ("tcp", 1031, ("ESTABLISHED",)),
    ("tcp", 1032, ("ESTABLISHED",)),
    ("tcp", 139, ("LISTEN",) * 8),
    ("udp", 1900, ("BOUND",) * 17),  # wildcard, each address, [::1], [fe80::...%9]
    ("udp", 52284, ("BOUND",)),  # [fe80::f5d1:8bf7:c410:e325%64]:52284
    ("udp", 5353, ("BOUND",) * 53),
    ("tcp", 5353, ()),
    ("udp", 135, ()),
])
def test_windows10_netstat_aon(proto, port, states):
    """Windows 10 `netstat -aon` (kellyjonbrazil/jc), CRLF line ends and the PID column."""
    assert parse_netstat_windows(recorded("windows-10_netstat-aon_jc.txt"), port, proto) == states


@pytest.mark.parametrize("proto, port, states", [
    ("tcp", 49672, ("TIME_WAIT",)),
    ("tcp", 49671, ("ESTABLISHED",)),
    ("tcp", 443, ()),  # only ever the remote port
    ("tcp", 7680, ("LISTEN", "LISTEN")),
    ("udp", 1900, ("BOUND",) * 4),
    ("udp", 54109, ("BOUND",)),
])
def test_windows10_netstat_an(proto, port, states):
    """Windows 10 `netstat -an` (mozilla/mig's test data): no PID column."""
    assert parse_netstat_windows(recorded("windows-10_netstat-an_mozilla-mig.txt"), port, proto) == states


# Recorded on the development VM (Linux 6.18), /proc/net and net-tools netstat read at the same moment.
LINUX_RECORDED = [
    ("tcp", 60000, ("LISTEN", "ESTABLISHED")),
    ("tcp", 52596, ("ESTABLISHED",)),
    ("tcp", 60001, ("FIN_WAIT_2",)),
    ("tcp", 45762, ("CLOSE_WAIT",)),
    ("tcp", 60002, ("CLOSE_WAIT",)),
    ("tcp", 36002, ("FIN_WAIT_2",)),
    ("tcp", 60003, ("TIME_WAIT",)),
    ("tcp", 34044, ()),  # 60003's client closed second: gone
    ("tcp", 60004, ("LISTEN",)),  # IPv6
    ("tcp", 60008, ()),  # bound only: in neither listing
    ("udp", 60005, ("BOUND",)),
    ("udp", 60006, ("ESTABLISHED",)),
    ("udp", 60007, ("BOUND",)),  # IPv6
]


@pytest.mark.parametrize("proto, port, states", LINUX_RECORDED)
def test_linux_proc_net_recorded(proto, port, states):
    tables = recorded("linux-6.18_proc-net-{}.txt".format(proto), "linux-6.18_proc-net-{}6.txt".format(proto))
    assert sorted(parse_proc_net(tables, port, proto)) == sorted(states)


@pytest.mark.parametrize("proto, port, states", LINUX_RECORDED)
def test_linux_netstat_recorded(proto, port, states):
    listing = recorded("linux-6.18_netstat-an-tcp-udp.txt")
    assert sorted(parse_netstat_linux(listing, port, proto)) == sorted(states)


# --- constructed from the documented formats (not recorded) -----------------------------------------------------

@pytest.mark.parametrize("parse, row, proto, state", [
    # A connected UDP socket shows its peer in the foreign column (addresses from RFC 5737's documentation range).
    (parse_netstat_windows, "  UDP    192.0.2.7:50930        198.51.100.4:443                       1234",
     "udp", "ESTABLISHED"),
    (parse_netstat_bsd, "udp4       0      0  192.0.2.7.50930        198.51.100.4.443", "udp", "ESTABLISHED"),
    (parse_netstat_linux, "udp        0      0 192.0.2.7:50930         198.51.100.4:443        ESTABLISHED",
     "udp", "ESTABLISHED"),
    # BSD netstat -a lists a bound-only TCP socket as CLOSED.
    (parse_netstat_bsd, "tcp4       0      0  192.0.2.7.50930        *.*                    CLOSED",
     "tcp", "BOUND"),
])
def test_constructed_rows(parse, row, proto, state):
    assert parse(row, 50930, proto) == (state,)


@pytest.mark.parametrize("parse, row", [
    (parse_netstat_windows, "  TCP    0.0.0.0:50930          0.0.0.0:0              ABH\u00d6REN         4"),
    (parse_netstat_bsd, "tcp4       0      0  *.50930                *.*                    NOSUCHSTATE"),
    (parse_proc_net, "   0: 0100007F:C6F2 00000000:0000 0F 00000000:00000000 00:00000000 00000000     0"),
])
def test_unknown_state_is_an_error(parse, row):
    """A state the module cannot name (a localised netstat, a new kernel state) must not vanish from a witness."""
    with pytest.raises(WitnessError):
        parse(row, 50930, "tcp")


def test_other_ports_and_names_ignored():
    """Wildcard and service-name ports and unrelated lines match no port."""
    text = "tcp4 0 0 *.* *.* CLOSED\ntcp4 0 0 localhost.https *.* LISTEN\nActive Internet connections\n\n"
    assert parse_netstat_bsd(text, 443) == ()


def ip_helper_table(rows, proto, ipv6):
    """A table as GetExtended{Tcp,Udp}Table fills it: DWORD count, then rows; ports in network byte order."""
    out = struct.pack("<I", len(rows))
    for port, state in rows:
        if proto == "tcp" and not ipv6:
            out += struct.pack("<I4s2s2x4s2s2xI", state, bytes(4), struct.pack(">H", port), bytes(4),
                               struct.pack(">H", 443), 1234)
        elif proto == "tcp":
            out += struct.pack("<16sI2s2x16sI2s2xII", bytes(16), 0, struct.pack(">H", port), bytes(16), 0,
                               struct.pack(">H", 443), state, 1234)
        elif not ipv6:
            out += struct.pack("<4s2s2xI", bytes(4), struct.pack(">H", port), 1234)
        else:
            out += struct.pack("<16sI2s2xI", bytes(16), 0, struct.pack(">H", port), 1234)
    return out


@pytest.mark.parametrize("ipv6", [False, True])
def test_ip_helper_tables(ipv6):
    """MIB_TCP(6)ROW_OWNER_PID / MIB_UDP(6)ROW_OWNER_PID rows built from the documented layouts (tcpmib.h,
    udpmib.h; MIB_TCP_STATE 2 LISTEN, 5 ESTAB, 7 FIN_WAIT2, 11 TIME_WAIT)."""
    tcp = ip_helper_table([(60000, 2), (60000, 5), (2592, 5), (60000, 7), (60000, 11), (0x1234, 2)], "tcp", ipv6)
    assert parse_ip_helper_table(tcp, 60000, "tcp", ipv6) == ("LISTEN", "ESTABLISHED", "FIN_WAIT_2", "TIME_WAIT")
    assert parse_ip_helper_table(tcp, 0x3412, "tcp", ipv6) == ()  # byte order: 0x1234 is not 0x3412
    assert parse_ip_helper_table(tcp, 0x1234, "tcp", ipv6) == ("LISTEN",)
    udp = ip_helper_table([(5353, None), (5353, None), (53, None)], "udp", ipv6)
    assert parse_ip_helper_table(udp, 5353, "udp", ipv6) == ("BOUND", "BOUND")


def test_state_tables_use_the_vocabulary():
    names = set(witness.LINUX_TCP_STATES.values()) | set(witness.SOCK_DIAG_TCP_STATES.values())
    names |= set(witness.LINUX_UDP_STATES.values()) | set(witness.WINDOWS_TCP_STATES.values())
    names |= set(witness.NETSTAT_STATES.values()) | set(witness.BSD_NETSTAT_STATES.values())
    assert names <= set(TCP_STATES)


@pytest.mark.parametrize("equal_op, length", [(True, 8), (False, 16)])
def test_port_filter_bytecode(equal_op, length):
    """inet_diag_bc_op layout: the comparison op jumps one op past its operand when true and past the end (length
    + 4, which inet_diag_bc_run rejects) when false; the port is a host-order u16 in the operand's `no`."""
    code = port_filter_bytecode(60000, 60000, equal_op)
    assert len(code) == length
    ops = [struct.unpack_from("=BBH", code, offset) for offset in range(0, length, 4)]
    assert ops[1] == (0, 0, 60000)
    assert ops[0][1:] == (8, length + 4)
    assert ops[0][0] == (witness.INET_DIAG_BC_S_EQ if equal_op else witness.INET_DIAG_BC_S_GE)


def test_port_range_filter_bytecode():
    """A range (count()'s least to greatest port) is S_GE low, then S_LE high, each rejecting past the end."""
    code = port_filter_bytecode(1024, 60000)
    ops = [struct.unpack_from("=BBH", code, offset) for offset in range(0, len(code), 4)]
    assert ops == [(witness.INET_DIAG_BC_S_GE, 8, 20), (0, 0, 1024), (witness.INET_DIAG_BC_S_LE, 8, 12), (0, 0, 60000)]


# --- reader selection and the netstat program readers ------------------------------------------------------------

def test_unknown_family_and_method():
    with pytest.raises(WitnessError):
        Witness("plan9")
    with pytest.raises(WitnessError):
        Witness("linux", method="netstat -an")


def test_proto_is_checked():
    with pytest.raises(ValueError):
        parse_netstat_bsd("", 1, "sctp")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux readers")
def test_linux_falls_back_to_proc(monkeypatch):
    def refuse(self, os_family="linux"):
        raise OSError(93, "Protocol not supported")  # what a sandbox without NETLINK_SOCK_DIAG answers
    monkeypatch.setattr(SockDiagReader, "__init__", refuse)
    with Witness("linux") as fallback:
        assert fallback.method == "/proc/net"
        assert fallback.sees_bound_tcp is False
        assert fallback.sees_time_wait is True


@pytest.fixture
def fake_netstat(tmp_path, monkeypatch):
    """Put a `netstat` on PATH that prints a recorded file (or fails), and logs its arguments."""
    def install(sample=None, exit_status=0):
        log = tmp_path / "arguments"
        script = tmp_path / "netstat"
        body = "cat '{}'\n".format(os.path.join(DATA, sample)) if sample else ""
        script.write_text("#!/bin/sh\necho \"$@\" >> '{}'\n{}exit {}\n".format(log, body, exit_status))
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
        monkeypatch.setenv("PATH", str(tmp_path) + os.pathsep + os.environ.get("PATH", ""))
        return log
    return install


@pytest.mark.skipif(os.name != "posix", reason="the fake netstat is a shell script")
def test_bsd_netstat_reader(fake_netstat):
    log = fake_netstat("freebsd-12_netstat-an_jc.txt")
    with Witness("freebsd") as freebsd:
        assert (freebsd.method, freebsd.sees_bound_tcp) == ("netstat -an", True)
        assert freebsd.states("tcp", 22) == ("ESTABLISHED", "LISTEN", "LISTEN")
        assert freebsd.states("udp", 514) == ("BOUND", "BOUND")
    assert log.read_text().splitlines() == ["-an -W -p tcp", "-an -W -p udp"]
    assert BsdNetstatReader("openbsd").commands("tcp") == (["netstat", "-an", "-p", "tcp"],)


@pytest.mark.skipif(os.name != "posix", reason="the fake netstat is a shell script")
@pytest.mark.parametrize("os_family, sees", [("darwin", False), ("freebsd", True), ("openbsd", True),
                                             ("cygwin", True), ("windows", True)])
def test_sees_time_wait(fake_netstat, os_family, sees):
    """Only macOS's netstat is known to leave TIME_WAIT out (the BSD reader's note); every other reader lists it."""
    fake_netstat("freebsd-12_netstat-an_jc.txt")
    with Witness(os_family) as reader:
        assert reader.sees_time_wait is sees


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fake netstat reads Linux's /proc/net/tcp")
def test_macos_reader_probes_whether_netstat_lists_time_wait(tmp_path, monkeypatch):
    """macOS's netstat is said to omit TIME_WAIT: the reader asks. A netstat that prints this machine's real
    TIME_WAIT entries in BSD's format is found to list them; one that prints a recorded macOS listing, which holds
    none on the probe's port, is not, and the reader says so in its blind_spot."""
    script = tmp_path / "netstat"
    script.write_text("#!{}\nimport sys\nfor name in ('/proc/net/tcp', '/proc/net/tcp6'):\n"
                      "    for row in list(open(name))[1:]:\n        fields = row.split()\n"
                      "        if fields[3] == '06':\n"
                      "            print('tcp4 0 0 127.0.0.1.%d 127.0.0.1.1 TIME_WAIT' % "
                      "int(fields[1].rsplit(':', 1)[1], 16))\n".format(sys.executable))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path) + os.pathsep + os.environ.get("PATH", ""))
    with Witness("darwin") as darwin:
        assert (darwin.sees_time_wait, darwin.blind_spot) == (True, "")


@pytest.mark.skipif(os.name != "posix", reason="the fake netstat is a shell script")
def test_macos_reader_without_time_wait_says_so(fake_netstat):
    fake_netstat("macos-10.14.6_netstat-An_jc.txt")
    with Witness("darwin") as darwin:
        assert darwin.sees_time_wait is False
        assert darwin.blind_spot.startswith("this host's netstat does not list TIME_WAIT")
        # bind_matrix then leaves its TIME_WAIT cases inconclusive, saying why (no peer way: that is gVisor's, where
        # its sources make it exact); what the listing does show stays the table's
        way = {state: witness_way(darwin, {"state": state, "proto": "tcp", "family": "inet"})
               for state in ("TIME_WAIT", "FIN_WAIT_2", "LISTEN")}
        assert way == {"TIME_WAIT": "TIME_WAIT cannot be witnessed here: " + darwin.blind_spot,
                       "FIN_WAIT_2": "table", "LISTEN": "table"}


# Recorded on the development VM inside `runsc --network=none do` (gVisor release-20221219.0, Debian's runsc
# 0.0~20221219.0), /proc/net/tcp and udp of a program holding: a socket bound to 127.0.0.1:40001 (inode 1), a listener on 0.0.0.0:40002 (2) with a
# client (3) and its accepted end (4), UDP on 127.0.0.1:40003 (5), UDP on ::1:40004 (6: not listed, udp6 is its
# header only), a listener on ::1:40005 (7).
GVISOR_TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   2: 0100007F:5AA4 0100007F:9C42 01 00000000:00000000 00:00000000 00000000     0        0        3 1 0000000000000000 0 0 0 0 -1
   3: 0100007F:9C42 0100007F:5AA4 01 00000000:00000000 00:00000000 00000000     0        0        4 1 0000000000000000 0 0 0 0 -1
   0: 0100007F:9C41 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0        1 1 0000000000000000 0 0 0 0 -1
   1: 00000000:9C42 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0        2 1 0000000000000000 0 0 0 0 -1
"""
GVISOR_UDP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
    4: 0100007F:9C43 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0        5 1 0000000000000000 0
"""


def test_gvisor_proc_net_rows_carry_the_inode():
    assert list(proc_net_rows(GVISOR_TCP, frozenset((40001, 40002)), "tcp")) == [
        (40002, 1, 4), (40001, 7, 1), (40002, 10, 2)]
    assert list(proc_net_rows(GVISOR_UDP, (40003,), "udp")) == [(40003, 7, 5)]
    # read as Linux's table: a bound-only TCP socket's 07 is CLOSED there, since Linux never lists one
    assert parse_proc_net(GVISOR_TCP, 40001) == ("CLOSED",)


@pytest.mark.skipif(os.name != "posix", reason="the fake netstat is a shell script")
def test_windows_netstat_reader(fake_netstat):
    """Cygwin's reader runs Windows' netstat once per family; here both calls print the recorded IPv4+IPv6 table,
    so every row is seen twice."""
    log = fake_netstat("windows-10_netstat-aon_jc.txt")
    with Witness("cygwin") as cygwin:
        assert cygwin.method == "netstat -ano"
        assert cygwin.states("tcp", 1031) == ("ESTABLISHED", "ESTABLISHED")
    assert log.read_text().splitlines() == ["-ano -p TCP", "-ano -p TCPv6"]
    assert WindowsNetstatReader("windows").commands("udp") == (["netstat", "-ano", "-p", "UDP"],
                                                               ["netstat", "-ano", "-p", "UDPv6"])


@pytest.mark.skipif(os.name != "posix", reason="the fake netstat is a shell script")
@pytest.mark.parametrize("os_family, sample, parse, watched", [
    ("freebsd", "freebsd-12_netstat-an_jc.txt", parse_netstat_bsd,
     [("tcp", 22), ("tcp", 25), ("tcp", 56321), ("udp", 514), ("udp", 22)]),
    ("darwin", "macos-10.14.6_netstat-An_jc.txt", parse_netstat_bsd,
     [("tcp", 53755), ("tcp", 53763), ("tcp", 9592), ("udp", 5353), ("udp", 61982), ("udp", 63995)]),
    ("cygwin", "windows-10_netstat-aon_jc.txt", parse_netstat_windows,
     [("tcp", 135), ("tcp", 1031), ("tcp", 8307), ("udp", 1900), ("udp", 52284)]),
], ids=["freebsd-12", "macos-10.14.6", "windows-10"])
def test_netstat_readers_read_each_table_once_per_batch(fake_netstat, os_family, sample, parse, watched):
    """A batch of ports, polled until each shows what the recorded listing (tests/data/netstat/README.md: FreeBSD
    12, macOS 10.14.6 and Windows 10 from kellyjonbrazil/jc) holds for it: netstat runs once per protocol table
    (Windows': once per protocol and family) for the whole batch, and each port reads as states() reads it."""
    log = fake_netstat(sample)
    with Witness(os_family) as reader:
        probed = reader.reads["netstat"]  # macOS's reader asks netstat whether it lists TIME_WAIT when it opens
        commands = [" ".join(command[1:]) for proto in ("tcp", "udp") for command in reader.reader.commands(proto)]
        # the fake netstat prints the whole sample for each command: Windows' two per protocol see it twice
        expected = [parse(recorded(sample) * len(reader.reader.commands(proto)), port, proto)
                    for proto, port in watched]
        readings = watch(reader, [Watch(proto, port) for proto, port in watched],
                         lambda index, reading: reading.states == expected[index], 5.0)
        assert [reading.states for reading in readings] == expected
        assert [reading.strangers for reading in readings] == [0] * len(watched)
        assert reader.reads == {"netstat": probed + len(commands)}
    assert log.read_text().splitlines()[probed:] == commands


@pytest.mark.skipif(os.name != "posix", reason="the fake netstat is a shell script")
def test_windows_without_ip_helper_falls_back_to_netstat(fake_netstat):
    """Where iphlpapi cannot be loaded (here: not Windows at all), the Windows witness runs netstat instead."""
    fake_netstat("windows-10_netstat-an_mozilla-mig.txt")
    with Witness("windows") as windows:
        assert windows.method == "netstat -ano"


@pytest.mark.skipif(os.name != "posix", reason="the fake netstat is a shell script")
def test_netstat_failure_is_an_error(fake_netstat):
    fake_netstat(exit_status=1)
    with Witness("freebsd") as freebsd:
        with pytest.raises(WitnessError):
            freebsd.states("tcp", 22)
    with pytest.raises(WitnessError, match="exited 1"):  # macOS's reader already runs netstat when it opens
        Witness("darwin")


# --- real sockets on this machine (Linux): every reader, both families, every state ------------------------------

LINUX_ONLY = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux readers")
LINGER_0 = struct.pack("ii", 1, 0)


def ipv6_loopback_works():
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


FAMILIES = [
    pytest.param((socket.AF_INET, "127.0.0.1"), id="inet"),
    pytest.param((socket.AF_INET6, "::1"), id="inet6",
                 marks=pytest.mark.skipif(not ipv6_loopback_works(), reason="no IPv6 loopback")),
]


class Loopback:
    """Sockets of one test on one loopback address, each on an OS-assigned port; aborted (SO_LINGER 0) at the end
    so nothing but the TIME_WAITs a test asks for outlives it."""

    def __init__(self, family, host, reader):
        self.family, self.host, self.reader, self.opened = family, host, reader, []

    def open(self, kind=socket.SOCK_STREAM):
        sock = socket.socket(self.family, kind)
        self.opened.append(sock)
        return sock

    def bound(self, kind=socket.SOCK_STREAM):
        """A socket on a port whose table shows nothing but itself. bind(0) can hand out a port that still has
        TIME_WAITs of another address or family (left by earlier tests), which the witness rightly shows; such a
        port is kept bound, so it is not handed out again, and another is drawn."""
        proto = "tcp" if kind == socket.SOCK_STREAM else "udp"
        itself = ("BOUND",) if proto == "udp" or self.reader.sees_bound_tcp else ()
        for _draw in range(50):
            sock = self.open(kind)
            sock.bind((self.host, 0))
            if self.reader.states(proto, port_of(sock)) == itself:
                return sock
        raise AssertionError("no port without other entries among 50 draws")

    def listener(self):
        sock = self.bound()
        sock.listen(8)
        return sock

    def connection(self):
        """(listener, client, accepted server end). The client binds first: a port connect() picks may be shared
        with older connections' TIME_WAITs (other 4-tuples), one bind() picks has no entries at all."""
        listener = self.listener()
        client = self.bound()
        client.connect(listener.getsockname()[:2])
        server, _ = listener.accept()
        self.opened.append(server)
        return listener, client, server

    def close(self):
        for sock in self.opened:
            if sock.fileno() != -1 and sock.type == socket.SOCK_STREAM:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_0)
                except OSError:
                    pass  # already reset
            sock.close()


def port_of(sock):
    return sock.getsockname()[1]


def witnessed(reader, expected, timeout=5.0):
    """Poll the witness until every (proto, port) shows the expected entries, or the deadline passes; return what
    it showed last. Entries are compared as sorted tuples, one per table row."""
    deadline = time.monotonic() + timeout
    while True:
        seen = {(proto, port): tuple(sorted(reader.states(proto, port))) for proto, port in expected}
        if seen == expected or time.monotonic() > deadline:
            return seen


def poll_until(reader, proto, port, state):
    """Wait for one intermediate state the scenario itself depends on."""
    assert witnessed(reader, {(proto, port): (state,)}) == {(proto, port): (state,)}


# Each scenario drives sockets into a state and returns {(proto, port): expected sorted states}. The server port
# plays seed 004's port 60000; the client's port must never show up in it.

def listening(net, reader):
    listener = net.listener()
    return {("tcp", port_of(listener)): ("LISTEN",)}


def listening_with_connection(net, reader):
    listener, client, server = net.connection()
    return {("tcp", port_of(listener)): ("ESTABLISHED", "LISTEN"), ("tcp", port_of(client)): ("ESTABLISHED",)}


def established(net, reader):
    listener, client, server = net.connection()
    listener.close()
    return {("tcp", port_of(server)): ("ESTABLISHED",), ("tcp", port_of(client)): ("ESTABLISHED",)}


def close_wait(net, reader):
    """The client closes first: the server end waits for its own close."""
    listener, client, server = net.connection()
    listener.close()
    client.shutdown(socket.SHUT_WR)
    return {("tcp", port_of(server)): ("CLOSE_WAIT",), ("tcp", port_of(client)): ("FIN_WAIT_2",)}


def fin_wait_2(net, reader):
    """The server closes first and the client stays open (seed 004's third step)."""
    listener, client, server = net.connection()
    listener.close()
    server.shutdown(socket.SHUT_WR)
    return {("tcp", port_of(server)): ("FIN_WAIT_2",), ("tcp", port_of(client)): ("CLOSE_WAIT",)}


def time_wait(net, reader):
    """The server closes first, then the client: the server's port holds TIME_WAIT, the client's nothing."""
    listener, client, server = net.connection()
    listener.close()
    server_port, client_port = port_of(server), port_of(client)
    server.shutdown(socket.SHUT_WR)
    poll_until(reader, "tcp", client_port, "CLOSE_WAIT")  # else both closing at once would be CLOSING
    client.close()
    return {("tcp", server_port): ("TIME_WAIT",), ("tcp", client_port): ()}


def bound_tcp(net, reader):
    sock = net.bound()
    return {("tcp", port_of(sock)): ("BOUND",) if reader.sees_bound_tcp else ()}


def udp_bound_and_connected(net, reader):
    receiver = net.bound(socket.SOCK_DGRAM)
    sender = net.bound(socket.SOCK_DGRAM)
    sender.connect(receiver.getsockname()[:2])
    # (Nothing is said of the TCP table on these port numbers: TCP's port space is another, where old TIME_WAITs
    # of other tests may sit on the same numbers.)
    return {("udp", port_of(receiver)): ("BOUND",), ("udp", port_of(sender)): ("ESTABLISHED",)}


SCENARIOS = [listening, listening_with_connection, established, close_wait, fin_wait_2, time_wait, bound_tcp,
             udp_bound_and_connected]


@pytest.fixture(params=["sock_diag", "/proc/net", "sock_diag S_GE+S_LE"])
def linux_reader(request):
    """Each Linux reader; the last is sock_diag with the port filter older kernels get (no INET_DIAG_BC_S_EQ)."""
    reader = Witness("linux", method=request.param.split()[0])
    if request.param.endswith("S_LE"):
        reader.reader.equal_op = False
    yield reader
    reader.close()


@LINUX_ONLY
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda scenario: scenario.__name__)
def test_real_sockets(linux_reader, family, scenario):
    net = Loopback(*family, linux_reader)
    try:
        expected = scenario(net, linux_reader)
        assert witnessed(linux_reader, expected) == expected
    finally:
        net.close()


@pytest.fixture(params=[True, False], ids=["lookups", "port dumps"])
def sock_diag(request):
    """The sock_diag reader as read() runs on this kernel (exact lookups), and as it runs where the kernel refuses
    exact requests (port-filtered dumps)."""
    with Witness("linux") as linux:
        assert linux.reader.exact  # this kernel answers exact requests (the reader's probe)
        linux.reader.exact = request.param
        yield linux


@LINUX_ONLY
@pytest.mark.parametrize("family", FAMILIES)
def test_sock_diag_reads_a_batch_of_cases(sock_diag, family):
    """One read() of several cases' ports, each with the sockets the case made there (a closed one by its
    addresses): every state bind_matrix drives, nothing on the ports but those sockets."""
    net = Loopback(*family, sock_diag)
    try:
        listener, client, server = net.connection()
        both = Watch("tcp", port_of(listener), [End(listener), End(server)])
        bound = net.bound()
        alone = Watch("tcp", port_of(bound), [End(bound)])
        old_listener, old_client, old_server = net.connection()
        old_listener.close()
        established = Watch("tcp", port_of(old_server), [End(old_server)])
        closing_listener, closing_client, closing_server = net.connection()
        closing_listener.close()
        ended = Watch("tcp", port_of(closing_server), [End(closing_server).closed()])
        closing_server.close()  # the server closes first: its end holds TIME_WAIT once the client closes too
        poll_until(sock_diag, "tcp", port_of(closing_client), "CLOSE_WAIT")
        closing_client.close()
        receiver = net.bound(socket.SOCK_DGRAM)
        sender = net.bound(socket.SOCK_DGRAM)
        sender.connect(receiver.getsockname()[:2])
        datagrams = [Watch("udp", port_of(sock), [End(sock)]) for sock in (receiver, sender)]
        watches = [both, alone, established, ended] + datagrams
        # a bound-only socket: its own word where it is looked up (no lookup hash holds it), a dump entry where the
        # kernel dumps bound sockets
        shows_bound = sock_diag.reader.exact or sock_diag.sees_bound_tcp
        expected = [("ESTABLISHED", "LISTEN"), ("BOUND",) if shows_bound else (), ("ESTABLISHED",), ("TIME_WAIT",),
                    ("BOUND",), ("ESTABLISHED",)]
        readings = watch(sock_diag, watches, lambda index, reading: tuple(sorted(reading.states)) == expected[index],
                         5.0)
        assert [tuple(sorted(reading.states)) for reading in readings] == expected
        assert [reading.strangers for reading in readings] == [0] * len(watches)
    finally:
        net.close()


@LINUX_ONLY
@pytest.mark.parametrize("kind, proto", [(socket.SOCK_STREAM, "tcp"), (socket.SOCK_DGRAM, "udp")])
def test_sock_diag_counts_strangers(kind, proto):
    """A second SO_REUSEPORT socket on a watched port that the case did not make is a stranger, whichever of the
    two a lookup by address returns."""
    with Witness("linux") as linux:
        ours, theirs = socket.socket(socket.AF_INET, kind), socket.socket(socket.AF_INET, kind)
        try:
            for sock in (ours, theirs):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            ours.bind(("127.0.0.1", 0))
            theirs.bind(("127.0.0.1", port_of(ours)))
            if proto == "tcp":
                ours.listen(1)
                theirs.listen(1)
            (reading,) = linux.read([Watch(proto, port_of(ours), [End(ours)])])
            state = "LISTEN" if proto == "tcp" else "BOUND"
            assert (reading.states, reading.strangers) == ((state, state), 1)
            (reading,) = linux.read([Watch(proto, port_of(ours), [End(ours), End(theirs)])])
            assert (reading.states, reading.strangers) == ((state, state), 0)
        finally:
            ours.close()
            theirs.close()


@LINUX_ONLY
def test_sock_diag_looks_sockets_up_one_by_one():
    """read() makes one exact request per socket, and dumps only the listening and UDP tables (the kernel skips
    its established table for a LISTEN-only state mask), whatever else the host holds."""
    with Witness("linux") as linux:
        net = Loopback(socket.AF_INET, "127.0.0.1", linux)
        try:
            listeners = [net.listener() for _ in range(5)]
            datagram = net.bound(socket.SOCK_DGRAM)
            linux.reads.clear()
            readings = linux.read([Watch("tcp", port_of(sock), [End(sock)]) for sock in listeners] +
                                  [Watch("udp", port_of(datagram), [End(datagram)])])
            assert [reading.states for reading in readings] == [("LISTEN",)] * 5 + [("BOUND",)]
            # the TCP dump covers both families in one request where the kernel takes TCPDIAG_GETSOCK
            assert linux.reads == {"lookup": 6, "dump": len(linux.reader.tcp_dumps) + 2}
        finally:
            net.close()


def raw_sock_diag_ports(family, protocol, port, equal_op):
    """The local ports of every entry the kernel sends back for the witness's filtered dump request."""
    bytecode = port_filter_bytecode(port, port, equal_op)
    mask = witness.TCP_STATE_MASK if protocol == socket.IPPROTO_TCP else witness.UDP_STATE_MASK
    request = witness._REQUEST_HEAD.pack(
        witness._REQUEST_HEAD.size + len(bytecode), witness.SOCK_DIAG_BY_FAMILY,
        witness.NLM_F_REQUEST | witness.NLM_F_DUMP, 1, 0, family, protocol, 0, 0, mask, bytes(2),
        4 + len(bytecode), witness.INET_DIAG_REQ_BYTECODE) + bytecode  # idiag_sport 0: the bytecode alone filters
    ports = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, witness.NETLINK_SOCK_DIAG) as netlink:
        netlink.send(request)
        while True:
            reply, offset = netlink.recv(65536), 0
            while offset < len(reply):
                length, kind = struct.unpack_from("=IH", reply, offset)
                assert kind != witness.NLMSG_ERROR
                if kind == witness.NLMSG_DONE:
                    return ports
                ports.append(struct.unpack_from(">H", reply, offset + 20)[0])
                offset += (length + 3) & ~3


@LINUX_ONLY
@pytest.mark.parametrize("equal_op", [True, False], ids=["S_EQ", "S_GE+S_LE"])
def test_sock_diag_filters_in_the_kernel(equal_op):
    """The bytecode, not the Python side, drops other ports: with other sockets about (a connection's client end,
    other listeners, UDP sockets), the kernel returns only the asked port's entries."""
    net = Loopback(socket.AF_INET, "127.0.0.1", Witness("linux"))
    try:
        listener, client, server = net.connection()
        others = [net.listener() for _ in range(3)]
        receiver = net.bound(socket.SOCK_DGRAM)
        net.bound(socket.SOCK_DGRAM).connect(receiver.getsockname()[:2])
        port = port_of(listener)
        assert raw_sock_diag_ports(socket.AF_INET, socket.IPPROTO_TCP, port, equal_op) == [port, port]
        assert raw_sock_diag_ports(socket.AF_INET, socket.IPPROTO_TCP, port_of(others[0]), equal_op) == \
            [port_of(others[0])]
        assert raw_sock_diag_ports(socket.AF_INET, socket.IPPROTO_UDP, port_of(receiver), equal_op) == \
            [port_of(receiver)]
    finally:
        net.close()
        net.reader.close()


@LINUX_ONLY
def test_sock_diag_sees_bound_sockets_on_this_kernel():
    """Linux 6.8 added TCP_BOUND_INACTIVE; the probe must find it there."""
    release = tuple(int(part) for part in os.uname().release.split("-")[0].split(".")[:2])
    if release < (6, 8):
        pytest.skip("TCP_BOUND_INACTIVE is in Linux 6.8 and later (or a backport, which the probe would find)")
    with Witness("linux") as linux:
        assert (linux.method, linux.sees_bound_tcp, linux.sees_time_wait) == ("sock_diag", True, True)


@LINUX_ONLY
def test_sock_diag_after_fork():
    """A forked child gets its own netlink socket instead of reading its parent's replies."""
    with Witness("linux") as linux:
        net = Loopback(socket.AF_INET, "127.0.0.1", linux)
        listener = net.listener()  # a port no other test's TIME_WAIT (of another family) shares
        port = port_of(listener)
        child = os.fork()
        if child == 0:
            os._exit(0 if linux.states("tcp", port) == ("LISTEN",) else 1)
        _pid, status = os.waitpid(child, 0)
        try:
            assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
            assert linux.states("tcp", port) == ("LISTEN",)
        finally:
            net.close()
