"""Choosing cases by parameter values: `--where state=LISTEN,TIME_WAIT` on the agent and on the controller.

A case has the values asked for only if its lab has the column: `--where state=TIME_WAIT` over all labs runs the
labs that have a `state` column. A column that none of the chosen labs has is a mistake.

A TUNABLE parameter (a lab's size, such as socketpair_churn's `pairs`) is set, not filtered: `--where pairs=200`
runs each case that has the default size (TUNABLE's value) with 200 pairs instead; cases with another value of
that column (unix_sockets' scenarios that use one client) keep theirs. It does not keep the labs without that column
from running.
"""


def parse_where(texts):
    """{"state": {"LISTEN", "TIME_WAIT"}, ...} from ["state=LISTEN,TIME_WAIT", ...]; ValueError when malformed."""
    where = {}
    for text in texts:
        column, sep, values = text.partition("=")
        if not sep or not column or not values:
            raise ValueError("--where wants COLUMN=VALUE[,VALUE...], not {!r}".format(text))
        where.setdefault(column, set()).update(values.split(","))
    return where


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
    """ValueError when `where` names a column none of the labs has, or a tunable value of the wrong type."""
    columns = [column for lab in lab_modules for column in lab.PARAMETERS]
    unknown = sorted(set(where) - set(columns))
    if unknown:
        names = ", ".join(lab.__name__.split(".")[-1] for lab in lab_modules)
        raise ValueError("--where: no column {} in lab {} (columns: {})".format(
            ", ".join(unknown), names, ", ".join(dict.fromkeys(columns))))
    for lab in lab_modules:
        for column in set(where) & set(lab.TUNABLE):
            tunable_values(lab, column, where[column])


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
