"""The results store: one directory per run, written as results arrive so that a crash loses nothing received.

    <out>/<run_id>/manifest.json   hosts, labs, start/end, each host's status and reason, tool and agent version
    <out>/<run_id>/<host>.jsonl    the agent's lines for that host, verbatim, each flushed as it arrives
    <out>/<run_id>/results.csv     the tidy table (analysis.results), written when the run ends

A run that did not complete is reopened by `RunStore.reopen` (run-all --resume): each host that did not complete
runs again, without the cases its <host>.jsonl already holds, and appends to it.
"""
import datetime
import hashlib
import json
import os
import threading

import collect
from formats.errors import UserError
from labs import LABS

AGENT_SOURCES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "labs")
# Host statuses in the manifest; only "completed" means every planned case came back.
PENDING, RUNNING, COMPLETED, FAILED = "pending", "running", "completed", "failed"


def agent_version():
    """A hash of the agent's source files: the same agent gives the same hash on every controller."""
    digest = hashlib.sha256()
    for name in sorted(os.listdir(AGENT_SOURCES)):
        if name.endswith(".py"):
            with open(os.path.join(AGENT_SOURCES, name), "rb") as stream:
                digest.update(name.encode() + b"\0" + stream.read() + b"\0")
    return digest.hexdigest()[:16]


def now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def new_run_id(out):
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%SZ")
    run_id, count = stamp, 1
    while os.path.exists(os.path.join(out, run_id)):
        count += 1
        run_id = "{}-{}".format(stamp, count)
    return run_id


class HostLog:
    """<host>.jsonl, appended line by line; each line reaches the file before the next is read."""

    def __init__(self, path):
        self.stream = open(path, "a+b")
        self.drop_cut_line()

    def drop_cut_line(self):
        """A last line without its newline was cut short by a crash: appending after it would glue two lines."""
        size = self.stream.seek(0, os.SEEK_END)
        if size == 0:
            return
        self.stream.seek(max(0, size - (1 << 16)))
        tail = self.stream.read()
        if not tail.endswith(b"\n"):
            self.stream.truncate(size - len(tail) + tail.rfind(b"\n") + 1)

    def write(self, line):
        self.stream.write((line if line.endswith("\n") else line + "\n").encode("utf-8"))
        self.stream.flush()

    def close(self):
        self.stream.close()


class RunStore:
    def __init__(self, out, hosts, labs, where=(), run_id=None):
        os.makedirs(out, exist_ok=True)
        self.run_id = run_id or new_run_id(out)
        self.path = os.path.join(out, self.run_id)
        os.makedirs(self.path, exist_ok=True)
        self.lock = threading.Lock()
        self.manifest = {
            "run_id": self.run_id, "tool_version": collect.__version__, "agent_version": agent_version(),
            "started": now(), "ended": None, "labs": list(labs or LABS), "where": list(where or ()),
            "hosts": {name: {"status": PENDING, "reason": "", "cases": 0} for name in hosts},
        }
        self.save()

    @classmethod
    def reopen(cls, path):
        """An existing run, to complete it; UserError when it cannot be resumed with this agent."""
        from analysis.results import read_manifest
        store = cls.__new__(cls)
        store.path, store.lock = path, threading.Lock()
        store.manifest = read_manifest(path)
        store.run_id = store.manifest["run_id"]
        if store.manifest.get("published"):
            raise UserError("a published run cannot be resumed", path=path)
        if store.manifest.get("agent_version") != agent_version():
            raise UserError("the agent changed since this run ({} then, {} now): its results would mix two "
                            "agents; start a new run".format(store.manifest.get("agent_version"), agent_version()),
                            path=os.path.join(path, "manifest.json"), field="agent_version")
        store.manifest.setdefault("where", [])
        store.manifest["reopened"] = store.manifest.get("reopened", []) + [now()]  # by --resume or import
        store.manifest["ended"] = None
        store.save()
        return store

    def add_host(self, host):
        """One more host in this run (an imported one); it must not have a log here already."""
        if host in self.manifest["hosts"]:
            raise UserError("the run already has a host {!r}".format(host), path=self.path)
        self.update_host(host, status=PENDING, reason="", cases=0)

    @property
    def unfinished(self):
        """The hosts that did not complete, in manifest order."""
        return [name for name, entry in self.manifest["hosts"].items() if entry["status"] != COMPLETED]

    def received(self, host):
        """(host facts, {lab: [case_id]}) of what <host>.jsonl already holds."""
        from analysis.results import read_host_log
        path = os.path.join(self.path, host + ".jsonl")
        if not os.path.exists(path):
            return {}, {}
        facts, cases = read_host_log(path)
        done = {}
        for case in cases:
            done.setdefault(case["lab"], []).append(case["case_id"])
        return facts, done

    def host_log(self, host):
        return HostLog(os.path.join(self.path, host + ".jsonl"))

    def update_host(self, host, **fields):
        with self.lock:
            self.manifest["hosts"].setdefault(host, {}).update(fields)
            self.save()

    def save(self):
        """Replace manifest.json whole: a reader never sees half of it."""
        temporary = os.path.join(self.path, "manifest.json.tmp")
        with open(temporary, "w", encoding="utf-8") as stream:
            json.dump(self.manifest, stream, indent=2)
        os.replace(temporary, os.path.join(self.path, "manifest.json"))

    def finish(self):
        """Mark the run ended and write results.csv from what every host sent."""
        from analysis.results import TABLE, load_run, write_csv
        with self.lock:
            self.manifest["ended"] = now()
            self.save()
        write_csv(load_run(self.path, from_logs=True), os.path.join(self.path, TABLE))

    @property
    def completed(self):
        return all(host["status"] == COMPLETED for host in self.manifest["hosts"].values())
