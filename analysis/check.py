"""`check`: a run judged against the expectations, its verdict counts and every mismatch with its source."""
from analysis import report, terminal
from analysis.expectations import verdict_counts


def check(run_dir, expectations, console, as_json=False):
    """Print the count of cases per verdict and host, then every mismatch (expected, measured, witness, source), as
    rich tables on `console` or (`as_json`) as JSON on stdout: run, cases, exit_status, verdicts, mismatches;
    returns the exit status: 1 if a case disagrees with the expectations, else 0. A run with no case is a
    UserError (report.judged_runs)."""
    judged = report.judged_runs([run_dir], expectations)
    counts, wrong = verdict_counts(judged), terminal.mismatch_rows(judged)
    status = int(bool(wrong))
    if as_json:
        terminal.print_json({"run": run_dir, "cases": len(judged), "exit_status": status,
                             "verdicts": terminal.verdict_rows(counts), "mismatches": wrong})
    else:
        console.print(terminal.verdict_table(counts, "run {}: {:,} cases".format(run_dir, len(judged))))
        console.print(terminal.mismatch_table(wrong) if wrong else "no mismatches")
    return status
