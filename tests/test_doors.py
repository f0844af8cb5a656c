"""Every door socklab reads, fed malformed input: hosts.yaml, expectation files, run directories (manifest, host
logs, results.csv) under every command that reads them, `import` files and the command line. Each case asserts
the exit status (2), that stderr is one line, `error: ` and no traceback, and that it names the file (and the
line, where it is known) and the field at fault.

The cases run the real program (cli.Program over tasks.py) inside this test process, so that some 900 of them
take a minute; test_each_door_through_the_real_entry_point runs one of each door as a subprocess through
./socklab itself. The table is built when the module is collected; each case writes its files under tmp_path.
"""
import json
import os
import re
import subprocess

import pytest

import cli
from collect.store import agent_version
from formats import manifest as manifest_file, rundir, table
from labs import LABS
from tests.conftest import HOST_RECORD, REPO

ANY_LINE = None


class Door:
    """One malformed input: what to write (write(tmp) -> {name: field regex}) and the command that reads it."""

    def __init__(self, door, name, build):
        self.door, self.name, self.build = door, name, build

    def __repr__(self):
        return "{}:{}".format(self.door, self.name)


CASES = []


def case(door, name):
    def register(build):
        CASES.append(Door(door, name, build))
        return build
    return register


def expected(path, line=ANY_LINE, field=None):
    """The regex of the one error line: `error: PATH[:LINE]: [FIELD: ]problem`."""
    where = re.escape(str(path)) + (":{}".format(line) if line else r"(:\d+)?")
    return r"^error: " + where + ": " + (re.escape(field) + ": " if field else "") + r"\S"


def option_error(field):
    """The regex of a command line error naming `field` (an option, a --where column)."""
    return r"^error: .*" + re.escape(field)


def socklab(argv, capsys):
    """(exit status, stdout, stderr) of ./socklab ARGV, run by this process."""
    with pytest.raises(SystemExit) as ended:
        cli.Program(name="socklab", binary=cli.NAME, version="test",
                    namespace=__import__("invoke").Collection.from_module(__import__("tasks"))).run(
            ["socklab"] + list(argv))
    out, err = capsys.readouterr()
    return ended.value.code, out, err


# ------------------------------------------------------------------------------------------------ hosts.yaml

def inventory_door(name, text, line, field, raw=None):
    def build(tmp):
        path = tmp / "hosts.yaml"
        if raw is not None:
            path.write_bytes(raw)
        else:
            path.write_text(text, encoding="utf-8")
        return ["run-all", "--hosts", str(path), "--out", str(tmp / "runs")], expected(path, line, field)
    CASES.append(Door("hosts.yaml", name, build))


HOST = "hosts:\n  a:\n    # a host of the lab\n"
BAD_SETTINGS = {
    "transport": ["telnet", 1, [], {}, True, None, ""],
    "address": ["", 1, [], {}, None],
    "port": [0, 70000, -1, "22", 22.5, True, [], None],
    "user": ["", 5, [], None],
    "key": ["/nonexistent/key", "", [], 5],
    "key_env": ["A B", "1X", "", 5, []],
    "known_hosts": ["", 5, []],
    "jump": ["host:70000", "@", "user@", "host:", "a@b@c", "h:0", "", 5, "h:x", "a b"],
    "python": ["", 3, []],
    "shell": ["bash", "csh", 5, []],
    "os": ["", 1, []],
    "labs": [[], ["nope"], "bind_matrix", [1], {}, [["bind_matrix"]]],
    "connect_timeout": [0, -1, "10", True, [], None],
    "idle_timeout": [0, -3, "x", False],
    "run_timeout": [0, "1h", []],
    "keepalive": [0, -1, "5", True, []],
    "keepalive_count": [0, 101, 1.5, "3", True, []],
    "password": ["x"],
    "passphrase": ["x"],
    "colour": ["red"],
}
for setting, values in BAD_SETTINGS.items():
    for value in values:
        shown = json.dumps(value)
        inventory_door("hosts.a.{}={}".format(setting, shown), HOST + "    {}: {}\n".format(setting, shown), 4,
                       "hosts.a." + setting)
for setting in ("port", "jump", "labs", "shell", "keepalive", "password", "key"):
    value = json.dumps(BAD_SETTINGS[setting][0])
    inventory_door("defaults.{}".format(setting), "defaults:\n  {}: {}\n".format(setting, value) + HOST, 2,
                   "defaults." + setting)
    inventory_door("groups.g.{}".format(setting), HOST + "groups:\n  g:\n    hosts: [a]\n    {}: {}\n".format(
        setting, value), 7, "groups.g." + setting)
