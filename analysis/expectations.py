"""The documented expectation tables: load them (validated, ties rejected) and judge a results table against them.

An expectation file (expectations/*.yaml) is data, one lab per file:

    lab: bind_matrix                 # the lab its rules apply to (labs.LABS)
    defaults:                        # optional: conditions every rule of the file shares (a rule may override one)
      os_family: linux
    sources:                         # optional: short ids -> the full citation
      socket7: "socket(7), Linux man-pages, SO_REUSEADDR (man7.org/linux/man-pages/man7/socket.7.html)"
    rules:
      - when: {proto: tcp, family: inet, state: [LISTEN, LISTEN+ESTABLISHED], first_opts: SO_REUSEADDR,
               second_opts: SO_REUSEADDR, first_addr: wildcard}
        expect: {bind: EADDRINUSE}
        source: socket7              # required: an id of `sources:`, free text, or a list of them
        section: "'it is not possible to bind to this port for any local address'"   # optional: where exactly

`when:` maps result columns to a value, or a list of values meaning any of them; a column left out means any.
Columns: os_family, os_release, upstream_release (the upstream kernel version where a distribution hides it: Debian's
6.1.0-28-amd64 is 6.1.119), os_version, python (the host Python's version), host, the lab's PARAMETERS and its
MEASURES (facts a case recorded that decide its outcome, such as tuple_reuse's `timestamps`). os_release,
upstream_release, os_version and python also take ranges, compared on the leading numeric parts of the value
("6.18.44-fc-v669" -> 6.18.44, "6.2-RELEASE" -> 6.2): ">=3.9", "<2.6.30", ">=2.4,<2.7" (clauses joined by commas all hold; operators >=, >, <=, <,
==). A value that does not start with an operator is compared as an exact string ("XP", "10").
`expect:` maps the lab's STEPS columns and/or `outcome` to ok, an error name or one of the step's STEP_VALUES (who
accepted a connection, which end held TIME_WAIT, ...), or a list: any of them.

The most specific rule decides a case: specificity is the number of constrained columns (defaults included). Two
rules of one lab with the same specificity whose conditions intersect on every column (ranges overlapping) and that
expect different things are a load error; when they agree, both sources are reported.

A rule may add `note:` (shown in its source text after the section), e.g. to say where a source was applied beyond
its literal setting. A `source:` that is a single word must be an id of `sources:`; free text has spaces.

judge() adds three columns: verdict (VERDICTS), expected ("bind=ok, listen=EADDRINUSE") and source. Outcomes
inconclusive / unsupported / error give that verdict (expected and source still say what the deciding rule, if any,
expects); otherwise the deciding rule gives match or mismatch, and no rule gives undocumented. It evaluates the rules
once per distinct combination of the columns they look at, then spreads the verdicts back by group code: no Python
loop runs per result row.
"""
import os
import re

import numpy as np
import pandas as pd

from analysis.grouping import group_codes
from formats import yamlfile
from formats.errors import UserError
from formats.records import OS_FAMILIES
from formats.table import text_column
from labs import LABS, module
from labs.vocabulary import ERROR, ERROR_NAMES, INCONCLUSIVE, OK, OPTIONS, UNSUPPORTED, is_option_set

VERDICTS = ("match", "mismatch", "undocumented", "inconclusive", "unsupported", "error")
SPECIAL_VERDICTS = (INCONCLUSIVE, UNSUPPORTED, ERROR)

DEFAULT_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "expectations")

VERSION_COLUMNS = ("os_release", "upstream_release", "os_version", "python")
HOST_COLUMNS = ("os_family",) + VERSION_COLUMNS + ("host",)
EXPECTABLE = (OK,) + ERROR_NAMES

FILE_KEYS = ("lab", "defaults", "sources", "rules")
RULE_KEYS = ("when", "expect", "source", "section", "note")
SOURCE_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
VERSION = re.compile(r"^\s*(\d+(?:\.\d+)*)")
CLAUSE = re.compile(r"^(>=|<=|>|<|==)\s*(\d+(?:\.\d+)*)$")
RANGE_START = "<>=!~"


def version_tuple(text):
    """The leading numeric parts of a release or version string as a tuple of ints, or None."""
    found = VERSION.match(str(text))
    return tuple(int(part) for part in found.group(1).split(".")) if found else None


