"""bind_matrix: bind() and listen() on a port that an earlier socket holds, in every state and option pair.

Seed 004's experiment generalised: an earlier ("first") socket is put into a state on a fresh port, the state is
witnessed in the OS connection table, then a second socket with its own options tries bind() (and listen() for
TCP) on the same port, from another process, the same process, or another user.

The second socket is of the first one's family, or of another (`second_family`): 0.0.0.0 beside [::] (V6ONLY 0 or
1), 127.0.0.1 beside ::1 or ::ffff:127.0.0.1, a wildcard beside a loopback address, in both orders. second_family is
empty when the families are the same: every case that existed before it, whose case id it leaves as it was
(labs.case_id, ID_DEFAULT). The earlier socket's port is fresh in both families (endpoints.fresh_port's probe on the
dual-stack wildcard conflicts with a socket of either), and the witness reads both families' tables on it.

Cases run in batches of K (batch_size: what the host's descriptor limit and ephemeral port range allow), spread
over worker processes by the agent (labs/workers.py; the output keeps the plan's order): the
earlier sockets of all K are driven into their states, each on its own fresh port, then witnessed together (one
witness.read per round for the whole batch: one read of each table where the OS gives only whole tables), then
each prober gets the second-socket attempts of its cases in one message, then the K are closed. A case's result
does not depend on its batch: its sockets are on a port no other case uses (so no other case's socket, SO_REUSEPORT
group or TIME_WAIT is on it), and the witness confirms that nothing but the case's own sockets is there.
"""
import itertools
import socket

from labs import endpoints
from labs.connection import STATE_DEADLINE, OpenSockets, Peer, expect_eof
from labs.outcomes import FAILURES, Unsupported, Unwitnessed, record_steps, recorded
from labs.prober import ProberProcess, SameProcess, unprivileged_user
from labs.sockopts import Options, error_name
from labs.vocabulary import FULL_FIN_WAIT_2, INCONCLUSIVE, OK, UNSUPPORTED, join_options, join_states, split_options
from labs.witness import BY_OWN_SOCKET, BY_PEER, End, Watch, Witness, watch, witnessed_by

PARAMETERS = ("proto", "family", "state", "first_opts", "second_opts", "first_addr", "second_addr", "prober",
              "second_family")
SAME_FAMILY = ""  # second_family of a case whose second socket is of the first one's family
ID_DEFAULT = ("second_family", SAME_FAMILY)

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
    "second_family": (SAME_FAMILY,) + tuple(ADDRESSES),
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
    """The table of cases for a host: every axis value, every pair of option sets the host knows; the second socket
    of the first one's family (second_family empty), then of each other family, every address of each."""
    opts = option_sets(host["options"])
    for proto, family in itertools.product(STATES, ADDRESSES):
        for second_family in (SAME_FAMILY,) + tuple(other for other in ADDRESSES if other != family):
            second_addresses = ADDRESSES[second_family or family]
            for state, (first_opts, second_opts), first_addr, second_addr, prober in itertools.product(
                    STATES[proto], itertools.product(opts, repeat=2), ADDRESSES[family], second_addresses, PROBERS):
                yield dict(zip(PARAMETERS, (proto, family, state, first_opts, second_opts, first_addr, second_addr,
                                            prober, second_family)))


def second_family(params):
    """The family of a case's second socket."""
    return params["second_family"] or params["family"]


# What one case holds while its batch runs: descriptors (listener, client and accepted end; UDP: the socket and its
# peer) and ports of the ephemeral range (its fresh port, and its client's).
CASE_DESCRIPTORS = 3
CASE_PORTS = 2
# Past this many cases a batch saves nothing measurable (a table read, a prober message, is shared by all of them)
MAX_BATCH = 256


def descriptor_limit():
    """How many descriptors this process may open (RLIMIT_NOFILE's soft limit); where there is no such limit on
    sockets (Windows), MAX_BATCH's worth."""
    try:
        import resource
    except ImportError:
        return 2 * MAX_BATCH * CASE_DESCRIPTORS
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return 1 << 20 if soft == resource.RLIM_INFINITY else soft


def ephemeral_ports(host):
    """How many ports the host's ephemeral range holds (labs.endpoints.ephemeral_range)."""
    low, high = endpoints.ephemeral_range(host)
    return high - low + 1


