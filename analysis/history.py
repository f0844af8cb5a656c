"""One host's history across every stored run: each case whose result changed from one run to the next, in which
run, and with which OS release, sysctls and agent the change came.

Runs are read from the given folders (results/, archive/) and ordered by start time. Results are compared as in
analysis/regress.py ("bind EADDRINUSE", "ok", ...). A run in which a case has no result (inconclusive, error) or
which did not hold it (another --where) is skipped for that case: a change is between the two nearest runs that
both had a result for it.
"""
import os

import numpy as np
import pandas as pd

from analysis.regress import ABSENT, NO_RESULT, fact_values, host_cases, markdown_table, result_text, run_order
from analysis.terminal import print_json
from formats import rundir, table
from formats.errors import UserError
from formats.table import PARAMETER_COLUMNS, text_column

CASE = ["lab", "case_id"]


def host_runs(folders, host):
    """(run_dir, manifest) of every run under `folders` that holds a log of `host`, oldest first."""
    runs = [(run_dir, rundir.read_run(run_dir, with_logs=False).manifest) for folder in folders
            for run_dir in rundir.run_dirs(folder)]
    held = [(run_dir, manifest) for run_dir, manifest in runs
            if host in manifest["hosts"] and os.path.exists(rundir.log_path(run_dir, host))]
    if not held:
        seen = sorted({name for _, manifest in runs for name in manifest["hosts"]})
        raise UserError("no stored run under {} has host {!r} (hosts: {})".format(
            ", ".join(folders), host, ", ".join(seen) or "none"), field="--host")
    return sorted(held, key=lambda run: (str(run[1].get("started") or ""), run[1]["run_id"]))


def facts_diff(before, after):
    """"name old → new; ..." of the facts that differ between two runs' {fact: text}."""
    names = list(dict.fromkeys(list(before) + list(after)))
    return "; ".join("{} {} → {}".format(name, before.get(name, ABSENT), after.get(name, ABSENT))
                     for name in names if before.get(name) != after.get(name))


def as_folders(folders):
    return [folders] if isinstance(folders, str) else list(folders)


def load_history(folders, host):
    """(runs, cases) of `host`: runs has run (its number, oldest 0), run_id, started, os_release, agent and facts
    ({fact: text}); cases is every case of those runs (their table, Categoricals) with its result and run number."""
    held = host_runs(as_folders(folders), host)
    # the runs' columnar copies hold their rows and facts: a year of nightly runs is read in seconds, not minutes
    facts_of, columnar = table.host_rows([rundir.Run(run_dir, manifest, {}) for run_dir, manifest in held], host)
    rows, frames, numbers = [], [], []
    if len(columnar):
        frames.append(columnar.drop(columns="run"))
        numbers.append(columnar["run"].to_numpy())
    for number, (run_dir, manifest) in enumerate(held):
        if number in facts_of:
            host_facts = facts_of[number]
        else:
            host_facts, cases = host_cases(run_dir, host)
            frames.append(table.categorical(cases))
            numbers.append(np.full(len(cases), number))
        facts = dict(fact_values(host_facts or {}), agent=manifest.get("agent_version", ""))
        rows.append((number, manifest["run_id"], str(manifest.get("started", "")), facts.get("os_release", ""),
                     facts["agent"], facts))
    runs = pd.DataFrame(rows, columns=["run", "run_id", "started", "os_release", "agent", "facts"])
    cases = table.concat(frames)
    if cases.empty:
        raise UserError("no stored run holds a case of host {!r}: no history".format(host), field="--host")
    cases = cases.assign(run=np.concatenate(numbers))
    if len(frames) > 1:  # runs read from their logs too: every row in the order of its run, as the agent ran them
        cases = cases.iloc[np.argsort(cases["run"].to_numpy(), kind="stable")].reset_index(drop=True)
    return runs, cases.assign(result=result_text(cases))  # once over every run, by codes


