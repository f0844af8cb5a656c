"""unix_sockets: AF_UNIX stream sockets: names in use, stale and foreign files, names, polling, families, the race.

Seed 002 (a 2002 Cygwin patch) lists what its emulated UNIX-domain sockets got wrong; a correct implementation shows
the opposite, and each scenario here asks the OS:

    bind_live, bind_stale, bind_regular_file   bind() where a listening socket, a socket file left by an exited
                                               process, or a regular file holds the name
    connect_stale, connect_regular_file        connect() to such a stale name or regular file
    names_named, names_unnamed                 getpeername()/getsockname() with a client bound to a name or not
    accept_nonblocking                         non-blocking accept() with nothing pending, then polled by calling
                                               accept() again until a client's connection shows
    unix_to_inet, inet_to_unix                 connect() of an AF_UNIX socket to an IPv4 address, and the reverse
    race                                       `clients` clients connect at once and each sends its id; the server
                                               answers every connection with the id it read: each client must get
                                               its own back (seed 002's handshake woke the wrong client)

`namespace` is where names live: `path` (a file in the agent's work folder), `abstract` (Linux's abstract namespace:
the name starts with a NUL byte and has no file), or `none` (unix_to_inet names no AF_UNIX address). Where this
Python has no socket.AF_UNIX (CPython on Windows, even where Windows 10+ has AF_UNIX) every case is `unsupported`;
abstract names are `unsupported` off Linux, since CPython passes them to the OS on Linux only. The wrong-family
addresses cannot be spelled with the socket module, which builds an address from the socket's own family: those two
scenarios hand the OS a raw sockaddr through ctypes.

Step values: the name steps say what getpeername()/getsockname() returned: `path` / `abstract` (the very name that
socket bound), `unnamed` (the empty address of an unbound socket), `other` (anything else, shown in `detail`).
`answers` is `own` when every connected client of the race got its own id back, `crossed` when one got another's
(the count is the measure `cross_wired`), `missing` when one got no whole answer in time.
"""
import contextlib
import os
import shutil
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time

from labs.outcomes import Unsupported, Unwitnessed, recorded
from labs.polling import poll
from labs.sockopts import error_name
from labs.vocabulary import ERROR_NAMES, OK, UNSUPPORTED, join_states
from labs.witness import Witness, WitnessError

try:
    import ctypes
except ImportError:  # a Python built without it: the two wrong-family scenarios are unsupported there
    ctypes = None

PARAMETERS = ("scenario", "namespace", "clients")

# scenario: (namespaces, client sockets it connects). The race's default stays inside a default listen queue on
# every OS (SOMAXCONN is 128 on the BSDs and macOS, where a full queue refuses connections instead of queueing them).
RACE_CLIENTS = 100
TUNABLE = {"clients": RACE_CLIENTS}  # --where clients=N sets the race's size
SCENARIOS = {
    "bind_live": (("path", "abstract"), 0),
    "bind_stale": (("path", "abstract"), 0),
    "bind_regular_file": (("path",), 0),
    "connect_stale": (("path", "abstract"), 1),
    "connect_regular_file": (("path",), 1),
    "names_named": (("path", "abstract"), 1),
    "names_unnamed": (("path", "abstract"), 1),
    "accept_nonblocking": (("path", "abstract"), 1),
    "unix_to_inet": (("none",), 1),
    "inet_to_unix": (("path", "abstract"), 1),
    "race": (("path", "abstract"), RACE_CLIENTS),
}
AXES = {"scenario": tuple(SCENARIOS), "namespace": ("path", "abstract", "none")}

NAME_VALUES = ("path", "abstract", "unnamed", "other")
STEPS = ("bind", "connect", "accept", "poll_accept", "peer_name", "server_name", "own_name", "answers")
STEP_VALUES = {"peer_name": NAME_VALUES, "server_name": NAME_VALUES, "own_name": NAME_VALUES,
               "answers": ("own", "crossed", "missing")}
MEASURES = ("cross_wired", "connects_per_second")

# The listen queue a host grants without tuning (listen(2) caps the backlog at SOMAXCONN).
LISTEN_QUEUE = getattr(socket, "SOMAXCONN", 128)
# How long any one call, a child process, or a state may take before the case gives up on it.
DEADLINE = 2.0
WOULD_BLOCK = ("EAGAIN", "EWOULDBLOCK")
ID_FORMAT = "{:08d}"  # a race client's id on the wire: fixed width, so a read knows when it has all of it
ID_SIZE = 8

