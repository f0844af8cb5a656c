"""holders: the sockets that hold a port now, and whose they are, as far as the host's OS tells (`why`).

`holders(os_family, proto, port)` returns (holders, table, blind spot, owners): one Holder per socket whose LOCAL port is `port`
(IPv4 and IPv6, every state), the connection-table reader that listed them, what it cannot see (witness blind_spot), and how their owners were found (or why
they are unknown). It reads through the reader labs.witness picks for the host (Witness), so `why` sees a port as
the labs' witness does:

    sock_diag       one port-filtered dump of the table (SockDiagReader.sockets): uid, inode, IPV6_V6ONLY, and a
                    timewait entry's time left; each inode's processes from /proc/PID/fd (every process's as root,
                    only the agent user's own otherwise)
    /proc/net       the same table as text (WSL1, gVisor, whose table lists only sockets with an open descriptor):
                    uid, inode, a TIME_WAIT's timer in clock ticks
    IP Helper       GetExtendedTcpTable / GetExtendedUdpTable rows, each with its owning PID (Windows)
    netstat -ano    the same rows as text, with the PID column (Windows without IP Helper, Cygwin)
    netstat -an     BSD and macOS: states and addresses (tcp46 is a dual-stack socket); owners from lsof where it is
                    installed, matched by addresses (lsof lists the sockets processes have open, so a TIME_WAIT, which
                    no process holds, has no owner there either)

A TIME_WAIT entry belongs to no process: the kernel keeps it (sock_diag says uid 0, inode 0). The parsers are pure
functions of recorded output (proc_net_holders, ip_helper_holders, netstat_windows_holders, netstat_bsd_holders,
lsof_owners), like the witness's. Standard library only.
"""
import os
import shutil
import socket
import struct
import subprocess
import sys

from labs import witness as tables

FAMILY_NAMES = {socket.AF_INET: "inet", socket.AF_INET6: "inet6"}
WILDCARDS = {"inet": "0.0.0.0", "inet6": "::"}
LSOF_TIMEOUT = 30.0  # seconds; lsof answers in well under one, this bounds a hung one


def holder(family, state, local, remote=None, uid=None, inode=None, expires=None, v6only=None, pids=(),
           process=""):
    """A Holder: a dict of plain values (it travels in a JSON record). local and remote are (address, port);
    remote None for a socket that is not connected. uid / inode / expires / v6only None where the OS does not
    say; pids [] and process "" where no process is known to hold it."""
    return {"family": family, "v6only": v6only, "state": state, "local_address": local[0], "local_port": local[1],
            "remote_address": remote[0] if remote else "", "remote_port": remote[1] if remote else None,
            "uid": uid, "inode": inode, "expires": expires, "pids": list(pids), "process": process}


def _connected(remote):
    """The remote end, or None for one that is no peer (0.0.0.0:0, [::]:0, *:*)."""
    return remote if remote and remote[1] else None


# --- Linux ------------------------------------------------------------------------------------------------------

def diag_holders(sockets):
    """Holders of witness.DiagSockets."""
    return [holder(FAMILY_NAMES[entry.family], entry.state, entry.local, _connected(entry.remote),
                   uid=entry.uid if entry.inode else None, inode=entry.inode or None, expires=entry.expires,
                   v6only=entry.v6only) for entry in sockets]


def _proc_address(text):
    """(family, address, port) of /proc/net's "0100007F:EA60": the address as the kernel's 32-bit words in host
    byte order, the port in hex."""
    address, _, port = text.partition(":")
    raw = bytes.fromhex(address)
    if sys.byteorder == "little":
        raw = b"".join(raw[start:start + 4][::-1] for start in range(0, len(raw), 4))
    family = socket.AF_INET if len(raw) == 4 else socket.AF_INET6
    return family, socket.inet_ntop(family, raw), int(port, 16)


