"""Reports of judged results: Markdown (the key findings first, then one section per lab), CSVs, a picture of the
outcomes (analysis.picture) and one self-contained HTML page (analysis.html).

Every table is a pandas pivot of the tidy table laid out as analysis.layouts says (rows: the lab's row axes;
columns: its column axis, or its steps); the Markdown is rendered from the pivots (templates/report.md.j2), the
CSVs are the pivots. The Markdown is shaped for a README or a wiki: a lab's table is split per system and per the
values of its layout's `split` axes, a table wider than MAX_WIDTH characters is cut in two, and a section of more
than FOLD_ROWS rows has its tables folded (<details>), the first view (the layout's seed) open. bind_matrix's
section is seed 004's table grown up, then every option pair.
Archived published runs (archive/) stand beside the run's own hosts, so every system the seeds name has a row.
"""
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis import html, picture
from analysis.expectations import documented_column, verdict_counts
from analysis.findings import key_findings
from analysis.grouping import group_codes
from analysis.labels import NOT_MEASURED, options_label, system_label
from analysis.expectations import judge, load_expectations
from analysis.layouts import (MISMATCH_MARK, SEED_LAYOUT, axis_labels, cell_meanings, cell_texts, lab_layout,
                              present_axes, step_cells)
from analysis.templating import render
from formats import rundir
from formats.errors import UserError
from formats.table import concat, load, write as write_csv
from labs import LABS

FOLD_ROWS = 20  # a Markdown section longer than this (in table rows) has its tables folded
MAX_WIDTH = 180  # characters of a Markdown table row: wider tables are cut in two (a page of ~1,400 px shows them)


def pivot(frame, rows, layout, texts=None, empty=NOT_MEASURED):
    """Rows `rows` (columns of frame), one column per value of the layout's column axis (its order first), each
    cell its cell text (or `texts`)."""
    frame = frame.assign(cell=cell_texts(frame) if texts is None else texts,
                         column=axis_labels(frame, layout.column))
    table = frame.pivot_table(index=rows, columns="column", values="cell", aggfunc="first", sort=False)
    present = list(table.columns)
    order = [value for value in layout.column_order if value in present]
    table = table.reindex(columns=order + [value for value in present if value not in order]).fillna(empty)
    return table.rename_axis(columns=layout.column.label)


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
    cells = cells[cells["first_opts"].astype(str) == cells["second_opts"].astype(str)]  # Categoricals: as text
    return pivot(cells.assign(options=options_label(cells)), ["system", "options"], lab_layout("bind_matrix"))


def option_pairs(judged):
    """Every option pair per system, protocol and family (rows), states (columns): both sockets on the wildcard,
    the second from another process. One pivot for all systems: a report of 100 hosts stays fast."""
    conditions = {key: SEED_LAYOUT[key] for key in ("lab", "second_family", "first_addr", "second_addr", "prober")}
    cells = select(judged, conditions)
    return pivot(cells.assign(options=options_label(cells)), ["system", "proto", "family", "options"],
                 lab_layout("bind_matrix"))


def lab_table(cases, layout):
    """A lab's cases as its layout's table: rows system x row axes (pairs as 'first → second'), columns its column
    axis; a lab whose steps are its columns: rows system x row axes x column axis, one column per step."""
    empty = NOT_MEASURED
    if layout.steps_as_columns:
        cases, layout, empty = step_cells(cases, layout), layout.step_layout(), ""
    axes = present_axes(layout, cases)
    labelled = cases.assign(**{axis.label: axis_labels(cases, axis) for axis in axes})
    return pivot(labelled, ["system"] + [axis.label for axis in axes], layout,
                 labelled["text"] if "text" in labelled.columns else None, empty)


def mismatches(judged):
    wrong = judged[judged["verdict"] == "mismatch"]
    return wrong.assign(measured=cell_texts(wrong.drop(columns="verdict")))[
        ["host", "lab", "case_id", "expected", "measured", "witness", "source"]]


