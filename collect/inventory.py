"""The inventory (hosts.yaml): which hosts a run measures and how to reach them.

    defaults: {settings every host gets}
    hosts:    {name: {settings}}                  a host's own settings win
    groups:   {name: [hosts]} or {name: {hosts: [hosts], settings}}   a group's settings go to its members

Validated on load: every mistake is a UserError naming the file, the line and the field. Secrets are never in it:
a key is named by its path or by an environment variable (key_env), or an ssh-agent or ~/.ssh/config provides it.
"""
import os
import re
import shlex
from dataclasses import dataclass, field

from formats import jsonfile, manifest as manifest_file, yamlfile
from formats.errors import UserError
from formats.hostlog import host_name_problem
from formats.records import shown
from labs import LABS

DEFAULT_PATH = "hosts.yaml"
TRANSPORTS = ("local", "ssh")
SHELLS = ("sh", "cmd", "powershell")
JUMP = re.compile(r"^(?:(?P<user>[^@\s]+)@)?(?P<host>[^@:\s]+)(?::(?P<port>[0-9]+))?$")
FORBIDDEN = {"password": "no passwords in hosts.yaml: name a key file (key:), or use an ssh-agent or ~/.ssh/config",
             "passphrase": "no passphrases in hosts.yaml: load the key into an ssh-agent"}


def _text(value):
    return isinstance(value, str) and value != ""


def _port(value):
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536


