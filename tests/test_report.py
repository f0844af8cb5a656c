"""The report from real runs: several runs side by side, the key findings, the meanings of the cells, the Markdown
shaped for a README and the picture, one panel per lab with the cases where systems differ.

The runs are this machine's (bind_matrix over TCP/IPv4 from another process, twice; hijack and runtime_defaults
over IPv4) beside the archived seed 004 run, whose cells are the published ones (Windows XP, Linux 2.4 to 2.6,
FreeBSD 6.2): the findings about those systems are checked against what seed 004 published.
"""
import os
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from analysis import findings, layouts, palette, picture, report
from analysis.labels import system_label
from analysis.report import judged_runs
from formats.rundir import read_manifest
from labs import bind_matrix
from labs.vocabulary import NO_OPTIONS, split_options
from tests.conftest import REPO, socklab_command

WHERE = ["--where", "proto=tcp", "--where", "family=inet", "--where", "prober=other_process"]
EXPECTATIONS = os.path.join(REPO, "expectations")
ARCHIVE = os.path.join(REPO, "archive")
ARCHIVED_LINUX = ("fc6-linux-2.6.18", "rh8-linux-2.4.20", "ubuntu804-linux-2.6.24", "freebsd-6.2")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    for _ in range(2):
        subprocess.run(socklab_command("run-all", "--out", str(out), *WHERE), cwd=REPO, check=True,
                       capture_output=True)
    return sorted(str(path) for path in out.iterdir())


@pytest.fixture(scope="module")
def other_labs(tmp_path_factory):
    """A run of hijack and runtime_defaults over IPv4."""
    out = tmp_path_factory.mktemp("other")
    subprocess.run(socklab_command("run-all", "--out", str(out), "--lab", "hijack", "--lab", "runtime_defaults",
                                   "--where", "family=inet"), cwd=REPO, check=True, capture_output=True)
    (run,) = [str(path) for path in out.iterdir()]
    return run


@pytest.fixture(scope="module")
def judged(two_runs, other_labs):
    """The first bind_matrix run and the other labs' run, beside the archive, judged."""
    return judged_runs([two_runs[0], other_labs], EXPECTATIONS, ARCHIVE)


def test_a_host_in_two_runs_is_two_systems(two_runs):
    judged = judged_runs(two_runs, EXPECTATIONS, ARCHIVE)
    labels = system_label(judged)
    local = labels[judged["host"] == "local"].unique()
    assert len(local) == 2 and all(label.endswith("]") for label in local)
    assert "winxp-sp3 (windows XP)" in set(labels)  # the archive beside them, labelled plainly


# ------------------------------------------------------------------------------------------------ meanings

def test_a_cell_means_what_it_means_for_its_labs_question(judged):
    """A second socket that took a listener's connections, or a UDP socket's datagrams, is a takeover although its
    calls returned ok; a restart refused with EADDRINUSE is refused although the helper's case is ok; a second
    listener beside a live one on an overlapping address is shared; ok where the first socket no longer listens is
    ok."""
    meanings = layouts.cell_meanings(judged)
    hijack = judged["lab"] == "hijack"
    took = hijack & (judged["accepted_by"].isin(["second", "both"]) | judged["received_by"].isin(["second", "both"]))
    assert (took & (judged["proto"] == "udp")).any()
    assert took.any() and (meanings[took] == "takeover").all()
    assert (meanings[hijack & ~took & (judged["outcome"] == "ok")] == "ok").all()
    restart = judged["lab"] == "runtime_defaults"
    assert (meanings[restart & (judged["restart"] == "EADDRINUSE")] == "refused").all()
    assert (meanings[restart & (judged["second_copy"] == "ok")] == "takeover").all()
    seed = (judged["lab"] == "bind_matrix") & (judged["outcome"] == "ok") & (
        judged["first_addr"].astype(str) == judged["second_addr"].astype(str))  # Categoricals: compared as text
    same = seed & (judged["second_family"].fillna("") == "")
    assert (meanings[same & judged["state"].isin(layouts.LISTENING)] == "shared").all()
    assert (meanings[same & (judged["state"] == "TIME_WAIT")] == "ok").all()
    # an IPv6-only second listener beside an IPv4 one cannot meet it, nor ::1 127.0.0.1: ok, not shared; a dual
    # [::] beside 0.0.0.0 meets it
    beside = seed & ~same & judged["state"].isin(layouts.LISTENING) & (judged["family"] == "inet")
    cannot_meet = beside & ((judged["second_family"] == "inet6") | (judged["first_addr"] == "loopback"))
    assert cannot_meet.any() and (meanings[cannot_meet] == "ok").all()
    dual = beside & (judged["second_family"] == "dual") & (judged["first_addr"] == "wildcard")
    assert dual.any() and (meanings[dual] == "shared").all()
    assert set(meanings[judged["outcome"] == "EADDRINUSE"]) <= {"refused"}