def _compare(a, b):
    """-1, 0, 1 for two version tuples, the shorter padded with zeros (3.9 == 3.9.0)."""
    width = max(len(a), len(b))
    a, b = a + (0,) * (width - len(a)), b + (0,) * (width - len(b))
    return (a > b) - (a < b)


class Range:
    """An interval of versions: lo/hi are tuples or None (unbounded), each inclusive or not."""

    def __init__(self, text, lo=None, lo_incl=True, hi=None, hi_incl=True):
        self.text, self.lo, self.lo_incl, self.hi, self.hi_incl = text, lo, lo_incl, hi, hi_incl

    @classmethod
    def parse(cls, text):
        """A range from ">=2.4,<2.7"; ValueError naming the problem."""
        rng = cls(text)
        clauses = [clause.strip() for clause in text.split(",")]
        for clause in clauses:
            found = CLAUSE.match(clause)
            if not found:
                raise ValueError("bad range {!r}: each clause is one of >=, >, <=, <, == and a version like 3.9"
                                 .format(text))
            op, bound = found.group(1), version_tuple(found.group(2))
            if op in (">=", ">", "=="):
                rng._raise_lo(bound, op != ">")
            if op in ("<=", "<", "=="):
                rng._lower_hi(bound, op != "<")
        if rng.empty():
            raise ValueError("bad range {!r}: no version is in it".format(text))
        return rng

    def _raise_lo(self, bound, inclusive):
        if self.lo is None or _compare(bound, self.lo) > 0 or (_compare(bound, self.lo) == 0 and not inclusive):
            self.lo, self.lo_incl = bound, inclusive

    def _lower_hi(self, bound, inclusive):
        if self.hi is None or _compare(bound, self.hi) < 0 or (_compare(bound, self.hi) == 0 and not inclusive):
            self.hi, self.hi_incl = bound, inclusive

    def empty(self):
        if self.lo is None or self.hi is None:
            return False
        order = _compare(self.lo, self.hi)
        return order > 0 or (order == 0 and not (self.lo_incl and self.hi_incl))

    def contains(self, version):
        if version is None:
            return False
        if self.lo is not None:
            order = _compare(version, self.lo)
            if order < 0 or (order == 0 and not self.lo_incl):
                return False
        if self.hi is not None:
            order = _compare(version, self.hi)
            if order > 0 or (order == 0 and not self.hi_incl):
                return False
        return True

    def overlaps(self, other):
        both = Range(None, self.lo, self.lo_incl, self.hi, self.hi_incl)
        if other.lo is not None:
            both._raise_lo(other.lo, other.lo_incl)
        if other.hi is not None:
            both._lower_hi(other.hi, other.hi_incl)
        return not both.empty()


class Condition:
    """What one column of a rule accepts: exact values and (version columns only) ranges."""

    def __init__(self, values=(), ranges=()):
        self.values, self.ranges = frozenset(values), tuple(ranges)
        self.key = (self.values, tuple(r.text for r in self.ranges))

    def matches(self, value):
        if value in self.values:
            return True
        version = version_tuple(value) if self.ranges else None
        return any(r.contains(version) for r in self.ranges)

    def intersects(self, other):
        if self.values & other.values:
            return True
        if any(other.matches(value) for value in self.values) or any(self.matches(v) for v in other.values):
            return True
        return any(mine.overlaps(theirs) for mine in self.ranges for theirs in other.ranges)

    def text(self):
        items = sorted(self.values) + [r.text for r in self.ranges]
        return items[0] if len(items) == 1 else "[" + ", ".join(items) + "]"


class Rule:
    """One row of an expectation file, its defaults merged in."""

    def __init__(self, lab, path, line, index, when, expect, source, expect_line=None):
        self.lab, self.path, self.line, self.index = lab, path, line, index
        self.expect_line = expect_line or line
        self.when, self.expect, self.source = when, expect, source
        self.specificity = len(when)
        self.expected = ", ".join("{}={}".format(column, "|".join(values)) for column, values in expect.items())

    @property
    def where(self):
        return "{}:{}".format(self.path, self.line)

    def intersects(self, other):
        return all(self.when[column].intersects(other.when[column])
                   for column in set(self.when) & set(other.when))


