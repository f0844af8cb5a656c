"""`import`: agent output captured by hand on hosts SSH cannot reach, stored as a run (or added to one).

PATH is one file (its host named by --host) or a folder of <host>.jsonl files, each a host named by its file.
Each file is read and checked whole first (formats.hostlog, as a stored log is): one that cannot be read, is not
UTF-8, holds a line that is not a record of the agent, begins with something else than the host's facts, or names
a host the run already has, is a bad file, reported in one line; the good ones are stored. A file cut short (its
last line incomplete, or no end record) is good: it is stored as a failed host with the cases it holds. Nothing is
written (no run made, none reopened) unless at least one file is good.
"""
import glob
import os

from collect.inventory import Host
from collect.runner import Job, run_hosts
from collect.store import RunStore
from collect.transports.captured import CapturedTransport
from formats import hostlog, rundir
from formats.errors import UserError
from formats.hostlog import host_name_problem


def captured_files(path, host):
    """[(host, file)] of PATH; UserError when PATH is neither a file nor a folder of <host>.jsonl files."""
    if os.path.isdir(path):
        if host:
            raise UserError("a folder's files are named by their host (<host>.jsonl): leave --host out",
                            field="--host")
        files = sorted(glob.glob(os.path.join(glob.escape(path), "*" + hostlog.SUFFIX)))
        if not files:
            raise UserError("no <host>{} files here".format(hostlog.SUFFIX), path=path)
        return [(os.path.basename(file)[:-len(hostlog.SUFFIX)], file) for file in files]
    if not os.path.lexists(path):
        raise UserError("no such file or folder", path=path)
    if not host:
        raise UserError("name the host this output came from: --host NAME", field="--host")
    return [(host, path)]


def checked_file(host, path, store, field):
    """UserError when `path` cannot be stored as host `host` (see the module's docstring)."""
    problem = host_name_problem(host)
    if problem:
        raise UserError(problem, path=None if field else path, field=field)
    log = hostlog.read(path)
    if log.facts is None:
        raise UserError("no host record: not the output of a socklab agent (python3 socklab-agent.pyz > FILE)",
                        path=path)
    if store is not None:
        store.check_new_host(host, field=field or "host")


def import_output(path, host=None, run=None, out="results"):
    """(the store the good files went into, or None when none was good; the one-line problems of the bad ones).
    UserError when PATH or --run cannot be used at all."""
    files = captured_files(path, host)
    store = RunStore.existing(rundir.resolve(run, out)) if run else None
    good, problems = [], []
    for name, file in files:
        try:
            checked_file(name, file, store, "--host" if host else None)
        except UserError as exc:
            problems.append(str(exc))
        else:
            good.append((name, file))
    if not good:
        return None, problems
    names = [name for name, _ in good]
    if store is None:
        store = RunStore.create(out, names, [])
    else:
        store.reopen(new_hosts=names)
    paths = dict(good)
    run_hosts([Job(Host(name), {}) for name in names], store, lambda target: CapturedTransport(paths[target.name]))
    return store, problems
