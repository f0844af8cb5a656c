"""The SSH transport: a lab host reached with Fabric (Invoke + paramiko), honouring ~/.ssh/config.

A run: connect, checking the host key against known_hosts (unknown keys refused unless the user accepts new
ones, changed keys always refused) -> find the host's Python and the agent's private folder (labs/bootstrap.py
fed to it on stdin) -> push the agent's zip if the host lacks this version -> run it with --serve, the request
and then heartbeats on its stdin, its stdout streamed back line by line. Closing the channel, whatever ended the
run, ends the agent on the host (its watchdog), which removes its work folder.

A link that dies without a word (cut, a host powered off) is noticed by SSH keepalives (Keepalive): a request the
server must answer every `keepalive` seconds; no answer for `keepalive_count` of those and the host has failed.
"""
import base64
import contextlib
import hashlib
import io
import json
import os
import re
import shlex
import socket
import threading
import time
from collections import deque

import paramiko
from fabric import Config, Connection

from collect import agent, shells
from collect.errors import TransportError
from collect.transports.protocol import Heartbeat, request_line

DEFAULTS = {"idle_timeout": 120, "run_timeout": None, "keepalive": 5, "keepalive_count": 3}
CONNECT_TIMEOUT = 10  # when neither hosts.yaml nor ~/.ssh/config (ConnectTimeout) sets one
SYSTEM_KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts"
# what a socket or paramiko raises when the link or the server fails
SSH_ERRORS = (OSError, EOFError, paramiko.SSHException)
KNOWN_HOSTS_LOCK = threading.Lock()  # hosts run in threads; two may record a new key at once


def fingerprint(key):
    """OpenSSH's SHA256:... form, so the user can compare it with `ssh-keygen -lf`."""
    digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
    return "{} SHA256:{}".format(key.get_name(), digest)


class UnknownHostKey(paramiko.SSHException):
    pass


class RefuseUnknown(paramiko.MissingHostKeyPolicy):
    """OpenSSH's StrictHostKeyChecking=yes."""

    def __init__(self, known_hosts):
        self.known_hosts = known_hosts

    def missing_host_key(self, client, hostname, key):
        raise UnknownHostKey("unknown host key for {} ({}), not in {}: check the fingerprint, then run again with "
                             "--accept-new to record it".format(hostname, fingerprint(key), self.known_hosts))


class AcceptNew(paramiko.MissingHostKeyPolicy):
    """OpenSSH's StrictHostKeyChecking=accept-new: a host never seen is recorded; a changed key is still refused
    (paramiko raises BadHostKeyException before asking a policy)."""

    def __init__(self, known_hosts):
        self.known_hosts = known_hosts

    def missing_host_key(self, client, hostname, key):
        line = paramiko.hostkeys.HostKeyEntry([hostname], key).to_line()
        with KNOWN_HOSTS_LOCK:
            os.makedirs(os.path.dirname(self.known_hosts) or ".", mode=0o700, exist_ok=True)
            with open(self.known_hosts, "a", encoding="utf-8") as stream:
                stream.write(line)
        client.get_host_keys().add(hostname, key.get_name(), key)


def key_from_environment(name):
    """A private key from the environment variable `name`: its text (as CI secrets give it) or a file's path."""
    value = os.environ.get(name)
    if not value:
        raise TransportError("key_env: environment variable {} is not set".format(name))
    if "PRIVATE KEY-----" not in value:
        return {"key_filename": [os.path.expanduser(value)]}
    for kind in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return {"pkey": kind.from_private_key(io.StringIO(value))}
        except paramiko.SSHException:
            continue
    raise TransportError("key_env: {} holds no private key paramiko can read (without a passphrase)".format(name))


def sftp_path(path):
    """Win32-OpenSSH's SFTP server names C:\\x\\y as /C:/x/y; POSIX paths are used as they are."""
    if re.match(r"^[A-Za-z]:[\\/]", path):
        return "/" + path.replace("\\", "/")
    return path


def command_words(text, shell):
    """The words of a command written in hosts.yaml (python:), split the way that shell's users write it."""
    if shell.name == "sh":
        return shlex.split(text)
    # Windows: backslashes separate path parts instead of escaping; double quotes group words
    return [word[1:-1] if len(word) > 1 and word[0] == word[-1] == '"' else word
            for word in shlex.split(text, posix=False)]


