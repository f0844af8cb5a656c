"""How a reader sees a system, an option pair and a case's outcome: the labels of every report and picture."""
import numpy as np
import pandas as pd

from labs.vocabulary import OK, SPECIAL_OUTCOMES

MISMATCH_MARK = " ✗"
NOT_MEASURED = "·"
# Seed 004's cells: TCP over IPv4, both sockets on the wildcard address, the second socket from another process.
SEED_LAYOUT = {"lab": "bind_matrix", "proto": "tcp", "family": "inet", "first_addr": "wildcard",
               "second_addr": "wildcard", "prober": "other_process"}


def cell_texts(frame):
    """What a reader needs of each case in one cell: the bind outcome, and listen's when only listen failed."""
    outcome, bind, listen = (frame[column].fillna("").astype(object) for column in ("outcome", "bind", "listen"))
    text = np.select([outcome.isin(SPECIAL_OUTCOMES) & (outcome != OK), (bind == OK) & ~listen.isin(["", OK]),
                      bind != ""],
                     [outcome, "ok, listen " + listen, bind], default=outcome)  # default: failed before bind
    mismatch = (frame["verdict"] == "mismatch").to_numpy() if "verdict" in frame else False
    return pd.Series(np.where(mismatch, text + MISMATCH_MARK, text), index=frame.index, dtype=object)


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
    same = frame["first_opts"] == frame["second_opts"]
    return frame["first_opts"].where(same, frame["first_opts"] + " → " + frame["second_opts"])
