"""Regression between two runs, or between a run and its baselines: the cases that changed on each host, with the
host facts that changed beside them so the cause is in view.

A side is a run directory (manifest.json, <host>.jsonl) or a baseline folder (<host>.csv, <host>.facts.json, made
by promote_baseline and kept under version control). Cases are matched by host, lab and case_id.

A case's result is its outcome and the step that gave it: "bind EADDRINUSE", "listen EADDRINUSE", "ok". An
EADDRINUSE that moves from listen() to bind() is a change although the outcome reads the same. A case is witnessed
when it has a result: not inconclusive or error (nothing claimed), nor unsupported (the host could not build it: an
option it lacks, or other_user where the agent is not root). Each matched case that differs falls in one kind:

    changed            witnessed on both sides, and the results differ                  -> exit status 1
    now_inconclusive   witnessed in the baseline, inconclusive or error now             reported
    now_unsupported    witnessed in the baseline, unsupported now                       reported
    now_witnessed      not witnessed in the baseline, witnessed now                     reported
    added, removed     the case is on one side only (another --where, a host cut short) reported

Only `changed` fails: it is the OS answering differently in a case witnessed on both sides. The others say the
measurement differs (a state not witnessed this time, a case the host could not build, a narrower run), and are
listed for a reader to judge. A case witnessed on neither side is no change. Hosts on one side only are listed as
"no baseline" or "not in current"; a host of the baseline that the current run lacks (or that sent it no
case) fails too: a regression check must not pass on a host that was not measured. A side that holds no case at
all is a mistake in what was given (UserError).
"""
import glob
import json
import os
from typing import NamedTuple

import numpy as np
import pandas as pd

from analysis.grouping import group_codes
from formats import hostlog, jsonfile, records, rundir
from formats.errors import UserError
from formats.manifest import COMPLETED
from formats.records import LAB_MODULES
from formats.table import PARAMETER_COLUMNS, STEP_COLUMNS, VALUE_STEP_COLUMNS, concat, text_column
from labs import LABS
from labs.vocabulary import ERROR, INCONCLUSIVE, OK, SPECIAL_OUTCOMES, UNSUPPORTED

NO_RESULT = (INCONCLUSIVE, ERROR)  # outcomes that claim nothing about the OS
# Not a witnessed case either: the host could not build it (an option it lacks; other_user where the agent is not
# root). A result that becomes unsupported is listed apart, and does not fail.
NOT_WITNESSED = NO_RESULT + (UNSUPPORTED,)
KEY = ["host", "lab", "case_id"]
CASE_COLUMNS = KEY + ["outcome"] + STEP_COLUMNS + ["witness"] + PARAMETER_COLUMNS
BASELINE_COLUMNS = ["lab", "case_id", "outcome"] + STEP_COLUMNS + ["witness"]
REQUIRED_BASELINE_COLUMNS = ("lab", "case_id", "outcome")
# Host facts an outcome may depend on; every sysctl of the host record is compared as well.
COMPARED_FACTS = ("os_family", "os_release", "os_version", "python", "admin", "options", "witness")
KINDS = {"changed": "Outcome changed", "now_inconclusive": "Now inconclusive", "now_unsupported": "Now unsupported",
         "now_witnessed": "Now witnessed", "added": "Cases added", "removed": "Cases removed"}
FAILING_KIND = "changed"
# What the Markdown shows of each kind besides the parameters: a witness tells why a case is now inconclusive.
KIND_COLUMNS = {"changed": ["baseline", "current"], "now_inconclusive": ["baseline", "current", "witness_current"],
                "now_unsupported": ["baseline", "current"], "now_witnessed": ["baseline", "current"],
                "added": ["current"], "removed": ["baseline"]}
COMPARED, NO_BASELINE, NOT_IN_CURRENT = "compared", "no baseline", "not in current"
ABSENT = "(absent)"
CONSOLE_ROWS = 20  # changed cases printed on the console; the Markdown has them all


class Side(NamedTuple):
    path: str
    label: str             # the run id, or the baseline folder
    cases: pd.DataFrame    # CASE_COLUMNS and result, missing values as ""
    facts: dict            # host -> its facts record
    status: dict           # host -> its status in the run's manifest ("baseline" for a baseline folder)
    is_run: bool


