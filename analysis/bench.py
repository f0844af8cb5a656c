"""Speed figures of the analysis for `./socklab bench`: load + expectations diff + report of a synthetic run of
1,000,000 rows over 100 hosts, made from a real run of this machine (targets: under 10 s, under 2 GB). Printed,
never asserted."""
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


def synthetic_run(out, source_run, hosts=100, rows=1_000_000, seed=4):
    """A run of `hosts` hosts made from a real run's cases and written as the store writes one (manifest, host
    logs, results.csv): each host gets rows/hosts cases, the real ones repeated with '#n' on the case id where
    there are fewer, and 1% of outcomes flipped between ok and EADDRINUSE so the hosts differ. Returns its path."""
    base = table.load(source_run)
    base = base.astype({column: str for column in base.columns if column != "errno"})  # text to edit, not codes
    source_host = base["host"].iloc[0]
    base = base[base["host"] == source_host]
    facts = hostlog.read(rundir.log_path(source_run, source_host)).facts
    per_host = rows // hosts
    repeat = np.arange(per_host) // len(base)
    one = base.iloc[np.resize(np.arange(len(base)), per_host)].reset_index(drop=True)
    one["case_id"] = one["case_id"].where(repeat == 0, one["case_id"] + "#" + repeat.astype(str))
    names = ["host{:03d}".format(number) for number in range(hosts)]
    os.makedirs(out, exist_ok=True)
    run_id = rundir.new_run_id(out)
    path = os.path.join(out, run_id)
    os.makedirs(path)
    cases = pd.concat([one.assign(host=name, run_id=run_id) for name in names], ignore_index=True)
    flip = np.random.default_rng(seed).random(len(cases)) < 0.01
    swapped = cases["outcome"].map({"ok": "EADDRINUSE", "EADDRINUSE": "ok"})
    cases.loc[flip & swapped.notna(), ["outcome", "bind"]] = swapped[flip & swapped.notna()]
    records = cases.drop(columns=["run_id", "host"] + list(FACT_COLUMNS))  # the host record holds the facts
    written = manifest.new(run_id, names, ["bind_matrix"], [], "synthetic", "synthetic")
    for name, part in records.groupby(cases["host"], sort=False):
        with open(rundir.log_path(path, name), "w", encoding="utf-8") as stream:
            stream.write(json.dumps(facts) + "\n")
            stream.write(part.assign(record="case").to_json(orient="records", lines=True))
            stream.write(json.dumps({"record": "end", "cases": len(part)}) + "\n")
        written["hosts"][name].update(status=manifest.COMPLETED, cases=len(part))
    written["ended"] = written["started"]
    manifest.write(path, written)
    table.write_run_table(cases, path)
    return path


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
    """(rows, seconds per step, peak MB) of report_figures on a synthetic run grown from the run real_run(folder)
    makes (a real run of this machine), measured in a fresh process so that the peak memory is the analysis's
    alone."""
    with tempfile.TemporaryDirectory() as folder:
        run = synthetic_run(os.path.join(folder, "synthetic"), real_run(os.path.join(folder, "real")), hosts, rows)
        code = ("import json, sys; from analysis.bench import report_figures; "
                "print(json.dumps(report_figures(*sys.argv[1:])))")
        done = subprocess.run([sys.executable, "-c", code, run, archive, expectations, os.path.join(folder, "report")],
                              cwd=REPOSITORY, capture_output=True, text=True, check=True)
        return json.loads(done.stdout)
