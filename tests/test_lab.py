"""run-all over four lab hosts in network namespaces (testbed/): real sshds with their own addresses, users and
sysctls (net.ipv4.tcp_tw_reuse 0, 1, 2, 0; net.ipv4.tcp_migrate_req 0, 1, 0, 1).

They measure what the local transport measures. And each fault - the host's sshd killed mid-run, its link cut,
a wrong key, an agent that prints garbage - fails only that host: the others complete, what it sent before the
fault is kept, the manifest says why, the exit status is 1, nothing is left running on it, and `--resume`
then runs exactly the cases that were missing.
"""
import json
import os
import subprocess

import pandas as pd
import pytest
import yaml

from formats import hostlog
from formats.table import load as load_run
from tests.conftest import REPO, cases_in, leftovers_gone, only_run, requires_root, socklab_command, write_inventory

pytestmark = requires_root

COUNT = 4
VICTIM = "lab2"
WHERE = ["--where", "proto=tcp", "--where", "family=inet,inet6", "--where", "prober=other_process,same_process"]
IDLE_TIMEOUT = 3  # seconds without output before the controller gives a host up (the cut link)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    from testbed.lab import Lab
    bed = Lab.up(str(tmp_path_factory.mktemp("namespace-lab")), count=COUNT)
    yield bed
    bed.down()


@pytest.fixture
def entries(lab):
    with open(lab.inventory) as stream:
        return yaml.safe_load(stream)["hosts"]


