"""Choosing cases by parameter values: `--where state=LISTEN,TIME_WAIT` on the agent and on the controller."""


def parse_where(texts):
    """{"state": {"LISTEN", "TIME_WAIT"}, ...} from ["state=LISTEN,TIME_WAIT", ...]; ValueError when malformed."""
    where = {}
    for text in texts:
        column, sep, values = text.partition("=")
        if not sep or not column or not values:
            raise ValueError("--where wants COLUMN=VALUE[,VALUE...], not {!r}".format(text))
        where.setdefault(column, set()).update(values.split(","))
    return where


def check_where(lab, where):
    """ValueError when `where` names a column the lab does not have."""
    unknown = sorted(set(where) - set(lab.PARAMETERS))
    if unknown:
        raise ValueError("--where: lab {} has no column {} (its columns: {})".format(
            lab.__name__.split(".")[-1], ", ".join(unknown), ", ".join(lab.PARAMETERS)))


def selected(lab, host, where):
    check_where(lab, where)
    return [params for params in lab.cases(host) if all(params[column] in values for column, values in where.items())]
