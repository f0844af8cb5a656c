"""A run's record stays true whatever happens to the commands that write it: a controller killed outright leaves a
manifest that reads true; two resumes at once are one resume (the second refused, no case twice); a command that is
refused leaves every byte of the run as it was. Real runs of this machine, real processes, real signals."""
import hashlib
import json
import os
import signal
import subprocess

import pytest

from analysis.expectations import judge, load_expectations
from formats import hostlog, rundir, table
from formats.rundir import KILLED
from tests.conftest import HOST_RECORD, REPO, cases_in, only_run, socklab_command, write_inventory

# bind_matrix over TCP, every family and address pair, two probers: ~1,500 cases, some seconds of work
WHERE = ["--lab", "bind_matrix", "--where", "proto=tcp", "--where", "prober=other_process,same_process"]


def socklab(*args):
    return subprocess.run(socklab_command(*args), cwd=REPO, capture_output=True, text=True, timeout=600)


def one_line(done, code, *fragments):
    lines = done.stderr.strip().splitlines()
    assert done.returncode == code and len(lines) == 1 and "Traceback" not in done.stderr + done.stdout, (
        done.returncode, done.stdout, done.stderr)
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def case_lines(run_dir):
    with open(rundir.log_path(run_dir, "local")) as stream:
        return [json.loads(line) for line in stream if line.endswith("\n") and '"record": "case"' in line]


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """A run whose controller was killed with SIGKILL after 200 cases: (its directory, the cases its log held)."""
    out = tmp_path_factory.mktemp("killed")
    running = subprocess.Popen(socklab_command("run-all", "--out", str(out), *WHERE), cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert cases_in(out, "local", at_least=200) >= 200, "no cases arrived"
        running.send_signal(signal.SIGKILL)
        assert running.wait(timeout=60) == -signal.SIGKILL
    finally:
        if running.poll() is None:
            running.kill()
    run_dir, _ = only_run(out)
    return run_dir, len(case_lines(run_dir))


def test_a_killed_controller_leaves_a_run_that_reads_true(killed):
    run_dir, held = killed
    with open(os.path.join(run_dir, "manifest.json")) as stream:
        written = json.load(stream)  # whole: written to a temporary file, then renamed
    assert written["hosts"]["local"]["status"] == "running" and written["ended"] is None
    assert written["hosts"]["local"]["cases"] <= held  # brought up to date about every second: it may lag the log
    entry = rundir.read_run(run_dir).manifest["hosts"]["local"]
    assert entry == dict(written["hosts"]["local"], status="failed", reason=KILLED, cases=held)
    assert rundir.read_manifest(run_dir)["hosts"]["local"]["cases"] == held
    mismatches = (judge(table.load(run_dir), load_expectations())["verdict"] == "mismatch").any()
    checked = socklab("check", "--run", run_dir, "--json")
    assert checked.returncode == int(mismatches) and json.loads(checked.stdout)["cases"] == held


def checksums(folder):
    """{path: sha256} of every file under folder, and every folder (None): a byte that changes shows."""
    found = {}
    for parent, folders, names in os.walk(folder):
        for name in folders:
            found[os.path.relpath(os.path.join(parent, name), folder)] = None
        for name in names:
            with open(os.path.join(parent, name), "rb") as stream:
                found[os.path.relpath(os.path.join(parent, name), folder)] = hashlib.sha256(stream.read()).hexdigest()
    return found


def test_a_refused_command_leaves_every_byte_of_the_run(killed, tmp_path):
    run_dir, _ = killed
    captured = tmp_path / "captured.jsonl"
    captured.write_text("".join(json.dumps(line) + "\n" for line in (HOST_RECORD, {"record": "plan", "lab":
                                                                                   "bind_matrix", "cases": 0})))
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text(json.dumps(HOST_RECORD) + "\nnot a record\n")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "bad.jsonl").write_text("<html>\n")
    other = write_inventory(tmp_path / "other.yaml", {"other": {"transport": "local"}})
    broken = tmp_path / "broken.yaml"
    broken.write_text("hosts:\n  local: {transport: telnet}\n")
    refusals = [
        (("run-all", "--resume", run_dir, "--lab", "hijack"), "--resume: a resumed run keeps its own labs"),
        (("run-all", "--resume", run_dir, "--where", "proto=udp"), "--resume: a resumed run keeps its own labs"),
        (("run-all", "--resume", run_dir, "--hosts", other), "the run's host 'local' is not in this inventory"),
        (("run-all", "--resume", run_dir, "--hosts", str(broken)), "broken.yaml:2: hosts.local.transport"),
        (("import", str(captured), "--host", "local", "--run", run_dir), "already has a host 'local'"),
        (("import", str(garbage), "--host", "new", "--run", run_dir), "garbage.jsonl:2: not a JSON record"),
        (("import", str(folder), "--run", run_dir), "bad.jsonl:1: not a JSON record"),
    ]
    before = checksums(run_dir)
    for args, fragment in refusals:
        one_line(socklab(*args), 2, fragment)
        assert checksums(run_dir) == before, args
    lock = rundir.Lock(run_dir).acquire()  # another writer holds the run
    try:
        one_line(socklab("run-all", "--resume", run_dir), 2, "another socklab is writing this run now")
        one_line(socklab("import", str(captured), "--host", "new", "--run", run_dir), 2, "another socklab is writing")
    finally:
        lock.release()
    assert checksums(run_dir) == before
    manifest_path = os.path.join(run_dir, "manifest.json")
    with open(manifest_path) as stream:
        manifest = json.load(stream)
    with open(manifest_path, "w") as stream:
        json.dump(dict(manifest, agent_version="0123456789abcdef"), stream, indent=2)
    changed = checksums(run_dir)
    one_line(socklab("run-all", "--resume", run_dir), 2, "the agent changed since this run")
    assert checksums(run_dir) == changed
    with open(manifest_path, "w") as stream:
        json.dump(manifest, stream, indent=2)


def test_two_resumes_at_once_are_one_resume(killed):
    """The first resume holds the run; the second is refused in one line, the first completes the run from the
    inventory the run recorded (no --hosts), and no case is in the log twice."""
    run_dir, held = killed
    first = subprocess.Popen(socklab_command("run-all", "--resume", run_dir), cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        from labs.polling import poll
        assert poll(lambda: rundir.writer_active(run_dir), bool, 60), "the first resume did not take the run"
        # The first stands still while the second tries (its agent's watchdog waits 15 s for a heartbeat): with the
        # few cases left it could otherwise be done before the second starts.
        first.send_signal(signal.SIGSTOP)
        try:
            second = socklab("run-all", "--resume", run_dir)
        finally:
            first.send_signal(signal.SIGCONT)
        output, errors = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
    one_line(second, 2, "another socklab is writing this run now")
    assert first.returncode == 0, output + errors
    cases = case_lines(run_dir)
    ids = [case["case_id"] for case in cases]
    assert len(ids) == len(set(ids)) > held
    log = hostlog.read(rundir.log_path(run_dir, "local"))
    planned = sum(end["cases"] for end in log.ends)
    manifest = rundir.read_run(run_dir).manifest
    assert manifest["hosts"]["local"]["status"] == "completed" and manifest["hosts"]["local"]["cases"] == len(ids)
    assert planned == len(ids) - held  # the resumed agent ran exactly the cases that were missing
    assert len(manifest["reopened"]) == 1
    done = socklab("run-all", "--resume", run_dir)
    assert done.returncode == 0 and "is complete: nothing to resume" in done.stdout