def changes_between_runs(runs, cases):
    """One row per case and run its result changed in (see host_history). Worked on codes and arrays: a year of
    nightly runs is millions of rows, of which the few that changed are made text."""
    kept = ~cases["outcome"].isin(NO_RESULT).to_numpy()
    results = pd.DataFrame({"order": run_order(cases, CASE), "run": cases["run"].to_numpy(),
                            "result": cases["result"].to_numpy(dtype=object)}, index=cases.index)[kept]
    results = results.sort_values(["order", "run"], kind="stable")
    order, run, result = (results[column].to_numpy() for column in ("order", "run", "result"))
    changed = np.flatnonzero((order[1:] == order[:-1]) & (result[1:] != result[:-1])) + 1  # vs the run before
    rows = results.index[changed]
    changes = pd.DataFrame({column: text_column(cases.loc[rows], column) for column in CASE + PARAMETER_COLUMNS})
    changes = changes.assign(order=order[changed], run=run[changed], previous_run=run[changed - 1],
                             before=result[changed - 1], result=result[changed])
    # the facts differ per pair of runs, not per case: worked out once per pair
    pairs = changes[["previous_run", "run"]].drop_duplicates()
    facts = runs["facts"]
    diffs = {(old, new): facts_diff(facts[old], facts[new]) for old, new in pairs.itertuples(index=False)}
    changes = changes.assign(
        run_id=changes["run"].map(runs["run_id"]), started=changes["run"].map(runs["started"]),
        previous_run_id=changes["previous_run"].map(runs["run_id"]),
        os_release=changes["run"].map(runs["os_release"]),
        facts_changed=pd.Series(list(zip(changes["previous_run"], changes["run"])), index=changes.index,
                                dtype=object).map(diffs),
        after=changes["result"])
    columns = ["run_id", "started", "previous_run_id", "lab", "case_id"] + PARAMETER_COLUMNS + [
        "before", "after", "os_release", "facts_changed"]
    return changes.sort_values(["run", "order"])[columns].reset_index(drop=True)


def host_history(folders, host):
    """The changes of `host`'s results across the runs under `folders` (one folder or several), one row per case
    and run it changed in: run_id, started, previous_run_id, lab, case_id, the parameters, before, after (results),
    os_release (in the run of the change) and facts_changed (between the two runs, agent version included)."""
    return changes_between_runs(*load_history(folders, host))


def history_markdown(folders, host):
    runs, cases = load_history(folders, host)
    changes = changes_between_runs(runs, cases)
    parameters = [column for column in PARAMETER_COLUMNS if (changes[column] != "").any()]
    shown = changes[["run_id", "started", "lab"] + parameters + ["before", "after", "os_release", "facts_changed"]]
    return "\n\n".join([
        "# History of host {}".format(host),
        "## Runs ({})".format(len(runs)), markdown_table(runs.drop(columns=["run", "facts"])),
        "## Cases whose outcome changed from the run before ({})".format(len(changes)),
        "Only runs with a result for the case count (inconclusive and error claim nothing). `facts_changed`: what "
        "differs between the two runs' host facts and agent.",
        markdown_table(shown),
    ]) + "\n"


def history_json(folders, host):
    """The history as history --json prints it: host, runs ([{run_id, started, os_release, agent}], oldest
    first), changes ([{run_id, started, previous_run_id, lab, case_id, parameters: {the non-empty ones}, before,
    after, os_release, facts_changed}])."""
    runs, cases = load_history(folders, host)
    changes = changes_between_runs(runs, cases)
    fields = ["run_id", "started", "previous_run_id", "lab", "case_id"]
    return {"host": host,
            "runs": runs[["run_id", "started", "os_release", "agent"]].to_dict(orient="records"),
            "changes": [dict({field: row[field] for field in fields},
                             parameters={column: row[column] for column in PARAMETER_COLUMNS if row[column] != ""},
                             **{field: row[field] for field in ("before", "after", "os_release", "facts_changed")})
                        for row in changes.astype(object).fillna("").to_dict(orient="records")]}


def history(runs_folders, host, console, as_json=False):
    """Print `host`'s history over the runs under `runs_folders` (one folder or several) on `console` as
    Markdown (or, `as_json`, history_json on stdout); returns the exit status, 0 (a history is information, not a
    check)."""
    if as_json:
        print_json(history_json(runs_folders, host))
    else:
        console.print(history_markdown(runs_folders, host), markup=False, soft_wrap=True)
    return 0