for name, text, line, field in [
    ("a list", "- a\n- b\n", 1, None), ("a text", "just text\n", 1, None),
    ("unknown section", HOST + "hostz: {}\n", 4, "hostz"), ("no hosts", "groups: {}\n", 1, None),
    ("hosts empty", "hosts: {}\n", 1, None), ("hosts a list", "hosts: [a, b]\n", 1, None),
    ("hosts a text", "hosts: a\n", 1, None), ("a host a list", "hosts:\n  a: [x]\n", 2, None),
    ("a host a text", "hosts:\n  a: text\n", 2, None), ("host name ../etc", "hosts:\n  ../etc: {}\n", 2, None),
    ("host name with a space", "hosts:\n  a b: {}\n", 2, None), ("host name too long", "hosts:\n  " + "a" * 65 +
                                                                  ": {}\n", 2, None),
    ("host name a number", "hosts:\n  1: {}\n", 2, None), ("host name null", "hosts:\n  ~: {}\n", 2, None),
    ("defaults a list", "defaults: [a]\n" + HOST, 1, None),
    ("groups a list", HOST + "groups: [a]\n", 4, None),
    ("group name bad", HOST + "groups:\n  ../g: [a]\n", 5, None),
    ("group named as a host", HOST + "groups:\n  a: [a]\n", 5, "groups.a"),
    ("group member unknown", HOST + "groups:\n  g: [a, b]\n", 5, "groups.g"),
    ("group member a mapping", HOST + "groups:\n  g: [{a: b}]\n", 5, "groups.g"),
    ("group hosts a text", HOST + "groups:\n  g:\n    hosts: a\n", 6, "groups.g.hosts"),
    ("group a number", HOST + "groups:\n  g: 5\n", 5, "groups.g"),
    ("groups disagree", "hosts:\n  a: {}\ngroups:\n  g1: {hosts: [a], user: x}\n  g2: {hosts: [a], user: y}\n", 2,
     "hosts.a.user"),
    ("jump circle", "hosts:\n  a: {jump: b}\n  b: {jump: a}\n", 2, "hosts.a.jump"),
    ("section twice", HOST + "hosts:\n  b: {}\n", 4, "hosts"),
    ("host twice", HOST + "  a: {}\n", 4, "hosts.a"),
    ("setting twice", HOST + "    address: 192.0.2.1\n    address: 192.0.2.2\n", 5, "hosts.a.address"),
    ("group twice", HOST + "groups:\n  g: [a]\n  g: [a]\n", 6, "groups.g"),
    ("default twice", "defaults:\n  user: x\n  user: y\n" + HOST, 3, "defaults.user"),
    ("flow mapping key twice", "hosts:\n  a: {user: x, user: y}\n", 2, "hosts.a.user"),
    ("tag python object", "hosts:\n  a: !!python/object:os.system {}\n", 2, "hosts.a"),
    ("tag python name", "hosts:\n  a:\n    address: !!python/name:os.system\n", 3, "hosts.a.address"),
    ("tag python apply", "hosts: !!python/object/apply:os.system [id]\n", 1, "hosts"),
    ("tag binary", HOST + "    user: !!binary bGFi\n", 4, "hosts.a.user"),
    ("tag set", HOST + "    labs: !!set {bind_matrix}\n", 4, "hosts.a.labs"),
    ("tag timestamp", HOST + "    user: !!timestamp 2010-01-01\n", 4, "hosts.a.user"),
    ("tag omap", HOST + "    labs: !!omap [a: 1]\n", 4, "hosts.a.labs"),
    ("tag pairs", HOST + "    labs: !!pairs [a: 1]\n", 4, "hosts.a.labs"),
    ("local tag", HOST + "    user: !lab x\n", 4, "hosts.a.user"),
    ("int tag on text", HOST + "    port: !!int \"abc\"\n", 4, "hosts.a.port"),
    ("int tag on nothing", HOST + "    port: !!int ''\n", 4, "hosts.a.port"),
    ("float tag on text", HOST + "    idle_timeout: !!float \"x\"\n", 4, "hosts.a.idle_timeout"),
    ("bool tag on text", HOST + "    transport: !!bool \"maybe\"\n", 4, "hosts.a.transport"),
    ("int tag on a list", HOST + "    port: !!int [1]\n", 4, None),
    ("a huge number", HOST + "    port: " + "9" * 5000 + "\n", 4, "hosts.a.port"),
    ("deep lists", "hosts:\n  a:\n    labs: " + "[" * 100 + "]" * 100 + "\n", 3, None),
    ("deep mappings", "hosts:\n  a:\n    labs: " + "{a: " * 100 + "b" + "}" * 100 + "\n", 3, None),
    ("recursive alias", "hosts:\n  a:\n    labs: &x [*x]\n", 3, "hosts.a.labs[0]"),
    ("undefined alias", "hosts:\n  a:\n    labs: *x\n", 3, None),
    ("two documents", HOST + "---\n" + HOST, 4, None),
    ("unclosed bracket", "hosts: [\n", 2, None), ("bad indentation", "hosts:\n  a:\n   b: c\n  d\n", 5, None),
    ("a tab for indentation", "hosts:\n\ta: {}\n", 2, None),
    ("NUL", HOST + "    user: a\x00b\n", 4, None), ("ESC", HOST + "    user: \x1b[31m\n", 4, None),
    ("BEL", HOST + "    user: \x07\n", 4, None), ("DEL", HOST + "    user: a\x7f\n", 4, None),
    ("C1 control", HOST + "    user: a\x9b\n", 4, None), ("vertical tab", HOST + "  \x0b\n", 4, None),
]:
    inventory_door(name, text, line, field)
for name, raw, line in [("latin-1 byte", HOST.encode() + b"    user: caf\xe9\n", 4),
                        ("lone continuation byte", b"hosts:\n  \x80: {}\n", 2),
                        ("UTF-16", "hosts: {}\n".encode("utf-16"), 1),
                        ("cut multibyte", HOST.encode() + b"    user: \xe2\x82\n", 4)]:
    inventory_door(name, None, line, None, raw=raw)
BOMB = "".join("{0}: &{0} [{1}]\n".format(chr(98 + level), ",".join(["*" + chr(97 + level)] * 9))
               for level in range(8))
for place, text, line, field in [
    ("a host setting", "a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n" + BOMB + "hosts:\n  x:\n    user: *i\n",
     None, None),
    ("labs", "hosts:\n  x:\n    labs: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n    os: &b [*a,*a,*a,*a,*a,*a,*a,"
     "*a,*a]\n    user: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n    python: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n    shell: &e "
     "[*d,*d,*d,*d,*d,*d,*d,*d,*d]\n    address: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n", 8, "hosts.x.address"),
    ("a group setting", "a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n" + BOMB + "hosts:\n  x: {}\ngroups:\n  g:\n"
     "    hosts: [x]\n    user: *i\n", None, None),
    ("defaults", "a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n" + BOMB + "defaults:\n  user: *i\nhosts:\n  x: {}\n",
     None, None),
]:
    inventory_door("alias bomb in " + place, text, line, field)


# ------------------------------------------------------------------------------------------------ expectations

