"""The second socket: the one that tries to take a port an earlier socket holds.

`try_second(request)` opens it, sets its options, bind()s and (tcp) listen()s, and returns each step's outcome;
the socket is closed before it returns. It runs in the agent itself (prober `same_process`), or in a long-lived
prober process that reads one JSON request per line on stdin and answers one JSON line on stdout (`other_process`,
like a restarted server; `other_user`, the same process started as root that drops to an unprivileged uid once its
modules are loaded, so it needs no access to the agent's private directory).

A request without "op" is try_second's; {"op": "batch", "requests": [request, ...]} is try_second's for each, in
order, answered {"answers": [steps, ...]} (bind_matrix sends a batch of cases in one message). The hijack lab keeps
its second socket listening (TCP) or bound (UDP) in the prober process while the agent's clients connect or send,
with more requests (HeldSecond):

    {"op": "listen", proto, family, addr, port, opts, backlog}   the steps, as try_second; the socket stays open
    {"op": "accepted"}                                            {"peers": [port, ...]}: connections accepted now
    {"op": "received"}                                            {"datagrams": [text, ...]}: UDP datagrams
                                                                  received now (each one's payload, as text)
    {"op": "close"}                                               {}: the held socket is closed

    python -m labs.prober [--user NAME]
"""
import json
import os
import subprocess
import sys

from labs import endpoints
from labs.sockopts import Options, error_name, system_family
from labs.vocabulary import OK

UNPRIVILEGED_USERS = ("nobody", "nfsnobody")
# Prober and worker processes still running (each has .process): the session (labs/session.py) ends them if the
# controller goes away.
LIVE = set()


def open_second(options, request):
    """The second socket for a request {proto, family, addr, port, opts[, backlog][, listen]}: (steps, socket),
    steps as {step: outcome, "errno": n}; the socket is returned open when every step passed, else closed and None.
    A TCP socket listen()s unless the request says "listen": false (`why`'s try: a bind that disturbs no one)."""
    steps, sock, passed = {}, None, False
    step = "setsockopt"
    try:
        sock = endpoints.new_socket(options, request["proto"], request["family"], request["opts"])
        steps[step] = OK
        step = "bind"
        sock.bind(endpoints.sockaddr(request["family"], request["addr"], request["port"]))
        steps[step] = OK
        if request["proto"] == "tcp" and request.get("listen", True):
            step = "listen"
            sock.listen(request.get("backlog", 1))
            steps[step] = OK
        passed = True
    except OSError as exc:
        steps[step], steps["errno"] = error_name(exc)
    finally:
        if sock is not None and not passed:
            sock.close()
    return steps, (sock if passed else None)


def try_second(options, request):
    """Steps of the second socket for a request {proto, family, addr, port, opts}: {step: outcome, "errno": n}."""
    steps, sock = open_second(options, request)
    if sock is not None:
        sock.close()
    return steps


def accept_pending(options, listener):
    """Accepts every connection waiting on a non-blocking listener, aborting each at once (an RST: nothing stays
    behind); returns the peers' ports."""
    peers = []
    while True:
        try:
            connection, peer = listener.accept()
        except BlockingIOError:
            return peers
        options.abort(connection)
        peers.append(peer[1])


def receive_pending(sock):
    """Reads every datagram waiting on a non-blocking UDP socket; returns their payloads as text (a payload that is
    not UTF-8 is no sender's of the lab: left out)."""
    payloads = []
    while True:
        try:
            data = sock.recv(2048)
        except BlockingIOError:
            return payloads
        except (ConnectionResetError, ConnectionRefusedError):  # an ICMP error the OS reports here (Windows'
            continue                                             # WSAECONNRESET): no datagram; read on
        try:
            payloads.append(data.decode("utf-8"))
        except UnicodeDecodeError:
            continue


class HeldSecond:
    """The hijack lab's second socket, held open between requests: it listens (or, UDP, is bound), says whom it
    accepted or what it received, is closed."""

    def __init__(self, options):
        self.options, self.sock = options, None

    def answer(self, request):
        op = request["op"]
        if op == "listen":
            return self.listen(request)
        if op == "accepted":
            return {"peers": accept_pending(self.options, self.sock) if self.sock is not None else []}
        if op == "received":
            return {"datagrams": receive_pending(self.sock) if self.sock is not None else []}
        if op == "close":
            self.close()
            return {}
        raise ValueError("unknown prober request {!r}".format(op))

    def listen(self, request):
        self.close()
        steps, self.sock = open_second(self.options, request)
        if self.sock is not None:
            self.sock.setblocking(False)  # `accepted` takes what is pending now, never waits
        return steps

    def close(self):
        if self.sock is not None:
            self.sock.close()  # a listener's close resets any connection still queued on it
            self.sock = None


