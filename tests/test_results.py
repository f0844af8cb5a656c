"""Loading stored runs: the tidy table, a crash-cut last line, and seed 004's archived run."""
import json

import pytest

from formats.table import lab_columns, load as load_run
from labs.vocabulary import RESULT_COLUMNS
from formats.errors import UserError
from tests.conftest import HOST_RECORD as HOST, REPO


def write_run(path, lines):
    path.mkdir()
    (path / "manifest.json").write_text(json.dumps({"run_id": "r1", "hosts": {"h": {}}}))
    (path / "h.jsonl").write_text(lines)


CASE = {"record": "case", "lab": "bind_matrix", "case_id": "c", "outcome": "ok", "bind": "ok"}


def test_a_last_line_cut_by_a_crash_is_skipped(tmp_path):
    write_run(tmp_path / "run", json.dumps(HOST) + "\n" + json.dumps(CASE)
              + "\n" + json.dumps(CASE)[:20])
    table = load_run(str(tmp_path / "run"))
    # the fixed columns, then those of the labs it holds (bind_matrix's), none of the other labs'
    assert list(table.columns) == list(RESULT_COLUMNS) + lab_columns(["bind_matrix"])
    assert len(table) == 1 and table.loc[0, "os_family"] == "linux"


@pytest.mark.parametrize("line, message", [
    ("{nope}\n", "h.jsonl:2: not a JSON record"),
    (json.dumps({"record": "case", "lab": "bind_matrix", "outcome": "ok"}) + "\n", "h.jsonl:2: case_id: missing"),
    (json.dumps({"record": "weather"}) + "\n", "h.jsonl:2: record: 'weather' is not a record kind"),
])
def test_a_corrupt_line_names_file_and_line(tmp_path, line, message):
    write_run(tmp_path / "run", json.dumps(HOST) + "\n" + line + json.dumps(CASE) + "\n")
    with pytest.raises(UserError, match=message):
        load_run(str(tmp_path / "run"))


# Seed 004's "結果一覧" table (../shared/seeds/README.md), bind() of the second socket, and FreeBSD 6.2 "as Linux".
SEED_TABLE = {
    ("windows", "none"): ["EADDRINUSE", "EADDRINUSE", "ok", "ok"],
    ("windows", "SO_REUSEADDR"): ["ok", "ok", "ok", "ok"],
    ("windows", "SO_EXCLUSIVEADDRUSE"): ["EADDRINUSE", "EADDRINUSE", "EADDRINUSE", "ok"],
    ("linux", "none"): ["EADDRINUSE"] * 4,
    ("linux", "SO_REUSEADDR"): ["EADDRINUSE", "EADDRINUSE", "ok", "ok"],
    ("freebsd", "none"): ["EADDRINUSE"] * 4,
    ("freebsd", "SO_REUSEADDR"): ["EADDRINUSE", "EADDRINUSE", "ok", "ok"],
}


def test_the_archived_seed_004_run_holds_the_published_table():
    table = load_run(REPO + "/archive/seed004-2010")
    manifest = json.load(open(REPO + "/archive/seed004-2010/manifest.json", encoding="utf-8"))
    assert "published" in manifest
    assert set(table["host"]) == {"winxp-sp3", "fc6-linux-2.6.18", "rh8-linux-2.4.20", "ubuntu804-linux-2.6.24",
                                  "freebsd-6.2"}
    for (os_family, options), outcomes in SEED_TABLE.items():
        rows = table[(table["os_family"] == os_family) & (table["first_opts"] == options)]
        for host, cells in rows.groupby("host"):
            ordered = cells.set_index("state").loc[["LISTEN", "LISTEN+ESTABLISHED", "FIN_WAIT_2", "TIME_WAIT"]]
            assert list(ordered["bind"]) == outcomes, host