def write_good_run(folder, cases=None, host_record=None, status=manifest_file.COMPLETED, name="h"):
    """A small valid run of host `name` (bind_matrix cases) written as the store writes one; returns its path."""
    path = os.path.join(str(folder), "run")
    os.makedirs(path)
    cases = GOOD_CASES if cases is None else cases
    manifest = manifest_file.new("20200101-000000Z", [name], ["bind_matrix"], [], "test", agent_version(),
                                 {name: {"transport": "local"}})
    manifest["hosts"][name].update(status=status, cases=len(cases))
    manifest["ended"] = manifest["started"]
    manifest_file.write(path, manifest)
    lines = [host_record or dict(HOST_RECORD, python="3.11.7", admin=False, options=["SO_REUSEADDR"],
                                 witness="proc", sysctls={"net.ipv4.tcp_tw_reuse": "2"})]
    lines += [{"record": "plan", "lab": "bind_matrix", "cases": len(cases)}] + cases
    lines += [{"record": "end", "cases": len(cases), "seconds": 0.5, "cpu_seconds": 0.2}]
    with open(rundir.log_path(path, name), "w") as stream:
        stream.write("".join(json.dumps(line) + "\n" for line in lines))
    return path


def bind_case(state="LISTEN", **fields):
    params = dict(proto="tcp", family="inet", state=state, first_opts="none", second_opts="none",
                  first_addr="wildcard", second_addr="wildcard", prober="other_process")
    record = dict(record="case", lab="bind_matrix", case_id="/".join(params.values()), **params, outcome="EADDRINUSE",
                  errno=98, witness=state, detail="", setsockopt="ok", bind="EADDRINUSE", listen="")
    record.update(fields)
    return record


GOOD_CASES = [bind_case(state) for state in ("LISTEN", "TIME_WAIT", "BOUND")]


def expectation_door(name, text, line, field):
    def build(tmp):
        path = tmp / "table.yaml"
        path.write_text(text, encoding="utf-8")
        return ["check", "--run", write_good_run(tmp), "--expectations", str(path)], expected(path, line, field)
    CASES.append(Door("expectations", name, build))


RULE = "lab: bind_matrix\nrules:\n  - when: {os_family: linux}\n    expect: {bind: ok}\n    source: a source text\n"
LAB_COLUMNS = {"bind_matrix": "state", "hijack": "prober", "time_wait_owner": "closer", "tuple_reuse": "target",
               "unix_sockets": "scenario", "runtime_defaults": "helper", "socketpair_churn": "strategy",
               "listener_drain": "addr"}
for lab, column in LAB_COLUMNS.items():
    start = "lab: {}\nrules:\n  - when: {{".format(lab)
    end = "}}\n    expect: {{outcome: ok}}\n    source: a source text\n"
    for value, problem in (("NOPE", "unknown value"), ("[]", "empty list"), ("{a: b}", "a mapping"),
                           ("true", "a flag"), ("~", "null"), ("3.10", "a float")):
        expectation_door("{} {}={} ({})".format(lab, column, value, problem),
                         start + "{}: {}".format(column, value) + end.format(), 3, "rules[0].when." + column)
    expectation_door(lab + " unknown column", start + "colour: red" + end.format(), 3, "rules[0].when.colour")
    expectation_door(lab + " expect unknown step", "lab: {}\nrules:\n  - expect: {{nope: ok}}\n    source: "
                     "a source text\n".format(lab), 3, "rules[0].expect.nope")
    expectation_door(lab + " expect unknown outcome", "lab: {}\nrules:\n  - expect: {{outcome: fine}}\n    source: "
                     "a source text\n".format(lab), 3, "rules[0].expect.outcome")