def try_batch(options, requests):
    return [try_second(options, request) for request in requests]


class SameProcess:
    """The second socket from the agent's own process."""

    in_agent = True

    def __init__(self, options):
        self.options = options

    def try_second(self, request):
        return try_second(self.options, request)

    def start_batch(self, requests):
        """Tries each request now; returns a function that gives their steps."""
        answers = try_batch(self.options, requests)
        return lambda: answers

    def close(self):
        pass


class ProberDied(RuntimeError):
    pass


class ProberProcess:
    """A long-lived prober process; it exits by itself when the agent closes its stdin or dies."""

    in_agent = False

    def __init__(self, user=None):
        # labs/ is a folder or sits inside the agent's zip file; either way its parent is what the child imports from
        agent_home = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        path = os.pathsep.join(filter(None, [agent_home, os.environ.get("PYTHONPATH")]))
        command = [sys.executable, "-m", "labs.prober"] + (["--user", user] if user else [])
        self.process = subprocess.Popen(command, env=dict(os.environ, PYTHONPATH=path), stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE)
        self.broken = None  # why the prober was given up: every later request fails with it
        LIVE.add(self)

    def try_second(self, request):
        return self.ask(request)

    def listen_second(self, request):
        """The hijack lab's second socket: opened and left listening in the prober; its steps."""
        return self.ask(dict(request, op="listen"))

    def accepted(self):
        """Ports of the peers whose connections the held second socket has accepted since last asked."""
        return self.ask({"op": "accepted"})["peers"]

    def received(self):
        """Payloads of the datagrams the held second (UDP) socket has received since last asked."""
        return self.ask({"op": "received"})["datagrams"]

    def close_second(self):
        self.ask({"op": "close"})

    def start_batch(self, requests):
        """Sends the requests in one message; returns a function that waits for their steps, so the agent can work
        while the prober does."""
        self.send({"op": "batch", "requests": requests})
        return lambda: self.receive()["answers"]

    def ask(self, request):
        self.send(request)
        return self.receive()

    def send(self, request):
        if self.broken:
            raise ProberDied(self.broken)
        try:
            self.process.stdin.write(json.dumps(request).encode() + b"\n")
            self.process.stdin.flush()
        except OSError as exc:
            raise ProberDied("prober process: {}".format(exc)) from None

    def receive(self):
        try:
            answer = self.process.stdout.readline()
        except OSError as exc:
            raise ProberDied("prober process: {}".format(exc)) from None
        if not answer:
            raise ProberDied("prober process exited with status {}".format(self.process.wait()))
        try:
            return json.loads(answer)
        except ValueError:
            # Something else wrote to its stdout: every later answer would belong to an earlier request, so the
            # prober is ended, and what it was asked from now on fails (ProberDied), never answered out of turn.
            self.broken = "prober process answered what is not JSON ({!r}): ended".format(answer[:60])
            self.process.kill()
            raise ProberDied(self.broken) from None

    def close(self):
        LIVE.discard(self)
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()


def kill_all():
    """End every prober and worker process at once (the agent is about to exit without closing its labs)."""
    for prober in list(LIVE):
        prober.process.kill()


def unprivileged_user():
    """The name of an unprivileged account to drop to, or None where there is none (or no uids: Windows)."""
    try:
        import pwd
    except ImportError:
        return None
    for name in UNPRIVILEGED_USERS:
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    return None


def drop_privileges(name):
    import pwd
    entry = pwd.getpwnam(name)
    os.setgroups([])
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)


def serve(stdin, stdout):
    options = Options(system_family())
    held = HeldSecond(options)
    try:
        for line in stdin:
            request = json.loads(line)
            op = request.get("op")
            if op is None:
                answer = try_second(options, request)
            elif op == "batch":
                answer = {"answers": try_batch(options, request["requests"])}
            else:
                answer = held.answer(request)
            stdout.write(json.dumps(answer).encode() + b"\n")
            stdout.flush()
    finally:
        held.close()


def main(argv):
    if argv[:1] == ["--user"]:
        drop_privileges(argv[1])
    serve(sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    main(sys.argv[1:])
