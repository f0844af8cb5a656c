"""Families and addresses of the matrix, and the one way every lab opens a socket on them.

`family` is the matrix's name: inet (IPv4), inet6 (IPv6 with IPV6_V6ONLY=1) or dual (IPv6 with IPV6_V6ONLY=0, which
also accepts IPv4 as ::ffff:a.b.c.d). Addresses are named, not spelled, so results from every OS line up.
"""
import socket

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


def sockaddr(family, address, port):
    return (ADDRESS[family][address], port)


def peer_of(family, address):
    """Where a client reaches a socket bound to `address`: (socket family, host). A wildcard is reached on loopback;
    a v4-mapped address from a plain IPv4 client, since clients elsewhere default to IPV6_V6ONLY=1."""
    if address == "v4mapped":
        return "inet", ADDRESS["inet"]["loopback"]
    return family, ADDRESS[family]["loopback"]



def fresh_port(options, proto):
    """A port that no socket of either family holds, TIME_WAIT included.

    bind(port 0) of a socket with SO_REUSEADDR or SO_REUSEPORT may be given a port that old connections still
    hold; a socket without options on the dual-stack wildcard conflicts with every one of them, so the port the
    OS gives it is free. It is closed at once (a bound-only socket leaves nothing behind) for the case to bind.
    """
    try:
        probe = new_socket(options, proto, "dual", ())
        address = sockaddr("dual", "wildcard", 0)
    except OSError:  # no IPv6 on this host
        probe = new_socket(options, proto, "inet", ())
        address = sockaddr("inet", "wildcard", 0)
    with probe:
        probe.bind(address)
        return probe.getsockname()[1]
