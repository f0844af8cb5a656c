"""witness: the states the OS connection table shows on a case's local port.

Before a lab case tries its second socket, it reads the connection table for the earlier socket's local port;
the case is `inconclusive` unless the table shows exactly the intended state(s). `Witness(os_family)` picks the
best reader the host has:

    linux            sock_diag netlink: each socket of a case by an exact lookup, strangers from port-filtered
                     dumps of the small tables; else /proc/net/{tcp,tcp6,udp,udp6}
    windows          GetExtendedTcpTable / GetExtendedUdpTable (iphlpapi via ctypes); else `netstat -ano`
    cygwin           Windows' own `netstat -ano`
    BSDs and macOS   `netstat -an -p tcp|udp` (on macOS, whether it lists TIME_WAIT is probed when it opens)
    gvisor           gVisor's /proc/net, which lists only sockets with an open descriptor (GvisorProcNetReader)

`read(watches)` reads a batch of cases at once. A Watch names a case's port (proto, port) and the sockets the case
made there (Ends: addresses, and the socket while it is open); it gives a Reading per watch: one vocabulary
TCP_STATES name per entry on the port, and how many entries the reader knows are not the case's own (strangers).
A case is witnessed when every socket it made shows its state and the port holds nothing else. Readers that can
only read whole tables (/proc/net, netstat, IP Helper) read each protocol's table once per call for the whole
batch and cannot tell sockets apart: they show the port's entries, and "nothing else" is that those entries are
exactly the case's state. sock_diag looks each End up by its addresses, so its cost does not grow with the host's
connections, and confirms "nothing else" without walking the established table (SockDiagReader says how).
`watch(witness, watches, settled, deadline)` polls a batch until each reading is settled, one read per round.

`states(proto, port)` returns one TCP_STATES name per table entry whose LOCAL port is `port`, IPv4 and IPv6
together, any local address (on Linux from a port-filtered dump, whose cost grows with the table). A bound-only TCP
socket is BOUND (when the reader can see it at all: `sees_bound_tcp`); a UDP socket is BOUND, or ESTABLISHED once
connected (when the reader can tell: `sees_connected_udp`); TIME_WAIT entries are there when the reader sees them
(`sees_time_wait`: macOS's netstat is said to omit them). What a reader cannot see it declares: `sees_closed`
(a socket whose descriptor is closed, still closing), `sees_udp6`, and `blind_spot`, the reason in words, so that a
lab makes the case inconclusive with that reason, or witnesses the state another honest way. A table it cannot read, or a state it cannot name, raises
WitnessError. `count(proto, state, ports)` counts the entries in one state over a set of local ports with one read
of the table, for a lab that used thousands of ports. Every reader counts what it asked the OS (`reads`).

The parsers are pure functions of recorded text (proc_net_entries, netstat_linux_entries, netstat_windows_entries,
netstat_bsd_entries) or bytes (ip_helper_entries), so tests run them on output recorded on other systems; each
yields (local port, state name) for the entries on a set of ports, and parse_* read one port with them. Every
whole-table reader's states(), count() and read() are filters over its entries() (Reader).
Standard library only; platform modules are imported where they are used.
"""
import collections
import errno
import os
import shutil
import socket
import struct
import subprocess

from labs.polling import poll
from labs.vocabulary import FULL_FIN_WAIT_2


class WitnessError(Exception):
    """The connection table could not be read, or showed something this module cannot name."""


# --- state spellings --------------------------------------------------------------------------------------------

# Linux TCP states by number (include/net/tcp_states.h); 12 is a request socket, shown as SYN_RECV; 13 is
# TCP_BOUND_INACTIVE, the sock_diag pseudo-state for a bound-only socket (Linux >= 6.8).
LINUX_TCP_STATES = {
    1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT_1", 5: "FIN_WAIT_2", 6: "TIME_WAIT", 7: "CLOSED",
    8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING", 12: "SYN_RECV", 13: "BOUND",
}
# A Linux UDP socket is TCP_CLOSE until connect(), then TCP_ESTABLISHED.
LINUX_UDP_STATES = {7: "BOUND", 1: "ESTABLISHED"}

# Windows MIB_TCP_STATE (tcpmib.h); DELETE_TCB is a connection being torn down.
WINDOWS_TCP_STATES = {
    1: "CLOSED", 2: "LISTEN", 3: "SYN_SENT", 4: "SYN_RECV", 5: "ESTABLISHED", 6: "FIN_WAIT_1", 7: "FIN_WAIT_2",
    8: "CLOSE_WAIT", 9: "CLOSING", 10: "LAST_ACK", 11: "TIME_WAIT", 12: "CLOSED",
}

# State words as netstat prints them: net-tools (FIN_WAIT2, CLOSE), Windows (LISTENING, SYN_RECEIVED, FIN_WAIT_2;
# BOUND for the bound ports `netstat -q` adds, a spelling not checked on a real host), BSD (FIN_WAIT_2, SYN_RCVD).
NETSTAT_STATES = {
    "LISTEN": "LISTEN", "LISTENING": "LISTEN", "SYN_SENT": "SYN_SENT", "SYN_RECV": "SYN_RECV",
    "SYN_RECEIVED": "SYN_RECV", "SYN_RCVD": "SYN_RECV", "ESTABLISHED": "ESTABLISHED", "FIN_WAIT1": "FIN_WAIT_1",
    "FIN_WAIT_1": "FIN_WAIT_1", "FIN_WAIT2": "FIN_WAIT_2", "FIN_WAIT_2": "FIN_WAIT_2", "CLOSE_WAIT": "CLOSE_WAIT",
    "CLOSING": "CLOSING", "LAST_ACK": "LAST_ACK", "TIME_WAIT": "TIME_WAIT", "CLOSE": "CLOSED", "CLOSED": "CLOSED",
    "DELETE_TCB": "CLOSED", "BOUND": "BOUND",
}
# BSD netstat -a lists a TCP socket that is bound but neither listening nor connected as CLOSED.
BSD_NETSTAT_STATES = dict(NETSTAT_STATES, CLOSED="BOUND")

# How netstat writes "no peer" in a UDP row; any other foreign address means the socket is connected.
UNCONNECTED_PEERS = frozenset(("*:*", "*.*", "0.0.0.0:*", "0.0.0.0:0", ":::*", "[::]:*", "[::]:0"))

PROTOCOLS = ("tcp", "udp")


def _state_name(table, key, where):
    """A table's state spelling as a TCP_STATES name; an unknown one is an error, never silently dropped."""
    try:
        return table[key]
    except KeyError:
        raise WitnessError("{}: unknown state {!r}".format(where, key))


def _udp_state(foreign):
    return "BOUND" if foreign in UNCONNECTED_PEERS else "ESTABLISHED"


def _port_of(endpoint, separator):
    """The port after the last separator ("127.0.0.1:80", "[::1]:80", "*.80", "fe80::1%lo0.80"), or None for a
    wildcard or a service name."""
    port = endpoint.rpartition(separator)[2]
    return int(port) if port.isdigit() else None


