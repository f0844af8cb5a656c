"""Network namespaces by name (/run/netns/NAME, as `ip netns` keeps them): doing something inside one, and who
lives there. Entering one is a setns() in a short-lived thread: a namespace belongs to a thread, so the rest of the
program stays where it is, and no process has to be started."""
import ctypes
import os
import threading

from testbed import procs

NETNS_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def path(name):
    return os.path.join(NETNS_DIR, name)


def names(prefix):
    """The named namespaces whose name starts with prefix."""
    try:
        return sorted(name for name in os.listdir(NETNS_DIR) if name.startswith(prefix))
    except FileNotFoundError:
        return []


def call_in(name, function, *args):
    """function(*args), run by a thread inside namespace name: its result, or its exception raised here."""
    outcome = {}

    def body():
        try:
            with open(path(name)) as namespace:
                if _libc.setns(namespace.fileno(), CLONE_NEWNET) != 0:
                    error = ctypes.get_errno()
                    raise OSError(error, f"setns into {name}: {os.strerror(error)}")
            outcome["value"] = function(*args)
        except BaseException as error:  # handed to the caller's thread, raised there
            outcome["error"] = error

    thread = threading.Thread(target=body, name=f"in-netns-{name}")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def set_sysctls(name, sysctls):
    """Write network sysctls ({'net.ipv4.tcp_tw_reuse': 1, ...}) for namespace name: /proc/sys/net shows the
    values of the namespace of the thread that opens it."""
    def write():
        for key, value in sysctls.items():
            with open("/proc/sys/" + key.replace(".", "/"), "w") as setting:
                setting.write(str(value))
    call_in(name, write)


def pids(name):
    """The live processes in namespace name (what `ip netns pids` lists, without starting ip)."""
    try:
        target = os.stat(path(name))
    except FileNotFoundError:
        return []
    found = []
    for pid in procs.pids():
        try:
            namespace = os.stat(f"/proc/{pid}/ns/net")
        except OSError:
            continue
        if (namespace.st_dev, namespace.st_ino) == (target.st_dev, target.st_ino):
            found.append(pid)
    return found
