"""Facts about the host the agent runs on: the first record of every agent run.

They are what an outcome depends on besides the code: OS and kernel/build, Python, privilege, and the sysctls that
change reuse outcomes (a regression between two runs is read next to the facts that changed).

gVisor is a system of its own (labs.sockopts.system_family): os_family `gvisor`, os_release gVisor's release
("20221219.0"), os_version what it claims to be (uname -r and -v: "4.4.0 #1 SMP Sun Jan 10 15:06:54 PST 2016").
Its release is visible nowhere inside the sandbox, so it comes from the controller, which asked the launcher
(`runsc --version`) and passes its answer in the request: `launcher` {command, version}. An agent run in gVisor
by hand, with no launcher named, has os_release "" (unknown). `launcher` and `implementation_version` record how
the agent was started and what the launcher said of itself.
"""
import os
import platform
import re
import subprocess
import sys

from labs.sockopts import Options, system_family

LINUX_SYSCTLS = ("net.ipv4.tcp_tw_reuse", "net.ipv4.tcp_timestamps", "net.ipv4.ip_local_port_range",
                 "net.ipv4.tcp_fin_timeout", "net.ipv6.bindv6only",
                 "net.ipv4.tcp_max_tw_buckets",  # how many TIME_WAITs socketpair_churn's pairs may leave
                 "net.ipv4.tcp_migrate_req")  # whether a closing listener's queue moves to its group (listener_drain)
BSD_SYSCTLS = {
    # nolocaltimewait: no TIME_WAIT for connections within the host (socketpair_churn, time_wait_owner); an oid a
    # release lacks is skipped by sysctl(8), which prints the others
    "freebsd": ("net.inet.tcp.msl", "net.inet.ip.portrange.first", "net.inet.ip.portrange.last",
                "net.inet.tcp.rfc1323", "net.inet6.ip6.v6only", "net.inet.tcp.nolocaltimewait"),
    "darwin": ("net.inet.tcp.msl", "net.inet.ip.portrange.first", "net.inet.ip.portrange.last",
               "net.inet.tcp.rfc1323", "net.inet6.ip6.v6only"),
}


# Debian's kernels are released as e.g. 6.1.0-28-amd64 whatever their stable level; the upstream version is in the
# build string (uname -v): "#1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1 (2024-11-22)".
DEBIAN_BUILD = re.compile(r"\bDebian (\d+\.\d+(?:\.\d+)?)")
LEADING_VERSION = re.compile(r"^\s*(\d+(?:\.\d+)*)")
# Ubuntu's /proc/version_signature ends with the upstream version: "Ubuntu 5.15.0-91.101-generic 5.15.131".
VERSION_SIGNATURE = "/proc/version_signature"


def upstream_release(release, version, signature=None):
    """The upstream version of the OS kernel where a distribution hides it behind its own release: Debian's from
    its build string, Ubuntu's from the last field of /proc/version_signature (its text, or None), else the leading
    numeric part of `release` ("" if it has none)."""
    found = DEBIAN_BUILD.search(version or "")
    if found:
        return found.group(1)
    fields = (signature or "").split()
    if fields and LEADING_VERSION.match(fields[-1]):
        return LEADING_VERSION.match(fields[-1]).group(1)
    found = LEADING_VERSION.match(release or "")
    return found.group(1) if found else ""


# gVisor's release in `runsc --version`: "runsc version 0.0~20221219.0" (Debian), "runsc version release-20221219.0"
# (gVisor's own builds).
GVISOR_RELEASE = re.compile(r"\b(\d{8}\.\d+)\b")


def gvisor_release(version_text):
    """gVisor's release named in a `runsc --version` line, or "" where it names none."""
    found = GVISOR_RELEASE.search(version_text or "")
    return found.group(1) if found else ""


def version_signature():
    try:
        with open(VERSION_SIGNATURE) as stream:
            return stream.read()
    except OSError:
        return None


def runner_image(environ):
    """Which CI runner image this is, where the runner says (GitHub-hosted runners set ImageOS and ImageVersion,
    e.g. "ubuntu24/20261201.1"): a hosted runner is a VM image that changes under the same label. None elsewhere."""
    name, version = environ.get("ImageOS"), environ.get("ImageVersion")
    if not name:
        return None
    return "{}/{}".format(name, version) if version else name


def is_admin():
    if hasattr(os, "geteuid"):
        return os.geteuid() == 0
    try:
        import ctypes
        return bool(ctypes.windll.shell32.IsUserAnAdmin())
    except (ImportError, AttributeError, OSError):
        return False


def linux_sysctls():
    values = {}
    for name in LINUX_SYSCTLS:
        try:
            with open("/proc/sys/" + name.replace(".", "/")) as stream:
                values[name] = " ".join(stream.read().split())
        except OSError:
            continue  # absent on this kernel, or in this namespace
    return values


def bsd_sysctls(names):
    try:
        output = subprocess.run(["sysctl"] + list(names), capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    pairs = (line.split(":", 1) for line in output.splitlines() if ":" in line)
    return {name.strip(): value.strip() for name, value in pairs}


def collect(witness_method, launcher=None):
    """The host record's facts; `launcher` is what the controller said of the command the agent runs under
    ({"command": text, "version": its version line}), or None."""
    family = system_family()
    if family in ("linux", "gvisor"):
        sysctls = linux_sysctls()  # gVisor has a few of Linux's (ip_local_port_range, tcp_timestamps)
    elif family in BSD_SYSCTLS:
        sysctls = bsd_sysctls(BSD_SYSCTLS[family])
    else:
        sysctls = {}
    launcher = launcher or {}
    release, version = platform.release(), platform.version()
    if family == "gvisor":
        release, version = gvisor_release(launcher.get("version")), "{} {}".format(release, version)
    facts = {
        "os_family": family,
        "os_release": release,
        "os_version": version,
        "upstream_release": upstream_release(release, version, version_signature() if family == "linux" else None),
        "machine": platform.machine(),
        "hostname": platform.node(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "admin": is_admin(),
        "options": list(Options(family).known),
        "witness": witness_method,
        "sysctls": sysctls,
    }
    if launcher.get("command"):
        facts["launcher"] = launcher["command"]
    if launcher.get("version"):
        facts["implementation_version"] = launcher["version"]
    image = runner_image(os.environ)
    if image:
        facts["runner_image"] = image
    return facts
