"""A lab: N lab hosts on this machine, each a real OpenSSH sshd with its own lab user, all reached with one client
key and one known_hosts file, and described by an inventory (hosts.yaml) in socklab's format.

Two kinds. With namespaces, host n is network namespace socklab-<id>-n on a private /24 bridged to this namespace,
with its sshd on <its address>:22 and its own network sysctls. Without, the one host is an sshd on 127.0.0.1 on a
free port (for host-key tests).

The caller's bed folder holds lab.json, hosts.yaml, the client key, known_hosts and one folder per host for its
sshd. What the lab users must read (their homes, the authorized keys) sits in a world-traversable root folder,
/var/tmp/socklab-lab-<id>: the bed folder may be under /root or a 0700 temp dir that they cannot enter.
Everything is named after the lab's id, so down() finds it again even when lab.json is gone or partial.
"""
import json
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Optional

from testbed import keys, netns, network, procs, records, system, users
from testbed.errors import LabError
from testbed.sshd import SSHD, Sshd

ROOTS = "/var/tmp"
RECORD = "lab.json"
INVENTORY = "hosts.yaml"
KNOWN_HOSTS = "known_hosts"
CLIENT_KEY = "client_ed25519"
BED_FILES = (INVENTORY, KNOWN_HOSTS, CLIENT_KEY, CLIENT_KEY + ".pub", RECORD)
# the id is in every name a lab makes: 4 hex digits keep the veth names (sl<id>h<n>) within IFNAMSIZ
ID_DIGITS = 4
# host n gets address .(10 + n)
FIRST_HOST_OCTET = 10
MAX_HOSTS = 200


def root_folder(lab_id):
    return os.path.join(ROOTS, f"socklab-lab-{lab_id}")


def netns_prefix(lab_id):
    return f"socklab-{lab_id}-"


def bridge_name(lab_id):
    return f"slb{lab_id}"


def veth_prefix(lab_id):
    return f"sl{lab_id}h"


def link_group(lab_id):
    """The link group of the lab's bridge and veths: 'SL' and the id, a number no one else is likely to use."""
    return 0x534C0000 + int(lab_id, 16)


def user_names(lab_id):
    """The lab's users that exist on this machine."""
    pattern = re.compile(rf"sl{lab_id}u\d+")
    return sorted(entry.pw_name for entry in pwd.getpwall() if pattern.fullmatch(entry.pw_name))


def default_sysctls(number):
    """Host n's sysctls unless the caller chooses: tcp_tw_reuse 0, 1, 2, 0, ... so the three values all occur, and
    tcp_migrate_req 0, 1, 0, 1, ... (listener_drain under both)."""
    return {"net.ipv4.tcp_tw_reuse": (number - 1) % 3, "net.ipv4.tcp_migrate_req": (number - 1) % 2}


@dataclass
class LabHost:
    name: str
    address: str
    port: int
    user: str
    home: str
    netns: Optional[str]
    sysctls: dict
    sshd: Sshd
    # the root-namespace end of its veth pair (namespace hosts): setting it down cuts the host off
    veth: Optional[str] = None

    def record(self):
        return {"name": self.name, "address": self.address, "port": self.port, "user": self.user,
                "home": self.home, "netns": self.netns, "sysctls": self.sysctls, "veth": self.veth,
                "sshd_folder": self.sshd.folder, "sshd_pid": self.sshd.pid()}


