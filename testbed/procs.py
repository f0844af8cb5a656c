"""Processes as /proc shows them: the tree below a process, who runs where, and killing a tree without escapes."""
import os
import signal
import time

from testbed.errors import LabError


def pids():
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def stat(pid):
    """(state letter, parent pid) of a process, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            text = file.read()
    except OSError:
        return None
    # the command name in parentheses may itself hold spaces and parentheses: split after the last ')'
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[1])


def cmdline(pid):
    """The command line joined by spaces ('' for a zombie, a kernel thread or a gone process)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            return file.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def exe(pid):
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def uid(pid):
    """The real user id (/proc/PID's owner would say root for a process that made itself non-dumpable)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def descendants(roots):
    """The roots that still live and every process below them, read from /proc in one pass."""
    children = {}
    for pid in pids():
        info = stat(pid)
        if info:
            children.setdefault(info[1], []).append(pid)
    found, todo = set(), [root for root in roots if alive(root)]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, ()))
    return found


def alive(pid):
    """True while the process runs (a zombie has exited: it holds no sockets or files any more)."""
    info = stat(pid)
    return info is not None and info[0] not in "ZX"


def signal_all(targets, signum):
    for pid in targets:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def kill(targets, timeout=5.0):
    """SIGKILL the processes and wait, bounded, until each has exited (this machine's init reaps zombies late)."""
    signal_all(targets, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in targets):
        if time.monotonic() > deadline:
            raise LabError(f"processes {sorted(p for p in targets if alive(p))} still run {timeout} s after SIGKILL")
        time.sleep(0.002)


def kill_tree(roots, timeout=5.0):
    """Kill the roots and everything below them. The tree is frozen (SIGSTOP) until no new member shows up, so a
    process forked while we look cannot escape, and only then killed: a dead parent's children would be re-parented
    out of the tree."""
    frozen = set()
    while True:
        tree = descendants(set(roots) | frozen)
        new = tree - frozen
        if not new:
            break
        signal_all(new, signal.SIGSTOP)
        frozen |= new
    kill(frozen, timeout)
    return frozen
