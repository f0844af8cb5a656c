"""hijack: can a second program silently take over the connections of a listener? (seeds 001 and 003)

A first socket LISTENs on a fresh port in the agent, and its LISTEN state is witnessed in the OS table. A second
socket, in a prober process of the same user or of another user, sets its options, binds the same port (every
option pair, every address pair of the family) and listens there; it stays open in the prober while CONNECTIONS
clients connect from the agent, and each connection is counted where it is accepted: accepted_by is `first`,
`second`, `both` (the count in `split`, first/second) or `refused`. Then the first listener closes and one more
client shows who takes over (after_close). Wine's test_reuseaddr (SOURCES.md, source A) is this experiment on
Windows, one connection at a time.

The clients connect where a client of the first listener would: its own address, or on loopback when it is the
wildcard. When the first is the wildcard and the second a specific address, they connect to that address: seed
003's case of a client of the wildcard service that the more specific bind would intercept.
"""
import itertools
import socket

from labs import bind_matrix, endpoints
from labs.bind_matrix import ADDRESSES, option_sets
from labs.outcomes import Unsupported, Unwitnessed, first_failure, record_steps, recorded
from labs.polling import poll
from labs.prober import accept_pending
from labs.sockopts import error_name
from labs.vocabulary import OK, UNSUPPORTED, join_states, split_options

PARAMETERS = ("family", "first_opts", "second_opts", "first_addr", "second_addr", "prober")
# What the cases share is bind_matrix's: option constants, the witness, the prober processes.
Context = bind_matrix.Context
PROBERS = ("other_process", "other_user")
AXES = {
    "family": tuple(ADDRESSES),
    "first_addr": ADDRESSES["dual"],
    "second_addr": ADDRESSES["dual"],
    "prober": PROBERS,
    # first_opts / second_opts: any vocabulary.join_options() spelling
}
# The second socket's steps, then who accepted the clients' connections, then who accepted one after the first closed.
STEPS = ("setsockopt", "bind", "listen", "accepted_by", "after_close")
# `none`: connect() succeeded, but neither listener accepted the connection within ACCEPT_DEADLINE (see detail).
STEP_VALUES = {"accepted_by": ("first", "second", "both", "refused", "none"),
               "after_close": ("second", "refused", "none")}
MEASURES = ("split",)  # "10/6": of CONNECTIONS connections, accepted by the first / by the second listener
TUNABLE = {}

CONNECTIONS = 16  # enough that a kernel spreading connections over both listeners shows `both` (1 - 2**-15)
STATE_DEADLINE = 2.0  # seconds for LISTEN to show in the OS table
ACCEPT_DEADLINE = 2.0  # seconds for every connected client's connection to be accepted by one of the listeners
# A connect() that is refused comes back at once on Unix; Windows retries a refused SYN for about a second first.
CONNECT_DEADLINE = 5.0


def cases(host):
    """Every option pair the host knows, every address pair of each family, from each prober."""
    opts = option_sets(host["options"])
    for family, addresses in ADDRESSES.items():
        for (first_opts, second_opts), (first_addr, second_addr), prober in itertools.product(
                itertools.product(opts, repeat=2), itertools.product(addresses, repeat=2), PROBERS):
            yield dict(zip(PARAMETERS, (family, first_opts, second_opts, first_addr, second_addr, prober)))


def client_address(params):
    """(socket family, host) the clients connect to: see the module's docstring."""
    first, second = params["first_addr"], params["second_addr"]
    return endpoints.peer_of(params["family"], second if first == "wildcard" else first)


def listen(sock):
    """The first socket's listen(): a function of its own, so a test can leave the socket bound only."""
    sock.listen(CONNECTIONS)


def who(first, second):
    """accepted_by for the sets of connections each listener accepted."""
    if first and second:
        return "both"
    return "first" if first else "second" if second else "none"


