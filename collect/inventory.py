"""The inventory (hosts.yaml): which hosts a run measures and how to reach them.

Validated on load: every mistake is a UserError naming the file, the line and the field. Secrets are never in it:
a key is named by its path, an ssh-agent or ~/.ssh/config does the rest.
"""
import re
from dataclasses import dataclass, field

from collect import yamlfile
from collect.errors import UserError
from labs import LABS

DEFAULT_PATH = "hosts.yaml"
TRANSPORTS = ("local", "ssh")
SHELLS = ("sh", "cmd", "powershell")
# Host names become file names (<host>.jsonl): keep them to characters that are safe everywhere.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
FORBIDDEN = {"password": "no passwords in hosts.yaml: name a key file (key:), or use an ssh-agent or ~/.ssh/config",
             "passphrase": "no passphrases in hosts.yaml: load the key into an ssh-agent"}


def _text(value):
    return isinstance(value, str) and value != ""


def _port(value):
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536


def _seconds(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _labs(value):
    return isinstance(value, list) and value and all(name in LABS for name in value)


# Each setting a host may have, what it must be, and how to say so.
SETTINGS = {
    "transport": (lambda value: value in TRANSPORTS, "one of " + ", ".join(TRANSPORTS)),
    "address": (_text, "a host name, an address or a ~/.ssh/config alias"),
    "port": (_port, "a port number, 1-65535"),
    "user": (_text, "a user name"),
    "key": (_text, "the path of a private key file"),
    "python": (_text, "the Python command on the host, e.g. python3.11"),
    "shell": (lambda value: value in SHELLS, "one of " + ", ".join(SHELLS)),
    "os": (_text, "an OS hint, e.g. linux, freebsd, windows"),
    "labs": (_labs, "a list of lab names among " + ", ".join(LABS)),
    "connect_timeout": (_seconds, "a number of seconds > 0"),
    "run_timeout": (_seconds, "a number of seconds > 0"),
}


@dataclass
class Host:
    name: str
    settings: dict = field(default_factory=dict)

    @property
    def transport(self):
        return self.settings.get("transport", "ssh")


@dataclass
class Inventory:
    path: str
    hosts: dict
    groups: dict

    def select(self, names=()):
        """The hosts named (host or group names), in inventory order; all hosts when no name is given."""
        if not names:
            return list(self.hosts.values())
        chosen = set()
        for name in names:
            if name in self.hosts:
                chosen.add(name)
            elif name in self.groups:
                chosen.update(self.groups[name])
            else:
                raise UserError("unknown host or group {!r} (known: {})".format(
                    name, ", ".join(list(self.hosts) + list(self.groups))), path=self.path)
        return [host for host_name, host in self.hosts.items() if host_name in chosen]


def _mapping(value, path, line, what):
    if not isinstance(value, dict):
        raise UserError("{} must be a mapping".format(what), path=path, line=line)
    return value


def _check_name(name, path, line, what):
    if not isinstance(name, str) or not NAME.match(name):
        raise UserError("{} name {!r}: use letters, digits, '.', '_' or '-' (at most 64)".format(what, name),
                        path=path, line=line)


def load(path=DEFAULT_PATH):
    document = yamlfile.load(path)
    document = _mapping(document, path, getattr(document, "line", None), "the inventory")
    for key in document:
        if key not in ("hosts", "groups"):
            raise UserError("unknown section (sections: hosts, groups)", path=path, line=document.lines[key],
                            field=key)
    if "hosts" not in document:
        raise UserError("no hosts: section", path=path, line=1)
    entries = _mapping(document["hosts"], path, document.lines["hosts"], "hosts")
    if not entries:
        raise UserError("hosts: is empty", path=path, line=document.lines["hosts"])
    hosts = {}
    for name, settings in entries.items():
        line = entries.lines[name]
        _check_name(name, path, line, "host")
        settings = _mapping(settings if settings is not None else {}, path, line, "host " + name)
        for key, value in settings.items():
            where = dict(path=path, line=settings.lines[key], field="hosts.{}.{}".format(name, key))
            if key in FORBIDDEN:
                raise UserError(FORBIDDEN[key], **where)
            if key not in SETTINGS:
                raise UserError("unknown setting (settings: {})".format(", ".join(SETTINGS)), **where)
            valid, wanted = SETTINGS[key]
            if not valid(value):
                raise UserError("{!r} is not {}".format(value, wanted), **where)
        hosts[name] = Host(name, dict(settings))
    groups = {}
    group_entries = _mapping(document.get("groups") or {}, path, document.lines.get("groups"), "groups")
    for name, members in group_entries.items():
        line = group_entries.lines[name]
        _check_name(name, path, line, "group")
        if name in hosts:
            raise UserError("a group may not share a host's name", path=path, line=line, field="groups." + name)
        if not isinstance(members, list):
            raise UserError("a group is a list of host names", path=path, line=line, field="groups." + name)
        for index, member in enumerate(members):
            if member not in hosts:
                raise UserError("no host {!r} in hosts:".format(member), path=path, line=members.lines[index],
                                field="groups." + name)
        groups[name] = list(members)
    return Inventory(path, hosts, groups)
