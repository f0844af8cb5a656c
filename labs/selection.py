"""Choosing cases by parameter values: `--where state=LISTEN,TIME_WAIT` on the agent and on the controller.

A case has the values asked for only if its lab has the column: `--where state=TIME_WAIT` over all labs runs the
labs that have a `state` column. A column that none of the chosen labs has is a mistake.

A TUNABLE parameter (a lab's size, such as socketpair_churn's `pairs`) is set, not filtered: `--where pairs=200`
runs each case that has the default size (TUNABLE's value) with 200 pairs instead; cases with another value of
that column (unix_sockets' scenarios that use one client) keep theirs. It does not keep the labs without that column
from running.

Values are checked against each lab's AXES (and sizes, option sets); a selection that no case matches, even on a
host with every option, is an error naming the filter that left nothing (unmatched()).
"""
import re

from labs.vocabulary import OPTIONS, is_option_set

WHOLE = re.compile(r"^[0-9]+$")
# A host that has every option: its table of cases is the widest any host has, so a selection that matches none
# of its cases matches none anywhere.
EVERY_OPTION_HOST = {"options": OPTIONS}


def parse_where(texts):
    """{"state": {"LISTEN", "TIME_WAIT"}, ...} from ["state=LISTEN,TIME_WAIT", ...]; ValueError when malformed."""
    where = {}
    for text in texts:
        column, sep, values = text.partition("=")
        if not sep or not column or not values:
            raise ValueError("--where wants COLUMN=VALUE[,VALUE...], not {!r}".format(text))
        where.setdefault(column, set()).update(values.split(","))
    return where


def value_problem(lab, column, text):
    """Why `text` is not a value of the lab's parameter `column` (its AXES, a whole number for a TUNABLE size, an
    option set for an *_opts column), or None when it is one."""
    if column in lab.AXES:
        return None if text in lab.AXES[column] else "not one of {}".format(", ".join(lab.AXES[column]))
    if column in lab.TUNABLE:
        return None if WHOLE.match(text) else "not a whole number"
    if column.endswith("_opts"):
        return None if is_option_set(text) else "not none or options joined by + in the order {}".format(
            "+".join(OPTIONS))
    return None


def tunable_values(lab, column, values):
    """The values of a TUNABLE column, in order, as their spelling in results; ValueError when one is not of its
    type or not positive."""
    kind = type(lab.TUNABLE[column])
    chosen = []
    for text in sorted(values, key=lambda text: (len(text), text)):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or value <= 0:
            raise ValueError("--where: {}={} is not a positive {}".format(column, text, kind.__name__))
        chosen.append(str(value))
    return chosen


def check_where(lab_modules, where):
    """ValueError when `where` names a column none of the labs has, a value that none of the labs with that column
    takes, an empty value, or a size (TUNABLE) that is not a positive whole number."""
    columns = [column for lab in lab_modules for column in lab.PARAMETERS]
    unknown = sorted(set(where) - set(columns))
    if unknown:
        names = ", ".join(lab.__name__.split(".")[-1] for lab in lab_modules)
        raise ValueError("--where: no column {} in lab {} (columns: {})".format(
            ", ".join(unknown), names, ", ".join(dict.fromkeys(columns))))
    for lab in lab_modules:
        for column in set(where) & set(lab.TUNABLE):
            tunable_values(lab, column, where[column])
    for column, values in where.items():
        having = [lab for lab in lab_modules if column in lab.PARAMETERS]
        for text in sorted(values):
            if not text:
                raise ValueError("--where: {}: an empty value".format(column))
            problems = [value_problem(lab, column, text) for lab in having]
            if all(problems):
                raise ValueError("--where: {}={}: {}".format(column, text, problems[0]))


def unmatched(lab_modules, where):
    """None when some case of these labs has every value `where` asks for on the host with every option; else the
    first filter, as "column=values", after which no case is left, and the filters before it."""
    sizes = {column for lab in lab_modules for column in lab.TUNABLE}
    filters = [(column, values) for column, values in where.items() if column not in sizes]
    best = 0  # the most leading filters that one case meets
    for lab in lab_modules:
        usable = next((n for n, (column, _) in enumerate(filters) if column not in lab.PARAMETERS), len(filters))
        if usable <= best:
            continue
        for params in lab.cases(EVERY_OPTION_HOST):
            met = next((n for n, (column, values) in enumerate(filters[:usable]) if params[column] not in values),
                       usable)
            best = max(best, met)
            if best == usable:
                break
        if best == len(filters):
            break
    if best == len(filters):
        return None
    spelled = ["{}={}".format(column, ",".join(sorted(values))) for column, values in filters]
    return spelled[best], spelled[:best]


def selected(lab, host, where, sizes=()):
    """The lab's cases with the values of `where` (none if the lab lacks one of its columns), tunables set.
    `sizes`: the tunable columns of every lab asked for; they set sizes, so they do not filter out the labs
    without them (`--where pairs=200` still runs hijack)."""
    if not set(where) - set(sizes) <= set(lab.PARAMETERS):
        return []
    tunable = lab.TUNABLE
    where = {column: values for column, values in where.items() if column in lab.PARAMETERS}
    filters = {column: values for column, values in where.items() if column not in tunable}
    settings = {column: tunable_values(lab, column, values) for column, values in where.items() if column in tunable}
    chosen = []
    for params in lab.cases(host):
        if not all(params[column] in values for column, values in filters.items()):
            continue
        variants = [params]
        for column, values in settings.items():
            if params[column] == str(tunable[column]):
                variants = [dict(variant, **{column: value}) for variant in variants for value in values]
        chosen += variants
    return chosen
