"""The comparison report as one self-contained HTML file: seed 004's table grown up, filtered in the browser.

write(judged, path, title) takes the judged tidy table (formats.table.COLUMNS plus judge()'s verdict, expected and
source; one run or several) and writes one HTML file that opens without a network: CSS and script inline, system
fonts only. The page holds a header with the runs shown, a legend, verdict counts per system, the mismatches with
their sources, and a section per lab: a table whose rows are system x the lab's row axes and whose columns are its
column axis (bind_matrix: system x options rows, state columns), with filters on every row axis.

Every table operation is pandas, in Python. A lab's cases become a grid (row x column) of integer "look" codes; a
look is one distinct cell appearance (cell text, outcome kind, verdict, expectation, source, witness, detail), and
every distinct string is embedded once, so the file grows by a few bytes per case (1,000,000 cases: about 6 MB).
A small vanilla script draws the rows the filters let through. Results carry untrusted text (host names,
details): Python escapes all it writes as HTML, the embedded JSON cannot end its <script> element, and the script
writes only text nodes and properties.
"""
import html
import json
import os

import numpy as np
import pandas as pd

from analysis.expectations import VERDICTS
from analysis.labels import NOT_MEASURED, system_label
from analysis.layouts import axis_labels, cell_texts, lab_layout
from labs.vocabulary import ERROR, INCONCLUSIVE, OK, UNSUPPORTED

SYSTEM_KEY = ["run_id", "host", "os_family", "os_release"]
# What makes two cells look the same, besides the lab's cell columns.
LOOK_COLUMNS = ["lab", "outcome", "verdict", "expected", "source", "witness", "detail"]

# Cell colours by outcome: the Okabe-Ito palette (distinct under the common colour-vision deficiencies), light
# enough for black text; the cell text names the outcome too, so colour is never the only cue.
KINDS = ("ok", "inuse", "errno", "unsupported", "inconclusive", "error", "none")
KIND_LABELS = {"ok": "ok", "inuse": "EADDRINUSE", "errno": "another error (EACCES, EINVAL, ...)",
               "unsupported": "unsupported (the host cannot build the case)",
               "inconclusive": "inconclusive (state not witnessed)", "error": "error (the agent failed)",
               "none": "not measured"}
KIND_OF_OUTCOME = {OK: "ok", "EADDRINUSE": "inuse", UNSUPPORTED: "unsupported", INCONCLUSIVE: "inconclusive",
                   ERROR: "error"}
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


def group_codes(frame, columns):
    """Each row's code of its combination of `columns` (0, 1, ... in order of first appearance), and the
    position of the first row of each combination."""
    codes = frame.groupby(list(columns), sort=False, dropna=False).ngroup().to_numpy()
    return codes, first_positions(codes)


def first_positions(codes):
    """Where each code first occurs, for codes numbered 0, 1, ... in order of first appearance."""
    return pd.Series(codes).drop_duplicates().index.to_numpy()


def systems_of(judged):
    """Each row's system code, and the systems (host + OS + run) with their label and case count."""
    codes, first = group_codes(judged, SYSTEM_KEY)
    systems = judged[SYSTEM_KEY + ["os_version"]].iloc[first].fillna("").reset_index(drop=True)
    systems["label"] = system_label(systems)
    systems["cases"] = np.bincount(codes, minlength=len(systems))
    return codes, systems


def dense_grid(rows, columns, values, shape):
    """The pivot of values by (row, column) as one row-major list of shape[0] x shape[1] ints, 0 where no value
    (values are > 0); where two values meet in a cell the first wins, as report's pivots take it."""
    return (pd.DataFrame({"row": rows, "column": columns, "value": values})
            .drop_duplicates(["row", "column"])
            .pivot(index="row", columns="column", values="value")
            .reindex(index=range(shape[0]), columns=range(shape[1]))
            .fillna(0).astype(np.int64).to_numpy().ravel().tolist())


