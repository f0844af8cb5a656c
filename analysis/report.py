"""Reports of judged results: Markdown in seed 004's layout (rows: system x options, columns: states), CSVs, a
picture of the matrix (analysis.picture) and one self-contained HTML page (analysis.html).

Every table is a pandas pivot of the tidy table; the Markdown is rendered from the pivots, the CSVs are the pivots.
Archived published runs (archive/) stand beside the run's own hosts, so every system the seeds name has a row.
"""
import os

import pandas as pd

from analysis import html, picture
from analysis.labels import (MISMATCH_MARK, NOT_MEASURED, SEED_LAYOUT, cell_texts, options_label,
                             system_label)
from analysis.results import write_csv
from labs import bind_matrix



def state_pivot(frame, rows):
    """Rows `rows`, one column per bind_matrix state (lifecycle order), each cell its cell text (cell_texts)."""
    frame = frame.assign(system=system_label(frame), options=options_label(frame), cell=cell_texts(frame))
    table = frame.pivot_table(index=rows, columns="state", values="cell", aggfunc="first", sort=False)
    states = [state for state in bind_matrix.TCP_STATES if state in table.columns]
    return table.reindex(columns=states).fillna(NOT_MEASURED)


def select(frame, conditions):
    mask = pd.Series(True, index=frame.index)
    for column, value in conditions.items():
        mask &= frame[column] == value
    return frame[mask]


def seed_table(judged):
    """Seed 004's table grown up: every system, same options on both sockets."""
    cells = select(judged, SEED_LAYOUT)
    return state_pivot(cells[cells["first_opts"] == cells["second_opts"]], ["system", "options"])


def option_pairs(judged):
    """Every option pair per system, protocol and family (rows), states (columns): both sockets on the wildcard,
    the second from another process. One pivot for all systems: a report of 100 hosts stays fast."""
    conditions = {key: SEED_LAYOUT[key] for key in ("lab", "first_addr", "second_addr", "prober")}
    return state_pivot(select(judged, conditions), ["system", "proto", "family", "options"])


def option_pair_tables(pairs):
    """option_pairs split into one table per (system, protocol, family)."""
    for key, table in pairs.groupby(level=["system", "proto", "family"], sort=False):
        yield key, table.droplevel(["system", "proto", "family"])


def verdict_counts(judged):
    return judged.pivot_table(index="host", columns="verdict", values="case_id", aggfunc="count", fill_value=0)


def mismatches(judged):
    columns = ["host", "case_id", "expected", "outcome", "bind", "listen", "witness", "source"]
    return judged.loc[judged["verdict"] == "mismatch", columns]


def markdown_table(frame, index=True):
    """A pivot's row labels become ordinary columns (one per index level), so a reader sees no tuples."""
    if frame.empty:
        return "_(none)_"
    frame = frame.reset_index() if index else frame
    return frame.to_markdown(index=False, disable_numparse=True)  # cells are text: tabulate need not parse numbers


def write(judged, run_dir, manifest, out_dir):
    """report.md and its CSVs into out_dir; returns the path of report.md."""
    os.makedirs(out_dir, exist_ok=True)
    judged = judged.assign(system=system_label(judged))
    seed = seed_table(judged)
    counts = verdict_counts(judged[judged["run_id"] == manifest["run_id"]])
    wrong = mismatches(judged)
    seed.to_csv(os.path.join(out_dir, "seed004_layout.csv"))
    write_csv(judged.drop(columns="system"), os.path.join(out_dir, "judged.csv"))
    hosts = pd.DataFrame.from_dict(manifest["hosts"], orient="index")[["status", "cases", "reason"]]
    parts = [
        "# socklab report: run {}".format(manifest["run_id"]),
        "Run directory `{}`, started {}, ended {}; agent {}.".format(
            run_dir, manifest["started"], manifest["ended"], manifest["agent_version"]),
        "## Hosts", markdown_table(hosts.rename_axis("host")),
        "## Verdicts", markdown_table(counts),
        "## Seed 004's table, for every system",
        "Outcome of the second socket's bind() (and of its listen() when only that failed); TCP over IPv4, both "
        "sockets on the wildcard address, the second from another process of the same user, the same options on "
        "both sockets. The earlier socket: LISTEN; LISTEN+ESTABLISHED (seed 004's ESTABLISHED: listener and an "
        "accepted connection); then with the listener closed: ESTABLISHED, CLOSE_WAIT, FIN_WAIT_2, TIME_WAIT. "
        "{} marks a cell that disagrees with the documented expectation; {} a cell not measured.".format(
            MISMATCH_MARK.strip(), NOT_MEASURED),
        markdown_table(seed),
        "## Mismatches with the documented expectations", markdown_table(wrong, index=False),
    ]
    pairs = option_pairs(judged)
    pairs.to_csv(os.path.join(out_dir, "option_pairs.csv"))
    parts.append("## Every option pair (first → second), wildcard on both sockets, another process")
    for (system, proto, family), table in option_pair_tables(pairs):
        parts += ["### {}: {} over {}".format(system, proto, family), markdown_table(table)]
    parts += ["## The matrix as a picture", "Outcome of every case by system; below, the cases two or more systems "
              "measured, a marker where they differ.", "![outcomes by system and case](matrix.png)"]
    picture.write(judged, out_dir)
    html.write(judged, os.path.join(out_dir, "report.html"), "socklab report: run {}".format(manifest["run_id"]))
    path = os.path.join(out_dir, "report.md")
    with open(path, "w", encoding="utf-8") as stream:
        stream.write("\n\n".join(parts) + "\n")
    return path, counts, wrong
