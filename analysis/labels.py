"""How a reader sees a system and an option pair: the row labels of every report and picture (the cells' texts are
in analysis.layouts)."""

import pandas as pd

from analysis.grouping import group_codes
from analysis.layouts import pair_label

NOT_MEASURED = "·"


def system_label(frame):
    """'host (os_family os_release)' per row: the row label of a system; ' [run_id]' after it where the same host
    appears in several runs (this month's run beside last month's). A frame with a `system` column has its labels
    already (report.write labels a big table once for every table and picture made from it). Worked out once per
    distinct system, then spread back by code."""
    if "system" in frame.columns:
        return frame["system"]
    key = ["host", "os_family", "os_release", "run_id"]
    codes, firsts = group_codes(frame, key)
    systems = frame[key].iloc[firsts].astype(object).fillna("")
    label = systems["host"] + " (" + systems["os_family"] + " " + systems["os_release"] + ")"
    again = systems.groupby("host", sort=False)["run_id"].transform("nunique") > 1
    label = label.where(~again, label + " [" + systems["run_id"] + "]")
    return pd.Series(label.to_numpy(dtype=object)[codes], index=frame.index, dtype=object)


def options_label(frame):
    return pair_label(frame["first_opts"], frame["second_opts"])