class Regression(NamedTuple):
    baseline: Side
    current: Side
    hosts: pd.DataFrame    # host, comparison, one count column per kind, facts_changed
    cases: pd.DataFrame    # host, kind, lab, case_id, parameters, baseline, current (results), outcomes, witnesses
    facts: pd.DataFrame    # host, fact, baseline, current: only the facts that differ

    @property
    def exit_status(self):
        return int((self.cases["kind"] == FAILING_KIND).any() or bool(self.missing_hosts))

    @property
    def missing_hosts(self):
        """The hosts of the baseline that the current run does not hold."""
        return list(self.hosts.loc[self.hosts["comparison"] == NOT_IN_CURRENT, "host"])


# ------------------------------------------------------------------------------------------------ reading sides

def result_text(cases):
    """Per case "<step> <outcome>" for an outcome a step gave ("bind EADDRINUSE"), else the outcome ("ok"); then
    each step that gives a value, "; <step> <value>" ("ok; time_wait client")."""
    # worked out once per distinct combination of steps and outcome, then spread back by code
    codes, firsts = group_codes(cases, list(STEP_COLUMNS) + ["outcome"])
    distinct = cases.iloc[firsts].reindex(columns=list(STEP_COLUMNS) + ["outcome"]).astype(object)
    steps = distinct[[column for column in STEP_COLUMNS if column not in VALUE_STEP_COLUMNS]]
    failed = steps.notna() & ~steps.isin([OK, ""])
    step = failed.idxmax(axis=1).where(failed.any(axis=1) & ~distinct["outcome"].isin(SPECIAL_OUTCOMES))
    text = (step + " " + distinct["outcome"]).fillna(distinct["outcome"]).astype(str)
    for column in [column for column in VALUE_STEP_COLUMNS if column in cases.columns]:
        value = distinct[column].where(distinct[column].notna(), "").astype(str)
        text = text.where(value == "", text + "; " + column + " " + value)
    return pd.Series(text.to_numpy(dtype=object)[codes], index=cases.index, dtype=object)


def run_order(cases, keys):
    """Per row, the rank of its case by first appearance: the order the agent ran them in (states in lifecycle
    order), which reads better than case_id's alphabetical one."""
    return cases.groupby(keys, sort=False).ngroup()


def case_table(frames):
    """The cases of some hosts in CASE_COLUMNS, missing values as "", with their result."""
    table = concat(frames)
    table = pd.DataFrame({column: text_column(table, column) for column in CASE_COLUMNS}, index=table.index)
    return table.assign(result=result_text(table))


def log_cases(log, host):
    """(facts, cases frame) of a host's HostLog."""
    return log.facts, pd.DataFrame.from_records(log.cases).assign(host=host)


def host_cases(run_dir, host):
    """(facts, cases frame) of one host of a run whose manifest was read (history reads one host of many runs)."""
    return log_cases(hostlog.read(rundir.log_path(run_dir, host)), host)


def read_run(run_dir):
    return run_side(rundir.read_run(run_dir))


def run_side(run):
    """A formats.rundir.Run as a Side; the hosts whose log holds no host record (they never answered) are not in
    it."""
    frames, facts, status = [], {}, {}
    for host, log in run.logs.items():
        facts[host], frame = log_cases(log, host)
        frames.append(frame)
        status[host] = run.manifest["hosts"][host].get("status", "")
    return Side(run.path, run.manifest["run_id"], case_table(frames), facts, status, True)


def first_bad_line(table, bad):
    """The file line of the first row flagged in `bad` (line 1 is the header)."""
    return int(np.flatnonzero(bad.to_numpy())[0]) + 2


