"""The local transport: this machine, the agent run from the checkout as a subprocess, no SSH.

A host's `launcher` setting is a command the agent runs under (collect.inventory.launcher_words): gVisor's
`runsc --network=none do`, `ip netns exec NAME`, `unshare -n`, `sudo -u USER`. It is run as a list of words, never
by a shell. The agent, its launcher and everything they start are one process session: at the end, or on cancel(),
the session is killed. A launcher's own scratch files (runsc's sandbox root) go to a folder of the transport's
(TMPDIR), removed at the end, so a launcher killed before it could clean up leaves nothing either; a folder left by a
controller that was itself killed outright is removed by the next one (labs.bootstrap.remove_orphans).

Under runsc the transport also asks `runsc --version` and passes it to the agent in the request (`launcher`), since
gVisor's release is visible nowhere inside the sandbox: the host facts name it (labs/hostfacts.py).
"""
import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile

from collect.errors import TransportError
from collect.inventory import launcher_words
from collect.transports.protocol import Heartbeat, request_line
from labs.bootstrap import remove_orphans

AGENT_HOME = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAUNCHER_FOLDERS = "socklab-launcher"  # under the temporary folder: one run-<pid>-... folder per agent started
VERSION_TIMEOUT = 30  # seconds for `runsc --version`


def implementation_version(words):
    """What the launcher says of the implementation it runs the agent on: `runsc --version`'s first line for
    gVisor's runsc ("runsc version 0.0~20221219.0"), else "" (the agent's own facts say it all)."""
    if os.path.basename(words[0]) != "runsc":
        return ""
    try:
        done = subprocess.run([words[0], "--version"], capture_output=True, text=True, timeout=VERSION_TIMEOUT,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TransportError("cannot ask {} --version: {}".format(words[0], exc)) from None
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise TransportError("{} --version exited with status {}".format(words[0], done.returncode))
    return lines[0]


# Others may pass through, not list: runsc's sandbox, which drops its privileges, must reach its root folder inside.
LAUNCHER_FOLDER_MODE = 0o711


def launcher_folder():
    """A folder for a launcher's scratch files; earlier ones whose controller is gone are removed first."""
    parent = os.path.join(tempfile.gettempdir(), LAUNCHER_FOLDERS)
    os.makedirs(parent, exist_ok=True)
    os.chmod(parent, LAUNCHER_FOLDER_MODE)
    remove_orphans(parent)
    folder = tempfile.mkdtemp(prefix="run-{}-".format(os.getpid()), dir=parent)
    os.chmod(folder, LAUNCHER_FOLDER_MODE)
    return folder


class LocalTransport:
    def __init__(self, host):
        self.host = host
        self.python = host.settings.get("python", sys.executable)
        self.launcher = launcher_words(host.settings["launcher"]) if "launcher" in host.settings else []
        self.process = None

    def cancel(self):
        """From another thread: end the agent now (Ctrl-C); run_agent's reader then sees its output end."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)

    @contextlib.contextmanager
    def run_agent(self, request):
        """Yields the agent's stdout lines; on exit the agent, its probers and its launcher are gone, whatever
        happened."""
        command = self.launcher + [self.python, "-m", "labs", "--serve"]
        environment, scratch = None, None
        if self.launcher:
            request = dict(request, launcher={"command": shlex.join(self.launcher),
                                              "version": implementation_version(self.launcher)})
            scratch = launcher_folder()
            environment = dict(os.environ, TMPDIR=scratch)
        try:
            yield from self.agent_lines(command, environment, request)
        finally:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)

    def agent_lines(self, command, environment, request):
        """The agent's stdout lines, from its start to its exit (a TransportError if it failed)."""
        # stderr to a file, not a pipe: a chatty agent must not block on a pipe nobody reads until the end.
        with tempfile.TemporaryFile(mode="w+") as errors:
            try:
                self.process = process = subprocess.Popen(
                    command, cwd=AGENT_HOME, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, text=True,
                    start_new_session=True, env=environment)
            except OSError as exc:
                raise TransportError("cannot start {}: {}".format(command[0], exc.strerror)) from None
            heartbeat = None
            try:
                process.stdin.buffer.write(request_line(request))
                process.stdin.flush()
                heartbeat = Heartbeat(lambda beat: (process.stdin.buffer.write(beat), process.stdin.flush()))
                yield process.stdout
                status = process.wait()
                if status != 0:
                    errors.seek(0)
                    last = (errors.read().strip().splitlines() or ["no message"])[-1]
                    raise TransportError("agent exited with status {}: {}".format(status, last))
            finally:
                if heartbeat is not None:
                    heartbeat.stop()
                if process.poll() is None:
                    # the agent, its prober processes and its launcher's (runsc's gofer): one session
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
                with contextlib.suppress(OSError):  # a pipe to a process that is gone may refuse its last flush
                    process.stdin.close()
                process.stdout.close()