def proc_net_holders(text, port, proto, clock_ticks=100):
    """Holders on `port` of the text of /proc/net tables (tcp, tcp6, udp, udp6, one or several): "sl local_address
    rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode". A TIME_WAIT row has timer 3, its
    time left in clock ticks (USER_HZ: `clock_ticks` a second), uid and inode 0."""
    states = tables.LINUX_TCP_STATES if proto == "tcp" else tables.LINUX_UDP_STATES
    found = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 10 or not fields[0].endswith(":"):
            continue
        family, address, local_port = _proc_address(fields[1])
        if local_port != port:
            continue
        _, remote_address, remote_port = _proc_address(fields[2])
        timer, _, when = fields[5].partition(":")
        inode = int(fields[9])
        timewait = int(timer, 16) == tables.TIMEWAIT_TIMER
        found.append(holder(FAMILY_NAMES[family], tables._state_name(states, int(fields[3], 16), "/proc/net"),
                            (address, port), _connected((remote_address, remote_port)),
                            uid=int(fields[7]) if inode else None, inode=inode or None,
                            expires=int(when, 16) / clock_ticks if timewait else None))
    return found


def socket_processes(inodes, proc="/proc"):
    """{inode: [pid, ...]} of the processes whose descriptors name these socket inodes ("socket:[123]"), among the
    processes this user may look into; and whether some could not be looked into."""
    wanted = {"socket:[{}]".format(inode): inode for inode in inodes}
    found, hidden = {}, False
    for pid in sorted(int(entry) for entry in os.listdir(proc) if entry.isdigit()):
        folder = os.path.join(proc, str(pid), "fd")
        try:
            descriptors = os.listdir(folder)
        except PermissionError:  # another user's process
            hidden = True
            continue
        except OSError:  # gone meanwhile
            continue
        for descriptor in descriptors:
            try:
                inode = wanted.get(os.readlink(os.path.join(folder, descriptor)))
            except OSError:
                continue
            if inode is not None and pid not in found.setdefault(inode, []):
                found[inode].append(pid)
    return found, hidden


def process_name(pid, proc="/proc"):
    try:
        with open(os.path.join(proc, str(pid), "comm")) as stream:
            return stream.read().strip()
    except OSError:
        return ""


def linux_owners(found):
    """Fills in each holder's processes from /proc/PID/fd; says how owners were found."""
    inodes = [entry["inode"] for entry in found if entry["inode"]]
    if not inodes:
        return "none here: a TIME_WAIT belongs to no process"
    processes, hidden = socket_processes(inodes)
    for entry in found:
        pids = processes.get(entry["inode"], [])
        entry.update(pids=pids, process=process_name(pids[0]) if pids else "")
    how = "uid from the table, processes from /proc/PID/fd"
    if hidden:
        how += " (other users' are hidden from this user)"
    return how


def diag_table(reader, proto, port):
    found = diag_holders(reader.sockets(proto, port))
    return found, linux_owners(found)


def proc_table(reader, proto, port):
    clock_ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    found = proc_net_holders("".join(reader.texts(proto)), port, proto, clock_ticks)
    return found, linux_owners(found)


# --- Windows ----------------------------------------------------------------------------------------------------

# MIB rows with their owning PID (tcpmib.h, udpmib.h); a port is a DWORD holding network byte order in its first
# two bytes.
IP_HELPER_LAYOUTS = {
    ("tcp", False): "<I4s2s2x4s2s2xI",        # MIB_TCPROW_OWNER_PID: state, local, port, remote, port, pid
    ("tcp", True): "<16sI2s2x16sI2s2xII",     # MIB_TCP6ROW_OWNER_PID: local, scope, port, remote, scope, port, state, pid
    ("udp", False): "<4s2s2xI",               # MIB_UDPROW_OWNER_PID: local, port, pid
    ("udp", True): "<16sI2s2xI",              # MIB_UDP6ROW_OWNER_PID: local, scope, port, pid
}


