"""Expectation tables: the shipped ones load, matching picks the most specific row, ties and bad files are one-line
errors naming file, line and field, and judge() gives every verdict, at the speed a million-row run needs."""
import itertools
import os
import time

import numpy as np
import pandas as pd
import pytest

from analysis.expectations import VERDICTS, judge, load_expectations
from formats.table import COLUMNS, load as load_run
from formats.errors import UserError
import labs
from labs import LABS
from labs import bind_matrix
from tests.conftest import REPO

HEADER = "lab: bind_matrix\n"


def write(tmp_path, text, name="table.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def case(**values):
    """One result row of lab bind_matrix: a Linux cell that no shipped default constrains, changed by `values`."""
    row = dict(run_id="r", host="h", os_family="linux", os_release="6.18.44-fc-v669", os_version="#1 SMP",
               lab="bind_matrix", outcome="ok", errno=None, witness="", detail="", proto="tcp", family="inet",
               state="LISTEN", first_opts="none", second_opts="none", first_addr="wildcard",
               second_addr="wildcard", prober="other_process", setsockopt="ok", bind="ok", listen="ok")
    row.update(values)
    row["case_id"] = labs.case_id(bind_matrix, row)
    return row


def frame(*rows):
    return pd.DataFrame(list(rows)).reindex(columns=COLUMNS)


# --------------------------------------------------------------------------------------------- the shipped tables

def test_the_shipped_expectations_load_and_every_row_has_a_source():
    table = load_expectations()
    names = sorted(os.path.basename(path) for path in table.files)
    assert {"freebsd.yaml", "linux.yaml", "seed004.yaml", "windows.yaml"} <= set(names)
    assert {os.path.splitext(name)[0] for name in names} >= set(LABS) - {"bind_matrix"}  # a table for every lab
    rules = table.to_frame()
    assert len(rules) == len(table) > 0
    assert rules["source"].str.len().min() > 20
    print("\n" + rules.groupby("file").size().to_string())


def test_seed_004_archived_run_matches_its_own_table():
    judged = judge(load_run(REPO + "/archive/seed004-2010"), load_expectations())
    assert set(judged["verdict"]) == {"match"}
    assert judged["source"].str.contains("seed 004").all()


# Microsoft's same-user matrix as SOURCES.md transcribes it: second bind (row) against first bind (column).
MS_COLUMNS = ["def·W", "def·S", "RA·W", "RA·S", "EX·W", "EX·S"]
MS_MATRIX = {
    "def·W": ["INUSE", "SUCCESS", "INUSE", "SUCCESS", "INUSE", "SUCCESS"],
    "def·S": ["CHECK", "INUSE", "CHECK", "DENIED", "DENIED", "INUSE"],
    "RA·W": ["DENIED", "SUCCESS", "SUCCESS", "SUCCESS", "DENIED", "SUCCESS"],
    "RA·S": ["CHECK", "DENIED", "SUCCESS", "SUCCESS", "DENIED", "DENIED"],
    "EX·W": ["INUSE", "INUSE", "INUSE", "INUSE", "INUSE", "INUSE"],
    "EX·S": ["CHECK", "INUSE", "CHECK", "INUSE", "DENIED", "INUSE"],
}
MS_OPTS = {"def": "none", "RA": "SO_REUSEADDR", "EX": "SO_EXCLUSIVEADDRUSE"}
MS_ADDR = {"W": "wildcard", "S": "loopback"}
MS_OUTCOME = {"INUSE": "EADDRINUSE", "DENIED": "EACCES", "SUCCESS": "ok", "CHECK": "ok"}


@pytest.mark.parametrize("family", ["inet", "inet6", "dual"])
def test_the_shipped_windows_table_holds_microsofts_same_user_matrix(family):
    rows, wanted = [], []
    for second, outcomes in MS_MATRIX.items():
        for first, outcome in zip(MS_COLUMNS, outcomes):
            (o1, a1), (o2, a2) = first.split("·"), second.split("·")
            rows.append(case(os_family="windows", os_release="10", os_version="10.0.22631", family=family,
                             state="BOUND", first_opts=MS_OPTS[o1], first_addr=MS_ADDR[a1],
                             second_opts=MS_OPTS[o2], second_addr=MS_ADDR[a2], prober="other_process"))
            wanted.append("bind=" + MS_OUTCOME[outcome])
    judged = judge(frame(*rows), load_expectations())
    assert list(judged["expected"]) == wanted
    assert judged["source"].str.contains("Sharing Transport Addresses").all()


# ------------------------------------------------------------------------------------------ matching and ranking

SPECIFICITY = HEADER + """\
defaults:
  os_family: linux
rules:
  - when: {proto: tcp}
    expect: {bind: EADDRINUSE}
    source: "general row"
  - when: {proto: tcp, state: TIME_WAIT}
    expect: {bind: ok}
    source: "state row"
  - when: {proto: tcp, state: TIME_WAIT, first_opts: none, second_opts: none}
    expect: {bind: EADDRINUSE}
    source: "options row"
  - when: {proto: tcp, state: TIME_WAIT, os_release: ">=6.0"}
    expect: {outcome: ok}
    source: "release row"
"""


@pytest.mark.parametrize("values, source, expected", [
    (dict(state="LISTEN", os_release="5.10.0"), "general row", "bind=EADDRINUSE"),
    (dict(state="TIME_WAIT", os_release="5.10.0", first_opts="SO_REUSEADDR"), "state row", "bind=ok"),
    (dict(state="TIME_WAIT", os_release="5.10.0"), "options row", "bind=EADDRINUSE"),
    (dict(state="TIME_WAIT", os_release="6.18.44-fc-v669"), "options row", "bind=EADDRINUSE"),
    (dict(state="TIME_WAIT", os_release="6.1.0", first_opts="SO_REUSEADDR"), "release row", "outcome=ok"),
    (dict(state="TIME_WAIT", os_family="freebsd"), "", ""),
])
def test_the_most_specific_matching_row_decides(tmp_path, values, source, expected):
    judged = judge(frame(case(**values)), load_expectations(write(tmp_path, SPECIFICITY)))
    assert (judged.loc[0, "source"], judged.loc[0, "expected"]) == (source, expected)


@pytest.mark.parametrize("condition, values, matches", [
    # ranges on the leading numeric parts of os_release / os_version
    ("os_release: '>=3.9'", dict(os_release="6.18.44-fc-v669"), True),
    ("os_release: '>=3.9'", dict(os_release="3.9"), True),
    ("os_release: '>=3.9'", dict(os_release="3.8.13"), False),
    ("os_release: '<2.6.30'", dict(os_release="2.6.18"), True),
    ("os_release: '<2.6.30'", dict(os_release="2.6.30-rc1"), False),
    ("os_release: '>=2.4,<2.7'", dict(os_release="2.6.24"), True),
    ("os_release: '>=2.4,<2.7'", dict(os_release="2.7"), False),
    ("os_release: '>=2.4,<2.7'", dict(os_release="2.3.99"), False),
    ("os_release: '>6.2'", dict(os_release="6.2-RELEASE"), False),
    ("os_release: '==6.2'", dict(os_release="6.2-RELEASE"), True),
    ("os_release: '<=14.1'", dict(os_release="14.1-RELEASE-p3"), True),
    ("os_version: '>=5.1,<5.2'", dict(os_version="5.1.2600"), True),
    ("os_version: '>=5.1,<5.2'", dict(os_version="5.2.3790"), False),
    ("os_release: '>=3.9'", dict(os_release="XP"), False),
    # exact values, lists (any of), ranges inside lists
    ("os_release: XP", dict(os_release="XP"), True),
    ("os_release: 10", dict(os_release="10"), True),
    ("os_release: [XP, '>=10']", dict(os_release="11"), True),
    ("os_release: [XP, '>=10']", dict(os_release="7"), False),
    ("state: [FIN_WAIT_2, TIME_WAIT]", dict(state="TIME_WAIT"), True),
    ("state: [FIN_WAIT_2, TIME_WAIT]", dict(state="CLOSE_WAIT"), False),
    ("first_opts: SO_REUSEADDR+SO_REUSEPORT", dict(first_opts="SO_REUSEADDR+SO_REUSEPORT"), True),
    ("first_opts: SO_REUSEADDR+SO_REUSEPORT", dict(first_opts="SO_REUSEPORT"), False),
    ("host: lab-vm-3", dict(host="lab-vm-3"), True),
    # a column left out matches any value, a missing one included
    ("proto: tcp", dict(state="CLOSE_WAIT", prober="other_user", os_release=None), True),
])
def test_lists_ranges_and_wildcards_match_as_documented(tmp_path, condition, values, matches):
    text = HEADER + "rules:\n  - when: {%s}\n    expect: {bind: ok}\n    source: \"a test row\"\n" % condition
    judged = judge(frame(case(**values)), load_expectations(write(tmp_path, text)))
    assert judged.loc[0, "verdict"] == ("match" if matches else "undocumented")


def test_rows_apply_only_to_results_of_their_lab(tmp_path):
    text = HEADER + "rules:\n  - when: {proto: tcp}\n    expect: {outcome: ok}\n    source: \"a test row\"\n"
    judged = judge(frame(case(), case(lab="hijack")), load_expectations(write(tmp_path, text)))
    assert list(judged["verdict"]) == ["match", "undocumented"]


def test_files_and_directories_load_together(tmp_path):
    folder = tmp_path / "tables"
    (folder / "more").mkdir(parents=True)
    write(folder, HEADER + "rules:\n  - when: {state: LISTEN}\n    expect: {bind: ok}\n    source: \"one row\"\n")
    write(folder / "more", HEADER + "rules:\n  - when: {state: BOUND}\n    expect: {bind: ok}\n"
                           "    source: \"row two\"\n", name="b.yaml")
    single = write(tmp_path, HEADER + "rules:\n  - when: {state: TIME_WAIT}\n    expect: {bind: ok}\n"
                             "    source: \"row three\"\n", name="c.yaml")
    assert len(load_expectations([str(folder), single])) == 3


# ------------------------------------------------------------------------------------------------------- ties

TIE = HEADER + """\
rules:
  - when: {os_family: linux, os_release: ">=3.0", state: TIME_WAIT}
    expect: {bind: ok}
    source: "first source"
  - when: {os_family: linux, os_release: "<4.0", state: [LISTEN, TIME_WAIT]}
    expect: {bind: EADDRINUSE}
    source: "second source"
"""


def test_a_tie_that_disagrees_is_rejected_at_load_naming_file_line_and_field(tmp_path):
    path = write(tmp_path, TIE)
    with pytest.raises(UserError) as raised:
        load_expectations(path)
    message = str(raised.value)
    assert message.startswith(path + ":7: rules[1].expect: ties with the rule at " + path + ":3 ")
    assert "bind=EADDRINUSE" in message and "bind=ok" in message and "\n" not in message


@pytest.mark.parametrize("first, second", [
    ("os_release: '>=4.0'", "os_release: '<4.0'"),             # ranges that do not overlap
    ("os_release: '>=4.0'", "os_release: '<=3.99'"),
    ("state: TIME_WAIT", "state: LISTEN"),                      # disjoint values
    ("os_release: '>=3.0', proto: tcp", "os_release: '<4.0', proto: udp"),
    ("os_release: '>=3.0'", "family: inet, proto: tcp"),        # different specificity does not tie
], ids=["ranges", "touching-ranges", "values", "one-column-apart", "specificity"])
def test_rows_that_cannot_meet_may_disagree(tmp_path, first, second):
    text = HEADER + ("rules:\n  - when: {%s}\n    expect: {bind: ok}\n    source: \"doc a\"\n"
                     "  - when: {%s}\n    expect: {bind: EACCES}\n    source: \"doc b\"\n") % (first, second)
    assert len(load_expectations(write(tmp_path, text))) == 2


def test_a_tie_that_agrees_loads_and_cites_both_sources(tmp_path):
    text = TIE.replace("{bind: EADDRINUSE}", "{bind: ok}")
    judged = judge(frame(case(state="TIME_WAIT", os_release="3.10.0")), load_expectations(write(tmp_path, text)))
    assert judged.loc[0, "source"] == "first source | second source"


def test_ties_are_checked_across_files(tmp_path):
    first, second = TIE.split("  - when: {os_family: linux, os_release: \"<4.0\"")
    write(tmp_path, first, name="a.yaml")
    write(tmp_path, HEADER + "rules:\n  - when: {os_family: linux, os_release: \"<4.0\"" + second, name="b.yaml")
    with pytest.raises(UserError, match=r"b\.yaml:4: rules\[0\]\.expect: ties with the rule at .*a\.yaml:3 "):
        load_expectations(str(tmp_path))


# ---------------------------------------------------------------------------------------------------- bad files

RULE = "rules:\n  - when: {%s}\n    expect: {%s}\n    source: %s\n"
BAD = [
    ("unknown column", HEADER + RULE % ("protocol: tcp", "bind: ok", "x y"),
     ":3: rules[0].when.protocol: unknown column 'protocol'"),
    ("unknown value", HEADER + RULE % ("state: TIME-WAIT", "bind: ok", "x y"),
     ":3: rules[0].when.state: unknown value 'TIME-WAIT' for state"),
    ("unknown value in a list", HEADER + "rules:\n  - when:\n      prober:\n        - other_process\n"
     "        - other_host\n    expect: {bind: ok}\n    source: x y\n",
     ":6: rules[0].when.prober: unknown value 'other_host' for prober"),
    ("options out of order", HEADER + RULE % ("first_opts: SO_REUSEPORT+SO_REUSEADDR", "bind: ok", "x y"),
     ":3: rules[0].when.first_opts: unknown option set 'SO_REUSEPORT+SO_REUSEADDR'"),
    ("unknown option", HEADER + RULE % ("second_opts: SO_REUSE", "bind: ok", "x y"),
     ":3: rules[0].when.second_opts: unknown option set 'SO_REUSE'"),
    ("unknown os family", HEADER + RULE % ("os_family: windoze", "bind: ok", "x y"),
     ":3: rules[0].when.os_family: unknown OS family 'windoze'"),
    ("unknown outcome", HEADER + RULE % ("state: LISTEN", "bind: EADDRINUS", "x y"),
     ":4: rules[0].expect.bind: unknown outcome 'EADDRINUS'"),
    ("unknown step", HEADER + RULE % ("state: LISTEN", "connect: ok", "x y"),
     ":4: rules[0].expect.connect: unknown column 'connect'"),
    ("bad range", HEADER + RULE % ("os_release: '>=3.x'", "bind: ok", "x y"),
     ":3: rules[0].when.os_release: bad range '>=3.x'"),
    ("bad range operator", HEADER + RULE % ("os_release: '=>3.9'", "bind: ok", "x y"),
     ":3: rules[0].when.os_release: bad range '=>3.9'"),
    ("empty range", HEADER + RULE % ("os_version: '>=5.2,<5.1'", "bind: ok", "x y"),
     ":3: rules[0].when.os_version: bad range '>=5.2,<5.1': no version is in it"),
    ("unquoted version", HEADER + RULE % ("os_version: 5.1", "bind: ok", "x y"),
     ":3: rules[0].when.os_version: 5.1 is read as a number"),
    ("missing source", HEADER + "rules:\n  - when: {state: LISTEN}\n    expect: {bind: ok}\n",
     ":3: rules[0].source: a rule needs `source:`"),
    ("empty source", HEADER + RULE % ("state: LISTEN", "bind: ok", "''"),
     ":5: rules[0].source: every rule needs a source"),
    ("unknown source id", HEADER + "sources:\n  man: socket(7)\n" + RULE % ("state: LISTEN", "bind: ok", "mann"),
     ":7: rules[0].source: unknown source id 'mann' (defined: man)"),
    ("missing expect", HEADER + "rules:\n  - when: {state: LISTEN}\n    source: x y\n",
     ":3: rules[0].expect: a rule needs `expect:`"),
    ("unknown rule key", HEADER + "rules:\n  - when: {state: LISTEN}\n    expects: {bind: ok}\n    source: x y\n",
     ":4: rules[0].expects: unknown key 'expects'"),
    ("unknown lab", "lab: bind_matrx\n" + RULE % ("state: LISTEN", "bind: ok", "x y"),
     ":1: lab: unknown or missing lab 'bind_matrx'"),
    ("unknown column in defaults", HEADER + "defaults:\n  os: linux\n" + RULE % ("state: LISTEN", "bind: ok", "x y"),
     ":3: defaults.os: unknown column 'os'"),
    ("YAML syntax error", HEADER + "rules:\n  - when: {state: LISTEN\n    expect: {bind: ok}\n",
     ":4: not valid YAML"),
    ("not a mapping", "- lab: bind_matrix\n", ":1: an expectation file is a mapping"),
    ("empty file", "", ": empty expectation file"),
]


@pytest.mark.parametrize("text, message", [(text, message) for _, text, message in BAD],
                         ids=[name for name, _, _ in BAD])
def test_a_bad_file_is_one_line_naming_file_line_and_field(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(UserError) as raised:
        load_expectations(path)
    assert str(raised.value).startswith(path + message)
    assert "\n" not in str(raised.value)


def test_a_missing_path_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="nowhere.yaml: no such file or directory"):
        load_expectations(str(tmp_path / "nowhere.yaml"))


# ------------------------------------------------------------------------------------------------------ judge()

VERDICT_TABLE = HEADER + """\
defaults:
  os_family: linux
sources:
  doc: "A document"
rules:
  - when: {state: TIME_WAIT, first_opts: SO_REUSEADDR, second_opts: SO_REUSEADDR}
    expect: {bind: ok, listen: ok}
    source: doc
    section: "section 2"
  - when: {state: LISTEN}
    expect: {bind: [EADDRINUSE, EACCES]}
    source: doc
"""
REUSE = dict(state="TIME_WAIT", first_opts="SO_REUSEADDR", second_opts="SO_REUSEADDR")
VERDICT_ROWS = [
    (case(**REUSE), "match", "bind=ok, listen=ok"),
    (case(outcome="EADDRINUSE", bind="ok", listen="EADDRINUSE", **REUSE), "mismatch", "bind=ok, listen=ok"),
    (case(outcome="EADDRINUSE", bind="EADDRINUSE", listen=None), "match", "bind=EADDRINUSE|EACCES"),
    (case(outcome="EACCES", bind="EACCES", listen=None), "match", "bind=EADDRINUSE|EACCES"),
    (case(outcome="ok", bind="ok"), "mismatch", "bind=EADDRINUSE|EACCES"),
    (case(state="CLOSE_WAIT"), "undocumented", ""),
    (case(os_family="windows", os_release="11", os_version="10.0.26100"), "undocumented", ""),
    (case(outcome="inconclusive", bind=None, listen=None, **REUSE), "inconclusive", "bind=ok, listen=ok"),
    (case(outcome="unsupported", setsockopt="ENOPROTOOPT", bind=None, listen=None), "unsupported",
     "bind=EADDRINUSE|EACCES"),
    (case(outcome="error", bind=None, listen=None, state="BOUND"), "error", ""),
]


def test_judge_gives_each_verdict_on_a_small_results_frame(tmp_path):
    results = frame(*[row for row, _, _ in VERDICT_ROWS])
    results.index = [10 * i for i in range(len(results))]  # judge() keeps the caller's index
    judged = judge(results, load_expectations(write(tmp_path, VERDICT_TABLE)))
    assert list(judged["verdict"]) == [verdict for _, verdict, _ in VERDICT_ROWS]
    assert list(judged["expected"]) == [expected for _, _, expected in VERDICT_ROWS]
    assert set(judged["verdict"]) == set(VERDICTS)
    assert list(judged.index) == list(results.index)
    assert judged.loc[0, "source"] == "A document, section 2" and judged.loc[50, "source"] == ""
    assert list(judged.columns) == list(results.columns) + ["verdict", "expected", "source"]
    assert "verdict" not in results.columns  # a copy: the caller's frame is left alone


def test_judge_of_an_empty_frame_adds_the_columns(tmp_path):
    judged = judge(frame(), load_expectations(write(tmp_path, VERDICT_TABLE)))
    assert len(judged) == 0 and {"verdict", "expected", "source"} <= set(judged.columns)


def test_judge_of_a_million_rows(tmp_path):
    """A million rows made by repeating the whole Linux matrix (7,344 cases) with mixed outcomes."""
    host = {"options": ["SO_REUSEADDR", "SO_REUSEPORT"]}
    outcomes = itertools.cycle(["ok", "EADDRINUSE", "EACCES", "ok", "inconclusive", "EADDRINUSE", "error"])
    releases = itertools.cycle(["6.18.44-fc-v669", "5.15.0-91-generic", "2.6.24"])
    rows = []
    same_family = (params for params in bind_matrix.cases(host) if not params["second_family"])
    for params, outcome, release in zip(same_family, outcomes, releases):
        reached = outcome not in ("inconclusive", "error")
        rows.append(case(os_release=release, outcome=outcome, bind=outcome if reached else None,
                         listen="ok" if outcome == "ok" else None, **params))
    base = frame(*rows)
    results = pd.concat([base] * (1_000_000 // len(base) + 1), ignore_index=True).iloc[:1_000_000]
    table = load_expectations()
    started = time.perf_counter()
    judged = judge(results, table)
    elapsed = time.perf_counter() - started
    print("\njudge() of {:,} rows ({:,} distinct cases, {} rules): {:.2f} s".format(
        len(results), len(base), len(table), elapsed))
    print(judged["verdict"].value_counts().to_string())
    assert len(judged) == 1_000_000 and set(judged["verdict"]) <= set(VERDICTS)
    # the same case gets the same verdict wherever it repeats
    first, again = judged.iloc[:len(base)], judged.iloc[len(base):2 * len(base)]
    assert np.array_equal(first["verdict"].to_numpy(), again["verdict"].to_numpy())


# ------------------------------------------------------------------------------- gates corrected in issue 16

def bind_timewait_case(**values):
    return case(state="TIME_WAIT", first_addr="loopback", second_addr="loopback", bind="EADDRINUSE", listen="",
                outcome="EADDRINUSE", **values)


def test_a_debian_6_1_host_gets_the_bind_timewait_row_by_its_upstream_release():
    """Debian 12's 6.1.0-28-amd64 is upstream 6.1.119 (tests/test_hostfacts.py): past 6.1.5, which put TIME_WAIT
    sockets in bhash2, so the selftest's row decides; 6.1.2 (before that fix) falls back to socket(7)'s rows."""
    judged = judge(frame(bind_timewait_case(os_release="6.1.0-28-amd64", upstream_release="6.1.119"),
                         bind_timewait_case(os_release="6.1.0-1-amd64", upstream_release="6.1.2"),
                         bind_timewait_case(os_release="5.10.0-30-amd64", upstream_release="5.10.218")),
                   load_expectations())
    assert list(judged["verdict"]) == ["match", "match", "match"]
    assert "bind_timewait.c" in judged["source"][0] and "bind_timewait.c" in judged["source"][2]
    assert "bind_timewait.c" not in judged["source"][1]


def test_bind_wildcard_rows_have_no_version_gate():
    """The same-family bind_wildcard rows used to start at 6.8, the tree that carries the test; the behaviour is
    older (inet_csk_bind_conflict at 5.18), so a 5.10 host gets them."""
    judged = judge(frame(case(os_release="5.10.0-30-amd64", upstream_release="5.10.218", state="BOUND",
                              family="dual", first_addr="loopback", second_addr="v4mapped", bind="ok", listen="ok")),
                   load_expectations())
    assert judged["verdict"][0] == "match"
    assert "bind_wildcard.c" in judged["source"][0]


# --------------------------------------------------------------------- FreeBSD and macOS from their bind code

def bsd_case(os_family, os_release, bind, listen="", **values):
    """A bind_matrix result row of a FreeBSD or macOS host (no such host runs here: the rows are synthetic)."""
    return case(os_family=os_family, os_release=os_release, upstream_release=os_release.split("-")[0],
                os_version="", bind=bind, listen=listen, outcome="ok" if bind == "ok" else bind, **values)


def expected_steps(expected):
    """The bind and listen outcomes a result needs to match an `expected` text ("bind=ok, listen=ok")."""
    steps = dict(item.split("=") for item in expected.split(", ")) if expected else {"bind": "ok"}
    return steps["bind"], steps.get("listen", "")


FREEBSD_CELLS = [
    # no reuse option on the new socket: the wildcard lookup finds the server end's TIME_WAIT
    (dict(state="TIME_WAIT", first_addr="loopback", second_addr="loopback"), "bind=EADDRINUSE"),
    (dict(state="FIN_WAIT_2", family="inet6"), "bind=EADDRINUSE"),
    # a reuse option on the new socket alone passes connections, for another user too (TCP)
    (dict(state="CLOSE_WAIT", second_opts="SO_REUSEADDR", prober="other_user"), "bind=ok, listen=ok"),
    # ... but not a connected UDP socket of another user
    (dict(proto="udp", state="ESTABLISHED", second_opts="SO_REUSEPORT", prober="other_user"), "bind=EADDRINUSE"),
    # the same address: SO_REUSEADDR on both does not share it, SO_REUSEPORT_LB on both does
    (dict(state="LISTEN", first_opts="SO_REUSEADDR", second_opts="SO_REUSEADDR"), "bind=EADDRINUSE"),
    (dict(state="LISTEN", first_opts="SO_REUSEPORT_LB", second_opts="SO_REUSEPORT_LB"), "bind=ok, listen=ok"),
    # a loopback socket beside a wildcard listener, with a reuse option on the new socket
    (dict(state="LISTEN", second_addr="loopback", second_opts="SO_REUSEADDR"), "bind=ok, listen=ok"),
    # dual-stack ::1 and ::ffff:127.0.0.1 never meet
    (dict(family="dual", state="BOUND", first_addr="loopback", second_addr="v4mapped"), "bind=ok, listen=ok"),
    # another user on the wildcard with SO_REUSEPORT_LB on both: the versions read disagree, so no row
    (dict(state="BOUND", first_opts="SO_REUSEPORT_LB", second_opts="SO_REUSEPORT_LB", prober="other_user"), ""),
]


@pytest.mark.parametrize("release", ["13.2-RELEASE", "14.1-RELEASE-p5", "15.0-CURRENT"])
def test_freebsd_cells_get_the_code_s_verdict_on_every_release(release):
    """freebsd.yaml has no version gate (in_pcb.c reads the same in the 13-, 14- and 15-era texts): every release
    gets the same expectation, and a result that says so matches."""
    rows = [bsd_case("freebsd", release, *expected_steps(expected), **values) for values, expected in FREEBSD_CELLS]
    judged = judge(frame(*rows), load_expectations())
    assert list(judged["expected"].fillna("")) == [expected for _, expected in FREEBSD_CELLS]
    assert list(judged["verdict"]) == ["match"] * (len(FREEBSD_CELLS) - 1) + ["undocumented"]


def test_freebsd_6_2_keeps_seed_004_s_rows():
    judged = judge(frame(bsd_case("freebsd", "6.2-RELEASE", "EADDRINUSE", state="TIME_WAIT")), load_expectations())
    assert judged["verdict"][0] == "match" and "seed 004" in judged["source"][0]


def test_freebsd_time_wait_without_options_is_in_use_and_cites_the_code():
    judged = judge(frame(bsd_case("freebsd", "14.2-RELEASE", "ok", "ok", state="TIME_WAIT")), load_expectations())
    assert judged["verdict"][0] == "mismatch" and judged["expected"][0] == "bind=EADDRINUSE"
    assert "INPLOOKUP_WILDCARD" in judged["source"][0]


DARWIN_CELLS = [
    (dict(state="TIME_WAIT"), "bind=EADDRINUSE"),
    (dict(state="TIME_WAIT", second_opts="SO_REUSEADDR"), "bind=ok, listen=ok"),
    # XNU's uid check counts connections: another user cannot take the port of root's TIME_WAIT
    (dict(state="TIME_WAIT", second_opts="SO_REUSEADDR", prober="other_user"), "bind=EADDRINUSE"),
    (dict(state="LISTEN", first_opts="SO_REUSEADDR", second_opts="SO_REUSEADDR"), "bind=EADDRINUSE"),
    (dict(state="LISTEN", first_opts="SO_REUSEPORT", second_opts="SO_REUSEPORT"), "bind=ok, listen=ok"),
    # both on the wildcard with SO_REUSEPORT: the uid check stops there, so another user shares the port
    (dict(state="LISTEN", first_opts="SO_REUSEPORT", second_opts="SO_REUSEPORT", prober="other_user"),
     "bind=ok, listen=ok"),
    (dict(state="LISTEN", first_addr="loopback", second_addr="loopback", first_opts="SO_REUSEPORT",
          second_opts="SO_REUSEPORT", prober="other_user"), "bind=EADDRINUSE"),
    (dict(family="dual", state="LISTEN", second_addr="v4mapped", second_opts="SO_REUSEADDR"), "bind=ok, listen=ok"),
]


def test_darwin_cells_get_xnu_s_verdict():
    rows = [bsd_case("darwin", "24.5.0", *expected_steps(expected), **values) for values, expected in DARWIN_CELLS]
    judged = judge(frame(*rows), load_expectations())
    assert list(judged["expected"]) == [expected for _, expected in DARWIN_CELLS]
    assert set(judged["verdict"]) == {"match"}
    assert judged["source"].str.contains("xnu-11417.121.6").all()


def test_darwin_rows_cover_every_bind_matrix_case_of_a_macos_host():
    """macOS has SO_REUSEADDR and SO_REUSEPORT (labs/sockopts.py): XNU's code decides each of the 7,344 cases whose
    second socket is of the first one's family."""
    host = {"options": ("SO_REUSEADDR", "SO_REUSEPORT")}
    rows = [case(os_family="darwin", os_release="24.5.0", **params) for params in bind_matrix.cases(host)
            if not params["second_family"]]
    judged = judge(frame(*rows), load_expectations())
    assert len(judged) == 7344 and (judged["expected"].fillna("") != "").all()


def test_darwin_hijack_cells_get_xnu_s_verdict():
    """Who accepts on macOS, from XNU's lookup: the exact address's last bound listener, else the first bound
    wildcard one; every hijack case of a macOS host is documented."""
    from labs import hijack
    host = {"options": ("SO_REUSEADDR", "SO_REUSEPORT")}
    rows = [dict(case(os_family="darwin", os_release="24.5.0"), lab="hijack", **params)
            for params in hijack.cases(host) if params["proto"] == "tcp"]
    for row in rows:
        row["case_id"] = labs.case_id(hijack, row)
    judged = judge(frame(*rows).assign(lab="hijack"), load_expectations()).set_index(list(hijack.PARAMETERS))
    assert len(judged) == 544 and (judged["expected"].fillna("") != "").all()
    both_wild = ("inet", "SO_REUSEPORT", "SO_REUSEPORT", "wildcard", "wildcard", "other_user", "tcp")
    both_loopback = ("inet6", "SO_REUSEPORT", "SO_REUSEPORT", "loopback", "loopback", "other_process", "tcp")
    assert judged.loc[both_wild, "expected"] == "bind=ok, listen=ok, accepted_by=first, after_close=second"
    assert judged.loc[both_loopback, "expected"] == "bind=ok, listen=ok, accepted_by=second, after_close=second"