def markdown_parts(frame, split=(), index=True, drop_empty=False, width=MAX_WIDTH):
    """[(key, Markdown, rows)]: a table as GitHub-flavoured Markdown, one table per combination of the index levels
    `split` (in order of appearance; key () for one table); the other row labels become ordinary columns, so a
    reader sees no tuples. With `drop_empty`, a part leaves out the columns it has no value in. A part wider than
    `width` characters is cut into several tables, each with the row labels and as many columns as fit, so that
    none scrolls sideways. The text of every cell is made once for the whole frame: hundreds of parts of a
    100-host report stay quick."""
    if frame.empty:
        return [((), "_(none)_", 0)]
    levels = [name for name in frame.index.names] if index else []
    flat = frame.reset_index() if index else frame.reset_index(drop=True)
    labels = [name for name in levels if name not in split]
    values = [name for name in flat.columns if name not in levels]
    texts, lengths = {}, {}
    for name in labels + values:
        column = flat[name].astype(object).where(flat[name].notna(), "").astype(str).str.replace(
            "|", "\\|", regex=False)
        texts[name], lengths[name] = column.to_numpy(dtype=object), column.str.len().to_numpy()
    filled = {name: ~np.isin(texts[name], [NOT_MEASURED, ""]) for name in values} if drop_empty else {}
    heads = {name: str(name).replace("|", "\\|") for name in labels + values}
    parts = (flat.groupby(list(split), sort=False).indices if split else {(): np.arange(len(flat))})
    result = []
    for key, positions in parts.items():
        shown = [name for name in values if not drop_empty or filled[name][positions].any()]
        widths = {name: max(len(heads[name]), int(lengths[name][positions].max()), 3) for name in labels + shown}
        base = sum(widths[name] + 3 for name in labels) + 1
        chunks, used = [[]], base
        for name in shown:
            if chunks[-1] and used + widths[name] + 3 > width:
                chunks.append([])
                used = base
            chunks[-1].append(name)
            used += widths[name] + 3
        tables = []
        for chunk in chunks:
            names = labels + chunk
            lines = ["| " + " | ".join(heads[name].ljust(widths[name]) for name in names) + " |",
                     "|" + "|".join("-" * (widths[name] + 2) for name in names) + "|"]
            lines += ["| " + " | ".join(texts[name][row].ljust(widths[name]) for name in names) + " |"
                      for row in positions]
            tables.append("\n".join(lines))
        result.append((key if isinstance(key, tuple) else (key,), "\n\n".join(tables), len(positions)))
    return result


def markdown_table(frame, index=True):
    """One Markdown table (or several, when it is too wide) of a frame; see markdown_parts."""
    return markdown_parts(frame, index=index)[0][1]


@dataclass
class Block:
    """One table of a lab's section: under a heading, or folded (<details>, open when `open`)."""
    title: str
    table: str
    rows: int
    open: bool = False
    folded: bool = False


def folded(blocks):
    """A section longer than FOLD_ROWS rows has every table folded; the first view (or else the first) stays
    open."""
    if sum(block.rows for block in blocks) > FOLD_ROWS:
        if not any(block.open for block in blocks):
            blocks[0].open = True
        for block in blocks:
            block.folded = True
    return blocks


def bind_matrix_section(judged, out_dir):
    seed = seed_table(judged)
    seed.to_csv(os.path.join(out_dir, "seed004_layout.csv"))
    pairs = option_pairs(judged)
    pairs.to_csv(os.path.join(out_dir, "option_pairs.csv"))
    blocks = [Block("{}: {} over {}".format(system, proto, family), text, rows,
                    open=(proto, family) == (SEED_LAYOUT["proto"], SEED_LAYOUT["family"]) and number == 0)
              for number, ((system, proto, family), text, rows) in enumerate(markdown_parts(
                  pairs, ["system", "proto", "family"], drop_empty=True))]
    return {"seed": markdown_table(seed), "pairs": folded(blocks)}


def lab_blocks(table, layout):
    """A lab's table split per system and per its layout's `split` axes, each part without the columns it has no
    value in; the part that is the layout's first view is open."""
    split = ["system"] + [axis.label for axis in layout.rows if axis.name in layout.split and
                          axis.label in table.index.names]
    seed = [layout.seed.get(axis.name) for axis in layout.rows if axis.label in split]
    first_system = table.index.get_level_values("system")[0] if len(table) else None
    blocks = []
    for key, text, rows in markdown_parts(table, split, drop_empty=True):
        title = key[0] + "".join(", {} {}".format(name, value) for name, value in zip(split[1:], key[1:]))
        first_view = key[0] == first_system and all(value in (None, chosen) for chosen, value in zip(key[1:], seed))
        blocks.append(Block(title, text, rows, open=first_view))
    return folded(blocks)


def lab_section(lab, cases, out_dir):
    """One lab's section for the Markdown template; its table also as <lab>.csv."""
    layout = lab_layout(lab)
    section = {"lab": lab, "description": layout.description, "blocks": [], "bind_matrix": None}
    if lab == "bind_matrix":
        section["bind_matrix"] = bind_matrix_section(cases, out_dir)
        return section
    table = lab_table(cases, layout)
    table.to_csv(os.path.join(out_dir, lab + ".csv"))
    section["blocks"] = lab_blocks(table, layout)
    return section


