"""socketpair_churn: N TCP-loopback socket pairs made and closed back to back, per way of choosing their ports.

From seed 000 (1998, Cygwin on Winsock): Winsock let a socket bind a port held by a TIME_WAIT connection even
without SO_REUSEADDR, and handed out implicit ports sequentially from a small range, so a TCP-loopback socketpair()
used over and over soon picked the 4-tuple of a pair closed moments before and its connect() failed (EADDRINUSE).
The fix it gives: random ports over the full range (1024-65535) from a non-repeating source, retrying whenever
bind() or connect() fails.

A pair is made as a socketpair() emulation makes it (CPython's socket._fallback_socketpair): a listener on
127.0.0.1, bound to the strategy's port, listens; a client (bound to its own port first, for the explicit
strategies) connects; the listener accepts and is closed at once. The two ends must name each other (the accepted
end's peer is the client, the client's peer is the accepted end), else the pair is miswired: a stray connection was
accepted. Then the client end is closed, then the accepted end: the client closes first, so the TIME_WAIT of each
pair is held by the client's port (seed 003: the active closer holds it).

    strategy            the listener's port                     the client's port
    sequential          walks up a fixed window, two ports a pair (listener, client = listener + 1), and wraps
                        round; no retry: a failing pair is counted and skipped (seed 000's sequential ports)
    os_assigned         0 (the OS picks)                        implicit, at connect()
    random              random.SystemRandom over 1024-65535 but SEQUENTIAL_PORTS (left for the next run's
                        sequential windows); bind() and connect() retried with new ports, at most RANDOM_ATTEMPTS
                        times per socket (seed 000's fix)
    python_socketpair   the host Python's socket.socketpair(): AF_UNIX where the host has it, else CPython's TCP
                        emulation (Windows); its family is in `detail`, its two ends swap a byte each way

opts is `none` or `SO_REUSEADDR` on every socket of a pair (accepted ends inherit it from the listener).

Steps: each is `ok`, the first error name it gave, or empty when the strategy never makes that call; check is `ok`
or `miswired`. outcome is `ok` when no pair was lost to an error, else the error that lost the most pairs (a
miswired pair shows in check and miswired, not in outcome). Measures: made (pairs whose ends are connected to each
other), failures (every failed call, retried ones included: "client_bind EADDRINUSE 15904, connect EADDRNOTAVAIL
3"), retries, miswired, time_wait_left (TIME_WAIT entries whose local port is one the case used, counted once after
its last pair; other connections' TIME_WAITs on those ports included), pairs_per_second (pairs made per second of
the churn, the witness count excluded), seconds, wrapped (sequential: whether the walk came round to ports it had
used), timestamps (whether the pairs' connections used TCP timestamps, read from TCP_INFO where its layout is known;
Linux reuses a TIME_WAIT 4-tuple for an explicitly bound connect() only with them).

A sequential case walks the first window of 2 x WINDOW_PAIRS ports in SEQUENTIAL_PORTS (below the default
ephemeral ranges of Linux, 32768-60999, and of Windows and macOS, 49152-65535) where the OS table shows no
connection, TIME_WAITs included: an earlier case's or run's would decide its outcome. The default 20,000 pairs come
round to the 4-tuples of pairs closed moments before many times, well inside any TIME_WAIT period. With no such
window free (several runs within one TIME_WAIT period) the case is `inconclusive`; so is any case during which the
OS dropped TIME_WAITs because its table was full (Linux: net.ipv4.tcp_max_tw_buckets; the default run leaves about
90,000 for a minute).
"""
import collections
import random
import socket
import time

from labs.outcomes import Unsupported, Unwitnessed, recorded
from labs.sockopts import Options, error_name
from labs.vocabulary import INCONCLUSIVE, OK
from labs.witness import Witness, WitnessError

PARAMETERS = ("strategy", "opts", "pairs")
TCP_STRATEGIES = ("sequential", "os_assigned", "random")  # sequential first: random draws may land in its windows
STRATEGIES = TCP_STRATEGIES + ("python_socketpair",)
OPTION_SETS = ("none", "SO_REUSEADDR")
AXES = {"strategy": STRATEGIES, "opts": OPTION_SETS}  # pairs: any positive integer (TUNABLE)
STEPS = ("listener_bind", "listen", "client_bind", "connect", "accept", "socketpair", "check")
MISWIRED = "miswired"
STEP_VALUES = {"check": (MISWIRED,)}
MEASURES = ("made", "failures", "retries", "miswired", "time_wait_left", "pairs_per_second", "seconds", "wrapped",
            "timestamps")