# struct sockaddr layouts for the raw addresses: BSD-derived systems lead with a length byte and a family byte,
# the others with a 16-bit family; sun_path is 108 bytes on Linux, Cygwin and Solaris, 104 on the BSDs and macOS.
SA_LEN_FAMILIES = ("freebsd", "darwin", "openbsd", "netbsd", "dragonfly")
SUN_PATH_SIZES = {"linux": 108, "gvisor": 108, "cygwin": 108, "sunos": 108}
# Where CPython (built for Linux: gVisor runs it unchanged) passes a name starting with a NUL byte to the OS as is.
ABSTRACT_FAMILIES = ("linux", "gvisor")
SUN_PATH_SIZE = 104

# The child that leaves a stale name behind: it binds and listens, says so, and exits without unlinking anything.
STALE_CHILD = (
    "import socket, sys\n"
    "namespace, name = sys.argv[1:3]\n"
    "sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
    "sock.bind(name if namespace == 'path' else b'\\0' + name.encode())\n"
    "sock.listen(1)\n"
    "sys.stdout.write('bound')\n"
)


def cases(host):
    for scenario, (namespaces, clients) in SCENARIOS.items():
        for namespace in namespaces:
            yield {"scenario": scenario, "namespace": namespace, "clients": str(clients)}