class ExpectationTable:
    """The loaded rules of every file, by lab; ties were checked when it was built."""

    def __init__(self, rules, files):
        self.rules, self.files = rules, files
        self.by_lab = {}
        for rule in rules:
            self.by_lab.setdefault(rule.lab, []).append(rule)

    def __len__(self):
        return len(self.rules)

    def to_frame(self):
        """One row per rule: where it is, what it matches, what it expects, its source (for reports)."""
        return pd.DataFrame([{
            "lab": rule.lab, "file": rule.path, "line": rule.line, "specificity": rule.specificity,
            "when": ", ".join("{}={}".format(c, cond.text()) for c, cond in rule.when.items()),
            "expected": rule.expected, "source": rule.source,
        } for rule in self.rules], columns=["lab", "file", "line", "specificity", "when", "expected", "source"])


# ---------------------------------------------------------------------------------------------------- loading

def _where(mapping, key, fallback):
    lines = getattr(mapping, "lines", None) or {}
    return lines.get(key, fallback)


def _items(value):
    """A condition or expect value as a list of (item, index) pairs: a scalar is a list of one."""
    return list(value) if isinstance(value, list) else [value]


def _scalar_text(value, path, line, field):
    """A YAML scalar as text: strings as they are, integers spelled out (os_release: 10); anything else is refused."""
    if isinstance(value, bool) or value is None or isinstance(value, (dict, list)):
        raise UserError("expected a value or a list of values, got {!r}".format(value), path=path, line=line,
                        field=field)
    if isinstance(value, float):
        raise UserError("{!r} is read as a number: quote it (\"{}\") or write a range".format(value, value),
                        path=path, line=line, field=field)
    return str(value)


def _condition(column, raw, lab_module, path, line, field):
    """The Condition for one `when` entry, validated against the lab's axes; UserError naming the field."""
    values, ranges = [], []
    items = _items(raw)
    if not items:
        raise UserError("an empty list matches nothing; leave the column out to match any value", path=path,
                        line=line, field=field)
    axes = lab_module.AXES
    for position, item in enumerate(items):
        item_line = raw.lines[position] if isinstance(raw, list) and getattr(raw, "lines", None) else line
        text = _scalar_text(item, path, item_line, field)
        if column in VERSION_COLUMNS and text[:1] in RANGE_START:
            try:
                ranges.append(Range.parse(text))
            except ValueError as exc:
                raise UserError(str(exc), path=path, line=item_line, field=field) from None
            continue
        if column == "os_family" and text not in OS_FAMILIES:
            raise UserError("unknown OS family {!r} (known: {})".format(text, ", ".join(OS_FAMILIES)), path=path,
                            line=item_line, field=field)
        if column.endswith("_opts") and column in lab_module.PARAMETERS and not is_option_set(text):
            raise UserError("unknown option set {!r}: write none, or options joined by + in the order {}".format(
                text, "+".join(OPTIONS)), path=path, line=item_line, field=field)
        if column in axes and text not in axes[column]:
            raise UserError("unknown value {!r} for {} (one of: {})".format(text, column, ", ".join(axes[column])),
                            path=path, line=item_line, field=field)
        values.append(text)
    return Condition(values, ranges)


def _conditions(mapping, lab_module, path, field, line=None):
    """Validated conditions of a `when` or `defaults` mapping: {column: Condition}."""
    if mapping is None:
        return {}
    if not isinstance(mapping, dict):
        raise UserError("expected a mapping of result columns to values", path=path, line=line, field=field)
    allowed = HOST_COLUMNS + tuple(lab_module.PARAMETERS) + tuple(lab_module.MEASURES)
    conditions = {}
    for column, raw in mapping.items():
        line = _where(mapping, column, getattr(mapping, "line", None))
        name = "{}.{}".format(field, column)
        if column not in allowed:
            raise UserError("unknown column {!r} (columns: {})".format(column, ", ".join(allowed)), path=path,
                            line=line, field=name)
        conditions[column] = _condition(column, raw, lab_module, path, line, name)
    return conditions