def test_the_palette_is_readable(tmp_path):
    """Every meaning's text is readable on its colour (WCAG contrast >= 4.5 : 1), and its colour is its own."""
    def luminance(hex_colour):
        channels = [value / 255 for value in palette.rgb(hex_colour)]
        linear = [value / 12.92 if value <= 0.03928 else ((value + 0.055) / 1.055) ** 2.4 for value in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    for colour in palette.MEANINGS:
        light, dark = sorted((luminance(colour.background), luminance(colour.text)), reverse=True)
        assert (light + 0.05) / (dark + 0.05) >= 4.5, colour.name
    assert len({colour.background for colour in palette.MEANINGS}) == len(palette.MEANINGS)


# ------------------------------------------------------------------------------------------------ findings

def finding_for(found, question, system):
    (question_findings,) = [items for asked, items in found.questions if asked.name == question]
    return [finding for finding in question_findings if system in finding.systems]


def test_restart_findings_say_what_seed_004_published(judged):
    """Windows XP binds a new server over TIME_WAIT with no option; the archived Linux and FreeBSD need
    SO_REUSEADDR on both sockets (seed 004's table)."""
    found = findings.key_findings(judged)
    (xp,) = finding_for(found, "restart", "winxp-sp3 (windows XP)")
    assert xp.text == "A new server process binds the port without any option"
    assert xp.cases[0] == "bind_matrix tcp/inet/TIME_WAIT/none/none/wildcard/wildcard/other_process"
    archived = [label for label in set(system_label(judged)) if label.startswith(ARCHIVED_LINUX)]
    (linux,) = {finding.text for label in archived for finding in finding_for(found, "restart", label)}
    assert linux == ("A new server process binds the port with SO_REUSEADDR on both sockets; without any option: "
                     "EADDRINUSE")


def test_the_restart_finding_names_exactly_the_simplest_pairs_that_bind(judged):
    """This machine's finding: each option pair it names binds over TIME_WAIT, and every pair that binds has at
    least the options of one it names (whatever this kernel answers)."""
    local = system_label(judged)[judged["host"] == "local"].iloc[0]
    (finding,) = [finding for finding in finding_for(findings.key_findings(judged), "restart", local)
                  if finding.text.startswith("A new server")]
    cases = judged[(judged["host"] == "local") & (judged["lab"] == "bind_matrix")
                   & (judged[list(findings.SEED_TIME_WAIT)] == pd.Series(
                       {column: values[0] for column, values in findings.SEED_TIME_WAIT.items()})).all(axis=1)]
    binding = [(set(split_options(first)), set(split_options(second))) for first, second in
               cases.loc[cases["outcome"] == "ok", ["first_opts", "second_opts"]].itertuples(index=False)]
    named = []
    for part in re.split(r"; or ", finding.text.split(" with ", 1)[-1].split("; without")[0]):
        both = re.fullmatch(r"(\S+) on both sockets", part)
        assert both, part  # this kernel's pairs are the same option on both sockets
        named.append(({both.group(1)}, {both.group(1)}) if both.group(1) != NO_OPTIONS else (set(), set()))
    assert named and all(pair in binding for pair in named)
    assert all(any(first >= low and second >= high for low, high in named) for first, second in binding)
    assert finding.case_count == len(binding)


def test_listener_and_difference_findings_from_seed_004(judged):
    found = findings.key_findings(judged)
    (xp,) = finding_for(found, "listener", "winxp-sp3 (windows XP)")
    assert xp.meaning == "shared" and "beside a listener with SO_REUSEADDR on both sockets" in xp.text
    (differences,) = [items for question, items in found.questions if question.name == "differences"]
    (windows_linux,) = [finding for finding in differences if "linux and windows" in finding.text]
    # seed 004: Windows XP lets a second SO_REUSEADDR bind beside its listener, and reuses FIN_WAIT_2 and
    # TIME_WAIT ports by default; Linux refuses them (as compare's test checks case by case)
    assert windows_linux.text.startswith("linux and windows differ in 4 of the 8 cases both measured")
    assert "options SO_REUSEADDR in LISTEN, LISTEN+ESTABLISHED: linux bind EADDRINUSE, windows ok" in \
        windows_linux.text
    assert "options none in FIN_WAIT_2, TIME_WAIT: linux bind EADDRINUSE, windows ok" in windows_linux.text


def test_the_listener_finding_of_this_machine_is_its_hijack_lab(judged):
    """Where hijack ran, its takeovers of a listener (TCP) answer the question (not bind_matrix's), per prober."""
    in_lab = (judged["lab"] == "hijack") & (judged["proto"] == "tcp")
    systems = system_label(judged)
    local = systems[in_lab].iloc[0]
    answers = finding_for(findings.key_findings(judged), "listener", local)
    hijack = judged[in_lab & (systems == local) & ~judged["outcome"].isin(["inconclusive", "error", "unsupported"])]
    for prober in hijack["prober"].unique():
        mine = hijack[hijack["prober"] == prober]
        took = mine[mine["accepted_by"].isin(["second", "both"])]
        (answer,) = [finding for finding in answers if finding.text.startswith(
            findings.sentence(findings.SUBJECTS[prober]))]
        assert answer.badge == ("yes" if len(took) else "no")
        assert answer.case_count == (len(took) if len(took) else len(mine))
        assert answer.cases[0].startswith("hijack ")


def test_verdicts_and_every_mismatch_with_its_source(judged):
    judged = judged.copy()
    wrong = judged.index[judged["verdict"] == "match"][:3]
    judged.loc[wrong, "verdict"] = "mismatch"  # not a finding: three cases marked, so that some are listed
    found = findings.key_findings(judged)
    (verdicts,) = [items for question, items in found.questions if question.name == "verdicts"]
    counts = judged["verdict"].value_counts()
    documented = counts["match"] + counts["mismatch"]
    measured = documented + counts.get("undocumented", 0)
    assert "a source documents {:.0f}% of the measured cases ({:,} of {:,})".format(
        100 * documented / measured, documented, measured) in verdicts[0].text
    listed = [finding for finding in verdicts if finding.badge == "✗"]
    assert sum(finding.case_count for finding in listed) == 3
    for source in judged.loc[wrong, "source"].unique():
        assert any(finding.text.endswith(": {}.".format(source)) for finding in listed)


def test_the_verdict_tables_give_the_documented_share_per_system_and_lab(judged, tmp_path):
    """Issue 16: beside the verdict counts, per host (Markdown: the run's) or system (HTML: with the archive) and
    lab, the share of the measured cases a source documents: match and mismatch among those and undocumented."""
    run_id = judged["run_id"].iloc[0]
    path, _, _ = report.write(judged, REPO, {"run_id": run_id, "started": "", "ended": "", "agent_version": "",
                                             "hosts": {"local": {"status": "completed", "cases": 1, "reason": ""}}},
                              str(tmp_path))
    text = open(path, encoding="utf-8").read()
    table = text[text.index("## Verdicts"):text.index("## Mismatches")]
    header, _, *rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()
                        if line.startswith("|")]
    assert header[:2] == ["host", "lab"] and header[-1] == "documented"
    mine = judged[judged["run_id"] == run_id]
    for row in rows:
        verdicts = mine.loc[(mine["host"] == row[0]) & (mine["lab"] == row[1]), "verdict"].value_counts()
        documented = verdicts.get("match", 0) + verdicts.get("mismatch", 0)
        assert row[-1] == "{:.0%}".format(documented / (documented + verdicts.get("undocumented", 0)))
    assert {row[1] for row in rows} == set(mine["lab"])
    page = open(os.path.join(str(tmp_path), "report.html"), encoding="utf-8").read()
    verdicts = page[page.index("<h2>Verdicts per system and lab</h2>"):page.index('<h2 id="mismatches">')]
    assert re.search(r"<th>system</th>\s*<th>lab</th>.*<th>documented</th>", verdicts, re.S)
    assert verdicts.count("<tr>") - 1 == judged.groupby(["host", "run_id", "lab"]).ngroups