def with_parameters(table, path):
    """A baseline's parameter columns, recovered from case_id (labs.parameters): a lab's PARAMETERS joined by "/",
    the last left out where it has the lab's ID_DEFAULT value."""
    unknown = ~table["lab"].isin(LABS)
    if unknown.any():
        raise UserError("unknown lab {!r} (labs: {})".format(table["lab"][unknown].iloc[0], ", ".join(LABS)),
                        path=path, line=first_bad_line(table, unknown), field="lab")
    parts = table["case_id"].str.count("/") + 1
    full = table["lab"].map({name: len(lab.PARAMETERS) for name, lab in LAB_MODULES.items()})
    short = table["lab"].map({name: len(lab.PARAMETERS) - 1 if getattr(lab, "ID_DEFAULT", None) else 0
                              for name, lab in LAB_MODULES.items()})
    wrong = (parts != full) & (parts != short)
    if wrong.any():
        lab = LAB_MODULES[table["lab"][wrong].iloc[0]]
        raise UserError("not a case id of {}: {}".format(lab.__name__, "/".join(lab.PARAMETERS)), path=path,
                        line=first_bad_line(table, wrong), field="case_id")
    for name, rows in table.groupby("lab"):
        lab = LAB_MODULES[name]
        columns = list(lab.PARAMETERS)
        values = rows["case_id"].str.split("/", expand=True).reindex(columns=range(len(columns))).astype(object)
        if getattr(lab, "ID_DEFAULT", None):
            values[len(columns) - 1] = values[len(columns) - 1].fillna(lab.ID_DEFAULT[1])
        table.loc[rows.index, columns] = values.to_numpy()
    return table


def read_baseline_csv(path, host):
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except OSError as exc:
        raise UserError(exc.strerror or str(exc), path=path) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise UserError("not a baseline CSV: {}".format(str(exc).splitlines()[0]), path=path) from None
    for column in REQUIRED_BASELINE_COLUMNS:
        if column not in table.columns:
            raise UserError("missing column (a baseline has {})".format(", ".join(BASELINE_COLUMNS)), path=path,
                            line=1, field=column)
        empty = table[column] == ""
        if empty.any():
            raise UserError("empty", path=path, line=first_bad_line(table, empty), field=column)
    twice = table.duplicated(["lab", "case_id"])
    if twice.any():
        raise UserError("this case is listed twice", path=path, line=first_bad_line(table, twice), field="case_id")
    return with_parameters(table.assign(host=host), path)


def read_facts(path):
    """A baseline's <host>.facts.json: its host record without `record`, checked as one."""
    if not os.path.exists(path):
        raise UserError("a baseline's facts are missing; `./socklab baseline` writes them beside its CSV", path=path)
    facts, text = jsonfile.read(path)
    if not isinstance(facts, dict):
        raise UserError("not a host facts record (a JSON object)", path=path, line=1)
    try:
        records.checked(dict(facts, record=records.HOST))
    except records.RecordError as exc:
        raise UserError(exc.problem, path=path, line=jsonfile.line_of(text, [exc.field]), field=exc.field) from None
    return facts


def read_baselines(folder):
    frames, facts = [], {}
    for path in sorted(glob.glob(os.path.join(folder, "*.csv"))):
        host = os.path.basename(path)[:-len(".csv")]
        frames.append(read_baseline_csv(path, host))
        facts[host] = read_facts(os.path.join(folder, host + ".facts.json"))
    return Side(folder, folder, case_table(frames), facts, dict.fromkeys(facts, "baseline"), False)


def load_side(path):
    """A run directory or a baseline folder, read; UserError when it holds no case."""
    if os.path.lexists(os.path.join(path, "manifest.json")):
        side = read_run(path)
    elif glob.glob(os.path.join(glob.escape(path), "*.csv")):
        side = read_baselines(path)
    else:
        raise UserError("neither a run directory (manifest.json) nor a baseline folder (<host>.csv)", path=path)
    if side.cases.empty:
        raise UserError("holds no case: nothing to compare", path=path)
    return side


# ------------------------------------------------------------------------------------------------ comparing

def fact_values(facts):
    """{fact: text} of a host facts record: COMPARED_FACTS, then one entry per sysctl."""
    def text(value):
        if isinstance(value, bool):
            return "yes" if value else "no"
        return "+".join(value) if isinstance(value, list) else str(value)
    values = {name: text(facts[name]) for name in COMPARED_FACTS if name in facts}
    values.update({name: text(value) for name, value in sorted((facts.get("sysctls") or {}).items())})
    return values


def facts_table(facts_by_host):
    """host, fact, value: one row per compared fact of each host."""
    rows = [(host, fact, value) for host, facts in facts_by_host.items() for fact, value in fact_values(facts).items()]
    return pd.DataFrame(rows, columns=["host", "fact", "value"])


