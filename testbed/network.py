"""The network of a namespace lab: one Linux bridge in this (the root) namespace holding the first address of a
private /24, and per host a network namespace joined to the bridge by a veth pair ('eth0' inside), with lo up and
its own sysctls. Built and removed with `ip -batch`: one ip process for many links."""
import contextlib
import ipaddress
import json
import os
import random
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor

from testbed import netns
from testbed.errors import LabError

# where a lab's /24 is picked from, in this order
PRIVATE_RANGES = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("172.16.0.0/12")]
TRIES_PER_RANGE = 500


def ip_batch(commands, netns_name=None, force=False):
    """Run `ip [-n NETNS] [-force] -batch -` on the commands; a failure raises LabError with ip's message
    (with force, every command is tried and failures are ignored)."""
    argv = ["ip"] + (["-n", netns_name] if netns_name else []) + (["-force"] if force else []) + ["-batch", "-"]
    result = subprocess.run(argv, input="\n".join(commands) + "\n", capture_output=True, text=True)
    if result.returncode != 0 and not force:
        where = f" -n {netns_name}" if netns_name else ""
        raise LabError(f"ip{where} -batch failed: {' / '.join(result.stderr.strip().splitlines()[:2])}")


def ip_json(*args):
    """What `ip -j ARGS` prints, parsed (ip prints the rows a filter leaves out as empty objects)."""
    return json.loads(subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True).stdout or "[]")


def used_networks():
    """Every IPv4 network this namespace routes or holds an address in (the default route aside)."""
    texts = [row.get("dst", "") for row in ip_json("-4", "route", "show", "table", "all")]
    texts += [f"{address['local']}/{address['prefixlen']}"
              for row in ip_json("-4", "address") for address in row.get("addr_info", [])]
    used = []
    for text in texts:
        try:
            used.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            # "default", or a row without destination
            continue
    return used


def free_subnet():
    """A random private /24 that overlaps nothing this machine routes or holds (random: two labs coming up at the
    same moment are unlikely to pick the same one)."""
    used = used_networks()
    for private in PRIVATE_RANGES:
        for _ in range(TRIES_PER_RANGE):
            first = int(private.network_address) + random.randrange(private.num_addresses // 256) * 256
            candidate = ipaddress.ip_network((first, 24))
            if not any(candidate.overlaps(network) for network in used):
                return candidate
    raise LabError("no free private /24 found in 10.0.0.0/8 or 172.16.0.0/12 for the lab bridge")


# Each namespace host gets its own TCP and UDP hash tables (Linux >= 6.1 and 6.2), as a separate machine has.
# In the machine's shared tables every host's witness query would walk every other host's sockets, TIME_WAITs
# piling up across hosts. The kernel reads these when a namespace is made, so they are set around that only.
CHILD_HASH_TABLES = {"/proc/sys/net/ipv4/tcp_child_ehash_entries": "16384",
                     "/proc/sys/net/ipv4/udp_child_hash_entries": "16384"}


@contextlib.contextmanager
def own_hash_tables():
    saved = {}
    try:
        for path, size in CHILD_HASH_TABLES.items():
            if os.path.exists(path):
                with open(path) as stream:
                    saved[path] = stream.read().strip()
                with open(path, "w") as stream:
                    stream.write(size)
        yield
    finally:
        for path, value in saved.items():
            with open(path, "w") as stream:
                stream.write(value)


def build(bridge, gateway, hosts, group):
    """Make the bridge with address gateway ('10.x.y.1/24') and, for each host (namespace, veth, address/prefix,
    sysctls), its namespace, veth pair and settings. The bridge and the veths' root ends join link group group:
    remove() deletes them all in one go."""
    commands = [f"link add {bridge} group {group} type bridge", f"address add {gateway} dev {bridge}",
                f"link set {bridge} up"]
    for namespace, veth, _, _ in hosts:
        # the peer is born inside the namespace, already named eth0: no move, no rename
        commands += [f"netns add {namespace}",
                     f"link add {veth} group {group} type veth peer name eth0 netns {namespace}",
                     f"link set {veth} master {bridge} up"]
    with own_hash_tables():
        ip_batch(commands)

    def configure(namespace, address, sysctls):
        ip_batch(["link set lo up", f"address add {address} dev eth0", "link set eth0 up"], netns_name=namespace)
        netns.set_sysctls(namespace, sysctls)

    with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
        for done in [pool.submit(configure, namespace, address, sysctls)
                     for namespace, _, address, sysctls in hosts]:
            done.result()


def link_names():
    """The network interfaces of this namespace."""
    return {name for _, name in socket.if_nameindex()}


def group_members(group):
    return {row["ifname"] for row in ip_json("link", "show", "group", str(group)) if "ifname" in row}


def remove(links, namespaces, group):
    """Delete the links (a veth takes its peer along) and then the namespaces, those that exist. The veths go
    explicitly because a deleted namespace lingers, with its links, while its sockets close. Deleting a link
    waits for the kernel's RCU grace period (~20 ms); deleting a whole group waits once, so the group goes in one
    command when it holds only our links."""
    existing = link_names()
    commands = []
    members = group_members(group)
    if members and members <= set(links):
        commands.append(f"link del group {group}")
        existing -= members
    commands += [f"link del {link}" for link in links if link in existing]
    commands += [f"netns del {name}" for name in namespaces if os.path.exists(netns.path(name))]
    if commands:
        ip_batch(commands, force=True)