DEFAULT_PAIRS = 20000
TUNABLE = {"pairs": DEFAULT_PAIRS}  # --where pairs=N runs every case with N pairs

HOST = "127.0.0.1"
RANDOM_PORTS = (1024, 65536)  # seed 000: "the full port range (probably 1024-65535 is desired)"
# Draws per socket. Here a drawn port was busy about one time in two during a run, four in five in a run that
# followed another within the TIME_WAIT period: 64 busy draws in a row then come once in a million sockets.
RANDOM_ATTEMPTS = 64
WINDOW_PAIRS = 1024
SEQUENTIAL_PORTS = (16384, 32768)  # where sequential windows are looked for: 8 of them
BUSY_STATES = ("TIME_WAIT", "LISTEN", "ESTABLISHED")  # a window with one of these on a port is not free
DEADLINE = 2.0  # seconds an accept() or a socketpair byte may take before the pair is given up (loopback: at once)


def cases(host):
    """Each TCP strategy with each option set, then the host Python's socketpair(); DEFAULT_PAIRS pairs each."""
    pairs = str(DEFAULT_PAIRS)
    for strategy in TCP_STRATEGIES:
        for opts in OPTION_SETS:
            yield {"strategy": strategy, "opts": opts, "pairs": pairs}
    yield {"strategy": "python_socketpair", "opts": "none", "pairs": pairs}


class Context:
    """The option constants, the witness that counts TIME_WAITs (None where the host has no reader; why it cannot
    count them, if so, in witness_problem), and the non-repeating random source of the random strategy."""

    def __init__(self, host):
        self.os_family = host["os_family"]
        self.options = Options(self.os_family)
        self.random = random.SystemRandom()
        try:
            self.witness = Witness(self.os_family)
        except WitnessError as exc:
            self.witness, self.witness_problem = None, str(exc)
        else:  # a table without TIME_WAITs would count none, and make every window look free
            self.witness_problem = ("" if self.witness.sees_time_wait
                                    else "this host's connection table does not list TIME_WAIT")

    def close(self):
        if self.witness is not None:
            self.witness.close()


class Tally:
    """What a case's pairs gave: failed calls by step and error, the errors that lost pairs, and the rest."""

    def __init__(self):
        self.failures = collections.Counter()  # (step, error name): failed calls
        self.lost = collections.Counter()  # error name: pairs lost to it
        self.numbers = {}  # error name: its raw number
        self.first = {}  # step: the first error name it gave
        self.reached = set()  # steps called at least once
        self.made = self.retries = self.miswired = 0
        self.ports = set()  # local ports the pairs used
        self.timestamps = None

    def failed(self, step, exc):
        # A deadline of this lab passing is spelled as the errno a timed-out socket call gives.
        name, number = ("ETIMEDOUT", None) if isinstance(exc, socket.timeout) else error_name(exc)
        self.failures[step, name] += 1
        self.first.setdefault(step, name)
        self.numbers[name] = number
        return name

    def steps(self):
        values = {step: self.first.get(step, OK) if step in self.reached else "" for step in STEPS}
        if "check" in self.reached:
            values["check"] = MISWIRED if self.miswired else OK
        return values


def random_port(source):
    """A port drawn from RANDOM_PORTS outside SEQUENTIAL_PORTS: the windows stay free of this run's TIME_WAITs."""
    while True:
        port = source.randrange(*RANDOM_PORTS)
        if not SEQUENTIAL_PORTS[0] <= port < SEQUENTIAL_PORTS[1]:
            return port


class PortChoice:
    """The ports of one strategy: listener_port() and client_port() (None: implicit), and how often a failed
    socket is tried again with new ports."""

    def __init__(self, context, strategy, window_start):
        self.attempts = RANDOM_ATTEMPTS if strategy == "random" else 1
        self.wrapped = "no" if strategy == "sequential" else ""
        if strategy == "os_assigned":
            self.listener_port, self.client_port = lambda: 0, lambda: None
        elif strategy == "random":
            self.listener_port = self.client_port = lambda: random_port(context.random)
        else:
            self.first, self.offset = window_start, -2
            self.listener_port, self.client_port = self.walk, lambda: self.first + self.offset + 1

    def walk(self):
        """The next pair's listener port; its client takes the port above it."""
        self.offset += 2
        if self.offset == 2 * WINDOW_PAIRS:
            self.offset, self.wrapped = 0, "yes"
        return self.first + self.offset


