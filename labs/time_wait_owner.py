"""time_wait_owner: which end of a TCP connection holds TIME_WAIT after each way of closing it, and whether the
server's port can be bound again at once without options. From seed 003: "if you initiate closure, there is a
TIME_WAIT state that is absent from the other side"; "if both ends send a FIN before either end receives it, both
ends will have to go through TIME_WAIT".

Each case connects a client to a listener on loopback, accepts, and closes the listener before the close sequence,
so only the connection holds the server's port. Then the connection closes one way (closer: client or server; both
in a simultaneous close):

    orderly       the closer close()s; the other end reads EOF and close()s
    shutdown      the closer shutdown(SHUT_WR)s; the other end reads EOF and close()s; the closer reads EOF and
                  close()s
    abortive      the closer close()s with SO_LINGER 0 (an RST); the other end sees the reset and close()s
    simultaneous  both ends first fill each other's receive window (small SO_RCVBUF/SO_SNDBUF set before
                  connect()/listen(), non-blocking sends until they would block), so the FIN each shutdown(SHUT_WR)
                  queues waits behind unsent data; the table must show both ends in FIN_WAIT_1 (each sent its FIN
                  before receiving the other's: the precondition, else `inconclusive`); then both read until EOF and
                  close()

The OS table is read on both ports until neither shows a state still closing (else `inconclusive`). The witness
column spells what each end showed, "client=TIME_WAIT server=" (its states joined by +, nothing after = for an end
with no entry left). Step time_wait names the ends that showed TIME_WAIT: client, server, both or neither. Then a
new socket without options binds the listener's address and port (bind) and listens (listen), as a restarted
server would. No case waits for a TIME_WAIT to expire.
"""
import itertools
import socket

from labs import connection
from labs.connection import Loopback, port_of, settle, settled, spell
from labs.outcomes import Unwitnessed, record_steps, recorded
from labs.polling import poll
from labs.prober import try_second
from labs.sockopts import Options
from labs.vocabulary import INCONCLUSIVE, OK
from labs.witness import Witness

PARAMETERS = ("family", "close", "closer")
FAMILIES = ("inet", "inet6")
CLOSERS = {"orderly": ("client", "server"), "shutdown": ("client", "server"), "abortive": ("client", "server"),
           "simultaneous": ("both",)}
AXES = {"family": FAMILIES, "close": tuple(CLOSERS), "closer": ("client", "server", "both")}
STEPS = ("time_wait", "bind", "listen")
STEP_VALUES = {"time_wait": ("client", "server", "both", "neither")}
MEASURES = ()
TUNABLE = {}

ENDS = ("client", "server")
# Send and receive buffers of both ends of a simultaneous close: small, so a few kilobytes fill each one's window.
SIMULTANEOUS_BUFFER = 8192
# A send that never blocks (a stack that ignores the buffer sizes) stops here; the FIN_WAIT_1 witness then decides.
FILL_LIMIT = 1 << 22


def cases(host):
    for family, close in itertools.product(FAMILIES, CLOSERS):
        for closer in CLOSERS[close]:
            yield dict(zip(PARAMETERS, (family, close, closer)))


class Context:
    def __init__(self, host):
        self.options = Options(host["os_family"])
        self.witness = Witness(host["os_family"])

    def close(self):
        self.witness.close()


def close_orderly(context, loopback, closer, other):
    loopback.close_first(closer, other)


def close_shutdown(context, loopback, closer, other):
    closer.shutdown(socket.SHUT_WR)
    connection.expect_eof(other)
    loopback.close_one(other)
    connection.expect_eof(closer)
    loopback.close_one(closer)


def close_abortive(context, loopback, closer, other):
    loopback.abort_one(closer)
    try:
        if other.recv(1) != b"":
            raise RuntimeError("read data where the reset was due")
    except ConnectionResetError:  # ECONNRESET / WSAECONNRESET: the RST arrived
        pass
    loopback.close_one(other)


