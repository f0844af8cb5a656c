"""Socket options and error names, the same on every OS.

A host's Python may lack a constant its OS has (SO_REUSEPORT_LB on older Pythons, SO_EXCLUSIVEADDRUSE outside
Windows builds), so each option also has the OS's numeric value here, taken from the OS headers. Errors are
named the POSIX way; Windows WSA codes map onto the same names so results from every OS line up.
"""
import errno
import re
import socket
import struct
import sys

from labs.vocabulary import OPTIONS

# Per OS family: SOL_SOCKET and option values from the system headers (<sys/socket.h>, <asm-generic/socket.h>,
# <winsock2.h>: SO_EXCLUSIVEADDRUSE is ((int)(~SO_REUSEADDR))). An option absent from a row does not exist there.
_BSD = {"SOL_SOCKET": 0xFFFF, "SO_REUSEADDR": 0x0004, "SO_REUSEPORT": 0x0200}
_LINUX = {"SOL_SOCKET": 1, "SO_REUSEADDR": 2, "SO_REUSEPORT": 15}
OPTION_VALUES = {
    "linux": _LINUX,
    # gVisor (runsc) serves Linux's system call interface, option numbers included, from its own TCP/IP stack.
    "gvisor": _LINUX,
    "freebsd": dict(_BSD, SO_REUSEPORT_LB=0x10000),
    "darwin": _BSD,
    "openbsd": _BSD,
    "netbsd": _BSD,
    "dragonfly": _BSD,
    "sunos": {"SOL_SOCKET": 0xFFFF, "SO_REUSEADDR": 0x0004},
    "windows": {"SOL_SOCKET": 0xFFFF, "SO_REUSEADDR": 0x0004, "SO_EXCLUSIVEADDRUSE": ~0x0004},
    # Cygwin's <cygwin/socket.h> has SO_REUSEADDR and no SO_REUSEPORT.
    "cygwin": {"SOL_SOCKET": 0xFFFF, "SO_REUSEADDR": 0x0004},
}
# IPPROTO_IPV6 / IPV6_V6ONLY where Python lacks them (Linux <netinet/in.h>; BSDs and Windows share 41/27).
IPV6_VALUES = {"linux": (41, 26), "gvisor": (41, 26)}
IPV6_DEFAULT = (41, 27)

# Where struct tcp_info keeps tcpi_options (after five u_int8_t fields in Linux <linux/tcp.h> and FreeBSD
# <netinet/tcp.h>), and its TCPI_OPT_TIMESTAMPS bit. Other systems lay the struct out otherwise, or have none.
# gVisor has Linux's layout but leaves tcpi_options zero (its TCP_INFO fills the state, RTO, RTT, cwnd and
# ssthresh only), so whether a connection used timestamps is unknown there.
TCPI_OPTIONS_OFFSET = {"linux": 5, "freebsd": 5}
# Where tcpi_state, struct tcp_info's first byte, holds Linux's state numbers (include/net/tcp_states.h): Linux, and
# gVisor, whose TCP_INFO reports netstack's state in them (pkg/sentry/socket/netstack/netstack.go getSockOptTCP).
TCPI_STATE_FAMILIES = ("linux", "gvisor")
TCPI_OPT_TIMESTAMPS = 0x1
TCP_INFO_SIZE = 104  # room for the fields up to tcpi_options and well beyond; the kernel copies what fits
# How many connections a listener holds ready for accept(). Linux: for a listener, TCP_INFO's tcpi_unacked (a u32
# after eight u8 and four u32 fields in <linux/tcp.h>) is the accept queue's length (tcp_get_info(): "listeners
# aliased fields"). FreeBSD: SO_LISTENQLEN (<sys/socket.h> 0x1012, so_qlen: the complete queue). gVisor's TCP_INFO
# leaves it zero (above), and the other systems have neither: there the length is unknown.
TCPI_UNACKED_OFFSET = {"linux": 24}
SO_LISTENQLEN = {"freebsd": 0x1012}

