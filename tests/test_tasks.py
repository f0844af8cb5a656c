"""The tasks as a user runs them: a whole run on the default inventory, and one-line errors for bad input."""
import json
import os
import re
import subprocess
import sys

import pandas as pd
import pytest

from analysis.expectations import VERDICTS, judge, load_expectations
from formats.table import load as load_run
from labs.vocabulary import RESULT_COLUMNS
from tests.conftest import HOST_RECORD, REPO

SMALL = ["--lab", "bind_matrix", "--where", "proto=tcp", "--where", "family=inet", "--where",
         "prober=other_process,same_process"]
# The labs of issue 4, at small sizes (their defaults take seconds: socketpair_churn's 20,000 pairs per case).
OTHER_LABS = ["hijack", "listener_drain", "time_wait_owner", "tuple_reuse", "unix_sockets", "runtime_defaults",
              "socketpair_churn"]
SMALL_SIZES = ["--where", "pairs=300", "--where", "clients=20"]


def one_line_error(done, *fragments):
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def assert_check_says_what_the_judge_says(invoke, run_dir):
    """`check` exits 1 exactly when the run has a mismatch; its --json gives every verdict's count per host and lab
    and every mismatch, as the judge does; without --json the counts are a rich table. Returns the --json answer."""
    judged = judge(load_run(str(run_dir)), load_expectations())
    mismatching = int((judged["verdict"] == "mismatch").sum())
    checked = invoke("check", "--run", str(run_dir), "--json")
    assert checked.returncode == (1 if mismatching else 0), checked.stdout + checked.stderr
    answer = json.loads(checked.stdout)
    assert list(answer) == ["run", "cases", "exit_status", "verdicts", "mismatches"]
    assert answer["cases"] == len(judged) and answer["exit_status"] == checked.returncode
    counted = {verdict: sum(row[verdict] for row in answer["verdicts"]) for verdict in VERDICTS}
    assert counted == {verdict: int((judged["verdict"] == verdict).sum()) for verdict in VERDICTS}
    assert len(answer["mismatches"]) == mismatching
    for row in answer["verdicts"]:  # the share of the measured cases a source documents
        measured = row["match"] + row["mismatch"] + row["undocumented"]
        assert row["documented_share"] == (round((row["match"] + row["mismatch"]) / measured, 4) if measured else None)
    shown = invoke("check", "--run", str(run_dir))
    assert shown.returncode == checked.returncode
    assert re.search(r"┃ host\s+┃ lab\s+┃ match\s+┃ mismatch\s+┃", shown.stdout)  # a rich table, not a frame
    for row in answer["verdicts"]:  # a row per host and lab, as --json has them
        assert re.search(r"│ {}\s+│ {}\s+│\s+{:,} │.*│\s+{}\s+│\n".format(
            row["host"], row["lab"], row["match"], "" if row["documented_share"] is None else "{:.0%}".format(
                row["documented_share"])), shown.stdout), row
    return answer


def test_invoke_list_shows_every_task_with_help(invoke):
    listing = invoke("--list").stdout
    for name in ("run-all", "run", "hosts", "check", "report", "bench", "test"):
        line = next(line for line in listing.splitlines() if line.strip().startswith(name + " "))
        assert len(line.split(None, 1)[1]) > 10


