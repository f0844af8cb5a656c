"""hijack: can a second program silently take over the connections of a listener, or a UDP port's datagrams?
(seeds 001 and 003)

TCP (proto tcp): a first socket LISTENs on a fresh port in the agent, and its LISTEN state is witnessed in the OS
table. A second socket, in a prober process of the same user or of another user, sets its options, binds the same
port (every option pair, every address pair of the family) and listens there; it stays open in the prober while
CONNECTIONS clients connect from the agent, and each connection is counted where it is accepted: accepted_by is
`first`, `second`, `both` (the count in `split`, first/second) or `refused`. Then the first listener closes and one
more client shows who takes over (after_close). Wine's test_reuseaddr (SOURCES.md, source A) is this experiment on
Windows, one connection at a time.

The clients connect where a client of the first listener would: its own address, or on loopback when it is the
wildcard. When the first is the wildcard and the second a specific address, they connect to that address: seed
003's case of a client of the wildcard service that the more specific bind would intercept.

UDP (proto udp): the first socket is bound (witnessed BOUND), the second binds the same port in the prober and
stays bound there. DATAGRAMS senders in the agent, each a socket of its own (so each datagram has its own source
port, as many clients would: a kernel that spreads a port's datagrams over a group by the 4-tuple's hash shows
`both`), send one datagram each to the address above; received_by says who received them (`first`, `second`,
`both` with the count in `split`, `refused`: every sender was told no socket has the port, by the ICMP port
unreachable its connected socket reports; `none`). Where one socket is the wildcard and the other a specific
address, as many datagrams go to an address of the family that only the wildcard covers (dual: the other of
127.0.0.1 and ::1; inet: 127.0.0.2 where the host has it; inet6 has no second loopback address): wildcard_only,
split in wildcard_only_split. Then the first closes and as many datagrams again go to the first address:
after_close is `second` if the second received them, `refused` or `none`.

A datagram not received within DELIVERY_DEADLINE is recorded as not received (the detail counts them): on loopback
a datagram is queued on the receiving socket when it is sent, or dropped at once when no socket has the port (the
sender is then told) or the receiver's buffer is full; DATAGRAMS small datagrams to otherwise idle sockets fill no
buffer, so loss is not what a missing one stands for: no socket took it. The waits are polls bounded by the
deadline, never fixed sleeps.
"""
import itertools
import os
import socket

from labs import bind_matrix, endpoints
from labs.bind_matrix import ADDRESSES, option_sets
from labs.outcomes import Unsupported, Unwitnessed, first_failure, record_steps, recorded
from labs.polling import poll
from labs.prober import accept_pending, receive_pending
from labs.sockopts import error_name
from labs.vocabulary import OK, UNSUPPORTED, join_states, split_options
from labs.witness import BY_OWN_SOCKET, witnessed_by

PARAMETERS = ("family", "first_opts", "second_opts", "first_addr", "second_addr", "prober", "proto")
# Every case before UDP was a TCP one: its id stays without the protocol (labs.case_id).
ID_DEFAULT = ("proto", "tcp")
PROTOS = ("tcp", "udp")
PROBERS = ("other_process", "other_user")
AXES = {
    "family": tuple(ADDRESSES),
    "first_addr": ADDRESSES["dual"],
    "second_addr": ADDRESSES["dual"],
    "prober": PROBERS,
    "proto": PROTOS,
    # first_opts / second_opts: any vocabulary.join_options() spelling
}
# The second socket's steps; then (tcp) who accepted the clients' connections, (udp) who received the datagrams
# sent to the first address and to an address only the wildcard covers; then who took them after the first closed.
STEPS = ("setsockopt", "bind", "listen", "accepted_by", "received_by", "wildcard_only", "after_close")
# `none`: connect() succeeded (or the datagram was sent), but neither socket took it within the deadline (detail).
WHO = ("first", "second", "both", "refused", "none")
STEP_VALUES = {"accepted_by": WHO, "received_by": WHO, "wildcard_only": WHO,
               "after_close": ("second", "refused", "none")}
