"""A lab host with another kernel: Debian 12 (Linux 6.1) in a QEMU virtual machine on this machine, reached by SSH
on a forwarded port of 127.0.0.1 and described by an inventory (hosts.yaml) in socklab's format.

build_image() makes the VM's disk once and caches it: debootstrap of Debian 12 with its kernel, OpenSSH and
Python, configured as a lab host (a lab user, key-only sshd, DHCP on the first NIC), with an sshd host key made at
build time whose public half is kept beside the image, so the controller checks it strictly. The root file system
goes into a sparse raw image with `mkfs.ext4 -d`; the kernel and initrd are copied out beside it and booted
directly (no bootloader). A cache entry is named by a hash of the recipe: a changed recipe builds a new one.

Vm.up() boots the image under QEMU with TCG (this machine's KVM cannot run it) and -snapshot, so the cached image is
never written. Each VM gets a throwaway client key, handed to the guest through QEMU's fw_cfg: a boot unit in the
image installs it as the lab user's and root's authorized_keys before sshd starts (the inventory logs in as root,
so that the agent measures the other_user prober as it does on this machine). The caller's folder holds vm.json,
hosts.yaml, the client key, known_hosts, the serial console's log, QEMU's pid file and its QMP socket. Vm.load()
finds a VM again; down() powers it off (ACPI power button, then signals) and removes the folder's files.
"""
import collections
import glob
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass

from testbed import keys, procs, records, system
from testbed.errors import LabError
from testbed.lab import free_port, yaml_text

QEMU = "/usr/bin/qemu-system-x86_64"
DEBOOTSTRAP = "/usr/sbin/debootstrap"
# the Debian packages that provide them
HOST_PACKAGES = ["qemu-system-x86", "debootstrap"]
DEFAULT_CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "socklab", "vm")
DEFAULT_MIRROR = "http://deb.debian.org/debian"

# --- the guest: everything that shapes the image is here, and the cache key is a hash of it ---------------------

SUITE = "bookworm"
# minbase plus what a system booted by its kernel needs to come up networked and reachable: init, the device
# manager, the module loader, and D-Bus for logind, which turns the ACPI power button into a clean shutdown
GUEST_PACKAGES = ["linux-image-amd64", "openssh-server", "python3", "iproute2", "systemd-sysv", "udev", "kmod",
                  "dbus"]
GUEST_USER = "lab"
AGENT_USER = "root"  # the inventory's user: see SSHD_CONFIG
GUEST_HOSTNAME = "debian12-vm"
IMAGE_SIZE = "2G"
# fw_cfg names a guest may read must start with opt/
FW_CFG_KEYS = "opt/socklab/authorized_keys"
HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"

AUTHORIZED_KEYS_SCRIPT = f"""\
#!/bin/sh
# written by socklab's testbed: this boot's client key, handed over by QEMU's fw_cfg, is the only key of the lab
# user and of root
set -e
modprobe qemu_fw_cfg
install -o {GUEST_USER} -g {GUEST_USER} -m 0600 /sys/firmware/qemu_fw_cfg/by_name/{FW_CFG_KEYS}/raw \\
    /home/{GUEST_USER}/.ssh/authorized_keys
install -d -m 0700 /root/.ssh
install -m 0600 /sys/firmware/qemu_fw_cfg/by_name/{FW_CFG_KEYS}/raw /root/.ssh/authorized_keys
"""

AUTHORIZED_KEYS_UNIT = """\
[Unit]
Description=socklab: the lab user's and root's authorized_keys, from QEMU's fw_cfg
Before=ssh.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/socklab-authorized-keys

[Install]
WantedBy=multi-user.target
"""

SSHD_CONFIG = f"""\
# written by socklab's testbed: key logins only (Debian's sshd_config reads this first)
HostKey {HOST_KEY}
AllowUsers {GUEST_USER} {AGENT_USER}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
# the agent runs as root, as socklab's local host does, so that its other_user prober is measured too: a
# throwaway VM on 127.0.0.1, a throwaway key, no password
PermitRootLogin prohibit-password
# a parallel controller opens many connections and sessions at once
MaxStartups 100:30:200
MaxSessions 50
# a session whose client vanished ends instead of lingering
ClientAliveInterval 5
ClientAliveCountMax 3
"""