def ip_helper_holders(table, port, proto, ipv6):
    """Holders on `port` of a table GetExtendedTcpTable (TCP_TABLE_OWNER_PID_ALL) or GetExtendedUdpTable
    (UDP_TABLE_OWNER_PID) filled: each row's owning PID, no uid (the table has none)."""
    row = struct.Struct(IP_HELPER_LAYOUTS[proto, ipv6])
    family = socket.AF_INET6 if ipv6 else socket.AF_INET
    count = struct.unpack_from("<I", table, 0)[0]
    found = []
    for offset in range(4, 4 + count * row.size, row.size):
        fields = row.unpack_from(table, offset)
        if proto == "tcp" and not ipv6:
            state, local, local_port, remote, remote_port, pid = fields
        elif proto == "tcp":
            local, _, local_port, remote, _, remote_port, state, pid = fields
        else:
            local, local_port, pid = fields[0], fields[-2], fields[-1]
            remote = remote_port = state = None
        if struct.unpack(">H", local_port)[0] != port:
            continue
        peer = None
        if remote is not None:
            peer = _connected((socket.inet_ntop(family, remote), struct.unpack(">H", remote_port)[0]))
        name = "BOUND" if state is None else tables._state_name(tables.WINDOWS_TCP_STATES, state, "MIB_TCP_STATE")
        found.append(holder(FAMILY_NAMES[family], name, (socket.inet_ntop(family, local), port), peer,
                            pids=[pid] if pid else []))
    return found


def ip_helper_table(reader, proto, port):
    found = []
    for family, ipv6 in ((socket.AF_INET, False), (socket.AF_INET6, True)):
        table = reader._table(proto, family, ipv6)
        if table is not None:
            found += ip_helper_holders(table, port, proto, ipv6)
    return found, "owning PID from the table (it names no user)"


def _split_endpoint(text, separator):
    """("127.0.0.1", 80) of "127.0.0.1:80", "[::1]:80", "*.80", "fe80::1%lo0.80"; the port None for "*" or "*:*"."""
    host, _, port = text.rpartition(separator)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port) if port.isdigit() else None


def _family_of(address):
    return "inet6" if ":" in address else "inet"


def netstat_windows_holders(text, port, proto):
    """Holders on `port` of Windows `netstat -ano` output: "TCP 0.0.0.0:135 0.0.0.0:0 LISTENING 1712", "UDP
    [::]:500 *:* 4444"; the PID is the last column."""
    found = []
    for fields in tables._rows_named(text, (proto.upper(),)):
        if len(fields) < 4 or not fields[-1].isdigit():
            continue
        local = _split_endpoint(fields[1], ":")
        if local[1] != port:
            continue
        if proto == "udp":
            state = tables._udp_state(fields[2])
        else:
            state = tables._state_name(tables.NETSTAT_STATES, fields[3], "netstat")
        found.append(holder(_family_of(local[0]), state, local, _connected(_split_endpoint(fields[2], ":")),
                            pids=[int(fields[-1])] if fields[-1] != "0" else []))
    return found


def netstat_text(reader, proto):
    return "".join(tables._run_netstat(arguments) for arguments in reader.commands(proto))


def windows_netstat_table(reader, proto, port):
    return netstat_windows_holders(netstat_text(reader, proto), port, proto), \
        "owning PID from netstat -ano (it names no user)"


# --- BSD and macOS ----------------------------------------------------------------------------------------------

# netstat's protocol suffix: the socket's family and IPV6_V6ONLY (tcp46: an IPv6 socket that takes IPv4 too)
BSD_FAMILIES = {"4": ("inet", None), "6": ("inet6", True), "46": ("inet6", False)}


