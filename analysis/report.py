"""Reports of judged results: Markdown with one section per lab, CSVs, a picture of the outcomes (analysis.picture)
and one self-contained HTML page (analysis.html).

Every table is a pandas pivot of the tidy table laid out as analysis.layouts says (rows: system x the lab's row
axes; columns: its column axis); the Markdown is rendered from the pivots, the CSVs are the pivots. bind_matrix's
section is seed 004's table grown up, then every option pair. Archived published runs (archive/) stand beside the
run's own hosts, so every system the seeds name has a row.
"""
import os

import pandas as pd

from analysis import html, picture
from analysis.labels import NOT_MEASURED, options_label, system_label
from analysis.layouts import MISMATCH_MARK, SEED_LAYOUT, axis_labels, cell_texts, lab_layout
from analysis.expectations import judge, load_expectations
from formats import rundir
from formats.errors import UserError
from formats.table import load, write as write_csv
from labs import LABS


def pivot(frame, rows, layout):
    """Rows `rows` (columns of frame), one column per value of the layout's column axis (its order first), each
    cell its cell text."""
    frame = frame.assign(cell=cell_texts(frame))
    table = frame.pivot_table(index=rows, columns=layout.column, values="cell", aggfunc="first", sort=False)
    present = list(table.columns)
    order = [value for value in layout.column_order if value in present]
    return table.reindex(columns=order + [value for value in present if value not in order]).fillna(NOT_MEASURED)


# What bind_matrix's tables read of a case: taking only these of a million rows is several times faster.
SEED_COLUMNS = ["lab", "system", "proto", "family", "state", "first_opts", "second_opts", "outcome", "bind", "listen",
                "verdict"]


def select(frame, conditions, columns=SEED_COLUMNS):
    """The rows with these values, and only `columns` of them."""
    mask = pd.Series(True, index=frame.index)
    for column, value in conditions.items():
        mask &= (frame[column] == value) if column in frame.columns else False
    return frame.loc[mask, [column for column in columns if column in frame.columns]]


def seed_table(judged):
    """Seed 004's table grown up: every system, same options on both sockets."""
    cells = select(judged, SEED_LAYOUT)
    cells = cells[cells["first_opts"] == cells["second_opts"]]
    return pivot(cells.assign(options=options_label(cells)), ["system", "options"], lab_layout("bind_matrix"))


def option_pairs(judged):
    """Every option pair per system, protocol and family (rows), states (columns): both sockets on the wildcard,
    the second from another process. One pivot for all systems: a report of 100 hosts stays fast."""
    conditions = {key: SEED_LAYOUT[key] for key in ("lab", "first_addr", "second_addr", "prober")}
    cells = select(judged, conditions)
    return pivot(cells.assign(options=options_label(cells)), ["system", "proto", "family", "options"],
                 lab_layout("bind_matrix"))


def option_pair_tables(pairs):
    """option_pairs split into one table per (system, protocol, family)."""
    for key, table in pairs.groupby(level=["system", "proto", "family"], sort=False):
        yield key, table.droplevel(["system", "proto", "family"])


def lab_table(cases, layout):
    """A lab's cases as its layout's table: rows system x row axes (pairs as 'first → second'), columns its
    column axis."""
    labelled = cases.assign(**{axis.label: axis_labels(cases, axis) for axis in layout.rows})
    return pivot(labelled, ["system"] + [axis.label for axis in layout.rows], layout)


def verdict_counts(judged):
    return judged.pivot_table(index=["host", "lab"], columns="verdict", values="case_id", aggfunc="count",
                              fill_value=0, sort=False)


def mismatches(judged):
    wrong = judged[judged["verdict"] == "mismatch"]
    return wrong.assign(measured=cell_texts(wrong.drop(columns="verdict")))[
        ["host", "lab", "case_id", "expected", "measured", "witness", "source"]]


def markdown_table(frame, index=True):
    """A pivot's row labels become ordinary columns (one per index level), so a reader sees no tuples."""
    if frame.empty:
        return "_(none)_"
    frame = frame.reset_index() if index else frame
    return frame.to_markdown(index=False, disable_numparse=True)  # cells are text: tabulate need not parse numbers


