"""The key findings of a report: the run's answers in sentences, worked out from the judged table and the
expectations, never written by hand per OS. They stand first in the HTML page and in the Markdown.

Questions (QUESTIONS) are answered from evidence, which is data: a lab, the cases that bear on the question
(`where`), the meanings (analysis.layouts) that say yes, and the words of the answer. Per system, an OptionsEvidence
says under which option pairs the answer is yes, as the simplest pairs that give it ("SO_REUSEADDR on both
sockets"), and a StepsEvidence which values of an axis give each value of a step ("restart EADDRINUSE with
socketserver_tcp"). Systems with the same answer share a sentence, and every sentence names the cases that show it.
Then what differs between the OS families shown (as analysis.compare diffs two of them), the verdict counts with
the share a source documents, and every mismatch with its source.

A system or lab the evidence does not cover gets no sentence: a new lab or system needs an evidence entry (and its
layout's meanings), not new code. Everything works on the few rows a question selects, or on distinct
combinations: a million rows cost a few masks.
"""
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.compare import system_cells
from analysis.expectations import VERDICTS, documented_share
from analysis.grouping import group_codes
from analysis.labels import system_label
from analysis.layouts import axis_labels, cell_meanings, cell_texts, lab_layout
from analysis.regress import NO_RESULT
from labs.vocabulary import NO_OPTIONS, UNSUPPORTED, split_options
from formats.table import filled

SHOWN_CASES = 1  # cases named after a sentence; the others are counted
SHOWN_SYSTEMS = 5  # systems named before a sentence; the others are counted
SHOWN_PAIRS = 4  # option pairs named in an answer
SHOWN_ANSWERS = 8  # answers per evidence (systems grouped by answer), the most common first
SHOWN_DIFFERENCES = 3  # groups of differing cases named per pair of OS families
SHOWN_FAMILY_PAIRS = 6
SHOWN_MISMATCH_GROUPS = 6

SUBJECTS = {"other_process": "another program of the same user", "other_user": "another user's program",
            "same_process": "the same program"}


@dataclass(frozen=True)
class OptionsEvidence:
    """Cases of `lab` where `where` holds (a value left empty counts as `unset` says), each value of `by` (a
    column) answered apart: yes where a case means one of `meanings`. The answer names the simplest option pairs
    (first_opts, second_opts) that give yes, the first socket as `sockets[0]`, the second as `sockets[1]`.
    `fallback`: only for a system and value of `by` that the question's earlier evidence did not answer."""
    lab: str
    where: dict
    meanings: tuple
    yes: str
    no: str
    sockets: tuple
    by: str = ""
    unset: dict = field(default_factory=dict)
    fallback: bool = False
    yes_meaning: str = "takeover"
    no_meaning: str = "ok"


@dataclass(frozen=True)
class StepsEvidence:
    """Cases of `lab` where `where` holds, per system: which values of `by` give each value of `step`, after
    `text` ("{python}": the host Python's version); an empty value of `by` is named `blank`. The finding is marked
    with the first of `dangers` (meanings) that one of its cases has."""
    lab: str
    where: dict
    step: str
    by: str
    text: str
    blank: str = ""
    dangers: tuple = ("takeover",)


@dataclass(frozen=True)
class Question:
    name: str
    title: str
    evidence: tuple


@dataclass
class Finding:
    """One sentence: the systems it is about (empty: all shown), its text, the cases that show it (`cases`: the
    first few as 'lab case_id'; `case_count`: how many) and what the answer means (a palette name, "" for none);
    `badge` is its one-word answer."""
    question: str
    text: str
    systems: tuple = ()
    cases: tuple = ()
    case_count: int = 0
    meaning: str = ""
    badge: str = ""

    def cases_text(self):
        more = self.case_count - len(self.cases)
        return "; ".join(self.cases) + (" and {:,} more".format(more) if more > 0 else "")

    def systems_text(self):
        more = len(self.systems) - SHOWN_SYSTEMS
        return ", ".join(self.systems[:SHOWN_SYSTEMS]) + (" and {} more".format(more) if more > 0 else "")


SEED_TIME_WAIT = {"proto": ("tcp",), "family": ("inet",), "second_family": ("",), "state": ("TIME_WAIT",),
                  "first_addr": ("wildcard",), "second_addr": ("wildcard",), "prober": ("other_process",)}
