"""Lab users: plain local accounts that only key-based SSH can log into."""
import os
import pwd
import subprocess
import time

from testbed.errors import LabError

# shadow's tools exit 10 when another one holds the lock on /etc/passwd (another lab coming up or going down)
LOCK_BUSY = 10
LOCK_WAIT = 10.0


def _shadow_tool(argv):
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        result = subprocess.run(argv, capture_output=True, text=True)
        if result.returncode != LOCK_BUSY or time.monotonic() > deadline:
            return result
        time.sleep(0.01)


def add_user(name, home):
    """Create user name with its own group, shell /bin/sh and home (made here, mode 0700, owned by the user)."""
    # useradd would leave the password field "!" (locked), and sshd without PAM refuses a locked account even for
    # a key login: "*" (no password ever matches) is not locked. Set at creation, it saves a usermod -p '*'.
    result = _shadow_tool(["useradd", "--no-create-home", "--home-dir", home, "--shell", "/bin/sh",
                           "--user-group", "--password", "*", name])
    if result.returncode != 0:
        raise LabError(f"useradd {name} failed: {result.stderr.strip() or result.returncode}")
    account = pwd.getpwnam(name)
    os.makedirs(home, mode=0o700, exist_ok=True)
    os.chmod(home, 0o700)
    os.chown(home, account.pw_uid, account.pw_gid)


def remove_user(name):
    """Delete user name and its group, if it exists (userdel refuses while the user has processes: kill them first)."""
    result = _shadow_tool(["userdel", name])
    # 6: no such user
    if result.returncode not in (0, 6):
        raise LabError(f"userdel {name} failed: {result.stderr.strip() or result.returncode}")
