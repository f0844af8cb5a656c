"""The agent under a controller, with real processes: the request on stdin, the watchdog that ends it when the
controller goes away, its private work folder, the bootstrap that prepares a host, and the agent as one zip."""
import json
import os
import subprocess
import sys
import zipfile

import pytest

from collect import agent
from labs import session
from labs.polling import poll
from tests.conftest import REPO

REQUEST = {"labs": ["bind_matrix"], "where": ["proto=tcp", "state=LISTEN", "family=inet",
                                              "prober=other_process"]}


def serve(request, work_in, command=None):
    process = subprocess.Popen(command or [sys.executable, "-m", "labs", "--serve"], cwd=REPO,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdin.write(json.dumps(dict(request, work_in=str(work_in))).encode() + b"\n")
    process.stdin.flush()
    return process


def records(output):
    return [json.loads(line) for line in output.decode().splitlines()]


def children_of(pid):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/{}/stat".format(entry)) as stream:
                    if int(stream.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except OSError:
                continue
    return found


def test_served_run_ends_cleanly_and_removes_its_work_folder(tmp_path):
    process = serve(REQUEST, tmp_path)  # stdin stays open: the run is shorter than the watchdog's patience
    output = process.stdout.read()
    assert process.wait(timeout=60) == 0
    kinds = [record["record"] for record in records(output)]
    assert kinds[0] == "host" and kinds[-1] == "end" and "case" in kinds
    assert os.listdir(tmp_path) == []
    process.stdin.close()


def test_skip_leaves_out_the_cases_already_received(tmp_path):
    def case_ids(request):
        process = serve(request, tmp_path)
        output = process.stdout.read()
        process.wait(timeout=60)
        process.stdin.close()
        return [record["case_id"] for record in records(output) if record["record"] == "case"]
    cases = case_ids(REQUEST)
    assert sorted(case_ids(dict(REQUEST, skip={"bind_matrix": cases[:10]}))) == sorted(cases[10:])


@pytest.mark.parametrize("how", ["stdin closed", "silence"])
def test_watchdog_ends_agent_and_probers_and_removes_folder(tmp_path, how):
    request = dict(REQUEST, where=["proto=tcp", "prober=other_process"], watchdog=0.5)
    process = serve(request, tmp_path)
    assert process.stdout.readline()  # the host record: the agent is up
    probers = poll(lambda: children_of(process.pid), bool, 10)
    assert probers and os.listdir(tmp_path)
    if how == "stdin closed":
        process.stdin.close()
    status = process.wait(timeout=30)  # silence: no heartbeat at all, so the 0.5 s watchdog fires
    assert status == session.ABANDONED
    assert b"the controller went away" in process.stderr.read()
    assert poll(lambda: [pid for pid in probers if os.path.exists("/proc/{}".format(pid))], lambda left: not left,
                10) == []
    assert os.listdir(tmp_path) == []


def test_a_bad_request_is_exit_2():
    done = subprocess.run([sys.executable, "-m", "labs", "--serve"], cwd=REPO, input=b"not json\n",
                          capture_output=True, timeout=60)
    assert done.returncode == 2 and b"the first line on stdin must be the request" in done.stderr


def test_agent_zip_is_reproducible_and_runs_by_itself(tmp_path):
    name, data, sha256 = agent.build()
    agent.build.cache_clear()
    assert agent.build() == (name, data, sha256)
    path = tmp_path / name
    path.write_bytes(data)
    assert "labs/bind_matrix.py" in zipfile.ZipFile(str(path)).namelist()
    done = subprocess.run([sys.executable, str(path), "--lab", "bind_matrix", "--where", "proto=udp",
                           "--where", "state=BOUND", "--where", "family=inet"], cwd=str(tmp_path),
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    kinds = [record["record"] for record in records(done.stdout)]
    assert kinds[0] == "host" and kinds[-1] == "end" and "case" in kinds


def run_bootstrap(home, *arguments):
    done = subprocess.run([sys.executable, "-"] + list(arguments), input=agent.bootstrap_script().encode(),
                          env=dict(os.environ, HOME=str(home)), capture_output=True, timeout=60)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def test_bootstrap_makes_a_private_folder_and_knows_the_agent_by_its_hash(tmp_path):
    name, data, sha256 = agent.build()
    status, output, _ = run_bootstrap(tmp_path, name, sha256)
    found = json.loads(output)
    folder = tmp_path / ".socklab"
    assert status == 0 and found["folder"] == str(folder) and not found["present"]
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    (folder / name).write_bytes(data[:100])  # a push cut short is not the agent
    assert not json.loads(run_bootstrap(tmp_path, name, sha256)[1])["present"]
    (folder / name).write_bytes(data)
    assert json.loads(run_bootstrap(tmp_path, name, sha256)[1])["present"]


def test_bootstrap_removes_work_folders_of_agents_killed_outright(tmp_path):
    folder = tmp_path / ".socklab"
    folder.mkdir(mode=0o700)
    dead = subprocess.Popen(["true"])
    dead.wait()
    (folder / "run-{}-abc".format(dead.pid)).mkdir()
    (folder / "run-{}-def".format(os.getpid())).mkdir()  # alive: this test
    run_bootstrap(tmp_path, "x.pyz", "0")
    assert sorted(os.listdir(folder)) == ["run-{}-def".format(os.getpid())]


def test_bootstrap_refuses_a_folder_open_to_others_it_does_not_own(tmp_path):
    folder = tmp_path / ".socklab"
    folder.mkdir(mode=0o777)
    os.chmod(str(folder), 0o777)
    run_bootstrap(tmp_path, "x.pyz", "0")
    assert oct(folder.stat().st_mode & 0o777) == "0o700"  # its own folder: tightened
    if os.geteuid() == 0:
        os.chown(str(folder), 65534, 65534)
        status, output, _ = run_bootstrap(tmp_path, "x.pyz", "0")
        # the host's Python ran: the controller reports the problem instead of trying another Python
        assert status == 0 and json.loads(output) == {"problem": "{} belongs to another user".format(folder)}
