"""runtime_defaults: what the host Python's own server helpers set, and whether their servers restart and share ports.

From seed 004: its author's socket wrapper set the same option on Windows and Linux, and restarts by a monitoring
agent then behaved differently on the two. Here the wrappers are the host Python's own - socket.create_server,
socketserver.TCPServer, http.server.HTTPServer, asyncio.start_server and loop.create_datagram_endpoint - each
called as users call it, with no reuse argument. Each case
  - reads back with getsockopt() what the helper set on the socket it made: SO_REUSEADDR, SO_REUSEPORT,
    SO_EXCLUSIVEADDRUSE (`absent` where the host has no such option) and, on IPv6 sockets, IPV6_V6ONLY, beside
    the measure v6only_default: what a fresh AF_INET6 socket has here, which a helper that leaves it alone keeps;
  - second_copy: while that server listens (a UDP endpoint: is bound), witnessed, the same helper makes a second
    server on the same port; `ok` is a port shared by accident;
  - restart (TCP only; UDP leaves no TIME_WAIT): a client connects, the server closes its end first (seed 004's
    server did), the client closes, the server is shut down; once nothing but the server end's TIME_WAIT holds
    the port, witnessed, the same helper makes a new server on that port at once.
The results are these step columns (an errno name where a step failed, its number in `detail`): `outcome` is ok
once they are all in, inconclusive when a state was not witnessed.

Servers bind their family's wildcard address, as seed 004's did. family: inet (AF_INET), inet6 (AF_INET6: the
`family` argument; TCPServer and HTTPServer take it from their class attribute address_family, here set in a
subclass, as http.server's own command line sets it), dual (create_server's dualstack_ipv6=True, where the host
has dual stack).
A socketserver is never served: the lab accepts on its socket with get_request() and closes the request with
shutdown_request(), as serve_forever() would. asyncio: every case runs in its own asyncio.new_event_loop(), closed
at its end: the platform's default loop (ProactorEventLoop on Windows since Python 3.8, a selector loop elsewhere),
named in `detail`; the reuse defaults are decided in BaseEventLoop, whichever the loop class.
"""
import socket

from labs import endpoints
from labs.connection import Peer
from labs.outcomes import Unsupported, recorded
from labs.polling import poll
from labs.sockopts import Options, error_name
from labs.vocabulary import INCONCLUSIVE, OK, UNSUPPORTED, join_states
from labs.witness import BY_OWN_SOCKET, BY_PEER, Witness, witnessed_by

PARAMETERS = ("helper", "family")

# The families each helper takes.
HELPER_FAMILIES = {
    "create_server": ("inet", "inet6", "dual"),
    "socketserver_tcp": ("inet", "inet6"),
    "http_server": ("inet", "inet6"),
    "asyncio_start_server": ("inet", "inet6"),
    "asyncio_datagram_endpoint": ("inet", "inet6"),
}
AXES = {"helper": tuple(HELPER_FAMILIES), "family": ("inet", "inet6", "dual")}

# Read-backs: SOL_SOCKET options by their labs.sockopts name, then IPV6_V6ONLY on IPv6 sockets.
SOCKET_OPTIONS = {"reuseaddr": "SO_REUSEADDR", "reuseport": "SO_REUSEPORT", "exclusiveaddruse": "SO_EXCLUSIVEADDRUSE"}
SET, UNSET, ABSENT = "set", "unset", "absent"
# In the order they run: the first server's read-backs, a second copy beside it, then its restart.
STEPS = tuple(SOCKET_OPTIONS) + ("v6only", "second_copy", "restart")
STEP_VALUES = dict({step: (SET, UNSET, ABSENT) for step in SOCKET_OPTIONS}, v6only=(SET, UNSET))
MEASURES = ("v6only_default",)
TUNABLE = {}
SERVING_STEPS = ("second_copy", "restart")

# How long a state may take to show in the OS table, and an accept() or recv() to return, before giving up.
STATE_DEADLINE = 2.0


def cases(host):
    for helper, families in HELPER_FAMILIES.items():
        for family in families:
            yield {"helper": helper, "family": family}


