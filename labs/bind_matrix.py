"""bind_matrix: bind() and listen() on a port that an earlier socket holds, in every state and option pair.

Seed 004's experiment generalised: an earlier ("first") socket is put into a state on a fresh port, the state is
witnessed in the OS connection table, then a second socket with its own options tries bind() (and listen() for
TCP) on the same port, from another process, the same process, or another user.
"""
import itertools
import socket

from labs import endpoints
from labs.connection import STATE_DEADLINE, OpenSockets, expect_eof
from labs.outcomes import Unsupported, Unwitnessed, record_steps, recorded
from labs.polling import poll
from labs.prober import ProberProcess, SameProcess, unprivileged_user
from labs.sockopts import Options, error_name
from labs.vocabulary import OK, UNSUPPORTED, join_options, join_states, split_options
from labs.witness import Witness

PARAMETERS = ("proto", "family", "state", "first_opts", "second_opts", "first_addr", "second_addr", "prober")

TCP_STATES = ("BOUND", "LISTEN", "LISTEN+ESTABLISHED", "ESTABLISHED", "CLOSE_WAIT", "FIN_WAIT_2", "TIME_WAIT")
# A UDP socket is either bound, or bound and connected: the witness shows the latter as ESTABLISHED.
UDP_STATES = ("BOUND", "ESTABLISHED")
STATES = {"tcp": TCP_STATES, "udp": UDP_STATES}

ADDRESSES = {family: tuple(names) for family, names in endpoints.ADDRESS.items()}

PROBERS = ("other_process", "same_process", "other_user")

# Every value each parameter column may take (the controller validates expectations against these).
AXES = {
    "proto": tuple(STATES),
    "family": tuple(ADDRESSES),
    "state": TCP_STATES,
    "first_addr": ADDRESSES["dual"],
    "second_addr": ADDRESSES["dual"],
    "prober": PROBERS,
    # first_opts / second_opts: any vocabulary.join_options() spelling
}
# Step columns: the outcome of each step of the second socket (empty when the step was not reached).
STEPS = ("setsockopt", "bind", "listen")
STEP_VALUES = {}  # every step gives ok or an error name
MEASURES = ()
TUNABLE = {}


def option_sets(known):
    """Every subset of the host's options, spelled canonically: none, SO_REUSEADDR, ..., all of them."""
    return [join_options(chosen) for size in range(len(known) + 1) for chosen in itertools.combinations(known, size)]


def cases(host):
    """The table of cases for a host: every axis value, every pair of option sets the host knows."""
    opts = option_sets(host["options"])
    for proto, family in itertools.product(STATES, ADDRESSES):
        for state, (first_opts, second_opts), (first_addr, second_addr), prober in itertools.product(
                STATES[proto], itertools.product(opts, repeat=2), itertools.product(ADDRESSES[family], repeat=2),
                PROBERS):
            yield dict(zip(PARAMETERS, (proto, family, state, first_opts, second_opts, first_addr, second_addr,
                                        prober)))


class Context:
    """What the cases of one run share: option constants, the witness, and the probers."""

    def __init__(self, host):
        self.options = Options(host["os_family"])
        self.witness = Witness(host["os_family"])
        self.probers = {"other_process": ProberProcess(), "same_process": SameProcess(self.options)}
        user = unprivileged_user() if host["admin"] else None
        if user:
            self.probers["other_user"] = ProberProcess(user=user)

    def close(self):
        for prober in self.probers.values():
            prober.close()
        self.witness.close()


class Earlier(OpenSockets):
    """The earlier socket of one case, driven into its state (Unsupported where the host refuses to build it);
    close() aborts whatever is still open."""

    def __init__(self, context, params):
        OpenSockets.__init__(self, context.options)
        self.params = params
        self.first = self.server = self.client = None

    def bind(self):
        params = self.params
        try:
            sock = endpoints.new_socket(self.options, params["proto"], params["family"],
                                        split_options(params["first_opts"]))
        except OSError as exc:
            raise Unsupported("first socket setsockopt: {}".format(error_name(exc)[0])) from None
        self.first = self.track(sock)
        self.port = endpoints.fresh_port(self.options, params["proto"])
        try:
            sock.bind(endpoints.sockaddr(params["family"], params["first_addr"], self.port))
        except OSError as exc:
            raise Unsupported("first socket bind: {}".format(error_name(exc)[0])) from None

    def connect(self):
        """A client on loopback, and the server's accepted end of its connection."""
        client_family, host = endpoints.peer_of(self.params["family"], self.params["first_addr"])
        self.first.listen(8)
        self.client = self.track(socket.socket(endpoints.SOCKET_FAMILY[client_family], socket.SOCK_STREAM))
        self.client.connect((host, self.port))
        self.server = self.track(self.first.accept()[0])

    def close_listener(self):
        self.close_one(self.first)

    def close_server_first(self):
        """The server side sends FIN; once the client's recv() sees it, the client ACKs it: FIN_WAIT_2."""
        self.close_one(self.server)
        expect_eof(self.client)
        self.options.ack_now(self.client)


