"""The test beds themselves (testbed/): real sshds, lab users and network namespaces on this machine, reached with
the OpenSSH client; links cut, sshds killed, and nothing of a lab left on the machine after down()."""
import json
import os
import socket
import stat
import subprocess
import sys
import time

import pytest
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="testbed labs add users, run sshds and make network namespaces: root only")

# session programs the tests look for by their command lines, one per test and test run: the machine-wide checks
# for leftovers must not see another test's program
LOOPBACK_SLEEPER, SLEEPER, DETACHED, REKEYED_SLEEPER = ("sleep {}.{}".format(seconds, os.getpid())
                                                        for seconds in (7301, 7302, 7303, 7304))


def ssh(lab, name, command, timeout=30):
    """The OpenSSH client, as a user would run it against the lab host: key, the lab's known_hosts, no prompts."""
    return subprocess.run(ssh_argv(lab, name) + [command], capture_output=True, text=True, timeout=timeout)


def ssh_argv(lab, name):
    host = lab.host(name)
    return ["ssh", "-i", lab.client_key, "-o", "UserKnownHostsFile=" + lab.known_hosts,
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
            "-p", str(host.port), "{}@{}".format(host.user, host.address)]


def banner(address, port, timeout):
    """The first bytes an sshd sends on a fresh TCP connection."""
    with socket.create_connection((address, port), timeout=timeout) as connection:
        return connection.recv(64)


def poll(probe, deadline=10.0):
    """probe() until it is true, bounded; its last value."""
    end = time.monotonic() + deadline
    while True:
        found = probe()
        if found or time.monotonic() > end:
            return found
        time.sleep(0.02)


def live_processes(needle):
    """Pids of live processes on the whole machine whose command line contains needle."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/{}/stat".format(pid)) as status:
                if status.read().rsplit(")", 1)[1].split()[0] in "ZX":
                    continue
            with open("/proc/{}/cmdline".format(pid), "rb") as command:
                if needle in command.read().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(pid))
        except OSError:
            continue
    return found


def remains(lab_id, folder, needles=()):
    """What of lab lab_id is still on the machine, seen with the system's own tools."""
    left = [line for line in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.splitlines()
            if line.startswith("socklab-{}-".format(lab_id))]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout.splitlines()
    left += [line.split(":")[1].strip() for line in links
             if line.split(":")[1].strip().startswith(("sl{}h".format(lab_id), "slb{}".format(lab_id)))]
    users = subprocess.run(["getent", "passwd"], capture_output=True, text=True).stdout.splitlines()
    left += [line.split(":")[0] for line in users if line.startswith("sl{}u".format(lab_id))]
    root = "/var/tmp/socklab-lab-{}".format(lab_id)
    left += [root] if os.path.exists(root) else []
    for needle in (folder,) + tuple(needles):
        left += ["process {} ({})".format(pid, needle) for pid in live_processes(needle)]
    return left


@pytest.fixture(scope="module")
def loopback(tmp_path_factory):
    from testbed.lab import Lab
    lab = Lab.up(str(tmp_path_factory.mktemp("loopback-bed")), count=1, namespaces=False)
    yield lab
    lab.down()


@pytest.fixture(scope="module")
def namespaced(tmp_path_factory):
    """Three hosts in namespaces; test_namespace_lab_down_leaves_nothing (last) takes it down, as does teardown."""
    from testbed.lab import Lab
    lab = Lab.up(str(tmp_path_factory.mktemp("namespace-bed")), count=3)
    yield lab
    lab.down()


def test_loopback_lab_serves_the_openssh_client(loopback):
    host = loopback.host("lab1")
    done = ssh(loopback, "lab1", 'python3 -c "import os; print(os.getcwd())"')
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == host.home
    home = os.stat(host.home)
    assert stat.S_IMODE(home.st_mode) == 0o700 and home.st_uid != 0
    assert stat.S_IMODE(os.stat(loopback.client_key).st_mode) == 0o600
    with open(loopback.known_hosts) as known:
        assert known.read().split() == ["[127.0.0.1]:{}".format(host.port)] + host.sshd.host_public_key.split()
    assert host.sshd.host_public_key.startswith("ssh-ed25519 AAAA")


