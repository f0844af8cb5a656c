"""Regression, baselines, history and cross-system diff over real runs of this machine (./socklab run-all), doctored
copies of them, and seed 004's archived run."""
import io
import json
import os
import shutil
import subprocess

import pandas as pd
import pytest
from rich.console import Console

from analysis.compare import compare, compare_markdown, system_diff
from analysis.history import history, host_history
from analysis.regress import BASELINE_COLUMNS, markdown_table, promote_baseline, regress, regression, rule_text
from formats.rundir import run_dirs
from formats.table import load_runs
from formats.errors import UserError
from tests.conftest import REPO, socklab_command

ARCHIVE = os.path.join(REPO, "archive")
SEED = os.path.join(ARCHIVE, "seed004-2010")
HOST = "local"


def case(state, first_opts, second_opts, first_addr="wildcard", second_addr="wildcard", prober="other_process",
         proto="tcp"):
    return "/".join([proto, "inet", state, first_opts, second_opts, first_addr, second_addr, prober])


# What the doctored copy changes, and what regress must therefore report (nothing else).
STOLEN = case("LISTEN", "SO_REUSEADDR", "SO_REUSEADDR")            # bind EADDRINUSE -> ok (Windows XP's answer)
MOVED = case("TIME_WAIT", "none", "none")                         # EADDRINUSE moves from bind() to listen()
BLURRED = case("FIN_WAIT_2", "none", "none", "loopback", "loopback", "same_process")   # -> inconclusive
DROPPED = case("BOUND", "none", "none", prober="other_user")      # removed
NEW = case("BOUND", "none", "none", proto="udp")                  # added (the runs hold tcp only)
DOCTORED_CASES = {
    STOLEN: dict(outcome="ok", errno=None, bind="ok", listen="ok"),
    MOVED: dict(outcome="EADDRINUSE", bind="ok", listen="EADDRINUSE"),
    BLURRED: dict(outcome="inconclusive", errno=None, witness="CLOSED", setsockopt="", bind="", listen="",
                  detail="state not witnessed"),
}
NEW_RELEASE = "6.99.0-doctored"
EXPECTED_CASES = {("changed", STOLEN), ("changed", MOVED), ("now_inconclusive", BLURRED), ("removed", DROPPED),
                  ("added", NEW)}