def batch_size(host, workers=1):
    """K, the cases of a batch on this host when `workers` processes run batches at once: at most MAX_BATCH; their
    descriptors at most half of what a process may open (the rest: probers' pipes, the witness, Python itself); the
    ports of all the workers' batches at most an eighth of the ephemeral range (the rest: the host's own
    connections, and the TIME_WAITs earlier batches left, each holding its port for the TIME_WAIT period)."""
    return max(1, min(MAX_BATCH, descriptor_limit() // 2 // CASE_DESCRIPTORS,
                      ephemeral_ports(host) // 8 // CASE_PORTS // workers))


class Context:
    """What the cases of one run share: option constants, the witness (the reader the host facts name), the
    probers, why a prober is missing (`no_prober`), and the families the host can open sockets of."""

    def __init__(self, host):
        self.options = Options(host["os_family"])
        self.witness = Witness(host["os_family"], host.get("witness"))
        self.probers = {"other_process": ProberProcess(), "same_process": SameProcess(self.options)}
        self.no_prober = {}
        user = unprivileged_user() if host["admin"] else None
        if user:
            self.probers["other_user"] = ProberProcess(user=user)
        elif host["admin"]:  # Windows (no uids to drop to), or a POSIX host without nobody / nfsnobody
            self.no_prober["other_user"] = ("no other user: the agent runs as root or administrator, but there is no "
                                            "unprivileged account to drop to")
        else:
            self.no_prober["other_user"] = "no other user: the agent does not run as root or administrator"
        self.families = {family for family in ADDRESSES if endpoints.can_open(self.options, family)}

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
        self.closed_ends = []  # the case's sockets on its port that it closed, as the witness finds them
        self.way = witness_way(context.witness, params)
        self.peer = None  # the client, where it witnesses TIME_WAIT (connection.Peer)

    def bind(self):
        params = self.params
        try:
            sock = endpoints.new_socket(self.options, params["proto"], params["family"],
                                        split_options(params["first_opts"]))
        except OSError as exc:
            raise Unsupported("first socket setsockopt: {}".format(error_name(exc)[0])) from None
        self.first = self.track(sock)
        try:
            self.port = endpoints.bind_fresh_port(self.options, sock, params["proto"], params["family"],
                                                  params["first_addr"])
        except OSError as exc:
            name = error_name(exc)[0]
            if name == "EADDRINUSE":  # each fresh port was taken before the bind: the case was never built
                raise Unwitnessed("first socket bind: EADDRINUSE on {} fresh ports in a row (each taken between "
                                  "its probe and the bind)".format(endpoints.FRESH_PORT_TRIES)) from None
            raise Unsupported("first socket bind: {}".format(name)) from None

    def connect(self):
        """A client on loopback, and the server's accepted end of its connection. The client binds a fresh port
        before it connects: a port connect() picks may be another case's (gVisor's connect() takes ports that bound
        sockets hold), which would put a stranger on that case's port after its witness."""
        client_family, host = endpoints.peer_of(self.params["family"], self.params["first_addr"])
        self.first.listen(8)
        self.client = self.track(socket.socket(endpoints.SOCKET_FAMILY[client_family], socket.SOCK_STREAM))
        endpoints.bind_fresh_port(self.options, self.client, "tcp", client_family, "wildcard")
        self.client.connect((host, self.port))
        self.server = self.track(self.first.accept()[0])

    def close_listener(self):
        self.close_one(self.first)

    def close_server_first(self):
        """The server side sends FIN; once the client's recv() sees it, the client ACKs it: FIN_WAIT_2."""
        self.closed_ends.append(End(self.server).closed())
        self.close_one(self.server)
        expect_eof(self.client)
        self.options.ack_now(self.client)

    def own_word(self):
        """What the earlier UDP socket says it is: BOUND (getsockname names the port, getpeername: not connected)
        or ESTABLISHED (connected), or "" if it is not on the port."""
        if self.first.getsockname()[1] != self.port:
            return ""
        try:
            self.first.getpeername()
        except OSError:
            return "BOUND"
        return "ESTABLISHED"

    def watch(self):
        """What the witness reads for this case: its port, and the sockets it made there (the first socket unless
        closed: a closed listener must be gone; the server's accepted end, open or closed)."""
        ends = [End(sock) for sock in (self.first, self.server) if sock in self.open_sockets]
        return Watch(self.params["proto"], self.port, ends + self.closed_ends)


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


def drive_time_wait_by_peer(earlier):
    """TIME_WAIT where the table cannot list it (a closed socket's): the client sends its FIN with
    shutdown(SHUT_WR) and keeps its descriptor, so its own state can show when the server ACKed that FIN
    (connection.Peer)."""
    drive_fin_wait_2(earlier)
    earlier.peer = Peer(earlier.options, earlier.client)
    earlier.peer.send_fin()


def drive_udp_connected(earlier):
    earlier.bind()
    peer_family, host = endpoints.peer_of(earlier.params["family"], earlier.params["first_addr"])
    peer = earlier.track(socket.socket(endpoints.SOCKET_FAMILY[peer_family], socket.SOCK_DGRAM))
    # a fresh port: bind(port 0) may hand out a port that another case of the batch holds in the other family
    peer.bind((host, endpoints.fresh_port(earlier.options, "udp")))
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


# How a state is witnessed where the host's table cannot list it (witness_way): the table for every other case.
BY_TABLE = "table"


def witness_way(witness, params):
    """How the case's state can be witnessed on this host: BY_TABLE; BY_PEER (TIME_WAIT, where the table lists no
    closed socket's TIME_WAIT but the peer's word is exact: Witness.time_wait_by_peer); BY_OWN_SOCKET (IPv6 and
    dual-stack UDP, where the table lists none); or, where it cannot be, the reason (text that is none of those)."""
    state, udp6 = params["state"], params["proto"] == "udp" and params["family"] != "inet"
    if udp6 and not witness.sees_udp6:
        return BY_OWN_SOCKET
    if state == "TIME_WAIT" and not witness.sees_time_wait:
        return BY_PEER if witness.time_wait_by_peer else "TIME_WAIT cannot be witnessed here: " + witness.blind_spot
    if state == "FIN_WAIT_2" and not witness.sees_closed:
        return ("FIN_WAIT_2 cannot be witnessed here: {}; the server end was closed, and the client's CLOSE_WAIT "
                "shows the server's FIN was sent, not that the client's ACK arrived (FIN_WAIT_1 or "
                "FIN_WAIT_2)".format(witness.blind_spot))
    return BY_TABLE


WAYS = (BY_TABLE, BY_PEER, BY_OWN_SOCKET)
# Linux keeps a closed socket's FIN_WAIT_2 as a full socket when net.ipv4.tcp_fin_timeout exceeds 60 s, and when its
# last ACK is handled while the socket is still locked (the likely cause of the one such case a whole-matrix run met)
UNLIKE_FIN_WAIT_2 = (": the closed server end is in FIN_WAIT_2 as a full socket, not as the timewait entry an "
                     "orphan's FIN_WAIT_2 usually becomes, and bind() treats the two apart (the owner check), so this "
                     "is not the case's state")


def wanted(earlier):
    """The witness spelling that witnesses the case's state, the way its host can show it."""
    state = earlier.params["state"]
    return state if earlier.way == BY_TABLE else witnessed_by(state, earlier.way)


def seen(context, earlier, reading):
    """The witness spelling of what a reading showed on the case's port. Where the table cannot list a bound-only
    TCP socket, an empty table plus getsockname() is the witness of BOUND. Where the case's state is witnessed by
    its peer or its own socket (witness_way), an empty table plus their word is."""
    states = join_states(reading.states)
    if states:
        return states
    if (earlier.params["proto"] == "tcp" and earlier.params["state"] == "BOUND"
            and not context.witness.sees_bound_tcp and earlier.first.getsockname()[1] == earlier.port):
        return "BOUND"
    if earlier.way == BY_PEER and earlier.peer.fin_acked():
        return witnessed_by("TIME_WAIT", BY_PEER)
    if earlier.way == BY_OWN_SOCKET:
        said = earlier.own_word()
        return witnessed_by(said, BY_OWN_SOCKET) if said else ""
    return states


def witness(context, driven, records):
    """Reads the ports of the cases `driven` ([(index, Earlier)]) until each shows its case's state and nothing
    else, or the deadline passes; puts the witness into each record. Returns the (index, Earlier) witnessed; the
    others end inconclusive (or error, if the table could not be read)."""
    watches = [earlier.watch() for _, earlier in driven]

    def settled(position, reading):
        earlier = driven[position][1]
        return seen(context, earlier, reading) == wanted(earlier) and not reading.strangers

    try:
        readings = watch(context.witness, watches, settled, STATE_DEADLINE)
    except FAILURES as exc:
        end_all(records, [index for index, _ in driven], exc)
        return []
    witnessed = []
    for (index, earlier), reading in zip(driven, readings):
        record = records[index]
        record["witness"] = seen(context, earlier, reading)
        with recorded(record):
            shown = record["witness"] == wanted(earlier)
            if reading.strangers:  # what the others are in shows in the witness; it may hide the case's own state
                raise Unwitnessed("port {} holds {} socket(s) besides the case's own{}".format(
                    earlier.port, reading.strangers, "" if shown else ", and the case's state did not show"))
            if not shown:
                raise Unwitnessed("state not witnessed on port {}{}".format(
                    earlier.port, UNLIKE_FIN_WAIT_2 if FULL_FIN_WAIT_2 in reading.states else ""))
            witnessed.append((index, earlier))
    return witnessed


def end_all(records, indexes, exc):
    """Ends each of these cases with what `exc` (one failure shared by a batch) gives it (labs.outcomes)."""
    for index in indexes:
        with recorded(records[index]):
            raise exc


def second_request(earlier):
    """What the prober is asked for a case: the second socket's protocol, family, address, options, and the port."""
    params = earlier.params
    return {"proto": params["proto"], "family": second_family(params), "addr": params["second_addr"],
            "port": earlier.port, "opts": split_options(params["second_opts"])}


def missing(context, params):
    """Why the host cannot build this case (a prober it lacks, a family it cannot open sockets of), or None."""
    if params["prober"] not in context.probers:
        return context.no_prober[params["prober"]]
    if params["second_family"] and params["second_family"] not in context.families:
        return "second socket: no {} sockets on this host".format(params["second_family"])
    return None


def try_seconds(context, witnessed, records):
    """The second socket of each witnessed case, one message per prober: the probers in other processes are sent
    theirs first, so they work while the agent tries the same-process ones."""
    groups = {}
    for index, earlier in witnessed:
        groups.setdefault(earlier.params["prober"], []).append((index, earlier))
    started = []
    for name in sorted(groups, key=lambda name: context.probers[name].in_agent):
        group = groups[name]
        requests = [second_request(earlier) for _, earlier in group]
        try:
            started.append((group, context.probers[name].start_batch(requests)))
        except FAILURES as exc:
            end_all(records, [index for index, _ in group], exc)
    for group, answers in started:
        try:
            steps = answers()
        except FAILURES as exc:
            end_all(records, [index for index, _ in group], exc)
            continue
        for (index, _), answer in zip(group, steps):
            record_steps(records[index], answer, STEPS)


def run_batch(context, batch):
    """Runs a batch of cases together (the module's docstring); returns their result fields (DESIGN.md: outcome,
    witness, detail, errno, steps), in order."""
    records = [{"outcome": OK, "witness": "", "detail": "", "errno": None} for _ in batch]
    opened, driven = [], []
    try:
        for index, params in enumerate(batch):
            reason = missing(context, params)
            if reason:
                records[index].update(outcome=UNSUPPORTED, detail=reason)
                continue
            earlier = Earlier(context, params)
            if earlier.way not in WAYS:  # a state this host's table cannot show, nor anything else exactly
                records[index].update(outcome=INCONCLUSIVE, detail=earlier.way)
                continue
            opened.append(earlier)
            with recorded(records[index]):
                driver = drive_time_wait_by_peer if earlier.way == BY_PEER else DRIVERS[params["proto"],
                                                                                          params["state"]]
                driver(earlier)
                driven.append((index, earlier))
        try_seconds(context, witness(context, driven, records), records)
    finally:
        for earlier in opened:
            earlier.close()
    return records


def run_case(context, params):
    """Run one case (a batch of one); returns the result fields of DESIGN.md (outcome, witness, detail, errno,
    steps)."""
    return run_batch(context, [params])[0]
