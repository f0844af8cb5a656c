"""listener_drain: what happens to the connections queued on a SO_REUSEPORT listener that closes (a server reload).

`listeners` listeners bind one fresh port with the same options (SO_REUSEPORT, or SO_REUSEPORT_LB where the host has
it) and listen; the witness shows that many LISTEN entries on the port. Clients connect on loopback, in rounds, until
each listener's accept queue holds QUEUED connections or MAX_CLIENTS have connected; nobody accepts. How many each
listener holds is read from the OS (Options.accept_queue: Linux's TCP_INFO of a listener, FreeBSD's
SO_LISTENQLEN), polled until the queues hold every client that connected: a host that cannot say is
`inconclusive`, since the count is the precondition. `split` is each listener's queue, first listener first, and
`spread` says how the connections were spread before the close: `all` listeners held some, `one` held them all, or
`some`.

Then the first listener (the one bound first: the old server of a reload) closes without accepting. The others
accept, and the clients are read, until every client is accounted for or DRAIN_DEADLINE passes: a connection the
others accept beyond what they held before was `moved` to them; one whose client reads a reset (ECONNRESET), or an
end of file, was `reset`; one that neither happened to within the deadline is `lost` (its client waits on a
connection nobody will serve). drain is `moved`, `reset`, `mixed` (some of each, none lost), `lost` (any lost) or
`empty` (the first listener held none). The counts are measures (queued, moved, reset, lost), and so is Linux's
net.ipv4.tcp_migrate_req (read from /proc/sys when the case runs; empty elsewhere), which says whether Linux moves
such connections to another listener of the group (Documentation/networking/ip-sysctl.rst).
"""
import itertools
import socket

from labs import endpoints
from labs.bind_matrix import option_sets
from labs.connection import STATE_DEADLINE
from labs.outcomes import Unsupported, Unwitnessed, first_failure, recorded
from labs.polling import poll
from labs.sockopts import Options, error_name
from labs.vocabulary import OK, split_options
from labs.witness import Witness

PARAMETERS = ("family", "addr", "opts", "listeners")
FAMILIES = ("inet", "inet6")
ADDRESSES = ("wildcard", "loopback")
SHARING = ("SO_REUSEPORT", "SO_REUSEPORT_LB")  # an option set shares a listening port if it holds one of these
AXES = {"family": FAMILIES, "addr": ADDRESSES}  # opts: an option set with one of SHARING; listeners: TUNABLE
# The later listeners' steps, then how the connections were spread and what became of the closed listener's.
STEPS = ("setsockopt", "bind", "listen", "spread", "drain")
STEP_VALUES = {"spread": ("all", "one", "some"), "drain": ("moved", "reset", "mixed", "lost", "empty")}
MEASURES = ("split", "connected", "queued", "moved", "reset", "lost", "tcp_migrate_req")
DEFAULT_LISTENERS = 2
TUNABLE = {"listeners": DEFAULT_LISTENERS}

QUEUED = 4  # connections each listener's queue should hold before the close
MAX_CLIENTS = 32  # per listener: a host that sends every connection to one listener stops here
DRAIN_DEADLINE = 2.0  # seconds for each connection of the closed listener to be accepted elsewhere or reset
MIGRATE_REQ = "/proc/sys/net/ipv4/tcp_migrate_req"


def cases(host):
    """Each family and address, with each option set of the host's that shares a listening port."""
    sharing = [opts for opts in option_sets([name for name in host["options"] if name != "SO_EXCLUSIVEADDRUSE"])
               if set(split_options(opts)) & set(SHARING)]
    for family, addr, opts in itertools.product(FAMILIES, ADDRESSES, sharing):
        yield {"family": family, "addr": addr, "opts": opts, "listeners": str(DEFAULT_LISTENERS)}


class Context:
    """Option constants and the witness."""

    def __init__(self, host):
        self.options = Options(host["os_family"])
        self.witness = Witness(host["os_family"], host.get("witness"))

    def close(self):
        self.witness.close()


def migrate_req():
    """net.ipv4.tcp_migrate_req as it is now ("" where there is no such sysctl)."""
    try:
        with open(MIGRATE_REQ) as stream:
            return stream.read().strip()
    except OSError:
        return ""