# Windows Sockets error codes (winsock2.h) by the POSIX name they stand for.
WSA_NAMES = {
    10004: "EINTR", 10009: "EBADF", 10013: "EACCES", 10014: "EFAULT", 10022: "EINVAL", 10024: "EMFILE",
    10035: "EWOULDBLOCK", 10036: "EINPROGRESS", 10037: "EALREADY", 10038: "ENOTSOCK", 10039: "EDESTADDRREQ",
    10040: "EMSGSIZE", 10041: "EPROTOTYPE", 10042: "ENOPROTOOPT", 10043: "EPROTONOSUPPORT",
    10045: "EOPNOTSUPP", 10047: "EAFNOSUPPORT", 10048: "EADDRINUSE", 10049: "EADDRNOTAVAIL",
    10050: "ENETDOWN", 10051: "ENETUNREACH", 10053: "ECONNABORTED", 10054: "ECONNRESET", 10055: "ENOBUFS",
    10056: "EISCONN", 10057: "ENOTCONN", 10060: "ETIMEDOUT", 10061: "ECONNREFUSED", 10065: "EHOSTUNREACH",
}


def error_name(exc):
    """(name, raw number) of an OSError: 'EADDRINUSE', 98 on Linux; 'EADDRINUSE', 10048 on Windows."""
    number = getattr(exc, "winerror", None) or exc.errno
    if number in WSA_NAMES:
        return WSA_NAMES[number], number
    if number is None:  # e.g. socket.timeout raised without an errno
        return type(exc).__name__, None
    name = errno.errorcode.get(number, "E{}".format(number))
    return (name[3:] if name.startswith("WSAE") else name), number