# path in the guest -> (mode, text)
GUEST_FILES = {
    "/etc/hostname": (0o644, GUEST_HOSTNAME + "\n"),
    "/etc/hosts": (0o644, f"127.0.0.1 localhost\n127.0.1.1 {GUEST_HOSTNAME}\n::1 localhost ip6-localhost\n"),
    # the VM runs with -snapshot: nothing it writes is kept, so there is nothing for fsck to check
    "/etc/fstab": (0o644, "/dev/vda / ext4 rw,errors=remount-ro 0 0\n"),
    "/etc/systemd/network/20-dhcp.network": (0o644, "[Match]\nName=en* eth*\n\n[Network]\nDHCP=ipv4\n"),
    "/etc/ssh/sshd_config.d/socklab.conf": (0o644, SSHD_CONFIG),
    "/usr/local/sbin/socklab-authorized-keys": (0o755, AUTHORIZED_KEYS_SCRIPT),
    "/etc/systemd/system/socklab-authorized-keys.service": (0o644, AUTHORIZED_KEYS_UNIT),
}

# run in the guest's root file system (chroot) after GUEST_FILES are written
GUEST_COMMANDS = [
    # "*": no password ever matches, yet the account is not locked (sshd refuses a locked one even for a key)
    f"useradd --create-home --home-dir /home/{GUEST_USER} --shell /bin/sh --user-group --password '*' {GUEST_USER}",
    f"chmod 0700 /home/{GUEST_USER}",
    f"install -d -o {GUEST_USER} -g {GUEST_USER} -m 0700 /home/{GUEST_USER}/.ssh",
    # empty in the image: each boot's throwaway key arrives through fw_cfg
    f"install -o {GUEST_USER} -g {GUEST_USER} -m 0600 /dev/null /home/{GUEST_USER}/.ssh/authorized_keys",
    "systemctl enable systemd-networkd.service socklab-authorized-keys.service",
    # the host key made at build time (below) is the only one
    "rm -f /etc/ssh/ssh_host_*",
    "apt-get clean",
]

# make_image()'s own steps are code, not data: count up when they change what goes into the image
RECIPE_REVISION = 2

KERNEL_ARGS = "root=/dev/vda rw console=ttyS0 panic=1"

# --- the cache entry and the VM's folder ------------------------------------------------------------------------

IMAGE = "disk.img"
KERNEL = "vmlinuz"
INITRD = "initrd.img"
HOST_PUBLIC_KEY = "ssh_host_ed25519_key.pub"
RECIPE = "recipe.json"

RECORD = "vm.json"
INVENTORY = "hosts.yaml"
KNOWN_HOSTS = "known_hosts"
CLIENT_KEY = "client_ed25519"
AUTHORIZED_KEYS = "authorized_keys"
CONSOLE = "console.log"
PID_FILE = "qemu.pid"
QMP_SOCKET = "qmp.sock"
VM_FILES = (RECORD, INVENTORY, KNOWN_HOSTS, CLIENT_KEY, CLIENT_KEY + ".pub", AUTHORIZED_KEYS, CONSOLE, PID_FILE,
            QMP_SOCKET)

BOOT_TIMEOUT = 180.0  # boot to an SSH login takes ~25 s under TCG on 2 cores
POWERDOWN_TIMEOUT = 30.0
SIGTERM_TIMEOUT = 5.0
SSH_ATTEMPT_TIMEOUT = 30.0
BANNER_TIMEOUT = 2.0
POLL_INTERVAL = 0.5
PROGRESS_EVERY = 10.0
# an ssh answer that waiting longer cannot change
SSH_FATAL = ("Host key verification failed", "REMOTE HOST IDENTIFICATION HAS CHANGED", "Permission denied")
# a unix socket's path must fit sockaddr_un.sun_path (108 bytes with its NUL)
MAX_SOCKET_PATH = 107


def missing():
    """The tools not found on this machine."""
    return [tool for tool in (QEMU, DEBOOTSTRAP) if not os.access(tool, os.X_OK)]