# "10/6": of CONNECTIONS connections (DATAGRAMS datagrams), accepted (received) by the first / by the second socket
MEASURES = ("split", "wildcard_only_split")
TUNABLE = {}

CONNECTIONS = 16  # enough that a kernel spreading connections over both listeners shows `both` (1 - 2**-15)
DATAGRAMS = 16  # as many, for the same reason
STATE_DEADLINE = 2.0  # seconds for LISTEN (BOUND) to show in the OS table
ACCEPT_DEADLINE = 2.0  # seconds for every connected client's connection to be accepted by one of the listeners
DELIVERY_DEADLINE = 2.0  # seconds for every datagram sent to be received (or refused)
# A connect() that is refused comes back at once on Unix; Windows retries a refused SYN for about a second first.
CONNECT_DEADLINE = 5.0
# A loopback address besides 127.0.0.1 that only an IPv4 wildcard socket covers, where the host has it (Linux and
# Windows route all of 127.0.0.0/8 to loopback; BSD and macOS configure 127.0.0.1 alone).
OTHER_INET_LOOPBACK = "127.0.0.2"


class Context(bind_matrix.Context):
    """bind_matrix's (option constants, the witness, the prober processes), and whether this host has
    OTHER_INET_LOOPBACK."""

    def __init__(self, host):
        bind_matrix.Context.__init__(self, host)
        self.other_inet_loopback = local_address(socket.AF_INET, OTHER_INET_LOOPBACK)


def local_address(family, host):
    """Whether `host` is an address of this machine (a UDP socket can bind it)."""
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((host, 0))
        return True
    except OSError:
        return False


def cases(host):
    """Every option pair the host knows, every address pair of each family, from each prober, TCP then UDP."""
    opts = option_sets(host["options"])
    for proto, (family, addresses) in itertools.product(PROTOS, ADDRESSES.items()):
        for (first_opts, second_opts), (first_addr, second_addr), prober in itertools.product(
                itertools.product(opts, repeat=2), itertools.product(addresses, repeat=2), PROBERS):
            yield dict(zip(PARAMETERS, (family, first_opts, second_opts, first_addr, second_addr, prober, proto)))


def client_address(params):
    """(socket family, host) the clients connect (send) to: see the module's docstring."""
    first, second = params["first_addr"], params["second_addr"]
    return endpoints.peer_of(params["family"], second if first == "wildcard" else first)


def wildcard_only_address(context, params):
    """(socket family, host) of a loopback address that the wildcard one of the two sockets covers and the other,
    specific one does not; None where both or neither are the wildcard, or the family has no such address."""
    addresses = {params["first_addr"], params["second_addr"]}
    if "wildcard" not in addresses or len(addresses) != 2:
        return None
    specific = (addresses - {"wildcard"}).pop()
    family = params["family"]
    if family == "dual":
        return ("inet6", endpoints.ADDRESS["inet6"]["loopback"]) if specific == "v4mapped" else (
            "inet", endpoints.ADDRESS["inet"]["loopback"])
    if family == "inet" and context.other_inet_loopback:
        return "inet", OTHER_INET_LOOPBACK
    return None


def listen(sock):
    """The first socket's listen(): a function of its own, so a test can leave the socket bound only."""
    sock.listen(CONNECTIONS)


def who(first, second):
    """accepted_by (received_by) for the sets of connections (datagrams) each socket took."""
    if first and second:
        return "both"
    return "first" if first else "second" if second else "none"