for name, text, line, field in [
    ("empty file", "", None, None), ("a list", "- a\n", 1, None), ("a text", "text\n", 1, None),
    ("unknown key", RULE + "colour: red\n", 6, "colour"), ("no lab", "rules: []\n", 1, "lab"),
    ("unknown lab", RULE.replace("bind_matrix", "nope"), 1, "lab"), ("lab a list", RULE.replace(
        "lab: bind_matrix", "lab: [bind_matrix]"), 1, "lab"),
    ("sources a list", RULE + "sources: [a]\n", 6, "sources"),
    ("source id with a space", RULE + "sources:\n  a b: text\n", 7, "sources.a b"),
    ("source text a number", RULE + "sources:\n  a: 5\n", 7, "sources.a"),
    ("defaults a list", RULE + "defaults: [a]\n", 6, "defaults"),
    ("defaults unknown column", RULE + "defaults: {colour: red}\n", 6, "defaults.colour"),
    ("defaults unknown family", RULE + "defaults: {os_family: plan9}\n", 6, "defaults.os_family"),
    ("rules missing", "lab: bind_matrix\n", 1, "rules"), ("rules empty", "lab: bind_matrix\nrules: []\n", 2, "rules"),
    ("rules a mapping", "lab: bind_matrix\nrules: {a: b}\n", 2, "rules"),
    ("rule a text", "lab: bind_matrix\nrules:\n  - text\n", 3, "rules[0]"),
    ("rule unknown key", RULE + "    colour: red\n", 6, "rules[0].colour"),
    ("when a list", RULE.replace("when: {os_family: linux}", "when: [a]"), 3, "rules[0].when"),
    ("os_family unknown", RULE.replace("linux", "plan9"), 3, "rules[0].when.os_family"),
    ("os_release bad range", RULE.replace("os_family: linux", "os_release: '>=abc'"), 3, "rules[0].when.os_release"),
    ("os_release empty range", RULE.replace("os_family: linux", "os_release: '>2,<1'"), 3,
     "rules[0].when.os_release"),
    ("python a float", RULE.replace("os_family: linux", "python: 3.10"), 3, "rules[0].when.python"),
    ("options in the wrong order", RULE.replace("os_family: linux", "first_opts: SO_REUSEPORT+SO_REUSEADDR"), 3,
     "rules[0].when.first_opts"),
    ("unknown option", RULE.replace("os_family: linux", "second_opts: SO_FOO"), 3, "rules[0].when.second_opts"),
    ("option twice", RULE.replace("os_family: linux", "second_opts: SO_REUSEADDR+SO_REUSEADDR"), 3,
     "rules[0].when.second_opts"),
    ("expect missing", "lab: bind_matrix\nrules:\n  - source: a source text\n", 3, "rules[0].expect"),
    ("expect a list", RULE.replace("expect: {bind: ok}", "expect: [ok]"), 4, "rules[0].expect"),
    ("expect empty", RULE.replace("expect: {bind: ok}", "expect: {}"), 4, "rules[0].expect"),
    ("expect empty list", RULE.replace("{bind: ok}", "{bind: []}"), 4, "rules[0].expect.bind"),
    ("expect a mapping", RULE.replace("{bind: ok}", "{bind: {a: b}}"), 4, "rules[0].expect.bind"),
    ("expect a number", RULE.replace("{bind: ok}", "{bind: 98}"), 4, "rules[0].expect.bind"),
    ("source missing", "lab: bind_matrix\nrules:\n  - expect: {bind: ok}\n", 3, "rules[0].source"),
    ("source empty", RULE.replace("a source text", "''"), 5, "rules[0].source"),
    ("source unknown id", RULE.replace("a source text", "nosuchid"), 5, "rules[0].source"),
    ("source a mapping", RULE.replace("a source text", "{a: b}"), 5, "rules[0].source"),
    ("source list with a number", RULE.replace("a source text", "[a text, 5]"), 5, "rules[0].source"),
    ("section a number", RULE + "    section: 5\n", 6, "rules[0].section"),
    ("note empty", RULE + "    note: ' '\n", 6, "rules[0].note"),
    ("rules tie", RULE + "  - when: {os_family: linux}\n    expect: {bind: EADDRINUSE}\n    source: another text\n",
     7, "rules[1].expect"),
    ("key twice", RULE + "lab: hijack\n", 6, "lab"),
    ("when key twice", RULE.replace("{os_family: linux}", "{os_family: linux, os_family: windows}"), 3,
     "rules[0].when.os_family"),
    ("tag python", RULE.replace("a source text", "!!python/object/apply:os.system [id]"), 5, "rules[0].source"),
    ("tag int on text", RULE.replace("{bind: ok}", "{bind: !!int abc}"), 4, "rules[0].expect.bind"),
    ("tag binary", RULE.replace("a source text", "!!binary YWJj"), 5, "rules[0].source"),
    ("tag timestamp", RULE.replace("os_family: linux", "os_release: !!timestamp 2010-01-01"), 3,
     "rules[0].when.os_release"),
    ("NUL", RULE + "# \x00\n", 6, None), ("ESC", RULE.replace("a source text", "a \x1b[1m text"), 5, None),
    ("deep nesting", RULE.replace("{bind: ok}", "{bind: " + "[" * 100 + "]" * 100 + "}"), 4, None),
    ("alias bomb in a when value", "lab: bind_matrix\nx: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n" + BOMB +
     "rules:\n  - when: {os_release: *i}\n    expect: {bind: ok}\n    source: text\n", None, None),
    ("alias bomb in expect", "lab: bind_matrix\nx: &a [ok,ok,ok,ok,ok,ok,ok,ok,ok]\n" + BOMB.replace("b:", "bb:") +
     "rules:\n  - expect: {bind: *i}\n    source: text\n", None, None),
    ("not YAML", "lab: [\n", 2, None),
]:
    expectation_door(name, text, line, field)


def expectation_bytes_door(name, raw, line):
    def build(tmp):
        path = tmp / "table.yaml"
        path.write_bytes(raw)
        return ["check", "--run", write_good_run(tmp), "--expectations", str(path)], expected(path, line)
    CASES.append(Door("expectations", name, build))


expectation_bytes_door("latin-1 byte", RULE.encode().replace(b"a source", b"\xe9 source"), 5)
expectation_bytes_door("UTF-16", RULE.encode("utf-16"), 1)
def expectations_folder_without_tables(tmp):
    """A folder named like a table, holding a folder named like one: no file to read, and it says so."""
    os.makedirs(str(tmp / "table.yaml" / "sub.yaml"))
    return (["check", "--run", write_good_run(tmp), "--expectations", str(tmp / "table.yaml")],
            expected(tmp / "table.yaml"))


CASES.append(Door("expectations", "a folder where the file belongs", expectations_folder_without_tables))
CASES.append(Door("expectations", "missing", lambda tmp: (
    ["check", "--run", write_good_run(tmp), "--expectations", str(tmp / "absent.yaml")],
    expected(tmp / "absent.yaml"))))


# ------------------------------------------------------------------------------------------------ run directories

def commands(run, tmp):
    """Every command that reads a run directory, with `run` in the place where it reads one, and the files the
    others need."""
    def good():
        return write_good_run(tmp / "good")

    def captured():
        path = tmp / "captured.jsonl"
        path.write_text(json.dumps(HOST_RECORD) + "\n")
        return str(path)
    return {
        "check": lambda: ["check", "--run", run],
        "report": lambda: ["report", "--run", run, "--out", str(tmp / "report")],
        "regress current": lambda: ["regress", "--baseline", good(), "--current", run, "--out", str(tmp / "rg")],
        "regress baseline": lambda: ["regress", "--baseline", run, "--current", good(), "--out", str(tmp / "rg")],
        "history": lambda: ["history", "--host", "h", "--runs", os.path.dirname(run)],
        "compare": lambda: ["compare", "h", "windows", "--run", run],
        "baseline": lambda: ["baseline", run, "--folder", str(tmp / "baselines")],
        "resume": lambda: ["run-all", "--resume", run],
        "import --run": lambda: ["import", captured(), "--host", "new", "--run", run],
    }


def run_door(name, change, fault, line=ANY_LINE, field=None, skip=()):
    """One damage to a good run (change(run path) -> None), read by every command; `fault` is the damaged file's
    name in the run."""
    for command in commands("", None):  # the names only: nothing is built yet
        if command in skip:
            continue

        def build(tmp, command=command):
            run = write_good_run(tmp)
            change(run)
            argv = commands(run, tmp)[command]()
            return argv, expected(os.path.join(run, fault), line, field)
        CASES.append(Door("run", "{} / {}".format(name, command), build))


