"""Load stored runs into the tidy results table: one row per case, the columns of DESIGN.md.

A run directory holds manifest.json and one <host>.jsonl per host (collect/store.py). Lines are the agent's own
records; the host record gives the OS columns of the rows after it. A line that is not a whole JSON record is a
UserError naming file and line, except a last line cut short by a crash, which is skipped: it was never complete.
"""
import glob
import json
import os

import pandas as pd

from formats.errors import UserError
from labs import LABS, module
from labs.vocabulary import RESULT_COLUMNS

HOST_COLUMNS = ("os_family", "os_release", "os_version")  # what a host is: a resumed run checks they are the same
FACT_COLUMNS = HOST_COLUMNS + ("python",)  # the host facts every case row carries
CASE_FIELDS = ("lab", "case_id", "outcome")
TABLE = "results.csv"


LAB_MODULES = {name: module(name) for name in LABS}
PARAMETER_COLUMNS = list(dict.fromkeys(column for lab in LAB_MODULES.values() for column in lab.PARAMETERS))
STEP_COLUMNS = list(dict.fromkeys(column for lab in LAB_MODULES.values() for column in lab.STEPS))
# Steps whose result is a value (who accepted, which end held TIME_WAIT), not ok or an error name.
VALUE_STEP_COLUMNS = list(dict.fromkeys(column for lab in LAB_MODULES.values()
                                        for column in lab.STEP_VALUES))


def lab_columns(names=LABS):
    """Parameter, step and measure columns of these labs (default every lab), in LABS order, each once."""
    return list(dict.fromkeys(column for name, lab in LAB_MODULES.items() if name in names
                              for column in tuple(lab.PARAMETERS) + tuple(lab.STEPS) + tuple(lab.MEASURES)))


COLUMNS = list(RESULT_COLUMNS) + lab_columns()


def with_columns(table):
    """The table with the fixed columns and those of the labs it holds, in that order: a table of one lab carries
    no empty columns of the others (a million rows of bind_matrix would otherwise hold dozens of them)."""
    present = set(table["lab"].dropna()) if "lab" in table.columns else set()
    table = table.reindex(columns=list(RESULT_COLUMNS) + lab_columns(present))
    table["errno"] = pd.to_numeric(table["errno"]).astype("Int64")
    return table


def read_manifest(run_dir):
    path = os.path.join(run_dir, "manifest.json")
    try:
        with open(path, encoding="utf-8") as stream:
            manifest = json.load(stream)
    except OSError as exc:
        raise UserError("not a run directory ({})".format(exc.strerror), path=path) from None
    except json.JSONDecodeError as exc:
        raise UserError("not valid JSON: {}".format(exc.msg), path=path, line=exc.lineno) from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("hosts"), dict):
        raise UserError("not a socklab manifest", path=path, field="hosts")
    return manifest


def read_host_log(path):
    """(host facts, case records) of one <host>.jsonl; each case carries the OS columns of the host record
    before it (a resumed run appends a new host record before its cases)."""
    facts, cases = {}, []
    with open(path, encoding="utf-8") as stream:
        lines = stream.readlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines) and not line.endswith("\n"):
                break  # cut short while being written
            raise UserError("not a JSON record: {}".format(exc.msg), path=path, line=number) from None
        kind = record.get("record") if isinstance(record, dict) else None
        if kind == "host":
            facts = record
        elif kind == "case":
            for field in CASE_FIELDS:
                if not isinstance(record.get(field), str):
                    raise UserError("case record without {}".format(field), path=path, line=number, field=field)
            cases.append(dict(record, **{column: facts.get(column, "") for column in FACT_COLUMNS}))
        elif kind not in ("plan", "end"):
            raise UserError("unknown record kind {!r}".format(kind), path=path, line=number, field="record")
    return facts, cases


def table_is_current(run_dir, manifest):
    """results.csv holds the run when it was written after the manifest and every host log (the store writes it
    last, when a run ends; a resume or an import touches them again)."""
    try:
        written = os.path.getmtime(os.path.join(run_dir, TABLE))
        sources = [os.path.join(run_dir, "manifest.json")] + glob.glob(os.path.join(run_dir, "*.jsonl"))
        return manifest.get("ended") is not None and all(os.path.getmtime(path) <= written for path in sources)
    except OSError:
        return False


def read_table(path):
    """results.csv as the tidy table; pyarrow's reader takes 1,000,000 rows in about half a second here."""
    return with_columns(pd.read_csv(path, engine="pyarrow", dtype=str))


def write_csv(frame, path):
    """A table as CSV without its index; pyarrow's writer: 1,000,000 rows in ~1 s, where pandas' takes ~7 s."""
    import pyarrow
    import pyarrow.csv
    pyarrow.csv.write_csv(pyarrow.Table.from_pandas(frame, preserve_index=False), path)


def load_run(run_dir, from_logs=False):
    """The tidy table of one run directory: its results.csv while that is current, else the host logs."""
    manifest = read_manifest(run_dir)
    if not from_logs and table_is_current(run_dir, manifest):
        try:
            return read_table(os.path.join(run_dir, TABLE))
        except ValueError:
            pass  # damaged: the host logs are the record
    frames = []
    for host in manifest["hosts"]:
        path = os.path.join(run_dir, host + ".jsonl")
        if not os.path.exists(path):
            continue  # the host never answered: the manifest says why
        _, cases = read_host_log(path)
        frame = pd.DataFrame.from_records(cases)
        if frame.empty:
            continue
        frame["run_id"], frame["host"] = manifest["run_id"], host
        frames.append(frame)
    return with_columns(pd.concat(frames, ignore_index=True) if frames else pd.DataFrame())


def load_runs(run_dirs):
    return pd.concat([load_run(run_dir) for run_dir in run_dirs], ignore_index=True)


def run_dirs(folder):
    """The run directories under `folder`, oldest first (run ids sort by time)."""
    return sorted(os.path.dirname(path) for path in glob.glob(os.path.join(folder, "*", "manifest.json")))


def latest_run(out):
    """The newest run directory under `out`."""
    runs = run_dirs(out)
    if not runs:
        raise UserError("no runs here: run `invoke run-all` first", path=out)
    return runs[-1]
