"""Families and addresses of the matrix, and the one way every lab opens a socket on them.

`family` is the matrix's name: inet (IPv4), inet6 (IPv6 with IPV6_V6ONLY=1) or dual (IPv6 with IPV6_V6ONLY=0, which
also accepts IPv4 as ::ffff:a.b.c.d). Addresses are named, not spelled, so results from every OS line up.
"""
import errno
import random
import socket

from labs.sockopts import error_name

SOCKET_FAMILY = {"inet": socket.AF_INET, "inet6": socket.AF_INET6, "dual": socket.AF_INET6}
ADDRESS = {
    "inet": {"wildcard": "0.0.0.0", "loopback": "127.0.0.1"},
    "inet6": {"wildcard": "::", "loopback": "::1"},
    "dual": {"wildcard": "::", "loopback": "::1", "v4mapped": "::ffff:127.0.0.1"},
}
SOCKET_TYPE = {"tcp": socket.SOCK_STREAM, "udp": socket.SOCK_DGRAM}


def new_socket(options, proto, family, option_names):
    """A socket of the matrix's family with its options set, ready for bind(); OSError when the OS refuses one."""
    sock = socket.socket(SOCKET_FAMILY[family], SOCKET_TYPE[proto])
    try:
        if family != "inet":
            options.set_v6only(sock, family == "inet6")
        options.enable(sock, option_names)
    except OSError:
        sock.close()
        raise
    return sock


def can_open(options, family):
    """Whether the host opens sockets of this matrix family (a host without IPv6 opens no inet6 or dual ones)."""
    try:
        new_socket(options, "tcp", family, ()).close()
    except OSError:
        return False
    return True


def sockaddr(family, address, port):
    """The socket address of a named address of the matrix (wildcard, loopback, v4mapped) or of an address literal
    (`why` binds whatever address a server would)."""
    return (ADDRESS[family].get(address, address), port)


def peer_of(family, address):
    """Where a client reaches a socket bound to `address`: (socket family, host). A wildcard is reached on loopback;
    a v4-mapped address from a plain IPv4 client, since clients elsewhere default to IPV6_V6ONLY=1."""
    if address == "v4mapped":
        return "inet", ADDRESS["inet"]["loopback"]
    return family, ADDRESS[family]["loopback"]



IANA_EPHEMERAL = (49152, 65535)  # the range of Windows and macOS, and the default where the host does not say


def ephemeral_range(host):
    """(first, last) port of the host's ephemeral range, from its sysctls (Linux, FreeBSD, macOS), else IANA's."""
    sysctls = host.get("sysctls") or {}
    try:
        if "net.ipv4.ip_local_port_range" in sysctls:
            low, high = map(int, sysctls["net.ipv4.ip_local_port_range"].split())
        else:
            low, high = int(sysctls["net.inet.ip.portrange.first"]), int(sysctls["net.inet.ip.portrange.last"])
    except (KeyError, ValueError):
        low, high = IANA_EPHEMERAL
    return low, high


def reserved_ports(root="/proc/sys/net/ipv4/ip_local_reserved_ports"):
    """Linux's reserved ports (ip_local_reserved_ports: "8080,9000-9100"), which bind(0) never hands out; none
    elsewhere."""
    try:
        with open(root) as stream:
            text = stream.read().strip()
    except OSError:
        return frozenset()
    reserved = set()
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        reserved.update(range(int(first), int(last or first) + 1))
    return frozenset(reserved)


class PortShare:
    """Where fresh ports come from in an agent run: the ports of the ephemeral range (less reserved ones) whose
    (port >> 1) % count is `index`, for one of `count` worker processes (labs/workers.py; one process: every port).
    A worker binds no port of another's share, not even for a moment, so two never draw the same port between one's
    probe closing and its case binding the port. Random ports first, then every port of the share from a random
    one: bind(0) walks the odd half of the range before the even one, which takes milliseconds a call when another
    run's TIME_WAITs hold the odd ports."""

    DRAWS = 64

    def __init__(self, index, count, ephemeral):
        low, high = ephemeral
        self.index, self.count = index, count
        reserved = reserved_ports()
        self.ports = [port for port in range(low, high + 1) if (port >> 1) % count == index and port not in reserved]
        self.random = random.Random()

    def candidates(self):
        """DRAWS random ports of this share, then each of its ports once, from a random one up, wrapping round."""
        if not self.ports:
            return
        for _draw in range(self.DRAWS):
            yield self.random.choice(self.ports)
        start = self.random.randrange(len(self.ports))
        yield from self.ports[start:]
        yield from self.ports[:start]


SHARE = [None]  # this process's PortShare; None (labs run by hand, tests): bind(0), the OS's choice


def set_port_share(index, count, ephemeral):
    SHARE[0] = PortShare(index, count, ephemeral)


FRESH_PORT_TRIES = 3


def bind_fresh_port(options, sock, proto, family, address):
    """Binds `sock` to a fresh port at `address` (named) and returns the port. Between fresh_port()'s probe and the
    bind the OS may give the port to another socket's connect() as its local port (gVisor even gives one that a
    connection of another socket, or a socket of the other IP version, still holds: pkg/tcpip/ports/ports.go
    counts only reservations for the same destination or none), so EADDRINUSE draws another fresh port, up to
    FRESH_PORT_TRIES ports; any other refusal, or the last one, is raised (OSError)."""
    tries = FRESH_PORT_TRIES
    while True:
        port = fresh_port(options, proto)
        try:
            sock.bind(sockaddr(family, address, port))
            return port
        except OSError as exc:
            tries -= 1
            if error_name(exc)[0] != "EADDRINUSE" or not tries:
                raise


def _probe(options, proto, port):
    """A socket without options on the dual-stack wildcard (IPv4's where the host has no IPv6), bound to `port` (0:
    the OS picks); OSError if the port is held. It conflicts with every socket on the port, TIME_WAIT included."""
    try:
        probe = new_socket(options, proto, "dual", ())
    except OSError:  # no IPv6 on this host
        probe = new_socket(options, proto, "inet", ())
    try:
        probe.bind(sockaddr("dual" if probe.family == socket.AF_INET6 else "inet", "wildcard", port))
    except OSError:
        probe.close()
        raise
    return probe


def fresh_port(options, proto):
    """A port that no socket of either family holds, TIME_WAIT included.

    bind(port 0) of a socket with SO_REUSEADDR or SO_REUSEPORT may be given a port that old connections still
    hold; a socket without options on the dual-stack wildcard conflicts with every one of them, so the port the
    OS gives it is free (an explicit port too, where this process has a PortShare: the same conflict check). It is
    closed at once (a bound-only socket leaves nothing behind) for the case to bind.
    """
    share = SHARE[0]
    if share is None:
        with _probe(options, proto, 0) as probe:
            return probe.getsockname()[1]
    for port in share.candidates():
        try:
            _probe(options, proto, port).close()
            return port
        except OSError as exc:
            if error_name(exc)[0] not in ("EADDRINUSE", "EACCES"):  # held, or reserved (Windows' excluded ranges)
                raise
    raise OSError(errno.EADDRINUSE, "no fresh port in share {} of {} of the ephemeral range".format(
        share.index, share.count))