def require():
    """Make sure ssh, ssh-keygen, QEMU and debootstrap exist, installing what is missing if we may (as root)."""
    system.require()
    if not missing():
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise LabError(f"{', '.join(missing())} not found: install {' '.join(HOST_PACKAGES)} "
                       f"(as root: apt-get install {' '.join(HOST_PACKAGES)})")
    arguments = ["install", "-y", "--no-install-recommends", *HOST_PACKAGES]
    result = system.apt_get(*arguments)
    if result.returncode != 0:
        # a fresh machine has no package lists yet: fetch them once and try again
        system.apt_get("update")
        result = system.apt_get(*arguments)
    if missing():
        last = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
        raise LabError(f"apt-get could not install {' '.join(HOST_PACKAGES)}: {last}")


def debian_mirror():
    """The Debian mirror this machine's apt fetches bookworm's main from (deb.debian.org if none is configured)."""
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        with open(path) as file:
            for stanza in re.split(r"\n\s*\n", file.read()):
                fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.MULTILINE))
                if ("deb" in fields.get("Types", "").split() and SUITE in fields.get("Suites", "").split()
                        and "main" in fields.get("Components", "").split() and fields.get("URIs")):
                    return fields["URIs"].split()[0]
    for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
        try:
            with open(path) as file:
                lines = file.read().splitlines()
        except FileNotFoundError:
            continue
        for line in lines:
            found = re.match(r"\s*deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)\s+(.*)", line)
            if found and found.group(2) == SUITE and "main" in found.group(3).split():
                return found.group(1)
    return DEFAULT_MIRROR


# --- the image ----------------------------------------------------------------------------------------------------

def recipe():
    """What the image is made of, as data: the same recipe gives the same cache entry."""
    return {"revision": RECIPE_REVISION, "suite": SUITE, "variant": "minbase", "packages": GUEST_PACKAGES,
            "files": {path: [oct(mode), text] for path, (mode, text) in GUEST_FILES.items()},
            "commands": GUEST_COMMANDS, "image_size": IMAGE_SIZE}


def cache_entry(cache_dir):
    key = hashlib.sha256(json.dumps(recipe(), sort_keys=True).encode()).hexdigest()[:16]
    return os.path.join(os.path.abspath(cache_dir), f"debian12-{key}")


def build_image(cache_dir=DEFAULT_CACHE, progress=print):
    """The path of the cached disk image, built first if the cache has none for this recipe (root, ~2 min).

    Beside it: the kernel and initrd to boot it with and the public half of its sshd host key. The build happens
    in a temporary folder of the cache, moved into place when complete: a failed or killed build leaves no entry."""
    entry = cache_entry(cache_dir)
    image = os.path.join(entry, IMAGE)
    if os.path.exists(image):
        return image
    if os.geteuid() != 0:
        raise LabError(f"no VM image in {entry}: building one (debootstrap) needs root")
    require()
    os.makedirs(os.path.dirname(entry), exist_ok=True)
    remove_abandoned_builds(os.path.dirname(entry))
    # the builder's pid in the name: a later build can tell that this one was abandoned
    work = tempfile.mkdtemp(prefix=f".build-{os.getpid()}-", dir=os.path.dirname(entry))
    started = time.monotonic()
    try:
        made = os.path.join(work, "entry")
        os.mkdir(made)
        make_image(os.path.join(work, "rootfs"), made, progress, started)
        try:
            os.rename(made, entry)
        except OSError:
            # another build of the same recipe finished first: its entry is as good as ours
            if not os.path.exists(image):
                raise
    finally:
        remove_build(work)
    progress(f"image ready in {time.monotonic() - started:.0f} s: {image}")
    return image


