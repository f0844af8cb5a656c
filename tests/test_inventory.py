"""hosts.yaml: the default loads; each mistake is one line naming file, line and field."""
import pytest

from collect import inventory
from formats.errors import UserError
from tests.conftest import REPO


def test_default_inventory_is_this_machine():
    hosts = inventory.load(REPO + "/hosts.yaml").select()
    assert [(host.name, host.transport) for host in hosts] == [("local", "local")]


def test_groups_select_their_hosts(tmp_path):
    path = tmp_path / "hosts.yaml"
    path.write_text("hosts:\n  a:\n    transport: local\n  b:\n    address: 192.0.2.2\n"
                    "  c:\n    address: 192.0.2.3\ngroups:\n  remote: [c, b]\n")
    loaded = inventory.load(str(path))
    assert [host.name for host in loaded.select(["remote"])] == ["b", "c"]
    assert [host.name for host in loaded.select(["a", "c"])] == ["a", "c"]
    assert loaded.hosts["b"].transport == "ssh"


BAD = [
    ("hosts:\n  local:\n    transport: local\n  bad: [\n", ":5: not valid YAML"),
    ("- just\n- a list\n", ":1: the inventory must be a mapping"),
    ("hostz:\n  a: {}\n", ":1: hostz: unknown section"),
    ("groups: {}\n", ":1: no hosts: section"),
    ("hosts:\n  a:\n    transport: telnet\n", ":3: hosts.a.transport: 'telnet' is not one of local, ssh"),
    ("hosts:\n  a:\n    address: h\n    port: 70000\n", ":4: hosts.a.port: 70000 is not a port number"),
    ("hosts:\n  a:\n    address: h\n    password: hunter2\n", ":4: hosts.a.password: no passwords in hosts.yaml"),
    ("hosts:\n  a:\n    adress: h\n", ":3: hosts.a.adress: unknown setting"),
    ("hosts:\n  a:\n    labs: [bind_matrix, nope]\n", ":3: hosts.a.labs: ['bind_matrix', 'nope'] is not a list"),
    ("hosts:\n  ../etc:\n    transport: local\n", ":2: host name '../etc'"),
    ("hosts:\n  a: {transport: local}\ngroups:\n  g: [a, b]\n", ":4: groups.g: no host 'b' in hosts:"),
    ("hosts:\n  a: {transport: local}\ngroups:\n  a: [a]\n", ":4: groups.a: a group may not share a host's name"),
    ("hosts:\n  a: {}\n  b: {}\ngroups:\n  g1: {hosts: [a], user: x}\n  g2: {hosts: [a], user: y}\n",
     ":2: hosts.a.user: groups g1 and g2 give it different values"),
    ("hosts:\n  a: {jump: b}\n  b: {jump: a}\n", ":2: hosts.a.jump: jump hosts go round in a circle: a -> b -> a"),
    ("hosts:\n  a: {key_env: 'LAB KEY'}\n", ":2: hosts.a.key_env: 'LAB KEY' is not the name of an environment"),
    ("defaults:\n  passphrase: x\nhosts:\n  a: {}\n", ":2: defaults.passphrase: no passphrases"),
    ("hosts:\n  a: {}\ngroups:\n  g:\n    hosts: a\n", ":5: groups.g.hosts: a group is a list of host names"),
    ("hosts:\n  a: {}\ngroups:\n  g:\n    hosts: [a]\n    colour: red\n", ":6: groups.g.colour: unknown setting"),
    ("hosts:\n  a:\n    transport: local\n    launcher: \"runsc 'do\"\n",
     ":4: hosts.a.launcher: \"runsc 'do\" is not a command the agent runs under"),
    ("hosts:\n  a:\n    transport: local\n    launcher: [runsc, 3]\n", ":4: hosts.a.launcher: ['runsc', 3] is not a"),
    ("hosts:\n  a:\n    transport: local\n    launcher: []\n", ":4: hosts.a.launcher: [] is not a command"),
    ("hosts:\n  a:\n    address: h\n    launcher: unshare -n\n",
     ":2: hosts.a.launcher: a launcher needs transport: local"),
]


@pytest.mark.parametrize("text, message", BAD, ids=[message for _, message in BAD])
def test_bad_inventory_names_file_line_and_field(tmp_path, text, message):
    path = tmp_path / "hosts.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as raised:
        inventory.load(str(path))
    line = str(raised.value)
    assert line.startswith(str(path) + message) and "\n" not in line


def test_unknown_host_is_named(tmp_path):
    with pytest.raises(UserError, match=r"unknown host or group 'nope' \(known: local\)"):
        inventory.load(REPO + "/hosts.yaml").select(["nope"])


def test_missing_inventory_file(tmp_path):
    with pytest.raises(UserError, match="No such file"):
        inventory.load(str(tmp_path / "absent.yaml"))


def test_defaults_then_groups_then_the_host_itself(tmp_path):
    path = tmp_path / "hosts.yaml"
    path.write_text("defaults:\n  user: lab\n  connect_timeout: 5\n"
                    "hosts:\n  a:\n    address: 192.0.2.1\n  b:\n    address: 192.0.2.2\n    user: root\n"
                    "  c: {}\n"
                    "groups:\n  windows:\n    hosts: [a, b]\n    shell: powershell\n    user: admin\n"
                    "  all: [a, b, c]\n")
    hosts = inventory.load(str(path)).hosts
    assert hosts["a"].settings == {"address": "192.0.2.1", "user": "admin", "connect_timeout": 5,
                                   "shell": "powershell"}
    assert hosts["b"].settings["user"] == "root"  # the host's own setting wins over its group's
    assert hosts["c"].settings == {"user": "lab", "connect_timeout": 5}
    assert [host.name for host in inventory.load(str(path)).select(["windows"])] == ["a", "b"]



def test_a_launcher_is_a_list_of_words_or_a_line_split_as_a_shell_splits_it(tmp_path):
    path = tmp_path / "hosts.yaml"
    path.write_text("hosts:\n  g:\n    transport: local\n    launcher: [/usr/bin/runsc, --network=none, do]\n"
                    "  n:\n    transport: local\n    launcher: ip netns exec 'lab 1'\n")
    loaded = inventory.load(str(path))
    assert inventory.launcher_words(loaded.hosts["g"].settings["launcher"]) == ["/usr/bin/runsc", "--network=none",
                                                                                "do"]
    assert inventory.launcher_words(loaded.hosts["n"].settings["launcher"]) == ["ip", "netns", "exec", "lab 1"]
