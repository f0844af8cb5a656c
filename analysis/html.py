"""The comparison report as one self-contained HTML file: the key findings first, then seed 004's table grown up,
filtered in the browser.

write(judged, path, title) takes the judged tidy table (formats.table.COLUMNS plus judge()'s verdict, expected and
source; one run or several) and writes one HTML file that opens without a network: CSS and script inline, system
fonts only. The page is templates/report.html.j2 (Jinja2, autoescaped): a header with the runs shown, the key
findings (analysis.findings), a legend, a section per lab: a table whose rows are system x the lab's row axes and
whose columns are its column axis (bind_matrix: system x options rows, state columns), with filters on every row
axis; then the verdict counts per system and the mismatches with their sources. Cells are coloured by meaning
(analysis.layouts, analysis.palette: the page's CSS is generated from the palette).

Every table operation is pandas, in Python. A lab's cases become a grid (row x column) of integer "look" codes; a
look is one distinct cell appearance (cell text, meaning, verdict, expectation, source, witness, detail), and every
distinct string is embedded once, so the file grows by a few bytes per case (1,000,000 cases: about 6 MB). A small
vanilla script (templates/report.js) draws the rows the filters let through. Results carry untrusted text (host
names, details): the template escapes all it writes as HTML, the embedded JSON cannot end its <script> element,
and the script writes only text nodes and properties.
"""
import os

import numpy as np
import pandas as pd

from analysis import findings as key_findings
from analysis import palette
from analysis.expectations import documented_column, verdict_counts
from analysis.grouping import first_positions, group_codes
from analysis.labels import NOT_MEASURED, system_label
from analysis.layouts import (axis_labels, cell_meanings, cell_texts, lab_layout, meaning_codes, present_axes,
                              step_cells)
from analysis.templating import frame_table, render
from formats.table import filled

SYSTEM_KEY = ["run_id", "host", "os_family", "os_release"]
# What makes two cells look the same, besides the lab's cell columns.
LOOK_COLUMNS = ["lab", "outcome", "verdict", "expected", "source", "witness", "detail", "meaning"]
CASE_ID_SEPARATOR = "/"  # labs.case_id joins parameter values with it

# Browsers slow down past a few tens of thousands of cells: the script draws at most this many rows at once.
MAX_DRAWN_ROWS = 2500
# The mismatch list groups systems per case; past this many cases it says how many more there are.
MAX_MISMATCH_ROWS = 500


class StringTable:
    """Every distinct string of the page, once; the embedded data refers to strings by index."""

    def __init__(self):
        self.strings, self.index = [], {}

    def code(self, text):
        if text not in self.index:
            self.index[text] = len(self.strings)
            self.strings.append(text)
        return self.index[text]

    def codes(self, values):
        """The index of each value (missing values are empty strings), as a list for JSON."""
        codes, uniques = pd.factorize(pd.Series(values, dtype=object).fillna("").astype(str))
        return np.array([self.code(text) for text in uniques], dtype=np.int64)[codes].tolist()


def systems_of(judged):
    """Each row's system code, and the systems (host + OS + run) with their label and case count."""
    codes, first = group_codes(judged, SYSTEM_KEY)
    systems = filled(judged[SYSTEM_KEY + ["os_version"]].iloc[first]).reset_index(drop=True)
    systems["label"] = system_label(systems)
    systems["cases"] = np.bincount(codes, minlength=len(systems))
    return codes, systems


def dense_grid(rows, columns, values, shape):
    """The pivot of values by (row, column) as one row-major list of shape[0] x shape[1] ints, 0 where no value
    (values are > 0); where two values meet in a cell the first wins, as report's pivots take it."""
    cells = np.asarray(rows, dtype=np.int64) * shape[1] + np.asarray(columns, dtype=np.int64)
    _, first = np.unique(cells, return_index=True)
    grid = np.zeros(shape[0] * shape[1], dtype=np.int64)
    grid[cells[first]] = np.asarray(values, dtype=np.int64)[first]
    return grid.tolist()