@contextlib.contextmanager
def reported_as(what):
    """The SSH_ERRORS raised inside, as one TransportError line: "<what>: <reason>"."""
    try:
        yield
    except SSH_ERRORS as exc:
        raise TransportError("{}: {}".format(what, exc or type(exc).__name__)) from None


def last_line(text):
    return (text.strip().splitlines() or ["no message"])[-1]


def sent(send):
    """send(), unless the other end is gone already: a command that exits at once (a Python that is not there,
    an agent that fails on start) closes its channel before its input is sent, and what it said on stderr, read
    after, is the reason to report, not paramiko's "Socket is closed"."""
    try:
        send()
    except SSH_ERRORS:
        pass


class Keepalive:
    """OpenSSH's ServerAliveInterval and ServerAliveCountMax for a paramiko transport: every `interval` seconds a
    keepalive@openssh.com request that the server must answer (OpenSSH answers with a failure, which is an answer);
    no answer for `count` intervals and the link is dead: the transport is closed, so whatever reads from it ends,
    and `dead` says why. paramiko's own set_keepalive() asks for no answer, so it cannot tell a dead link."""

    def __init__(self, transport, interval, count):
        self.transport, self.interval, self.count = transport, interval, count
        self.answered = time.monotonic()
        self.dead = None
        self.stopped = threading.Event()
        for target in (self.ask, self.watch):
            threading.Thread(target=target, daemon=True).start()

    def ask(self):
        while not self.stopped.is_set():
            try:
                self.transport.global_request("keepalive@openssh.com", wait=True)  # blocks until answered
            except SSH_ERRORS:
                return
            if not self.transport.is_active():
                return
            self.answered = time.monotonic()
            self.stopped.wait(self.interval)

    def watch(self):
        limit = self.interval * self.count
        while not self.stopped.wait(min(1.0, self.interval)):
            if time.monotonic() - self.answered > limit:
                self.dead = "no answer to SSH keepalives for {:g} s (keepalive {:g} s x {}): host or link down".format(
                    limit, self.interval, self.count)
                self.transport.close()
                return

    def stop(self):
        self.stopped.set()