def test_run_all_on_the_default_inventory_stores_results_and_report(invoke, tmp_path):
    done = invoke("run-all", "--out", str(tmp_path), *SMALL)
    assert done.returncode == 0, done.stderr
    (run_dir,) = [path for path in tmp_path.iterdir() if path.is_dir()]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["hosts"]["local"]["status"] == "completed" and manifest["ended"]
    records = [json.loads(line) for line in (run_dir / "local.jsonl").read_text().splitlines()]
    planned = sum(record["cases"] for record in records if record["record"] == "plan")
    received = sum(record["record"] == "case" for record in records)
    assert manifest["hosts"]["local"]["cases"] == planned == received > 0
    table = pd.read_csv(run_dir / "results.csv")
    assert list(table.columns[:len(RESULT_COLUMNS)]) == list(RESULT_COLUMNS) and len(table) == planned
    report = (run_dir / "report" / "report.md").read_text()
    for system in ("local (linux", "winxp-sp3 (windows XP)", "fc6-linux-2.6.18", "freebsd-6.2"):
        assert system in report
    assert (run_dir / "report" / "seed004_layout.csv").exists()

    # the terminal: each lab's line as it starts (plain lines when not on a terminal), the report a step of its own
    # (of the labs the run has: SMALL's --lab gives it bind_matrix alone)
    assert manifest["labs"] == ["bind_matrix"]
    assert "local: bind_matrix (lab 1 of 1): {:,} cases".format(planned) in done.stderr
    assert "writing the report of {} ...".format(run_dir) in done.stdout
    assert re.search(r"report written in \d+\.\d s: ", done.stdout)
    (verdicts,) = assert_check_says_what_the_judge_says(invoke, run_dir)["verdicts"]
    assert (verdicts["host"], verdicts["lab"]) == ("local", "bind_matrix")
    assert invoke("report", "--run", str(run_dir)).returncode == 0


def test_each_lab_runs_is_checked_and_has_its_report_section(invoke, tmp_path):
    done = invoke("run-all", "--out", str(tmp_path), *[word for lab in OTHER_LABS for word in ("--lab", lab)],
                  *SMALL_SIZES)
    assert done.returncode == 0, done.stdout + done.stderr
    (run_dir,) = [path for path in tmp_path.iterdir() if path.is_dir()]
    table = load_run(str(run_dir))
    assert set(table["lab"]) == set(OTHER_LABS)
    assert not (table["outcome"] == "error").any(), table.loc[table["outcome"] == "error", "detail"].head().tolist()
    assert set(table.loc[table["lab"] == "socketpair_churn", "pairs"]) == {"300"}
    # the terminal names each lab as it starts, k of the run's n labs
    started = re.findall(r"^local: (\w+) \(lab (\d+) of (\d+)\): [\d,]+ cases$", done.stderr, re.M)
    assert sorted(lab for lab, _, _ in started) == sorted(OTHER_LABS)
    assert [(int(k), int(n)) for _, k, n in started] == [(k, len(OTHER_LABS)) for k in range(1, len(OTHER_LABS) + 1)]
    report = (run_dir / "report" / "report.md").read_text()
    page = (run_dir / "report" / "report.html").read_text()
    for lab in OTHER_LABS:
        assert "## Lab " + lab in report and (run_dir / "report" / (lab + ".csv")).exists()
        assert 'id="lab-{}"'.format(lab) in page
    answer = assert_check_says_what_the_judge_says(invoke, run_dir)
    assert {row["lab"] for row in answer["verdicts"]} == set(OTHER_LABS)


def test_an_interrupted_run_keeps_what_arrived(tmp_path):
    """Ctrl-C in the middle: the cases received stay in <host>.jsonl and results.csv, the manifest says why."""
    import threading
    from collect import inventory, runner, transports
    from collect.store import RunStore
    from rich.console import Console
    hosts = inventory.load("hosts.yaml").select()
    store = RunStore.create(str(tmp_path), ["local"], ["bind_matrix"])
    log = os.path.join(store.path, "local.jsonl")
    original_log = store.host_log

    def interrupting_log(host):
        host_log = original_log(host)
        write = host_log.write

        def write_then_interrupt(line):
            write(line)
            with open(log) as stream:
                if sum(1 for _ in stream) >= 12:
                    stop.set()
        host_log.write = write_then_interrupt
        return host_log

    stop = threading.Event()
    store.host_log = interrupting_log
    display = runner.Display(hosts, Console(file=open(os.devnull, "w")))
    job = runner.new_job(hosts[0], ["bind_matrix"], [])
    runner.run_host(job, transports.for_host(hosts[0]), store, display, stop)
    store.finish()
    entry = store.manifest["hosts"]["local"]
    assert entry["status"] == "failed" and entry["reason"] == "interrupted"
    assert len(load_run(store.path)) == entry["cases"] >= 10


