"""gVisor's netstack as a live lab host (issue 14), in a real runsc sandbox: an inventory with `local` and a gVisor
host (launcher `runsc --network=none do`) measured by `./socklab run-all`, every lab at small sizes; the facts name
gVisor; no case is `error`; every inconclusive case says why; the states gVisor's tables hide are witnessed the
honest ways (peer, own socket) or not at all; `compare` and `regress --pair` between the two; nothing of a sandbox
outlives its run, Ctrl-C included. Skipped, saying why, only where runsc cannot run a sandbox."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from labs import LABS
from labs.bind_matrix import witness_way
from labs.witness import BY_OWN_SOCKET, BY_PEER, Witness, witnessed_by
from tests.conftest import REPO
from tests.test_gvisor_expectations import GVISOR_FACTS, runsc  # noqa: F401 (a fixture)

SOCKLAB = os.path.join(REPO, "socklab")
# Every lab, the whole bind matrix: small sizes where a lab has one.
SIZES = ["--where", "pairs=300", "--where", "clients=20"]
RUN_TIMEOUT = 1800


def inventory(tmp_path, runsc_path):
    path = tmp_path / "hosts.yaml"
    path.write_text("hosts:\n  local:\n    transport: local\n  gvisor:\n    transport: local\n"
                    "    launcher: {} --network=none do\n".format(runsc_path))
    return str(path)


def socklab(*arguments, timeout=RUN_TIMEOUT):
    return subprocess.run([SOCKLAB, *arguments], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def records(run_dir, host):
    with open(os.path.join(run_dir, host + ".jsonl")) as lines:
        return [json.loads(line) for line in lines]


def sandboxes_of(folder_prefix):
    """Command lines of the processes whose arguments name a launcher folder starting with `folder_prefix`: runsc's
    gofer and sandbox carry their root folder (under the transport's TMPDIR) on their command line."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/{}/cmdline".format(pid), "rb") as stream:
                line = stream.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if folder_prefix in line:
            found.append(line)
    return found


@pytest.fixture(scope="module")
def both(runsc, tmp_path_factory):  # noqa: F811 (the fixture imported above)
    """A run of every lab on `local` and the gVisor host at once: (run folder, inventory)."""
    folder = tmp_path_factory.mktemp("gvisor")
    hosts = inventory(folder, runsc)
    done = socklab("run-all", "--hosts", hosts, "--out", str(folder / "runs"), *SIZES)
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = [entry.path for entry in os.scandir(folder / "runs") if entry.is_dir()]
    return run_dir, hosts


def test_both_hosts_ran_every_lab_and_the_facts_name_gvisor(both):
    run_dir, _ = both
    with open(os.path.join(run_dir, "manifest.json")) as stream:
        manifest = json.load(stream)
    assert {name: entry["status"] for name, entry in manifest["hosts"].items()} == {"local": "completed",
                                                                                     "gvisor": "completed"}
    facts = records(run_dir, "gvisor")[0]
    assert {key: facts[key] for key in GVISOR_FACTS} == GVISOR_FACTS
    assert facts["upstream_release"] == GVISOR_FACTS["os_release"]
    assert facts["witness"] == "/proc/net (gVisor)"
    assert facts["launcher"].endswith("runsc --network=none do")
    assert facts["implementation_version"] == "runsc version 0.0~20221219.0"
    assert records(run_dir, "local")[0]["os_family"] == "linux"
    labs_run = {record["lab"] for record in records(run_dir, "gvisor") if record["record"] == "case"}
    assert labs_run == {record["lab"] for record in records(run_dir, "local") if record["record"] == "case"}
    assert labs_run == set(LABS)


def test_no_case_in_gvisor_is_an_error_and_every_inconclusive_one_says_why(both):
    cases = [record for record in records(both[0], "gvisor") if record["record"] == "case"]
    assert [case["case_id"] for case in cases if case["outcome"] == "error"] == []
    assert [case["case_id"] for case in cases if case["outcome"] in ("inconclusive", "unsupported")
            and not case["detail"]] == []


def test_gvisors_bind_matrix_witnesses_what_its_tables_can_show(both):
    cases = [record for record in records(both[0], "gvisor") if record["record"] == "case"
             and record["lab"] == "bind_matrix"]
    fin_wait_2 = [case for case in cases if case["state"] == "FIN_WAIT_2"]
    assert {case["outcome"] for case in fin_wait_2} == {"inconclusive"}
    assert all("FIN_WAIT_2 cannot be witnessed here: gVisor's /proc/net lists only sockets with an open descriptor"
               in case["detail"] for case in fin_wait_2)
    shown = [case for case in cases if case["state"] != "FIN_WAIT_2" and case["outcome"] != "unsupported"]
    inconclusive = [case for case in shown if case["outcome"] == "inconclusive"]
    assert len(inconclusive) <= 0.02 * len(shown), [(case["case_id"], case["witness"]) for case in inconclusive]
    witnessed = [case for case in shown if case["outcome"] != "inconclusive"]
    time_wait = {case["witness"] for case in witnessed if case["state"] == "TIME_WAIT"}
    assert time_wait == {witnessed_by("TIME_WAIT", BY_PEER)}
    udp6 = {case["witness"] for case in witnessed if case["proto"] == "udp" and case["family"] != "inet"}
    assert udp6 == {witnessed_by("BOUND", BY_OWN_SOCKET), witnessed_by("ESTABLISHED", BY_OWN_SOCKET)}
    # the table's own word everywhere else, as on Linux: BOUND is the case's own socket's 07 entry
    table = {case["witness"] for case in witnessed if case["state"] != "TIME_WAIT" and not (
        case["proto"] == "udp" and case["family"] != "inet")}
    assert table == {"BOUND", "LISTEN", "LISTEN+ESTABLISHED", "ESTABLISHED", "CLOSE_WAIT"}


def test_hijacks_ipv6_udp_sockets_are_witnessed_by_their_own_word_in_gvisor(both):
    """gVisor's /proc/net lists no IPv6 or dual-stack UDP socket: hijack's first socket says it is bound (as in
    bind_matrix), rather than a table that cannot show it polled to its deadline case after case."""
    cases = [record for record in records(both[0], "gvisor") if record["record"] == "case"
             and record["lab"] == "hijack" and record["proto"] == "udp"]
    udp6 = {case["witness"] for case in cases if case["family"] != "inet" and case["outcome"] != "unsupported"}
    assert udp6 == {witnessed_by("BOUND", BY_OWN_SOCKET)}
    assert {case["witness"] for case in cases if case["family"] == "inet" and case["outcome"] != "unsupported"} == {
        "BOUND"}


def test_labs_that_need_a_listed_time_wait_are_inconclusive_in_gvisor_not_false(both):
    cases = [record for record in records(both[0], "gvisor") if record["record"] == "case"]
    owner = [case for case in cases if case["lab"] == "time_wait_owner"]
    assert {case["outcome"] for case in owner} == {"inconclusive"}
    assert all("does not list TIME_WAIT" in case["detail"] for case in owner)
    churn = [case for case in cases if case["lab"] == "socketpair_churn" and case["strategy"] != "python_socketpair"]
    assert [case.get("time_wait_left", "") for case in churn] == [""] * len(churn)  # never a count of 0 unseen
    assert {case["outcome"] for case in churn if case["strategy"] == "sequential"} == {"inconclusive"}
    reuse = [case for case in cases if case["lab"] == "tuple_reuse"]
    assert {case["witness"] for case in reuse} == {witnessed_by("TIME_WAIT", BY_PEER)}
    assert {case["timestamps"] for case in reuse} == {"unknown"}  # gVisor's TCP_INFO leaves tcpi_options zero
    restarts = [case for case in cases if case["lab"] == "runtime_defaults" and case["helper"] != "asyncio_datagram_endpoint"]
    assert all(case["witness"].endswith("restart " + witnessed_by("TIME_WAIT", BY_PEER)) for case in restarts)


def test_compare_and_regress_put_linux_and_gvisor_side_by_side(both):
    run_dir, _ = both
    compared = socklab("compare", "-a", "local", "-b", "gvisor", "--run", run_dir, "--json")
    assert compared.returncode == 0, compared.stderr[-2000:]
    differences = json.loads(compared.stdout)["differences"]
    # C2 of /work/notes: SO_REUSEPORT binds over an accepted connection's 4-tuple in gVisor, not in Linux
    reuseport = [row for row in differences if row["case_id"] ==
                 "tcp/inet/ESTABLISHED/none/SO_REUSEPORT/wildcard/wildcard/other_process"]
    assert [(row["a"], row["b"]) for row in reuseport] == [("bind EADDRINUSE", "ok")]
    regressed = socklab("regress", "--baseline", run_dir, "--current", run_dir, "--pair", "local=gvisor",
                        "--out", os.path.join(run_dir, "regress"))
    assert regressed.returncode == 1, regressed.stderr[-2000:]  # witnessed cases that differ: a change
    with open(os.path.join(run_dir, "regress", "regress.json")) as stream:
        report = json.load(stream)
    changed = [case for case in report["cases"] if case["kind"] == "changed"]
    assert "tcp/inet/ESTABLISHED/none/SO_REUSEPORT/wildcard/wildcard/other_process" in {
        case["case_id"] for case in changed}



def test_gvisors_release_reads_as_it_is_in_history_compare_and_regress(both):
    """20221219.0 is text: a Markdown table must not turn it into the number 2.02212e+07."""
    run_dir, _ = both
    release = GVISOR_FACTS["os_release"]
    shown = socklab("history", "--host", "gvisor", "--runs", os.path.dirname(run_dir))
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "| {} ".format(release) in shown.stdout
    compared = socklab("compare", "-a", "linux", "-b", "gvisor", "--run", run_dir)
    assert compared.returncode == 0, compared.stderr[-2000:]
    assert "- **gvisor**: gvisor (gvisor {})".format(release) in compared.stdout
    out = os.path.join(run_dir, "regress-markdown")
    socklab("regress", "--baseline", run_dir, "--current", run_dir, "--pair", "local=gvisor", "--out", out)
    with open(os.path.join(out, "regress.md")) as stream:
        (row,) = [line for line in stream if line.startswith("| os_release ")]
    assert "| {} ".format(release) in row


def test_no_sandbox_outlives_a_run_interrupted_by_ctrl_c(runsc, tmp_path):  # noqa: F811
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text("hosts:\n  gvisor:\n    transport: local\n    launcher: [{}, --network=none, do]\n".format(
        runsc))
    controller = subprocess.Popen([SOCKLAB, "run-all", "--hosts", str(hosts), "--out", str(tmp_path / "runs"),
                                   "--lab", "socketpair_churn"], cwd=REPO, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    parent = os.path.join("/tmp", "socklab-launcher")
    launcher_folders = os.path.join(parent, "run-")
    before = set(os.listdir(parent)) if os.path.isdir(parent) else set()
    try:
        # the sandbox is up once a process of it names a launcher folder; then the agent is inside it
        deadline = time.monotonic() + 120
        while not sandboxes_of(launcher_folders) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sandboxes_of(launcher_folders), "no sandbox came up"
        ours = set(os.listdir(parent)) - before
        os.killpg(controller.pid, signal.SIGINT)
        controller.wait(timeout=120)
    finally:
        if controller.poll() is None:
            os.killpg(controller.pid, signal.SIGKILL)
            controller.wait()
    assert controller.returncode != 0
    assert [line for line in sandboxes_of(launcher_folders) if any(name in line for name in ours)] == []
    assert ours and not ours & set(os.listdir(parent))  # the launcher's scratch folder is gone too


def test_a_hidden_state_has_its_way_or_its_reason(runsc):  # noqa: F811
    """Inside the sandbox: the gVisor reader opens, and says which states need another way or cannot be shown."""
    code = ("from labs.witness import Witness; from labs.bind_matrix import witness_way\n"
            "w = Witness('gvisor')\n"
            "print(w.method, w.sees_bound_tcp, w.sees_time_wait, w.sees_closed, w.sees_udp6, w.time_wait_by_peer)\n"
            "for state, proto, family in (('TIME_WAIT', 'tcp', 'inet'), ('BOUND', 'udp', 'dual'),"
            " ('LISTEN', 'tcp', 'inet'), ('FIN_WAIT_2', 'tcp', 'inet6')):\n"
            "    print(witness_way(w, {'state': state, 'proto': proto, 'family': family}))\n")
    done = subprocess.run([runsc, "--network=none", "do", sys.executable, "-c", code], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0] == "/proc/net (gVisor) True False False False True"
    assert lines[1:4] == [BY_PEER, BY_OWN_SOCKET, "table"]
    assert lines[4].startswith("FIN_WAIT_2 cannot be witnessed here: gVisor's /proc/net lists only sockets")
    # and Linux's readers see everything the matrix drives: every case by the table
    with Witness("linux") as linux:
        assert witness_way(linux, {"state": "TIME_WAIT", "proto": "tcp", "family": "inet"}) == "table"
        assert witness_way(linux, {"state": "BOUND", "proto": "udp", "family": "dual"}) == "table"