def drive_bound(earlier):
    earlier.bind()


def drive_listen(earlier):
    earlier.bind()
    earlier.first.listen(8)


def drive_listen_established(earlier):
    earlier.bind()
    earlier.connect()


def drive_established(earlier):
    drive_listen_established(earlier)
    earlier.close_listener()


def drive_close_wait(earlier):
    drive_established(earlier)
    earlier.close_one(earlier.client)
    expect_eof(earlier.server)  # the client's FIN has arrived, so the server end is in CLOSE_WAIT


def drive_fin_wait_2(earlier):
    drive_established(earlier)
    earlier.close_server_first()


def drive_time_wait(earlier):
    drive_fin_wait_2(earlier)
    earlier.close_one(earlier.client)


def drive_udp_connected(earlier):
    earlier.bind()
    peer_family, host = endpoints.peer_of(earlier.params["family"], earlier.params["first_addr"])
    peer = earlier.track(socket.socket(endpoints.SOCKET_FAMILY[peer_family], socket.SOCK_DGRAM))
    peer.bind((host, 0))
    if earlier.params["first_addr"] == "v4mapped":
        host = endpoints.ADDRESS["dual"]["v4mapped"]
    earlier.first.connect((host, peer.getsockname()[1]))


# How the earlier socket reaches each state, per protocol.
DRIVERS = {
    ("tcp", "BOUND"): drive_bound,
    ("tcp", "LISTEN"): drive_listen,
    ("tcp", "LISTEN+ESTABLISHED"): drive_listen_established,
    ("tcp", "ESTABLISHED"): drive_established,
    ("tcp", "CLOSE_WAIT"): drive_close_wait,
    ("tcp", "FIN_WAIT_2"): drive_fin_wait_2,
    ("tcp", "TIME_WAIT"): drive_time_wait,
    ("udp", "BOUND"): drive_bound,
    ("udp", "ESTABLISHED"): drive_udp_connected,
}


def witness(context, earlier):
    """The states the OS table shows on the earlier socket's port, polled until they are the case's state or the
    deadline passes. Where the table cannot list a bound-only TCP socket, an empty table plus getsockname() is the
    witness of BOUND."""
    proto, wanted = earlier.params["proto"], earlier.params["state"]
    self_witnessed = proto == "tcp" and wanted == "BOUND" and not context.witness.sees_bound_tcp

    def seen_now():
        seen = context.witness.states(proto, earlier.port)
        if self_witnessed and not seen and earlier.first.getsockname()[1] == earlier.port:
            return "BOUND"
        return join_states(seen)

    return poll(seen_now, lambda seen: seen == wanted, STATE_DEADLINE)


def run_case(context, params):
    """Run one case; returns the result fields of DESIGN.md (outcome, witness, detail, errno, steps)."""
    record = {"outcome": OK, "witness": "", "detail": "", "errno": None}
    prober = context.probers.get(params["prober"])
    if prober is None:
        record.update(outcome=UNSUPPORTED, detail="no other user: the agent does not run as root")
        return record
    earlier = Earlier(context, params)
    try:
        with recorded(record):
            DRIVERS[params["proto"], params["state"]](earlier)
            record["witness"] = witness(context, earlier)
            if record["witness"] != params["state"]:
                raise Unwitnessed("state not witnessed on port {}".format(earlier.port))
            steps = prober.try_second({"proto": params["proto"], "family": params["family"],
                                       "addr": params["second_addr"], "port": earlier.port,
                                       "opts": split_options(params["second_opts"])})
            record_steps(record, steps, STEPS)
    finally:
        earlier.close()
    return record
