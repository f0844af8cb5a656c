"""The results store: one directory per run, written as results arrive so that a crash loses nothing received.

    <out>/<run_id>/manifest.json   hosts, labs, start/end, each host's status and reason, tool and agent version
    <out>/<run_id>/<host>.jsonl    the agent's lines for that host, verbatim, each flushed as it arrives
    <out>/<run_id>/results.csv     the tidy table (analysis.results), written when the run ends
"""
import datetime
import hashlib
import json
import os
import threading

import collect
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
        self.stream = open(path, "a", encoding="utf-8")

    def write(self, line):
        self.stream.write(line if line.endswith("\n") else line + "\n")
        self.stream.flush()

    def close(self):
        self.stream.close()


class RunStore:
    def __init__(self, out, hosts, labs, run_id=None):
        os.makedirs(out, exist_ok=True)
        self.run_id = run_id or new_run_id(out)
        self.path = os.path.join(out, self.run_id)
        os.makedirs(self.path, exist_ok=True)
        self.lock = threading.Lock()
        self.manifest = {
            "run_id": self.run_id, "tool_version": collect.__version__, "agent_version": agent_version(),
            "started": now(), "ended": None, "labs": list(labs or LABS),
            "hosts": {name: {"status": PENDING, "reason": "", "cases": 0} for name in hosts},
        }
        self.save()

    def host_log(self, host):
        return HostLog(os.path.join(self.path, host + ".jsonl"))

    def update_host(self, host, **fields):
        with self.lock:
            self.manifest["hosts"][host].update(fields)
            self.save()

    def save(self):
        """Replace manifest.json whole: a reader never sees half of it."""
        temporary = os.path.join(self.path, "manifest.json.tmp")
        with open(temporary, "w", encoding="utf-8") as stream:
            json.dump(self.manifest, stream, indent=2)
        os.replace(temporary, os.path.join(self.path, "manifest.json"))

    def finish(self):
        """Mark the run ended and write results.csv from what every host sent."""
        from analysis.results import load_run
        with self.lock:
            self.manifest["ended"] = now()
            self.save()
        load_run(self.path).to_csv(os.path.join(self.path, "results.csv"), index=False)

    @property
    def completed(self):
        return all(host["status"] == COMPLETED for host in self.manifest["hosts"].values())