def _check_proto(proto):
    if proto not in PROTOCOLS:
        raise ValueError("proto must be one of {}, not {!r}".format(PROTOCOLS, proto))


# --- parsers: pure functions of recorded output -----------------------------------------------------------------
# Each *_entries function yields (local port, state name) for the entries of one table whose local port is in
# `ports` (a container: one port for states(), a frozenset for count()), in table order. Only those entries' states
# are named, so a state spelling this module cannot name is an error there and goes unread on other ports.

def proc_net_rows(text, ports, proto="tcp"):
    """(local port, state number, inode) of the entries of the text of /proc/net/tcp, tcp6, udp or udp6 (one file or
    several concatenated): "sl local_address rem_address st tx_queue:rx_queue tr:when retrnsmt uid timeout inode
    ..." with hex "ADDR:PORT" and a hex state."""
    _check_proto(proto)
    # one port (states()): most lines are skipped by a substring test, without splitting
    only = ":%04X" % next(iter(ports)) if len(ports) == 1 else ""
    for line in text.splitlines():
        if only not in line:
            continue
        fields = line.split(None, 10)
        if len(fields) > 3 and fields[0].endswith(":"):  # "sl" heads a header line, "0:" an entry
            port = int(fields[1].rpartition(":")[2], 16)
            if port in ports:  # a row cut short before its inode has none (0)
                yield port, int(fields[3], 16), int(fields[9]) if len(fields) > 9 else 0


def proc_net_entries(text, ports, proto="tcp"):
    """Entries of the text of /proc/net/tcp, tcp6, udp or udp6 (proc_net_rows), their states named as Linux's."""
    table, where = (LINUX_TCP_STATES if proto == "tcp" else LINUX_UDP_STATES), "/proc/net/" + proto
    for port, number, _inode in proc_net_rows(text, ports, proto):
        yield port, _state_name(table, number, where)


def _netstat_entries(rows, ports, proto, local, separator, state_names):
    """Entries of netstat rows that start at their protocol column: the local address is column `local`, the
    foreign address the next one, then (TCP) the state word. Every netstat parser ends here."""
    for row in rows:
        if len(row) < local + 2:
            continue
        port = _port_of(row[local], separator)
        if port not in ports:
            continue
        if proto == "udp":
            yield port, _udp_state(row[local + 1])
        elif len(row) > local + 2:
            yield port, _state_name(state_names, row[local + 2], "netstat")


def _rows_named(text, names):
    """The split lines of `text` whose first field is one of `names`."""
    return (fields for fields in map(str.split, text.splitlines()) if fields and fields[0] in names)


def netstat_linux_entries(text, ports, proto="tcp"):
    """Entries of net-tools `netstat -an` output (Linux): "tcp 0 0 127.0.0.1:60000 127.0.0.1:2364 FIN_WAIT2"; tcp6
    rows write the address as ":::22" or "::1:631"."""
    _check_proto(proto)
    return _netstat_entries(_rows_named(text, (proto, proto + "6")), ports, proto, 3, ":", NETSTAT_STATES)


def netstat_windows_entries(text, ports, proto="tcp"):
    """Entries of Windows `netstat -an` / `-ano` output: "TCP 0.0.0.0:60000 0.0.0.0:0 LISTENING [PID]", "UDP
    [::]:5353 *:* [PID]"; IPv6 rows bracket the address, link-local ones carry a %scope."""
    _check_proto(proto)
    return _netstat_entries(_rows_named(text, (proto.upper(),)), ports, proto, 1, ":", NETSTAT_STATES)


_BSD_PROTO_NAMES = {proto: frozenset((proto, proto + "4", proto + "6", proto + "46")) for proto in PROTOCOLS}


def netstat_bsd_entries(text, ports, proto="tcp"):
    """Entries of BSD or macOS `netstat -an` output: "tcp4 0 0 127.0.0.1.60000 *.* LISTEN", the port after the
    last dot ("*.60000", "::1.60000", "fe80::1%lo0.123"). The protocol column is found by name, so -A (PCB
    address, flow hash) and -v (trailing columns) layouts parse too."""
    _check_proto(proto)
    names = _BSD_PROTO_NAMES[proto]

    def rows():
        for fields in map(str.split, text.splitlines()):
            starts = [index for index, field in enumerate(fields[:3]) if field in names]
            if starts:
                yield fields[starts[0]:]
    return _netstat_entries(rows(), ports, proto, 3, ".", BSD_NETSTAT_STATES)


# Windows MIB rows after the DWORD entry count (tcpmib.h, udpmib.h): (row size, local port offset, state offset).
# Ports are DWORDs holding the port in network byte order in their low 16 bits: the first two bytes in memory.
IP_HELPER_ROWS = {
    ("tcp", False): (24, 8, 0),     # MIB_TCPROW_OWNER_PID: state, local addr, local port, remote addr/port, pid
    ("tcp", True): (56, 20, 48),    # MIB_TCP6ROW_OWNER_PID: addr[16], scope, port, remote addr/scope/port, state
    ("udp", False): (12, 4, None),  # MIB_UDPROW_OWNER_PID: local addr, local port, pid
    ("udp", True): (28, 20, None),  # MIB_UDP6ROW_OWNER_PID: addr[16], scope, port, pid
}


def ip_helper_entries(table, ports, proto="tcp", ipv6=False):
    """Entries of a table filled by GetExtendedTcpTable (TCP_TABLE_OWNER_PID_ALL) or GetExtendedUdpTable
    (UDP_TABLE_OWNER_PID). UDP rows carry no remote address, so every UDP entry is BOUND."""
    _check_proto(proto)
    size, port_offset, state_offset = IP_HELPER_ROWS[proto, ipv6]
    count = struct.unpack_from("<I", table, 0)[0]
    for offset in range(4, 4 + count * size, size):
        port = table[offset + port_offset] << 8 | table[offset + port_offset + 1]
        if port not in ports:
            continue
        if state_offset is None:
            yield port, "BOUND"
        else:
            state = struct.unpack_from("<I", table, offset + state_offset)[0]
            yield port, _state_name(WINDOWS_TCP_STATES, state, "MIB_TCP_STATE")


# The per-port readings of recorded output: the states of one local port's entries, in table order.

def _states(entries):
    return tuple(state for _port, state in entries)


def parse_proc_net(text, port, proto="tcp"):
    return _states(proc_net_entries(text, (port,), proto))


def parse_netstat_linux(text, port, proto="tcp"):
    return _states(netstat_linux_entries(text, (port,), proto))


def parse_netstat_windows(text, port, proto="tcp"):
    return _states(netstat_windows_entries(text, (port,), proto))


def parse_netstat_bsd(text, port, proto="tcp"):
    return _states(netstat_bsd_entries(text, (port,), proto))


def parse_ip_helper_table(table, port, proto="tcp", ipv6=False):
    return _states(ip_helper_entries(table, (port,), proto, ipv6))


# --- how a state was witnessed, where not by the table ---------------------------------------------------------
# The `witness` column names the way after the state, decided here once: "TIME_WAIT (peer)". A state the table
# itself showed is spelled alone, as it always was.
BY_PEER = "peer"  # the connection's other end, still open, says so (TCP_INFO: its FIN was ACKed)
BY_OWN_SOCKET = "own socket"  # the socket itself (getsockname, getpeername), where the table cannot list it