def make_image(rootfs, entry, progress, started):
    """debootstrap into rootfs, configure it as a lab host, and write the cache entry's files into entry."""
    mirror = debian_mirror()
    progress(f"debootstrap… Debian 12 from {mirror}")
    run_logged(["debootstrap", "--variant=minbase", "--include=" + ",".join(GUEST_PACKAGES), SUITE, rootfs, mirror],
               "debootstrap", progress, started, cwd=os.path.dirname(rootfs),
               env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"),
               log=os.path.join(rootfs, "debootstrap", "debootstrap.log"))
    progress(f"configure… {time.monotonic() - started:.0f} s")
    for path, (mode, text) in GUEST_FILES.items():
        target = os.path.join(rootfs, path.lstrip("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w") as file:
            file.write(text)
        os.chmod(target, mode)
    for command in GUEST_COMMANDS:
        result = subprocess.run(["chroot", rootfs, "/bin/sh", "-ec", command], capture_output=True, text=True,
                                stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise LabError(f"image: `{command}` failed: {last_lines(result.stderr) or result.returncode}")
    # made per build, not part of the recipe: the host key, and a machine id (without one every boot of the
    # -snapshot disk would be systemd's first boot)
    keys.keypair(os.path.join(rootfs, HOST_KEY.lstrip("/")), f"socklab {GUEST_HOSTNAME}")
    shutil.copyfile(os.path.join(rootfs, HOST_KEY.lstrip("/")) + ".pub", os.path.join(entry, HOST_PUBLIC_KEY))
    with open(os.path.join(rootfs, "etc", "machine-id"), "w") as file:
        file.write(secrets.token_hex(16) + "\n")
    for name, pattern in ((KERNEL, "vmlinuz-*"), (INITRD, "initrd.img-*")):
        found = glob.glob(os.path.join(rootfs, "boot", pattern))
        if len(found) != 1:
            raise LabError(f"image: expected one /boot/{pattern} in the guest, found {len(found)}")
        shutil.copyfile(found[0], os.path.join(entry, name))
    progress(f"image… {time.monotonic() - started:.0f} s")
    # sparse: the file takes only the blocks the root file system uses
    result = subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "socklab-root", "-d", rootfs,
                             os.path.join(entry, IMAGE), IMAGE_SIZE], capture_output=True, text=True,
                            stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise LabError(f"image: mkfs.ext4 failed: {last_lines(result.stderr) or result.returncode}")
    with open(os.path.join(entry, RECIPE), "w") as file:
        json.dump(dict(recipe(), mirror=mirror), file, indent=2)


def run_logged(argv, what, progress, started, log=None, **kwargs):
    """Run a long command, reporting its latest output line every PROGRESS_EVERY seconds; LabError with its last
    lines (and its log's) if it fails. Ctrl-C or an error here kills its whole process group."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               stdin=subprocess.DEVNULL, start_new_session=True, **kwargs)
    tail = collections.deque(maxlen=3)
    reported = time.monotonic()
    try:
        for line in process.stdout:
            if line.strip():
                tail.append(line.strip())
            if time.monotonic() - reported >= PROGRESS_EVERY:
                progress(f"{what}… {time.monotonic() - started:.0f} s: {tail[-1] if tail else ''}")
                reported = time.monotonic()
        process.wait()
    except BaseException:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise
    if process.returncode != 0:
        logged = ""
        if log and os.path.exists(log):
            with open(log, errors="replace") as file:
                logged = "; log: " + last_lines(file.read(), 2)
        raise LabError(f"{what} failed (exit status {process.returncode}): {' / '.join(tail)}{logged}")


def remove_abandoned_builds(cache_dir):
    """Remove the build folders whose builder is gone (killed before it could clean up)."""
    for path in glob.glob(os.path.join(cache_dir, ".build-*")):
        found = re.match(r"\.build-(\d+)-", os.path.basename(path))
        if found and not procs.alive(int(found.group(1))):
            remove_build(path)


def remove_build(path):
    """Remove a build folder: first what still runs in it (an orphaned debootstrap and its chrooted children),
    then what is mounted in it (debootstrap mounts /proc and /sys in the guest), then its files."""
    inside = path.rstrip(os.sep) + os.sep
    def within(link):
        try:
            return (os.readlink(link) + os.sep).startswith(inside)
        except OSError:
            return False
    procs.kill({pid for pid in procs.pids() if within(f"/proc/{pid}/root") or within(f"/proc/{pid}/cwd")})
    # deepest first: a mount inside another must go before it
    for mount in sorted(mounts_under(inside), key=len, reverse=True):
        subprocess.run(["umount", "--lazy", mount], capture_output=True)
    if mounts_under(inside):
        raise LabError(f"cannot remove {path}: {', '.join(mounts_under(inside))} still mounted")
    shutil.rmtree(path, ignore_errors=True)


def mounts_under(prefix):
    with open("/proc/self/mountinfo") as file:
        # the mount point is the 5th field, with spaces and such escaped in octal
        points = [re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4]) for line in file]
    return [point for point in points if (point + os.sep).startswith(prefix)]


def last_lines(text, count=3):
    """The last lines of a program's output, without terminal escapes, joined into one line."""
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]|[\x00-\x08\x0b-\x1f\x7f]", "", text)
    return " / ".join([line.strip() for line in text.splitlines() if line.strip()][-count:])