def flag(value):
    """A getsockopt() int as a read-back: BSDs return the option's bit, not 1, when it is set."""
    return SET if value else UNSET


class Context:
    """The option constants, the witness, and IPV6_V6ONLY of a fresh AF_INET6 socket (None without IPv6)."""

    def __init__(self, host):
        self.options = Options(host["os_family"])
        self.witness = Witness(host["os_family"])
        self.v6only_default = None
        if socket.has_ipv6:
            try:
                with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as fresh:
                    self.v6only_default = flag(fresh.getsockopt(self.options.ipproto_ipv6,
                                                                self.options.ipv6_v6only))
            except OSError:
                pass

    def close(self):
        self.witness.close()


# --- the helpers -----------------------------------------------------------------------------------------------

class Helper:
    """One helper, for one family. make(port) makes a server the way the helper does by default (OSError when it
    cannot) and returns what it made; socket_of() is that server's socket, take_connection() (TCP) takes one
    connection and closes the server's end first, shut() shuts the server down; close() ends the helper."""

    proto = "tcp"

    def __init__(self, family):
        self.family = family

    @staticmethod
    def missing(family):
        """Why this Python has no such helper for `family`, or None."""
        return None

    def address(self, port):
        return endpoints.ADDRESS[self.family]["wildcard"], port

    def close(self):
        pass


class CreateServer(Helper):
    @staticmethod
    def missing(family):
        if not hasattr(socket, "create_server"):
            return "socket.create_server: Python 3.8 or later"
        if family == "dual" and not socket.has_dualstack_ipv6():
            return "socket.has_dualstack_ipv6() is False"
        return None

    def make(self, port):
        return socket.create_server(self.address(port), family=endpoints.SOCKET_FAMILY[self.family],
                                    dualstack_ipv6=self.family == "dual")

    @staticmethod
    def socket_of(server):
        return server

    @staticmethod
    def take_connection(server):
        server.settimeout(STATE_DEADLINE)
        connection, _ = server.accept()
        connection.close()

    @staticmethod
    def shut(server):
        server.close()


class SocketServerTCP(Helper):
    """socketserver.TCPServer, or a subclass of it such as HTTPServer (server_class())."""

    def __init__(self, family):
        super().__init__(family)
        base, self.handler = self.server_class()
        # TCPServer's socket family is its class attribute address_family: an IPv6 server is a subclass.
        self.server_type = base if family == "inet" else type(base.__name__ + "6", (base,),
                                                               {"address_family": socket.AF_INET6})

    @staticmethod
    def server_class():
        import socketserver  # here, not at the top: only these cases need it in the agent
        return socketserver.TCPServer, socketserver.BaseRequestHandler

    def make(self, port):
        return self.server_type(self.address(port), self.handler)

    @staticmethod
    def socket_of(server):
        return server.socket

    @staticmethod
    def take_connection(server):
        server.socket.settimeout(STATE_DEADLINE)
        request, _ = server.get_request()
        server.shutdown_request(request)  # shutdown(SHUT_WR), close(): how serve_forever() ends a request

    @staticmethod
    def shut(server):
        server.server_close()


class HttpServer(SocketServerTCP):
    @staticmethod
    def server_class():
        import http.server
        return http.server.HTTPServer, http.server.BaseHTTPRequestHandler


class AsyncioHelper(Helper):
    """An asyncio helper: the case runs in a fresh event loop of the platform's default class, closed by close()."""

    def __init__(self, family):
        super().__init__(family)
        import asyncio
        self.asyncio = asyncio
        self.loop = asyncio.new_event_loop()

    def run(self, awaitable):
        """Runs `awaitable` on the loop to its end; RuntimeError if that takes longer than the deadline."""
        try:
            return self.loop.run_until_complete(self.asyncio.wait_for(awaitable, STATE_DEADLINE))
        except self.asyncio.TimeoutError:
            raise RuntimeError("asyncio: nothing happened within {} s".format(STATE_DEADLINE)) from None

    def close(self):
        self.loop.close()


