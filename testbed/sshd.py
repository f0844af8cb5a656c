"""One real OpenSSH sshd for a lab host: its own config and throwaway host key in its own folder, listening on
address:port, in a network namespace or in this one. Start, stop, kill (as a fault) and re-key it."""
import os
import signal
import socket
import subprocess
import time

from testbed import keys, netns, procs
from testbed.errors import LabError
from testbed.system import SSHD

CONFIG = """\
# written by socklab's testbed: the sshd of one lab host
ListenAddress {listen}
HostKey {host_key}
PidFile {pid_file}
AuthorizedKeysFile {authorized_keys}
AllowUsers {user}
# a lab user is a plain passwd entry; PAM would want a service config we do not own
UsePAM no
# the bed's key files sit in temporary folders whose owners and modes strict modes refuses
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
Subsystem sftp internal-sftp
# a session whose client vanished (a cut link) ends after ~6 s instead of lingering
ClientAliveInterval 2
ClientAliveCountMax 3
# a parallel controller opens many connections and sessions at once
MaxStartups 100:30:200
MaxSessions 50
LogLevel ERROR
"""
START_TIMEOUT = 10.0


class Sshd:
    def __init__(self, folder, address, port, user, authorized_keys, netns=None):
        self.folder, self.address, self.port, self.user = folder, address, port, user
        self.authorized_keys, self.netns = authorized_keys, netns
        self.config = os.path.join(folder, "sshd_config")
        self.host_key = os.path.join(folder, "ssh_host_ed25519_key")
        self.pid_file = os.path.join(folder, "sshd.pid")
        self.log = os.path.join(folder, "sshd.log")

    @property
    def where(self):
        return f"{self.address}:{self.port}" + (f" in {self.netns}" if self.netns else "")

    @property
    def host_public_key(self):
        """The host key as known_hosts holds it: 'ssh-ed25519 AAAA...'."""
        with open(self.host_key + ".pub") as public:
            return " ".join(public.read().split()[:2])

    def known_hosts_line(self):
        host = f"[{self.address}]:{self.port}" if self.port != 22 else self.address
        return f"{host} {self.host_public_key}"

    def start(self, timeout=START_TIMEOUT):
        """Start sshd as a daemon and return once it accepts TCP connections on address:port."""
        os.makedirs(self.folder, mode=0o700, exist_ok=True)
        if not os.path.exists(self.host_key):
            keys.keypair(self.host_key, f"socklab lab host {self.where}")
        listen = f"[{self.address}]:{self.port}" if ":" in self.address else f"{self.address}:{self.port}"
        with open(self.config, "w") as config:
            config.write(CONFIG.format(listen=listen, host_key=self.host_key, pid_file=self.pid_file,
                                       authorized_keys=self.authorized_keys, user=self.user))
        # a pid file left by a killed sshd would pass for the new one
        if os.path.exists(self.pid_file):
            os.remove(self.pid_file)
        argv = [SSHD, "-f", self.config, "-E", self.log]
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns] + argv
        log_start = os.path.getsize(self.log) if os.path.exists(self.log) else 0
        # daemon mode: sshd checks its config, forks and exits 0; only the child binds, then writes the pid file.
        # So exit 0 promises nothing: the child may die next ("Cannot bind any address").
        result = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout)
        if result.returncode != 0:
            raise LabError(f"sshd on {self.where} did not start: {self._error_text(result.stderr, log_start)}")
        deadline = time.monotonic() + timeout
        while not (self.pid() and self._accepts()):
            if not self.listener_pids():
                raise LabError(f"sshd on {self.where} did not start: {self._error_text('', log_start)}")
            if time.monotonic() > deadline:
                raise LabError(f"sshd on {self.where} runs but accepts no connection within {timeout} s: "
                               f"{self._error_text('', log_start)}")
            time.sleep(0.002)

    def _error_text(self, stderr, log_start):
        """sshd's own words: its stderr, else what it logged (-E sends its fatal messages to the log)."""
        text = stderr.strip()
        if not text and os.path.exists(self.log):
            with open(self.log) as log:
                log.seek(log_start)
                text = log.read().strip()
        return " / ".join(text.splitlines()[-3:]) or "no message"

    def _accepts(self):
        """One TCP connect to address:port that gets sshd's banner, made from inside the host's namespace (a cut
        link does not matter)."""
        def connect():
            family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.settimeout(1.0)
                try:
                    probe.connect((self.address, self.port))
                    banner = probe.recv(64)
                    # an identification of our own: a connection closed before it is logged as an error
                    probe.sendall(b"SSH-2.0-socklab-testbed-probe\r\n")
                except OSError:
                    return False
                return banner.startswith(b"SSH-")
        return netns.call_in(self.netns, connect) if self.netns else connect()

    def pid(self):
        """The listener's pid from the pid file, if that process is still our sshd."""
        try:
            with open(self.pid_file) as pid_file:
                pid = int(pid_file.read())
        except (OSError, ValueError):
            return None
        return pid if self.config in procs.cmdline(pid) else None

    def listener_pids(self):
        """The listening sshd: the pid file's process, else (pid file gone) any process started with our config."""
        pid = self.pid()
        if pid:
            return {pid}
        return {pid for pid in procs.pids() if f"-f {self.config} " in procs.cmdline(pid) + " "}

    def stop(self):
        """End the listener and everything it spawned: per-connection sshds and whatever runs in their sessions."""
        procs.kill_tree(self.listener_pids())
        if os.path.exists(self.pid_file):
            os.remove(self.pid_file)

    def kill_sshd(self):
        """A fault: SIGKILL every sshd process (listener, per-connection monitors and session children) but not the
        programs running in the sessions, which see their stdin close."""
        listeners = self.listener_pids()
        # a stopped listener accepts no new connection while we collect its tree
        procs.signal_all(listeners, signal.SIGSTOP)
        tree = procs.descendants(listeners)
        procs.kill({pid for pid in tree if procs.exe(pid) == SSHD})

    def rekey(self):
        """A new host key, and sshd restarted with it (a known_hosts file written before no longer matches)."""
        self.stop()
        for old in (self.host_key, self.host_key + ".pub"):
            if os.path.exists(old):
                os.remove(old)
        self.start()