@pytest.mark.parametrize("text, fragments", [
    ("hosts:\n  local:\n    transport: local\n    password: x\n", [":4: hosts.local.password: no passwords"]),
    ("hosts: [\n", [":2: not valid YAML"]),
])
def test_bad_inventory_is_one_line_and_exit_2(invoke, tmp_path, text, fragments):
    path = tmp_path / "hosts.yaml"
    path.write_text(text)
    one_line_error(invoke("run-all", "--hosts", str(path), "--out", str(tmp_path)), str(path), *fragments)


def test_unknown_host_lab_or_column_is_one_line_and_exit_2(invoke, tmp_path):
    one_line_error(invoke("run", "--host", "nope", "--out", str(tmp_path)), "unknown host or group 'nope'")
    one_line_error(invoke("run-all", "--lab", "nope", "--out", str(tmp_path)), "--lab: unknown lab 'nope'")
    one_line_error(invoke("run-all", "--where", "colour=red", "--out", str(tmp_path)), "no column colour")
    one_line_error(invoke("run-all", "--lab", "hijack", "--where", "state=LISTEN", "--out", str(tmp_path)),
                   "--where: no column state in lab hijack")
    one_line_error(invoke("run-all", "--where", "pairs=many", "--out", str(tmp_path)),
                   "--where: pairs=many is not a positive int")


def test_corrupt_results_file_is_one_line_and_exit_2(invoke, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "manifest.json").write_text(json.dumps({"run_id": "x", "hosts": {"local": {}}}))
    (run_dir / "local.jsonl").write_text(json.dumps(HOST_RECORD) + '\n{"record": "case", "lab": "bind_\n{}\n')
    one_line_error(invoke("check", "--run", str(run_dir)), "local.jsonl:2: not a JSON record")
    (run_dir / "manifest.json").write_text("{")
    one_line_error(invoke("report", "--run", str(run_dir)), "manifest.json:1: not valid JSON")


def test_no_run_yet_is_one_line_and_exit_2(invoke, tmp_path):
    one_line_error(invoke("check", "--run", str(tmp_path / "absent")), "not a run directory")


def test_bad_expectation_file_is_one_line_and_exit_2(invoke, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("lab: bind_matrix\nrules:\n  - when: {os_family: linux, colour: red}\n"
                    "    expect: {bind: ok}\n    source: a made-up source for this test\n")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "manifest.json").write_text(json.dumps({"run_id": "x", "hosts": {}}))
    one_line_error(invoke("check", "--run", str(run_dir), "--expectations", str(path)), str(path) + ":3:", "colour")


