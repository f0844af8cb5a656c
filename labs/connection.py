"""A loopback TCP connection driven through its closes: what the TIME_WAIT labs (time_wait_owner, tuple_reuse) share.

Both build a listener, a client and the server's accepted end on one loopback address, close them in a chosen order,
then read the OS connection table on the ports involved until nothing there is still closing. OpenSockets, the
sockets a case has open and how they close, serves bind_matrix's earlier socket too.
"""
import socket

from labs import endpoints
from labs.outcomes import Unsupported
from labs.polling import poll
from labs.sockopts import error_name
from labs.vocabulary import join_options, join_states

# How long a state may take to show in the OS table, and an accept()/recv() to return, before giving up.
STATE_DEADLINE = 2.0
# States of a connection still on its way to closed: a table that shows one has not settled.
UNSETTLED = frozenset(("SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2", "CLOSE_WAIT", "CLOSING",
                       "LAST_ACK"))


class OpenSockets:
    """The sockets a case has open. close_one() closes one in order (a FIN: the state machine the case is about);
    close() aborts whatever is still open (SO_LINGER 0, an RST), so a case leaves behind only the TIME_WAITs it made
    on purpose."""

    def __init__(self, options):
        self.options, self.open_sockets = options, []

    def track(self, sock):
        sock.settimeout(STATE_DEADLINE)  # no step may block forever; none waits a fixed time either
        self.open_sockets.append(sock)
        return sock

    def close_one(self, sock):
        self.open_sockets.remove(sock)
        sock.close()

    def abort_one(self, sock):
        self.open_sockets.remove(sock)
        self.options.abort(sock)

    def close(self):
        for sock in self.open_sockets:
            self.options.abort(sock)
        self.open_sockets = []


class Loopback(OpenSockets):
    """Sockets of one matrix family on its loopback address; a socket or bind() the host refuses (no IPv6, an option
    it lacks) raises outcomes.Unsupported."""

    def __init__(self, options, family):
        OpenSockets.__init__(self, options)
        self.family, self.host = family, endpoints.ADDRESS[family]["loopback"]

    def socket(self, option_names=(), buffer_size=None):
        """A TCP socket with these options set, and its send and receive buffers set to `buffer_size` bytes if
        given (before connect() or listen(), where windows are chosen); Unsupported when the host refuses it."""
        try:
            sock = endpoints.new_socket(self.options, "tcp", self.family, option_names)
        except OSError as exc:
            raise Unsupported("{} socket with {}: {}".format(self.family, join_options(option_names),
                                                         error_name(exc)[0])) from None
        self.track(sock)
        if buffer_size:
            sock.setsockopt(self.options.sol_socket, socket.SO_RCVBUF, buffer_size)
            sock.setsockopt(self.options.sol_socket, socket.SO_SNDBUF, buffer_size)
        return sock

    def bind(self, sock, port=None):
        """Binds `sock` to `port`, by default a fresh one: the witness reads a port in both families, so a port a
        case watches must be one that no socket of either family holds, TIME_WAIT included (endpoints.fresh_port),
        not merely one the OS would give this family. Returns the port."""
        if port is None:
            port = endpoints.fresh_port(self.options, "tcp")
        try:
            sock.bind((self.host, port))
        except OSError as exc:
            raise Unsupported("bind to {} port {}: {}".format(self.host, port, error_name(exc)[0])) from None
        return port

    def listener(self, buffer_size=None):
        """A listener on a fresh port."""
        sock = self.socket(buffer_size=buffer_size)
        self.bind(sock)
        sock.listen(8)
        return sock

    def connect(self, client, listener):
        """Connects `client` to `listener`; returns the server's accepted end."""
        client.connect((self.host, port_of(listener)))
        return self.track(listener.accept()[0])

    def close_first(self, closer, peer):
        """An orderly close that `closer` starts (RFC 793's "local user initiates the close"): its FIN, then the
        peer reads EOF and closes too."""
        self.close_one(closer)
        expect_eof(peer)
        self.close_one(peer)


# tcpi_state of a connection that has ended (Linux's number, which gVisor's TCP_INFO uses too)
TCP_CLOSE = 7


class Peer:
    """The end of a connection that closes second, sending its FIN with shutdown(SHUT_WR) and keeping its
    descriptor: where the table lists no closed socket's TIME_WAIT (Witness.time_wait_by_peer), its own state is
    the witness that the other end, which closed first, is in TIME_WAIT."""

    def __init__(self, options, sock):
        self.options, self.sock = options, sock
        self.error = 0  # the first SO_ERROR it gave: reading SO_ERROR clears it, so it is kept here

    def send_fin(self):
        self.sock.shutdown(socket.SHUT_WR)

    def fin_acked(self):
        """Whether its FIN was ACKed: TCP_INFO state CLOSE (LAST_ACK answered) and no error ever (a reset also ends
        in CLOSE)."""
        self.error = self.error or self.sock.getsockopt(self.options.sol_socket, socket.SO_ERROR)
        return not self.error and self.options.tcp_state(self.sock) == TCP_CLOSE

    def wait(self):
        """fin_acked(), polled within STATE_DEADLINE."""
        return poll(self.fin_acked, bool, STATE_DEADLINE)


def port_of(sock):
    return sock.getsockname()[1]


def expect_eof(sock):
    """Waits (bounded by the socket's timeout) for the peer's FIN."""
    if sock.recv(1) != b"":
        raise RuntimeError("read data where the peer's FIN was due")


def settle(witness, ports):
    """The TCP states the OS table shows on each local port (a tuple per port), read until no port shows a state
    still closing (UNSETTLED) or STATE_DEADLINE passes; settled() tells which."""
    def seen_now():
        return tuple(witness.states("tcp", port) for port in ports)
    return poll(seen_now, settled, STATE_DEADLINE)


def settled(seen):
    return not any(UNSETTLED.intersection(states) for states in seen)


def spell(names, seen):
    """The witness spelling of several ends: "client=TIME_WAIT server=" (an end with no table entry shows nothing
    after "=")."""
    return " ".join("{}={}".format(name, join_states(states)) for name, states in zip(names, seen))