class SshTransport:
    def __init__(self, host, inventory_hosts=None, accept_new=False):
        self.host = host
        self.settings = dict(DEFAULTS, **host.settings)
        self.inventory_hosts = inventory_hosts or {}
        self.accept_new = accept_new
        self.shell = shells.for_name(self.settings.get("shell") or
                                     ("cmd" if self.settings.get("os") == "windows" else "sh"))
        self.open_connection = None
        self.keepalive = None

    def lost(self, reason):
        """The reason a connection ended: the keepalives' when they declared it dead."""
        return self.keepalive.dead if self.keepalive is not None and self.keepalive.dead else reason

    def cancel(self):
        """From another thread: drop the connection now (Ctrl-C); the agent's watchdog ends it on the host."""
        if self.open_connection is not None:
            self.open_connection.close()

    # -- connecting -------------------------------------------------------------------------------------------

    def connection(self, settings=None):
        """A Fabric Connection for these settings (a jump host is a Connection too), host keys checked."""
        settings = settings or self.settings
        connect_kwargs = {}
        if settings.get("key"):
            connect_kwargs["key_filename"] = [os.path.expanduser(settings["key"])]
        if settings.get("key_env"):
            connect_kwargs.update(key_from_environment(settings["key_env"]))
        connection = Connection(settings.get("address") or settings["name"], user=settings.get("user"),
                                port=settings.get("port"), gateway=self.gateway(settings.get("jump")),
                                connect_timeout=settings.get("connect_timeout"), connect_kwargs=connect_kwargs,
                                config=Config())
        connection.connect_timeout = connection.connect_timeout or CONNECT_TIMEOUT
        # the SSH banner and authentication get the same bound as the TCP connect
        connection.connect_kwargs.update(banner_timeout=connection.connect_timeout,
                                         auth_timeout=connection.connect_timeout)
        self.check_host_keys(connection, settings.get("known_hosts"))
        # A `jump:` hop is a connection() of its own, checked already; the hops Fabric makes from a ProxyJump in
        # ~/.ssh/config are checked here, each against its own ~/.ssh/config entry or the default files.
        hop = None if settings.get("jump") else connection.gateway
        while isinstance(hop, Connection):
            self.check_host_keys(hop, None)
            hop = hop.gateway
        return connection

    def gateway(self, jump):
        """The jump host: an inventory host's name, or [user@]host[:port]; None lets ~/.ssh/config decide."""
        if not jump:
            return None
        if jump in self.inventory_hosts:
            return self.connection(dict(self.inventory_hosts[jump].settings, name=jump))
        user, _, rest = jump.rpartition("@")
        address, _, port = rest.partition(":")
        return self.connection({"name": address, "user": user or None, "port": int(port) if port else None})

    def check_host_keys(self, connection, known_hosts):
        """Fabric accepts any host key by default; socklab does what OpenSSH does."""
        path = os.path.expanduser(known_hosts or (connection.ssh_config.get("userknownhostsfile") or
                                                  "~/.ssh/known_hosts").split()[0])
        for readable in ([path] if known_hosts else [SYSTEM_KNOWN_HOSTS, path]):
            if os.path.exists(readable):
                connection.client.load_system_host_keys(readable)
        connection.client.set_missing_host_key_policy((AcceptNew if self.accept_new else RefuseUnknown)(path))

    @contextlib.contextmanager
    def connected(self):
        connection = self.connection(dict(self.settings, name=self.host.name))
        target = "{}@{}:{}".format(connection.user, connection.host, connection.port)
        try:
            connection.open()
        except UnknownHostKey as exc:
            raise TransportError(str(exc)) from None
        except paramiko.BadHostKeyException as exc:
            raise TransportError("host key for {} has CHANGED ({}, expected {}): refused. If the host was "
                                 "reinstalled, remove its old key from known_hosts".format(
                                     exc.hostname, fingerprint(exc.key), fingerprint(exc.expected_key))) from None
        except paramiko.AuthenticationException as exc:
            raise TransportError("authentication refused for {}: {}".format(target, exc)) from None
        except (socket.timeout, TimeoutError):
            raise TransportError("cannot connect to {}: timed out after {} s".format(
                target, connection.connect_timeout)) from None
        except SSH_ERRORS as exc:
            raise TransportError("cannot connect to {}: {}".format(target, exc or type(exc).__name__)) from None
        self.open_connection = connection
        self.keepalive = Keepalive(connection.client.get_transport(), self.settings["keepalive"],
                                   self.settings["keepalive_count"])
        try:
            yield connection
        finally:
            self.keepalive.stop()
            self.open_connection = None
            hop = connection
            while isinstance(hop, Connection):  # Fabric's close() leaves a jump host's connection open
                hop.close()
                hop = hop.gateway

    # -- installing the agent ---------------------------------------------------------------------------------

    def python_words(self):
        return command_words(self.settings["python"], self.shell)

    def bootstrap_commands(self, arguments):
        if self.settings.get("python"):
            return [self.shell.command(self.python_words() + arguments)]
        found = self.shell.first_python(arguments)
        if found:
            return [found]
        return [self.shell.command(list(candidate) + arguments) for candidate in self.shell.python_candidates]

    def install(self, connection):
        """Run labs/bootstrap.py with the host's Python; push the agent if missing. Returns what it printed."""
        name, data, sha256 = agent.build()
        problem = "no command to try"
        for command in self.bootstrap_commands(["-", name, sha256]):
            status, output, errors = self.execute(connection, command, agent.bootstrap_script().encode())
            if status == 0:
                try:
                    found = json.loads(last_line(output))
                    break
                except ValueError:
                    problem = "unexpected output: {!r}".format(last_line(output)[:80])
            else:
                problem = last_line(errors or output)
        else:
            raise TransportError("no usable Python 3.8+ on the host ({}); set python: in the inventory".format(
                problem))
        if found.get("problem"):  # the host's Python ran, and socklab cannot work there
            raise TransportError("preparing the host: {}".format(found["problem"]))
        if not found["present"]:
            self.push(connection, data, found)
        return found

    @staticmethod
    def push(connection, data, found):
        """Put the agent where the bootstrap said; a push that fails (a full disk: SFTP says only "Failure") leaves
        no partial agent, and says how much room the host had."""
        remote = sftp_path(found["agent"])
        try:
            connection.put(io.BytesIO(data), remote=remote, preserve_mode=False)
        except SSH_ERRORS as exc:
            try:
                connection.sftp().remove(remote)
                removed = "; the partial file is removed"
            except SSH_ERRORS:
                removed = ""
            free = found.get("free")
            room = "" if free is None else "; {:,} bytes were free in {} for the agent's {:,}{}".format(
                free, found["folder"], len(data), " (disk full)" if free < len(data) + (1 << 20) else "")
            raise TransportError("pushing the agent to {}: {}{}{}".format(
                found["agent"], exc or type(exc).__name__, room, removed)) from None

    def execute(self, connection, command, stdin):
        """(exit status, stdout, stderr) of a short command fed `stdin`. Not Fabric's run(): Invoke copies stdin
        one byte per 10 ms (it is built for terminals), which makes a 3 KB script take 30 s."""
        try:
            channel = connection.client.get_transport().open_session()
            try:
                channel.settimeout(self.settings["idle_timeout"])
                channel.exec_command(command)
                sent(lambda: channel.sendall(stdin))
                sent(channel.shutdown_write)
                output = channel.makefile("rb").read().decode("utf-8", "replace")
                errors = channel.makefile_stderr("rb").read().decode("utf-8", "replace")
                return channel.recv_exit_status(), output, errors
            finally:
                channel.close()
        except socket.timeout:
            raise TransportError("preparing the host: no answer for {} s".format(
                self.settings["idle_timeout"])) from None
        except SSH_ERRORS as exc:
            raise TransportError("preparing the host: {}".format(self.lost(exc or type(exc).__name__))) from None

    # -- running it -------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def run_agent(self, request):
        """Yields the agent's stdout lines as they arrive; on exit nothing of the run is left on the host."""
        with self.connected() as connection:
            found = self.install(connection)
            # Fabric's run() waits for a command to end; a stream of lines with a heartbeat beside it is
            # paramiko's channel API, which Fabric itself is built on.
            python = self.python_words() if self.settings.get("python") else [found["python"]]
            with reported_as("starting the agent"):
                channel = connection.client.get_transport().open_session()
            errors = deque(maxlen=20)
            heartbeat = None
            try:
                with reported_as("starting the agent"):
                    channel.exec_command(self.shell.command(python + [found["agent"], "--serve"]))
                sent(lambda: channel.sendall(request_line(dict(request, work_in=found["folder"]))))
                heartbeat = Heartbeat(channel.sendall)
                threading.Thread(target=self.read_errors, args=(channel, errors), daemon=True).start()
                yield self.lines(channel)
                # paramiko gives -1 when the connection ended without the agent's exit status
                status = channel.exit_status if channel.status_event.wait(self.settings["idle_timeout"]) else -1
                if status == -1:
                    raise TransportError(self.lost("connection lost before the agent's exit status arrived"))
                if status != 0:
                    raise TransportError("agent exited with status {}: {}".format(
                        status, errors[-1] if errors else "no message"))
            finally:
                if heartbeat is not None:
                    heartbeat.stop()
                channel.close()  # the agent sees its stdin close and ends itself

    def lines(self, channel):
        idle, limit = self.settings["idle_timeout"], self.settings["run_timeout"]
        deadline = time.monotonic() + limit if limit else None
        stream = channel.makefile("rb")
        while True:
            left = deadline - time.monotonic() if deadline else idle
            if left <= 0:
                raise TransportError("the run took longer than run_timeout ({} s)".format(limit))
            channel.settimeout(min(idle, left))
            try:
                line = stream.readline()
            except socket.timeout:
                if deadline and time.monotonic() >= deadline:
                    continue
                raise TransportError("no output from the agent for {} s: host or link down?".format(idle)) from None
            except SSH_ERRORS as exc:
                raise TransportError(self.lost("connection lost: {}".format(exc or type(exc).__name__))) from None
            if not line:
                if self.keepalive.dead:
                    raise TransportError(self.keepalive.dead)
                return
            yield line.decode("utf-8", "replace")

    @staticmethod
    def read_errors(channel, errors):
        """Keeps the last lines of the agent's stderr, for the reason of a failure."""
        stream = channel.makefile_stderr("rb")
        while not channel.closed:
            try:
                line = stream.readline()
            except socket.timeout:  # the channel's timeout is for stdout's reader; stderr just waits on
                continue
            except SSH_ERRORS:
                return
            if not line:
                return
            errors.append(line.decode("utf-8", "replace").strip())
