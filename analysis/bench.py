"""Speed figures of the analysis for `./socklab bench`, on runs grown from a real run of this machine: load +
expectations diff + report of a synthetic run of 1,000,000 rows over 100 hosts (targets: at most 5 s and 1.5 GB),
and `history --host` over a year of nightly runs, 365 of 8,000 cases (target: at most 10 s). Printed, never
asserted."""
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd

from formats import hostlog, manifest, rundir, table
from formats.records import FACT_COLUMNS

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NIGHTLY_HOST = "nightly"


def real_cases(source_run):
    """(cases as plain text, facts) of the first host of a real run: what the synthetic runs are grown from."""
    base = table.load(source_run)
    base = base.astype({column: str for column in base.columns if column != "errno"})  # text to edit, not codes
    source_host = base["host"].iloc[0]
    return base[base["host"] == source_host], hostlog.read(rundir.log_path(source_run, source_host)).facts


def flipped(cases, share, rng):
    """The cases with `share` of their outcomes (and bind steps) swapped between ok and EADDRINUSE."""
    cases = cases.copy()
    flip = rng.random(len(cases)) < share
    swapped = cases["outcome"].map({"ok": "EADDRINUSE", "EADDRINUSE": "ok"})
    cases.loc[flip & swapped.notna(), ["outcome", "bind"]] = swapped[flip & swapped.notna()]
    return cases


def write_run(out, cases, facts, started=None):
    """A run of `cases` (its host and run_id columns set here) written as the store writes one: manifest, a log per
    host (its facts, its cases, an end), results.csv and its columnar copy. Returns its path."""
    os.makedirs(out, exist_ok=True)
    run_id = rundir.new_run_id(out)
    path = os.path.join(out, run_id)
    os.makedirs(path)
    cases = cases.assign(run_id=run_id)
    names = list(pd.unique(cases["host"]))
    records = cases.drop(columns=["run_id", "host"] + list(FACT_COLUMNS))  # the host record holds the facts
    written = manifest.new(run_id, names, ["bind_matrix"], [], "synthetic", "synthetic")
    for name, part in records.groupby(cases["host"], sort=False):
        with open(rundir.log_path(path, name), "w", encoding="utf-8") as stream:
            stream.write(json.dumps(facts) + "\n")
            stream.write(part.assign(record="case").to_json(orient="records", lines=True))
            stream.write(json.dumps({"record": "end", "cases": len(part)}) + "\n")
        written["hosts"][name].update(status=manifest.COMPLETED, cases=len(part))
    written["started"] = started or written["started"]
    written["ended"] = written["started"]
    manifest.write(path, written)
    table.write_run_table(cases, path, {name: facts for name in names})
    return path


def synthetic_run(out, source_run, hosts=100, rows=1_000_000, seed=4):
    """A run of `hosts` hosts made from a real run's cases: each host gets rows/hosts cases, the real ones
    repeated with '#n' on the case id where there are fewer, and 1% of outcomes flipped between ok and EADDRINUSE
    so the hosts differ. Returns its path."""
    base, facts = real_cases(source_run)
    per_host = rows // hosts
    repeat = np.arange(per_host) // len(base)
    one = base.iloc[np.resize(np.arange(len(base)), per_host)].reset_index(drop=True)
    one["case_id"] = one["case_id"].where(repeat == 0, one["case_id"] + "#" + repeat.astype(str))
    names = ["host{:03d}".format(number) for number in range(hosts)]
    cases = pd.concat([one.assign(host=name) for name in names], ignore_index=True)
    return write_run(out, flipped(cases, 0.01, np.random.default_rng(seed)), facts)


def nightly_runs(out, source_run, runs=365, cases=8_000, seed=4):
    """A year of nightly runs of one host (NIGHTLY_HOST), `cases` real cases each, one day apart, each with 0.1% of
    its outcomes flipped from the real run's, as history reads them. Returns `out`."""
    base, facts = real_cases(source_run)
    base = base.iloc[:cases].assign(host=NIGHTLY_HOST)
    rng = np.random.default_rng(seed)
    first = datetime.datetime(2026, 1, 1, 3, tzinfo=datetime.timezone.utc)
    for day in range(runs):
        started = (first + datetime.timedelta(days=day)).isoformat(timespec="seconds")
        write_run(out, flipped(base, 0.001, rng), facts, started=started)
    return out


def history_figures(folder, host):
    """(seconds, runs, changes) of `history --host` (its Markdown) over the runs under `folder`."""
    from analysis.history import changes_between_runs, history_markdown, load_history
    started = time.perf_counter()
    history_markdown(folder, host)
    seconds = time.perf_counter() - started
    runs, cases = load_history(folder, host)
    return seconds, len(runs), len(changes_between_runs(runs, cases))


def report_figures(run_dir, archive, expectations, out_dir):
    """Seconds of each step (load, judge, report) for a run beside the archive, and the peak memory (MB) of this
    process: call it in a fresh process for a true peak."""
    import resource
    from analysis import report
    from analysis.expectations import judge, load_expectations
    seconds = {}
    started = time.perf_counter()
    results = table.load_runs([run_dir] + rundir.run_dirs(archive))
    seconds["load"] = time.perf_counter() - started
    started = time.perf_counter()
    judged = judge(results, load_expectations([expectations]))
    seconds["judge"] = time.perf_counter() - started
    started = time.perf_counter()
    report.write(judged, run_dir, rundir.read_manifest(run_dir), out_dir)
    seconds["report"] = time.perf_counter() - started
    return len(results), seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def report_at_scale(real_run, archive, expectations, hosts=100, rows=1_000_000):
    """(rows, seconds per step, peak MB) of report_figures on a synthetic run grown from `real_run` (a real run of
    this machine), measured in a fresh process so that the peak memory is the analysis's alone."""
    with tempfile.TemporaryDirectory() as folder:
        run = synthetic_run(os.path.join(folder, "synthetic"), real_run, hosts, rows)
        code = ("import json, sys; from analysis.bench import report_figures; "
                "print(json.dumps(report_figures(*sys.argv[1:])))")
        done = subprocess.run([sys.executable, "-c", code, run, archive, expectations, os.path.join(folder, "report")],
                              cwd=REPOSITORY, capture_output=True, text=True, check=True)
        return json.loads(done.stdout)


def history_at_scale(real_run, runs=365, cases=8_000):
    """(seconds, runs, changes) of history_figures over a year of nightly runs grown from `real_run`."""
    with tempfile.TemporaryDirectory() as folder:
        return history_figures(nightly_runs(folder, real_run, runs, cases), NIGHTLY_HOST)