def manifest_change(**fields):
    """A change of the manifest: each field set to its value (None: removed)."""
    def change(run):
        path = os.path.join(run, "manifest.json")
        manifest = json.load(open(path))
        for field, value in fields.items():
            target, key = manifest, field
            if "." in field:
                host, key = field.split(".")
                target = manifest["hosts"][host]
            if value is None:
                target.pop(key)
            else:
                target[key] = value
        with open(path, "w") as stream:
            json.dump(manifest, stream, indent=2)
    return change


def manifest_text(text):
    def change(run):
        with open(os.path.join(run, "manifest.json"), "wb") as stream:
            stream.write(text if isinstance(text, bytes) else text.encode())
    return change


NO_MANIFEST_HISTORY = ("history",)  # history lists run directories by their manifest: a run without one is none
for name, fields, field in [
    ("run_id missing", {"run_id": None}, "run_id"), ("run_id a number", {"run_id": 5}, "run_id"),
    ("run_id empty", {"run_id": ""}, "run_id"), ("hosts missing", {"hosts": None}, "hosts"),
    ("hosts a list", {"hosts": ["h"]}, "hosts"), ("status unknown", {"h.status": "done"}, "hosts.h.status"),
    ("status a number", {"h.status": 1}, "hosts.h.status"), ("cases below 0", {"h.cases": -1}, "hosts.h.cases"),
    ("cases a text", {"h.cases": "3"}, "hosts.h.cases"), ("reason a number", {"h.reason": 5}, "hosts.h.reason"),
    ("labs a text", {"labs": "bind_matrix"}, "labs"), ("labs unknown", {"labs": ["nope"]}, "labs"),
    ("where a text", {"where": "state=LISTEN"}, "where"), ("where malformed", {"where": ["state"]}, "where"),
    ("where unknown value", {"where": ["state=LISTN"]}, "where"), ("where empty value", {"where": ["state=,"]},
                                                                   "where"),
    ("ended a number", {"ended": 5}, "ended"), ("started a list", {"started": []}, "started"),
    ("reopened a text", {"reopened": "x"}, "reopened"), ("published a text", {"published": "yes"}, "published"),
    ("inventory a list", {"inventory": ["h"]}, "inventory"), ("tool_version a number", {"tool_version": 1},
                                                              "tool_version"),
]:
    run_door("manifest " + name, manifest_change(**fields), "manifest.json", field=field)


def host_entry(value):
    def change(run):
        path = os.path.join(run, "manifest.json")
        manifest = json.load(open(path))
        manifest["hosts"]["h"] = value
        json.dump(manifest, open(path, "w"), indent=2)
    return change


run_door("manifest host entry a list", host_entry([]), "manifest.json", field="hosts.h")
run_door("manifest host entry a text", host_entry("completed"), "manifest.json", field="hosts.h")
for name, text, line in [("not JSON", "{", 1), ("empty", "", 1), ("a list", "[]", 1), ("NaN", '{"run_id": NaN}', None),
                         ("key twice", '{"run_id": "a",\n "run_id": "b", "hosts": {}}', 2),
                         ("deep nesting", '{"hosts": ' + "[" * 100 + "]" * 100 + "}", 1),
                         ("trailing garbage", '{"run_id": "a", "hosts": {}} x', 1)]:
    run_door("manifest " + name, manifest_text(text), "manifest.json", line=line, skip=())
run_door("manifest latin-1", manifest_text(b'{"run_id": "caf\xe9", "hosts": {}}'), "manifest.json", line=1)
run_door("manifest NUL", manifest_text(b'{"run_id": "a", "hosts": {}}\x00'), "manifest.json", line=1)


def manifest_folder(run):
    os.remove(os.path.join(run, "manifest.json"))
    os.makedirs(os.path.join(run, "manifest.json"))


run_door("manifest.json a folder", manifest_folder, "manifest.json")


def log_line(number, record=None, raw=None):
    """A change of the host log: line `number` (1: the host record, 2: the plan, 3...: cases) replaced."""
    def change(run):
        path = rundir.log_path(run, "h")
        lines = open(path, "rb").read().split(b"\n")
        lines[number - 1] = raw if raw is not None else json.dumps(record).encode()
        open(path, "wb").write(b"\n".join(lines))
    return change