def witnessed_by(states, way):
    """The witness spelling of `states` shown by `way` (BY_PEER, BY_OWN_SOCKET)."""
    return "{} ({})".format(states, way)


# --- what a case asks about: its port and the sockets it made there ---------------------------------------------

class End:
    """One socket a case made on its port, as the witness looks it up: its socket family, local address and remote
    address (None for a listener, a bound-only socket or an unconnected UDP socket), and the socket itself while it
    is open (None once closed: a closed connection's end is found by its addresses alone, in TIME_WAIT)."""

    __slots__ = ("family", "local", "remote", "sock")

    def __init__(self, sock):
        """The end of an open socket, with its addresses as the OS has them now."""
        self.family, self.local, self.sock = sock.family, sock.getsockname()[:2], sock
        try:
            self.remote = sock.getpeername()[:2]
        except OSError:  # not connected
            self.remote = None

    def closed(self):
        """This end once its socket is closed: the same addresses, no socket. Take it before close()."""
        self.sock = None
        return self


class Watch:
    """A port a case watches: proto ("tcp" or "udp"), the port, and the case's own Ends on it. Readers that read
    whole tables use only proto and port; sock_diag looks each End up and tells strangers from them."""

    __slots__ = ("proto", "port", "ends")

    def __init__(self, proto, port, ends=()):
        _check_proto(proto)
        self.proto, self.port, self.ends = proto, port, list(ends)


class Reading:
    """What one read showed on a watched port: `states`, one TCP_STATES name per entry (the case's own and any
    other), and `strangers`, how many of those entries the reader knows are not the case's own sockets (only a
    reader that identifies sockets can say; others give 0)."""

    __slots__ = ("states", "strangers")

    def __init__(self, states, strangers):
        self.states, self.strangers = states, strangers


def watch(witness, watches, settled, deadline):
    """Reads `watches` until settled(index, reading) holds for each or `deadline` seconds pass (labs.polling.poll):
    each round is one witness.read() of the watches still waiting, so a batch costs one read of each table per
    round however many cases it holds. Returns the last Reading of each watch, in order."""
    readings = [None] * len(watches)
    waiting = list(range(len(watches)))

    def read_waiting():
        for index, reading in zip(waiting, witness.read([watches[index] for index in waiting])):
            readings[index] = reading
        waiting[:] = [index for index in waiting if not settled(index, readings[index])]
        return waiting

    poll(read_waiting, lambda left: not left, deadline)
    return readings


# --- readers ----------------------------------------------------------------------------------------------------

class Reader:
    """What every reader shares: states(), count() and read() over its entries(proto, ports, state), which gives
    (local port, state name) for the table entries whose local port is in `ports`. `state`, when given, is a hint
    that only that state is wanted (sock_diag asks the kernel for it alone); count() checks the states anyway.
    `reads` counts the requests each reader made of the OS, by kind (a netstat run, a file read, a netlink dump or
    lookup): bench's reads per case."""

    sees_time_wait = True  # TIME_WAIT entries are listed
    sees_closed = True  # a socket whose descriptor is closed is still listed while its connection closes
    sees_udp6 = True  # IPv6 and dual-stack UDP sockets are listed
    blind_spot = ""  # what the reader cannot see, in words, where it misses one of the above
    # Where TIME_WAIT is not listed: whether the stack's sources make the peer's word an exact witness of it (the
    # end that closed second keeps its descriptor; once its FIN is ACKed the other end is in TIME_WAIT)
    time_wait_by_peer = False

    def __init__(self, os_family=None):
        self.reads = collections.Counter()

    def read(self, watches):
        """One Reading per Watch, in order: the entries on each watch's port, from one read of each protocol's table
        for the whole batch. A whole-table reader cannot tell a case's own sockets from others on the port, so its
        readings have no strangers: what it shows is compared with the case's state as a whole."""
        ports = {}
        for watch in watches:
            ports.setdefault(watch.proto, set()).add(watch.port)
        seen = {}
        for proto, wanted in ports.items():
            for port, state in self.entries(proto, frozenset(wanted)):
                seen.setdefault((proto, port), []).append(state)
        return [Reading(tuple(seen.get((watch.proto, watch.port), ())), 0) for watch in watches]

    def states(self, proto, port):
        _check_proto(proto)
        return tuple(state for _port, state in self.entries(proto, (port,)))

    def count(self, proto, state, ports):
        _check_proto(proto)
        ports = frozenset(ports)  # one membership test per entry, whatever container the caller has
        if not ports:
            return 0
        return sum(1 for _port, named in self.entries(proto, ports, state) if named == state)

    def close(self):
        pass


# --- Linux: sock_diag -------------------------------------------------------------------------------------------

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
TCPDIAG_GETSOCK = 18  # the older request: one TCP dump over both families (inet_diag_rcv_msg_compat)
NLM_F_REQUEST, NLM_F_DUMP, NLM_F_DUMP_INTR = 0x1, 0x300, 0x10
NLMSG_ERROR, NLMSG_DONE = 2, 3
INET_DIAG_REQ_BYTECODE = 1
INET_DIAG_BC_S_GE, INET_DIAG_BC_S_LE, INET_DIAG_BC_S_EQ = 2, 3, 11
# Every TCP state but TCP_CLOSE, plus TCP_BOUND_INACTIVE (older kernels ignore its bit): so a TCP_CLOSE entry in
# a reply can only be a bound-only socket, which Linux >= 6.8 dumps with sk_state TCP_CLOSE.
TCP_STATE_MASK = sum(1 << state for state in range(1, 14) if state != 7)
UDP_STATE_MASK = (1 << 1) | (1 << 7)
SOCK_DIAG_TCP_STATES = {**LINUX_TCP_STATES, 7: "BOUND"}
PER_FAMILY_DUMPS = ((SOCK_DIAG_BY_FAMILY, socket.AF_INET), (SOCK_DIAG_BY_FAMILY, socket.AF_INET6))
NETLINK_TIMEOUT = 5.0  # the kernel answers at once; this only turns a lost reply into an error, not a hang
TCP_CLOSE, TCP_LISTEN = 7, 10
SO_ACCEPTCONN = getattr(socket, "SO_ACCEPTCONN", 30)  # Linux <asm-generic/socket.h>
INET_DIAG_NOCOOKIE = 0xFFFFFFFF  # both cookie words: the kernel skips its cookie check
LOOKUPS_IN_FLIGHT = 32  # exact requests per message: their replies stay well inside the socket's receive buffer
PROTOCOL_NUMBERS = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}
ZERO_ADDRESS = {socket.AF_INET: "0.0.0.0", socket.AF_INET6: "::"}

