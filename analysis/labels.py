"""How a reader sees a system and an option pair: the row labels of every report and picture (the cells' texts are
in analysis.layouts)."""

from analysis.layouts import pair_label

NOT_MEASURED = "·"


def system_label(frame):
    """'host (os_family os_release)' per row: the row label of a system; ' [run_id]' after it where the same host
    appears in several runs (this month's run beside last month's). A frame with a `system` column has its labels
    already (report.write labels a big table once for every table and picture made from it)."""
    if "system" in frame.columns:
        return frame["system"]
    label = frame["host"] + " (" + frame["os_family"] + " " + frame["os_release"].fillna("") + ")"
    again = frame.groupby("host", sort=False)["run_id"].transform("nunique") > 1
    return label.where(~again, label + " [" + frame["run_id"] + "]")


def options_label(frame):
    return pair_label(frame["first_opts"], frame["second_opts"])
