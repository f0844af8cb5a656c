"""The results store: a run directory (formats.rundir) written as results arrive, so that a crash loses nothing
received, by one process at a time (the run's writer lock).

A new run is made whole at once (RunStore.create). An earlier one (run-all --resume, import --run) is first read
and checked without writing a byte (RunStore.existing); only reopen() takes the lock and writes, once every check
of the command has passed: a command that fails leaves the run as it was.
"""
import hashlib
import os
import threading
import time

import collect
from formats import hostlog, manifest as manifest_file, rundir, table
from formats.errors import UserError
from formats.manifest import COMPLETED, PENDING, now
from labs import LABS

AGENT_SOURCES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "labs")
SAVE_EVERY = 1.0  # seconds: how often a run under way brings its manifest's counts up to date


def agent_version():
    """A hash of the agent's source files: the same agent gives the same hash on every controller."""
    digest = hashlib.sha256()
    for name in sorted(os.listdir(AGENT_SOURCES)):
        if name.endswith(".py"):
            with open(os.path.join(AGENT_SOURCES, name), "rb") as stream:
                digest.update(name.encode() + b"\0" + stream.read() + b"\0")
    return digest.hexdigest()[:16]


class RunStore:
    def __init__(self, path, manifest, lock=None):
        self.path, self.manifest, self.lock = path, manifest, lock
        self.run_id = manifest["run_id"]
        self.mutex = threading.Lock()  # the hosts' threads share the manifest
        self.saved = 0.0

    @classmethod
    def create(cls, out, hosts, labs, where=(), inventory=None):
        """A new run under `out`, its lock held, every host pending."""
        run_id = rundir.new_run_id(rundir.made_folder(out, "--out"))
        path = os.path.join(out, run_id)
        os.makedirs(path)
        lock = rundir.Lock(path).acquire()
        store = cls(path, manifest_file.new(run_id, hosts, labs or LABS, where or (), collect.__version__,
                                            agent_version(), inventory), lock)
        store.save()
        return store

    @classmethod
    def existing(cls, path):
        """A stored run read and checked, to be completed or added to; nothing is written (reopen() writes).
        UserError when its files are not a run, it is published, or this agent is not the one it was run with."""
        run = rundir.read_run(path)
        if run.manifest.get("published"):
            raise UserError("a published run cannot be resumed or added to", path=path)
        if run.manifest.get("agent_version") != agent_version():
            raise UserError("the agent changed since this run ({} then, {} now): its results would mix two "
                            "agents; start a new run".format(run.manifest.get("agent_version"), agent_version()),
                            path=os.path.join(path, manifest_file.FILE), field="agent_version")
        store = cls(path, run.manifest)
        store.run, store.signature = run, rundir.signature(path)
        return store

    def check_new_host(self, host, field="--host"):
        """UserError when the run has a host of that name already."""
        if host in self.manifest["hosts"] or os.path.lexists(rundir.log_path(self.path, host)):
            raise UserError("the run already has a host {!r}".format(host), path=self.path, field=field)

    def reopen(self, new_hosts=(), inventory=None):
        """Take the run's lock and mark it reopened (by --resume or an import), with `new_hosts` added and the
        hosts' settings of `inventory` recorded: the first write to an existing run. UserError when another socklab
        writes it, or it changed since it was read."""
        self.lock = rundir.Lock(self.path).acquire()
        if rundir.signature(self.path) != self.signature:
            self.close()
            raise UserError("the run changed while this command checked it: run the command again", path=self.path)
        self.manifest.setdefault("where", [])
        self.manifest["reopened"] = self.manifest.get("reopened", []) + [now()]
        self.manifest["ended"] = None
        for host in new_hosts:
            self.manifest["hosts"][host] = {"status": PENDING, "reason": "", "cases": 0}
        if inventory:
            self.manifest["inventory"] = dict(self.manifest.get("inventory") or {}, **inventory)
        self.save()

    @property
    def unfinished(self):
        """The hosts that did not complete, in manifest order."""
        return [name for name, entry in self.manifest["hosts"].items() if entry.get("status") != COMPLETED]

    def received(self, host):
        """(host facts or None, {lab: [case_id]}) of what the host's log held when the run was read."""
        log = self.run.logs.get(host)
        return (log.facts, log.done()) if log else (None, {})

    def host_log(self, host):
        return hostlog.Writer(rundir.log_path(self.path, host))

    def update_host(self, host, **fields):
        with self.mutex:
            self.manifest["hosts"].setdefault(host, {}).update(fields)
            self.save()

    def case_arrived(self, host, cases):
        """A host's count of cases is now `cases`; the manifest gets it at most every SAVE_EVERY seconds."""
        with self.mutex:
            self.manifest["hosts"][host]["cases"] = cases
            if time.monotonic() - self.saved >= SAVE_EVERY:
                self.save()

    def save(self):
        manifest_file.write(self.path, self.manifest)
        self.saved = time.monotonic()

    def finish(self):
        """Mark the run ended, write results.csv (and its columnar copy) from what every host sent, and let the run
        go (its lock)."""
        with self.mutex:
            self.manifest["ended"] = now()
            self.save()
        run = rundir.read_run(self.path)
        table.write_run_table(table.from_logs(run), self.path, {host: log.facts for host, log in run.logs.items()})
        self.close()

    def close(self):
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    @property
    def completed(self):
        return all(host.get("status") == COMPLETED for host in self.manifest["hosts"].values())
