"""A picture of the matrix (matplotlib, PNG and SVG): outcomes by system (rows) and case (columns).

Cases are in the order of their lab's table, as the agents emit them, so the blocks of one protocol, family or
state sit side by side. The upper panel is every case; the lower one the cases that two or more
systems measured (an archived published run holds only its own table's cases), under a row marking each case
where they differ: where systems differ shows at a glance. Colours come from one small table of outcome kinds, the same for
every lab; a case a system did not measure is left white.
"""
import os

import matplotlib

matplotlib.use("Agg")  # files only: no screen on a lab controller or in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from analysis.labels import system_label  # noqa: E402
from labs.vocabulary import ERROR, INCONCLUSIVE, OK, UNSUPPORTED  # noqa: E402

# Outcome kinds and their colours (Okabe-Ito, safe for colour-blind readers); code 0 is "not measured", and the
# last code marks, in its own row above the shared cases, those where the systems differ.
KINDS = [("not measured", "#ffffff"), ("ok", "#009e73"), ("EADDRINUSE", "#d55e00"), ("other error", "#e69f00"),
         ("unsupported", "#999999"), ("inconclusive", "#56b4e9"), ("agent error", "#000000"),
         ("systems differ", "#cc0000")]
KIND_OF = {OK: 1, "EADDRINUSE": 2, UNSUPPORTED: 4, INCONCLUSIVE: 5, ERROR: 6}
OTHER_ERROR, DIFFER = 3, 7
DIFFER_ROW = "systems differ \u25b6"
NAMED_CASES = 48  # up to this many columns, each case is named under the panel
MANY_SYSTEMS = 60  # beyond this many rows, a row is labelled with its host name only


def outcome_codes(outcomes):
    """The KINDS code of each outcome (any error name not in KIND_OF is 'other error'), looked up once per
    distinct outcome."""
    codes, distinct = pd.factorize(outcomes)
    return np.array([KIND_OF.get(outcome, OTHER_ERROR) for outcome in distinct], dtype=np.int8)[codes]


def matrix(judged):
    """(systems x cases table of KINDS codes, 0 where not measured), cases in the order the agents emitted them
    (their lab's table order), grouped by lab. Filled by group codes, not a pivot: 1,000,000 rows in ~0.3 s."""
    system_codes, systems = pd.factorize(system_label(judged))
    by_case = judged.groupby(["lab", "case_id"], sort=False)
    cases = by_case.size().index.to_frame(index=False)
    grid = np.zeros((len(systems), len(cases)), dtype=np.int8)
    grid[system_codes, by_case.ngroup().to_numpy()] = outcome_codes(judged["outcome"])
    order = np.argsort(cases["lab"].to_numpy(), kind="stable")
    return pd.DataFrame(grid[:, order], index=np.asarray(systems),
                        columns=pd.MultiIndex.from_frame(cases.iloc[order].reset_index(drop=True)))


def shared_cases(table):
    """The columns two or more systems measured, with a first row marking those where the systems differ."""
    grid = table.to_numpy()
    measured = grid > 0
    shared = measured.sum(axis=0) >= 2
    lowest = np.where(measured, grid, np.iinfo(grid.dtype).max).min(axis=0)
    differ = shared & (grid.max(axis=0) != lowest)
    part = table.loc[:, shared]
    marks = pd.DataFrame([np.where(differ[shared], DIFFER, 0)], index=[DIFFER_ROW], columns=part.columns)
    return pd.concat([marks, part]), int(differ.sum())