class Options:
    """The option constants of one host: Python's own where it has them, else the OS's numeric value."""

    def __init__(self, os_family):
        table = OPTION_VALUES.get(os_family, {})
        self.sol_socket = getattr(socket, "SOL_SOCKET", table.get("SOL_SOCKET", 0xFFFF))
        self.values = {}
        for name in OPTIONS:
            if name in table or hasattr(socket, name):
                self.values[name] = getattr(socket, name, table.get(name))
        ipv6 = IPV6_VALUES.get(os_family, IPV6_DEFAULT)
        self.ipproto_ipv6 = getattr(socket, "IPPROTO_IPV6", ipv6[0])
        self.ipv6_v6only = getattr(socket, "IPV6_V6ONLY", ipv6[1])
        # struct linger is two ints on POSIX, two u_shorts on Windows.
        self.linger_format = "HH" if os_family == "windows" else "ii"
        self.tcpi_options = TCPI_OPTIONS_OFFSET.get(os_family)
        self.tcpi_unacked = TCPI_UNACKED_OFFSET.get(os_family)
        self.so_listenqlen = SO_LISTENQLEN.get(os_family)
        self.tcpi_state = os_family in TCPI_STATE_FAMILIES

    @property
    def sees_accept_queue(self):
        """Whether accept_queue() can say how many connections a listener holds on this host."""
        return (self.tcpi_unacked is not None and hasattr(socket, "TCP_INFO")) or self.so_listenqlen is not None

    def accept_queue(self, listener):
        """How many connections `listener` holds ready for accept() (see TCPI_UNACKED_OFFSET); None where the host
        cannot tell."""
        if self.so_listenqlen is not None:
            return listener.getsockopt(self.sol_socket, self.so_listenqlen)
        if self.tcpi_unacked is None or not hasattr(socket, "TCP_INFO"):
            return None
        info = listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_SIZE)
        return struct.unpack_from("=I", info, self.tcpi_unacked)[0]

    @property
    def known(self):
        """Names of the options this host has, in DESIGN.md's order."""
        return tuple(name for name in OPTIONS if name in self.values)

    def enable(self, sock, names):
        """Set each option to 1; the first refusal propagates as OSError (an outcome, not a crash)."""
        for name in names:
            sock.setsockopt(self.sol_socket, self.values[name], 1)

    def set_v6only(self, sock, v6only):
        sock.setsockopt(self.ipproto_ipv6, self.ipv6_v6only, 1 if v6only else 0)

    def ack_now(self, sock):
        """Send a pending ACK at once. Linux delays the ACK of a FIN (delayed-ACK timer, milliseconds);
        TCP_QUICKACK flushes it, so the peer reaches FIN_WAIT_2 now. Where the option is absent, the witness poll
        waits for the ACK instead."""
        quickack = getattr(socket, "TCP_QUICKACK", None)
        if quickack is not None:
            sock.setsockopt(socket.IPPROTO_TCP, quickack, 1)

    def used_timestamps(self, sock):
        """yes / no: whether the connection of `sock` negotiated TCP timestamps (tcp_info); unknown where the host
        cannot tell. Linux reuses a TIME_WAIT 4-tuple for an explicitly bound connect() only with them."""
        tcp_info = getattr(socket, "TCP_INFO", None)
        if tcp_info is None or self.tcpi_options is None:
            return "unknown"
        try:
            info = sock.getsockopt(socket.IPPROTO_TCP, tcp_info, TCP_INFO_SIZE)
        except OSError:
            return "unknown"
        if len(info) <= self.tcpi_options:
            return "unknown"
        return "yes" if info[self.tcpi_options] & TCPI_OPT_TIMESTAMPS else "no"

    def tcp_state(self, sock):
        """The TCP state number (Linux's) that TCP_INFO reports for `sock`, or None where the host cannot say."""
        tcp_info = getattr(socket, "TCP_INFO", None)
        if tcp_info is None or not self.tcpi_state:
            return None
        try:
            return sock.getsockopt(socket.IPPROTO_TCP, tcp_info, TCP_INFO_SIZE)[0]
        except (OSError, IndexError):
            return None

    def abort(self, sock):
        """Close with SO_LINGER 0: an RST, so the connection leaves no TIME_WAIT or orphan behind."""
        try:
            sock.setsockopt(self.sol_socket, socket.SO_LINGER, struct.pack(self.linger_format, 1, 0))
        except OSError:
            pass  # already reset by the peer: a plain close leaves nothing either
        sock.close()


# gVisor's /proc/cmdline names a kernel image ending in "-gvisor" after its claimed release ("BOOT_IMAGE=/vmlinuz-
# 4.4.0-gvisor quiet"; pkg/sentry/fsimpl/proc/tasks_files.go): readable by any user, no program to run. Its uname
# release changes between gVisor releases (4.4.0, later 4.19.0-gvisor), so it is not the mark.
GVISOR_MARK = re.compile(r"-gvisor\b")
CMDLINE = "/proc/cmdline"


def is_gvisor(cmdline):
    """Whether a /proc/cmdline text is gVisor's."""
    return bool(GVISOR_MARK.search(cmdline or ""))


def system_family():
    """The family of the system this agent runs on: platform_family(), except that Linux's system call interface
    served by gVisor's own kernel and TCP/IP stack is `gvisor`, a system of its own."""
    family = platform_family()
    if family == "linux":
        try:
            with open(CMDLINE) as stream:
                if is_gvisor(stream.read()):
                    return "gvisor"
        except OSError:
            pass
    return family


def platform_family(platform=None):
    """The OS family name of a sys.platform value: linux, windows, cygwin, freebsd, darwin, ..."""
    platform = platform or sys.platform
    for prefix, family in (("linux", "linux"), ("win32", "windows"), ("cygwin", "cygwin"), ("msys", "cygwin"),
                           ("freebsd", "freebsd"), ("darwin", "darwin"), ("openbsd", "openbsd"),
                           ("netbsd", "netbsd"), ("dragonfly", "dragonfly"), ("sunos", "sunos")):
        if platform.startswith(prefix):
            return family
    return platform
