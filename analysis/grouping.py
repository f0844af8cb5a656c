"""Codes of distinct combinations: the way every analysis step works on a big table without a Python loop per row
(judge its distinct combinations, then spread the answer back by code)."""
import numpy as np
import pandas as pd

LIMIT = 2 ** 62  # combined codes stay below this: int64 holds them


def group_codes(frame, columns):
    """(code per row, positions of each group's first row): rows equal on `columns` (those the frame has) share a
    code, numbered 0, 1, ... in order of first appearance; a missing value is a value of its own."""
    codes, size = np.zeros(len(frame), dtype=np.int64), 1
    for column in columns:
        if column in frame.columns:
            series = frame[column]
            if isinstance(series.dtype, pd.CategoricalDtype):  # its codes already (missing: -1)
                column_codes, count = series.cat.codes.to_numpy().astype(np.int64), len(series.cat.categories)
            else:
                column_codes, uniques = pd.factorize(series, use_na_sentinel=True)
                count = len(uniques)
            if size * (count + 1) >= LIMIT:  # renumber 0.. first, so that the product stays small
                codes = pd.factorize(codes)[0].astype(np.int64)
                size = int(codes.max(initial=0)) + 1
            codes, size = codes * (count + 1) + (column_codes + 1), size * (count + 1)
    codes = pd.factorize(codes)[0].astype(np.int64)  # numbered by first appearance
    return codes, first_positions(codes)


def first_positions(codes):
    """Where each code first occurs, for codes numbered 0, 1, ... in order of first appearance."""
    return np.flatnonzero(~pd.Series(codes).duplicated().to_numpy())