def measure(out):
    """A real run of this machine's TCP/IPv4 cases, as a user starts it; returns its directory."""
    before = set(run_dirs(out))
    done = subprocess.run(socklab_command("run-all", "--where", "proto=tcp", "--where",
                                          "family=inet", "--out", out), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    (run_dir,) = set(run_dirs(out)) - before
    return run_dir


def doctor(run_dir, out, run_id, started):
    """A copy of the run as `run_id`: DOCTORED_CASES changed, DROPPED gone, NEW added, another OS release and
    net.ipv4.tcp_tw_reuse, no net.ipv6.bindv6only."""
    copy = os.path.join(out, run_id)
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("report", "regress", "results.csv", "results.parquet"))
    with open(os.path.join(copy, "manifest.json")) as stream:
        manifest = json.load(stream)
    manifest.update(run_id=run_id, started=started)
    with open(os.path.join(copy, "manifest.json"), "w") as stream:
        json.dump(manifest, stream)
    log = os.path.join(copy, HOST + ".jsonl")
    with open(log) as stream:
        records = [json.loads(line) for line in stream]
    facts = records[0]
    facts["os_release"] = NEW_RELEASE
    facts["sysctls"]["net.ipv4.tcp_tw_reuse"] = "0" if facts["sysctls"]["net.ipv4.tcp_tw_reuse"] != "0" else "1"
    del facts["sysctls"]["net.ipv6.bindv6only"]
    kept = []
    for record in records:
        if record.get("case_id") in DOCTORED_CASES:
            record.update(DOCTORED_CASES[record["case_id"]])
        if record.get("case_id") != DROPPED:
            kept.append(record)
    template = next(record for record in kept if record.get("case_id") == case("BOUND", "none", "none"))
    kept.insert(kept.index(template) + 1, dict(template, case_id=NEW, proto="udp", listen=""))
    with open(log, "w") as stream:
        stream.write("".join(json.dumps(record) + "\n" for record in kept))
    return copy


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two real runs under one folder, then a doctored copy of the second, started after both."""
    out = str(tmp_path_factory.mktemp("results"))
    first, second = measure(out), measure(out)
    doctored = doctor(second, out, "29991231-235959Z", "2999-12-31T23:59:59+00:00")
    return out, first, second, doctored


def facts_of(run_dir):
    with open(os.path.join(run_dir, HOST + ".jsonl")) as stream:
        return json.loads(stream.readline())


def kinds(result):
    return set(zip(result.cases["kind"], result.cases["case_id"]))


def expected_facts(run_dir):
    facts = facts_of(run_dir)
    tw_reuse = facts["sysctls"]["net.ipv4.tcp_tw_reuse"]
    return {("os_release", facts["os_release"], NEW_RELEASE),
            ("net.ipv4.tcp_tw_reuse", tw_reuse, "0" if tw_reuse != "0" else "1"),
            ("net.ipv6.bindv6only", facts["sysctls"]["net.ipv6.bindv6only"], "(absent)")}


# ------------------------------------------------------------------------------------------------ regress

def test_identical_runs_exit_0_and_write_both_files(runs, tmp_path):
    _, first, _, _ = runs
    copy = str(tmp_path / "copy")
    shutil.copytree(first, copy)
    console = Console(file=io.StringIO(), width=200)
    assert regress(first, copy, console=console) == 0
    with open(os.path.join(copy, "regress", "regress.json")) as stream:
        written = json.load(stream)
    assert written["exit_status"] == 0 and written["cases"] == [] and written["facts"] == []
    assert written["hosts"][0]["comparison"] == "compared"
    assert os.path.exists(os.path.join(copy, "regress", "regress.md"))
    assert "Exit status 0" in console.file.getvalue()


def test_two_real_runs_of_this_machine_agree(runs):
    _, first, second, _ = runs
    result = regression(first, second)
    assert result.exit_status == 0 and not (result.cases["kind"] == "changed").any()


def test_a_doctored_run_shows_exactly_its_cells_and_facts_and_exits_1(runs, tmp_path):
    _, _, second, doctored = runs
    out = str(tmp_path / "regress")
    console = Console(file=io.StringIO(), width=200)
    assert regress(second, doctored, out=out, console=console) == 1
    result = regression(second, doctored)
    assert kinds(result) == EXPECTED_CASES
    assert set(result.facts[["fact", "baseline", "current"]].itertuples(index=False, name=None)) == \
        expected_facts(second)
    changed = result.cases.set_index("case_id")
    assert changed.loc[STOLEN, ["baseline", "current"]].tolist() == ["bind EADDRINUSE", "ok"]
    assert changed.loc[MOVED, ["baseline", "current"]].tolist() == ["bind EADDRINUSE", "listen EADDRINUSE"]
    assert changed.loc[BLURRED, ["current", "witness_current"]].tolist() == ["inconclusive", "CLOSED"]
    assert changed.loc[STOLEN, ["state", "first_opts", "prober"]].tolist() == ["LISTEN", "SO_REUSEADDR",
                                                                               "other_process"]
    with open(os.path.join(out, "regress.json")) as stream:
        written = json.load(stream)
    assert written["exit_status"] == 1
    assert {(row["kind"], row["case_id"]) for row in written["cases"]} == EXPECTED_CASES
    assert written["hosts"] == [dict(host=HOST, comparison="compared", changed=2, now_inconclusive=1,
                                     now_unsupported=0, now_witnessed=0, added=1, removed=1, facts_changed=3,
                                     current_status="completed")]
    with open(os.path.join(out, "regress.md")) as stream:
        text = stream.read()
    assert "### Outcome changed (2)" in text and "| os_release " in text and NEW_RELEASE in text
    printed = console.file.getvalue()
    assert "Exit status 1" in printed and "os_release" in printed and STOLEN in printed


def test_the_other_way_round_the_kinds_swap(runs):
    _, _, second, doctored = runs
    swapped = {"changed": "changed", "now_inconclusive": "now_witnessed", "removed": "added", "added": "removed"}
    result = regression(doctored, second)
    assert kinds(result) == {(swapped[kind], case_id) for kind, case_id in EXPECTED_CASES}
    assert result.exit_status == 1


def test_hosts_on_one_side_only_are_listed_and_a_missing_baseline_host_fails(runs, tmp_path):
    _, first, _, _ = runs
    result = regression(SEED, first)
    assert dict(result.hosts[["host", "comparison"]].itertuples(index=False)) == {
        HOST: "no baseline", "winxp-sp3": "not in current", "fc6-linux-2.6.18": "not in current",
        "rh8-linux-2.4.20": "not in current", "ubuntu804-linux-2.6.24": "not in current",
        "freebsd-6.2": "not in current"}
    # the baseline's hosts were not measured this time: a regression check must not pass on that
    assert result.cases.empty and result.exit_status == 1
    assert "5 host(s) of the baseline not in the current run (" in rule_text(result)
    # a host new in the current run (no baseline) alone does not fail
    alone = regression(first, first)
    assert alone.exit_status == 0 and alone.missing_hosts == []


def test_neither_a_run_nor_a_baseline_folder_is_a_user_error(runs, tmp_path):
    _, first, _, _ = runs
    with pytest.raises(UserError, match="neither a run directory"):
        regress(str(tmp_path), first)


# ------------------------------------------------------------------------------------------------ baselines

def test_a_promoted_baseline_is_small_sorted_and_stable(runs, tmp_path):
    _, first, second, _ = runs
    folder = str(tmp_path / "baselines")
    assert promote_baseline(first, folder) == 0
    assert sorted(os.listdir(folder)) == [HOST + ".csv", HOST + ".facts.json"]
    table = pd.read_csv(os.path.join(folder, HOST + ".csv"), dtype=str, keep_default_na=False)
    assert list(table.columns) == BASELINE_COLUMNS
    assert list(zip(table["lab"], table["case_id"])) == sorted(zip(table["lab"], table["case_id"]))
    assert len(table) == len(load_runs([first]))
    with open(os.path.join(folder, HOST + ".csv")) as stream:
        text = stream.read()
    assert os.path.basename(first) not in text and "started" not in text
    with open(os.path.join(folder, HOST + ".facts.json")) as stream:
        facts_text = stream.read()
    facts = json.loads(facts_text)
    assert facts_text == json.dumps(facts, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert facts["sysctls"] == facts_of(first)["sysctls"] and "record" not in facts
    # promoting an equal run again changes no byte: a git diff of a baseline shows only real changes
    assert promote_baseline(second, folder) == 0
    with open(os.path.join(folder, HOST + ".csv")) as stream:
        assert stream.read() == text


def test_regress_against_a_baseline(runs, tmp_path):
    _, first, _, doctored = runs
    folder = str(tmp_path / "baselines")
    promote_baseline(first, folder)
    assert regress(folder, first, out=str(tmp_path / "same")) == 0
    result = regression(folder, doctored)
    assert kinds(result) == EXPECTED_CASES and result.exit_status == 1
    assert set(result.facts[["fact", "baseline", "current"]].itertuples(index=False, name=None)) == \
        expected_facts(first)
    # a baseline's parameters come back from its case ids
    removed = result.cases[result.cases["kind"] == "removed"].iloc[0]
    assert (removed["state"], removed["prober"]) == ("BOUND", "other_user")
    # the archived hosts have no baseline; the baseline's host is not in the archive
    archived = regression(folder, SEED)
    assert set(archived.hosts["comparison"]) == {"no baseline", "not in current"}
    with pytest.raises(UserError, match="--out: the current side is a baseline folder"):
        regress(first, folder)


def as_run_of_the_agent_before_issue_15(run_dir, out):
    """A copy of the run as main's agent before second_family and hijack's proto would have written it: none of
    the new cases, and the old ones without those fields."""
    copy = os.path.join(out, "20000101-000000Z")
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("report", "regress", "results.csv", "results.parquet"))
    with open(os.path.join(copy, "manifest.json")) as stream:
        manifest = json.load(stream)
    manifest.update(run_id="20000101-000000Z", started="2000-01-01T00:00:00+00:00")
    with open(os.path.join(copy, "manifest.json"), "w") as stream:
        json.dump(manifest, stream)
    log = os.path.join(copy, HOST + ".jsonl")
    with open(log) as stream:
        records = [json.loads(line) for line in stream]
    old = {"bind_matrix": ("second_family", ""), "hijack": ("proto", "tcp")}
    kept = []
    for record in records:
        column, value = old.get(record.get("lab"), (None, None))
        if column and record.get(column) != value:
            continue
        kept.append({key: item for key, item in record.items() if key != column})
    counts = {}
    for record in kept:
        if record["record"] == "case":
            counts[record["lab"]] = counts.get(record["lab"], 0) + 1
    for record in kept:
        if record["record"] == "plan":
            record["cases"] = counts.get(record["lab"], 0)
        elif record["record"] == "end":
            record["cases"] = sum(counts.values())
    with open(log, "w") as stream:
        stream.write("".join(json.dumps(record) + "\n" for record in kept))
    return copy


def test_a_run_or_baseline_of_the_agent_before_second_family_sees_only_the_new_cases_added(runs, tmp_path):
    """Today's cases that existed before keep their ids: against a run of the older agent (and a baseline promoted
    from it) nothing changed, the cross-family cases and the UDP hijack cases are added, the exit status is 0."""
    _, first, second, _ = runs
    old = as_run_of_the_agent_before_issue_15(first, str(tmp_path))
    folder = str(tmp_path / "baselines")
    assert promote_baseline(old, folder) == 0
    current = load_runs([second])
    new = current[(current["second_family"].fillna("") != "") | (current["lab"] == "hijack") &
                  (current["proto"] != "tcp")]
    assert len(new) > 1000
    for baseline in (old, folder):
        result = regression(baseline, second)
        assert result.exit_status == 0
        assert kinds(result) == {("added", case_id) for case_id in new["case_id"]}
    # and the other way: a baseline of today's run holds the new ids; their parameters come back from them
    today = str(tmp_path / "today")
    promote_baseline(second, today)
    result = regression(today, old)
    assert kinds(result) == {("removed", case_id) for case_id in new["case_id"]}
    removed = result.cases.set_index("case_id")
    assert set(removed["second_family"].dropna()) <= {"inet6", "dual"} and set(removed["family"]) == {"inet"}


def test_a_host_that_did_not_complete_is_not_promoted(runs, tmp_path):
    _, first, _, _ = runs
    failed = str(tmp_path / "failed")
    shutil.copytree(first, failed)
    with open(os.path.join(failed, "manifest.json")) as stream:
        manifest = json.load(stream)
    manifest["hosts"][HOST]["status"] = "failed"
    with open(os.path.join(failed, "manifest.json"), "w") as stream:
        json.dump(manifest, stream)
    console = Console(file=io.StringIO(), width=200)
    assert promote_baseline(failed, str(tmp_path / "baselines"), console=console) == 1
    assert not os.listdir(str(tmp_path / "baselines"))
    assert "not promoted" in console.file.getvalue()


@pytest.mark.parametrize("edit, message", [
    (lambda text: text.replace("outcome,", "result,", 1), r"local.csv:1: outcome: missing column"),
    (lambda text: text.replace("bind_matrix,", "bind_matrx,", 1), r"local.csv:2: lab: unknown lab 'bind_matrx'"),
    (lambda text: text.replace("/other_process,", ",", 1), r"local.csv:\d+: case_id: not a case id"),
    (lambda text: text + text.splitlines()[1] + "\n", r"local.csv:\d+: case_id: this case is listed twice"),
    (lambda text: text.replace(",ok,", ",,", 1), r"local.csv:\d+: outcome: empty"),
])
def test_a_broken_baseline_is_a_user_error_naming_file_line_and_field(runs, tmp_path, edit, message):
    _, first, _, _ = runs
    folder = str(tmp_path / "baselines")
    promote_baseline(first, folder)
    path = os.path.join(folder, HOST + ".csv")
    with open(path) as stream:
        text = stream.read()
    with open(path, "w") as stream:
        stream.write(edit(text))
    with pytest.raises(UserError, match=message):
        regression(folder, first)



def test_a_markdown_table_keeps_text_that_looks_like_a_number():
    """gVisor's release, 20221219.0, is a fact's text: tabulate alone would print it as 2.02212e+07."""
    table = markdown_table(pd.DataFrame({"fact": ["os_release"], "current": ["20221219.0"], "changed": [3]}))
    assert table.splitlines()[2] == "| os_release | 20221219.0 |         3 |"


# ------------------------------------------------------------------------------------------------ history

def test_history_shows_the_doctored_run_with_its_release_and_sysctls(runs):
    out, first, second, doctored = runs
    changes = host_history([out, ARCHIVE], HOST)
    assert set(changes["case_id"]) == {STOLEN, MOVED}  # inconclusive, added and removed cases are no change
    assert set(changes["run_id"]) == {"29991231-235959Z"}
    assert set(changes["previous_run_id"]) == {os.path.basename(second)}
    assert set(changes["os_release"]) == {NEW_RELEASE}
    row = changes.set_index("case_id").loc[STOLEN]
    assert (row["before"], row["after"], row["state"]) == ("bind EADDRINUSE", "ok", "LISTEN")
    facts = facts_of(second)
    assert "os_release {} → {}".format(facts["os_release"], NEW_RELEASE) in row["facts_changed"]
    assert "net.ipv4.tcp_tw_reuse {} →".format(facts["sysctls"]["net.ipv4.tcp_tw_reuse"]) in row["facts_changed"]
    console = Console(file=io.StringIO(), width=300)
    assert history([out, ARCHIVE], HOST, console) == 0
    printed = console.file.getvalue()
    assert "## Runs (3)" in printed and "changed from the run before (2)" in printed and NEW_RELEASE in printed


def test_history_reads_the_columnar_copies_as_it_reads_the_logs(runs, tmp_path):
    """history takes each run's rows and facts from results.parquet where it is current (a year of nightly runs
    in seconds): the same changes as from the host logs alone, a run without its copy read from its log."""
    out = runs[0]
    from_copies = host_history([out, ARCHIVE], HOST)
    logs_only = str(tmp_path / "logs-only")
    shutil.copytree(out, logs_only, ignore=shutil.ignore_patterns("results.parquet"))
    from_logs = host_history([logs_only, ARCHIVE], HOST)
    assert len(from_copies) == 2 and from_copies.equals(from_logs)
    assert any(os.path.exists(os.path.join(run_dir, "results.parquet")) for run_dir in run_dirs(out))


def test_history_of_an_unknown_host_is_a_user_error(runs):
    out = runs[0]
    with pytest.raises(UserError, match="--host: no stored run .* has host 'nowhere' \\(hosts: local\\)"):
        host_history(out, "nowhere")


# ------------------------------------------------------------------------------------------------ compare

def seed_cell(state, options):
    return "bind_matrix", case(state, options, options)


# Seed 004: Windows XP lets a second bind steal a LISTENing port with SO_REUSEADDR and reuses FIN_WAIT_2 /
# TIME_WAIT ports by default; Linux refuses the first two, and a default bind in the last two.
XP_VS_LINUX = {seed_cell("LISTEN", "SO_REUSEADDR"): ("ok", "bind EADDRINUSE"),
               seed_cell("LISTEN+ESTABLISHED", "SO_REUSEADDR"): ("ok", "bind EADDRINUSE"),
               seed_cell("FIN_WAIT_2", "none"): ("ok", "bind EADDRINUSE"),
               seed_cell("TIME_WAIT", "none"): ("ok", "bind EADDRINUSE")}


def cells(diff, a, b):
    return {(lab, case_id): (first, second) for lab, case_id, first, second in diff[["lab", "case_id", a, b]]
            .itertuples(index=False)}


def test_compare_this_machine_with_windows_xp_and_freebsd_6_2(runs):
    _, first, _, _ = runs
    table = load_runs([first, SEED])
    assert cells(system_diff(table, "winxp-sp3", HOST), "winxp-sp3", HOST) == XP_VS_LINUX
    assert cells(system_diff(table, "windows", "linux"), "windows", "linux") == XP_VS_LINUX
    assert system_diff(table, HOST, "freebsd-6.2").empty  # seed 004: FreeBSD 6.2 answers as Linux
    text = compare_markdown(table, "windows", HOST)
    assert "8 case(s) have a result on both; 4 differ" in text and "winxp-sp3 (windows XP)" in text
    console = Console(file=io.StringIO(), width=300)
    assert compare([first, SEED], "windows", HOST, console) == 0
    assert "| LISTEN " in console.file.getvalue()


def test_a_family_whose_hosts_disagree_names_them(runs):
    _, _, _, doctored = runs
    diff = system_diff(load_runs([doctored, SEED]), "linux", "windows")
    linux = dict(zip(diff["case_id"], diff["linux"]))
    assert linux[STOLEN] == "bind EADDRINUSE (fc6-linux-2.6.18, rh8-linux-2.4.20, ubuntu804-linux-2.6.24); ok (local)"
    assert linux[case("LISTEN+ESTABLISHED", "SO_REUSEADDR", "SO_REUSEADDR")] == "bind EADDRINUSE"


def test_compare_an_unknown_system_is_a_user_error(runs):
    _, first, _, _ = runs
    with pytest.raises(UserError, match="--a: no host or OS family 'plan9'"):
        system_diff(load_runs([first, SEED]), "plan9", "linux")


def test_the_tasks_as_a_user_runs_them(runs, tmp_path, invoke):
    """./socklab regress / baseline / history / compare: exit statuses a CI job can use, one line for a mistake."""
    out, first, second, doctored = runs
    changed = invoke("regress", "--baseline", second, "--current", doctored, "--out", str(tmp_path / "changed"))
    assert changed.returncode == 1 and STOLEN in changed.stdout and NEW_RELEASE in changed.stdout
    same = invoke("regress", "--baseline", first, "--current", second, "--out", str(tmp_path / "same"))
    assert same.returncode == 0, same.stdout + same.stderr
    promoted = invoke("baseline", second, "--folder", str(tmp_path / "baselines"))
    assert promoted.returncode == 0 and (tmp_path / "baselines" / (HOST + ".csv")).exists()
    against = invoke("regress", "--baseline", str(tmp_path / "baselines"), "--current", doctored,
                     "--out", str(tmp_path / "against"))
    assert against.returncode == 1
    history = invoke("history", "--host", HOST, "--runs", out)
    assert history.returncode == 0 and NEW_RELEASE in history.stdout
    compared = invoke("compare", HOST, "winxp-sp3", "--run", second, "--run", os.path.join(REPO, "archive",
                                                                                          "seed004-2010"))
    assert compared.returncode == 0 and "winxp-sp3" in compared.stdout

    # --json: the documented keys, the same answers as the Markdown
    history = invoke("history", "--host", HOST, "--runs", out, "--json")
    answer = json.loads(history.stdout)
    assert history.returncode == 0 and list(answer) == ["host", "runs", "changes"] and answer["host"] == HOST
    assert [run["run_id"] for run in answer["runs"]] == [os.path.basename(first), os.path.basename(second),
                                                         "29991231-235959Z"]
    assert {change["case_id"] for change in answer["changes"]} == {STOLEN, MOVED}
    (stolen,) = [change for change in answer["changes"] if change["case_id"] == STOLEN]
    assert list(stolen) == ["run_id", "started", "previous_run_id", "lab", "case_id", "parameters", "before",
                            "after", "os_release", "facts_changed"]
    assert (stolen["before"], stolen["after"], stolen["parameters"]["state"]) == ("bind EADDRINUSE", "ok", "LISTEN")
    compared = invoke("compare", "windows", HOST, "--run", first, "--run", SEED, "--json")
    answer = json.loads(compared.stdout)
    assert compared.returncode == 0 and list(answer) == ["a", "b", "systems", "cases_compared", "differences"]
    assert answer["systems"] == {"windows": ["winxp-sp3 (windows XP)"], HOST: [
        label for label in answer["systems"][HOST] if label.startswith(HOST + " (linux ")]}
    assert answer["cases_compared"] == 8
    assert {(row["lab"], row["case_id"]): (row["a"], row["b"]) for row in answer["differences"]} == XP_VS_LINUX
    assert answer["differences"][0]["parameters"]["prober"] == "other_process"
    wrong = invoke("regress", "--baseline", str(tmp_path / "nothing-here"), "--current", second)
    assert wrong.returncode == 2 and len(wrong.stderr.strip().splitlines()) == 1


def test_two_different_hosts_compared_case_by_case(runs, tmp_path, invoke):
    """--pair local=twin: a host against another (a VM with another kernel against this machine)."""
    _, _, second, _ = runs
    with open(os.path.join(second, HOST + ".jsonl")) as stream:
        records = [json.loads(line) for line in stream]
    unbuilt = case("TIME_WAIT", "none", "none")  # a twin that could not build this one: not witnessed there
    for record in records:
        if record.get("case_id") == STOLEN:
            record.update(DOCTORED_CASES[STOLEN])
        if record.get("case_id") == unbuilt:
            record.update(outcome="unsupported", errno=None, witness="", bind="", listen="", detail="not here")
    captured = tmp_path / "twin.jsonl"
    captured.write_text("".join(json.dumps(record) + "\n" for record in records))
    imported = invoke("import", str(captured), "--host", "twin", "--out", str(tmp_path / "runs"))
    assert imported.returncode == 0, imported.stdout + imported.stderr
    (twin_run,) = run_dirs(str(tmp_path / "runs"))
    done = invoke("regress", "--baseline", second, "--current", twin_run, "--pair", HOST + "=twin",
                  "--out", str(tmp_path / "regress"))
    assert done.returncode == 1, done.stdout + done.stderr
    result = regression(second, twin_run, [(HOST, "twin")])
    assert set(zip(result.cases["kind"], result.cases["case_id"])) == {("changed", STOLEN),
                                                                       ("now_unsupported", unbuilt)}
    assert list(result.hosts["host"]) == ["twin (vs {})".format(HOST)]
    wrong = invoke("regress", "--baseline", second, "--current", twin_run, "--pair", "nobody=twin")
    assert wrong.returncode == 2 and "--pair: no host 'nobody'" in wrong.stderr