_NLMSG_HEADER = struct.Struct("=IHHII")
# nlmsghdr; inet_diag_req_v2 (family, protocol, ext, pad, states, inet_diag_sockid: only idiag_sport set, in
# network byte order, the rest zero: 48 bytes); the nlattr header of INET_DIAG_REQ_BYTECODE. The bytecode follows.
_REQUEST_HEAD = struct.Struct("=IHHII BBBBI 2s46x HH")
# nlmsghdr; inet_diag_req (family AF_UNSPEC, src_len, dst_len, ext, inet_diag_sockid as above, states, dbs);
# the nlattr header of INET_DIAG_REQ_BYTECODE.
_TCP_REQUEST_HEAD = struct.Struct("=IHHII BBBB 2s46x II HH")
# nlmsghdr; inet_diag_req_v2 with the whole inet_diag_sockid: sport, dport (network byte order), src, dst (16 bytes
# each), interface, cookie (two words). No bytecode: an exact request.
_LOOKUP = struct.Struct("=IHHII BBBBI 2s2s16s16sIII")
# idiag_inode in a reply: nlmsghdr (16), inet_diag_msg's family..retrans (4), sockid (48), expires, rqueue, wqueue,
# uid (16)
_DIAG_INODE = struct.Struct("=I")
# The whole inet_diag_msg after the nlmsghdr: family, state, timer, retrans; inet_diag_sockid (sport, dport in
# network byte order, src, dst, interface, cookie); expires (ms), rqueue, wqueue, uid, inode. Attributes follow.
_DIAG_MSG = struct.Struct("=BBBB 2s2s16s16sI8s IIIII")
INET_DIAG_SKV6ONLY = 11  # a u8 attribute of every AF_INET6 full socket (not of timewait entries)
TIMEWAIT_TIMER = 3  # idiag_timer of a timewait entry (TIME_WAIT, or an orphan's FIN_WAIT_2): expires is its time left
NLA_TYPE_MASK = 0x3FFF


class DiagSocket(collections.namedtuple("DiagSocket", "family state local remote expires uid inode v6only")):
    """One socket of a sock_diag dump as the kernel describes it: family (AF_INET, AF_INET6), state (a TCP_STATES
    name), local and remote (host, port), expires (seconds a timewait entry has left, else None), uid and inode
    (0 for a timewait entry: no process holds it), v6only (True / False for an AF_INET6 socket, None where the
    kernel does not say: IPv4, timewait entries)."""


def diag_socket(proto, buffer, offset, length):
    """The DiagSocket of the inet_diag_msg at `offset` (its netlink message `length` bytes long)."""
    family, state, timer, _retrans, sport, dport, src, dst, _interface, _cookie, expires, _rqueue, _wqueue, uid, \
        inode = _DIAG_MSG.unpack_from(buffer, offset + 16)
    size = 4 if family == socket.AF_INET else 16
    local = (socket.inet_ntop(family, src[:size]), struct.unpack(">H", sport)[0])
    remote = (socket.inet_ntop(family, dst[:size]), struct.unpack(">H", dport)[0])
    v6only = None
    attribute, end = offset + 16 + _DIAG_MSG.size, offset + length
    while attribute + 4 <= end:
        size, kind = struct.unpack_from("=HH", buffer, attribute)
        if size < 4:
            break
        if kind & NLA_TYPE_MASK == INET_DIAG_SKV6ONLY and size >= 5:
            v6only = bool(buffer[attribute + 4])
        attribute += (size + 3) & ~3
    names = SOCK_DIAG_TCP_STATES if proto == "tcp" else LINUX_UDP_STATES
    return DiagSocket(family, _state_name(names, state, "sock_diag"), local, remote,
                      expires / 1000.0 if timer == TIMEWAIT_TIMER else None, uid, inode, v6only)


def _port_state_inode(buffer, offset, length):
    """(local port, state number, inode) of an inet_diag_msg: what the witness reads of a dump."""
    return (buffer[offset + 20] << 8 | buffer[offset + 21], buffer[offset + 17],
            _DIAG_INODE.unpack_from(buffer, offset + 84)[0])


def port_filter_bytecode(low, high, equal_op=True):
    """INET_DIAG_REQ_BYTECODE matching low <= local port <= high (inet_diag_bc_run: an op jumps `yes` bytes
    forward on a match, `no` bytes on a miss; the program matches when it ends exactly at its length, so `no` =
    length + 4 rejects). A port sits in the `no` of the op after its comparison and is compared in host byte order
    with the socket's inet_num. One port (low == high) is one S_EQ test where `equal_op`; a kernel that predates
    S_EQ, and a range, get S_GE then S_LE."""
    if equal_op and low == high:
        return struct.pack("=BBHBBH", INET_DIAG_BC_S_EQ, 8, 12, 0, 0, low)
    return struct.pack("=BBHBBHBBHBBH", INET_DIAG_BC_S_GE, 8, 20, 0, 0, low, INET_DIAG_BC_S_LE, 8, 12, 0, 0, high)