class Drain:
    """One case's sockets: the listeners, the clients, what the listeners accepted; close() resets them all."""

    def __init__(self, context, params):
        self.options, self.params = context.options, params
        self.count = int(params["listeners"])
        self.listeners, self.clients, self.accepted = [], [], {}
        self.port = None
        self.target = endpoints.peer_of(params["family"], params["addr"])

    def listener(self):
        """A new listener on the case's port (its first: a fresh port); (steps, socket or None)."""
        params, steps, step = self.params, {}, "setsockopt"
        try:
            sock = endpoints.new_socket(self.options, "tcp", params["family"], split_options(params["opts"]))
        except OSError as exc:
            steps[step], steps["errno"] = error_name(exc)
            return steps, None
        try:
            steps[step] = OK
            if self.port is None:
                self.port = endpoints.fresh_port(self.options, "tcp")
            step = "bind"
            sock.bind(endpoints.sockaddr(params["family"], params["addr"], self.port))
            steps[step] = OK
            step = "listen"
            sock.listen(MAX_CLIENTS * self.count)
            steps[step] = OK
        except OSError as exc:
            steps[step], steps["errno"] = error_name(exc)
            sock.close()
            return steps, None
        sock.setblocking(False)
        self.listeners.append(sock)
        return steps, sock

    def connect(self, count):
        """`count` more clients connect; the first failure propagates (OSError: the case's error)."""
        family, host = self.target
        for _ in range(count):
            client = socket.socket(endpoints.SOCKET_FAMILY[family], socket.SOCK_STREAM)
            self.clients.append(client)
            client.settimeout(STATE_DEADLINE)
            client.connect((host, self.port))
            client.setblocking(False)

    def queues(self):
        """How many connections each listener holds ready for accept() now."""
        return [self.options.accept_queue(sock) for sock in self.listeners]

    def fill(self):
        """Clients connect in rounds until each listener holds QUEUED or MAX_CLIENTS per listener connected; the
        queues as last read, once they hold every client (Unwitnessed if they do not within STATE_DEADLINE)."""
        while True:
            self.connect(QUEUED * self.count)
            queues = poll(self.queues, lambda held: sum(held) == len(self.clients), STATE_DEADLINE)
            if sum(queues) != len(self.clients):
                raise Unwitnessed("the listeners hold {} of {} connections".format("/".join(map(str, queues)),
                                                                                   len(self.clients)))
            if min(queues) >= QUEUED or len(self.clients) >= MAX_CLIENTS * self.count:
                return queues

    def take(self):
        """The remaining listeners accept what they hold (kept open, so that their clients see no reset)."""
        for listener in self.listeners[1:]:
            while True:
                try:
                    connection, peer = listener.accept()
                except BlockingIOError:
                    break
                self.accepted[peer[1]] = connection

    def ended(self):
        """{client's port: how its connection ended} of the clients not accepted elsewhere whose connection the
        other end ended: ECONNRESET (a reset), EOF (an orderly close), or another error name."""
        ends = {}
        for client in self.clients:
            port = client.getsockname()[1]
            if port in self.accepted:
                continue
            try:
                data = client.recv(1)
            except BlockingIOError:
                continue
            except OSError as exc:
                ends[port] = error_name(exc)[0]
                continue
            if data == b"":
                ends[port] = "EOF"
        return ends

    def drain(self):
        """The first listener closes; (ended: {client port: how}) once every client was accepted elsewhere or
        ended, or DRAIN_DEADLINE passed."""
        self.listeners.pop(0).close()
        self.listeners.insert(0, None)
        ends = {}

        def read():
            self.take()
            ends.update(self.ended())
            return len(self.accepted) + len(ends)

        poll(read, lambda accounted: accounted >= len(self.clients), DRAIN_DEADLINE)
        return ends

    def close(self):
        for sock in self.clients + list(self.accepted.values()) + self.listeners:
            if sock is not None:
                self.options.abort(sock)


def spread(queues):
    """How the connections were spread over the listeners before the close."""
    holding = sum(1 for queued in queues if queued)
    return "all" if holding == len(queues) else "one" if holding == 1 else "some"


def drained(queued, moved, reset, lost):
    """drain for the first listener's queued connections."""
    if not queued:
        return "empty"
    if lost:
        return "lost"
    return "moved" if moved == queued else "reset" if reset == queued else "mixed"


def measure(context, drain, record):
    """Fills the queues, closes the first listener, and records what became of its connections."""
    queues = drain.fill()
    record.update(split="/".join(map(str, queues)), connected=len(drain.clients), queued=queues[0],
                  spread=spread(queues))
    ends = drain.drain()
    moved = len(drain.accepted) - sum(queues[1:])
    lost = len(drain.clients) - len(drain.accepted) - len(ends)
    record.update(moved=moved, reset=len(ends), lost=lost, drain=drained(queues[0], moved, len(ends), lost))
    notes = ["{} listeners on port {}, clients connect to {}".format(drain.count, drain.port, drain.target[1])]
    how = sorted(set(ends.values()))
    if how:
        notes.append("ended by " + ", ".join("{} {}".format(sum(1 for end in ends.values() if end == name), name)
                                            for name in how))
    if lost:
        notes.append("{} connections neither accepted nor ended within {}s".format(lost, DRAIN_DEADLINE))
    if moved < 0:
        raise RuntimeError("the other listeners accepted fewer connections ({}) than they held before ({})".format(
            len(drain.accepted), sum(queues[1:])))
    return notes


def run_case(context, params):
    """Run one case; returns the result fields of DESIGN.md (outcome, witness, detail, errno, steps, measures)."""
    record = {"outcome": OK, "witness": "", "detail": "", "errno": None, "tcp_migrate_req": migrate_req()}
    drain = Drain(context, params)
    try:
        with recorded(record):
            steps, first = drain.listener()
            if first is None:
                failed = next(step for step in ("setsockopt", "bind", "listen") if steps.get(step) != OK)
                raise Unsupported("first listener {}: {}".format(failed, steps[failed]))
            for _ in range(drain.count - 1):
                steps, sock = drain.listener()
                if sock is None:
                    break
            record.update((step, steps[step]) for step in ("setsockopt", "bind", "listen") if step in steps)
            record["errno"] = steps.get("errno")
            if len(drain.listeners) == drain.count:
                if not context.options.sees_accept_queue:
                    raise Unwitnessed("this host does not say how many connections a listener holds queued")
                seen = poll(lambda: context.witness.states("tcp", drain.port),
                            lambda states: states.count("LISTEN") == drain.count and len(states) == drain.count,
                            STATE_DEADLINE)
                record["witness"] = "+".join(seen)
                if list(seen) != ["LISTEN"] * drain.count:
                    raise Unwitnessed("{} listeners not witnessed on port {}".format(drain.count, drain.port))
                record["detail"] = "; ".join(measure(context, drain, record))
            record["outcome"] = first_failure(record, STEPS, STEP_VALUES)
    finally:
        drain.close()
    return record