def test_output_captured_by_hand_is_imported_as_a_run(invoke, tmp_path):
    """`./socklab agent` writes the agent as one file; its output, run by hand, is stored by `./socklab import`."""
    agent_file = tmp_path / "socklab-agent.pyz"
    assert invoke("agent", "--out", str(agent_file)).returncode == 0
    captured = subprocess.run([sys.executable, str(agent_file)] + SMALL, cwd=str(tmp_path), capture_output=True,
                              timeout=120, check=True).stdout.decode()
    (tmp_path / "whole.jsonl").write_text(captured)
    out = tmp_path / "runs"
    done = invoke("import", str(tmp_path / "whole.jsonl"), "--host", "offline-vm", "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    (run_dir,) = list(out.iterdir())
    cases = captured.count('"record": "case"')
    assert len(load_run(str(run_dir))) == cases > 0

    lines = captured.splitlines()
    (tmp_path / "cut.jsonl").write_text("\n".join(lines[:12]) + "\n" + lines[12][:30])  # no end record
    (tmp_path / "garbage.jsonl").write_text("\n".join(lines[:5] + ["<html>not agent output</html>"]) + "\n")
    done = invoke("import", str(tmp_path / "cut.jsonl"), "--host", "cut-vm", "--run", str(run_dir))
    assert done.returncode == 1, done.stdout + done.stderr
    # a line that is not a record is a bad file: refused whole, the run untouched
    before = {path.name: path.read_bytes() for path in run_dir.iterdir() if path.is_file()}
    one_line_error(invoke("import", str(tmp_path / "garbage.jsonl"), "--host", "garbage-vm", "--run", str(run_dir)),
                   str(tmp_path / "garbage.jsonl") + ":6: not a JSON record")
    assert {path.name: path.read_bytes() for path in run_dir.iterdir() if path.is_file()} == before
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["hosts"]["offline-vm"]["status"] == "completed"
    assert manifest["hosts"]["cut-vm"]["reason"] == "agent output was cut short in line 13"
    assert "garbage-vm" not in manifest["hosts"]
    table = load_run(str(run_dir))
    assert (table.host == "cut-vm").sum() == 10

    one_line_error(invoke("import", str(tmp_path / "whole.jsonl"), "--host", "../etc", "--out", str(out)),
                   "--host: host name '../etc'")
    one_line_error(invoke("import", str(tmp_path / "whole.jsonl"), "--host", "offline-vm", "--run", str(run_dir)),
                   "already has a host 'offline-vm'")


def test_resume_refuses_a_changed_agent_and_a_changed_host(invoke, tmp_path):
    """A resumed run must not mix two agents or two systems: the run is refused (exit 2), or the host fails."""
    done = invoke("run-all", "--out", str(tmp_path), *SMALL)
    assert done.returncode == 0, done.stderr
    (run_dir,) = [path for path in tmp_path.iterdir() if path.is_dir()]
    manifest_path = run_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["hosts"]["local"]["status"] = "failed"
    log = run_dir / "local.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    host = json.loads(lines[0])
    log.write_text(json.dumps(dict(host, os_release="1.0-old")) + "\n" + "".join(lines[1:20]))
    manifest_path.write_text(json.dumps(dict(manifest, agent_version="0123456789abcdef")))
    one_line_error(invoke("run-all", "--resume", str(run_dir)), "the agent changed since this run")
    manifest_path.write_text(json.dumps(manifest))
    one_line_error(invoke("run-all", "--resume", str(run_dir), "--where", "proto=udp"), "--resume: a resumed run")
    resumed = invoke("run-all", "--resume", str(run_dir))
    assert resumed.returncode == 1
    entry = json.loads(manifest_path.read_text())["hosts"]["local"]
    assert entry["status"] == "failed" and "the host changed since this run (os_release: '1.0-old' then" in entry[
        "reason"]


def test_nothing_passes_on_nothing(invoke, tmp_path):
    """A selection that no case on this host has (SO_EXCLUSIVEADDRUSE is Windows'): the run says so and exits 2,
    and every command that judges or compares it exits 2 instead of passing on an empty table."""
    out = tmp_path / "runs"
    done = invoke("run-all", "--out", str(out), "--where", "first_opts=SO_EXCLUSIVEADDRUSE")
    (run_dir,) = [str(path) for path in out.iterdir()]
    # stderr shows the hosts' progress, then the one line
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: {}: every host completed without a case".format(
        run_dir))
    manifest = json.loads(open(os.path.join(run_dir, "manifest.json")).read())
    assert manifest["hosts"]["local"] == dict(manifest["hosts"]["local"], status="completed", cases=0)
    for args in (["check", "--run", run_dir], ["report", "--run", run_dir],
                 ["regress", "--baseline", REPO + "/archive/seed004-2010", "--current", run_dir],
                 ["regress", "--baseline", run_dir, "--current", REPO + "/archive/seed004-2010"],
                 ["baseline", run_dir, "--folder", str(tmp_path / "baselines")],
                 ["compare", "local", "windows", "--run", run_dir]):
        one_line_error(invoke(*args), run_dir, "holds no case")
    one_line_error(invoke("history", "--host", "local", "--runs", str(out)), "--host: no stored run holds a case")
    one_line_error(invoke("check", "--run", str(tmp_path / "runs")), "not a run directory")


