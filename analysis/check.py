"""`check`: a run judged against the expectations, its verdict counts and every mismatch with its source."""
from rich.table import Table

from analysis import report


def check(run_dir, expectations, console):
    """Print the count of cases per verdict and host, then every mismatch (expected, measured, witness, source);
    returns the exit status: 1 if a case disagrees with the expectations, else 0. A run with no case is a
    UserError (report.judged_runs)."""
    judged = report.judged_runs([run_dir], expectations)
    console.print("run {}: {} cases".format(run_dir, len(judged)))
    console.print(report.verdict_counts(judged).to_string())
    wrong = report.mismatches(judged)
    if wrong.empty:
        console.print("no mismatches")
        return 0
    table = Table(*wrong.columns, title="{} mismatches".format(len(wrong)))
    for row in wrong.astype(str).itertuples(index=False):
        table.add_row(*row)
    console.print(table)
    return 1