def _expectations(mapping, lab_module, path, line, field):
    if not isinstance(mapping, dict) or not mapping:
        raise UserError("expected a mapping of step columns to outcomes, e.g. {bind: EADDRINUSE}", path=path,
                        line=line, field=field)
    allowed = tuple(lab_module.STEPS) + ("outcome",)
    step_values = lab_module.STEP_VALUES
    expect = {}
    for column in [c for c in allowed if c in mapping] + [c for c in mapping if c not in allowed]:
        raw = mapping[column]
        item_line = _where(mapping, column, line)
        name = "{}.{}".format(field, column)
        if column not in allowed:
            raise UserError("unknown column {!r} (expectable: {})".format(column, ", ".join(allowed)), path=path,
                            line=item_line, field=name)
        values = []
        for item in _items(raw):
            text = _scalar_text(item, path, item_line, name)
            if text not in EXPECTABLE + tuple(step_values.get(column, ())):
                raise UserError("unknown outcome {!r}: ok, an error name (EADDRINUSE, EACCES, ...){}".format(
                    text, "".join(", " + value for value in step_values.get(column, ()))),
                    path=path, line=item_line, field=name)
            values.append(text)
        if not values:
            raise UserError("an empty list expects nothing", path=path, line=item_line, field=name)
        expect[column] = tuple(sorted(set(values), key=values.index))
    return expect


def _source_text(raw, sources, path, line, field):
    items = _items(raw)
    texts = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise UserError("every rule needs a source: an id of `sources:` or the citation itself", path=path,
                            line=line, field=field)
        item = item.strip()
        if item in sources:
            texts.append(sources[item])
        elif SOURCE_ID.match(item):
            raise UserError("unknown source id {!r} (defined: {})".format(item, ", ".join(sources) or "none"),
                            path=path, line=line, field=field)
        else:
            texts.append(item)
    if not texts:
        raise UserError("every rule needs a source", path=path, line=line, field=field)
    return "; ".join(texts)


def load_file(path):
    """The rules of one expectation file; UserError (file, line, field) on the first problem."""
    doc = yamlfile.load(path)
    if doc is None:
        raise UserError("empty expectation file", path=path)
    if not isinstance(doc, dict):
        raise UserError("an expectation file is a mapping with lab, rules and optionally defaults, sources",
                        path=path, line=getattr(doc, "line", 1))
    for key in doc:
        if key not in FILE_KEYS:
            raise UserError("unknown key {!r} (keys: {})".format(key, ", ".join(FILE_KEYS)), path=path,
                            line=_where(doc, key, None), field=str(key))
    lab = doc.get("lab")
    if lab not in LABS:
        raise UserError("unknown or missing lab {!r} (labs: {})".format(lab, ", ".join(LABS)), path=path,
                        line=_where(doc, "lab", doc.line), field="lab")
    lab_module = module(lab)

    sources = doc.get("sources") or {}
    if not isinstance(sources, dict):
        raise UserError("expected a mapping of source ids to citations", path=path,
                        line=_where(doc, "sources", None), field="sources")
    for key, text in sources.items():
        if not isinstance(key, str) or not SOURCE_ID.match(key) or not isinstance(text, str) or not text.strip():
            raise UserError("a source is an id (letters, digits, _ . -) and its citation text", path=path,
                            line=_where(sources, key, sources.line), field="sources.{}".format(key))
    defaults = _conditions(doc.get("defaults"), lab_module, path, "defaults", _where(doc, "defaults", None))

    rules_raw = doc.get("rules")
    if not isinstance(rules_raw, list) or not rules_raw:
        raise UserError("expected a non-empty list of rules", path=path,
                        line=_where(doc, "rules", doc.line), field="rules")
    rules = []
    for index, row in enumerate(rules_raw):
        field = "rules[{}]".format(index)
        line = rules_raw.lines[index]
        if not isinstance(row, dict):
            raise UserError("a rule is a mapping with when, expect, source", path=path, line=line, field=field)
        for key in row:
            if key not in RULE_KEYS:
                raise UserError("unknown key {!r} (keys: {})".format(key, ", ".join(RULE_KEYS)), path=path,
                                line=_where(row, key, line), field="{}.{}".format(field, key))
        when = dict(defaults)
        when.update(_conditions(row.get("when"), lab_module, path, field + ".when", _where(row, "when", line)))
        if "expect" not in row:
            raise UserError("a rule needs `expect:`", path=path, line=line, field=field + ".expect")
        expect = _expectations(row["expect"], lab_module, path, _where(row, "expect", line), field + ".expect")
        if "source" not in row:
            raise UserError("a rule needs `source:` (where this expectation is documented)", path=path, line=line,
                            field=field + ".source")
        source = _source_text(row["source"], sources, path, _where(row, "source", line), field + ".source")
        for extra, template in (("section", "{}, {}"), ("note", "{} (note: {})")):
            if extra in row:
                text = row[extra]
                if not isinstance(text, str) or not text.strip():
                    raise UserError("expected text", path=path, line=_where(row, extra, line),
                                    field="{}.{}".format(field, extra))
                source = template.format(source, " ".join(text.split()))
        rules.append(Rule(lab, str(path), line, index, when, expect, source, _where(row, "expect", line)))
    return rules