def write_judged(judged, out_dir):
    """judged.csv, the judged table with each row's source as its number (`source_id`, empty where none), and
    sources.csv, each source's text once by its number: a source runs to a few KB, and a million rows' copies of
    them made a judged.csv of 1.2 GB."""
    sources = judged["source"].astype("category")
    texts = np.asarray(sources.cat.categories, dtype=object)
    named = np.append(texts != "", False)  # code -1 (no source at all) is the last entry
    numbers = np.append(np.cumsum(named[:-1]), 0)
    codes = sources.cat.codes.to_numpy()
    source_id = pd.Series(numbers[codes], index=judged.index, dtype="Int64").where(named[codes])
    write_csv(judged.assign(source=source_id).rename(columns={"source": "source_id"}),
              os.path.join(out_dir, "judged.csv"))
    write_csv(pd.DataFrame({"source_id": numbers[:-1][named[:-1]], "source": texts[named[:-1]]}),
              os.path.join(out_dir, "sources.csv"))


def write(judged, run_dir, manifest, out_dir, progress=None):
    """report.md, report.html, the picture and the CSVs into out_dir; returns (the path of report.md, the verdict
    counts, the mismatches). `progress(step)` is told each step as it starts."""
    progress = progress or (lambda step: None)
    rundir.made_folder(out_dir, "--out")
    progress("key findings")
    judged = judged.assign(system=system_label(judged))
    judged = judged.assign(meaning=cell_meanings(judged))
    findings = key_findings(judged)
    counts = verdict_counts(judged, manifest["run_id"])
    wrong = mismatches(judged)
    # pyarrow writes the judged table without the GIL: on a second core while the rest is made (a million rows'
    # CSV took as long as all the rest)
    writer = ThreadPoolExecutor(1)
    judged_csv = writer.submit(write_judged, judged.drop(columns=["system", "meaning"]), out_dir)
    writer.shutdown(wait=False)
    progress("Markdown")
    hosts = pd.DataFrame.from_dict(manifest["hosts"], orient="index").reindex(columns=["status", "cases", "reason"])
    labs = pd.unique(judged["lab"])
    sections = []
    for lab in [name for name in LABS if name in labs]:
        in_lab = (judged["lab"] == lab).to_numpy()
        sections.append(lab_section(lab, judged if in_lab.all() else judged[in_lab], out_dir))  # one lab: no copy
    text = render(
        "report.md.j2", run_id=manifest["run_id"], run_dir=run_dir, manifest=manifest, questions=findings.questions,
        hosts=markdown_table(hosts.rename_axis("host")), hosts_rows=len(hosts), counts=markdown_table(documented_column(counts)),
        counts_rows=len(counts), mismatches=markdown_table(wrong, index=False), mismatch_rows=len(wrong),
        fold_rows=FOLD_ROWS, mismatch_mark=MISMATCH_MARK.strip(), not_measured=NOT_MEASURED, sections=sections)
    path = os.path.join(out_dir, "report.md")
    with open(path, "w", encoding="utf-8") as stream:
        stream.write(text)
    progress("picture")
    picture.write(judged, out_dir)
    progress("HTML page")
    html.write(judged, os.path.join(out_dir, "report.html"), "socklab report: run {}".format(manifest["run_id"]),
               findings)
    progress("judged table (CSV)")
    judged_csv.result()
    return path, counts, wrong


def judged_runs(runs, expectations, archive=None, progress=None):
    """The runs' results, with the published runs under `archive` beside them, each row judged; UserError when one
    of the runs holds no case (nothing to judge: a check must not pass on nothing). `progress(step)` is told each
    step as it starts."""
    progress = progress or (lambda step: None)
    table = load_expectations([expectations])
    chosen = [os.path.normpath(run) for run in runs]
    progress("loading {} run(s)".format(len(chosen)))
    tables = [load(run) for run in chosen]
    empty = [run for run, table in zip(chosen, tables) if table.empty]
    if empty:
        raise UserError("holds no case: nothing to judge", path=empty[0])
    tables += [load(run) for run in (rundir.run_dirs(archive) if archive else []) if os.path.normpath(run) not in chosen]
    results = concat(tables)
    progress("judging {:,} cases".format(len(results)))
    return judge(results, table)


def report_runs(runs, expectations, archive=None, out=None, progress=None):
    """The report of the first run, the others (and the archive's runs) beside it, into <first run>/report/ or
    `out`; returns (the path of report.md, verdict counts, mismatches). `progress(step)` is told each step."""
    judged = judged_runs(runs, expectations, archive, progress)
    return write(judged, runs[0], rundir.read_manifest(runs[0]), out or os.path.join(runs[0], "report"), progress)