def fact_changes(baseline_facts, current_facts, hosts):
    """host, fact, baseline, current of the compared facts that differ (ABSENT on a side without that fact)."""
    merged = facts_table({host: baseline_facts[host] for host in hosts}).merge(
        facts_table({host: current_facts[host] for host in hosts}), on=["host", "fact"], how="outer",
        suffixes=("_baseline", "_current"), sort=False)
    merged = merged.rename(columns={"value_baseline": "baseline", "value_current": "current"}).fillna(ABSENT)
    # COMPARED_FACTS first, in their order, then the sysctls by name
    rank = merged["fact"].map({fact: n for n, fact in enumerate(COMPARED_FACTS)}).fillna(len(COMPARED_FACTS))
    merged = merged.assign(rank=rank).sort_values(["host", "rank", "fact"]).drop(columns="rank")
    return merged[merged["baseline"] != merged["current"]].reset_index(drop=True)


def host_comparison(baseline, current):
    """host, comparison: every host of either side, and whether both sides have it."""
    hosts = pd.DataFrame({"host": sorted(set(baseline.facts) | set(current.facts))}, dtype=object)
    in_baseline, in_current = hosts["host"].isin(list(baseline.facts)), hosts["host"].isin(list(current.facts))
    hosts["comparison"] = np.select([in_baseline & in_current, in_current], [COMPARED, NO_BASELINE], NOT_IN_CURRENT)
    return hosts


def case_changes(baseline_cases, current_cases):
    """The matched cases that differ, each with its kind (KINDS), parameters, and both sides' result."""
    columns = KEY + ["outcome", "result", "witness"]
    merged = baseline_cases[columns].merge(current_cases[columns], on=KEY, how="outer", indicator=True,
                                           suffixes=("_baseline", "_current"))
    in_baseline, in_current = merged["_merge"] != "right_only", merged["_merge"] != "left_only"
    had = in_baseline & ~merged["outcome_baseline"].isin(NOT_WITNESSED)
    has = in_current & ~merged["outcome_current"].isin(NOT_WITNESSED)
    kind = np.select(
        [~in_current, ~in_baseline, had & has & (merged["result_baseline"] != merged["result_current"]),
         had & merged["outcome_current"].isin(NO_RESULT), had & (merged["outcome_current"] == UNSUPPORTED),
         in_baseline & ~had & has],
        ["removed", "added", "changed", "now_inconclusive", "now_unsupported", "now_witnessed"], "")
    changes = merged.assign(kind=kind)[kind != ""].drop(columns="_merge")
    both = pd.concat([current_cases, baseline_cases])
    parameters = both.assign(order=run_order(both, KEY))[KEY + PARAMETER_COLUMNS + ["order"]].drop_duplicates(KEY)
    changes = changes.merge(parameters, on=KEY, how="left").rename(
        columns={"result_baseline": "baseline", "result_current": "current"})
    # KINDS order within each host, so a reader meets the failing changes first
    changes["kind"] = pd.Categorical(changes["kind"], categories=list(KINDS), ordered=True)
    changes = changes.sort_values(["host", "kind", "order"]).astype({"kind": str})
    columns = ["host", "kind", "lab", "case_id"] + PARAMETER_COLUMNS + [
        "baseline", "current", "outcome_baseline", "outcome_current", "witness_baseline", "witness_current"]
    return changes[columns].fillna("").reset_index(drop=True)


def renamed(side, names):
    """The side with some hosts under other names ({old: new})."""
    return side._replace(cases=side.cases.assign(host=side.cases["host"].replace(names)),
                         facts={names.get(host, host): facts for host, facts in side.facts.items()},
                         status={names.get(host, host): status for host, status in side.status.items()})


def paired_sides(baseline_side, current_side, pairs):
    """Both sides with each (baseline host, current host) pair under one name, "current (vs baseline)": a host
    compared with another (a VM with another kernel against this machine) as if it were its later self."""
    for names, side in ((dict(pairs), baseline_side), (dict((b, a) for a, b in pairs), current_side)):
        missing = sorted(set(names) - set(side.status))
        if missing:
            raise UserError("no host {!r} on that side".format(missing[0]), field="--pair")
    labels = {(baseline, current): "{} (vs {})".format(current, baseline) for baseline, current in pairs}
    return (renamed(baseline_side, {baseline: label for (baseline, _), label in labels.items()}),
            renamed(current_side, {current: label for (_, current), label in labels.items()}))