def test_loopback_inventory_is_in_the_projects_format(loopback):
    with open(loopback.inventory) as stream:
        text = stream.read()
    assert text.startswith("# written by socklab lab-up")
    inventory = yaml.safe_load(text)
    host = loopback.host("lab1")
    assert inventory == {"hosts": {"lab1": {"transport": "ssh", "address": "127.0.0.1", "port": host.port,
                                            "user": host.user, "key": loopback.client_key,
                                            "known_hosts": loopback.known_hosts}},
                         "groups": {"lab": ["lab1"]}}


def test_loopback_processes_are_those_of_the_hosts_user(loopback):
    session = subprocess.Popen(ssh_argv(loopback, "lab1") + ["exec " + LOOPBACK_SLEEPER], stdin=subprocess.PIPE,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        (pid,) = poll(lambda: loopback.processes("lab1", LOOPBACK_SLEEPER))
        assert loopback.processes("lab1", "no such command line") == []
    finally:
        # the sleep outlives its client (sshd signals no program of a session without a tty): down() ends it
        session.kill()
        session.wait()


def test_namespace_hosts_answer_at_their_addresses_with_their_sysctls(namespaced):
    assert [host.name for host in namespaced.hosts] == ["lab1", "lab2", "lab3"]
    assert len({host.address for host in namespaced.hosts}) == 3
    for number, host in enumerate(namespaced.hosts, 1):
        # the README's test bed: tcp_tw_reuse 0, 1, 2, 0, ...; tcp_migrate_req 0, 1, 0, 1, ...
        assert host.port == 22 and host.netns and host.sysctls == {"net.ipv4.tcp_tw_reuse": (number - 1) % 3,
                                                                   "net.ipv4.tcp_migrate_req": (number - 1) % 2}
        done = ssh(namespaced, host.name,
                   "cat /proc/sys/net/ipv4/tcp_tw_reuse /proc/sys/net/ipv4/tcp_migrate_req; pwd")
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == [str((number - 1) % 3), str((number - 1) % 2), host.home]
        inside = namespaced.run(host.name, ["ip", "-o", "-4", "address", "show", "eth0"], capture_output=True,
                                text=True)
        assert " {}/24 ".format(host.address) in inside.stdout
    # each host has its own user and home; lab1 cannot read lab2's
    assert len({host.user for host in namespaced.hosts}) == 3
    denied = ssh(namespaced, "lab1", "ls " + namespaced.host("lab2").home)
    assert denied.returncode != 0


def test_lab_json_lets_another_process_load_the_lab(namespaced):
    code = ("import json; from testbed.lab import Lab; lab = Lab.load({!r}); "
            "print(json.dumps([[h.name, h.address, h.user, h.netns, h.sysctls] for h in lab.hosts]))")
    done = subprocess.run([sys.executable, "-c", code.format(namespaced.folder)], cwd=REPO, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [[h.name, h.address, h.user, h.netns, h.sysctls] for h in namespaced.hosts]


def test_cut_makes_connects_time_out_and_restore_ends_that(namespaced):
    host = namespaced.host("lab2")
    assert banner(host.address, 22, 2.0).startswith(b"SSH-2.0-")
    namespaced.cut("lab2")
    try:
        with pytest.raises(TimeoutError):
            banner(host.address, 22, 1.0)
        # the other hosts stay reachable
        assert banner(namespaced.host("lab1").address, 22, 2.0).startswith(b"SSH-2.0-")
    finally:
        namespaced.restore("lab2")
    assert banner(host.address, 22, 2.0).startswith(b"SSH-2.0-")


def test_kill_sshd_leaves_the_session_programs_running(namespaced):
    sshd = namespaced.host("lab3").sshd
    # one program in the session's tree, one detached from it (setsid, parent gone)
    session = subprocess.Popen(ssh_argv(namespaced, "lab3") + ["setsid {} </dev/null >/dev/null 2>&1 & exec {}"
                                                               .format(DETACHED, SLEEPER)],
                               stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert poll(lambda: namespaced.processes("lab3", SLEEPER) and namespaced.processes("lab3", DETACHED))
        assert namespaced.processes("lab3", "sshd")
        sshd.kill_sshd()
        assert session.wait(timeout=10) == 255
        assert namespaced.processes("lab3", "sshd") == []
        assert namespaced.processes("lab3", SLEEPER) and namespaced.processes("lab3", DETACHED)
    finally:
        if session.poll() is None:
            session.kill()
            session.wait()
    sshd.start()
    done = ssh(namespaced, "lab3", "echo back")
    assert done.returncode == 0 and done.stdout == "back\n", done.stderr


def test_home_entries_lists_the_users_socklab_folder(namespaced):
    assert namespaced.home_entries("lab1") == []
    done = ssh(namespaced, "lab1", "mkdir -p .socklab && touch .socklab/b .socklab/a")
    assert done.returncode == 0, done.stderr
    assert namespaced.home_entries("lab1") == ["a", "b"]


def test_namespace_lab_down_leaves_nothing(namespaced):
    """Last of the namespace tests: the session programs that kill_sshd left behind go with the lab."""
    assert namespaced.processes("lab3", SLEEPER), "test_kill_sshd_leaves_the_session_programs_running runs first"
    namespaced.down()
    assert remains(namespaced.id, namespaced.folder, [SLEEPER, DETACHED]) == []
    assert not os.path.exists(os.path.join(namespaced.folder, "lab.json"))
    assert os.listdir(namespaced.folder) == []
    namespaced.down()


def test_rekey_changes_the_host_key_and_down_works_without_lab_json(tmp_path):
    from testbed.lab import Lab
    lab = Lab.up(str(tmp_path / "bed"), count=1, namespaces=False)
    try:
        sshd = lab.host("lab1").sshd
        before = sshd.host_public_key
        sshd.rekey()
        assert sshd.host_public_key != before
        refused = ssh(lab, "lab1", "true")
        assert refused.returncode == 255 and "Host key verification failed" in refused.stderr
        with open(lab.known_hosts, "w") as known:
            known.write(sshd.known_hosts_line() + "\n")
        session = subprocess.Popen(ssh_argv(lab, "lab1") + ["exec " + REKEYED_SLEEPER], stdin=subprocess.PIPE,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert poll(lambda: lab.processes("lab1", REKEYED_SLEEPER))
        os.remove(os.path.join(lab.folder, "lab.json"))
        # another process, knowing only the folder: it finds the lab by the id in the files left
        done = subprocess.run([sys.executable, "-c", "import sys, testbed; print(testbed.down(sys.argv[1]))",
                               lab.folder], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and done.stdout == "True\n", done.stderr
        assert session.wait(timeout=10) == 255
        assert remains(lab.id, lab.folder, [REKEYED_SLEEPER]) == []
        # without lab.json, down cannot know it made the folder: it empties it
        assert os.listdir(lab.folder) == []
    finally:
        lab.down()


def test_a_lab_refuses_a_bed_folder_that_holds_one(loopback):
    from testbed import LabError
    from testbed.lab import Lab
    with pytest.raises(LabError, match="already holds a lab"):
        Lab.up(loopback.folder, count=1, namespaces=False)
    with pytest.raises(LabError, match="exactly one host"):
        Lab.up(loopback.folder + "-other", count=2, namespaces=False)


def test_an_sshd_that_cannot_listen_says_why(loopback, tmp_path):
    from testbed import LabError
    from testbed.sshd import Sshd
    taken = loopback.host("lab1")
    started = time.monotonic()
    with pytest.raises(LabError, match="did not start: .*Address already in use"):
        Sshd(str(tmp_path / "second"), taken.address, taken.port, taken.user, loopback.authorized_keys).start()
    # told when the daemon dies, not at the readiness deadline
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("count, namespaces", [(1, False), (1, True), (8, True)])
def test_up_and_down_times(tmp_path, count, namespaces):
    from testbed.lab import Lab
    started = time.monotonic()
    lab = Lab.up(str(tmp_path / "bed"), count=count, namespaces=namespaces)
    up = time.monotonic() - started
    try:
        for host in lab.hosts:
            assert banner(host.address, host.port, 2.0).startswith(b"SSH-2.0-")
    finally:
        started = time.monotonic()
        lab.down()
        down = time.monotonic() - started
    print("\nlab of {} host(s) {}: up {:.3f} s, down {:.3f} s".format(
        count, "in namespaces" if namespaces else "on loopback", up, down))
    assert remains(lab.id, lab.folder) == []
