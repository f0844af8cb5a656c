"""What the test beds need from this machine: OpenSSH's server and key tool, iproute2, and gVisor's runsc.

require() checks the first three and, as root on Debian/Ubuntu, installs what is missing without letting the install
start the distribution's own sshd: the labs run their own sshds, and a system-wide one on port 22 is not ours to add.
require_runsc() does the same for Debian's runsc package (gVisor: a lab host whose sockets are netstack's).
"""
import os
import shutil
import signal
import subprocess

from testbed.errors import LabError

SSHD = "/usr/sbin/sshd"
PACKAGES = ["openssh-server", "openssh-client", "iproute2"]
POLICY_RC_D = "/usr/sbin/policy-rc.d"
# Debian's maintainer scripts ask invoke-rc.d (and deb-systemd-invoke) before starting a service; 101 is "no".
POLICY_DENY = "#!/bin/sh\n# written by socklab's testbed while it installs openssh-server: start no service\nexit 101\n"
# sshd's privilege-separation directory; a distribution's service unit makes it, our own sshds need it too.
PRIVSEP_DIR = "/run/sshd"
# Debian's runsc package (bookworm: 0.0~20221219.0) installs the one binary here; it starts no service.
RUNSC = "/usr/bin/runsc"


def missing():
    """The tools not found on this machine."""
    tools = {"sshd": os.access(SSHD, os.X_OK), "ssh-keygen": shutil.which("ssh-keygen"), "ip": shutil.which("ip")}
    return [tool for tool, found in tools.items() if not found]


def require():
    """Make sure sshd, ssh-keygen and ip exist (installing them if we may) and sshd's privsep dir is there."""
    absent = missing()
    if absent:
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            raise LabError(f"{', '.join(absent)} not found: install openssh-server, openssh-client and iproute2 "
                           "(as root: apt-get install openssh-server openssh-client iproute2)")
        install()
        absent = missing()
        if absent:
            raise LabError(f"{', '.join(absent)} still not found after apt-get: install openssh-server, "
                           "openssh-client and iproute2 by hand")
    os.makedirs(PRIVSEP_DIR, mode=0o755, exist_ok=True)


def install():
    """apt-get install the packages with every service start refused; stop whatever still came up on port 22."""
    before = port_22_listeners()
    created_policy = not os.path.exists(POLICY_RC_D)
    if created_policy:
        with open(POLICY_RC_D, "w") as policy:
            policy.write(POLICY_DENY)
        os.chmod(POLICY_RC_D, 0o755)
    try:
        apt_install(PACKAGES)
    finally:
        if created_policy:
            os.remove(POLICY_RC_D)
    stop_new_listeners(before)


def require_runsc():
    """The path of Debian's runsc, installed with apt-get when missing and we may (root, apt-get); LabError saying
    how to install it otherwise."""
    if not os.access(RUNSC, os.X_OK):
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            raise LabError(f"{RUNSC} not found: install gVisor's runsc (as root: apt-get install runsc)")
        apt_install(["runsc"])
        if not os.access(RUNSC, os.X_OK):
            raise LabError(f"{RUNSC} still not found after apt-get install runsc: install it by hand")
    return RUNSC


def apt_install(packages):
    """apt-get install `packages` (no recommends); LabError with apt-get's last line if it cannot."""
    arguments = ["install", "-y", "--no-install-recommends", *packages]
    result = apt_get(*arguments)
    if result.returncode != 0:
        # A fresh image has no package lists yet: fetch them once and try again.
        apt_get("update")
        result = apt_get(*arguments)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["exit status " + str(result.returncode)])[-1]
        raise LabError(f"apt-get could not install {' '.join(packages)}: {last}")


def apt_get(*args):
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return subprocess.run(["apt-get", "-q", "-o", "Dpkg::Options::=--force-confdef",
                           "-o", "Dpkg::Options::=--force-confold", *args],
                          env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)


def port_22_listeners():
    """Pids of the processes holding a listening TCP socket on port 22 in this network namespace."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as rows:
                next(rows)
                for row in rows:
                    fields = row.split()
                    # local address is HEX_IP:HEX_PORT; state 0A is LISTEN
                    if fields[1].endswith(":0016") and fields[3] == "0A":
                        inodes.add(fields[9])
        except FileNotFoundError:
            continue
    pids = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    pids.add(int(pid))
                    break
        except OSError:
            continue
    return pids


def stop_new_listeners(before):
    """Undo a service start that got past policy-rc.d: systemd's socket/service, or a stray sshd."""
    for pid in port_22_listeners() - before:
        if pid == 1 and shutil.which("systemctl"):
            subprocess.run(["systemctl", "stop", "ssh.socket", "ssh.service"], capture_output=True)
        else:
            os.kill(pid, signal.SIGTERM)