QUESTIONS = (
    Question("restart", "Can a server restart at once on its port, over its old connection's TIME_WAIT?", (
        OptionsEvidence("bind_matrix", SEED_TIME_WAIT, ("ok",),
                        yes="a new server process binds the port {options}",
                        no="no option pair measured ({count}) lets a new server process bind the port",
                        sockets=("the old socket", "the new one"), unset={"second_family": ""},
                        yes_meaning="ok", no_meaning="refused"),
        StepsEvidence("runtime_defaults", {"family": ("inet",)}, "restart", "helper",
                      "Python {python}'s server helpers:"),
        StepsEvidence("time_wait_owner", {"close": ("orderly",), "family": ("inet",)}, "bind", "closer",
                      "After an orderly close, a new socket without options on the server's port:"),
    )),
    Question("listener", "Can another program, or another user, take over a listener?", (
        OptionsEvidence("hijack", {"proto": ("tcp",), "prober": ("other_process", "other_user")}, ("takeover",),
                        yes="{subject} takes over a listener's connections {options}",
                        no="{subject} took none of a listener's connections ({count} cases measured)",
                        sockets=("the listener", "the second socket"), by="prober", unset={"proto": "tcp"}),
        OptionsEvidence("bind_matrix", {"proto": ("tcp",), "state": ("LISTEN",),
                                        "prober": ("other_process", "other_user")}, ("shared",),
                        yes="{subject} binds a second socket beside a listener {options} (who then accepts the "
                            "connections is not measured here)",
                        no="{subject} cannot bind beside a listener ({count} cases measured)",
                        sockets=("the listener", "the second socket"), by="prober", fallback=True,
                        yes_meaning="shared"),
    )),
    Question("udp", "Can another program take over a UDP port?", (
        OptionsEvidence("hijack", {"proto": ("udp",), "prober": ("other_process", "other_user")}, ("takeover",),
                        yes="{subject} receives datagrams sent to another socket's UDP port {options}",
                        no="{subject} received none of another socket's datagrams ({count} cases measured)",
                        sockets=("the first socket", "the second"), by="prober"),
        OptionsEvidence("bind_matrix", {"proto": ("udp",), "state": ("BOUND",),
                                        "prober": ("other_process", "other_user")}, ("shared",),
                        yes="{subject} binds a UDP port another socket holds {options}",
                        no="{subject} cannot bind a UDP port another socket holds ({count} cases measured)",
                        sockets=("the first socket", "the second"), by="prober", fallback=True,
                        yes_meaning="shared"),
        StepsEvidence("runtime_defaults", {"helper": ("asyncio_datagram_endpoint",), "family": ("inet",)},
                      "second_copy", "helper", "Python {python}'s UDP helper, started twice on one port:"),
    )),
    Question("dual_stack", "Can one port have a listener on 0.0.0.0 and another on [::]?", tuple(
        OptionsEvidence("bind_matrix", {"proto": ("tcp",), "family": ("inet",), "second_family": (family,),
                                        "state": ("LISTEN",), "first_addr": ("wildcard",),
                                        "second_addr": ("wildcard",), "prober": ("other_process",)}, ("ok", "shared"),
                        yes="a [::] listener with IPV6_V6ONLY " + v6only + " binds and listens beside a 0.0.0.0 "
                            "one {options}",
                        no="a [::] listener with IPV6_V6ONLY " + v6only + " cannot bind beside a 0.0.0.0 one "
                           "({count} option pairs measured)",
                        sockets=("the 0.0.0.0 listener", "the [::] one"), yes_meaning="ok", no_meaning="refused")
        for family, v6only in (("dual", "0"), ("inet6", "1")))),
    Question("reload", "Does a server reload with SO_REUSEPORT lose the connections queued on the listener that "
                       "closes?", (
        StepsEvidence("listener_drain", {}, "drain", "tcp_migrate_req",
                      "When the first of a port's SO_REUSEPORT listeners closes with connections queued, they are:",
                      blank="(none: not Linux)", dangers=("lost",)),
        StepsEvidence("listener_drain", {}, "spread", "opts",
                      "Before it closed, clients' connections were spread over the listeners:"),
    )),
)
DIFFERENCES = Question("differences", "What must a cross-platform program do differently?", ())
VERDICTS_QUESTION = Question("verdicts", "How much of this do the sources document?", ())