def fitted(table, width):
    """At most `width` columns, as an image `width` pixels wide can show them: every k-th case (what nearest-pixel
    resampling shows anyway, done here in numpy because matplotlib takes seconds on 1,000,000 cells), except the
    row of differences, which shows a difference anywhere in the k cases it stands for."""
    step = -(-len(table.columns) // width)
    if step == 1:
        return table, 1
    grid = table.to_numpy()
    kept = grid[:, ::step].copy()
    if table.index[0] == DIFFER_ROW:
        padded = np.zeros(kept.shape[1] * step, dtype=grid.dtype)
        padded[:grid.shape[1]] = grid[0]
        kept[0] = padded.reshape(-1, step).max(axis=1)
    return pd.DataFrame(kept, index=table.index, columns=table.columns[::step]), step


def row_labels(systems):
    """The systems' labels; beyond MANY_SYSTEMS rows are too thin for the OS part: host names (the HTML has it)."""
    return list(systems) if len(systems) <= MANY_SYSTEMS else [label.split(" (")[0] for label in systems]


def draw(axes, table, title, width=2000):
    table, step = fitted(table, width)
    colours = ListedColormap([colour for _, colour in KINDS])
    axes.imshow(table.to_numpy(), aspect="auto", interpolation="nearest", cmap=colours, vmin=0,
                vmax=len(KINDS) - 1)
    labels = row_labels(table.index)
    axes.set_yticks(range(len(labels)), labels, fontsize=7 if len(labels) <= MANY_SYSTEMS else 5)
    axes.set_title(title + ("" if step == 1 else " (one column per {} cases)".format(step)), fontsize=9, loc="left")
    columns = table.columns.get_level_values("case_id")
    if len(columns) <= NAMED_CASES:  # few enough to name each case, by the parts of its id that vary here
        parts = columns.str.split("/", expand=True).to_frame(index=False)
        varying = parts.loc[:, parts.nunique() > 1]
        # ids of different labs have different numbers of parts: the missing ones are left out, not spelled "nan"
        labels = (varying.apply(lambda row: "/".join(row.dropna().astype(str)), axis=1) if len(varying.columns)
                  else pd.Series(columns))
        axes.set_xticks(range(len(columns)), labels, rotation=90, fontsize=6)
    else:
        axes.set_xticks([])


def write(judged, out_dir, name="matrix"):
    """<out_dir>/<name>.png and .svg; returns their paths."""
    table = matrix(judged)
    shared, differ = shared_cases(table)
    # a row of 0.2 in per system, less when there are many: the picture stays about a screen high (and quick)
    row = min(0.2, 7 / len(shared.index))
    height = 1.0 + row * len(table.index)
    named = len(shared.columns) <= NAMED_CASES
    size = (12, 2 * height + (2.8 if named else 1.0))
    # margins from the longest system label and the case names rather than a layout engine: with a hundred
    # labels, the engine's repeated measuring takes seconds
    longest = max(len(label) for label in row_labels(shared.index))
    figure, (every, both) = plt.subplots(2, 1, figsize=size, gridspec_kw={"hspace": 0.5 / height})
    figure.subplots_adjust(left=min(0.5, (0.25 + 0.06 * longest) / size[0]), right=0.99, top=1 - 0.3 / size[1],
                           bottom=(0.55 + (2.2 if named else 0.0)) / size[1])
    draw(every, table, "every case ({:,}), in the order of the lab's table".format(len(table.columns)))
    if len(shared.columns):
        draw(both, shared, "cases two or more systems measured ({:,}); they differ in {:,}".format(
            len(shared.columns), differ))
    else:
        both.set_axis_off()
        both.set_title("no case was measured by two systems", fontsize=9, loc="left")
    figure.legend(handles=[Patch(facecolor=colour, edgecolor="#666666", label=label) for label, colour in KINDS],
                  loc="lower center", ncols=len(KINDS), fontsize=8, frameon=False)
    paths = [os.path.join(out_dir, "{}.{}".format(name, kind)) for kind in ("png", "svg")]
    with plt.rc_context({"svg.fonttype": "none"}):  # SVG text as text, not as glyph outlines: smaller and faster
        for path in paths:
            figure.savefig(path, dpi=110)
    plt.close(figure)
    return paths
