"""A picture of the results (matplotlib, PNG and SVG): one panel per lab, its systems (rows) by its cases, each
case coloured by what it means for the lab's question (analysis.layouts, analysis.palette: the same colours as the
HTML page).

A lab of few cases has a column per case, each named under the panel. A lab of more cases than the panel has room
for (bind_matrix's thousands) has a column per group of cases instead (its layout's `groups`: bind_matrix's
protocol, family and state), each group in its axis's order and labelled under the panel, the outer groups above
it: a system's cell in a group is a bar of the meanings of its cases there, in proportion, so a system that
measured one case of the group shows it whole, and a difference in the mix shows at any size. Above a panel of two
or more systems, a row marks the cases (in a group: the share of its cases) where the systems that have a result
differ. At 100 systems a row is a few pixels high and labelled with its host name. Every step is numpy on codes or
on counts per group: 1,000,000 rows in well under a second besides matplotlib's drawing.
"""
import os

import matplotlib

matplotlib.use("Agg")  # files only: no screen on a lab controller or in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from analysis import palette  # noqa: E402
from analysis.grouping import group_codes  # noqa: E402
from analysis.labels import system_label  # noqa: E402
from analysis.layouts import cell_meanings, cell_texts, group_labels, lab_layout, meaning_codes  # noqa: E402
from analysis.regress import NO_RESULT  # noqa: E402
from labs import LABS  # noqa: E402

NONE = palette.NAMES.index("none")
DIFFER = len(palette.MEANINGS)  # the code of a mark in the row of differences
COLOURS = ListedColormap([colour.background for colour in palette.MEANINGS] + [palette.DIFFER.background])
DIFFER_ROW = "systems differ \u25b6"
MANY_SYSTEMS = 60  # beyond this many rows, a row is labelled with its host name only
WIDTH = 14  # inches
DPI = 110
MIN_CASE_PIXELS = 6  # a lab with less room per case than this is drawn by groups
EDGE = "#666666"  # the edge of the legend's swatches


class Panel:
    """One lab's part of the picture, for `systems` (labels) and `cases` (their parameters, in group order):
    `codes` (systems x cases: palette codes), `differ` (per case: the systems with a result differ), `shared`
    (per case: two or more have one) and `groups` (per case: the labels of its groups)."""

    def __init__(self, lab, codes, cases, systems, differ, shared, groups):
        self.lab, self.codes, self.cases, self.systems = lab, codes, cases, systems
        self.differ, self.shared, self.groups = differ, shared, groups

    @property
    def labels(self):
        return ([DIFFER_ROW] if len(self.systems) > 1 else []) + row_labels(self.systems)


def case_order(groups, column_order, count):
    """Positions that sort the cases by their groups (outermost first), each group's values in the layout's column
    order where it is the column axis, else in order of first appearance; the agent's order within a group."""
    keys = []
    for labels in groups.values():
        order = [value for value in column_order if value in set(labels)]
        order += [value for value in pd.unique(labels) if value not in order]
        keys.append(labels.map({value: rank for rank, value in enumerate(order)}).to_numpy())
    keys.append(np.arange(count))
    return np.lexsort(keys[::-1])


def lab_panel(rows, lab):
    """The Panel of one lab's rows (a judged frame with `system` and `meaning`)."""
    layout = lab_layout(lab)
    system_of, systems = pd.factorize(rows["system"])
    case_of, firsts = group_codes(rows, ["case_id"])
    axes = {axis.name: axis.columns for axis in layout.rows + (layout.column,)}
    described = ["case_id"] + [column for name in layout.groups for column in axes.get(name, (name,))]
    cases = rows[[column for column in dict.fromkeys(described) if column in rows.columns]].iloc[firsts]
    cases = cases.reset_index(drop=True)
    groups = group_labels(cases, layout)
    order = case_order(groups, layout.column_order, len(cases))
    position = np.empty(len(order), dtype=np.int64)
    position[order] = np.arange(len(order))
    column = position[case_of]
    codes = np.full((len(systems), len(cases)), NONE, dtype=np.int8)
    codes[system_of, column] = meaning_codes(rows["meaning"])
    # what a case showed: its meaning and cell text, worked out once per distinct combination of the columns they
    # read; a case without a result differs from nothing
    shown = [column for column in dict.fromkeys(["lab", "outcome", "meaning"] + list(layout.cell)) if column in rows]
    combination, firsts = group_codes(rows, shown)
    distinct = rows[shown].iloc[firsts]
    look = pd.factorize(cell_texts(distinct) + "\x00" + distinct["meaning"].astype(str))[0][combination]
    looks = np.full((len(systems), len(cases)), -1, dtype=np.int64)
    looks[system_of, column] = np.where(rows["outcome"].isin(NO_RESULT).to_numpy(), -1, look)
    has = looks >= 0
    shared = has.sum(axis=0) >= 2
    lowest = np.where(has, looks, np.iinfo(np.int64).max).min(axis=0)
    differ = shared & (looks.max(axis=0) != lowest)
    return Panel(lab, codes, cases.iloc[order].reset_index(drop=True), list(systems), differ, shared,
                 {name: labels.iloc[order].reset_index(drop=True) for name, labels in groups.items()})


