"""Loading stored runs: the tidy table and its columnar copy, a crash-cut last line, and seed 004's archived run."""
import json
import os
import shutil
import subprocess

import pandas as pd
import pytest

from formats.table import lab_columns, load as load_run
from labs.vocabulary import RESULT_COLUMNS
from formats.errors import UserError
from tests.conftest import HOST_RECORD as HOST, REPO, socklab_command


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


# ------------------------------------------------------------------------------------------------ columnar copy

@pytest.fixture(scope="module")
def stored_run(tmp_path_factory):
    """A real run of this machine (TCP, IPv4, one prober), as run-all stores it."""
    out = tmp_path_factory.mktemp("runs")
    done = subprocess.run(socklab_command("run-all", "--lab", "bind_matrix", "--where", "proto=tcp", "--where",
                                          "family=inet", "--where", "prober=same_process", "--out", str(out)),
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (run_dir,) = [path for path in out.iterdir() if path.is_dir()]
    return run_dir


def test_the_columnar_copy_holds_what_results_csv_holds(stored_run, tmp_path):
    """results.parquet is read while it is current and gives the table results.csv gives: every column, every
    value, text as Categoricals."""
    assert (stored_run / "results.parquet").stat().st_mtime >= (stored_run / "results.csv").stat().st_mtime
    from_copy = load_run(str(stored_run))
    without = tmp_path / "without-copy"
    shutil.copytree(stored_run, without, ignore=shutil.ignore_patterns("results.parquet"))
    from_csv = load_run(str(without))
    assert len(from_copy) > 0 and from_copy.equals(from_csv)
    assert all(isinstance(from_copy[column].dtype, pd.CategoricalDtype) for column in from_copy if column != "errno")


def test_a_results_csv_newer_than_its_copy_is_read_and_a_damaged_copy_is_named(stored_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(stored_run, run)
    table = pd.read_csv(run / "results.csv", dtype=str)
    table.loc[0, "detail"] = "edited after the run"
    table.to_csv(run / "results.csv", index=False)  # newer than results.parquet: it is the one read
    os.utime(run / "results.parquet", (1, 1))
    assert load_run(str(run))["detail"].iloc[0] == "edited after the run"
    (run / "results.parquet").write_bytes(b"PAR1 not a parquet file")  # newer again, and damaged
    with pytest.raises(UserError, match=r"results\.parquet: not a columnar copy of results\.csv: .*remove "
                                        r"results\.csv"):
        load_run(str(run))