def _text(frame, column):
    return filled(frame[column]).astype(object) if column in frame.columns else pd.Series(
        "", index=frame.index, dtype=object)


def case_names(rows):
    return ["{} {}".format(lab, case) for lab, case in zip(rows["lab"], rows["case_id"])]


class Masks:
    """Row masks of a judged table, each worked out once: the evidence of several questions shares them."""

    def __init__(self, judged):
        self.judged, self.cache = judged, {}

    def of(self, column, values, unset=None):
        """Where `column` holds one of `values` (a missing or empty value counts as `unset`)."""
        key = (column, tuple(values), unset)
        if key not in self.cache:
            judged = self.judged
            if column not in judged.columns:
                hit = np.full(len(judged), unset in values)
            else:
                hit = judged[column].isin(values).to_numpy()
                if unset in values:
                    hit = hit | filled(judged[column]).eq("").to_numpy()
            self.cache[key] = hit
        return self.cache[key]


def selected(masks, lab, where, columns, unset=None):
    """`columns` (those there are) of the rows of `lab` with a result where `where` holds; a missing or empty
    value counts as `unset` gives it (else fails)."""
    judged = masks.judged
    mask = masks.of("lab", (lab,)) & ~masks.of("outcome", NO_RESULT + (UNSUPPORTED,))
    for column, values in where.items():
        mask = mask & masks.of(column, values, (unset or {}).get(column))
    # the few rows as plain objects: what follows groups and selects them many times over
    return judged.loc[mask, [column for column in dict.fromkeys(columns) if column in judged.columns]].astype(object)


# ------------------------------------------------------------------------------------------------ option pairs

def options_of(spelling):
    return frozenset(split_options(spelling))


def simplest_pairs(pairs):
    """Of (first, second) option spellings, those no other pair undercuts (fewer options on each socket)."""
    sets = [(options_of(first), options_of(second)) for first, second in pairs]
    return [pair for pair, (first, second) in zip(pairs, sets)
            if not any(other != (first, second) and other[0] <= first and other[1] <= second for other in sets)]


def pair_phrase(first, second, sockets):
    if first == second:
        return "no option on either socket" if first == NO_OPTIONS else "{} on both sockets".format(first)
    if first == NO_OPTIONS:
        return "{} on {} only".format(second, sockets[1])
    if second == NO_OPTIONS:
        return "{} on {} only".format(first, sockets[0])
    return "{} on {} and {} on {}".format(first, sockets[0], second, sockets[1])


def options_phrase(pairs, sockets):
    if (NO_OPTIONS, NO_OPTIONS) in pairs:
        return "without any option"
    phrases = [pair_phrase(first, second, sockets) for first, second in pairs[:SHOWN_PAIRS]]
    more = len(pairs) - SHOWN_PAIRS
    return "with " + "; or ".join(phrases) + (" (or {} more pairs)".format(more) if more > 0 else "")


def sentence(text):
    return text[:1].upper() + text[1:]