@dataclass
class Lab:
    folder: str
    # lab.json's content: written before anything is made, completed once the lab is up
    record: dict
    hosts: list = field(default_factory=list)

    @classmethod
    def up(cls, folder, count=1, namespaces=True, sysctls=None):
        """Bring up count hosts (namespaces) or one loopback host (namespaces=False) described in folder.
        sysctls: one dict per host (namespace hosts only), default default_sysctls(n)."""
        if not 1 <= count <= MAX_HOSTS:
            raise LabError(f"a lab has 1 to {MAX_HOSTS} hosts, not {count}")
        if not namespaces and count != 1:
            raise LabError("a lab without namespaces has exactly one host (namespaces=True for more)")
        if sysctls is not None and (not namespaces or len(sysctls) != count):
            raise LabError("sysctls: one dict per host, and only for a lab with namespaces")
        system.require()
        folder = os.path.abspath(folder)
        if os.path.exists(os.path.join(folder, RECORD)):
            raise LabError(f"{folder} already holds a lab: take it down first (./socklab lab-down)")
        created_folder = not os.path.isdir(folder)
        os.makedirs(folder, exist_ok=True)
        lab_id = claim_id()
        lab = cls(folder, {"id": lab_id, "kind": "namespaces" if namespaces else "loopback",
                           "root": root_folder(lab_id), "created_folder": created_folder})
        try:
            lab._build(count, namespaces, sysctls)
        except BaseException as error:
            try:
                lab.down()
            except LabError as cleanup:
                raise LabError(f"{error}; then, cleaning up: {cleanup}") from error
            raise
        return lab

    @classmethod
    def load(cls, folder):
        """The lab described by folder/lab.json (written by up(), possibly in another process)."""
        folder = os.path.abspath(folder)
        record = records.read(folder, RECORD, "lab")
        return cls(folder, record, [host_from_record(host, record) for host in record.get("hosts", [])])

    @property
    def id(self):
        return self.record["id"]

    @property
    def namespaced(self):
        return self.record.get("kind") == "namespaces"

    @property
    def root(self):
        return root_folder(self.id)

    @property
    def inventory(self):
        return os.path.join(self.folder, INVENTORY)

    @property
    def client_key(self):
        return os.path.join(self.folder, CLIENT_KEY)

    @property
    def known_hosts(self):
        return os.path.join(self.folder, KNOWN_HOSTS)

    @property
    def authorized_keys(self):
        return os.path.join(self.root, "authorized_keys")

    def save(self):
        self.record["hosts"] = [host.record() for host in self.hosts]
        with open(os.path.join(self.folder, RECORD), "w") as file:
            json.dump(self.record, file, indent=2)

    def _build(self, count, namespaces, sysctls):
        if namespaces:
            subnet = network.free_subnet()
            self.record.update(subnet=str(subnet), bridge=bridge_name(self.id))
        for number in range(1, count + 1):
            name = f"lab{number}"
            user = f"sl{self.id}u{number}"
            home = os.path.join(self.root, f"home-{number}")
            if namespaces:
                address = str(subnet.network_address + FIRST_HOST_OCTET + number)
                namespace, port = f"{netns_prefix(self.id)}{number}", 22
                veth = f"{veth_prefix(self.id)}{number}"
                settings = dict(sysctls[number - 1]) if sysctls else default_sysctls(number)
            else:
                address, namespace, port, veth, settings = "127.0.0.1", None, free_port(), None, {}
            sshd = Sshd(os.path.join(self.folder, name), address, port, user, self.authorized_keys, namespace)
            self.hosts.append(LabHost(name, address, port, user, home, namespace, settings, sshd, veth))
        # the plan on disk before anything is made: down() can undo a half-made lab
        self.save()
        public_key = keys.keypair(self.client_key, f"socklab-lab-{self.id} client")
        with open(self.authorized_keys, "w") as file:
            file.write(public_key + "\n")
        os.chmod(self.authorized_keys, 0o644)
        with ThreadPoolExecutor(max_workers=len(self.hosts) + 1) as pool:
            # users and network are independent, and an sshd needs its user only once someone logs in
            adding_users = pool.submit(self._add_users)
            if namespaces:
                network.build(self.record["bridge"], f"{subnet.network_address + 1}/24",
                              [(host.netns, host.veth, f"{host.address}/24", host.sysctls) for host in self.hosts],
                              link_group(self.id))
            for started in [pool.submit(host.sshd.start) for host in self.hosts] + [adding_users]:
                started.result()
        with open(self.known_hosts, "w") as file:
            file.writelines(host.sshd.known_hosts_line() + "\n" for host in self.hosts)
        with open(self.inventory, "w") as file:
            file.write(self.inventory_text())
        self.save()

    def _add_users(self):
        for host in self.hosts:
            users.add_user(host.user, host.home)

    def inventory_text(self):
        what = f"{len(self.hosts)} hosts in network namespaces" if self.namespaced else "1 host on 127.0.0.1"
        lines = [f"# written by socklab lab-up: {what} (lab {self.id}); `./socklab lab-down` removes them", "hosts:"]
        for host in self.hosts:
            lines += [f"  {host.name}:", "    transport: ssh", f"    address: {host.address}",
                      f"    port: {host.port}", f"    user: {host.user}", f"    key: {yaml_text(self.client_key)}",
                      f"    known_hosts: {yaml_text(self.known_hosts)}"]
        lines += ["groups:", f"  lab: [{', '.join(host.name for host in self.hosts)}]"]
        return "\n".join(lines) + "\n"

    def host(self, name):
        for host in self.hosts:
            if host.name == name:
                return host
        raise LabError(f"no host {name!r} in lab {self.id} (hosts: {', '.join(h.name for h in self.hosts)})")

    def cut(self, name):
        """Take host name off the network (its veth down): packets to it vanish, connections time out."""
        self._link(name, "down")

    def restore(self, name):
        self._link(name, "up")

    def _link(self, name, state):
        host = self.host(name)
        if not host.veth:
            raise LabError(f"{name} is a loopback host: only a host in a namespace can be cut off")
        network.ip_batch([f"link set {host.veth} {state}"])

    def processes(self, name, needle):
        """Pids of the live processes of host name whose command line contains needle: those in its namespace,
        or for a loopback host those its user runs."""
        host = self.host(name)
        if host.netns:
            candidates = netns.pids(host.netns)
        else:
            uid = pwd.getpwnam(host.user).pw_uid
            candidates = [pid for pid in procs.pids() if procs.uid(pid) == uid]
        return [pid for pid in candidates if procs.alive(pid) and needle in procs.cmdline(pid)]

    def run(self, name, argv, **kwargs):
        """subprocess.run(argv, **kwargs) on host name: inside its namespace (as root, like `ip netns exec`)."""
        host = self.host(name)
        prefix = ["ip", "netns", "exec", host.netns] if host.netns else []
        return subprocess.run(prefix + list(argv), **kwargs)

    def home_entries(self, name, sub=".socklab"):
        """The names in host name's user's ~/sub, sorted ([] if it does not exist)."""
        try:
            return sorted(os.listdir(os.path.join(self.host(name).home, sub)))
        except FileNotFoundError:
            return []

    def down(self):
        """Remove everything the lab made, whatever lab.json says or misses; again is harmless. Raises LabError
        naming what could not be removed."""
        # every sshd of this bed (each runs with a config inside it), recorded or not, with all it spawned
        procs.kill_tree({pid for pid in procs.pids()
                         if f"-f {self.folder}{os.sep}" in procs.cmdline(pid) and procs.exe(pid) == SSHD})
        namespaces = sorted({host.netns for host in self.hosts if host.netns} | set(netns.names(netns_prefix(self.id))))
        for namespace in namespaces:
            procs.kill(set(netns.pids(namespace)))
        lab_users = user_names(self.id)
        # what the users still run elsewhere (a loopback host's sessions, anything that left a namespace)
        uids = {pwd.getpwnam(name).pw_uid for name in lab_users}
        procs.kill({pid for pid in procs.pids() if procs.uid(pid) in uids and procs.alive(pid)})
        links = sorted({host.veth for host in self.hosts if host.veth}
                       | {link for link in network.link_names() if link.startswith(veth_prefix(self.id))})
        network.remove(links + [bridge_name(self.id)], namespaces, link_group(self.id))
        for name in lab_users:
            users.remove_user(name)
        shutil.rmtree(self.root, ignore_errors=True)
        self._remove_bed_files()
        left = self.leftovers()
        if left:
            raise LabError(f"lab {self.id} not fully removed: {', '.join(left)} remain")

    def _remove_bed_files(self):
        host_folders = {host.sshd.folder for host in self.hosts}
        if os.path.isdir(self.folder):
            # host folders of a lab whose record lost them: labN holding an sshd_config
            host_folders |= {os.path.join(self.folder, entry) for entry in os.listdir(self.folder)
                             if re.fullmatch(r"lab\d+", entry)
                             and os.path.exists(os.path.join(self.folder, entry, "sshd_config"))}
        for folder in host_folders:
            shutil.rmtree(folder, ignore_errors=True)
        for name in BED_FILES:
            path = os.path.join(self.folder, name)
            if os.path.exists(path):
                os.remove(path)
        if self.record.get("created_folder") and os.path.isdir(self.folder) and not os.listdir(self.folder):
            os.rmdir(self.folder)

    def leftovers(self):
        """What of this lab still exists on the machine, by name."""
        left = netns.names(netns_prefix(self.id))
        left += sorted(link for link in network.link_names()
                       if link.startswith(veth_prefix(self.id)) or link == bridge_name(self.id))
        left += user_names(self.id)
        if os.path.exists(self.root):
            left.append(self.root)
        return left