class Context:
    """What the cases share: a private folder for path names, a serial for unique names, and, made when first
    needed, the TCP witness and the C library that takes raw addresses."""

    def __init__(self, host):
        self.os_family = host["os_family"]
        self.has_unix = hasattr(socket, "AF_UNIX")
        self.sun_path_size = SUN_PATH_SIZES.get(self.os_family, SUN_PATH_SIZE)
        # Short names: sun_path is 104 bytes on some systems, and the work folder's path counts against it.
        self.folder = tempfile.mkdtemp(prefix="ux") if self.has_unix else None
        self.serial = 0
        self.witness = None
        self.libc = None

    def next_serial(self):
        self.serial += 1
        return self.serial

    def tcp_witness(self):
        if self.witness is None:
            self.witness = Witness(self.os_family)
        return self.witness

    def raw_connect(self, sock, address):
        """connect(2) with an address the socket module cannot build; OSError with the errno when refused."""
        if self.libc is None:
            try:
                self.libc = ctypes.CDLL(None, use_errno=True)
                self.libc.connect.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
            except (OSError, AttributeError) as exc:
                raise Unsupported("no connect() of the C library through ctypes: {}".format(exc))
        if self.libc.connect(sock.fileno(), address, len(address)) != 0:
            number = ctypes.get_errno()
            raise OSError(number, os.strerror(number))

    def close(self):
        if self.witness is not None:
            self.witness.close()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def is_socket_file(path):
    try:
        return stat.S_ISSOCK(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


class Refused(Exception):
    """A step's call failed with an errno: the case ends there (its outcome is that step's, already recorded)."""


class Case:
    """One case: its record, and what it opens (sockets, files, threads); close() removes every one of them."""

    def __init__(self, context, params):
        self.context, self.namespace = context, params["namespace"]
        self.record = {"outcome": OK, "witness": "", "detail": "", "errno": None}
        self.sockets, self.listeners, self.paths, self.threads = [], [], [], []

    # --- names and sockets ---------------------------------------------------------------------------------------

    def name(self):
        """A fresh name in the case's namespace: a path in the work folder (str) or an abstract name (bytes).
        Abstract names are at least 14 bytes, so their sockaddr is never shorter than a sockaddr_in."""
        serial = self.context.next_serial()
        if self.namespace == "abstract":
            return "\0socklab-ux-{}-{}".format(os.getpid(), serial).encode()
        path = os.path.join(self.context.folder, "u{}".format(serial))
        if len(os.fsencode(path)) >= self.context.sun_path_size:
            raise RuntimeError("work folder path too long for sun_path: {}".format(path))
        self.paths.append(path)
        return path

    def socket(self, family=None):
        sock = socket.socket(socket.AF_UNIX if family is None else family, socket.SOCK_STREAM)
        self.sockets.append(sock)
        sock.settimeout(DEADLINE)  # no call blocks forever; none waits a fixed time either
        return sock

    def listener(self, name, backlog=8, family=None):
        sock = self.socket(family)
        self.listeners.append(sock)
        sock.bind(name)
        sock.listen(backlog)
        return sock

    def regular_file(self, path):
        with open(path, "w") as stream:
            stream.write("socklab: a regular file where a socket name is tried\n")
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise Unwitnessed("{} is not a regular file".format(path))
        self.record["witness"] = "regular_file"

    def stale_name(self, name):
        """A name whose socket was bound and listened on by a process that has exited without unlinking it."""
        argument = name if self.namespace == "path" else name[1:].decode()
        child = subprocess.run([sys.executable, "-I", "-S", "-c", STALE_CHILD, self.namespace, argument],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=5 * DEADLINE)
        if child.returncode != 0 or child.stdout != b"bound":
            raise Unwitnessed("the child did not bind {!r}: status {}, {}".format(
                name, child.returncode, child.stderr.decode(errors="replace").strip()[-200:]))
        if self.namespace == "path":
            if not is_socket_file(name):
                raise Unwitnessed("{} is not a socket file after its owner exited".format(name))
            self.record["witness"] = "stale_socket_file"
        else:
            self.record["witness"] = "owner_exited"

    def live_name(self, listener, name):
        """The witness that `listener` holds `name`: its own name, and for a path, a socket file there."""
        if listener.getsockname() != name:
            raise Unwitnessed("the listener's name is {!r}, not {!r}".format(listener.getsockname(), name))
        if self.namespace == "path" and not is_socket_file(name):
            raise Unwitnessed("{} is not a socket file".format(name))
        self.record["witness"] = "live_socket"

    # --- steps ----------------------------------------------------------------------------------------------------

    def attempt(self, step, call):
        """Runs one call; its outcome (ok or an errno name) goes in the step's column. Returns (outcome, result)."""
        try:
            result = call()
        except OSError as exc:
            return self.refused(step, exc), None
        self.record[step] = OK
        return OK, result

    def refused(self, step, exc):
        """Records a call's error as the step's outcome (the first one is the case's); returns its name."""
        name, number = error_name(exc)
        if name not in ERROR_NAMES:
            raise exc  # no errno (a timeout of our own, a Python-side refusal): the agent failed, not the OS
        self.record[step] = name
        if self.record["errno"] is None:
            self.record.update(outcome=name, errno=number)
        return name

    def step(self, step, call):
        """attempt(), where a refused call ends the case."""
        outcome, result = self.attempt(step, call)
        if outcome != OK:
            raise Refused()
        return result

    def name_step(self, step, value, bound):
        """What a getpeername()/getsockname() returned, as a STEP_VALUES word against the name `bound` (None: the
        socket never bound one)."""
        if value in ("", b""):
            self.record[step] = "unnamed"
        elif bound is not None and value == bound:
            self.record[step] = "path" if isinstance(bound, str) else "abstract"
        else:
            self.record[step] = "other"
            self.record["detail"] += "{}: {!r}; ".format(step, value)

    def close(self):
        for sock in self.listeners:
            sock.close()  # a race client still queued on it is reset, so its thread ends
        for thread in self.threads:
            thread.join(DEADLINE)
        for sock in self.sockets:
            sock.close()
        for path in self.paths:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass  # the case never created it
            except OSError as exc:
                self.record["detail"] += " (could not remove {}: {})".format(path, exc)


# --- scenarios -------------------------------------------------------------------------------------------------------

def hold_live(case, name):
    case.live_name(case.listener(name), name)


# What holds the name before the case's own socket tries it.
HOLDERS = {"live": hold_live, "stale": lambda case, name: case.stale_name(name),
           "regular_file": lambda case, name: case.regular_file(name)}


def name_held(holder, call):
    """A scenario: the name is held by `holder` (HOLDERS), then a new socket tries `call` (bind or connect) on it."""
    def run(case, params):
        name = case.name()
        HOLDERS[holder](case, name)
        case.step(call, lambda: getattr(case.socket(), call)(name))
    return run


def run_names(case, params):
    """A client (bound to its own name, or not) connects; what each end says about the names."""
    server_name = case.name()
    listener = case.listener(server_name)
    client = case.socket()
    client_name = None
    if params["scenario"] == "names_named":
        client_name = case.name()
        case.step("bind", lambda: client.bind(client_name))
    case.step("connect", lambda: client.connect(server_name))
    accepted = case.step("accept", listener.accept)[0]
    case.sockets.append(accepted)
    case.record["witness"] = "connected"
    for step, call, bound in (("peer_name", accepted.getpeername, client_name),
                              ("server_name", client.getpeername, server_name),
                              ("own_name", client.getsockname, client_name)):
        outcome, value = case.attempt(step, call)
        if outcome == OK:
            case.name_step(step, value, bound)


def run_accept_nonblocking(case, params):
    """accept() on a non-blocking listener with nothing pending; then a client connects and the listener is
    polled by calling accept() again (the seed's server could not poll this way)."""
    name = case.name()
    listener = case.listener(name)
    case.live_name(listener, name)
    listener.setblocking(False)

    def accept():
        conn = listener.accept()[0]
        case.sockets.append(conn)
        return conn

    case.attempt("accept", accept)
    case.step("connect", lambda: case.socket().connect(name))
    # Each try is one real accept(): its outcome is the step's until one is not "would block" (or time is up).
    poll(lambda: case.attempt("poll_accept", accept)[0], lambda outcome: outcome not in WOULD_BLOCK, DEADLINE)


def sockaddr_header(os_family, family, size):
    if os_family in SA_LEN_FAMILIES:
        return struct.pack("BB", size, family)
    return struct.pack("=H", family)


def sockaddr_in(os_family, host, port):
    return sockaddr_header(os_family, socket.AF_INET, 16) + struct.pack("!H", port) + socket.inet_aton(host) + bytes(8)


def sockaddr_un(context, name):
    """A path's sockaddr_un is the whole structure (unix(7): addrlen may be sizeof(struct sockaddr_un)); an
    abstract name's is exactly as long as the name, since every byte the length covers is part of it."""
    if isinstance(name, bytes):
        raw, size = name, 2 + len(name)
    else:
        raw, size = os.fsencode(name), 2 + context.sun_path_size
    address = sockaddr_header(context.os_family, socket.AF_UNIX, size) + raw
    return address + bytes(size - len(address))


def run_unix_to_inet(case, params):
    """An AF_UNIX socket given the IPv4 address of a live TCP listener."""
    port = case.listener(("127.0.0.1", 0), family=socket.AF_INET).getsockname()[1]
    try:
        witness = case.context.tcp_witness()
        seen = poll(lambda: join_states(witness.states("tcp", port)), lambda seen: seen == "LISTEN", DEADLINE)
    except WitnessError as exc:
        raise Unwitnessed("TCP listener not witnessed: {}".format(exc))
    if seen != "LISTEN":
        raise Unwitnessed("TCP listener on port {} shows {!r}".format(port, seen))
    case.record["witness"] = seen
    client = case.socket()
    client.setblocking(True)
    address = sockaddr_in(case.context.os_family, "127.0.0.1", port)
    case.step("connect", lambda: case.context.raw_connect(client, address))


def run_inet_to_unix(case, params):
    """An AF_INET socket given the sockaddr_un of a live AF_UNIX listener."""
    name = case.name()
    case.live_name(case.listener(name), name)
    client = case.socket(socket.AF_INET)
    client.setblocking(True)
    address = sockaddr_un(case.context, name)
    case.step("connect", lambda: case.context.raw_connect(client, address))


class RaceClient:
    """One client of the race: connects when released, sends its id, reads the answer."""

    def __init__(self, case, number, name, start, tally):
        self.number, self.name, self.start, self.tally = number, name, start, tally
        self.sock = case.socket()
        self.connected_at = self.error = self.answer = None

    def run(self):
        try:
            self.start.wait()
            self.sock.settimeout(None)  # a full listen queue makes connect() wait for the server's accept()
            self.sock.connect(self.name)
            self.connected_at = time.perf_counter()
            self.tally.add()
            self.sock.settimeout(DEADLINE)
            self.sock.sendall(ID_FORMAT.format(self.number).encode())
            self.answer = read_exactly(self.sock, ID_SIZE)
        except (OSError, threading.BrokenBarrierError) as exc:
            self.error = exc


class Tally:
    """A count shared by threads."""

    def __init__(self):
        self.count, self.lock = 0, threading.Lock()

    def add(self):
        with self.lock:
            self.count += 1


def read_exactly(sock, size):
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def run_race(case, params):
    """Seed 002's race, generalised: every client is connected and waiting in the listen queue before the server
    accepts any of them (the witness: how many were pending at once); then each accepted connection is answered
    with the id read from it."""
    clients = int(params["clients"])
    if clients < 2:
        raise Unwitnessed("a race needs at least two clients")
    name = case.name()
    listener = case.listener(name, backlog=clients)
    start, tally = threading.Barrier(clients + 1, timeout=DEADLINE), Tally()
    racers = [RaceClient(case, number, name, start, tally) for number in range(clients)]
    for racer in racers:
        thread = threading.Thread(target=racer.run, daemon=True)
        case.threads.append(thread)
        thread.start()
    start.wait()
    released = time.perf_counter()
    # Wait until every client is queued, or as many as the OS's listen queue holds by default.
    pending = poll(lambda: tally.count, lambda count: count >= min(clients, LISTEN_QUEUE), DEADLINE)
    case.record["witness"] = "pending={}".format(pending)
    if pending < 2:
        raise Unwitnessed("{} of {} clients were connected before the first accept()".format(pending, clients))
    served = serve_race(listener, clients)
    for thread in case.threads:
        thread.join(DEADLINE)
    judge_race(case, racers, released, served)


def serve_race(listener, clients):
    """Accepts up to `clients` connections and echoes the id read from each; returns how many it answered. A
    failure here shows as the clients' missing answers."""
    served = 0
    for _ in range(clients):
        try:
            conn = listener.accept()[0]
        except OSError:
            break  # a client whose connect failed never arrives; its error is the client's to report
        with conn:
            try:
                conn.settimeout(DEADLINE)
                conn.sendall(read_exactly(conn, ID_SIZE))
                served += 1
            except OSError:
                continue
    return served


def judge_race(case, racers, released, served):
    refused = [racer for racer in racers if racer.connected_at is None]
    connected = [racer for racer in racers if racer.connected_at is not None]
    if refused:
        if not isinstance(refused[0].error, OSError):
            raise refused[0].error
        case.refused("connect", refused[0].error)
    else:
        case.record["connect"] = OK
    own = [racer for racer in connected if racer.answer == ID_FORMAT.format(racer.number).encode()]
    crossed = [racer for racer in connected if racer not in own and racer.answer is not None
               and len(racer.answer) == ID_SIZE]
    missing = len(connected) - len(own) - len(crossed)
    case.record["answers"] = "crossed" if crossed else "missing" if missing else "own"
    case.record["cross_wired"] = len(crossed)
    if connected:
        last = max(racer.connected_at for racer in connected)
        case.record["connects_per_second"] = round(len(connected) / max(last - released, 1e-9), 1)
    case.record["detail"] += "{} clients: {} connected, {} answered by the server, {} own, {} crossed, {} missing{}" \
        .format(len(racers), len(connected), served, len(own), len(crossed), missing,
                "; first refusal: {}".format(refused[0].error) if refused else "")


RUNNERS = {
    "bind_live": name_held("live", "bind"),
    "bind_stale": name_held("stale", "bind"),
    "bind_regular_file": name_held("regular_file", "bind"),
    "connect_stale": name_held("stale", "connect"),
    "connect_regular_file": name_held("regular_file", "connect"),
    "names_named": run_names,
    "names_unnamed": run_names,
    "accept_nonblocking": run_accept_nonblocking,
    "unix_to_inet": run_unix_to_inet,
    "inet_to_unix": run_inet_to_unix,
    "race": run_race,
}


def missing_feature(context, params):
    """Why this host cannot run the case, or None."""
    if not context.has_unix:
        return "this Python has no socket.AF_UNIX"
    if params["namespace"] == "abstract" and context.os_family not in ABSTRACT_FAMILIES:
        return "abstract names: CPython passes them to the OS on Linux only"
    if params["scenario"] in ("unix_to_inet", "inet_to_unix") and (ctypes is None or os.name != "posix"):
        return "a raw sockaddr needs ctypes and a POSIX C library"
    return None


def run_case(context, params):
    """Run one case; returns outcome, witness, detail, errno and the steps and measures it reached."""
    reason = missing_feature(context, params)
    if reason:
        return {"outcome": UNSUPPORTED, "witness": "", "detail": reason, "errno": None}
    case = Case(context, params)
    try:
        # a Refused step's outcome is already the case's; threading.BrokenBarrierError is a RuntimeError
        with recorded(case.record, failures=(subprocess.SubprocessError,)), contextlib.suppress(Refused):
            RUNNERS[params["scenario"]](case, params)
    finally:
        case.close()
    return case.record