def lab_data(cases, layout, system_labels, strings):
    """The page data of one lab, every string as a StringTable code.

    A shape is one value of each row axis; a row is a system and a shape. `cells` is the grid (row-major) of
    rows x `columns` holding look codes + 1 (0: not measured, or a step the case did not reach); a look is one
    distinct cell appearance (`looks`). Row axes and column cover every parameter, so systems share case ids:
    `caseGrid` holds, per shape and column, 1 + the case's index in `cases`, each case id as its '/'-separated parts
    (the parts repeat, the ids do not). A frame of step cells (layouts.step_cells) brings its own text and
    meaning."""
    system_of_case, system_order = pd.factorize(cases["system"])
    host_of_system, hosts = pd.factorize(filled(cases["host"].iloc[first_positions(system_of_case)]))
    axes, axis_codes = [], {}
    for axis in present_axes(layout, cases):
        codes, first = group_codes(cases, axis.columns)
        values = axis_labels(cases[[column for column in axis.columns if column in cases]].iloc[first], axis).tolist()
        seed = {column: layout.seed[column] for column in axis.columns if column in layout.seed}
        default = -1
        if seed and all(column in seed for column in axis.columns if column in cases.columns):
            seed_label = axis_labels(pd.DataFrame({column: [value] for column, value in seed.items()}), axis)[0]
            default = values.index(seed_label) if seed_label in values else -1
        axes.append({"name": axis.name, "label": axis.label, "default": default, "values": strings.codes(values)})
        axis_codes[axis.name] = codes
    if axis_codes:  # shapes sort by each axis in turn, its values in order of first appearance (the agent's order)
        grouped = pd.DataFrame(axis_codes).groupby(list(axis_codes), sort=True)
        shape_of_case, shapes = grouped.ngroup().to_numpy(), grouped.size().index.to_frame(index=False)
    else:
        shape_of_case, shapes = np.zeros(len(cases), dtype=np.int64), pd.DataFrame(index=[0])
    # Rows sort by system, then shape.
    row_of_case, row_keys = pd.factorize(system_of_case * len(shapes) + shape_of_case, sort=True)

    column_codes, first = group_codes(cases, layout.column.columns)
    present = axis_labels(cases[list(layout.column.columns)].iloc[first], layout.column).tolist()
    columns = [value for value in layout.column_order if value in present]
    columns += [value for value in present if value not in columns]
    column_of_case = np.array([columns.index(value) for value in present], dtype=np.int64)[column_codes]

    own_text = "text" in cases.columns
    look_columns = list(dict.fromkeys(LOOK_COLUMNS + list(layout.cell) + (["text"] if own_text else [])))
    look_of_case, first = group_codes(cases, look_columns)
    looks = cases[[column for column in look_columns if column in cases.columns]].iloc[first]
    case_of_case, case_ids = pd.factorize(filled(cases["case_id"]))
    return {
        "section": "lab-" + cases["lab"].iloc[0],
        "empty": "" if own_text else NOT_MEASURED,
        "columns": strings.codes(columns),
        "systems": {"label": strings.codes(system_labels[system_order]), "host": host_of_system.tolist()},
        "hosts": strings.codes(hosts),
        "axes": axes,
        "shapes": {name: shapes[name].tolist() for name in shapes.columns},
        "rows": {"system": (row_keys // len(shapes)).tolist(), "shape": (row_keys % len(shapes)).tolist()},
        "cells": dense_grid(row_of_case, column_of_case, look_of_case + 1, (len(row_keys), len(columns))),
        "caseGrid": dense_grid(shape_of_case, column_of_case, case_of_case + 1, (len(shapes), len(columns))),
        "cases": [[strings.code(part) for part in case_id.split(CASE_ID_SEPARATOR)] for case_id in case_ids],
        "looks": {
            "text": strings.codes(looks["text"] if own_text else cell_texts(looks)),
            "meaning": meaning_codes(looks["meaning"]).tolist(),
            "verdict": strings.codes(looks["verdict"]),
            "expected": strings.codes(looks["expected"]),
            "source": strings.codes(looks["source"]),
            "witness": strings.codes(looks["witness"]),
            "detail": strings.codes(looks["detail"]),
        },
    }


def mismatch_list(system_codes, systems, judged, limit):
    """(the first `limit` mismatching cases, how many there are): one row per case, measured outcome and
    expectation, with its source and the systems that show it (joined only for the rows listed)."""
    wrong = (judged["verdict"] == "mismatch").to_numpy()
    keys = ["lab", "case_id", "expected", "measured", "source"]
    cases = filled(judged.loc[wrong, ["lab", "case_id", "expected", "source"]]).assign(
        measured=cell_texts(judged.loc[wrong].drop(columns="verdict")),
        system=systems["label"].to_numpy()[system_codes[wrong]])
    group = cases.groupby(keys, sort=True).ngroup()
    listed = (cases[group < limit].groupby(keys, sort=True)["system"]
              .agg(lambda names: ", ".join(pd.unique(names))).reset_index())
    listed = listed.rename(columns={"case_id": "case", "system": "systems"})
    return listed[["lab", "case", "measured", "expected", "source", "systems"]], int(group.nunique())


def runs_table(systems):
    shown = systems.rename(columns={"run_id": "run", "os_family": "OS", "os_release": "release",
                                    "os_version": "version"})
    return frame_table(shown[["run", "host", "OS", "release", "version", "cases"]])


def summary(systems):
    runs = systems["run_id"].nunique()
    return "{} system{} from {} run{}: {}; {:,} cases.".format(
        len(systems), "" if len(systems) == 1 else "s", runs, "" if runs == 1 else "s",
        ", ".join(pd.unique(systems["run_id"])), int(systems["cases"].sum()))


def lab_cases(judged, lab, layout, system_codes):
    """The rows of one lab with only the columns its table shows (taking rows of all of them costs more than the
    rest), with their system code; a lab whose steps are its columns as its step cells."""
    in_lab = (judged["lab"] == lab).to_numpy()
    columns = list(dict.fromkeys(["lab", "host", "case_id"] + list(layout.column.columns) + LOOK_COLUMNS + list(
        layout.cell) + [column for axis in layout.rows for column in axis.columns] + [
        column for rule in layout.meanings if layout.steps_as_columns for column in rule.when]))
    columns = [column for column in columns if column in judged.columns]
    cases = judged[columns] if in_lab.all() else judged.loc[in_lab, columns]
    cases = cases.assign(system=system_codes[in_lab])
    if layout.steps_as_columns:
        return step_cells(cases, layout), layout.step_layout()
    return cases, layout


def write(judged, path, title, findings=None):
    """Write the report of the judged table to `path` as one self-contained HTML file (with `findings`, the
    analysis.findings.Findings of the same table, when they are worked out already); returns path."""
    judged = judged.reset_index(drop=True)
    if "meaning" not in judged.columns:
        judged = judged.assign(meaning=cell_meanings(judged))
    findings = findings or key_findings.key_findings(judged)
    system_codes, systems = systems_of(judged)
    strings = StringTable()
    labs = []
    sections = []
    for lab in pd.unique(judged["lab"]):
        layout = lab_layout(lab)
        cases, shown = lab_cases(judged, lab, layout, system_codes)
        labs.append(lab_data(cases, shown, systems["label"].to_numpy(), strings))
        sections.append({"name": lab, "description": layout.description or "Rows: system x {}; columns: {}.".format(
            ", ".join(axis.label for axis in layout.rows), layout.column.label)})
    listed, count = mismatch_list(system_codes, systems, judged, MAX_MISMATCH_ROWS)
    counts = verdict_counts(judged.assign(system=systems["label"].to_numpy()[system_codes]), keys=("system", "lab"))
    present = {palette.NAMES[code] for lab in labs for code in lab["looks"]["meaning"]}  # step cells' too
    page = render(
        "report.html.j2", title=title, summary=summary(systems), runs=runs_table(systems),
        questions=findings.questions, meanings={colour.name: colour.label for colour in palette.MEANINGS},
        palette=palette.MEANINGS, legend=[colour for colour in palette.MEANINGS
                                          if colour.name in present or colour.name == "none"],
        not_measured=NOT_MEASURED, labs=sections, counts=frame_table(documented_column(counts.assign(total=counts.sum(axis=1))), index=True),
        mismatches=frame_table(listed), more_mismatches=count - len(listed),
        data={"strings": strings.strings, "meanings": list(palette.NAMES), "maxRows": MAX_DRAWN_ROWS,
              "caseIdSeparator": CASE_ID_SEPARATOR, "labs": labs})
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    with open(path, "w", encoding="utf-8") as stream:
        stream.write(page)
    return path
