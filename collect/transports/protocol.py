"""What every transport says to the agent (`--serve`, labs/session.py): the request line, then a heartbeat.

The heartbeat tells the agent its controller is still there; when it stops (Ctrl-C, a cut link, a dead SSH
server) the agent ends itself and cleans up on the host, so nothing outlives the run there.
"""
import json
import threading

HEARTBEAT_SECONDS = 1.0
WATCHDOG_SECONDS = 15.0  # the agent's patience without a heartbeat; many heartbeats fit in it


def request_line(request):
    """The request as the agent reads it, one JSON line, with the watchdog's patience added."""
    return (json.dumps(dict(request, watchdog=WATCHDOG_SECONDS)) + "\n").encode()


class Heartbeat:
    """Calls send(b"\\n") every HEARTBEAT_SECONDS until stopped; a send that fails ends it quietly (the run's
    reader reports what went wrong)."""

    def __init__(self, send):
        self.send = send
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.beat, daemon=True)
        self.thread.start()

    def beat(self):
        while not self.stopped.wait(HEARTBEAT_SECONDS):
            try:
                self.send(b"\n")
            except (OSError, EOFError, ValueError):
                return

    def stop(self):
        self.stopped.set()
        self.thread.join()