def bind_matrix_section(judged, out_dir):
    seed = seed_table(judged)
    seed.to_csv(os.path.join(out_dir, "seed004_layout.csv"))
    parts = [
        "### Seed 004's table, for every system",
        "Outcome of the second socket's bind() (and of its listen() when only that failed); TCP over IPv4, both "
        "sockets on the wildcard address, the second from another process of the same user, the same options on "
        "both sockets. The earlier socket: LISTEN; LISTEN+ESTABLISHED (seed 004's ESTABLISHED: listener and an "
        "accepted connection); then with the listener closed: ESTABLISHED, CLOSE_WAIT, FIN_WAIT_2, TIME_WAIT.",
        markdown_table(seed)]
    pairs = option_pairs(judged)
    pairs.to_csv(os.path.join(out_dir, "option_pairs.csv"))
    parts.append("### Every option pair (first → second), wildcard on both sockets, another process")
    for (system, proto, family), table in option_pair_tables(pairs):
        parts += ["#### {}: {} over {}".format(system, proto, family), markdown_table(table)]
    return parts


def lab_section(lab, cases, out_dir):
    """The Markdown parts of one lab's section; its table also as <lab>.csv."""
    layout = lab_layout(lab)
    parts = ["## Lab {}".format(lab), layout.description]
    if lab == "bind_matrix":
        return parts + bind_matrix_section(cases, out_dir)
    table = lab_table(cases, layout)
    table.to_csv(os.path.join(out_dir, lab + ".csv"))
    return parts + [markdown_table(table)]


def write(judged, run_dir, manifest, out_dir):
    """report.md and its CSVs into out_dir; returns the path of report.md."""
    rundir.made_folder(out_dir, "--out")
    judged = judged.assign(system=system_label(judged))
    counts = verdict_counts(select(judged, {"run_id": manifest["run_id"]}, ["host", "lab", "verdict", "case_id"]))
    wrong = mismatches(judged)
    write_csv(judged.drop(columns="system"), os.path.join(out_dir, "judged.csv"))
    hosts = pd.DataFrame.from_dict(manifest["hosts"], orient="index").reindex(columns=["status", "cases", "reason"])
    parts = [
        "# socklab report: run {}".format(manifest["run_id"]),
        "Run directory `{}`, started {}, ended {}; agent {}.".format(
            run_dir, manifest.get("started"), manifest.get("ended"), manifest.get("agent_version")),
        "## Hosts", markdown_table(hosts.rename_axis("host")),
        "## Verdicts", markdown_table(counts),
        "## Mismatches with the documented expectations", markdown_table(wrong, index=False),
        "In the tables below, {} marks a cell that disagrees with the documented expectation; {} a cell not "
        "measured. A pair of values 'a → b' is the first and the second socket's.".format(
            MISMATCH_MARK.strip(), NOT_MEASURED),
    ]
    labs = pd.unique(judged["lab"])
    for lab in [name for name in LABS if name in labs]:
        in_lab = judged["lab"] == lab
        parts += lab_section(lab, judged if in_lab.all() else judged[in_lab], out_dir)  # one lab: no copy
    parts += ["## The outcomes as a picture", "Outcome of every case by system; below, the cases two or more systems "
              "measured, a marker where they differ.", "![outcomes by system and case](matrix.png)"]
    picture.write(judged, out_dir)
    html.write(judged, os.path.join(out_dir, "report.html"), "socklab report: run {}".format(manifest["run_id"]))
    path = os.path.join(out_dir, "report.md")
    with open(path, "w", encoding="utf-8") as stream:
        stream.write("\n\n".join(parts) + "\n")
    return path, counts, wrong


def judged_runs(runs, expectations, archive=None):
    """The runs' results, with the published runs under `archive` beside them, each row judged; UserError when one
    of the runs holds no case (nothing to judge: a check must not pass on nothing)."""
    table = load_expectations([expectations])
    chosen = [os.path.normpath(run) for run in runs]
    tables = [load(run) for run in chosen]
    empty = [run for run, table in zip(chosen, tables) if table.empty]
    if empty:
        raise UserError("holds no case: nothing to judge", path=empty[0])
    tables += [load(run) for run in (rundir.run_dirs(archive) if archive else []) if os.path.normpath(run) not in chosen]
    return judge(pd.concat(tables, ignore_index=True), table)


def report_runs(runs, expectations, archive=None, out=None):
    """The report of the first run, the others (and the archive's runs) beside it, into <first run>/report/ or
    `out`; returns (the path of report.md, verdict counts, mismatches)."""
    judged = judged_runs(runs, expectations, archive)
    return write(judged, runs[0], rundir.read_manifest(runs[0]), out or os.path.join(runs[0], "report"))