class Agent:
    """One case's sockets in the agent: the first socket, the clients or senders; close() resets whatever is open."""

    def __init__(self, context, params):
        self.options, self.params = context.options, params
        self.proto = params["proto"]
        self.first, self.clients = None, []
        self.port = None
        self.target = client_address(params)

    def open_first(self):
        params = self.params
        try:
            self.first = endpoints.new_socket(self.options, self.proto, params["family"],
                                              split_options(params["first_opts"]))
        except OSError as exc:
            raise Unsupported("first socket: {}".format(error_name(exc)[0])) from None
        self.port = endpoints.fresh_port(self.options, self.proto)
        try:
            self.first.bind(endpoints.sockaddr(params["family"], params["first_addr"], self.port))
        except OSError as exc:
            raise Unsupported("first socket bind: {}".format(error_name(exc)[0])) from None
        if self.proto == "tcp":
            listen(self.first)
        self.first.setblocking(False)  # accept_pending / receive_pending take what is pending now, never wait

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

    def send(self, target, count):
        """`count` senders, each its own connected UDP socket, send one datagram each to `target` (socket family,
        host) on the case's port; (the payloads sent, {payload: its sender}, the first failure's name or None)."""
        family, host = target
        tag = os.urandom(6).hex()  # the datagrams of this round only: nothing else sent to the port counts
        senders = {}
        for number in range(count):
            sender = socket.socket(endpoints.SOCKET_FAMILY[family], socket.SOCK_DGRAM)
            self.clients.append(sender)
            payload = "{} {}".format(tag, number)
            try:
                sender.connect((host, self.port))
                sender.send(payload.encode())
            except OSError as exc:
                return senders, error_name(exc)[0]
            sender.setblocking(False)
            senders[payload] = sender
        return senders, None

    def received(self, prober, senders):
        """Polls both sockets (and the senders, for a refusal) until each datagram of `senders` was received or
        refused, or DELIVERY_DEADLINE passes: (payloads the first received, the second received, refused)."""
        by_first, by_second, refused = set(), set(), set()

        def read():
            if self.first is not None:
                by_first.update(receive_pending(self.first))
            by_second.update(prober.received())
            refused.update(payload for payload, sender in senders.items() if payload not in refused
                           and was_refused(sender))
            return by_first | by_second | refused

        poll(read, lambda seen: set(senders) <= seen, DELIVERY_DEADLINE)
        wanted = set(senders)
        return by_first & wanted, by_second & wanted, refused & wanted - by_first - by_second

    def close_first(self):
        """The first socket goes (a listener's pending connections reset first)."""
        if self.proto == "tcp":
            accept_pending(self.options, self.first)
        self.first.close()
        self.first = None

    def close(self):
        for sock in self.clients + [self.first]:
            if sock is None:
                continue
            if sock.type == socket.SOCK_STREAM:
                self.options.abort(sock)
            else:
                sock.close()
        self.first, self.clients = None, []


def was_refused(sender):
    """Whether a connected UDP socket was told that no socket has the port it sent to: the ICMP port unreachable
    is reported on its next receive (ECONNREFUSED; Windows: WSAECONNRESET)."""
    try:
        sender.recv(1)
    except (ConnectionRefusedError, ConnectionResetError):
        return True
    except BlockingIOError:
        return False
    return False


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


def received_by(agent, prober, target, split, record, what):
    """DATAGRAMS datagrams to `target`; who received them (the counts into record[split] unless None), and what the
    detail must say (`what` names the round)."""
    senders, failure = agent.send(target, DATAGRAMS)
    notes = ["{}: to {} port {}".format(what, target[1], agent.port)]
    if failure is not None:
        notes.append("{}: send {} of {}: {}".format(what, len(senders) + 1, DATAGRAMS, failure))
        if not senders:
            return failure, notes
    by_first, by_second, refused = agent.received(prober, senders)
    if split:
        record[split] = "{}/{}".format(len(by_first), len(by_second))
    lost = len(senders) - len(by_first) - len(by_second) - len(refused)
    if refused and (by_first or by_second):
        notes.append("{}: {} of {} datagrams refused".format(what, len(refused), len(senders)))
    if lost:
        notes.append("{}: {} of {} datagrams received by neither socket within {}s".format(
            what, lost, len(senders), DELIVERY_DEADLINE))
    if not (by_first or by_second) and len(refused) == len(senders):
        return "refused", notes
    return who(by_first, by_second), notes