def netstat_bsd_holders(text, port, proto):
    """Holders on `port` of BSD or macOS `netstat -an` output: "tcp4 0 0 127.0.0.1.60000 *.* LISTEN", "tcp46 0 0
    *.8080 *.* LISTEN", the port after the last dot. It names no owner."""
    found = []
    for fields in map(str.split, text.splitlines()):
        starts = [index for index, field in enumerate(fields[:3]) if field in tables._BSD_PROTO_NAMES[proto]]
        if not starts or len(fields) < starts[0] + 5:
            continue
        row = fields[starts[0]:]
        local = _split_endpoint(row[3], ".")
        if local[1] != port:
            continue
        family, v6only = BSD_FAMILIES.get(row[0][len(proto):], (_family_of(local[0]), None))
        if local[0] == "*":
            local = (WILDCARDS[family], port)
        if proto == "udp":
            state = tables._udp_state(row[4])
        elif len(row) > 5:
            state = tables._state_name(tables.BSD_NETSTAT_STATES, row[5], "netstat")
        else:
            continue
        found.append(holder(family, state, local, _connected(_split_endpoint(row[4], ".")), v6only=v6only))
    return found


def _owner_key(local_address, remote):
    """What netstat's row and lsof's name of one socket have in common: its addresses without brackets, the
    ::ffff: prefix or the spelling of a wildcard."""
    def plain(address):
        address = address.lower()
        return address[7:] if address.startswith("::ffff:") else address
    local = plain(local_address)
    return ("*" if local in ("*", "0.0.0.0", "::") else local, plain(remote[0]) if remote[1] else "", remote[1])


def lsof_owners(text, port):
    """{owner key: (pid, command, uid)} of `lsof -F pcun` output for the sockets whose local port is `port` (lsof
    -i lists those whose remote port it is too)."""
    found, process = {}, {}
    for line in text.splitlines():
        tag, value = line[:1], line[1:]
        if tag == "p":
            process = {"pid": int(value), "command": "", "uid": None}
        elif tag == "c":
            process["command"] = value
        elif tag == "u" and value.isdigit():
            process["uid"] = int(value)
        elif tag == "n" and process:
            local, _, remote = value.partition("->")
            local = _split_endpoint(local, ":")
            if local[1] == port:
                key = _owner_key(local[0], _split_endpoint(remote, ":") if remote else ("", None))
                found.setdefault(key, (process["pid"], process["command"], process["uid"]))
    return found


def with_lsof(found, proto, port):
    """Each holder's process and uid from lsof, where it is installed; says how owners were found."""
    if shutil.which("lsof") is None:
        return "unknown: no lsof here, and netstat names no owner"
    try:
        done = subprocess.run(["lsof", "-nP", "-w", "-i{}:{}".format(proto.upper(), port), "-Fpcun"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=LSOF_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return "unknown: lsof: {}".format(exc)
    owners = lsof_owners(done.stdout.decode("utf-8", "replace"), port)
    for entry in found:
        key = _owner_key(entry["local_address"], (entry["remote_address"], entry["remote_port"]))
        if key in owners:
            pid, command, uid = owners[key]
            entry.update(pids=[pid], process=command, uid=uid)
    return "processes and uids from lsof (the sockets processes have open: a TIME_WAIT has no owner)"


def bsd_netstat_table(reader, proto, port):
    found = netstat_bsd_holders(netstat_text(reader, proto), port, proto)
    return found, with_lsof(found, proto, port)


# --- the host's reader ------------------------------------------------------------------------------------------

READERS = {
    tables.SockDiagReader: diag_table,
    tables.ProcNetReader: proc_table,
    tables.GvisorProcNetReader: proc_table,
    tables.IpHelperReader: ip_helper_table,
    tables.WindowsNetstatReader: windows_netstat_table,
    tables.BsdNetstatReader: bsd_netstat_table,
}


def holders(os_family, proto, port, method=None):
    """(holders, the table reader's method and what it cannot see, how owners were found) for the sockets on local
    port `port` now; the reader is the one the witness uses on this host (or `method`, as Witness takes it).
    WitnessError where the host has none."""
    with tables.Witness(os_family, method) as witness:
        found, owners = READERS[type(witness.reader)](witness.reader, proto, port)
        return found, witness.method, witness.blind_spot, owners