def run_all(*args):
    return subprocess.Popen(socklab_command("run-all", *args), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finished(process):
    output, _ = process.communicate(timeout=300)
    return process.returncode, output


def test_namespace_hosts_measure_what_the_local_transport_measures(lab, entries, tmp_path):
    status, output = finished(run_all("--hosts", lab.inventory, "--out", str(tmp_path / "lab"), *WHERE))
    assert status == 0, output
    status, output = finished(run_all("--out", str(tmp_path / "local"), *WHERE))
    assert status == 0, output
    # outcomes as text: the two tables' categories differ when only one holds an inconclusive case
    measured = load_run(only_run(tmp_path / "lab")[0]).astype({"outcome": str})
    local = load_run(only_run(tmp_path / "local")[0]).astype({"outcome": str})[["case_id", "outcome"]]
    for name in entries:
        facts = hostlog.read(os.path.join(only_run(tmp_path / "lab")[0], name + ".jsonl")).facts
        assert str(facts["sysctls"]["net.ipv4.tcp_tw_reuse"]) == str(lab.host(name).sysctls["net.ipv4.tcp_tw_reuse"])
        host = measured[measured.host == name][["case_id", "outcome"]]
        both = host.merge(local, on="case_id", suffixes=("_ssh", "_local"), validate="one_to_one")
        assert len(both) == len(host) > 1000
        witnessed = both[(both.outcome_ssh != "inconclusive") & (both.outcome_local != "inconclusive")]
        assert len(witnessed) > 0.99 * len(both)
        differ = witnessed[witnessed.outcome_ssh != witnessed.outcome_local]
        assert differ.empty, differ.head(10).to_string()
        assert leftovers_gone(lab, name)


def test_every_lab_runs_on_namespace_hosts_tuple_reuse_under_each_tcp_tw_reuse_listener_drain_under_each_migrate_req(
        lab, entries, tmp_path):
    from tests.test_tasks import OTHER_LABS, SMALL_SIZES
    labs = [word for name in OTHER_LABS for word in ("--lab", name)]
    status, output = finished(run_all("--hosts", lab.inventory, "--out", str(tmp_path), *labs, *SMALL_SIZES))
    assert status == 0, output
    table = load_run(only_run(tmp_path)[0])
    counts = table.groupby(["host", "lab"]).size().unstack()
    assert sorted(counts.index) == sorted(entries) and set(counts.columns) == set(OTHER_LABS)
    assert counts.notna().all().all(), counts
    errors = table[table["outcome"] == "error"]
    assert errors.empty, errors[["host", "case_id", "detail"]].head().to_string()
    assert (table["outcome"] != "inconclusive").mean() > 0.95
    # tuple_reuse records the sysctl its host has: the four hosts run it under tcp_tw_reuse 0, 1, 2, 0
    reuse = table[table["lab"] == "tuple_reuse"].groupby("host")["tcp_tw_reuse"].agg(set)
    for name in entries:
        assert reuse[name] == {str(lab.host(name).sysctls["net.ipv4.tcp_tw_reuse"])}
    assert set.union(*reuse) == {"0", "1", "2"}
    # listener_drain under each host's tcp_migrate_req (0, 1, 0, 1): a closing listener's queue reset at 0, moved
    # to the other listener at 1, in every case; the host facts and each case say which value it ran under
    drain = table[table["lab"] == "listener_drain"]
    for name in entries:
        value = str(lab.host(name).sysctls["net.ipv4.tcp_migrate_req"])
        facts = hostlog.read(os.path.join(only_run(tmp_path)[0], name + ".jsonl")).facts
        assert facts["sysctls"]["net.ipv4.tcp_migrate_req"] == value
        cases = drain[drain["host"] == name]
        assert len(cases) == 8 and set(cases["tcp_migrate_req"].astype(str)) == {value}
        assert set(cases["outcome"]) == {"ok"} and set(cases["spread"]) == {"all"}
        assert set(cases["drain"]) == {"reset" if value == "0" else "moved"}, cases[["case_id", "drain", "detail"]]
    assert set(drain["tcp_migrate_req"].astype(str)) == {"0", "1"}
    for name in entries:
        assert leftovers_gone(lab, name)


GARBAGE_PYTHON = """#!/bin/sh
# A Python whose agent prints a line of garbage after its 30th line while MARKER exists (a socklab fault test).
if [ -e {marker} ] && [ "${{1##*.}}" = pyz ]; then
    /usr/bin/python3 "$@" | awk 'NR == 30 {{ print "garbage, not a record" }} {{ print; fflush() }}'
    exit
fi
exec /usr/bin/python3 "$@"
"""


def prepare(fault, lab, entries, tmp_path):
    """The inventory with the fault's setting for the victim, and a function that undoes the fault."""
    from testbed.keys import keypair
    victim = dict(entries[VICTIM])
    repair = list
    if fault == "wrong key":
        keypair(str(tmp_path / "stranger"), "a key no lab host knows")
        victim["key"] = str(tmp_path / "stranger")
    elif fault == "garbage":
        home = lab.host(VICTIM).home
        marker, wrapper = os.path.join(home, "garbage-on"), os.path.join(home, "garbage-python")
        with open(wrapper, "w") as stream:
            stream.write(GARBAGE_PYTHON.format(marker=marker))
        os.chmod(wrapper, 0o755)
        open(marker, "w").close()
        victim["python"] = wrapper
        repair = lambda: os.remove(marker)  # noqa: E731
    faulty = write_inventory(tmp_path / "faulty.yaml", dict(entries, **{VICTIM: victim}),
                             defaults={"idle_timeout": IDLE_TIMEOUT})
    repaired = write_inventory(tmp_path / "repaired.yaml", dict(entries, **{VICTIM: dict(
        victim, key=entries[VICTIM]["key"])}), defaults={"idle_timeout": IDLE_TIMEOUT})
    return faulty, repaired, repair


def strike(fault, lab, out):
    """Faults that happen mid-run: once the victim has sent some cases."""
    if fault in ("sshd killed", "link cut"):
        assert cases_in(out, VICTIM, at_least=20) >= 20, "the victim sent no cases"
    if fault == "sshd killed":
        lab.host(VICTIM).sshd.kill_sshd()
        return lab.host(VICTIM).sshd.start
    if fault == "link cut":
        lab.cut(VICTIM)
        return lambda: lab.restore(VICTIM)
    return list


REASONS = {"sshd killed": "connection lost", "link cut": "no output from the agent for 3 s",
           "wrong key": "authentication refused", "garbage": "is not a socklab record"}


@pytest.mark.parametrize("fault", list(REASONS))
def test_a_fault_fails_only_its_host_and_resume_runs_what_was_missing(fault, lab, entries, tmp_path):
    faulty, repaired, repair_inventory = prepare(fault, lab, entries, tmp_path)
    out = tmp_path / "runs"
    running = run_all("--hosts", faulty, "--out", str(out), *WHERE)
    try:
        repair_host = strike(fault, lab, str(out))
        status, output = finished(running)
    finally:
        if running.poll() is None:
            running.kill()
    assert status == 1, output
    run_dir, manifest = only_run(out)
    for name, entry in manifest["hosts"].items():
        if name != VICTIM:
            assert entry["status"] == "completed", (name, entry)
    failed = manifest["hosts"][VICTIM]
    assert failed["status"] == "failed" and REASONS[fault] in failed["reason"], failed
    table = load_run(run_dir)
    received = table[table.host == VICTIM].case_id
    assert len(received) == failed["cases"]
    if fault != "wrong key":
        assert failed["cases"] >= 20  # what arrived before the fault is in the run
    assert leftovers_gone(lab, VICTIM)

    repair_host()
    repair_inventory()
    status, output = finished(run_all("--hosts", repaired, "--out", str(out), "--resume", run_dir))
    assert status == 0, output
    manifest = json.loads(open(os.path.join(run_dir, "manifest.json")).read())
    assert all(entry["status"] == "completed" for entry in manifest["hosts"].values()), manifest
    table = load_run(run_dir)
    victim, healthy = table[table.host == VICTIM], table[table.host == "lab1"]
    assert not victim.case_id.duplicated().any()  # nothing measured twice
    assert set(victim.case_id) == set(healthy.case_id)  # and nothing missing
    assert set(received) <= set(victim.case_id)
    assert pd.Series(victim.case_id).isin(received).sum() == len(received)
    for name in entries:
        assert leftovers_gone(lab, name)


def test_ssh_config_alias_and_jump_hosts_with_their_keys_checked(lab, entries, tmp_path):
    """A host known only by its ~/.ssh/config alias; hosts reached through another, by `jump:` in the inventory
    and by ProxyJump in ~/.ssh/config. The jump host's own key is checked: unknown, the runs through it fail."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    target, jump = entries["lab3"], entries["lab1"]
    (home / ".ssh" / "config").write_text(
        "Host lab-by-alias lab-by-proxyjump\n  HostName {address}\n  User {user}\n  IdentityFile {key}\n"
        "  UserKnownHostsFile {known_hosts}\n".format(**target)
        + "Host lab-by-proxyjump\n  ProxyJump {user}@{address}\n".format(**jump)
        + "Host {address}\n  IdentityFile {key}\n".format(**jump))  # the jump hop: default known_hosts
    empty_known_hosts = tmp_path / "empty_known_hosts"
    empty_known_hosts.write_text("")
    for name, jumper, ok in (("refused", dict(jump, known_hosts=str(empty_known_hosts)), False),
                             ("through", jump, True)):
        if ok:
            (home / ".ssh" / "known_hosts").write_text(lab.host("lab1").sshd.known_hosts_line() + "\n")
        inventory = write_inventory(tmp_path / (name + ".yaml"), {
            "lab-by-alias": {}, "lab-by-proxyjump": {}, "jumper": jumper, "behind": dict(target, jump="jumper")},
            groups={"measured": ["lab-by-alias", "lab-by-proxyjump", "behind"]})
        out = tmp_path / name
        done = subprocess.run(socklab_command("run", "--host", "measured", "--hosts", inventory,
                                              "--out", str(out), *WHERE), cwd=REPO, env=dict(os.environ, HOME=str(home)),
                              capture_output=True, text=True, timeout=300)
        _, manifest = only_run(out)
        hosts = manifest["hosts"]
        assert hosts["lab-by-alias"]["status"] == "completed", hosts
        if ok:
            assert done.returncode == 0 and all(entry["status"] == "completed" for entry in hosts.values()), hosts
        else:
            assert done.returncode == 1
            for through in ("lab-by-proxyjump", "behind"):
                assert "unknown host key for {}".format(jump["address"]) in hosts[through]["reason"], hosts


def test_lab_up_hosts_and_lab_down_tasks(invoke, tmp_path):
    from testbed.lab import Lab
    folder = tmp_path / "lab"
    up = invoke("lab-up", "--count", "2", "--folder", str(folder))
    assert up.returncode == 0, up.stdout + up.stderr
    assert "lab1" in up.stdout and "tcp_tw_reuse=1" in up.stdout
    lab = Lab.load(str(folder))
    try:
        again = invoke("lab-up", "--folder", str(folder))
        assert again.returncode == 1 and "already up" in again.stderr
        reached = invoke("hosts", "--hosts", str(folder / "hosts.yaml"))
        assert reached.returncode == 0, reached.stdout + reached.stderr
        assert sum("linux" in line for line in reached.stdout.splitlines()) == 2
    finally:
        down = invoke("lab-down", "--folder", str(folder))
    assert down.returncode == 0, down.stdout + down.stderr
    assert lab.leftovers() == []


def test_ssh_keepalives_notice_a_cut_link_before_the_idle_timeout(lab, entries, tmp_path):
    """The victim's link is cut mid-run with the default idle_timeout (120 s): the keepalives (every second, three
    unanswered) fail it, with their reason; the other hosts complete."""
    victim = dict(entries[VICTIM], keepalive=1, keepalive_count=3)
    inventory = write_inventory(tmp_path / "hosts.yaml", dict(entries, **{VICTIM: victim}))
    out = tmp_path / "runs"
    running = run_all("--hosts", inventory, "--out", str(out), *WHERE)
    try:
        assert cases_in(str(out), VICTIM, at_least=20) >= 20, "the victim sent no cases"
        lab.cut(VICTIM)
        status, output = finished(running)
    finally:
        if running.poll() is None:
            running.kill()
        lab.restore(VICTIM)
    assert status == 1, output
    _, manifest = only_run(out)
    reason = manifest["hosts"][VICTIM]["reason"]
    assert reason == "no answer to SSH keepalives for 3 s (keepalive 1 s x 3): host or link down", reason
    assert all(entry["status"] == "completed" for name, entry in manifest["hosts"].items() if name != VICTIM)
    assert leftovers_gone(lab, VICTIM)
