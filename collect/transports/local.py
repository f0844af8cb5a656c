"""The local transport: this machine, the agent run from the checkout as a subprocess, no SSH."""
import contextlib
import os
import signal
import subprocess
import sys
import tempfile

from collect.errors import TransportError

AGENT_HOME = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class LocalTransport:
    def __init__(self, host):
        self.host = host
        self.python = host.settings.get("python", sys.executable)

    @contextlib.contextmanager
    def run_agent(self, arguments):
        """Yields the agent's stdout lines; on exit the agent and its probers are gone, whatever happened."""
        command = [self.python, "-m", "labs"] + list(arguments)
        # stderr to a file, not a pipe: a chatty agent must not block on a pipe nobody reads until the end.
        with tempfile.TemporaryFile(mode="w+") as errors:
            try:
                process = subprocess.Popen(command, cwd=AGENT_HOME, stdout=subprocess.PIPE, stderr=errors,
                                           text=True, start_new_session=True)
            except OSError as exc:
                raise TransportError("cannot start {}: {}".format(self.python, exc.strerror)) from None
            try:
                yield process.stdout
                status = process.wait()
                if status != 0:
                    errors.seek(0)
                    last = (errors.read().strip().splitlines() or ["no message"])[-1]
                    raise TransportError("agent exited with status {}: {}".format(status, last))
            finally:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)  # the agent and its prober processes: one session
                    process.wait()
                process.stdout.close()