def _seconds(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _whole(value):
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= 100


def _key_file(value):
    return _text(value) and os.path.isfile(os.path.expanduser(value))


def _jump(value):
    """An inventory host's name or [user@]host[:port] with a port 1-65535 (which names apply is known later)."""
    found = JUMP.match(value) if _text(value) else None
    return bool(found) and (found.group("port") is None or _port(int(found.group("port"))))


def _variable(value):
    return isinstance(value, str) and re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", value) is not None


def launcher_words(value):
    """The words of a `launcher` setting: a list of words as it is, a string split as a shell splits it (shlex;
    never given to a shell). ValueError for anything else, an empty command or an unbalanced quote."""
    if isinstance(value, str):
        words = shlex.split(value)
    elif isinstance(value, list) and all(isinstance(word, str) for word in value):
        words = list(value)
    else:
        raise ValueError("neither a list of words nor a command line")
    if not words or not all(words):
        raise ValueError("an empty command or word")
    return words


def _launcher(value):
    try:
        launcher_words(value)
    except ValueError:
        return False
    return True


def _labs(value):
    return isinstance(value, list) and value and all(name in LABS for name in value)


# Each setting a host may have, what it must be, and how to say so.
SETTINGS = {
    "transport": (lambda value: value in TRANSPORTS, "one of " + ", ".join(TRANSPORTS)),
    "address": (_text, "a host name, an address or a ~/.ssh/config alias"),
    "port": (_port, "a port number, 1-65535"),
    "user": (_text, "a user name"),
    "key": (_key_file, "the path of a private key file that exists"),
    "key_env": (_variable, "the name of an environment variable holding a private key or its path"),
    "known_hosts": (_text, "the path of a known_hosts file (default: ~/.ssh/known_hosts)"),
    "jump": (_jump, "a jump host: an inventory host's name or [user@]host[:port] (port 1-65535)"),
    "python": (_text, "the Python command on the host, e.g. python3.11"),
    "shell": (lambda value: value in SHELLS, "one of " + ", ".join(SHELLS)),
    "os": (_text, "an OS hint, e.g. linux, freebsd, windows"),
    "labs": (_labs, "a list of lab names among " + ", ".join(LABS)),
    "launcher": (_launcher, "a command the agent runs under (local transport), as a list of words or a command line "
                            "split as a shell splits it, e.g. [runsc, --network=none, do] or 'ip netns exec lab1'"),
    "connect_timeout": (_seconds, "a number of seconds > 0"),
    "idle_timeout": (_seconds, "a number of seconds > 0"),
    "run_timeout": (_seconds, "a number of seconds > 0"),
    "keepalive": (_seconds, "a number of seconds > 0 between SSH keepalives"),
    "keepalive_count": (_whole, "how many unanswered SSH keepalives mean the link is down (1-100)"),
}
SECTIONS = ("defaults", "hosts", "groups")


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


def _check_name(name, path, line, what, field=None):
    problem = host_name_problem(name, what)
    if problem:
        raise UserError(problem, path=path, line=line, field=field)


def check_host_name(name, field):
    """A host name given on the command line, as hosts.yaml's are checked."""
    _check_name(name, None, None, "host", field)


def _settings(settings, path, prefix):
    """Each key known and each value valid, else a UserError at its line."""
    for key, value in settings.items():
        where = dict(path=path, line=settings.lines[key], field="{}.{}".format(prefix, key))
        if key in FORBIDDEN:
            raise UserError(FORBIDDEN[key], **where)
        if key not in SETTINGS:
            raise UserError("unknown setting (settings: {})".format(", ".join(SETTINGS)), **where)
        valid, wanted = SETTINGS[key]
        if not valid(value):
            raise UserError("{} is not {}".format(shown(value), wanted), **where)
    return dict(settings)


def _groups(document, path, hosts):
    """{group: (members, settings)}; a group is a list of hosts or a mapping with hosts: and settings."""
    entries = _mapping(document.get("groups") or {}, path, document.lines.get("groups"), "groups")
    groups = {}
    for name, entry in entries.items():
        line, field = entries.lines[name], "groups." + name
        _check_name(name, path, line, "group")
        if name in hosts:
            raise UserError("a group may not share a host's name", path=path, line=line, field=field)
        settings = {}
        if isinstance(entry, dict):
            members = entry.get("hosts")
            line = entry.lines.get("hosts", entry.line)
            settings = _settings(entry.without("hosts"), path, field)
            field += ".hosts"
        else:
            members = entry
        if not isinstance(members, list):
            raise UserError("a group is a list of host names, or a mapping with hosts: and settings", path=path,
                            line=line, field=field)
        for index, member in enumerate(members):
            if not isinstance(member, str) or member not in hosts:
                raise UserError("no host {!r} in hosts:".format(member), path=path, line=members.lines[index],
                                field=field)
        groups[name] = (list(members), settings)
    return groups


def _merged(name, own, defaults, groups, path, line):
    """defaults, then the settings of the host's groups (which must agree), then the host's own."""
    from_groups, source = {}, {}
    for group, (members, settings) in groups.items():
        if name not in members:
            continue
        for key, value in settings.items():
            if key in from_groups and from_groups[key] != value and key not in own:
                raise UserError("groups {} and {} give it different values; set it on the host".format(
                    source[key], group), path=path, line=line, field="hosts.{}.{}".format(name, key))
            from_groups[key], source[key] = value, group
    return {**defaults, **from_groups, **own}


def _check_jumps(hosts, path, lines):
    """A jump host named in the inventory must not lead back to where it started."""
    for name, host in hosts.items():
        seen, current = [name], host.settings.get("jump")
        while current in hosts:
            if current in seen:
                raise UserError("jump hosts go round in a circle: {}".format(" -> ".join(seen + [current])),
                                path=path, line=lines[name], field="hosts.{}.jump".format(name))
            seen.append(current)
            current = hosts[current].settings.get("jump")


def _check_launchers(hosts, path, lines):
    """A launcher wraps the agent the local transport starts; an SSH host has none."""
    for name, host in hosts.items():
        if "launcher" in host.settings and host.transport != "local":
            raise UserError("a launcher needs transport: local (it wraps the agent started on this machine)",
                            path=path, line=lines[name], field="hosts.{}.launcher".format(name))


def load(path=DEFAULT_PATH):
    document = yamlfile.load(path)
    document = _mapping(document, path, getattr(document, "line", 1), "the inventory")
    for key in document:
        if key not in SECTIONS:
            raise UserError("unknown section (sections: {})".format(", ".join(SECTIONS)), path=path,
                            line=document.lines[key], field=key)
    if "hosts" not in document:
        raise UserError("no hosts: section", path=path, line=1)
    entries = _mapping(document["hosts"], path, document.lines["hosts"], "hosts")
    if not entries:
        raise UserError("hosts: is empty", path=path, line=document.lines["hosts"])
    defaults = _settings(_mapping(document.get("defaults") or yamlfile.LineDict(), path,
                                  document.lines.get("defaults"), "defaults"), path, "defaults")
    own = {}
    for name, settings in entries.items():
        _check_name(name, path, entries.lines[name], "host")
        settings = _mapping(settings if settings is not None else yamlfile.LineDict(), path, entries.lines[name],
                            "host " + name)
        own[name] = _settings(settings, path, "hosts." + name)
    groups = _groups(document, path, own)
    hosts = {name: Host(name, _merged(name, settings, defaults, groups, path, entries.lines[name]))
             for name, settings in own.items()}
    _check_jumps(hosts, path, entries.lines)
    _check_launchers(hosts, path, entries.lines)
    return Inventory(path, hosts, {name: members for name, (members, _) in groups.items()})


def recorded(inventory, hosts):
    """The settings of `hosts` and of the jump hosts they name in the inventory, as a run records them (its
    manifest's `inventory`, for --resume); key and known_hosts paths made absolute, for a resume from elsewhere."""
    chosen, pending = {}, list(hosts)
    while pending:
        host = pending.pop(0)
        if host.name in chosen:
            continue
        settings = dict(host.settings)
        for path in ("key", "known_hosts"):
            if path in settings:
                settings[path] = os.path.abspath(os.path.expanduser(settings[path]))
        chosen[host.name] = settings
        if settings.get("jump") in inventory.hosts:
            pending.append(inventory.hosts[settings["jump"]])
    return chosen


class _FieldLines(dict):
    """The lines of a JSON file's fields under `where`, found when asked (only an error asks)."""

    def __init__(self, text, where):
        super().__init__()
        self.text, self.where = text, where

    def __missing__(self, key):
        return jsonfile.line_of(self.text, self.where + [key])


def from_run(run_dir, manifest):
    """The inventory a run recorded (its manifest's `inventory`), checked like hosts.yaml; UserError when the run
    has none (one made before socklab recorded it)."""
    path = os.path.join(run_dir, manifest_file.FILE)
    entries = manifest.get("inventory")
    if not entries:
        raise UserError("this run does not record the inventory it used: give it with --hosts", path=path,
                        field="inventory")
    _, text = jsonfile.read(path)
    hosts = {}
    for name, settings in entries.items():
        lines = yamlfile.LineDict(settings)
        lines.lines = _FieldLines(text, ["inventory", name])
        hosts[name] = Host(name, _settings(lines, path, "inventory." + name))
    _check_jumps(hosts, path, _FieldLines(text, ["inventory"]))
    _check_launchers(hosts, path, _FieldLines(text, ["inventory"]))
    return Inventory(path, hosts, {})