def panels(judged):
    """One Panel per lab of the judged table, in LABS order."""
    judged = judged.assign(system=system_label(judged), meaning=cell_meanings(judged))
    labs = pd.unique(judged["lab"])
    result = []
    for lab in [name for name in LABS if name in labs] + [name for name in labs if name not in LABS]:
        in_lab = (judged["lab"] == lab).to_numpy()
        result.append(lab_panel(judged if in_lab.all() else judged[in_lab], lab))
    return result


def row_labels(systems):
    """The systems' labels; beyond MANY_SYSTEMS rows are too thin for the OS part: host names (the HTML has it)."""
    return list(systems) if len(systems) <= MANY_SYSTEMS else [label.split(" (")[0] for label in systems]


def spans(values):
    """(start, end, value) of each run of equal values."""
    values = list(values)
    runs, start = [], 0
    for position in range(1, len(values) + 1):
        if position == len(values) or values[position] != values[start]:
            runs.append((start, position, values[start]))
            start = position
    return runs


def case_labels(cases):
    """Each case named by the parts of its id that vary in the panel."""
    parts = cases["case_id"].str.split("/", expand=True)
    varying = parts.loc[:, parts.nunique() > 1]
    if not len(varying.columns):
        return list(cases["case_id"])
    return varying.apply(lambda row: "/".join(row.dropna().astype(str)), axis=1).tolist()


def proportion_bars(counts, width):
    """A row of `width` pixels per row of `counts` (rows x codes): each code's share of the row's total, in code
    order; a row without counts is NONE."""
    totals = counts.sum(axis=1, keepdims=True)
    edges = np.rint(np.cumsum(counts, axis=1) * width / np.maximum(totals, 1)).astype(np.int64)
    # a pixel's code: how many codes' bars end at or before it
    image = (np.arange(width)[None, :, None] >= edges[:, None, :]).sum(axis=2)
    image = np.minimum(image, counts.shape[1] - 1)
    image[totals[:, 0] == 0] = NONE
    return image


def grouped_image(panel, width):
    """The image of a panel drawn by groups: rows the differences row (if any) and the systems; each group
    `width` pixels wide, a system's cell the bar of its cases' codes there."""
    keys = pd.Series(list(zip(*panel.groups.values())))
    group_of, names = pd.factorize(keys)  # the cases are in group order: so are the codes
    systems, count = len(panel.systems), len(names)
    cells = (np.arange(systems)[:, None] * count + group_of[None, :]) * (DIFFER + 1) + panel.codes
    counts = np.bincount(cells.ravel(), minlength=systems * count * (DIFFER + 1)).reshape(-1, DIFFER + 1)
    counts[:, NONE] = 0  # a case the system did not measure takes no room in its bar
    image = proportion_bars(counts, width).reshape(systems, count * width)
    if systems > 1:  # the share of the group's cases two or more systems measured in which they differ
        marks = np.zeros((count, DIFFER + 1), dtype=np.int64)
        marks[:, DIFFER] = np.bincount(group_of, weights=panel.differ, minlength=count).astype(np.int64)
        marks[:, NONE] = np.bincount(group_of, weights=panel.shared & ~panel.differ, minlength=count).astype(np.int64)
        image = np.vstack([proportion_bars(marks, width).reshape(1, count * width), image])
    return image