class SockDiagReader(Reader):
    """NETLINK_SOCK_DIAG. read() looks each socket of a case up by its addresses (an exact request: a hash lookup,
    whatever else the host holds) and finds strangers with dumps of the small tables only; states() and count()
    dump the tables with a bytecode filter on the local port (for count(), the range from the least to the
    greatest port, and the state mask cut to the state counted), so the kernel copies out only those entries;
    it still walks its hash tables per dump, whose size sets the cost of a dump. TCP is dumped with one
    TCPDIAG_GETSOCK request covering both families (one walk instead of two), where the kernel takes it; UDP, and
    TCP elsewhere, with a SOCK_DIAG_BY_FAMILY dump per family.

    read(), for a batch of Watches:
      - each End is one exact request (SOCK_DIAG_BY_FAMILY without NLM_F_DUMP, inet_diag_req_v2 carrying its
        addresses and INET_DIAG_NOCOOKIE: inet_diag_find_one_icsk, udp_dump_one): TCP finds an established or
        TIME_WAIT socket by its 4-tuple, a listener by its local address with a zero remote end; UDP by its local
        address and peer, or a zero peer (udp_dump_one reads the request's src as the peer: "swapped for
        historical reasons"). An open socket is told from another one the lookup may find on the same address
        (a wildcard or SO_REUSEPORT listener) by its inode; a closed one's TIME_WAIT is the entry at its 4-tuple;
        a closed one's FIN_WAIT_2 is witnessed as such only as the kernel's timewait entry (idiag_timer 3): an
        orphan whose last ACK is handled while it is still locked, or any orphan when tcp_fin_timeout exceeds 60 s,
        stays a full socket in FIN_WAIT_2 (tcp_rcv_state_process, __tcp_close), and bind() treats the two apart
        (inet_bind_conflict waives the owner check for a timewait entry only): it reads FULL_FIN_WAIT_2;
      - strangers: a port-filtered dump of the listening table (states mask LISTEN alone: the kernel then skips
        its established table) and of the UDP table (hashed by port) over the batch's ports: both walks are
        bounded by the listeners and UDP sockets the host holds, not by its connections. An entry there that is
        not a case's own socket is a stranger;
      - a TCP socket that is open and unconnected but not found is bound only: no lookup hash holds it, and the
        one dump that lists such sockets (TCP_BOUND_INACTIVE, Linux >= 6.8) walks the bind table and then the
        whole established table, a cost that grows with the host's connections. Its witness is its own word
        instead: getsockname() names the watched port and SO_ACCEPTCONN says it is not listening (a listener
        would also be in the listening dump); it is then one BOUND entry, the case's own;
      - nothing else can be on a watched port: the port was fresh (labs.endpoints.fresh_port: no socket of either
        family held it, TIME_WAIT included), the case bound it at once, and connect() never picks a port that an
        explicit bind() holds (__inet_hash_connect skips a bind bucket whose fastreuse >= 0), so every connection
        on the port is one of the case's own (looked up) or one to its listener (the case's own: it accepted
        them). What a whole-port dump would show and this does not: a socket another program binds to that same
        port during the case, with options the case's socket allows, and then connects from it.
    A kernel that refuses exact requests (checked when the reader opens) is read with the port dumps instead."""

    method = "sock_diag"
    sees_connected_udp = True

    def __init__(self, os_family="linux"):
        Reader.__init__(self)
        if not hasattr(socket, "AF_NETLINK"):
            raise WitnessError("no AF_NETLINK on this platform")
        self._buffer = bytearray(65536)
        self._seq = 0
        self.equal_op = True  # S_EQ in the port filter; cleared if the kernel refuses it (port_filter_bytecode)
        self._sock = None
        self._open()
        self.tcp_dumps = ((TCPDIAG_GETSOCK, socket.AF_UNSPEC),)
        try:
            try:
                self.states("tcp", 0)
            except OSError:  # a kernel without the older request
                self.tcp_dumps = PER_FAMILY_DUMPS
            self.states("udp", 0)  # proves the UDP dump works too (udp_diag may be a module that cannot load)
            self.sees_bound_tcp = self._probe_bound_tcp()
            self.exact = self._probe_exact()
        except (OSError, WitnessError):
            self.close()
            raise

    def _open(self):
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG)
        sock.bind((0, 0))
        sock.settimeout(NETLINK_TIMEOUT)
        self._sock, self._pid = sock, os.getpid()

    def _own_socket(self):
        if self._pid != os.getpid():  # a forked child must not read replies meant for its parent
            self._sock.close()
            self._open()

    def _probe_bound_tcp(self):
        """Whether this kernel dumps bound-only TCP sockets (TCP_BOUND_INACTIVE, Linux >= 6.8): bind one, look."""
        probe = _loopback_socket(socket.SOCK_STREAM)
        if probe is None:
            return False
        with probe:
            return "BOUND" in self.states("tcp", probe.getsockname()[1])

    def _probe_exact(self):
        """Whether exact requests find a TCP listener and a UDP socket here (each by its inode)."""
        listener, datagram = _loopback_socket(socket.SOCK_STREAM), _loopback_socket(socket.SOCK_DGRAM)
        try:
            if listener is None or datagram is None:
                return False
            listener.listen(1)
            watches = [Watch("tcp", listener.getsockname()[1], [End(listener)]),
                       Watch("udp", datagram.getsockname()[1], [End(datagram)])]
            try:
                found = self._lookup(watches)
            except OSError:
                return False
            return [answer and answer[:2] for answer in found] == [(TCP_LISTEN, _inode(listener)),
                                                                    (TCP_CLOSE, _inode(datagram))]
        finally:
            for sock in (listener, datagram):
                if sock is not None:
                    sock.close()

    def entries(self, proto, ports, state=None):
        self._own_socket()
        mask, names = (TCP_STATE_MASK, SOCK_DIAG_TCP_STATES) if proto == "tcp" else (UDP_STATE_MASK,
                                                                                     LINUX_UDP_STATES)
        if state is not None:
            mask &= sum(1 << number for number, name in names.items() if name == state)
        if not mask:  # a state this table never holds
            return []
        return [(port, _state_name(names, number, "sock_diag")) for port, number, _inode in
                self._dump(proto, mask, ports)]

    def read(self, watches):
        if not self.exact:
            return Reader.read(self, watches)
        self._own_socket()
        found = self._lookup(watches)
        own = [{_inode(end.sock) for end in watch.ends if end.sock is not None} for watch in watches]
        seen = [set() for _ in watches]  # inodes of the entries already read, per watch
        states = [[] for _ in watches]
        strangers = [0] * len(watches)
        answers = iter(found)
        for index, watch in enumerate(watches):
            for end in watch.ends:
                answer = next(answers)
                if answer is None:
                    if watch.proto == "tcp" and end.sock is not None and end.remote is None and \
                            _bound_only(end.sock, watch.port):
                        seen[index].add(_inode(end.sock))
                        states[index].append("BOUND")
                    continue
                number, inode, timer = answer
                if inode and inode in seen[index]:  # TIME_WAIT entries have no inode: each is its own
                    continue
                seen[index].add(inode)
                mine = inode in own[index] if end.sock is not None else inode == 0
                strangers[index] += not mine
                state = self._state(watch.proto, number)
                if end.sock is None and state == "FIN_WAIT_2" and timer != TIMEWAIT_TIMER:
                    state = FULL_FIN_WAIT_2
                states[index].append(state)
        where = {(watch.proto, watch.port): index for index, watch in enumerate(watches)}
        # listeners (a LISTEN-only mask: the kernel skips its established table) and UDP sockets
        for proto, mask in (("tcp", 1 << TCP_LISTEN), ("udp", UDP_STATE_MASK)):
            ports = frozenset(watch.port for watch in watches if watch.proto == proto)
            if not ports:
                continue
            for port, number, inode in self._dump(proto, mask, ports):
                index = where[proto, port]
                if inode in seen[index]:
                    continue
                seen[index].add(inode)
                strangers[index] += inode not in own[index]
                states[index].append(self._state(proto, number))
        return [Reading(tuple(named), count) for named, count in zip(states, strangers)]

    @staticmethod
    def _state(proto, number):
        return _state_name(SOCK_DIAG_TCP_STATES if proto == "tcp" else LINUX_UDP_STATES, number, "sock_diag")

    def _lookup(self, watches):
        """The kernel's answer to one exact request per End of `watches`, in order: (state number, inode, timer)
        of the socket it found, or None (ENOENT). Sent LOOKUPS_IN_FLIGHT to a message, so their replies never overflow
        the netlink socket's receive buffer (a reply that does not fit is dropped)."""
        requests = [self._lookup_request(watch.proto, end) for watch in watches for end in watch.ends]
        answers = []
        for start in range(0, len(requests), LOOKUPS_IN_FLIGHT):
            chunk = requests[start:start + LOOKUPS_IN_FLIGHT]
            sequence = []
            for request in chunk:
                self._seq = self._seq % 0xFFFFFFFF + 1
                struct.pack_into("=I", request, 8, self._seq)
                sequence.append(self._seq)
            try:
                self._sock.send(b"".join(chunk))
                replies = self._lookup_replies(set(sequence))
            except socket.timeout:
                raise WitnessError("sock_diag: no reply within {} s".format(NETLINK_TIMEOUT))
            self.reads["lookup"] += len(chunk)
            answers += [replies[seq] for seq in sequence]
        return answers

    def _lookup_request(self, proto, end):
        """The exact request for one End: a bytearray, its sequence number left to _lookup."""
        family = end.family
        local_host, local_port = end.local
        if end.remote is not None:
            remote_host, remote_port = end.remote
        else:  # a zero remote end; v4-mapped for a socket bound to a v4-mapped address, which IPv4 hashes hold
            remote_host = ("::ffff:0.0.0.0" if family == socket.AF_INET6 and local_host.startswith("::ffff:")
                           else ZERO_ADDRESS[family])
            remote_port = 0
        local = (socket.inet_pton(family, local_host), struct.pack(">H", local_port))
        remote = (socket.inet_pton(family, remote_host), struct.pack(">H", remote_port))
        # TCP's lookup takes the socket's own end as the source; UDP's the peer's
        (src, sport), (dst, dport) = (local, remote) if proto == "tcp" else (remote, local)
        return bytearray(_LOOKUP.pack(_LOOKUP.size, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, 0, 0, family,
                                      PROTOCOL_NUMBERS[proto], 0, 0, 0, sport, dport, src, dst, 0,
                                      INET_DIAG_NOCOOKIE, INET_DIAG_NOCOOKIE))

    def _messages(self):
        """(offset, length, kind, flags, sequence number) of each netlink message in the next datagram received."""
        size = self._sock.recv_into(self._buffer)
        offset = 0
        while offset + 16 <= size:
            length, kind, flags, seq, _pid = _NLMSG_HEADER.unpack_from(self._buffer, offset)
            if length < 16:
                raise WitnessError("sock_diag: malformed netlink message")
            yield offset, length, kind, flags, seq
            offset += (length + 3) & ~3

    def _lookup_replies(self, waiting):
        """{sequence number: (state number, inode, idiag_timer) or None} for the lookups in `waiting`."""
        buffer, replies = self._buffer, {}
        while waiting:
            for offset, _length, kind, _flags, seq in self._messages():
                if seq not in waiting:  # replies to an earlier, abandoned request are skipped
                    continue
                waiting.discard(seq)
                if kind == NLMSG_ERROR:
                    error = struct.unpack_from("=i", buffer, offset + 16)[0]
                    if error != -errno.ENOENT:
                        raise OSError(-error, "sock_diag lookup: " + os.strerror(-error))
                    replies[seq] = None
                else:
                    replies[seq] = (buffer[offset + 17], _DIAG_INODE.unpack_from(buffer, offset + 84)[0],
                                    buffer[offset + 18])
        return replies

    def sockets(self, proto, port):
        """Every socket on local port `port`, both families, every state, as DiagSockets: who holds a port (`why`).
        One port-filtered dump of the whole table, so its cost grows with the host's connections."""
        self._own_socket()
        mask = TCP_STATE_MASK if proto == "tcp" else UDP_STATE_MASK
        return self._dump(proto, mask, (port,), lambda buffer, offset, length: diag_socket(proto, buffer, offset,
                                                                                          length))

    def _dump(self, proto, mask, ports, entry=_port_state_inode):
        """entry(buffer, offset, length) (default: local port, state number, inode) of every entry on `ports` of a
        port-filtered dump, both families; a dump the kernel marks interrupted (the table changed under it) is
        redone."""
        if proto == "tcp":
            dumps, protocol = self.tcp_dumps, socket.IPPROTO_TCP
        else:
            dumps, protocol = PER_FAMILY_DUMPS, socket.IPPROTO_UDP
        found = []
        for kind, family in dumps:
            for _attempt in range(3):
                entries = self._request(kind, family, protocol, mask, ports, entry)
                if entries is not None:
                    break
            else:
                raise WitnessError("sock_diag dump kept being interrupted")
            found += entries
        return found

    def _request(self, kind, family, protocol, state_mask, ports, entry=_port_state_inode):
        """One dump's entries on `ports` (as _dump), or None if the kernel flagged it interrupted."""
        self._seq = self._seq % 0xFFFFFFFF + 1
        low, high = min(ports), max(ports)
        bytecode = port_filter_bytecode(low, high, self.equal_op)
        # idiag_sport lets the listening, established and UDP walks skip other ports before running the bytecode
        # (a little cheaper with many sockets); the bound-socket walk, and a range, filter with the bytecode alone.
        sport, flags = struct.pack(">H", low if low == high else 0), NLM_F_REQUEST | NLM_F_DUMP
        if kind == TCPDIAG_GETSOCK:
            head = _TCP_REQUEST_HEAD.pack(_TCP_REQUEST_HEAD.size + len(bytecode), kind, flags, self._seq, 0,
                                          family, 0, 0, 0, sport, state_mask, 0, 4 + len(bytecode),
                                          INET_DIAG_REQ_BYTECODE)
        else:
            head = _REQUEST_HEAD.pack(_REQUEST_HEAD.size + len(bytecode), kind, flags, self._seq, 0, family,
                                      protocol, 0, 0, state_mask, sport, 4 + len(bytecode), INET_DIAG_REQ_BYTECODE)
        self.reads["dump"] += 1
        try:
            self._sock.send(head + bytecode)
            return self._receive(kind, ports, entry)
        except socket.timeout:
            raise WitnessError("sock_diag: no reply within {} s".format(NETLINK_TIMEOUT))
        except OSError as exc:
            if exc.errno == errno.EINVAL and self.equal_op and low == high:  # inet_diag_bc_audit: no S_EQ here
                self.equal_op = False
                return self._request(kind, family, protocol, state_mask, ports, entry)
            raise

    def _receive(self, request_kind, ports, entry):
        buffer, entries, interrupted = self._buffer, [], False
        while True:
            for offset, length, kind, flags, seq in self._messages():
                if seq != self._seq:  # replies to an earlier, abandoned request are skipped
                    continue
                interrupted = interrupted or bool(flags & NLM_F_DUMP_INTR)
                if kind == NLMSG_DONE or kind == NLMSG_ERROR:
                    error = struct.unpack_from("=i", buffer, offset + 16)[0] if length >= 20 else 0
                    if error < 0:
                        raise OSError(-error, "sock_diag: " + os.strerror(-error))
                    return None if interrupted else entries
                if kind == request_kind:
                    # inet_diag_msg: family, state, timer, retrans, then inet_diag_sockid (sport big-endian); a
                    # range lets through ports between those asked
                    port = buffer[offset + 20] << 8 | buffer[offset + 21]
                    if port in ports:
                        entries.append(entry(buffer, offset, length))

    def close(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _loopback_socket(kind):
    """A socket of `kind` bound to a loopback port (IPv4, else IPv6), or None where neither can be bound."""
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        try:
            sock = socket.socket(family, kind)
        except OSError:
            continue
        try:
            sock.bind((host, 0))
            return sock
        except OSError:
            sock.close()
    return None


def _bound_only(sock, port):
    """Whether an open TCP socket says it holds `port` and is not listening."""
    return sock.getsockname()[1] == port and not sock.getsockopt(socket.SOL_SOCKET, SO_ACCEPTCONN)


def _inode(sock):
    """The inode of an open socket: what sock_diag reports as idiag_inode."""
    return os.fstat(sock.fileno()).st_ino


# --- Linux: /proc/net -------------------------------------------------------------------------------------------

class ProcNetReader(Reader):
    """/proc/net/{tcp,tcp6,udp,udp6}: the fallback where netlink is refused (WSL1, sandboxes). Reading it formats
    every socket on the host, so its cost grows with the table; bound-only TCP sockets are not in it."""

    method = "/proc/net"
    sees_bound_tcp = False
    sees_connected_udp = True
    ROOT = "/proc/net"

    def __init__(self, os_family="linux"):
        Reader.__init__(self)
        if not os.path.exists(os.path.join(self.ROOT, "tcp")):
            raise WitnessError("no {}/tcp".format(self.ROOT))

    def texts(self, proto):
        """The text of each of the protocol's tables (IPv4, then IPv6 where the host has it)."""
        for name in (proto, proto + "6"):
            try:
                with open(os.path.join(self.ROOT, name), "rb") as table:
                    text = table.read().decode("ascii", "replace")
                self.reads[name] += 1
            except FileNotFoundError:  # tcp6/udp6 are absent when IPv6 is disabled
                continue
            yield text

    def entries(self, proto, ports, state=None):
        for text in self.texts(proto):
            yield from proc_net_entries(text, ports, proto)


# --- gVisor: its own /proc/net ----------------------------------------------------------------------------------

class GvisorProcNetReader(ProcNetReader):
    """gVisor's /proc/net (pkg/sentry/fsimpl/proc/task_net.go, release-20221219.0): the only table inside its
    sandbox (no sock_diag). It lists every socket of the sandbox that still has an open file and nothing else: a
    socket whose last descriptor is closed is gone from it whatever its TCP state (FIN_WAIT_2, TIME_WAIT, LAST_ACK
    live on in netstack unseen), as are connections not yet accept()ed; udp6 holds its header only (no IPv6 or
    dual-stack UDP socket is ever listed). Its state column is netstack's, in Linux's numbers, with TCP 07 (CLOSE)
    for a socket bound but not listening, and equally for one connecting, reset or ended. Each entry carries the
    inode of its socket's file (os.fstat's st_ino), so read() tells the case's own sockets from strangers, and
    names an 07 entry BOUND only when it is a case's own open socket that says it is bound to the port and neither
    listening nor connected; any other 07 entry is CLOSED."""

    method = "/proc/net (gVisor)"
    sees_bound_tcp = True
    sees_time_wait = False
    sees_closed = False
    sees_udp6 = False
    blind_spot = "gVisor's /proc/net lists only sockets with an open descriptor"
    # netstack ACKs a FIN that reaches FIN_WAIT_2 (or FIN_WAIT_1 with the ACK of its own FIN) in the same step that
    # enters TIME_WAIT (pkg/tcpip/transport/tcp/rcv.go consumeSegment), and holds TIME_WAIT for 60 s
    # (DefaultTCPTimeWaitTimeout): a peer whose FIN was ACKed proves the other end is in TIME_WAIT.
    time_wait_by_peer = True

    def read(self, watches):
        rows = {}
        for proto in {watch.proto for watch in watches}:
            wanted = frozenset(watch.port for watch in watches if watch.proto == proto)
            for text in self.texts(proto):
                for port, number, inode in proc_net_rows(text, wanted, proto):
                    rows.setdefault((proto, port), []).append((number, inode))
        readings = []
        for watch in watches:
            own = {_inode(end.sock): end for end in watch.ends if end.sock is not None}
            states, strangers = [], 0
            for number, inode in rows.get((watch.proto, watch.port), ()):
                end = own.get(inode)
                strangers += end is None
                if watch.proto == "tcp" and number == TCP_CLOSE:
                    bound = end is not None and end.remote is None and _bound_only(end.sock, watch.port)
                    states.append("BOUND" if bound else "CLOSED")
                else:
                    states.append(_state_name(LINUX_TCP_STATES if watch.proto == "tcp" else LINUX_UDP_STATES,
                                              number, self.method))
            readings.append(Reading(tuple(states), strangers))
        return readings


# --- Windows: IP Helper -----------------------------------------------------------------------------------------

TCP_TABLE_OWNER_PID_ALL = 5
UDP_TABLE_OWNER_PID = 1
ERROR_INSUFFICIENT_BUFFER = 122
# GetExtended*Table refuses AF_INET6 with these when the host has no IPv6 stack (XP without IPv6 installed).
NO_IPV6_ERRORS = (50, 87)  # ERROR_NOT_SUPPORTED, ERROR_INVALID_PARAMETER


class IpHelperReader(Reader):
    """GetExtendedTcpTable (TCP_TABLE_OWNER_PID_ALL) and GetExtendedUdpTable (UDP_TABLE_OWNER_PID) via ctypes.
    Their UDP rows have no remote address, so a connected UDP socket shows as BOUND (sees_connected_udp False)."""

    method = "GetExtendedTcpTable"
    sees_bound_tcp = False
    sees_connected_udp = False

    def __init__(self, os_family="windows"):
        Reader.__init__(self)
        try:
            import ctypes
            iphlpapi = ctypes.WinDLL("iphlpapi.dll")
        except (ImportError, AttributeError, OSError) as exc:  # no WinDLL off Windows
            raise WitnessError("no iphlpapi: {}".format(exc))
        from ctypes import wintypes  # only after WinDLL: some Pythons refuse to import it elsewhere
        self._ctypes = ctypes
        signature = [ctypes.c_void_p, ctypes.POINTER(wintypes.DWORD), wintypes.BOOL, wintypes.ULONG, ctypes.c_int,
                     wintypes.ULONG]
        self._functions = {}
        for proto, name, table_class in (("tcp", "GetExtendedTcpTable", TCP_TABLE_OWNER_PID_ALL),
                                         ("udp", "GetExtendedUdpTable", UDP_TABLE_OWNER_PID)):
            function = getattr(iphlpapi, name)
            function.argtypes, function.restype = signature, wintypes.DWORD
            self._functions[proto] = (function, table_class)
        self._size = wintypes.DWORD()
        self._buffer = ctypes.create_string_buffer(1 << 16)
        self.states("tcp", 0)  # proves the calls work here

    def entries(self, proto, ports, state=None):
        for family, ipv6 in ((socket.AF_INET, False), (socket.AF_INET6, True)):
            table = self._table(proto, family, ipv6)
            if table is not None:
                yield from ip_helper_entries(table, ports, proto, ipv6)

    def _table(self, proto, family, ipv6):
        """A copy of one family's table, or None where the host has no IPv6."""
        function, table_class = self._functions[proto]
        while True:
            self._size.value = len(self._buffer)
            error = function(self._buffer, self._ctypes.byref(self._size), False, family, table_class, 0)
            self.reads[function.__name__] += 1
            if error != ERROR_INSUFFICIENT_BUFFER:
                break
            # the table grew between the size query and the copy: make room with slack and ask again
            self._buffer = self._ctypes.create_string_buffer(self._size.value + self._size.value // 4 + 4096)
        if error == 0:
            count = struct.unpack_from("<I", self._buffer, 0)[0]
            return self._ctypes.string_at(self._buffer, 4 + count * IP_HELPER_ROWS[proto, ipv6][0])
        if ipv6 and error in NO_IPV6_ERRORS:
            return None
        raise WitnessError("{} failed with Windows error {}".format(function.__name__, error))


# --- netstat, run as a program ----------------------------------------------------------------------------------

NETSTAT_TIMEOUT = 30.0  # seconds; netstat answers in well under one, this bounds a hung one
PROBE_DEADLINE = 2.0  # seconds a probe's loopback connection may take to close and show


def _run_netstat(arguments):
    """netstat's standard output; a missing program, a timeout or a failure is a WitnessError."""
    try:
        done = subprocess.run(arguments, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=NETSTAT_TIMEOUT,
                              creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WitnessError("{}: {}".format(" ".join(arguments), exc))
    if done.returncode != 0:
        raise WitnessError("{} exited {}: {}".format(" ".join(arguments), done.returncode,
                                                     done.stderr.decode("ascii", "replace").strip()))
    return done.stdout.decode("ascii", "replace")


class NetstatReader(Reader):
    """A netstat program and the parser for its output: the fallback everywhere, and the reader on the BSDs."""

    sees_connected_udp = True

    def __init__(self, os_family):
        Reader.__init__(self)
        if shutil.which("netstat") is None:
            raise WitnessError("no netstat on PATH")
        self.os_family = os_family

    def entries(self, proto, ports, state=None):
        commands = self.commands(proto)
        self.reads["netstat"] += len(commands)
        text = "".join(_run_netstat(arguments) for arguments in commands)
        return self.parse(text, ports, proto)


class WindowsNetstatReader(NetstatReader):
    """Windows' `netstat -ano`, per protocol and family (also what Cygwin has). Run without -q (which lists bound
    ports on newer Windows, not on XP), so bound-only TCP sockets are not seen. A localised Windows that translates
    the state words makes its rows unreadable here (WitnessError)."""

    method = "netstat -ano"
    sees_bound_tcp = False
    parse = staticmethod(netstat_windows_entries)

    def commands(self, proto):
        name = proto.upper()
        return (["netstat", "-ano", "-p", name], ["netstat", "-ano", "-p", name + "v6"])


class BsdNetstatReader(NetstatReader):
    """`netstat -an -p tcp|udp` on FreeBSD, macOS, OpenBSD, NetBSD, DragonFly: both families in one listing. -W
    (FreeBSD, macOS) keeps long IPv6 addresses from being cut short, ports included; OpenBSD's -W means
    something else. A bound-only TCP socket is listed as CLOSED. macOS's netstat is known to omit TIME_WAIT."""

    method = "netstat -an"
    sees_bound_tcp = True
    parse = staticmethod(netstat_bsd_entries)
    WIDE = ("freebsd", "darwin")
    TIME_WAIT_PROBED = ("darwin",)  # said to omit TIME_WAIT: whether this host's netstat does is asked, not assumed

    def __init__(self, os_family):
        NetstatReader.__init__(self, os_family)
        if os_family in self.TIME_WAIT_PROBED:
            self.sees_time_wait = self._probe_time_wait()
            if not self.sees_time_wait:
                self.blind_spot = ("this host's netstat does not list TIME_WAIT (a loopback connection closed for "
                                   "the probe did not show it)")

    def _probe_time_wait(self):
        """Whether a TIME_WAIT shows: a loopback connection whose client closes first leaves its port in TIME_WAIT
        (RFC 793: the active closer); netstat is read until it shows there or PROBE_DEADLINE passes."""
        listener = _loopback_socket(socket.SOCK_STREAM)
        if listener is None:
            return False
        with listener:
            listener.listen(1)
            client = socket.socket(listener.family, socket.SOCK_STREAM)
            client.settimeout(PROBE_DEADLINE)
            client.connect(listener.getsockname()[:2])
            server = listener.accept()[0]
            port = client.getsockname()[1]
            client.close()
            with server:
                server.settimeout(PROBE_DEADLINE)
                server.recv(1)  # the client's FIN
        return "TIME_WAIT" in poll(lambda: self.states("tcp", port), lambda seen: "TIME_WAIT" in seen,
                                   PROBE_DEADLINE)

    def commands(self, proto):
        return (["netstat", "-an"] + (["-W"] if self.os_family in self.WIDE else []) + ["-p", proto],)


# --- the witness ------------------------------------------------------------------------------------------------

BSD_FAMILIES = ("freebsd", "darwin", "openbsd", "netbsd", "dragonfly")
READERS = {
    "linux": (SockDiagReader, ProcNetReader),
    "windows": (IpHelperReader, WindowsNetstatReader),
    "cygwin": (WindowsNetstatReader,),
    "gvisor": (GvisorProcNetReader,),
}
READERS.update((family, (BsdNetstatReader,)) for family in BSD_FAMILIES)


class Witness:
    """The connection-table reader for one OS family: the best one that works here, or the one named by `method`
    (one of the `method` names of READERS[os_family], e.g. "/proc/net"). On Linux it holds a netlink socket
    (a forked child opens its own): close() it, or use the witness as a context manager."""

    def __init__(self, os_family, method=None):
        candidates = READERS.get(os_family)
        if candidates is None:
            raise WitnessError("no connection-table reader for OS family {!r}".format(os_family))
        if method is not None:
            candidates = tuple(reader for reader in candidates if reader.method == method)
            if not candidates:
                raise WitnessError("{!r} has no reader {!r}".format(os_family, method))
        failures = []
        for reader in candidates:
            try:
                self.reader = reader(os_family)
                break
            except (OSError, WitnessError) as exc:
                failures.append("{}: {}".format(reader.method, exc))
        else:
            raise WitnessError("no connection-table reader works here ({})".format("; ".join(failures)))
        self.method = self.reader.method
        self.sees_bound_tcp = self.reader.sees_bound_tcp
        self.sees_connected_udp = self.reader.sees_connected_udp
        self.sees_time_wait = self.reader.sees_time_wait
        self.sees_closed = self.reader.sees_closed
        self.sees_udp6 = self.reader.sees_udp6
        self.blind_spot = self.reader.blind_spot
        self.time_wait_by_peer = self.reader.time_wait_by_peer

    def states(self, proto, port):
        """One TCP_STATES name per table entry whose local port is `port` ("tcp" or "udp"), IPv4 and IPv6."""
        return self.reader.states(proto, port)

    def count(self, proto, state, ports):
        """How many table entries in `state` (a TCP_STATES name) have their local port in `ports` ("tcp" or "udp"),
        IPv4 and IPv6: one read of the table however many ports (socketpair_churn's TIME_WAITs on the ports its
        pairs used)."""
        return self.reader.count(proto, state, ports)

    def read(self, watches):
        """One Reading per Watch (a case's port and its own sockets there), for a batch of cases at once: one read
        of each table where the OS gives only whole tables, a lookup per socket where it finds sockets by address
        (sock_diag)."""
        return self.reader.read(watches)

    @property
    def reads(self):
        """The requests made of the OS so far, by kind (collections.Counter)."""
        return self.reader.reads

    def close(self):
        self.reader.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

