"""The local transport: this machine, the agent run from the checkout as a subprocess, no SSH."""
import contextlib
import os
import signal
import subprocess
import sys
import tempfile

from collect.errors import TransportError
from collect.transports.protocol import Heartbeat, request_line

AGENT_HOME = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class LocalTransport:
    def __init__(self, host):
        self.host = host
        self.python = host.settings.get("python", sys.executable)
        self.process = None

    def cancel(self):
        """From another thread: end the agent now (Ctrl-C); run_agent's reader then sees its output end."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)

    @contextlib.contextmanager
    def run_agent(self, request):
        """Yields the agent's stdout lines; on exit the agent and its probers are gone, whatever happened."""
        command = [self.python, "-m", "labs", "--serve"]
        # stderr to a file, not a pipe: a chatty agent must not block on a pipe nobody reads until the end.
        with tempfile.TemporaryFile(mode="w+") as errors:
            try:
                self.process = process = subprocess.Popen(
                    command, cwd=AGENT_HOME, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, text=True,
                    start_new_session=True)
            except OSError as exc:
                raise TransportError("cannot start {}: {}".format(self.python, exc.strerror)) from None
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
                    os.killpg(process.pid, signal.SIGKILL)  # the agent and its prober processes: one session
                    process.wait()
                with contextlib.suppress(OSError):  # a pipe to a process that is gone may refuse its last flush
                    process.stdin.close()
                process.stdout.close()