# --- the VM -----------------------------------------------------------------------------------------------------

@dataclass
class Vm:
    folder: str
    # vm.json's content: name, port, QEMU's pid, the cache entry's files, and whether up() made the folder
    record: dict

    @classmethod
    def up(cls, folder, name="debian12-vm", cache_dir=DEFAULT_CACHE, progress=print, timeout=BOOT_TIMEOUT):
        """Boot the Debian 12 VM (building its image first if the cache has none) and return once its lab user can
        log in over SSH with the expected host key. Writes folder/hosts.yaml for it.

        A boot that does not get there within timeout seconds raises LabError with the console's last lines; QEMU is
        killed and only console.log is left in the folder."""
        folder = os.path.abspath(folder)
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            raise LabError(f"VM name {name!r}: letters, digits, '_', '.' and '-' only")
        if os.path.exists(os.path.join(folder, RECORD)):
            raise LabError(f"{folder} already holds a VM: take it down first (./socklab lab-vm-down)")
        # QEMU reads ',' in an option's value as the start of the next option
        if "," in folder + cache_dir:
            raise LabError(f"the VM's folder and cache may not contain ',' ({folder}, {cache_dir})")
        if len(os.path.join(folder, QMP_SOCKET)) > MAX_SOCKET_PATH:
            raise LabError(f"folder {folder} is too long a path for QEMU's monitor socket: choose a shorter one")
        image = build_image(cache_dir, progress)
        require()
        created_folder = not os.path.isdir(folder)
        os.makedirs(folder, exist_ok=True)
        entry = os.path.dirname(image)
        vm = cls(folder, {"name": name, "port": free_port(), "pid": None, "image": image,
                          "kernel": os.path.join(entry, KERNEL), "initrd": os.path.join(entry, INITRD),
                          "host_public_key": os.path.join(entry, HOST_PUBLIC_KEY), "created_folder": created_folder})
        try:
            vm._boot(progress, timeout)
        except BaseException:
            vm._power_off(graceful=False)
            vm._remove_files(keep=(CONSOLE,))
            raise
        return vm

    @classmethod
    def load(cls, folder):
        """The VM described by folder/vm.json (written by up(), possibly in another process)."""
        folder = os.path.abspath(folder)
        return cls(folder, records.read(folder, RECORD, "VM"))

    def path(self, name):
        return os.path.join(self.folder, name)

    @property
    def name(self):
        return self.record["name"]

    @property
    def port(self):
        return self.record["port"]

    @property
    def inventory(self):
        return self.path(INVENTORY)

    def save(self):
        with open(self.path(RECORD), "w") as file:
            json.dump(self.record, file, indent=2)

    def qemu_command(self):
        return [QEMU, "-name", self.name, "-accel", "tcg", "-m", "1024", "-smp", "2", "-nodefaults",
                "-display", "none", "-no-reboot", "-snapshot",
                "-drive", f"file={self.record['image']},if=virtio,format=raw",
                "-kernel", self.record["kernel"], "-initrd", self.record["initrd"], "-append", KERNEL_ARGS,
                "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{self.port}-:22",
                "-device", "virtio-net-pci,netdev=n0",
                "-fw_cfg", f"name={FW_CFG_KEYS},file={self.path(AUTHORIZED_KEYS)}",
                "-serial", f"file:{self.path(CONSOLE)}", "-qmp", f"unix:{self.path(QMP_SOCKET)},server=on,wait=off",
                # the parent exits once the VM runs (or with QEMU's error): no child of ours to reap
                "-daemonize", "-pidfile", self.path(PID_FILE)]

    def _boot(self, progress, timeout):
        public_key = keys.keypair(self.path(CLIENT_KEY), f"socklab {self.name} client")
        with open(self.path(AUTHORIZED_KEYS), "w") as file:
            file.write(public_key + "\n")
        with open(self.record["host_public_key"]) as file:
            host_key = " ".join(file.read().split()[:2])
        with open(self.path(KNOWN_HOSTS), "w") as file:
            file.write(f"[127.0.0.1]:{self.port} {host_key}\n")
        # the plan on disk before QEMU starts: down() finds it even if this process dies now
        self.save()
        started = time.monotonic()
        progress(f"boot… {self.name} under QEMU (TCG), SSH on 127.0.0.1:{self.port}")
        result = subprocess.run(self.qemu_command(), capture_output=True, text=True, stdin=subprocess.DEVNULL,
                                timeout=60)
        if result.returncode != 0:
            raise LabError(f"QEMU did not start {self.name}: {last_lines(result.stderr) or result.returncode}")
        with open(self.path(PID_FILE)) as file:
            self.record["pid"] = int(file.read())
        self.save()
        reported, problem = started, "sshd does not answer"
        while True:
            if self._sshd_answers():
                attempt = self.ssh("uname -r")
                if attempt.returncode == 0:
                    break
                problem = last_lines(attempt.stderr, 1) or f"ssh exit status {attempt.returncode}"
                if any(fatal in attempt.stderr for fatal in SSH_FATAL):
                    raise LabError(f"{self.name}: ssh refused: {problem}; console: {self.console_tail()}")
            if not procs.alive(self.record["pid"]):
                raise LabError(f"{self.name}: QEMU ended during boot; console: {self.console_tail()}")
            if time.monotonic() - started > timeout:
                raise LabError(f"{self.name}: no SSH login on 127.0.0.1:{self.port} within {timeout:.0f} s "
                               f"({problem}); console: {self.console_tail()}")
            if time.monotonic() - reported >= PROGRESS_EVERY:
                progress(f"boot… {time.monotonic() - started:.0f} s: {self.console_tail(1)[:100]}")
                reported = time.monotonic()
            time.sleep(POLL_INTERVAL)
        progress(f"up in {time.monotonic() - started:.0f} s: {self.name}, kernel {attempt.stdout.strip()}, "
                 f"ssh -p {self.port} {GUEST_USER}@127.0.0.1")
        with open(self.inventory, "w") as file:
            file.write(self.inventory_text())

    def _sshd_answers(self):
        """One TCP connect to the forwarded port that gets sshd's banner. QEMU's user-mode network accepts the
        connection at once even while nothing in the guest listens (an ssh login would then wait out its whole
        ConnectTimeout): only the banner says that sshd is there."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=BANNER_TIMEOUT) as probe:
                banner = probe.recv(64)
                # an identification of our own: a connection closed before it is logged as an error
                probe.sendall(b"SSH-2.0-socklab-testbed-probe\r\n")
        except OSError:
            return False
        return banner.startswith(b"SSH-")

    def ssh(self, command, timeout=SSH_ATTEMPT_TIMEOUT):
        """CompletedProcess of command run by the lab user over SSH (OpenSSH's client, host key checked strictly)."""
        argv = ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", f"UserKnownHostsFile={self.path(KNOWN_HOSTS)}", "-o", "GlobalKnownHostsFile=/dev/null",
                "-o", "IdentitiesOnly=yes", "-i", self.path(CLIENT_KEY), "-o", "ConnectTimeout=10",
                "-o", "LogLevel=ERROR", "-p", str(self.port), f"{GUEST_USER}@127.0.0.1", command]
        try:
            return subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout)
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(argv, 255, "", f"ssh: no answer within {timeout:.0f} s")

    def console_tail(self, count=3):
        try:
            with open(self.path(CONSOLE), "rb") as file:
                file.seek(max(0, os.path.getsize(self.path(CONSOLE)) - 4096))
                return last_lines(file.read().decode(errors="replace"), count) or "(empty)"
        except OSError:
            return f"(no {CONSOLE})"

    def inventory_text(self):
        return "\n".join([
            f"# written by socklab lab-vm-up: a Debian 12 VM under QEMU (kernel 6.1); `./socklab lab-vm-down` powers "
            "it off",
            "hosts:",
            f"  {self.name}:",
            "    transport: ssh",
            "    address: 127.0.0.1",
            f"    port: {self.port}",
            f"    user: {AGENT_USER}",
            f"    key: {yaml_text(self.path(CLIENT_KEY))}",
            f"    known_hosts: {yaml_text(self.path(KNOWN_HOSTS))}",
            # TCG makes the guest slow: connecting and the agent's first output take longer than on a real host
            "    connect_timeout: 30",
            "    idle_timeout: 300",
        ]) + "\n"

    def qemu_pids(self):
        """The live QEMU processes of this folder's VM, found by their monitor socket (the pid file may be gone)."""
        socket_path = self.path(QMP_SOCKET)
        return {pid for pid in procs.pids()
                if procs.exe(pid) == QEMU and f"unix:{socket_path}," in procs.cmdline(pid) and procs.alive(pid)}

    def down(self, timeout=POWERDOWN_TIMEOUT):
        """Power the VM off (the ACPI power button, then SIGTERM, then SIGKILL) and remove the folder's files;
        again is harmless. Raises LabError if a QEMU process of it remains."""
        self._power_off(graceful=True, timeout=timeout)
        self._remove_files()
        left = self.qemu_pids()
        if left:
            raise LabError(f"VM in {self.folder} not fully down: QEMU processes {sorted(left)} remain")

    def _power_off(self, graceful, timeout=POWERDOWN_TIMEOUT):
        running = self.qemu_pids()
        if running and graceful and qmp(self.path(QMP_SOCKET), "system_powerdown"):
            wait_until_gone(running, timeout)
        running = {pid for pid in running if procs.alive(pid)}
        procs.signal_all(running, signal.SIGTERM)
        wait_until_gone(running, SIGTERM_TIMEOUT)
        procs.kill({pid for pid in running if procs.alive(pid)})

    def _remove_files(self, keep=()):
        for name in VM_FILES:
            if name not in keep and os.path.lexists(self.path(name)):
                os.remove(self.path(name))
        if self.record.get("created_folder") and os.path.isdir(self.folder) and not os.listdir(self.folder):
            os.rmdir(self.folder)