def test_paths_on_the_command_line_are_the_users(tmp_path):
    """./socklab started from another directory: relative paths are taken from there, not from the checkout."""
    def socklab(*args):
        return subprocess.run([os.path.join(REPO, "socklab")] + list(args), cwd=str(tmp_path), capture_output=True,
                              text=True, timeout=300)
    done = socklab("run-all", "--out", "runs", *SMALL)
    assert done.returncode == 0, done.stdout + done.stderr
    (run_dir,) = os.listdir(str(tmp_path / "runs"))
    relative = os.path.join("runs", run_dir)
    checked = socklab("check", "--run", relative)
    assert "run {}: ".format(relative) in checked.stdout, checked.stdout + checked.stderr
    assert socklab("report", "--run", relative, "--out", "report").returncode == 0
    assert (tmp_path / "report" / "report.md").exists()
    missing = socklab("check", "--run", "nowhere")
    assert missing.returncode == 2 and missing.stderr.startswith("error: nowhere: not a run directory")
    listed = socklab("--help", "run-all")
    assert listed.stdout.startswith("Usage: ./socklab [--core-opts] run-all") and "invoke" not in listed.stdout


def test_a_short_flag_means_the_same_in_every_task(invoke):
    """-i --hosts, -l --lab, -w --where, -o --out, -r --run, -e --expectations, -p --parallel; no other."""
    from cli import SHORT_FLAGS
    meaning = {"-" + short: "--" + name for name, short in SHORT_FLAGS.items()}
    for task in ("run-all", "run", "hosts", "import", "check", "report", "regress", "baseline", "history", "compare",
                 "lab-up", "lab-down", "lab-vm-up", "lab-vm-down", "bench", "agent", "test"):
        text = invoke("--help", task).stdout
        for short, long in re.findall(r"^\s+(-\w)(?: \w+)?, (--[\w-]+)", text, flags=re.M):
            assert meaning.get(short) == long, (task, short, long)


def test_every_task_prints_its_help_after_its_name_too(invoke):
    """`TASK --help` and `TASK -h` as `--help TASK`, also for a task whose positional argument is missing (invoke
    would give it the flag: `why --help` asked about a port named --help)."""
    import invoke as invoke_library
    import tasks
    for task in invoke_library.Collection.from_module(tasks).task_names:
        for flag in ("--help", "-h"):
            done = invoke(task, flag)
            assert done.returncode == 0 and done.stdout.startswith(
                "Usage: ./socklab [--core-opts] {} ".format(task)), (task, flag, done.stdout + done.stderr)


def test_a_folder_of_captured_outputs_is_imported_host_by_host(invoke, tmp_path):
    """import DIR: each <host>.jsonl is a host named by its file; a bad file is told in one line and not stored,
    the good ones are (exit status 2: something given was wrong)."""
    captured = subprocess.run([sys.executable, "-m", "labs"] + SMALL, cwd=REPO, capture_output=True, timeout=120,
                              check=True).stdout.decode()
    folder = tmp_path / "captured"
    folder.mkdir()
    for host in ("vm-a", "vm-b"):
        (folder / (host + ".jsonl")).write_text(captured)
    (folder / "vm-bad.jsonl").write_text(captured.replace('"record": "case"', '"record": "kase"', 1))
    out = tmp_path / "runs"
    done = invoke("import", str(folder), "--out", str(out))
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]  # beside the progress
    assert done.returncode == 2 and "Traceback" not in done.stderr and errors == [
        "error: {}:3: record: 'kase' is not a record kind (host, plan, case, end)".format(folder / "vm-bad.jsonl")]
    (run_dir,) = list(out.iterdir())
    table = load_run(str(run_dir))
    assert sorted(table["host"].unique()) == ["vm-a", "vm-b"]
    assert len(table) == 2 * captured.count('"record": "case"')