def _expand(paths):
    if paths is None:
        paths = [DEFAULT_PATH]
    elif isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files = []
    for path in paths:
        path = os.fspath(path)
        if os.path.isdir(path):
            found = sorted(os.path.join(folder, name) for folder, _, names in os.walk(path)
                           for name in names if name.endswith(".yaml"))
            if not found:
                raise UserError("no expectation files (*.yaml) here", path=path)
            files += found
        elif os.path.exists(path):
            files.append(path)
        else:
            raise UserError("no such file or directory", path=path)
    return files


def check_ties(rules):
    """Reject two rules of one lab, equally specific, whose conditions intersect, that expect different things."""
    groups = {}
    for rule in rules:
        groups.setdefault((rule.lab, rule.specificity), []).append(rule)
    for group in groups.values():
        for position, later in enumerate(group):
            for earlier in group[:position]:
                if earlier.expect != later.expect and earlier.intersects(later):
                    raise UserError(
                        "ties with the rule at {} (same specificity {}, conditions overlap) but expects {} where "
                        "that one expects {}".format(earlier.where, later.specificity, later.expected,
                                                     earlier.expected),
                        path=later.path, line=later.expect_line, field="rules[{}].expect".format(later.index))


def load_expectations(paths=None):
    """The expectation table of files and/or directories (every *.yaml under one), default the repo's expectations/."""
    files = _expand(paths)
    rules = []
    for path in files:
        rules += load_file(path)
    check_ties(rules)
    return ExpectationTable(rules, files)


# ---------------------------------------------------------------------------------------------------- judging

class _Matcher:
    """Rule conditions evaluated over the distinct combinations, each condition once."""

    def __init__(self, distinct):
        self.distinct, self.cache = distinct, {}

    def mask(self, rule):
        result = np.ones(len(self.distinct), dtype=bool)
        for column, condition in rule.when.items():
            key = (column, condition.key)
            if key not in self.cache:
                values = self.distinct[column]
                if condition.ranges:
                    verdicts = {value: condition.matches(value) for value in values.unique()}
                    self.cache[key] = values.map(verdicts).to_numpy(dtype=bool)
                else:
                    self.cache[key] = values.isin(condition.values).to_numpy()
            result &= self.cache[key]
        return result


def _judge_lab(distinct, rules):
    """verdict, expected, source arrays for the distinct combinations of one lab."""
    count = len(distinct)
    winner = np.full(count, -1, dtype=np.int64)
    extra = {}
    matcher = _Matcher(distinct)
    for level in sorted({rule.specificity for rule in rules}, reverse=True):
        open_before = winner == -1
        if not open_before.any():
            break
        for number, rule in enumerate(rules):
            if rule.specificity != level:
                continue
            hit = matcher.mask(rule) & open_before
            fresh = hit & (winner == -1)
            winner[fresh] = number
            for position in np.nonzero(hit & ~fresh)[0]:  # an agreeing rule of the same level: cite it too
                if rules[winner[position]].source != rule.source:
                    extra.setdefault(position, []).append(rule.source)
    verdict = np.full(count, "undocumented", dtype=object)
    expected = np.full(count, "", dtype=object)
    source = np.full(count, "", dtype=object)
    for number in np.unique(winner[winner >= 0]):
        rule = rules[number]
        rows = winner == number
        good = np.ones(int(rows.sum()), dtype=bool)
        for column, values in rule.expect.items():
            good &= distinct.loc[rows, column].isin(values).to_numpy()
        verdict[rows] = np.where(good, "match", "mismatch")
        expected[rows] = rule.expected
        source[rows] = rule.source
    for position, more in extra.items():
        source[position] = " | ".join([source[position]] + list(dict.fromkeys(more)))
    outcome = distinct["outcome"].to_numpy(dtype=object)
    for special in SPECIAL_VERDICTS:
        verdict[outcome == special] = special
    return verdict, expected, source