def draw(axes, panel, width_pixels):
    count = len(panel.cases)
    title = "{}: {:,} case{} × {} system{}".format(panel.lab, count, "" if count == 1 else "s", len(panel.systems),
                                                  "" if len(panel.systems) == 1 else "s")
    if len(panel.systems) > 1:
        title += "; they differ in {:,} of the {:,} cases two or more measured".format(
            int(panel.differ.sum()), int(panel.shared.sum()))
    by_groups = panel.groups and width_pixels / count < MIN_CASE_PIXELS
    if by_groups:
        names = list(panel.groups)
        keys = list(zip(*panel.groups.values()))
        runs = spans(keys)
        group_width = max(4, width_pixels // len(runs))
        image = grouped_image(panel, group_width)
        title += "; a column per {}, its cases' meanings in proportion".format(" × ".join(names))
    else:
        image = panel.codes if len(panel.systems) == 1 else np.vstack([
            np.where(panel.differ, DIFFER, NONE)[None, :], panel.codes])
    axes.imshow(image, aspect="auto", interpolation="nearest", cmap=COLOURS, vmin=0, vmax=DIFFER)
    labels = panel.labels
    axes.set_yticks(range(len(labels)), labels, fontsize=7 if len(labels) <= MANY_SYSTEMS else 4.5)
    axes.tick_params(axis="y", length=0)
    axes.set_title(title, fontsize=9, loc="left", pad=14 if by_groups and len(panel.groups) > 1 else 6)
    if not by_groups:
        axes.set_xticks(range(count), case_labels(panel.cases), rotation=90, fontsize=6)
        axes.tick_params(axis="x", length=2)
        for position in range(1, count):
            axes.axvline(position - 0.5, color="#ffffff", linewidth=0.5, antialiased=False)
        return
    centres, inner_names = [], []
    for number, (start, end, key) in enumerate(runs):
        centres.append((number + 0.5) * group_width - 0.5)
        inner_names.append(key[-1])
        if number:
            changed = key[:-1] != runs[number - 1][2][:-1]
            # crisp lines: a colour of the picture is a meaning's, or where one meets another or the page
            axes.axvline(number * group_width - 0.5, color="#000000" if changed else "#ffffff",
                         linewidth=1.2 if changed else 0.8, antialiased=False)
    axes.set_xticks(centres, inner_names, rotation=90, fontsize=6)
    axes.tick_params(axis="x", length=0)
    if len(names) > 1:
        top = axes.secondary_xaxis("top")
        outer_runs = spans([key[:-1] for _, _, key in runs])
        top.set_xticks([(start + end) / 2 * group_width - 0.5 for start, end, _ in outer_runs],
                       [" ".join(value) for _, _, value in outer_runs], fontsize=7)
        top.tick_params(axis="x", length=0, pad=1)


def label_height(panel, width_pixels):
    """Inches under a panel for its case or group names (rotated text, ~0.05 in per character at 6 pt)."""
    if panel.groups and width_pixels / len(panel.cases) < MIN_CASE_PIXELS:
        names = list(panel.groups.values())[-1]
    else:
        names = pd.Series(case_labels(panel.cases))
    return 0.2 + 0.05 * int(names.astype(str).str.len().max() or 0)


def write(judged, out_dir, name="matrix"):
    """<out_dir>/<name>.png and .svg; returns their paths."""
    shown = panels(judged)
    longest = max(len(label) for panel in shown for label in panel.labels)
    left = min(0.45, (0.25 + 0.055 * longest) / WIDTH)
    width_pixels = int(WIDTH * (0.99 - left) * DPI)
    # inches per panel: a row of at most 0.2 in per system (less for many), then its labels under it and its
    # title (and outer group names) over it
    images = [min(0.2 * len(panel.labels), 6.0) for panel in shown]
    unders = [label_height(panel, width_pixels) for panel in shown]
    overs = [0.55 for _ in shown]
    total = sum(images) + sum(unders) + sum(overs) + 0.45
    figure = plt.figure(figsize=(WIDTH, total))
    top = 1 - 0.45 / total
    for panel, image, under, over in zip(shown, images, unders, overs):
        top -= over / total
        axes = figure.add_axes((left, top - image / total, 0.99 - left, image / total))
        draw(axes, panel, width_pixels)
        top -= (image + under) / total
    present = {code for panel in shown for code in np.unique(panel.codes)}
    if any(panel.differ.any() for panel in shown):
        present.add(DIFFER)
    colours = [colour for code, colour in enumerate(palette.MEANINGS + (palette.DIFFER,))
               if code in present or colour.name == "none"]
    legend = figure.legend(handles=[Patch(facecolor=colour.background, edgecolor=EDGE, label=colour.short)
                                    for colour in colours],
                           loc="upper center", ncols=len(colours), fontsize=8, frameon=False, bbox_to_anchor=(0.5, 1.0))
    for patch, colour in zip(legend.get_patches(), colours):  # the SVG names each swatch by its meaning
        patch.set_gid("meaning-" + colour.name)
    paths = [os.path.join(out_dir, "{}.{}".format(name, kind)) for kind in ("png", "svg")]
    with plt.rc_context({"svg.fonttype": "none"}):  # SVG text as text, not as glyph outlines: smaller and faster
        for path in paths:
            figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return paths