def lab_data(cases, layout, system_labels, strings):
    """The page data of one lab, every string as a StringTable code.

    A shape is one value of each row axis; a row is a system and a shape. `cells` is the grid (row-major) of
    rows x `columns` holding look codes + 1 (0: not measured); a look is one distinct cell appearance (`looks`).
    Row axes and column cover every parameter, so systems share case ids: `caseGrid` holds, per shape and column,
    1 + the case's index in `cases`, each case id as its '/'-separated parts (the parts repeat, the ids do not)."""
    system_of_case, system_order = pd.factorize(cases["system"])
    host_of_system, hosts = pd.factorize(cases["host"].iloc[first_positions(system_of_case)].fillna(""))
    axes, axis_codes = [], {}
    for axis in layout.rows:
        codes, first = group_codes(cases, axis.columns)
        values = axis_labels(cases[list(axis.columns)].iloc[first], axis).tolist()
        seed = {column: layout.seed[column] for column in axis.columns if column in layout.seed}
        default = -1
        if len(seed) == len(axis.columns):
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

    column_codes, first = group_codes(cases, [layout.column])
    present = cases[layout.column].iloc[first].fillna("").tolist()
    columns = [value for value in layout.column_order if value in present]
    columns += [value for value in present if value not in columns]
    column_of_case = np.array([columns.index(value) for value in present], dtype=np.int64)[column_codes]

    look_columns = list(dict.fromkeys(LOOK_COLUMNS + list(layout.cell)))
    look_of_case, first = group_codes(cases, look_columns)
    looks = cases[look_columns].iloc[first]
    case_of_case, case_ids = pd.factorize(cases["case_id"].fillna(""))
    return {
        "section": "lab-" + cases["lab"].iloc[0],
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
            "text": strings.codes(cell_texts(looks)),
            "kind": looks["outcome"].map(KIND_OF_OUTCOME).fillna("errno").map(KINDS.index).tolist(),
            "verdict": strings.codes(looks["verdict"]),
            "expected": strings.codes(looks["expected"]),
            "source": strings.codes(looks["source"]),
            "witness": strings.codes(looks["witness"]),
            "detail": strings.codes(looks["detail"]),
        },
    }


def verdict_counts(system_codes, systems, judged):
    """Cases per system (rows, labelled) and verdict, and their total."""
    counts = (pd.DataFrame({"system": system_codes, "verdict": judged["verdict"]})
              .groupby(["system", "verdict"]).size().unstack(fill_value=0))
    order = [verdict for verdict in VERDICTS if verdict in counts.columns]
    counts = counts[order + [verdict for verdict in counts.columns if verdict not in order]]
    counts = counts.reindex(range(len(systems)), fill_value=0).assign(total=systems["cases"].to_numpy())
    return counts.set_axis(systems["label"].rename("system")).rename_axis(columns=None)


def mismatch_list(system_codes, systems, judged, limit):
    """(the first `limit` mismatching cases, how many there are): one row per case, measured outcome and
    expectation, with its source and the systems that show it (joined only for the rows listed)."""
    wrong = (judged["verdict"] == "mismatch").to_numpy()
    keys = ["lab", "case_id", "expected", "measured", "source"]
    cases = judged.loc[wrong, ["lab", "case_id", "expected", "source"]].fillna("").assign(
        measured=cell_texts(judged.loc[wrong].drop(columns="verdict")),
        system=systems["label"].to_numpy()[system_codes[wrong]])
    group = cases.groupby(keys, sort=True).ngroup()
    listed = (cases[group < limit].groupby(keys, sort=True)["system"]
              .agg(lambda names: ", ".join(pd.unique(names))).reset_index())
    listed = listed.rename(columns={"case_id": "case", "system": "systems"})
    return listed[["lab", "case", "measured", "expected", "source", "systems"]], int(group.nunique())


def html_table(frame, index=False):
    """A small table as escaped HTML (pandas escapes cells and headers)."""
    return frame.to_html(index=index, border=0, classes="plain", na_rep="", escape=True)


def runs_header(systems):
    runs = systems.groupby("run_id", sort=False)["host"].size()
    summary = "{} run(s): {}; {} system(s), {} cases.".format(
        len(runs), ", ".join(runs.index), len(systems), systems["cases"].sum())
    shown = systems.rename(columns={"run_id": "run", "os_family": "OS", "os_release": "release",
                                    "os_version": "version"})
    # Folded when long, so that the first screen still reaches the tables.
    return "<details{}><summary>{}</summary>\n{}</details>".format(
        " open" if len(systems) <= 12 else "", html.escape(summary),
        html_table(shown[["run", "host", "OS", "release", "version", "cases"]]))


def legend():
    swatches = "".join('<li><span class="swatch o-{}">{}</span> {}</li>'.format(
        kind, NOT_MEASURED if kind == "none" else "&nbsp;", html.escape(KIND_LABELS[kind])) for kind in KINDS)
    return ('<ul class="legend">{}<li><span class="swatch o-ok mismatch">✗</span> disagrees with the documented '
            'expectation</li></ul><p class="hint">Hover a cell for its case id, the expectation and its source, and '
            'the witness (the state the OS table showed).</p>').format(swatches)


def mismatch_section(listed, count):
    if not count:
        return "<p>None: every documented case agrees with its expectation.</p>"
    more = count - len(listed)
    note = "<p>{} more not listed: see the judged table.</p>".format(more) if more > 0 else ""
    return html_table(listed) + note


