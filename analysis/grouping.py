"""Codes of distinct combinations: the way every analysis step works on a big table without a Python loop per row
(judge its distinct combinations, then spread the answer back by code)."""
import numpy as np
import pandas as pd


def group_codes(frame, columns):
    """(code per row, positions of each group's first row): rows equal on `columns` (those the frame has) share a
    code, numbered 0, 1, ... in order of first appearance; a missing value is a value of its own."""
    codes = np.zeros(len(frame), dtype=np.int64)
    for column in columns:
        if column in frame.columns:
            column_codes, uniques = pd.factorize(frame[column], use_na_sentinel=True)
            codes = codes * (len(uniques) + 1) + (column_codes + 1)
            codes = pd.factorize(codes)[0].astype(np.int64)  # renumbered 0.. in order of appearance: stays small
    return codes, first_positions(codes)


def first_positions(codes):
    """Where each code first occurs, for codes numbered 0, 1, ... in order of first appearance."""
    return np.flatnonzero(~pd.Series(codes).duplicated().to_numpy())