class Agent:
    """One case's sockets in the agent: the first listener and the clients; close() resets whatever is open."""

    def __init__(self, context, params):
        self.options, self.params = context.options, params
        self.first, self.clients = None, []
        self.port = None
        self.target = client_address(params)

    def open_first(self):
        params = self.params
        try:
            self.first = endpoints.new_socket(self.options, "tcp", params["family"],
                                              split_options(params["first_opts"]))
        except OSError as exc:
            raise Unsupported("first socket: {}".format(error_name(exc)[0])) from None
        self.port = endpoints.fresh_port(self.options, "tcp")
        try:
            self.first.bind(endpoints.sockaddr(params["family"], params["first_addr"], self.port))
        except OSError as exc:
            raise Unsupported("first socket bind: {}".format(error_name(exc)[0])) from None
        listen(self.first)
        self.first.setblocking(False)  # accept_pending takes what is pending now, never waits

    def connect(self, count):
        """Up to `count` clients connect, stopping at the first failure; (their local ports, the failure's name or
        None)."""
        family, host = self.target
        ports = set()
        for _ in range(count):
            client = socket.socket(endpoints.SOCKET_FAMILY[family], socket.SOCK_STREAM)
            self.clients.append(client)
            client.settimeout(CONNECT_DEADLINE)
            try:
                client.connect((host, self.port))
            except socket.timeout:
                return ports, "ETIMEDOUT"
            except OSError as exc:
                return ports, error_name(exc)[0]
            ports.add(client.getsockname()[1])
        return ports, None

    def accepted(self, prober, ports):
        """Polls both listeners until each of `ports` was accepted by one, or ACCEPT_DEADLINE passes: the ports
        each accepted (connections from elsewhere are no client of this case: left out)."""
        by_first, by_second = set(), set()

        def read():
            if self.first is not None:
                by_first.update(accept_pending(self.options, self.first))
            by_second.update(prober.accepted())
            return by_first | by_second

        poll(read, lambda seen: ports <= seen, ACCEPT_DEADLINE)
        return by_first & ports, by_second & ports

    def close_first(self):
        """The first listener goes, its pending connections reset first."""
        accept_pending(self.options, self.first)
        self.first.close()
        self.first = None

    def close(self):
        for sock in self.clients + [self.first]:
            if sock is not None:
                self.options.abort(sock)
        self.first, self.clients = None, []


def accepted_by(agent, prober, record):
    """CONNECTIONS clients connect; accepted_by, split and what the detail must say."""
    ports, failure = agent.connect(CONNECTIONS)
    notes = []
    if failure is not None:
        notes.append("connect {} of {}: {}".format(len(ports) + 1, CONNECTIONS, failure))
        if not ports:
            return "refused" if failure == "ECONNREFUSED" else failure, notes
    by_first, by_second = agent.accepted(prober, ports)
    record["split"] = "{}/{}".format(len(by_first), len(by_second))
    unaccepted = len(ports) - len(by_first) - len(by_second)
    if unaccepted:
        notes.append("{} of {} connections accepted by neither listener within {}s".format(
            unaccepted, len(ports), ACCEPT_DEADLINE))
    return who(by_first, by_second), notes


def after_close(agent, prober):
    """The first listener closes; one more client connects: who accepts it now, and what the detail must say."""
    agent.close_first()
    ports, failure = agent.connect(1)
    if failure is not None:
        return ("refused" if failure == "ECONNREFUSED" else failure), []
    _, by_second = agent.accepted(prober, ports)  # the first is closed: only the second can accept it
    if by_second:
        return "second", []
    return "none", ["after close: the connection was accepted by no listener within {}s".format(ACCEPT_DEADLINE)]


def run_case(context, params):
    """Run one case; returns the result fields of DESIGN.md (outcome, witness, detail, errno, steps, split)."""
    record = {"outcome": OK, "witness": "", "detail": "", "errno": None}
    prober = context.probers.get(params["prober"])
    if prober is None:
        record.update(outcome=UNSUPPORTED, detail="no other user: the agent does not run as root or has no "
                                                  "unprivileged account")
        return record
    agent = Agent(context, params)
    second_open = False
    try:
        with recorded(record):
            agent.open_first()
            record["witness"] = poll(lambda: join_states(context.witness.states("tcp", agent.port)),
                                     lambda seen: seen == "LISTEN", STATE_DEADLINE)
            if record["witness"] != "LISTEN":
                raise Unwitnessed("first LISTEN not witnessed on port {}".format(agent.port))
            second_open = True
            steps = prober.listen_second({"proto": "tcp", "family": params["family"], "addr": params["second_addr"],
                                          "port": agent.port, "opts": split_options(params["second_opts"]),
                                          "backlog": CONNECTIONS})
            record_steps(record, steps, STEPS)
            notes = ["clients connect to {} port {}".format(agent.target[1], agent.port)]
            if all(steps.get(step) == OK for step in ("setsockopt", "bind", "listen")):
                record["accepted_by"], more = accepted_by(agent, prober, record)
                notes += more
                record["after_close"], more = after_close(agent, prober)
                notes += more
            record["detail"] = "; ".join(notes)
            record["outcome"] = first_failure(record, STEPS, STEP_VALUES)
    finally:
        agent.close()
        if second_open:
            with recorded(record):  # a prober that died here fails the case too
                prober.close_second()
    return record
