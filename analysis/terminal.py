"""What the tasks print on a terminal: rich tables of the verdicts and the mismatches, in the palette's colours
(analysis.palette: the same meaning has the same colour here, in the HTML page and in the picture), and the
stable JSON that `--json` prints instead."""
import json
import time
import sys

from rich.table import Table

from analysis import palette
from analysis.expectations import VERDICTS, documented_share
from analysis.layouts import cell_texts


def verdict_rows(counts):
    """[{host, lab, <every verdict>: count, documented_share}] of report.verdict_counts, every verdict present (0
    when none); documented_share is the share of the measured cases a source documents (findings.documented_share:
    match and mismatch among those and undocumented), None where none was measured."""
    counts = counts.reindex(columns=list(VERDICTS), fill_value=0)
    documented, measured = documented_share(counts)
    return [dict(host=host, lab=lab, **{verdict: int(count) for verdict, count in row.items()},
                 documented_share=round(documented[key] / measured[key], 4) if measured[key] else None)
            for key, row in counts.iterrows() for host, lab in [key]]


def verdict_table(counts, title):
    """The verdict counts per host and lab as a rich table: the verdicts that occur, and mismatch always (it fits
    an 80-column terminal), and the share of the measured cases a source documents; a verdict's header in its palette colour, a count of mismatches above zero marked."""
    rows = verdict_rows(counts)
    shown = [verdict for verdict in VERDICTS if verdict == "mismatch" or any(row[verdict] for row in rows)]
    table = Table("host", "lab", *shown, title=title)
    table.columns[1].no_wrap = True
    for column in table.columns[2:]:
        column.header_style, column.justify = palette.rich_style(str(column.header)), "right"
    table.add_column("documented", justify="right")
    for row in rows:
        share = row["documented_share"]
        table.add_row(row["host"], row["lab"], *[
            "[{}]{:,}[/]".format(palette.rich_style("mismatch"), row[verdict]) if verdict == "mismatch" and row[
                verdict] else "{:,}".format(row[verdict]) for verdict in shown],
            "" if share is None else "{:.0%}".format(share))
    return table


MISMATCH_COLUMNS = ["host", "lab", "case_id", "expected", "measured", "witness", "source"]


def mismatch_rows(judged):
    """[{MISMATCH_COLUMNS}] of every mismatching case of a judged table."""
    wrong = judged[judged["verdict"] == "mismatch"]
    wrong = wrong.assign(measured=cell_texts(wrong.drop(columns="verdict")))
    return wrong[MISMATCH_COLUMNS].astype(object).fillna("").astype(str).to_dict(orient="records")


def mismatch_table(rows):
    table = Table(*MISMATCH_COLUMNS, title="{} mismatch{}".format(len(rows), "" if len(rows) == 1 else "es"))
    table.columns[MISMATCH_COLUMNS.index("measured")].style = palette.rich_style("mismatch")
    for row in rows:
        table.add_row(*[row[column] for column in MISMATCH_COLUMNS], end_section=False)
    return table


def print_json(document):
    """A task's --json answer on stdout: indented, UTF-8, keys in the order the task documents."""
    sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def written_report(console, runs, expectations, archive=None, out=None):
    """report.report_runs as a step of its own on `console`: one line when it starts, the step it is at while it
    runs (a spinner on a terminal, a line per step elsewhere), one line with its time when it is done; returns what
    report_runs returns."""
    from analysis.report import report_runs
    started = time.perf_counter()
    console.print("writing the report of {} ...".format(runs[0]), highlight=False, soft_wrap=True)
    with console.status("writing the report", spinner="dots") as status:
        def progress(step):
            status.update("writing the report: {}".format(step))
            if not console.is_terminal:
                console.print("  {}".format(step), highlight=False, soft_wrap=True)
        written = report_runs(runs, expectations, archive, out, progress)
    console.print("report written in {:.1f} s: {}".format(time.perf_counter() - started, written[0]),
                  highlight=False, soft_wrap=True)
    return written