CASE = GOOD_CASES[0]
HOST_FACTS = dict(HOST_RECORD, python="3.11.7")
for name, number, record, field in [
    ("errno a text", 3, dict(CASE, errno="abc"), "errno"), ("errno a float", 3, dict(CASE, errno=1.5), "errno"),
    ("errno true", 3, dict(CASE, errno=True), "errno"), ("a parameter a list", 3, dict(CASE, state=["LISTEN"]),
                                                          "state"),
    ("a parameter unknown", 3, dict(CASE, state="LISTN"), "state"), ("a parameter a number", 3, dict(CASE, proto=6),
                                                                     "proto"),
    ("options misspelled", 3, dict(CASE, first_opts="SO_REUSEPORT+SO_REUSEADDR"), "first_opts"),
    ("a step a mapping", 3, dict(CASE, bind={"a": 1}), "bind"), ("a step a sentence", 3, dict(CASE, bind="not ok"),
                                                                 "bind"),
    ("an extra field a list", 3, dict(CASE, colour=["red"]), "colour"),
    ("witness a number", 3, dict(CASE, witness=5), "witness"), ("detail a list", 3, dict(CASE, detail=[]), "detail"),
    ("lab unknown", 3, dict(CASE, lab="nope"), "lab"), ("lab missing", 3, {k: v for k, v in CASE.items() if k != "lab"},
                                                        "lab"),
    ("lab a list", 3, dict(CASE, lab=["bind_matrix"]), "lab"),
    ("case_id missing", 3, {k: v for k, v in CASE.items() if k != "case_id"}, "case_id"),
    ("case_id empty", 3, dict(CASE, case_id=""), "case_id"), ("case_id a number", 3, dict(CASE, case_id=1),
                                                              "case_id"),
    ("outcome missing", 3, {k: v for k, v in CASE.items() if k != "outcome"}, "outcome"),
    ("outcome a number", 3, dict(CASE, outcome=98), "outcome"), ("outcome a sentence", 3, dict(CASE, outcome="not ok"),
                                                                 "outcome"),
    ("a case twice", 4, CASE, "case_id"), ("record kind unknown", 3, dict(CASE, record="weather"), "record"),
    ("record missing", 3, {k: v for k, v in CASE.items() if k != "record"}, "record"),
    ("a case first", 1, CASE, "record"), ("plan cases below 0", 2, {"record": "plan", "lab": "bind_matrix",
                                                                    "cases": -1}, "cases"),
    ("plan lab unknown", 2, {"record": "plan", "lab": "nope", "cases": 3}, "lab"),
    ("end cases a text", 6, {"record": "end", "cases": "x"}, "cases"),
    ("end seconds below 0", 6, {"record": "end", "cases": 3, "seconds": -1}, "seconds"),
    ("sysctls a list", 1, dict(HOST_FACTS, sysctls=["a"]), "sysctls"),
    ("sysctls values numbers", 1, dict(HOST_FACTS, sysctls={"net.ipv4.tcp_tw_reuse": 2}), "sysctls"),
    ("options a text", 1, dict(HOST_FACTS, options="SO_REUSEADDR"), "options"),
    ("options unknown", 1, dict(HOST_FACTS, options=["SO_FOO"]), "options"),
    ("admin a text", 1, dict(HOST_FACTS, admin="yes"), "admin"),
    ("os_family missing", 1, {k: v for k, v in HOST_FACTS.items() if k != "os_family"}, "os_family"),
    ("os_family with a space", 1, dict(HOST_FACTS, os_family="Linux 6"), "os_family"),
    ("os_release missing", 1, {k: v for k, v in HOST_FACTS.items() if k != "os_release"}, "os_release"),
    ("os_release a number", 1, dict(HOST_FACTS, os_release=6.1), "os_release"),
    ("upstream_release a number", 1, dict(HOST_FACTS, upstream_release=6), "upstream_release"),
    ("python a number", 1, dict(HOST_FACTS, python=3.11), "python"),
]:
    run_door("log " + name, log_line(number, record), "h.jsonl", line=number, field=field)
for name, number, raw, field in [
    ("not JSON", 3, b'{"record": "case", "lab": "bind_', None), ("latin-1", 3, b'{"detail": "caf\xe9"}', None),
    ("a list", 3, b"[1, 2]", None), ("a number", 3, b"5", None), ("NaN", 3, b'{"record": "end", "cases": NaN}', None),
    ("key twice", 3, b'{"record": "case", "record": "case"}', "record"),
    ("deep nesting", 3, b'{"record": "case", "x": ' + b"[" * 100 + b"]" * 100 + b"}", None),
    ("NUL", 3, b'{"record": "case"}\x00', None),
]:
    run_door("log " + name, log_line(number, raw=raw), "h.jsonl", line=number, field=field)


def log_folder(run):
    os.remove(rundir.log_path(run, "h"))
    os.makedirs(rundir.log_path(run, "h"))


run_door("host log a folder", log_folder, "h.jsonl")


def results_table(change):
    """A run whose results.csv is current and damaged by change(text) -> text."""
    def damage(run):
        path = os.path.join(run, table.TABLE)
        table.write(table.from_logs(rundir.read_run(run)), path)
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
        with open(path, "w", encoding="utf-8") as stream:
            stream.write(change(text))
    return damage


def column_replaced(old, new):
    return lambda text: text.replace(old, new, 1)


def cell_replaced(column, value, row=1):
    def change(text):
        lines = text.split("\n")
        header = lines[0].split(",")
        cells = lines[row].split(",")
        cells[[name.strip('"') for name in header].index(column)] = value
        lines[row] = ",".join(cells)
        return "\n".join(lines)
    return change


for name, change, line, field in [
    ("outcome column missing", column_replaced('"outcome"', '"result"'), 1, "columns"),
    ("run_id column missing", column_replaced('"run_id"', '"run"'), 1, "columns"),
    ("a lab's column missing", column_replaced('"proto"', '"protocol"'), 1, "columns"),
    ("lab unknown", cell_replaced("lab", '"nope"'), 2, "lab"),
    ("run_id another", cell_replaced("run_id", '"other"'), 2, "run_id"),
    ("host unknown", cell_replaced("host", '"stranger"'), 2, "host"),
    ("errno a text", cell_replaced("errno", '"abc"', row=2), 3, "errno"),
    ("outcome a sentence", cell_replaced("outcome", '"not ok"'), 2, "outcome"),
    ("state unknown", cell_replaced("state", '"LISTN"', row=3), 4, "state"),
    ("case_id empty", cell_replaced("case_id", ""), 2, "case_id"),
    ("a row twice", lambda text: text.rstrip("\n") + "\n" + text.split("\n")[1] + "\n", 5, "case_id"),
    ("not a table", lambda text: '"a","b\n1,2,3,4\n', None, None),
]:
    for command in ("check", "report", "compare"):
        def build(tmp, change=change, line=line, field=field, command=command):
            run = write_good_run(tmp)
            results_table(change)(run)
            return commands(run, tmp)[command](), expected(os.path.join(run, table.TABLE), line, field)
        CASES.append(Door("results.csv", "{} / {}".format(name, command), build))


def table_folder(command):
    def build(tmp):
        run = write_good_run(tmp)
        os.makedirs(os.path.join(run, table.TABLE))
        return commands(run, tmp)[command](), expected(os.path.join(run, table.TABLE))
    return build


for command in ("check", "report", "compare"):
    CASES.append(Door("results.csv", "a folder / " + command, table_folder(command)))


# ------------------------------------------------------------------------------------------------ import

def import_door(name, content, line=ANY_LINE, field=None, args=("--host", "vm"), path_in_error=True):
    def build(tmp):
        path = tmp / "captured.jsonl"
        if content is not None:
            path.write_bytes(content if isinstance(content, bytes) else content.encode())
        argv = ["import", str(path)] + list(args) + ["--out", str(tmp / "runs")]
        return argv, expected(path, line, field) if path_in_error else option_error(field)
    CASES.append(Door("import", name, build))