class AsyncioStartServer(AsyncioHelper):
    def make(self, port):
        """(the asyncio Server, a future of the StreamWriter of its first connection)"""
        accepted = self.loop.create_future()

        def on_client(reader, writer):
            if not accepted.done():
                accepted.set_result(writer)
        host, port = self.address(port)
        server = self.run(self.asyncio.start_server(on_client, host, port,
                                                    family=endpoints.SOCKET_FAMILY[self.family]))
        return server, accepted

    @staticmethod
    def socket_of(made):
        return made[0].sockets[0]

    def take_connection(self, made):
        writer = self.run(made[1])
        writer.close()
        self.run(writer.wait_closed())

    def shut(self, made):
        made[0].close()
        self.run(made[0].wait_closed())


class AsyncioDatagramEndpoint(AsyncioHelper):
    proto = "udp"

    def make(self, port):
        """(the transport, a future done once the transport has closed its socket)"""
        closed = self.loop.create_future()

        class Endpoint(self.asyncio.DatagramProtocol):
            def connection_lost(self, exc):
                closed.set_result(None)
        transport, _ = self.run(self.loop.create_datagram_endpoint(
            Endpoint, local_addr=self.address(port), family=endpoints.SOCKET_FAMILY[self.family]))
        return transport, closed

    @staticmethod
    def socket_of(made):
        return made[0].get_extra_info("socket")

    def shut(self, made):
        made[0].close()
        self.run(made[1])


HELPERS = {
    "create_server": CreateServer,
    "socketserver_tcp": SocketServerTCP,
    "http_server": HttpServer,
    "asyncio_start_server": AsyncioStartServer,
    "asyncio_datagram_endpoint": AsyncioDatagramEndpoint,
}


# --- one case -----------------------------------------------------------------------------------------------------

class Case:
    """The servers and client of one case; close() ends every one still open."""

    def __init__(self, context, helper_type, params):
        self.context, self.params = context, params
        self.servers, self.clients = [], []
        self.peer = None  # the client that witnesses the server end's TIME_WAIT, where the table cannot
        self.port = endpoints.fresh_port(context.options, helper_type.proto)
        self.helper = helper_type(params["family"])

    def make(self):
        server = self.helper.make(self.port)
        self.servers.append(server)
        return server

    def shut(self, server):
        self.servers.remove(server)
        self.helper.shut(server)

    def try_make(self):
        """Another server on the port: (ok, None), shut again at once, or (errno name, number)."""
        try:
            server = self.make()
        except OSError as exc:
            return error_name(exc)
        self.shut(server)
        return OK, None

    def way(self, state):
        """How `state` is witnessed on the case's port where the table cannot list it: BY_PEER (TIME_WAIT, by the
        client that closed second: connection.Peer), BY_OWN_SOCKET (an IPv6 or dual-stack UDP server, by its own
        getsockname), or None: by the table."""
        witness = self.context.witness
        if state == "TIME_WAIT" and not witness.sees_time_wait and witness.time_wait_by_peer:
            return BY_PEER
        if self.helper.proto == "udp" and self.params["family"] != "inet" and not witness.sees_udp6:
            return BY_OWN_SOCKET
        return None

    def wanted(self, state):
        way = self.way(state)
        return witnessed_by(state, way) if way else state

    def seen_now(self, state, server):
        """The witness spelling of the port now: the table's states, else the word of the way `state` is witnessed
        where the table cannot list it."""
        states = join_states(self.context.witness.states(self.helper.proto, self.port))
        way = self.way(state)
        if states or way is None:
            return states
        if way == BY_PEER:
            return witnessed_by(state, way) if self.peer is not None and self.peer.fin_acked() else ""
        return witnessed_by(state, way) if self.helper.socket_of(server).getsockname()[1] == self.port else ""

    def witnessed(self, state, server=None):
        """The witness spelling of the port, polled until it shows `state` (as wanted()) or STATE_DEADLINE passes."""
        return poll(lambda: self.seen_now(state, server), lambda seen: seen == self.wanted(state), STATE_DEADLINE)

    def read_back(self, sock):
        options, steps = self.context.options, {}
        for step, name in SOCKET_OPTIONS.items():
            steps[step] = self.option(sock, options.sol_socket, options.values[name]) if name in options.values \
                else ABSENT
        if self.params["family"] != "inet":
            steps["v6only"] = self.option(sock, options.ipproto_ipv6, options.ipv6_v6only)
        return steps

    @staticmethod
    def option(sock, level, name):
        try:
            return flag(sock.getsockopt(level, name))
        except OSError as exc:  # an option the OS refuses to report is a result too (ENOPROTOOPT, EINVAL)
            return error_name(exc)[0]

    def client_closes_after_server(self, server):
        """A client connects; the server takes the connection and closes its end; the client sees the FIN, ACKs
        it and closes: the server end goes to TIME_WAIT."""
        family, host = endpoints.peer_of(self.params["family"], "wildcard")
        client = socket.socket(endpoints.SOCKET_FAMILY[family], socket.SOCK_STREAM)
        self.clients.append(client)
        client.settimeout(STATE_DEADLINE)
        client.connect((host, self.port))
        self.helper.take_connection(server)
        if client.recv(1) != b"":
            raise RuntimeError("client read data where the server's FIN was due")
        self.context.options.ack_now(client)
        if self.way("TIME_WAIT") == BY_PEER:  # the client keeps its descriptor: its state is the witness
            self.peer = Peer(self.context.options, client)
            self.peer.send_fin()
            return
        self.clients.remove(client)
        client.close()

    def close(self):
        for client in self.clients:
            self.context.options.abort(client)
        for server in list(self.servers):
            try:
                self.shut(server)
            except (OSError, RuntimeError):
                pass  # already failing: the loop's close() below still releases what asyncio holds
        self.helper.close()