def lab_section(lab, layout):
    return ('<section id="{id}" class="lab"><h2>Lab {name}</h2><p>{description}</p>'
            '<div class="filters"></div><p class="status"></p>'
            '<div class="scroll"><table class="grid"><thead></thead><tbody></tbody></table></div></section>').format(
        id=html.escape("lab-" + lab), name=html.escape(lab),
        description=html.escape(layout.description or "Rows: system x {}; columns: {}.".format(
            ", ".join(axis.label for axis in layout.rows), layout.column)))


def embedded_json(data):
    """JSON for a <script> element: '<' escaped, so no text in it can close the element or open a comment."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")


def write(judged, path, title):
    """Write the report of the judged table to `path` as one self-contained HTML file; returns path."""
    judged = judged.reset_index(drop=True)
    system_codes, systems = systems_of(judged)
    strings = StringTable()
    labs, sections = [], []
    for lab in pd.unique(judged["lab"]):
        layout = lab_layout(lab)
        in_lab = (judged["lab"] == lab).to_numpy()
        # Only the columns the lab's table shows: taking rows of all of them costs more than the rest.
        columns = list(dict.fromkeys(["lab", "host", "case_id", layout.column] + LOOK_COLUMNS + list(layout.cell) + [
            column for axis in layout.rows for column in axis.columns]))
        cases = judged[columns] if in_lab.all() else judged.loc[in_lab, columns]
        cases = cases.assign(system=system_codes[in_lab])
        labs.append(lab_data(cases, layout, systems["label"].to_numpy(), strings))
        sections.append(lab_section(lab, layout))
    data = {"strings": strings.strings, "kinds": list(KINDS), "maxRows": MAX_DRAWN_ROWS,
            "notMeasured": NOT_MEASURED, "caseIdSeparator": CASE_ID_SEPARATOR, "labs": labs}
    page = PAGE.format(
        title=html.escape(title), style=STYLE, script=SCRIPT, data=embedded_json(data),
        runs=runs_header(systems), legend=legend(),
        counts=html_table(verdict_counts(system_codes, systems, judged), index=True),
        mismatches=mismatch_section(*mismatch_list(system_codes, systems, judged, MAX_MISMATCH_ROWS)),
        sections="\n".join(sections) or "<p>No results.</p>")
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    with open(path, "w", encoding="utf-8") as stream:
        stream.write(page)
    return path


STYLE = """
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 1.5em; color: #1a1a1a; }
h1 { font-size: 1.5em; } h2 { font-size: 1.25em; margin-top: 1.6em; }
table { border-collapse: collapse; }
th, td { border: 1px solid #c4c4c4; padding: 2px 7px; text-align: left; vertical-align: top; }
table.plain th, table.grid thead th { background: #f0f0f0; }
table.plain td { max-width: 40em; overflow-wrap: break-word; }
.scroll { max-height: 80vh; overflow: auto; border: 1px solid #c4c4c4; display: inline-block; max-width: 100%; }
table.grid thead th { position: sticky; top: 0; z-index: 1; }
table.grid { font-size: 13px; }
table.grid th, table.grid td { padding: 2px 5px; }
table.grid td { text-align: center; white-space: nowrap; }
table.grid tbody th { font-weight: normal; white-space: nowrap; background: #fff; }
table.grid tr.group th, table.grid tr.group td { border-top: 2px solid #555; }
table.grid th.again { color: #9a9a9a; }
.filters { display: flex; flex-wrap: wrap; gap: .4em 1.2em; margin: .6em 0; }
.filters label { font-weight: 600; }
.filters select { font: inherit; font-weight: normal; margin-left: .3em; max-width: 22em; }
.status, .hint { color: #555; }
.legend { list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: .3em 1.4em; }
.swatch { display: inline-block; min-width: 1.6em; text-align: center; border: 1px solid #888; }
.o-ok { background: #c5e4f6; }
.o-inuse { background: #f2ad82; }
.o-errno { background: #e3a8cb; }
.o-unsupported { background: repeating-linear-gradient(45deg, #e4e4e4 0 4px, #cfcfcf 4px 8px); }
.o-inconclusive { background: #f0e442; }
.o-error { background: #222; color: #fff; }
.o-none { background: #fff; color: #999; }
.mismatch { outline: 3px solid #0072b2; outline-offset: -3px; font-weight: 700; }
"""

# The page's script: builds each lab's filters from the embedded data, then draws the rows they let through.
SCRIPT = r"""
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("socklab-data").textContent);
  const S = data.strings;

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function breakable(text) {  // a long state such as LISTEN+ESTABLISHED may wrap after a "+"
    const node = el("span");
    text.split("+").forEach(function (part, i) { if (i) node.append("+", el("wbr")); node.append(part); });
    return node;
  }

  function tooltip(looks, look, caseId) {
    const lines = ["case " + caseId,
                   "measured: " + S[looks.text[look]] + " (verdict: " + S[looks.verdict[look]] + ")",
                   "expected: " + (S[looks.expected[look]] || "no documented expectation")];
    if (S[looks.source[look]]) lines.push("source: " + S[looks.source[look]]);
    lines.push("witness: " + (S[looks.witness[look]] || "(nothing seen)"));
    if (S[looks.detail[look]]) lines.push("detail: " + S[looks.detail[look]]);
    return lines.join("\n");
  }

  function showLab(lab) {
    const root = document.getElementById(lab.section);
    const head = root.querySelector("thead"), body = root.querySelector("tbody");
    const status = root.querySelector(".status");
    const width = lab.columns.length, rowCount = lab.rows.system.length;
    const hostFilter = {name: "host", label: "host", values: lab.hosts, default: -1,
                        valueOf: function (row) { return lab.systems.host[lab.rows.system[row]]; }};
    const filters = [hostFilter].concat(lab.axes.map(function (axis) {
      return {name: axis.name, label: axis.label, values: axis.values, default: axis.default, axis: axis,
              valueOf: function (row) { return lab.shapes[axis.name][lab.rows.shape[row]]; }};
    }));
    filters.forEach(function (filter) {
      const label = el("label", null, filter.label);
      filter.box = el("select");
      filter.box.name = filter.name;
      filter.box.append(new Option("(all)", "-1"));
      filter.values.forEach(function (value, i) { filter.box.append(new Option(S[value], String(i))); });
      filter.box.value = String(filter.default);
      filter.box.addEventListener("change", draw);
      label.append(filter.box);
      root.querySelector(".filters").append(label);
    });

    function caseId(row, column) {
      const parts = lab.cases[lab.caseGrid[lab.rows.shape[row] * width + column] - 1];
      return parts.map(function (part) { return S[part]; }).join(data.caseIdSeparator);
    }

    function cell(row, column) {
      const code = lab.cells[row * width + column];
      if (code === 0) {
        const td = el("td", "o-none", data.notMeasured);
        td.title = "not measured";
        return td;
      }
      const looks = lab.looks, look = code - 1;
      const td = el("td", "o-" + data.kinds[looks.kind[look]], S[looks.text[look]]);
      if (S[looks.verdict[look]] === "mismatch") td.classList.add("mismatch");
      td.title = tooltip(looks, look, caseId(row, column));
      return td;
    }

    function draw() {
      filters.forEach(function (filter) { filter.chosen = Number(filter.box.value); });
      const shown = [];
      for (let row = 0; row < rowCount; row++) {
        if (filters.every(function (f) { return f.chosen < 0 || f.valueOf(row) === f.chosen; })) shown.push(row);
      }
      const columns = lab.columns.map(function (_, c) { return c; }).filter(function (c) {
        return shown.some(function (row) { return lab.cells[row * width + c] > 0; });
      });
      const axes = filters.filter(function (f) { return f.axis && f.chosen < 0; }).map(function (f) { return f.axis; });

      const headRow = el("tr");
      headRow.append(el("th", null, "system"));
      axes.forEach(function (axis) { headRow.append(el("th", null, axis.label)); });
      columns.forEach(function (c) {
        const th = el("th");
        th.append(breakable(S[lab.columns[c]]));
        headRow.append(th);
      });
      head.replaceChildren(headRow);

      const drawn = shown.slice(0, data.maxRows), rows = document.createDocumentFragment();
      let previous = -1;
      drawn.forEach(function (row) {
        const system = lab.rows.system[row], tr = el("tr", system === previous ? null : "group");
        const name = el("th", system === previous ? "again" : null, S[lab.systems.label[system]]);
        name.scope = "row";
        tr.append(name);
        axes.forEach(function (axis) {
          const th = el("th", null, S[axis.values[lab.shapes[axis.name][lab.rows.shape[row]]]]);
          th.scope = "row";
          tr.append(th);
        });
        columns.forEach(function (c) { tr.append(cell(row, c)); });
        previous = system;
        rows.append(tr);
      });
      body.replaceChildren(rows);
      status.textContent = shown.length + " of " + rowCount + " rows" + (shown.length > drawn.length ?
        "; the first " + drawn.length + " are drawn: narrow the filters to see the others." : ".");
    }
    draw();
  }

  data.labs.forEach(showLab);
})();
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
<h1>{title}</h1>
<h2>Runs shown</h2>
{runs}
<h2>Legend</h2>
{legend}
{sections}
<h2>Verdicts per system</h2>
{counts}
<h2>Mismatches with the documented expectations</h2>
{mismatches}
<script type="application/json" id="socklab-data">{data}</script>
<script>{script}</script>
</body>
</html>
"""