GOOD_LOG = "".join(json.dumps(line) + "\n" for line in [HOST_FACTS, {"record": "plan", "lab": "bind_matrix",
                                                                     "cases": 3}] + GOOD_CASES)
for name, content, line, field in [
    ("missing", None, None, None), ("empty", "", None, None), ("only blank lines", "\n\n", None, None),
    ("not agent output", "<html>\n</html>\n", 1, None), ("a case first", json.dumps(CASE) + "\n" + GOOD_LOG, 1,
                                                         "record"),
    ("latin-1", GOOD_LOG.encode() + b'{"detail": "\xe9"}\n', 6, None),
    ("garbage in the middle", GOOD_LOG + "garbage\n" + json.dumps(CASE) + "\n", 6, None),
    ("errno a text", GOOD_LOG + json.dumps(bind_case("FIN_WAIT_2", errno="abc")) + "\n", 6, "errno"),
    ("a parameter a list", GOOD_LOG + json.dumps(bind_case("FIN_WAIT_2", prober=["x"])) + "\n", 6, "prober"),
    ("sysctls a list", json.dumps(dict(HOST_FACTS, sysctls=[1])) + "\n", 1, "sysctls"),
    ("unknown lab", GOOD_LOG + json.dumps(dict(CASE, lab="nope")) + "\n", 6, "lab"),
    ("a case twice", GOOD_LOG + json.dumps(CASE) + "\n", 6, "case_id"),
    ("NUL in a line", GOOD_LOG + '{"record": "end", "cases": 3}\x00\n', 6, None),
    ("key twice", GOOD_LOG + '{"record": "end", "record": "end", "cases": 3}\n', 6, "record"),
]:
    import_door(name, content, line, field)
import_door("host name ../etc", GOOD_LOG, field="--host", args=("--host", "../etc"), path_in_error=False)
import_door("host name empty", GOOD_LOG, field="--host", args=("--host", ""), path_in_error=False)
import_door("no --host for a file", GOOD_LOG, field="--host", args=(), path_in_error=False)


def import_folder_door(name, files, host_args, error_file, field=None):
    def build(tmp):
        folder = tmp / "captured"
        folder.mkdir()
        for file_name, content in files.items():
            (folder / file_name).write_text(content)
        argv = ["import", str(folder)] + list(host_args) + ["--out", str(tmp / "runs")]
        return argv, (expected(folder / error_file if error_file else folder, None, field) if error_file is not None
                      else option_error(field))
    CASES.append(Door("import", name, build))


import_folder_door("a folder without <host>.jsonl", {"notes.txt": "x"}, (), "")
import_folder_door("a folder with --host", {"vm.jsonl": GOOD_LOG}, ("--host", "vm"), None, "--host")
import_folder_door("a folder's only file bad", {"vm.jsonl": "garbage\n"}, (), "vm.jsonl")
import_folder_door("a folder's host name bad", {"a b.jsonl": GOOD_LOG}, (), "a b.jsonl")


def import_into(name, prepare, field=None, fault=None):
    def build(tmp):
        path = tmp / "captured.jsonl"
        path.write_text(GOOD_LOG)
        run, fault_path = prepare(tmp)
        return ["import", str(path), "--host", "h", "--run", run], expected(fault_path, None, field)
    CASES.append(Door("import", name, build))


import_into("--run has the host", lambda tmp: (write_good_run(tmp),) * 2, field="--host")
import_into("--run absent", lambda tmp: (str(tmp / "absent"),) * 2)
import_into("--run published", lambda tmp: (REPO + "/archive/seed004-2010",) * 2)
def a_file(tmp):
    (tmp / "file").write_text("x")
    return (str(tmp / "file"),) * 2


import_into("--run a file", a_file)


# ------------------------------------------------------------------------------------------------ command line

def option_door(name, argv, field):
    def build(tmp):
        return [part.format(tmp=tmp) for part in argv], option_error(field.format(tmp=tmp))
    CASES.append(Door("command line", name, build))


OUT = ["--out", "{tmp}/runs"]
for where, field in [
    ("state=LISTN", "state"), ("state=,", "state"), ("state=", "state"), ("=LISTEN", "--where"), ("state", "--where"),
    ("state=LISTEN,LISTN", "state"), ("proto=sctp", "proto"), ("family=inet7", "family"), ("prober=nobody", "prober"),
    ("first_opts=SO_FOO", "first_opts"), ("second_opts=SO_REUSEPORT+SO_REUSEADDR", "second_opts"),
    ("first_opts=none+SO_REUSEADDR", "first_opts"), ("pairs=0", "pairs"), ("pairs=-1", "pairs"),
    ("pairs=abc", "pairs"), ("pairs=1.5", "pairs"), ("clients=0", "clients"), ("clients=x", "clients"),
    ("scenario=nope", "scenario"), ("strategy=fast", "strategy"), ("closer=nobody", "closer"),
    ("target=mars", "target"), ("helper=nope", "helper"), ("colour=red", "colour"), ("namespace=x", "namespace"),
]:
    option_door("run-all --where " + where, ["run-all", "--where", where] + OUT, field)
    option_door("run --where " + where, ["run", "--host", "local", "--where", where] + OUT, field)
for wheres, field in [(["proto=udp", "state=LISTEN"], "state=LISTEN"), (["proto=udp", "state=TIME_WAIT"], "state"),
                      (["proto=udp", "state=CLOSE_WAIT", "family=inet"], "state"),
                      (["scenario=race", "namespace=none"], "namespace")]:
    option_door("--where " + " ".join(wheres), ["run-all"] + [word for where in wheres for word in ("--where", where)]
                + OUT, field)
