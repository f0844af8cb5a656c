"""The SSH transport against a real OpenSSH sshd on 127.0.0.1 (testbed, throwaway keys, a dedicated lab user):
runs, pushes the agent once per version, checks host keys as OpenSSH does, leaves nothing behind on the host."""
import os
import signal
import subprocess

import pytest
import yaml

from formats.table import load as load_run
from tests.conftest import REPO, cases_in, leftovers_gone, only_run, requires_root, socklab_command, write_inventory

pytestmark = requires_root

SMALL = ["--where", "proto=tcp", "--where", "state=LISTEN", "--where", "family=inet"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    from testbed.lab import Lab
    bed = Lab.up(str(tmp_path_factory.mktemp("loopback-lab")), count=1, namespaces=False)
    yield bed
    bed.down()


@pytest.fixture
def host(lab):
    """The lab host's inventory entry, as lab-up wrote it."""
    with open(lab.inventory) as stream:
        return yaml.safe_load(stream)["hosts"]["lab1"]


def test_run_over_ssh_pushes_the_agent_once_and_leaves_nothing(lab, host, invoke, tmp_path):
    inventory = write_inventory(tmp_path / "hosts.yaml", {"lab1": host})
    first = invoke("run-all", "--hosts", inventory, "--out", str(tmp_path / "one"), *SMALL)
    assert first.returncode == 0, first.stdout + first.stderr
    run_dir, manifest = only_run(tmp_path / "one")
    assert manifest["hosts"]["lab1"]["status"] == "completed"
    table = load_run(str(run_dir))
    assert len(table) == manifest["hosts"]["lab1"]["cases"] > 0 and set(table.host) == {"lab1"}
    (agent_file,) = [name for name in lab.home_entries("lab1") if name.endswith(".pyz")]
    pushed = os.stat(os.path.join(lab.host("lab1").home, ".socklab", agent_file)).st_mtime_ns
    assert leftovers_gone(lab, "lab1")

    second = invoke("run-all", "--hosts", inventory, "--out", str(tmp_path / "two"), *SMALL)
    assert second.returncode == 0, second.stdout + second.stderr
    assert os.stat(os.path.join(lab.host("lab1").home, ".socklab", agent_file)).st_mtime_ns == pushed
    assert leftovers_gone(lab, "lab1")


def test_hosts_prints_the_facts_of_an_ssh_host(lab, host, invoke, tmp_path):
    inventory = write_inventory(tmp_path / "hosts.yaml", {"lab1": host})
    done = invoke("hosts", "--hosts", inventory)
    assert done.returncode == 0, done.stdout + done.stderr
    row = next(line for line in done.stdout.splitlines() if "lab1" in line)
    assert "linux" in row and "no" in row  # the lab user is not root
    assert leftovers_gone(lab, "lab1")


def test_unknown_host_key_refused_then_accepted_with_accept_new(lab, host, invoke, tmp_path):
    known_hosts = tmp_path / "known_hosts"
    inventory = write_inventory(tmp_path / "hosts.yaml", {"lab1": dict(host, known_hosts=str(known_hosts))})
    refused = invoke("run-all", "--hosts", inventory, "--out", str(tmp_path / "refused"), *SMALL)
    assert refused.returncode == 1
    _, manifest = only_run(tmp_path / "refused")
    reason = manifest["hosts"]["lab1"]["reason"]
    assert "unknown host key" in reason and "--accept-new" in reason and "SHA256:" in reason
    assert not known_hosts.exists()

    accepted = invoke("run-all", "--accept-new", "--hosts", inventory, "--out", str(tmp_path / "accepted"), *SMALL)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    recorded = known_hosts.read_text().split()
    assert recorded[0] == "[127.0.0.1]:{}".format(host["port"])
    assert recorded[1:3] == lab.host("lab1").sshd.host_public_key.split()[0:2]


def test_changed_host_key_is_always_refused(tmp_path_factory, invoke, tmp_path):
    from testbed.lab import Lab
    bed = Lab.up(str(tmp_path_factory.mktemp("rekeyed-lab")), count=1, namespaces=False)
    try:
        with open(bed.inventory) as stream:
            entry = yaml.safe_load(stream)["hosts"]["lab1"]
        inventory = write_inventory(tmp_path / "hosts.yaml", {"lab1": entry})
        bed.host("lab1").sshd.rekey()
        for extra in ([], ["--accept-new"]):
            out = tmp_path / ("run" + "".join(extra))
            done = invoke("run-all", "--hosts", inventory, "--out", str(out), *(extra + SMALL))
            assert done.returncode == 1
            _, manifest = only_run(out)
            assert "has CHANGED" in manifest["hosts"]["lab1"]["reason"]
    finally:
        bed.down()


def test_wrong_key_is_refused_and_the_local_host_still_completes(lab, host, invoke, tmp_path):
    from testbed.keys import keypair
    keypair(str(tmp_path / "stranger"), "not authorised anywhere")
    inventory = write_inventory(tmp_path / "hosts.yaml", {"local": {"transport": "local"},
                                                          "lab1": dict(host, key=str(tmp_path / "stranger"))})
    done = invoke("run-all", "--hosts", inventory, "--out", str(tmp_path / "out"), *SMALL)
    assert done.returncode == 1
    _, manifest = only_run(tmp_path / "out")
    assert manifest["hosts"]["local"]["status"] == "completed"
    assert manifest["hosts"]["lab1"]["status"] == "failed"
    assert "authentication refused" in manifest["hosts"]["lab1"]["reason"]


def test_ctrl_c_ends_the_remote_agent_and_keeps_what_arrived(lab, host, tmp_path):
    inventory = write_inventory(tmp_path / "hosts.yaml", {"lab1": host})
    out = tmp_path / "out"
    run_all = subprocess.Popen(socklab_command("run-all", "--hosts", inventory, "--out", str(out),
                                               "--where", "proto=tcp"), cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        assert cases_in(out, "lab1", at_least=20) >= 20, "no cases arrived"
        run_all.send_signal(signal.SIGINT)
        assert run_all.wait(timeout=60) != 0
    finally:
        if run_all.poll() is None:
            run_all.kill()
    run_dir, manifest = only_run(out)
    entry = manifest["hosts"]["lab1"]
    assert entry["status"] == "failed" and entry["reason"] == "interrupted"
    assert len(load_run(str(run_dir))) == entry["cases"] >= 20
    assert leftovers_gone(lab, "lab1")


def failed_reason(invoke, inventory, out):
    """Run the inventory's one host; assert it failed (exit status 1) and return the manifest's reason."""
    done = invoke("run-all", "--hosts", inventory, "--out", str(out), *SMALL)
    assert done.returncode == 1, done.stdout + done.stderr
    _, manifest = only_run(out)
    (entry,) = manifest["hosts"].values()
    assert entry["status"] == "failed"
    return entry["reason"]


def test_a_command_that_exits_at_once_reports_its_own_error(lab, host, invoke, tmp_path):
    """A Python that is not there: the shell's "not found" is the reason, every time, never the "Socket is closed"
    that sending the bootstrap to a command already gone used to give (2 tries in 6)."""
    inventory = write_inventory(tmp_path / "hosts.yaml", {"lab1": dict(host, python="/nonexistent/python3")})
    for attempt in range(4):
        reason = failed_reason(invoke, inventory, tmp_path / "run{}".format(attempt))
        assert "/nonexistent/python3: not found" in reason and "Socket is closed" not in reason, reason


def private_folder(lab):
    """The lab user's ~/.socklab, made (theirs) if it is not there yet."""
    home = lab.host("lab1").home
    folder = os.path.join(home, ".socklab")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    info = os.stat(home)
    os.chown(folder, info.st_uid, info.st_gid)
    return folder


def test_a_private_folder_the_lab_user_may_not_use_is_said_so(lab, host, invoke, tmp_path):
    folder = private_folder(lab)
    os.chmod(folder, 0o000)
    try:
        reason = failed_reason(invoke, write_inventory(tmp_path / "hosts.yaml", {"lab1": host}), tmp_path / "out")
    finally:
        os.chmod(folder, 0o700)
    assert reason == "preparing the host: cannot use {}: Permission denied (its mode is 000: socklab needs 700, " \
                     "`chmod 700 {}`)".format(folder, folder), reason


def test_a_full_disk_on_the_host_is_said_so_and_leaves_no_partial_agent(lab, host, invoke, tmp_path):
    """~/.socklab on a tmpfs of 16 KiB (the agent is larger): the push fails, says the disk is full, and the
    partial file is removed, so the host holds no broken agent."""
    folder = private_folder(lab)
    info = os.stat(folder)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k,mode=700,uid={},gid={}".format(info.st_uid, info.st_gid),
                    "socklab-test-full", folder], check=True)
    try:
        reason = failed_reason(invoke, write_inventory(tmp_path / "hosts.yaml", {"lab1": host}), tmp_path / "out")
        left = os.listdir(folder)
    finally:
        subprocess.run(["umount", folder], check=True)
    assert reason.startswith("pushing the agent to {}/socklab-agent-".format(folder)), reason
    assert "(disk full); the partial file is removed" in reason, reason
    assert left == []