def test_the_judged_table_names_each_source_once(judged, tmp_path):
    """judged.csv holds every judged row with its source as a number, sources.csv each source's text once: joined,
    they give back every row's source, and an undocumented row has none."""
    report.write(judged, REPO, {"run_id": "test", "started": "", "ended": "", "agent_version": "",
                                "hosts": {"local": {"status": "completed", "cases": 1, "reason": ""}}}, str(tmp_path))
    table = pd.read_csv(str(tmp_path / "judged.csv"), dtype=str, keep_default_na=False)
    sources = pd.read_csv(str(tmp_path / "sources.csv"), dtype=str, keep_default_na=False)
    assert "source" not in table.columns and len(table) == len(judged)
    assert sources["source_id"].is_unique and sources["source"].is_unique and (sources["source"] != "").all()
    text = dict(zip(sources["source_id"], sources["source"]))
    joined = table["source_id"].map(lambda number: text[number] if number else "")
    assert list(joined) == list(judged["source"].astype(str))
    assert (table.loc[table["verdict"] == "undocumented", "source_id"] == "").all()
    assert set(joined) - {""} == set(sources["source"])


# ------------------------------------------------------------------------------------------------ Markdown

def test_the_markdown_answers_first_and_fits_a_readme(judged, tmp_path):
    path, _, _ = report.write(judged, REPO, {"run_id": "test", "started": "", "ended": "", "agent_version": "",
                                             "hosts": {"local": {"status": "completed", "cases": 1, "reason": ""}}},
                              str(tmp_path))
    text = open(path, encoding="utf-8").read()
    assert text.index("## Key findings") < text.index("## Verdicts") < text.index("## Lab ")
    assert "Can a server restart at once on its port" in text
    rows = [line for line in text.splitlines() if line.startswith("|")]
    assert rows and max(len(line) for line in rows) <= report.MAX_WIDTH
    # hijack: a table per family and prober, one row per option pair, a column per address pair
    section = text[text.index("## Lab hijack"):text.index("## Lab runtime_defaults")]
    tables = re.findall(r"\n\n(\| options \(first → second\) .*?)\n\n", section + "\n\n", re.S)
    assert tables
    pairs = judged.loc[judged["lab"] == "hijack", ["first_opts", "second_opts"]].drop_duplicates()
    for table in tables:
        lines = table.splitlines()
        assert len(lines) - 2 == len(pairs)
        assert lines[0].split("|")[2].strip() == "wildcard"
    hijack_rows = (judged["lab"] == "hijack").sum()
    assert hijack_rows > report.FOLD_ROWS and "<details open><summary>" in section  # long: folded, first open