option_door("--where of a column the lab lacks", ["run-all", "--lab", "hijack", "--where", "state=LISTEN"] + OUT, "state")
option_door("bench --where state=LISTN", ["bench", "--where", "state=LISTN"], "state")
for task, option, values in [("run-all", "--parallel", ["0", "-1", "abc", "1.5", "257", ""]),
                             ("run", "--parallel", ["0", "x"]), ("hosts", "--parallel", ["0", "1000", "many"]),
                             ("lab-up", "--count", ["0", "201", "abc", "-4"]), ("bench", "--rounds", ["0", "x"]),
                             ("lab-vm-up", "--timeout", ["0", "soon", "100000"])]:
    for value in values:
        extra = ["--host", "local"] if task == "run" else []
        option_door("{} {} {!r}".format(task, option, value), [task, option, value] + extra + OUT * (task in (
            "run-all", "run")), option)
for task in ("run-all", "run", "hosts", "check", "report", "regress", "baseline", "history", "compare", "import",
             "lab-up", "lab-down", "agent", "bench", "test"):
    # a task's positional arguments first: invoke would take --nosuch for one of them
    positional = {"run": ["local"], "import": ["x.jsonl"], "history": ["h"], "compare": ["x", "y"], "baseline": ["r"]}
    option_door(task + " --nosuch", [task] + positional.get(task, []) + ["--nosuch"], "--nosuch")
for argv, field in [(["nosuchtask"], "nosuchtask"), (["--nosuch"], "--nosuch"), (["run-all", "--out"], "--out"),
                    (["check", "--run"], "--run"), (["run", "--host"], "--host"), (["run"], "host"),
                    (["import"], "path"), (["history"], "host"), (["compare", "linux"], "b"), (["baseline"], "run"),
                    (["run-all", "--lab", "nope"] + OUT, "--lab"), (["run", "--host", "nope"] + OUT, "nope"),
                    (["regress", "--pair", "a"], "--pair"), (["regress", "--pair", "=b"], "--pair"),
                    (["regress", "--pair", "a="], "--pair"), (["run-all", "--hosts", "{tmp}/absent.yaml"],
                                                              "absent.yaml"),
                    (["run-all", "--hosts", "{tmp}"], "{tmp}"), (["check", "--run", "{tmp}/absent"], "absent"),
                    (["report", "--run", "{tmp}/absent"], "absent"), (["history", "--host", "h", "--runs", "{tmp}"],
                                                                      "--host"),
                    (["run-all", "--resume", "{tmp}/absent"], "absent"),
                    (["run-all", "--resume", "{tmp}", "--lab", "hijack"], "--resume"),
                    (["import", "{tmp}/absent.jsonl", "--host", "h"], "absent.jsonl")]:
    option_door(" ".join(argv), argv, field)


def out_a_file(tmp):
    (tmp / "file").write_text("x")
    return ["run-all", "--out", str(tmp / "file"), "--where", "proto=tcp"], option_error("--out")


CASES.append(Door("command line", "--out a file", out_a_file))


def output_refused(argv, field):
    """A command whose output goes where it cannot: `{file}` a file, `{run}` a good run."""
    def build(tmp):
        (tmp / "file").write_text("x")
        (tmp / "captured.jsonl").write_text(GOOD_LOG)
        run = write_good_run(tmp)
        return [part.format(file=tmp / "file", run=run, tmp=tmp) for part in argv], option_error(field)
    return build


for argv, field in [(["report", "--run", "{run}", "--out", "{file}"], "--out"),
                    (["regress", "--baseline", "{run}", "--current", "{run}", "--out", "{file}"], "--out"),
                    (["baseline", "{run}", "--folder", "{file}"], "--folder"),
                    (["agent", "--out", "{tmp}"], "--out"), (["agent", "--out", "{tmp}/absent/agent.pyz"], "--out"),
                    (["import", "{tmp}/captured.jsonl", "--host", "h", "--out", "{file}"], "--out")]:
    CASES.append(Door("command line", " ".join(argv), output_refused(argv, field)))


def pair_unknown(tmp):
    run = write_good_run(tmp)
    return ["regress", "--baseline", run, "--current", run, "--pair", "nohost=h"], option_error("--pair")


CASES.append(Door("command line", "--pair of a host not there", pair_unknown))
CASES.append(Door("command line", "compare one system with itself", lambda tmp: (
    ["compare", "h", "h", "--run", write_good_run(tmp)], option_error("--b"))))
CASES.append(Door("command line", "compare an unknown system", lambda tmp: (
    ["compare", "plan9", "h", "--run", write_good_run(tmp)], option_error("--a"))))


# ------------------------------------------------------------------------------------------------ the tests

@pytest.mark.parametrize("door", CASES, ids=repr)
def test_a_malformed_input_is_one_line_naming_file_and_field(door, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(str(tmp_path))
    argv, pattern = door.build(tmp_path)
    code, out, err = socklab(argv, capsys)
    lines = err.strip().splitlines()
    assert code == 2, (code, out, err)
    assert len(lines) == 1 and "Traceback" not in out + err, err
    assert re.search(pattern, lines[0]), (pattern, lines[0])


def test_the_table_holds_enough_inputs_per_door():
    counts = {}
    for door in CASES:
        counts[door.door] = counts.get(door.door, 0) + 1
    print("\nmalformed inputs per door: " + ", ".join("{} {}".format(name, count) for name, count in counts.items())
          + "; {} in all".format(len(CASES)))
    assert len(CASES) >= 400 and len(counts) == 6


@pytest.mark.parametrize("door", [next(door for door in CASES if door.door == name) for name in
                                  ("hosts.yaml", "expectations", "run", "results.csv", "import", "command line")],
                         ids=repr)
def test_each_door_through_the_real_entry_point(door, tmp_path):
    """The first case of each door through ./socklab, the shell script, started from another directory."""
    argv, pattern = door.build(tmp_path)
    done = subprocess.run([os.path.join(REPO, "socklab")] + argv, cwd=str(tmp_path), capture_output=True, text=True,
                          timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stdout + done.stderr, done.stderr
    assert re.search(pattern, lines[0]), (pattern, lines[0])


assert set(LABS) == set(LAB_COLUMNS), "a lab without its cases in the expectation door"