class Pairs:
    """Makes one case's pairs of TCP sockets on 127.0.0.1 and tallies them."""

    def __init__(self, context, ports, opts, tally):
        self.ports, self.tally = ports, tally
        self.reuse = (context.options.sol_socket, context.options.values["SO_REUSEADDR"]) if opts != "none" else None
        self.options = context.options

    def new_socket(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if self.reuse:
            try:
                sock.setsockopt(self.reuse[0], self.reuse[1], 1)
            except OSError:
                sock.close()
                raise
        return sock

    def at(self, step):
        """The call about to be made: a failure is tallied under it."""
        self.step = step
        self.tally.reached.add(step)

    def retried(self, make, *args):
        """make(new socket, *args) until it succeeds, at most ports.attempts times: the socket, or None when every
        attempt failed (the pair is lost to the last error)."""
        tally = self.tally
        for attempt in range(self.ports.attempts):
            sock, made = self.new_socket(), False
            try:
                make(sock, *args)
                made = True
            except OSError as exc:
                error = tally.failed(self.step, exc)
            finally:
                if not made:
                    sock.close()
            if made:
                tally.retries += attempt
                return sock
        tally.retries += self.ports.attempts - 1
        tally.lost[error] += 1
        return None

    def bind_and_listen(self, sock):
        self.at("listener_bind")
        sock.bind((HOST, self.ports.listener_port()))
        self.at("listen")
        sock.listen(1)

    def bind_and_connect(self, sock, port):
        own_port = self.ports.client_port()
        if own_port is not None:
            self.at("client_bind")
            sock.bind((HOST, own_port))
        self.at("connect")
        sock.connect((HOST, port))

    def pair(self):
        """One pair, made, checked and closed: the listener once it accepted, then the client end, then the
        accepted end."""
        tally = self.tally
        listener = self.retried(self.bind_and_listen)
        if listener is None:
            return
        client = accepted = None
        try:
            port = listener.getsockname()[1]
            tally.ports.add(port)
            client = self.retried(self.bind_and_connect, port)
            if client is None:
                return
            self.at("accept")
            listener.settimeout(DEADLINE)  # a connection that never comes (it went to someone else) is not awaited
            try:
                accepted, peer = listener.accept()
            except OSError as exc:
                tally.lost[tally.failed("accept", exc)] += 1
                return
            listener.close()
            self.at("check")
            try:
                own = client.getsockname()
                tally.ports.add(own[1])
                wired = peer[:2] == own[:2] and client.getpeername()[:2] == accepted.getsockname()[:2]
            except OSError as exc:  # an end that is no longer connected to anything
                tally.failed("check", exc)
                wired = False
            if not wired:
                tally.miswired += 1
                return
            tally.made += 1
            if tally.timestamps is None:
                tally.timestamps = self.options.used_timestamps(client)
        finally:
            for sock in (listener, client, accepted):
                if sock is not None:
                    sock.close()


def python_socketpair(tally):
    """One pair from socket.socketpair(), checked by a byte each way and closed: the second end first (CPython's TCP
    emulation returns the accepted end, then the client end). Returns the pair's address family, or None."""
    tally.reached.add("socketpair")
    try:
        ends = socket.socketpair()
    except OSError as exc:
        if isinstance(exc, ConnectionError) and exc.errno is None:
            # CPython's TCP emulation refused a pair whose accepted end was not its client: a stray connection
            tally.reached.add("check")
            tally.miswired += 1
        else:
            tally.lost[tally.failed("socketpair", exc)] += 1
        return None
    tally.reached.add("check")
    try:
        family = ends[0].family
        for sender, receiver, byte in ((ends[0], ends[1], b"a"), (ends[1], ends[0], b"b")):
            receiver.settimeout(DEADLINE)
            sender.sendall(byte)
            if receiver.recv(1) != byte:
                tally.miswired += 1
                return family
        if family in (socket.AF_INET, socket.AF_INET6):
            tally.ports.update(end.getsockname()[1] for end in ends)
        tally.made += 1
        return family
    except OSError as exc:  # a byte that did not arrive: the ends are not connected to each other
        tally.failed("check", exc)
        tally.miswired += 1
        return family
    finally:
        ends[1].close()
        ends[0].close()


def spelled(failures):
    """"client_bind EADDRINUSE 15904, connect EADDRNOTAVAIL 3": most frequent first; "" for none."""
    ordered = sorted(failures.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join("{} {} {}".format(step, name, count) for (step, name), count in ordered)


def time_wait_on(context, ports):
    """(TIME_WAIT entries whose local port is in `ports`, "") or (None, why they could not be counted)."""
    if context.witness_problem:
        return None, context.witness_problem
    try:
        return context.witness.count("tcp", "TIME_WAIT", ports), ""
    except (OSError, WitnessError) as exc:
        return None, str(exc)


def time_wait_overflows():
    """Linux's count of connections that closed without a TIME_WAIT because the TIME_WAIT table was full
    (TcpExt TCPTimeWaitOverflow in /proc/net/netstat; the limit is net.ipv4.tcp_max_tw_buckets), or None where the
    host does not keep it."""
    try:
        with open("/proc/net/netstat") as stream:
            rows = [line.split() for line in stream if line.startswith("TcpExt:")]
        return int(rows[1][rows[0].index("TCPTimeWaitOverflow")])
    except (OSError, IndexError, ValueError):
        return None


def free_window(context):
    """(the first port of the first window in SEQUENTIAL_PORTS whose ports hold no connection, "") or (None, why
    there is none)."""
    span = 2 * WINDOW_PAIRS
    if context.witness_problem:
        return None, context.witness_problem
    for first in range(SEQUENTIAL_PORTS[0], SEQUENTIAL_PORTS[1] - span + 1, span):
        ports = range(first, first + span)
        try:
            if not any(context.witness.count("tcp", state, ports) for state in BUSY_STATES):
                return first, ""
        except (OSError, WitnessError) as exc:
            return None, "its window could not be seen free: {}".format(exc)
    return None, "no window of {} ports in {}-{} was free of connections (TIME_WAITs of a run moments ago?)".format(
        span, SEQUENTIAL_PORTS[0], SEQUENTIAL_PORTS[1] - 1)


def churn(context, params, tally, window_start):
    """Make the case's pairs one after another; (seconds they took, wrapped, a note for detail)."""
    strategy, count = params["strategy"], int(params["pairs"])
    if strategy == "python_socketpair":
        started = time.perf_counter()
        families = collections.Counter(python_socketpair(tally) for _ in range(count))
        seconds = time.perf_counter() - started
        return seconds, "", "socket.socketpair() gave " + ", ".join(
            getattr(family, "name", str(family)) for family in families if family is not None)
    ports = PortChoice(context, strategy, window_start)
    pairs = Pairs(context, ports, params["opts"], tally)
    started = time.perf_counter()
    for _ in range(count):
        pairs.pair()
    seconds = time.perf_counter() - started
    if strategy == "sequential":
        return seconds, ports.wrapped, "ports {}-{}".format(window_start, window_start + 2 * WINDOW_PAIRS - 1)
    return seconds, ports.wrapped, ""


def check_option(context, opts):
    """Raises Unsupported unless the host has the option `opts` and lets a TCP socket set it."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            context.options.enable(probe, (opts,))
    except KeyError:
        raise Unsupported("no {} on this host".format(opts)) from None
    except OSError as exc:
        raise Unsupported("setsockopt {}: {}".format(opts, error_name(exc)[0])) from None


def run_case(context, params):
    """Make params["pairs"] pairs with the case's strategy and options; the result fields of DESIGN.md. A
    sequential case without a free window is inconclusive; a case during which the OS dropped TIME_WAITs still
    runs, for its figures, but is inconclusive (see the module's docstring)."""
    record = {"outcome": OK, "witness": "", "detail": "", "errno": None}
    with recorded(record):
        strategy, opts = params["strategy"], params["opts"]
        if opts != "none":
            check_option(context, opts)
        window_start = None
        if strategy == "sequential":
            window_start, problem = free_window(context)
            if window_start is None:
                raise Unwitnessed(problem)
        tally, overflows = Tally(), time_wait_overflows()
        seconds, wrapped, note = churn(context, params, tally, window_start)
        dropped = None if overflows is None else time_wait_overflows() - overflows
        left, left_problem = time_wait_on(context, tally.ports)
        notes = [note, left_problem and "TIME_WAIT not counted: " + left_problem]
        record.update(tally.steps())
        record.update(made=tally.made, failures=spelled(tally.failures), retries=tally.retries,
                      miswired=tally.miswired, time_wait_left="" if left is None else left, seconds=round(seconds, 3),
                      pairs_per_second=round(tally.made / seconds, 1) if seconds > 0 else 0.0, wrapped=wrapped,
                      timestamps=tally.timestamps or "", witness="TIME_WAIT" if left else "")
        if tally.lost:
            name = max(sorted(tally.lost), key=tally.lost.get)
            record.update(outcome=name, errno=tally.numbers.get(name))
        if dropped:
            record.update(outcome=INCONCLUSIVE, errno=None)
            notes.append("the OS's TIME_WAIT table was full: {} connections closed without one".format(dropped))
        record["detail"] = "; ".join(note for note in notes if note)
    return record
