"""Captured output: what the agent printed on a host SSH cannot reach, brought by hand (`./socklab import`) and
replayed through the runner as if the host had sent it, so it is checked and stored like any other."""
import contextlib

from collect.errors import TransportError


class CapturedTransport:
    def __init__(self, path):
        self.path = path

    def cancel(self):
        pass

    @contextlib.contextmanager
    def run_agent(self, request):
        try:
            stream = open(self.path, encoding="utf-8", errors="replace")
        except OSError as exc:
            raise TransportError("cannot read {}: {}".format(self.path, exc.strerror)) from None
        with stream:
            yield stream