def qmp(socket_path, command, timeout=5.0):
    """Run one QMP command without arguments on QEMU's monitor socket; True if QEMU accepted it."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as monitor:
            monitor.settimeout(timeout)
            monitor.connect(socket_path)
            stream = monitor.makefile("rw")
            # the greeting, then capabilities negotiation, which QMP requires before any command
            stream.readline()
            for execute in ("qmp_capabilities", command):
                stream.write(json.dumps({"execute": execute}) + "\n")
                stream.flush()
                while True:
                    line = stream.readline()
                    if not line:
                        return False
                    reply = json.loads(line)
                    # asynchronous events may come before the reply
                    if "error" in reply:
                        return False
                    if "return" in reply:
                        break
            return True
    except (OSError, ValueError):
        return False


def wait_until_gone(pids, timeout):
    """Wait, at most timeout seconds, until none of the processes runs."""
    deadline = time.monotonic() + timeout
    while any(procs.alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)


def down(folder):
    """Power off the VM whose folder this is and remove its files, as far as anything of it can be found. True if
    there was one."""
    folder = os.path.abspath(folder)
    try:
        vm = Vm.load(folder)
    except LabError:
        # vm.json gone or broken: the folder's QEMU is still found by its monitor socket
        vm = Vm(folder, {})
    found = bool(vm.record) or bool(vm.qemu_pids())
    vm.down()
    return found