def options_answers(masks, evidence, answered):
    """[(system, text, case names, case count, meaning, badge)] of an OptionsEvidence, one per system and value of
    `by`; `answered` holds the (system, by value) pairs the question's earlier evidence answered, and gets these.
    Every step is on the selected rows or their distinct option pairs: a million rows cost a few masks."""
    keys = ["system"] + ([evidence.by] if evidence.by else [])
    rows = selected(masks, evidence.lab, evidence.where, keys + ["case_id", "meaning", "first_opts", "second_opts"],
                    evidence.unset)
    judged = masks.judged
    if rows.empty:
        return []
    rows = rows.assign(yes=rows["meaning"].isin(evidence.meanings).to_numpy(), by=_text(rows, evidence.by))
    keys = ["system", "by"]
    counts = rows.groupby(keys, sort=False).size()
    hits = rows[rows["yes"]]
    hit_counts = hits.groupby(keys, sort=False).size()
    pairs, examples = {}, {}
    for system, by, first, second, case in hits.drop_duplicates(keys + ["first_opts", "second_opts"])[
            keys + ["first_opts", "second_opts", "case_id"]].itertuples(index=False):
        pairs.setdefault((system, by), {})[(first, second)] = "{} {}".format(evidence.lab, case)
    for system, by, case in rows[~rows["yes"]].groupby(keys, sort=False).head(SHOWN_CASES)[
            keys + ["case_id"]].itertuples(index=False):
        examples.setdefault((system, by), []).append("{} {}".format(evidence.lab, case))
    plain = rows[(rows["first_opts"] == NO_OPTIONS) & (rows["second_opts"] == NO_OPTIONS) & ~rows["yes"]]
    plain = plain.drop_duplicates(keys)
    plain_cells = dict(zip(zip(plain["system"], plain["by"]), cell_texts(judged.loc[plain.index, [
        column for column in dict.fromkeys(["lab", "outcome"] + list(lab_layout(evidence.lab).cell))
        if column in judged.columns]])))
    answers = []
    for (system, by), count in counts.items():
        if evidence.fallback and (system, by) in answered:
            continue
        answered.add((system, by))
        subject = SUBJECTS.get(by, by)
        if (system, by) not in pairs:
            answers.append((system, sentence(evidence.no.format(subject=subject, count=count)),
                            examples[(system, by)], count, evidence.no_meaning, "no"))
            continue
        found = pairs[(system, by)]
        simplest = simplest_pairs(list(found))
        text = evidence.yes.format(subject=subject, options=options_phrase(simplest, evidence.sockets))
        if (system, by) in plain_cells and evidence.yes_meaning == "ok":  # what a server without options meets
            text += "; without any option: {}".format(plain_cells[(system, by)])
        answers.append((system, sentence(text), [found[pair] for pair in simplest], int(hit_counts[(system, by)]),
                        evidence.yes_meaning, "yes"))
    return answers


def steps_answers(masks, evidence):
    """[(system, text, case names, case count, meaning, badge)] of a StepsEvidence, one per system."""
    rows = selected(masks, evidence.lab, evidence.where,
                    ["system", "lab", "case_id", "python", "meaning", evidence.step, evidence.by])
    rows = rows[_text(rows, evidence.step) != ""] if len(rows) else rows
    if rows.empty:
        return []
    by = _text(rows, evidence.by)
    rows = rows.assign(value=_text(rows, evidence.step), python=_text(rows, "python"),
                       **{evidence.by: by.where(by != "", evidence.blank)})
    groups = rows.groupby(["system", "value"], sort=False).agg(
        names=(evidence.by, lambda values: ", ".join(pd.unique(values))), python=("python", "first"))
    systems = rows.groupby("system", sort=False).agg(
        count=("case_id", "size"), meanings=("meaning", lambda values: set(values)))
    examples = rows.drop_duplicates(["system", "value"]).groupby("system", sort=False).head(SHOWN_CASES)
    answers = []
    for system, part in groups.groupby(level="system", sort=False):
        text = "{} {} {}".format(evidence.text.format(python=part["python"].iloc[0]), evidence.step, "; ".join(
            "{} with {} {}".format(value, evidence.by, names)
            for value, names in zip(part.index.get_level_values("value"), part["names"])))
        # marked only when some case is a danger: the sentence says the rest
        meaning = next((name for name in evidence.dangers if name in systems.loc[system, "meanings"]), "")
        answers.append((system, text, case_names(examples[examples["system"] == system]),
                        int(systems.loc[system, "count"]), meaning, ""))
    return answers


def grouped(question, answers):
    """Findings of one evidence's answers: systems with the same text (and so the same cases) share one, the
    answers most systems give first."""
    by_text = {}
    for system, text, cases, count, meaning, badge in answers:
        entry = by_text.setdefault(text, [[], cases, count, meaning, badge])
        entry[0].append(system)
    ordered = sorted(by_text.items(), key=lambda item: -len(item[1][0]))[:SHOWN_ANSWERS]
    return [Finding(question, text, tuple(systems), tuple(cases[:SHOWN_CASES]), count, meaning, badge)
            for text, (systems, cases, count, meaning, badge) in ordered]


def question_findings(masks, question):
    answered, findings = set(), []
    for evidence in question.evidence:
        answers = (steps_answers(masks, evidence) if isinstance(evidence, StepsEvidence) else
                   options_answers(masks, evidence, answered))
        findings += grouped(question.name, answers)
    return findings