def test_the_markdown_table_is_cut_when_too_wide():
    frame = pd.DataFrame({"column {}".format(number): ["x" * 30] for number in range(10)},
                         index=pd.Index(["row"], name="label"))
    tables = report.markdown_table(frame).split("\n\n")
    assert len(tables) > 1 and all(table.splitlines()[0].startswith("| label ") for table in tables)
    assert all(max(len(line) for line in table.splitlines()) <= report.MAX_WIDTH for table in tables)
    assert sum(table.splitlines()[0].count("column ") for table in tables) == 10


# ------------------------------------------------------------------------------------------------ picture

def test_the_picture_has_a_panel_per_lab_and_marks_where_systems_differ(judged, tmp_path):
    panels = picture.panels(judged)
    assert [panel.lab for panel in panels] == ["bind_matrix", "hijack", "runtime_defaults"]
    panel = panels[0]
    in_lab = judged["lab"] == "bind_matrix"
    assert set(panel.systems) == set(system_label(judged)[in_lab])
    assert panel.codes.shape == (len(panel.systems), judged.loc[in_lab, "case_id"].nunique())
    states = list(dict.fromkeys(panel.cases["state"]))
    assert states == [state for state in bind_matrix.TCP_STATES if state in states]  # groups in lifecycle order
    # seed 004: Windows XP lets a second SO_REUSEADDR socket bind a LISTENing port, Linux refuses
    xp, local = panel.systems.index("winxp-sp3 (windows XP)"), next(
        number for number, label in enumerate(panel.systems) if label.startswith("local"))
    stolen = panel.cases.index[panel.cases["case_id"] ==
                               "tcp/inet/LISTEN/SO_REUSEADDR/SO_REUSEADDR/wildcard/wildcard/other_process"][0]
    assert panel.differ[stolen] and panel.codes[xp, stolen] == palette.NAMES.index("shared")
    assert panel.codes[local, stolen] == palette.NAMES.index("refused")
    assert int(panel.differ.sum()) >= 4 and not panel.differ[~panel.shared].any()
    png, svg = picture.write(judged, str(tmp_path))
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n" and os.path.getsize(png) > 10000
    assert "<svg" in open(svg, encoding="utf-8").read(500)
    if os.environ.get("SOCKLAB_KEEP_PICTURE"):  # to look at it: SOCKLAB_KEEP_PICTURE=path
        shutil.copy(png, os.environ["SOCKLAB_KEEP_PICTURE"])


def test_a_group_shows_each_systems_mix_whole():
    """Drawn by groups, a system's cell is a bar of its cases' meanings in proportion: one case measured fills it,
    a case not measured takes no room."""
    counts = np.zeros((3, picture.DIFFER + 1), dtype=np.int64)
    counts[0, palette.NAMES.index("ok")] = 3
    counts[0, palette.NAMES.index("refused")] = 1
    counts[1, palette.NAMES.index("shared")] = 1
    bars = picture.proportion_bars(counts, 8)
    assert bars[0].tolist() == [palette.NAMES.index("ok")] * 6 + [palette.NAMES.index("refused")] * 2
    assert bars[1].tolist() == [palette.NAMES.index("shared")] * 8
    assert bars[2].tolist() == [picture.NONE] * 8