def regression(baseline, current, pairs=()):
    """The Regression between two sides, each a run directory or a baseline folder; `pairs` of (baseline host,
    current host) compare two different hosts case by case."""
    baseline_side, current_side = paired_sides(load_side(baseline), load_side(current), pairs)
    hosts = host_comparison(baseline_side, current_side)
    compared = list(hosts.loc[hosts["comparison"] == COMPARED, "host"])
    cases = case_changes(baseline_side.cases[baseline_side.cases["host"].isin(compared)],
                         current_side.cases[current_side.cases["host"].isin(compared)])
    facts = fact_changes(baseline_side.facts, current_side.facts, compared)
    counts = cases.groupby(["host", "kind"]).size().unstack(fill_value=0).reindex(columns=list(KINDS), fill_value=0)
    hosts = hosts.merge(counts, left_on="host", right_index=True, how="left")
    hosts["facts_changed"] = hosts["host"].map(facts["host"].value_counts())
    count_columns = list(KINDS) + ["facts_changed"]
    hosts[count_columns] = hosts[count_columns].fillna(0).astype(int)
    hosts["current_status"] = hosts["host"].map(current_side.status).fillna("")
    return Regression(baseline_side, current_side, hosts, cases, facts)


# ------------------------------------------------------------------------------------------------ output

def markdown_table(frame):
    """A frame as a Markdown table, "_(none)_" when empty. Text stays text: tabulate would read a text column's
    numeric-looking values as numbers (gVisor's release 20221219.0 as 2.02212e+07)."""
    if frame.empty:
        return "_(none)_"
    text = [position for position, column in enumerate(frame.columns)
            if not pd.api.types.is_numeric_dtype(frame[column])]
    return frame.to_markdown(index=False, disable_numparse=text)


def shown_columns(rows, extra):
    """lab and the parameter columns these rows use, then `extra`."""
    parameters = [column for column in PARAMETER_COLUMNS if (rows[column] != "").any()]
    return rows[["lab"] + parameters + extra]



def rule_text(regression):
    failing = int((regression.cases["kind"] == FAILING_KIND).sum())
    missing = regression.missing_hosts
    return ("Exit status {}: {} case(s) witnessed on both sides changed outcome; {} host(s) of the baseline not in "
            "the current run{}. Only those fail; cases now inconclusive, now unsupported, now witnessed, added or "
            "removed, and hosts with no baseline, are reported without failing.".format(
                regression.exit_status, failing, len(missing), " ({})".format(", ".join(missing)) if missing else ""))


def markdown(regression):
    """The whole regression as Markdown: hosts, then per host its changed facts and each kind of change."""
    parts = ["# socklab regression",
             "Baseline `{}` ({}), current `{}` ({}).".format(
                 regression.baseline.label, regression.baseline.path, regression.current.label,
                 regression.current.path),
             rule_text(regression), "## Hosts", markdown_table(regression.hosts)]
    for host, comparison in regression.hosts[["host", "comparison"]].itertuples(index=False):
        parts.append("## {}".format(host))
        if comparison != COMPARED:
            parts.append("_{}: not compared._".format(comparison))
            continue
        facts = regression.facts[regression.facts["host"] == host]
        parts += ["### Host facts that changed", markdown_table(facts.drop(columns="host"))]
        cases = regression.cases[regression.cases["host"] == host]
        for kind, rows in cases.groupby("kind", sort=False):
            parts += ["### {} ({})".format(KINDS[kind], len(rows)),
                      markdown_table(shown_columns(rows, KIND_COLUMNS[kind]))]
    return "\n\n".join(parts) + "\n"


def frame_records(frame):
    return frame.astype(object).where(frame.notna(), None).to_dict(orient="records")


def as_json(regression):
    return {
        "baseline": {"label": regression.baseline.label, "path": regression.baseline.path},
        "current": {"label": regression.current.label, "path": regression.current.path},
        "exit_status": regression.exit_status, "failing_kind": FAILING_KIND,
        "hosts": frame_records(regression.hosts), "facts": frame_records(regression.facts),
        "cases": frame_records(regression.cases),
    }