def run_case(context, params):
    """Run one case; returns outcome, witness, detail, errno, the read-backs, second_copy and restart."""
    record = {"outcome": OK, "witness": "", "detail": "", "errno": None}
    helper_type, family = HELPERS[params["helper"]], params["family"]
    missing = "no IPv6 in this Python" if family != "inet" and not socket.has_ipv6 else helper_type.missing(family)
    if missing:
        record.update(outcome=UNSUPPORTED, detail=missing)
        return record
    if family != "inet":
        record["v6only_default"] = context.v6only_default
    case = None
    try:
        with recorded(record):
            case = Case(context, helper_type, params)
            loop = getattr(case.helper, "loop", None)
            record["detail"] = "port {}{}".format(case.port, ", " + type(loop).__name__ if loop else "")
            try:
                first = case.make()
            except OSError as exc:  # the helper cannot make a server of this family here
                raise Unsupported("first server: {}".format(error_name(exc)[0])) from None
            record.update(case.read_back(case.helper.socket_of(first)))
            errnos = serving_steps(case, first, record)
            record["detail"] += "".join("; {} errno {}".format(step, errnos[step]) for step in SERVING_STEPS
                                        if errnos.get(step) is not None)
    finally:
        if case is not None:
            case.close()
    return record


def serving_steps(case, first, record):
    """second_copy beside the first server, then (TCP) its restart over TIME_WAIT, each after its state was
    witnessed; a state not witnessed makes the case inconclusive. Returns {step: errno} of the steps run."""
    errnos = {}
    listening = "LISTEN" if case.helper.proto == "tcp" else "BOUND"
    seen = case.witnessed(listening, first)
    record["witness"] = "second_copy " + (seen or "nothing")
    if seen != case.wanted(listening):
        record.update(outcome=INCONCLUSIVE, detail=record["detail"] + "; the first server's state not witnessed")
        return errnos
    record["second_copy"], errnos["second_copy"] = case.try_make()
    if case.helper.proto != "tcp":
        return errnos
    case.client_closes_after_server(first)
    case.shut(first)
    seen = case.witnessed("TIME_WAIT")
    record["witness"] += ", restart " + (seen or "nothing")
    if seen != case.wanted("TIME_WAIT"):
        blind_spot = case.context.witness.blind_spot
        record.update(outcome=INCONCLUSIVE, detail=record["detail"] + "; TIME_WAIT alone not witnessed" + (
            " ({})".format(blind_spot) if blind_spot and not case.context.witness.sees_time_wait else ""))
        return errnos
    record["restart"], errnos["restart"] = case.try_make()
    return errnos
