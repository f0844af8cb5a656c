"""The agent under a controller (`--serve`): what it is asked comes on stdin, and it leaves nothing behind.

The first stdin line is the request, one JSON object: {"labs": [...], "where": [...], "skip": {lab: [case_id]},
"facts": bool, "work_in": folder or null, "watchdog": seconds, "launcher": {"command", "version"} (the local
transport's, where the agent runs under one: labs/hostfacts.py), "why": {...} (`./socklab why`: labs/why.py)}.
After it the controller sends a heartbeat line every second or so. The agent works in a private temporary folder
inside `work_in` (every tempfile the labs make goes there) and removes it when it ends. If stdin closes or stays
silent for `watchdog` seconds (the controller was interrupted, its link was cut, the SSH server died) the agent
ends its prober processes, removes its folder
and exits at once with status 3: nothing of it keeps running on the host.
"""
import json
import os
import shutil
import sys
import tempfile
import threading

from labs import prober

WATCHDOG_DEFAULT = 15.0
ABANDONED = 3  # exit status when the controller went away


def read_request(stream):
    line = stream.readline()
    try:
        request = json.loads(line)
    except ValueError:
        raise ValueError("the first line on stdin must be the request (JSON), not {!r}".format(line[:80])) from None
    if not isinstance(request, dict):
        raise ValueError("the request must be a JSON object")
    return request


class Session:
    def __init__(self, request, stdin):
        self.folder = tempfile.mkdtemp(prefix="run-{}-".format(os.getpid()), dir=request.get("work_in"))
        tempfile.tempdir = self.folder  # the labs' scratch files land in the folder removed at the end
        self.stdin = stdin
        self.silence = float(request.get("watchdog") or WATCHDOG_DEFAULT)
        self.heard = threading.Event()
        self.closed = threading.Event()
        self.abandoning = threading.Event()
        for watch in (self.listen, self.watch):
            threading.Thread(target=watch, daemon=True).start()

    def listen(self):
        """Each stdin line is a heartbeat; end of file means the controller is gone."""
        while self.stdin.readline():
            self.heard.set()
        self.closed.set()
        self.heard.set()

    def watch(self):
        while self.heard.wait(self.silence) and not self.closed.is_set():
            self.heard.clear()
        self.abandon("stdin closed" if self.closed.is_set() else "no heartbeat for {:g} s".format(self.silence))

    def abandon(self, why):
        self.abandoning.set()
        try:
            prober.kill_all()
            self.remove_folder()
            sys.stderr.write("socklab agent: the controller went away ({}); stopped and cleaned up\n".format(why))
            sys.stderr.flush()
        finally:  # a stderr the controller took with it may refuse the message: exit all the same
            os._exit(ABANDONED)  # from a watcher thread: the main thread may be anywhere in a case

    def remove_folder(self):
        tempfile.tempdir = None
        shutil.rmtree(self.folder, ignore_errors=True)

    def close(self):
        """The agent's end (its `finally`). While the watcher abandons the run, the main thread, which may have
        failed on a worker the watcher killed, waits for the watcher to end the process with ABANDONED."""
        if self.abandoning.is_set():
            threading.Event().wait()
        self.remove_folder()