def fill_peer_window(sock):
    """Sends until this end's send buffer and the peer's receive window are full, so what it sends next, its FIN
    included, waits in its queue until the peer reads."""
    sock.setblocking(False)
    chunk, sent = bytes(SIMULTANEOUS_BUFFER), 0
    try:
        while sent < FILL_LIMIT:
            sent += sock.send(chunk)
    except BlockingIOError:
        pass


def drain_until_eof(ends):
    """Reads both non-blocking ends until each has seen the other's FIN; each read opens the window the other
    end's data and FIN wait for."""
    at_eof = set()

    def read_available():
        for sock in ends:
            try:
                while sock not in at_eof:
                    if sock.recv(65536) == b"":
                        at_eof.add(sock)
            except BlockingIOError:
                pass
        return len(at_eof)

    if poll(read_available, lambda count: count == len(ends), connection.STATE_DEADLINE) != len(ends):
        raise RuntimeError("no EOF on both ends within {} s".format(connection.STATE_DEADLINE))


def close_simultaneous(context, loopback, client, server):
    ends = (client, server)
    for sock in ends:
        fill_peer_window(sock)
    for sock in ends:
        sock.shutdown(socket.SHUT_WR)
    both_sent = (("FIN_WAIT_1",), ("FIN_WAIT_1",))
    seen = poll(lambda: tuple(context.witness.states("tcp", port_of(sock)) for sock in ends),
                lambda seen: seen == both_sent, connection.STATE_DEADLINE)
    if seen != both_sent:
        raise Unwitnessed("after both shutdown(SHUT_WR): {} (both FIN_WAIT_1 wanted)".format(spell(ENDS, seen)))
    drain_until_eof(ends)
    for sock in ends:
        loopback.close_one(sock)
    return "before either FIN arrived " + spell(ENDS, seen)


# How each way of closing runs: (context, loopback, the closer's end, the other end); a note for detail, or None.
CLOSES = {"orderly": close_orderly, "shutdown": close_shutdown, "abortive": close_abortive,
          "simultaneous": close_simultaneous}


def time_wait_owner(seen):
    """Which ends' ports show TIME_WAIT: client, server, both or neither."""
    holders = [name for name, states in zip(ENDS, seen) if "TIME_WAIT" in states]
    if len(holders) == len(ENDS):
        return "both"
    return holders[0] if holders else "neither"


def run_case(context, params):
    """Run one case; returns outcome, witness, detail, errno and the steps it reached."""
    record = {"outcome": OK, "witness": "", "detail": "", "errno": None}
    if not context.witness.sees_time_wait:  # its "neither" could be TIME_WAITs the table leaves out
        record.update(outcome=INCONCLUSIVE, detail="this host's connection table ({}) does not list TIME_WAIT{}".format(
            context.witness.method, ": " + context.witness.blind_spot if context.witness.blind_spot else ""))
        return record
    loopback = Loopback(context.options, params["family"])
    buffer_size = SIMULTANEOUS_BUFFER if params["close"] == "simultaneous" else None
    try:
        with recorded(record):
            listener = loopback.listener(buffer_size)
            client = loopback.socket(buffer_size=buffer_size)
            loopback.bind(client)  # a fresh port, not an ephemeral one another family's connection may share
            server = loopback.connect(client, listener)
            loopback.close_one(listener)  # from here only the connection holds the server's port
            ports = (port_of(client), port_of(server))
            record["detail"] = "client port {}, server port {}".format(*ports)
            first, second = (server, client) if params["closer"] == "server" else (client, server)
            note = CLOSES[params["close"]](context, loopback, first, second)
            if note:
                record["detail"] += "; " + note
            seen = settle(context.witness, ports)
            record["witness"] = spell(ENDS, seen)
            if not settled(seen):
                raise Unwitnessed("still closing after {} s".format(connection.STATE_DEADLINE))
            record["time_wait"] = time_wait_owner(seen)
            steps = try_second(context.options, {"proto": "tcp", "family": params["family"], "addr": "loopback",
                                                 "port": ports[1], "opts": ()})
            record_steps(record, steps, ("bind", "listen"))
    finally:
        loopback.close()
    return record