def host_from_record(host, record):
    sshd = Sshd(host["sshd_folder"], host["address"], host["port"], host["user"],
                os.path.join(root_folder(record["id"]), "authorized_keys"), host.get("netns"))
    return LabHost(host["name"], host["address"], host["port"], host["user"], host["home"], host.get("netns"),
                   host.get("sysctls", {}), sshd, host.get("veth"))


def claim_id():
    """A fresh lab id, claimed by creating its root folder (mkdir is atomic: two labs cannot both get it)."""
    while True:
        lab_id = secrets.token_hex(ID_DIGITS // 2)
        if (netns.names(netns_prefix(lab_id)) or bridge_name(lab_id) in network.link_names()
                or user_names(lab_id)):
            continue
        try:
            os.mkdir(root_folder(lab_id))
        except FileExistsError:
            continue
        # the lab users must reach their homes through it
        os.chmod(root_folder(lab_id), 0o755)
        return lab_id


def free_port():
    """A TCP port on 127.0.0.1 that nothing uses right now (the kernel's pick)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def yaml_text(text):
    """text as a YAML scalar: plain when that is safe, else a double-quoted (JSON) string."""
    return text if re.fullmatch(r"[A-Za-z0-9_./-]+", text) else json.dumps(text)


def lab_id_in(folder):
    """The id of the lab whose bed is folder, from lab.json or, when that is gone or broken, from the files
    up() wrote next to it (the client key's comment, the inventory's header); None if nothing says."""
    try:
        with open(os.path.join(folder, RECORD)) as file:
            return json.load(file)["id"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    for name in (CLIENT_KEY + ".pub", INVENTORY):
        try:
            with open(os.path.join(folder, name)) as file:
                found = re.search(r"socklab-lab-([0-9a-f]{%d})|\(lab ([0-9a-f]{%d})\)" % (ID_DIGITS, ID_DIGITS),
                                  file.read())
        except OSError:
            continue
        if found:
            return found.group(1) or found.group(2)
    return None


def down(folder):
    """Take down the lab whose bed is folder, as far as anything of it can be found. True if there was one."""
    folder = os.path.abspath(folder)
    try:
        lab = Lab.load(folder)
    except LabError:
        lab_id = lab_id_in(folder)
        if lab_id is None:
            return False
        lab = Lab(folder, {"id": lab_id})
    lab.down()
    return True