class _CodedColumn:
    """A judged column built as codes into its few distinct values, one lab's groups at a time, and given to the
    table as a Categorical: a million rows of object text would cost a factorize per step of the report."""

    def __init__(self, count, initial, vocabulary=()):
        self.values = list(dict.fromkeys((initial,) + tuple(vocabulary)))  # a fixed vocabulary: every category
        self.code_of = {value: code for code, value in enumerate(self.values)}
        self.codes = np.zeros(count, dtype=np.int32)

    def code(self, value):
        if value not in self.code_of:
            self.code_of[value] = len(self.values)
            self.values.append(value)
        return self.code_of[value]

    def put(self, rows, group_values, group_codes):
        """rows get group_values[group_codes]: each row the value of its group."""
        self.codes[rows] = np.array([self.code(value) for value in group_values], dtype=np.int32)[group_codes]

    def fill(self, rows, value):
        self.codes[rows] = self.code(value)

    def series(self, index):
        return pd.Series(pd.Categorical.from_codes(self.codes, categories=self.values), index=index)


def judge(results, table):
    """A copy of `results` with verdict, expected and source columns (see the module's docstring), Categoricals."""
    judged = results.copy()
    count = len(judged)
    outcome = text_column(judged, "outcome").to_numpy(dtype=object)
    verdict, expected, source = (_CodedColumn(count, "undocumented", VERDICTS), _CodedColumn(count, ""),
                                 _CodedColumn(count, ""))
    for special in SPECIAL_VERDICTS:
        verdict.fill(outcome == special, special)
    labs = text_column(judged, "lab").to_numpy(dtype=object)
    for lab, rules in table.by_lab.items():
        rows = np.nonzero(labs == lab)[0]
        if not len(rows):
            continue
        lab_module = module(lab)
        columns = sorted({column for rule in rules for column in rule.when})
        steps = [column for column in tuple(lab_module.STEPS) + ("outcome",)
                 if any(column in rule.expect for rule in rules)]
        keys = list(dict.fromkeys(columns + steps + ["outcome"]))
        part = judged.iloc[rows]
        codes, firsts = group_codes(part, keys)
        sample = part.iloc[firsts]
        distinct = pd.DataFrame({column: text_column(sample, column).to_numpy(dtype=object) for column in keys})
        lab_verdict, lab_expected, lab_source = _judge_lab(distinct, rules)
        verdict.put(rows, lab_verdict, codes)
        expected.put(rows, lab_expected, codes)
        source.put(rows, lab_source, codes)
    judged["verdict"] = verdict.series(judged.index)
    judged["expected"] = expected.series(judged.index)
    judged["source"] = source.series(judged.index)
    return judged


def verdict_counts(judged, run_id=None, keys=("host", "lab")):
    """Cases per `keys` (rows, in order of appearance) and verdict (VERDICTS order) of the run `run_id` (all
    rows when None), counted by code."""
    codes, firsts = group_codes(judged, list(keys))
    verdict_codes, verdicts = pd.factorize(judged["verdict"])
    kept = np.ones(len(judged), dtype=bool) if run_id is None else (judged["run_id"] == run_id).to_numpy()
    counts = np.bincount(codes[kept] * len(verdicts) + verdict_codes[kept], minlength=len(firsts) * len(
        verdicts)).reshape(len(firsts), len(verdicts))
    table = pd.DataFrame(counts, index=pd.MultiIndex.from_frame(judged[list(keys)].iloc[firsts]),
                         columns=pd.Index(verdicts, name="verdict"))
    table = table[np.bincount(codes[kept], minlength=len(firsts)) > 0]
    return table.reindex(columns=[verdict for verdict in VERDICTS if verdict in table.columns] + [
        verdict for verdict in table.columns if verdict not in VERDICTS])


def documented_share(counts):
    """(documented, measured): cases a source speaks for (match, mismatch) and cases measured with a verdict
    that says so (those and undocumented)."""
    documented = counts.reindex(columns=["match", "mismatch"], fill_value=0).sum(axis=1)
    return documented, documented + counts.reindex(columns=["undocumented"], fill_value=0).sum(axis=1)


def documented_column(counts):
    """The verdict counts with a column `documented`: the share of each row's measured cases a source documents,
    as the report prints it ("97%"; empty where none was measured)."""
    documented, measured = documented_share(counts)
    return counts.assign(documented=["{:.0%}".format(part / whole) if whole else ""
                                     for part, whole in zip(documented, measured)])