def after_close(agent, prober):
    """The first socket closes; one more client connects (DATAGRAMS more datagrams are sent): who takes it now,
    and what the detail must say."""
    agent.close_first()
    if agent.proto == "udp":  # the first is closed: only the second can receive them
        taken, notes = received_by(agent, prober, agent.target, None, {}, "after close")
        return taken, notes[1:]
    ports, failure = agent.connect(1)
    if failure is not None:
        return ("refused" if failure == "ECONNREFUSED" else failure), []
    _, by_second = agent.accepted(prober, ports)  # the first is closed: only the second can accept it
    if by_second:
        return "second", []
    return "none", ["after close: the connection was accepted by no listener within {}s".format(ACCEPT_DEADLINE)]


def taken(context, agent, prober, record):
    """Who took the clients' connections (datagrams), before and after the first closed, into the record's steps;
    the detail's notes after the first."""
    if agent.proto == "tcp":
        record["accepted_by"], notes = accepted_by(agent, prober, record)
    else:
        record["received_by"], notes = received_by(agent, prober, agent.target, "split", record, "datagrams")
        notes = notes[1:]  # the detail's first note says where they went
        other = wildcard_only_address(context, agent.params)
        if other is not None:
            record["wildcard_only"], more = received_by(agent, prober, other, "wildcard_only_split", record,
                                                        "wildcard only")
            notes += more
    record["after_close"], more = after_close(agent, prober)
    return notes + more


def run_case(context, params):
    """Run one case; returns the result fields of DESIGN.md (outcome, witness, detail, errno, steps, measures)."""
    record = {"outcome": OK, "witness": "", "detail": "", "errno": None}
    prober = context.probers.get(params["prober"])
    if prober is None:
        record.update(outcome=UNSUPPORTED, detail=context.no_prober[params["prober"]])
        return record
    agent = Agent(context, params)
    state, opened = ("LISTEN", ("setsockopt", "bind", "listen")) if agent.proto == "tcp" else (
        "BOUND", ("setsockopt", "bind"))
    second_open = False
    try:
        with recorded(record):
            agent.open_first()
            if agent.proto == "udp" and params["family"] != "inet" and not context.witness.sees_udp6:
                # the table lists no IPv6 or dual-stack UDP socket here (gVisor): the socket's own word, as in
                # bind_matrix, rather than a table that cannot show it polled to its deadline
                state = witnessed_by(state, BY_OWN_SOCKET)
                record["witness"] = state if agent.first.getsockname()[1] == agent.port else ""
            else:
                record["witness"] = poll(lambda: join_states(context.witness.states(agent.proto, agent.port)),
                                         lambda seen: seen == state, STATE_DEADLINE)
            if record["witness"] != state:
                raise Unwitnessed("first {} not witnessed on port {}".format(state, agent.port))
            second_open = True
            steps = prober.listen_second({"proto": agent.proto, "family": params["family"],
                                          "addr": params["second_addr"], "port": agent.port,
                                          "opts": split_options(params["second_opts"]), "backlog": CONNECTIONS})
            record_steps(record, steps, STEPS)
            notes = ["{} to {} port {}".format("clients connect" if agent.proto == "tcp" else "datagrams go",
                                               agent.target[1], agent.port)]
            if all(steps.get(step) == OK for step in opened):
                notes += taken(context, agent, prober, record)
            record["detail"] = "; ".join(notes)
            record["outcome"] = first_failure(record, STEPS, STEP_VALUES)
    finally:
        agent.close()
        if second_open:
            with recorded(record):  # a prober that died here fails the case too
                prober.close_second()
    return record
