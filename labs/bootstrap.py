"""Run on a lab host by the controller before the agent: `python - AGENT_FILE SHA256`, this file on stdin.

Makes the agent's private folder (~/.socklab, mode 0700; on Windows inside the user's profile), removes work
folders that an agent killed outright left behind (POSIX), and prints one JSON line: the Python that ran this
(the agent will use the same), the folder and the room left in it, and whether AGENT_FILE is already there with
that SHA-256, so that the controller pushes the agent only when this host does not have this version.

When this Python runs but socklab cannot work here (the folder is not ours, not a folder, or we may not use it:
`chmod 000 ~/.socklab`, a read-only home), the line is {"problem": why}: the controller says that, instead of
trying other Pythons.
"""
import hashlib
import json
import os
import shutil
import stat
import sys

FOLDER = ".socklab"


class Problem(Exception):
    """Why socklab cannot work on this host, in one line."""


def private_folder():
    folder = os.path.join(os.path.expanduser("~"), FOLDER)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode):
        raise Problem("{} is not a folder".format(folder))
    if hasattr(os, "getuid"):
        if info.st_uid != os.getuid():
            raise Problem("{} belongs to another user".format(folder))
        if info.st_mode & 0o077:
            os.chmod(folder, 0o700)
    return folder


def denied(folder, exc):
    """The one line for an OSError met in the folder: what it is, and the folder's mode when that is the cause."""
    try:
        mode = stat.S_IMODE(os.stat(folder).st_mode)
    except OSError:
        mode = None
    hint = ""
    if mode is not None and mode & 0o700 != 0o700:
        hint = " (its mode is {:03o}: socklab needs 700, `chmod 700 {}`)".format(mode, folder)
    return "cannot use {}: {}{}".format(exc.filename or folder, exc.strerror or exc, hint)


def sha256(path):
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 16), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def alive(pid):
    try:
        os.kill(pid, 0)  # signal 0 only asks (POSIX; on Windows os.kill would end the process)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_orphans(folder):
    """Work folders are named run-<pid>-...; one whose agent is gone was left by an agent killed outright."""
    if not hasattr(os, "getuid"):
        return
    for name in os.listdir(folder):
        parts = name.split("-")
        if parts[0] == "run" and len(parts) > 2 and parts[1].isdigit() and not alive(int(parts[1])):
            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)


def main(agent_file, expected_sha256):
    if sys.version_info < (3, 8):
        sys.exit("socklab: the agent needs Python 3.8 or newer, not {}".format(sys.version.split()[0]))
    folder = os.path.join(os.path.expanduser("~"), FOLDER)
    try:
        folder = private_folder()
        remove_orphans(folder)
        path = os.path.join(folder, agent_file)
        present = sha256(path) == expected_sha256
        free = shutil.disk_usage(folder).free
    except Problem as exc:
        print(json.dumps({"problem": str(exc)}))
        return
    except OSError as exc:
        print(json.dumps({"problem": denied(folder, exc)}))
        return
    print(json.dumps({"python": sys.executable, "python_version": sys.version.split()[0], "folder": folder,
                      "agent": path, "present": present, "free": free, "platform": sys.platform}))


if __name__ == "__main__":
    main(*sys.argv[1:3])