# ------------------------------------------------------------------------------------------------ differences

def shared_rows(judged, unit):
    """The rows with a result of the cases that two or more values of `unit` (a column) have a result for."""
    with_result = ~judged["outcome"].isin(NO_RESULT).to_numpy()
    case_codes, _ = group_codes(judged, ["lab", "case_id"])
    unit_codes, units = pd.factorize(judged[unit])
    pairs = np.unique((case_codes * len(units) + unit_codes)[with_result])
    per_case = np.bincount(pairs // max(len(units), 1), minlength=case_codes.max() + 1 if len(judged) else 0)
    return judged.loc[with_result & (per_case[case_codes] >= 2)] if len(judged) else judged


def difference_groups(cases):
    """Differing cases grouped for a reader: per lab, its first row axis (bind_matrix: the option pair) and both
    sides' results, naming the values of its column axis (the states) they span; (key, values, count) rows, the
    largest first."""
    keys, values = pd.Series("", index=cases.index, dtype=object), pd.Series("", index=cases.index, dtype=object)
    ranks = pd.Series(0, index=cases.index, dtype=np.int64)  # the column axis's values in its layout's order
    for lab in pd.unique(cases["lab"]):
        part = cases["lab"] == lab
        layout = lab_layout(lab)
        key = pd.Series(lab, index=cases.index[part], dtype=object)
        if layout.rows:
            key = key + " with " + layout.rows[0].name + " " + axis_labels(cases[part], layout.rows[0])
        keys[part], values[part] = key, axis_labels(cases[part], layout.column)
        ranks[part] = values[part].map({value: rank for rank, value in enumerate(layout.column_order)}).fillna(
            len(layout.column_order)).to_numpy()
    cases = cases.assign(key=keys, value=values, rank=ranks).sort_values("rank", kind="stable")
    groups = cases.groupby(["key", "text_a", "text_b"], sort=False).agg(
        values=("value", lambda column: ", ".join(pd.unique(column))), count=("value", "size"),
        first=("case_id", "first"), lab=("lab", "first"))
    return groups.reset_index().sort_values("count", ascending=False, kind="stable")


def difference_findings(judged):
    """Per pair of OS families shown: in how many of the cases both have a result they differ, and the largest
    groups of those cases, each with both families' results."""
    rows = shared_rows(judged, "os_family")
    families = list(pd.unique(rows["os_family"])) if len(rows) else []
    cells = {family: system_cells(rows[rows["os_family"] == family], named=False) for family in families}
    parameters = rows.drop_duplicates(["lab", "case_id"]).set_index(["lab", "case_id"])
    findings = []
    for position, a in enumerate(families):
        for b in families[position + 1:]:
            both = cells[a].join(cells[b], how="inner", suffixes=("_a", "_b"))
            differ = both[both["results_a"] != both["results_b"]]
            if both.empty:
                continue
            if differ.empty:
                findings.append(Finding("differences", "{} and {} agree in all {:,} cases both measured.".format(
                    a, b, len(both)), meaning="ok", case_count=len(both), badge="="))
                continue
            groups = difference_groups(parameters.loc[differ.index].reset_index().assign(
                text_a=differ["text_a"].to_numpy(), text_b=differ["text_b"].to_numpy()))
            largest = ["{} in {}: {} {}, {} {}".format(group.key, group.values, a, group.text_a, b, group.text_b)
                       for group in groups.head(SHOWN_DIFFERENCES).itertuples()]
            more = len(groups) - SHOWN_DIFFERENCES
            text = "{} and {} differ in {:,} of the {:,} cases both measured: {}{}.".format(
                a, b, len(differ), len(both), "; ".join(largest),
                "; and {} more groups".format(more) if more > 0 else "")
            shown = groups.head(SHOWN_CASES)
            findings.append(Finding("differences", text, (), tuple(case_names(shown.rename(
                columns={"first": "case_id"}))), len(differ), "shared", "{:,}".format(len(differ))))
    findings.sort(key=lambda finding: -finding.case_count if finding.meaning != "ok" else 0)
    return findings[:SHOWN_FAMILY_PAIRS]


# ------------------------------------------------------------------------------------------------ verdicts

def verdict_table(judged):
    """Cases per system (rows, in order of appearance) and verdict (VERDICTS order), counted by code."""
    system_codes, systems = pd.factorize(judged["system"])
    verdict_codes, verdicts = pd.factorize(judged["verdict"])
    counts = np.bincount(system_codes * len(verdicts) + verdict_codes,
                         minlength=len(systems) * len(verdicts)).reshape(len(systems), len(verdicts))
    table = pd.DataFrame(counts, index=pd.Index(systems, name="system"), columns=list(verdicts))
    return table.reindex(columns=[verdict for verdict in VERDICTS if verdict in table.columns] + [
        verdict for verdict in table.columns if verdict not in VERDICTS])


def percent(part, whole):
    return "{:.0f}%".format(100 * part / whole) if whole else "no share"


def verdict_findings(judged, counts):
    totals = counts.reindex(columns=list(dict.fromkeys(["match", "mismatch", "undocumented"] + [
        verdict for verdict in counts.columns])), fill_value=0).sum()
    documented, measured = documented_share(counts)
    findings = [Finding("verdicts", "{:,} cases on {} system{}: {}; a source documents {} of the measured cases "
                        "({:,} of {:,}).".format(
                            int(totals.sum()), len(counts), "" if len(counts) == 1 else "s",
                            ", ".join("{:,} {}".format(int(count), verdict) for verdict, count in totals.items()),
                            percent(documented.sum(), measured.sum()), int(documented.sum()),
                            int(measured.sum())))]
    shares = ["{} {} ({:,} of {:,})".format(system, percent(documented[system], measured[system]),
                                             int(documented[system]), int(measured[system]))
              for system in counts.index[:SHOWN_SYSTEMS]]
    more = len(counts) - SHOWN_SYSTEMS
    rest = "; and {} more system{} (see the verdict table)".format(more, "" if more == 1 else "s") if more > 0 else ""
    findings.append(Finding("verdicts", "Documented share per system: {}{}.".format("; ".join(shares), rest)))
    wrong = judged.loc[(judged["verdict"] == "mismatch").to_numpy(), [
        column for column in judged.columns if column not in ("witness", "detail")]]
    if wrong.empty:
        findings.append(Finding("verdicts", "No measured case disagrees with its source.", meaning="ok",
                                badge="0"))
        return findings
    keys = ["source", "expected", "cell"]
    wrong = wrong.assign(cell=cell_texts(wrong.drop(columns="verdict")))
    groups = wrong.assign(**{key: _text(wrong, key) for key in keys}).groupby(keys, sort=False)
    listed = sorted(groups, key=lambda item: -len(item[1]))
    for (source, expected, measured_text), rows in listed[:SHOWN_MISMATCH_GROUPS]:
        systems = tuple(pd.unique(rows["system"]))
        findings.append(Finding("verdicts", "{:,} case{} measured {} where the source documents {}: {}.".format(
            len(rows), "" if len(rows) == 1 else "s", measured_text, expected, source), systems,
            tuple(case_names(rows.head(SHOWN_CASES))), len(rows), "takeover", "✗"))
    if len(listed) > SHOWN_MISMATCH_GROUPS:
        findings.append(Finding("verdicts", "{} more groups of mismatches: see the mismatch list.".format(
            len(listed) - SHOWN_MISMATCH_GROUPS)))
    return findings


# ------------------------------------------------------------------------------------------------ all

@dataclass
class Findings:
    """The questions answered (each with its findings, in QUESTIONS order) and the verdict table behind them."""
    questions: list
    counts: pd.DataFrame


def key_findings(judged):
    """The Findings of a judged table (a `system` and a `meaning` column are used when present)."""
    judged = judged.assign(system=system_label(judged), meaning=cell_meanings(judged))
    masks = Masks(judged)
    questions = [(question, question_findings(masks, question)) for question in QUESTIONS]
    questions = [(question, findings) for question, findings in questions if findings]
    differences = difference_findings(judged)
    if differences:
        questions.append((DIFFERENCES, differences))
    counts = verdict_table(judged)
    questions.append((VERDICTS_QUESTION, verdict_findings(judged, counts)))
    return Findings(questions, counts)
