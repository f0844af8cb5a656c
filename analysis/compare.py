"""Cross-system diff: the cases (same lab and case_id) where two systems' results differ, i.e. what cross-platform
code must do differently on one system than on the other ("what must my code do differently on Windows?").

A system is a host name, else an OS family (linux, windows, freebsd, ...); archived published hosts such as
winxp-sp3 count like measured ones. Results are spelled as in analysis/regress.py ("bind EADDRINUSE", "ok").
Only cases with a result on both systems are compared: inconclusive and error claim nothing, and a case one system
never ran is left out (seed 004's archived hosts hold only its 8 to 12 cells, so a diff with them is over those).

A family of several hosts (or a host in several runs) gives each case the set of its results. When they agree the
cell is that result; when they disagree, each result is followed by its hosts, which marks the cell:
"bind EADDRINUSE (rh8-linux-2.4.20); ok (local)". A case is listed when the two systems' sets differ.
"""
import pandas as pd

from analysis.labels import system_label
from analysis.regress import NO_RESULT, markdown_table, result_text
from analysis.terminal import print_json
from formats.errors import UserError
from formats.table import PARAMETER_COLUMNS, concat, load_runs

CASE = ["lab", "case_id"]
SEPARATOR = "; "  # between a cell's results; not "|", which would split a Markdown table's cell


def system_rows(table, name, field):
    """The rows of a system: the host of that name, else the hosts of that OS family; `field` names the option
    that gave it, for the error."""
    for column in ("host", "os_family"):
        rows = table[table[column] == name]
        if not rows.empty:
            return rows
    raise UserError("no host or OS family {!r} here (hosts: {}; families: {})".format(
        name, ", ".join(sorted(table["host"].unique())), ", ".join(sorted(table["os_family"].unique()))),
        field=field)


def system_cells(rows, named=True):
    """Per lab and case_id: results (its distinct results, sorted, joined: what is compared) and text (the cell;
    where hosts disagree, each result names its hosts, or counts them when not `named`)."""
    rows = rows[~rows["outcome"].isin(NO_RESULT)]
    hosts = rows.assign(result=result_text(rows))[CASE + ["result", "host"]].drop_duplicates().astype(str)
    by_result = hosts.sort_values("host").groupby(CASE + ["result"])["host"].agg(
        ", ".join if named else lambda names: "{} host{}".format(len(names), "" if len(names) == 1 else "s"))
    by_result = by_result.reset_index()
    cells = by_result.groupby(CASE).agg(results=("result", SEPARATOR.join), count=("result", "size"))
    labelled = (by_result["result"] + " (" + by_result["host"] + ")").groupby(
        [by_result["lab"], by_result["case_id"]]).agg(SEPARATOR.join)
    cells["text"] = cells["results"].where(cells["count"] == 1, labelled)
    return cells[["results", "text"]]


def paired_cells(table, a, b):
    """Both systems' cells (results_a, text_a, results_b, text_b) of each case both have a result for."""
    if a == b:
        raise UserError("name two different systems", field="--b")
    return system_cells(system_rows(table, a, "--a")).join(system_cells(system_rows(table, b, "--b")), how="inner",
                                                           suffixes=("_a", "_b"))


def differences(table, paired, a, b):
    differ = paired[paired["results_a"] != paired["results_b"]].rename(columns={"text_a": a, "text_b": b})
    # the parameters' rows come in the order the agent ran the cases: the join keeps it
    parameters = (table.drop_duplicates(CASE).set_index(CASE).reindex(columns=PARAMETER_COLUMNS)
                  .astype(object).fillna(""))
    diff = parameters.join(differ[[a, b]], how="inner").reset_index()
    used = [column for column in PARAMETER_COLUMNS if (diff[column] != "").any()]
    return diff[CASE + used + [a, b]]


def system_diff(table, a, b):
    """lab, case_id, the parameters, then one column per system (named a and b) with its cell, for each case both
    systems have a result for and where their results differ, in the order the agent ran them."""
    return differences(table, paired_cells(table, a, b), a, b)


def compare_markdown(table, a, b):
    """The diff as Markdown, headed by the hosts each system stands for and how many cases both have."""
    paired = paired_cells(table, a, b)
    diff = differences(table, paired, a, b)
    lines = ["- **{}**: {}".format(name, ", ".join(members(table, name, field)))
             for name, field in ((a, "--a"), (b, "--b"))]
    return "\n\n".join([
        "# {} vs {}: cases whose outcome differs".format(a, b), "\n".join(lines),
        "{} case(s) have a result on both; {} differ. A cell names its hosts when they disagree.".format(
            len(paired), len(diff)),
        markdown_table(diff.drop(columns="case_id")),
    ]) + "\n"


def members(table, name, field):
    return list(system_label(system_rows(table, name, field)).unique())


def compare_json(table, a, b):
    """The diff as compare --json prints it: a, b, systems ({name: the hosts it stands for}), cases_compared (the
    cases both have a result for), differences ([{lab, case_id, parameters: {the non-empty ones}, a, b}], a and b
    being each system's cell)."""
    paired = paired_cells(table, a, b)
    diff = differences(table, paired, a, b)
    parameters = [column for column in diff.columns if column not in CASE + [a, b]]
    return {"a": a, "b": b, "systems": {a: members(table, a, "--a"), b: members(table, b, "--b")},
            "cases_compared": len(paired),
            "differences": [{"lab": row["lab"], "case_id": row["case_id"],
                             "parameters": {column: row[column] for column in parameters if row[column] != ""},
                             "a": row[a], "b": row[b]} for row in diff.to_dict(orient="records")]}


def compare(judged_or_runs, a, b, console, beside=(), as_json=False):
    """Print on `console` the cases where systems `a` and `b` differ (or, `as_json`, compare_json on stdout), over
    a results (or judged) table or the run directories given, and the runs `beside` them (the archive); returns the
    exit status, 0 (the differences are the answer, not a failure). Runs given that hold no case are a UserError:
    nothing was measured to compare."""
    table = judged_or_runs
    if not isinstance(table, pd.DataFrame):
        table = load_runs(list(judged_or_runs))
        if table.empty:
            raise UserError("the run holds no case: nothing to compare", path=", ".join(judged_or_runs))
        if beside:
            table = concat([table, load_runs(list(beside))])
    if as_json:
        print_json(compare_json(table, a, b))
    else:
        console.print(compare_markdown(table, a, b), markup=False, soft_wrap=True)
    return 0