def write(regression, out):
    """regress.md and regress.json into `out`; returns their paths."""
    rundir.made_folder(out, "--out")
    paths = os.path.join(out, "regress.md"), os.path.join(out, "regress.json")
    with open(paths[0], "w", encoding="utf-8") as stream:
        stream.write(markdown(regression))
    with open(paths[1], "w", encoding="utf-8") as stream:
        json.dump(as_json(regression), stream, indent=2, ensure_ascii=False)
        stream.write("\n")
    return paths


def summarise(regression, paths, console):
    """One line per host (fits any terminal), its changed facts, the failing cases (at most CONSOLE_ROWS)."""
    console.print("regression {} → {}".format(regression.baseline.label, regression.current.label), markup=False)
    for row in regression.hosts.itertuples(index=False):
        if row.comparison != COMPARED:
            console.print("{}: {}".format(row.host, row.comparison), markup=False)
            continue
        counts = ", ".join("{} {}".format(getattr(row, kind), kind.replace("_", " ")) for kind in KINDS)
        console.print("{}: {}; {} fact(s) changed; run status {}".format(
            row.host, counts, row.facts_changed, row.current_status), markup=False)
    for row in regression.facts.itertuples(index=False):
        console.print("{}: {} {} → {}".format(row.host, row.fact, row.baseline, row.current), markup=False)
    changed = regression.cases[regression.cases["kind"] == FAILING_KIND]
    for row in changed.head(CONSOLE_ROWS).itertuples(index=False):
        console.print("{}: {} {}: {} → {}".format(row.host, row.lab, row.case_id, row.baseline, row.current),
                      markup=False)
    if len(changed) > CONSOLE_ROWS:
        console.print("... and {} more changed case(s)".format(len(changed) - CONSOLE_ROWS))
    console.print(rule_text(regression), markup=False)
    console.print("regression: {}\n            {}".format(*paths), markup=False)


def regress(baseline, current, out=None, console=None, pairs=()):
    """Compare `current` with `baseline` (each a run directory or a baseline folder; `pairs` as in regression),
    write regress.md and regress.json into `out` (default <current run>/regress/), summarise on `console`; returns
    the exit status."""
    result = regression(baseline, current, pairs)
    if out is None:
        if not result.current.is_run:
            raise UserError("the current side is a baseline folder: name a folder for the regression",
                            field="--out")
        out = os.path.join(current, "regress")
    paths = write(result, out)
    if console is not None:
        summarise(result, paths, console)
    return result.exit_status


# ------------------------------------------------------------------------------------------------ baselines

def promote_baseline(run_dir, folder="baselines/", console=None):
    """Write each completed host of the run as baselines/<host>.csv (BASELINE_COLUMNS, sorted by lab and case_id)
    and <host>.facts.json (sorted keys), replacing that host's earlier baseline. Hosts that did not complete are
    skipped: a partial baseline would show their missing cases as removed. Returns 1 if one was skipped, else 0."""
    run = rundir.read_run(run_dir)
    side = run_side(run)
    if side.cases.empty:
        raise UserError("holds no case: nothing to promote", path=run_dir)
    rundir.made_folder(folder, "--folder")
    skipped = 0
    for host in run.manifest["hosts"]:
        status = side.status.get(host, "no log")
        if status != COMPLETED:
            skipped += 1
            if console is not None:
                console.print("{}: not promoted, its run status is {}".format(host, status), markup=False)
            continue
        rows = side.cases.loc[side.cases["host"] == host, BASELINE_COLUMNS].sort_values(["lab", "case_id"])
        rows.to_csv(os.path.join(folder, host + ".csv"), index=False, lineterminator="\n")
        facts = {key: value for key, value in side.facts[host].items() if key != "record"}
        with open(os.path.join(folder, host + ".facts.json"), "w", encoding="utf-8") as stream:
            json.dump(facts, stream, indent=2, sort_keys=True, ensure_ascii=False)
            stream.write("\n")
        if console is not None:
            console.print("{}: {} cases → {}".format(host, len(rows), os.path.join(folder, host + ".csv")),
                          markup=False)
    return int(skipped > 0)
