"""Run directories: where runs are, the newest, a run read whole, and one writer per run at a time.

    <out>/<run_id>/manifest.json   formats.manifest
    <out>/<run_id>/<host>.jsonl    formats.hostlog, one per host
    <out>/<run_id>/results.csv     formats.table, written when the run ends
    <out>/<run_id>/results.parquet formats.table's columnar copy of results.csv, written just after it
    <out>/<run_id>/writer.lock     held (flock) by the one process that writes the run: run-all, a resume, an import

A run read here is what its files say, the host logs first: each host's count of cases is its log's, and a host
left `running` by a controller that no longer holds the lock (killed) reads as `failed`, with that reason.
"""
import datetime
import fcntl
import glob
import os
from typing import NamedTuple

from formats import hostlog, manifest as manifest_file
from formats.errors import UserError
from formats.manifest import FAILED, RUNNING

LOCK = "writer.lock"
TABLE = "results.csv"  # formats.table's
COLUMNAR = "results.parquet"  # and its columnar copy
KILLED = "the controller ended before this host did (killed?); --resume runs what is missing"


class Run(NamedTuple):
    path: str
    manifest: dict        # checked, each host's count and status as its log says
    logs: dict            # host -> its HostLog, for the hosts whose log holds a host record


def log_path(run_dir, host):
    return os.path.join(run_dir, host + hostlog.SUFFIX)


def read_run(run_dir, with_logs=True):
    """The Run of a directory, every file checked; UserError (file:line: field: problem) at the first fault.
    `with_logs=False` reads the manifest alone (logs stays empty, the counts are the manifest's): enough to find a
    current results.csv."""
    manifest = manifest_file.read(run_dir)
    if not with_logs:
        return Run(run_dir, manifest, {})
    logs = {}
    for host in manifest["hosts"]:
        path = log_path(run_dir, host)
        if os.path.lexists(path):
            log = hostlog.read(path)
            if log.facts is not None:
                logs[host] = log
    writing = writer_active(run_dir)
    hosts = {}
    for host, entry in manifest["hosts"].items():
        entry = dict(entry, cases=len(logs[host].cases) if host in logs else 0)
        if entry.get("status") == RUNNING and not writing:
            entry.update(status=FAILED, reason=KILLED)
        hosts[host] = entry
    return Run(run_dir, dict(manifest, hosts=hosts), logs)


def read_manifest(run_dir):
    """The run's manifest, checked, its counts true: a run that ended has them; one that did not (under way, or
    its controller killed) takes them from its logs."""
    run = read_run(run_dir, with_logs=False)
    return run.manifest if run.manifest.get("ended") is not None else read_run(run_dir).manifest


def signature(run_dir):
    """What the run's record files are now (name, size, modification time): equal signatures, the same run."""
    names = [manifest_file.FILE, TABLE, COLUMNAR] + [name for name in os.listdir(run_dir) if name.endswith(hostlog.SUFFIX)]
    found = []
    for name in sorted(names):
        try:
            info = os.stat(os.path.join(run_dir, name))
        except FileNotFoundError:
            continue
        found.append((name, info.st_size, info.st_mtime_ns))
    return found


def run_dirs(folder):
    """The run directories under `folder`, oldest first (run ids sort by time)."""
    return sorted(os.path.dirname(path) for path in glob.glob(os.path.join(glob.escape(folder), "*",
                                                                            manifest_file.FILE)))


def latest_run(out):
    """The newest run directory under `out`."""
    runs = run_dirs(out)
    if not runs:
        raise UserError("no runs here: run `./socklab run-all` first", path=out)
    return runs[-1]


def resolve(run, out):
    """A run given on the command line: its directory, or its id under `out`; UserError when it is neither."""
    for candidate in (run, os.path.join(out, run)):
        if os.path.isdir(candidate):
            return candidate
    raise UserError("not a run directory (neither a directory nor a run id under {})".format(out), path=run)


def made_folder(path, field):
    """`path`, made if it is not there; UserError (naming the option `field`) when it cannot be a folder."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise UserError("cannot be a folder: {}".format(exc.strerror or exc), path=path, field=field) from None
    return path


def new_run_id(out):
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%SZ")
    run_id, count = stamp, 1
    while os.path.exists(os.path.join(out, run_id)):
        count += 1
        run_id = "{}-{}".format(stamp, count)
    return run_id


class Lock:
    """The run's writer lock: an exclusive flock on <run>/writer.lock while the run is written. A second writer
    is refused at once, with one line; the lock ends with its process, however that ends."""

    def __init__(self, run_dir):
        self.run_dir, self.stream = run_dir, None

    def acquire(self):
        stream = open(os.path.join(self.run_dir, LOCK), "a")  # "a": an existing lock file is not touched
        try:
            fcntl.flock(stream, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            stream.close()
            raise UserError("another socklab is writing this run now (run-all, --resume or import): wait for it "
                            "to end", path=self.run_dir) from None
        self.stream = stream
        return self

    def release(self):
        if self.stream is not None:
            self.stream.close()  # closing the file ends its flock
            self.stream = None


def writer_active(run_dir):
    """Whether a process holds the run's writer lock now (a reader's question: it takes no lock)."""
    try:
        stream = open(os.path.join(run_dir, LOCK))
    except OSError:
        return False
    with stream:
        try:
            fcntl.flock(stream, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(stream, fcntl.LOCK_UN)
        return False
