"""results.csv, the tidy table: one row per case, the fixed columns of DESIGN.md (labs.vocabulary.RESULT_COLUMNS)
then the parameter, step and measure columns of the labs it holds.

It is made from the host logs (the record) when a run ends, written whole (a temporary file renamed over it),
and read back while it is current: written after the manifest and every log. Beside it goes results.parquet, its
columnar copy: the same text read back from the CSV, each column a pandas Categorical, read in a tenth of the time
while it is newer than results.csv (a results.csv edited or replaced afterwards is read instead). Whichever is read
is checked like any file a user may hand over: its columns, and the values the analysis relies on.

A loaded table's text columns are Categoricals: a run's dozen columns hold a few values each over thousands of
rows, and codes make the analysis's grouping, filtering and judging of a million rows cheap (factorize and take on
text were most of the report's time). `concat` joins tables and keeps them so.
"""
import os

import numpy as np
import pandas as pd

from formats import rundir
from formats.errors import UserError
from formats.records import LAB_MODULES, SPECIAL_OUTCOMES, WORD
from labs import LABS
from labs.vocabulary import RESULT_COLUMNS

TABLE = rundir.TABLE
COLUMNAR = rundir.COLUMNAR
PARAMETER_COLUMNS = list(dict.fromkeys(column for lab in LAB_MODULES.values() for column in lab.PARAMETERS))
STEP_COLUMNS = list(dict.fromkeys(column for lab in LAB_MODULES.values() for column in lab.STEPS))
# Steps whose result is a value (who accepted, which end held TIME_WAIT), not ok or an error name.
VALUE_STEP_COLUMNS = list(dict.fromkeys(column for lab in LAB_MODULES.values() for column in lab.STEP_VALUES))
REBUILD = " (remove results.csv: it is made again from the host logs)"


def lab_columns(names=LABS):
    """Parameter, step and measure columns of these labs (default every lab), in LABS order, each once."""
    return list(dict.fromkeys(column for name, lab in LAB_MODULES.items() if name in names
                              for column in tuple(lab.PARAMETERS) + tuple(lab.STEPS) + tuple(lab.MEASURES)))


COLUMNS = list(RESULT_COLUMNS) + lab_columns()


def with_columns(table):
    """The table with the fixed columns and those of the labs it holds, in that order: a table of one lab carries
    no empty columns of the others (a million rows of bind_matrix would otherwise hold dozens of them)."""
    present = set(table["lab"].dropna()) if "lab" in table.columns else set()
    table = table.reindex(columns=list(RESULT_COLUMNS) + lab_columns(present))
    table["errno"] = pd.to_numeric(table["errno"].astype(object)).astype("Int64")
    for name in present:  # an empty ID_DEFAULT value reads as missing (CSV): it is the default
        default = getattr(LAB_MODULES[name], "ID_DEFAULT", None)
        if default:
            column = table[default[0]]
            if isinstance(column.dtype, pd.CategoricalDtype) and default[1] not in column.cat.categories:
                column = column.cat.add_categories([default[1]])
            table[default[0]] = column.where(~((table["lab"] == name) & column.isna()), default[1])
    return categorical(table)


def categorical(table):
    """The table with every column but errno (a number) as a Categorical of text (see the module's docstring)."""
    return table.assign(**{column: as_category(table[column]) for column in table.columns if column != "errno"})


def as_category(column):
    """A column as a Categorical of text, categories sorted (as text sorts), numbers as the CSV writes them: the
    same whether the table came from results.csv, its columnar copy or the host logs."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        if column.cat.categories.dtype == "str" or (column.dtype.categories.empty and column.isna().all()):
            if column.cat.categories.dtype != "str":
                return column.cat.set_categories(pd.Index([], dtype="str"))
            return column
        column = column.astype(object)
    if column.dtype != "str":
        column = column.map(as_text, na_action="ignore").astype("str")
    codes, categories = pd.factorize(column, sort=True)
    return pd.Series(pd.Categorical.from_codes(codes, categories=pd.Index(categories, dtype="str")),
                     index=column.index, name=column.name)


def concat(tables):
    """The tables one under the other, their Categoricals kept (pandas makes columns whose categories differ plain
    objects): each column's categories are made the union of the tables' first."""
    tables = [table for table in tables if len(table.columns)]
    if len(tables) < 2:
        return tables[0].reset_index(drop=True) if tables else pd.DataFrame()
    columns = list(dict.fromkeys(column for table in tables for column in table.columns))
    tables = [table.reindex(columns=columns) for table in tables]
    for column in columns:
        if all(isinstance(table[column].dtype, pd.CategoricalDtype) for table in tables):
            union = pd.Index(sorted(set().union(*(table[column].cat.categories for table in tables))), dtype="str")
            tables = [table.assign(**{column: table[column].cat.set_categories(union)}) for table in tables]
    return pd.concat(tables, ignore_index=True)


def from_logs(run):
    """The tidy table of a formats.rundir.Run, from its host logs."""
    frames = []
    for host, log in run.logs.items():
        frame = pd.DataFrame.from_records(log.cases)
        if not frame.empty:
            frames.append(frame.assign(run_id=run.manifest["run_id"], host=host))
    return with_columns(pd.concat(frames, ignore_index=True) if frames else pd.DataFrame())


def columnar_is_current(run):
    """results.parquet holds results.csv when it was written after it (and results.csv is current)."""
    try:
        return os.path.getmtime(os.path.join(run.path, COLUMNAR)) >= os.path.getmtime(os.path.join(run.path, TABLE))
    except OSError:
        return False


def is_current(run):
    """results.csv holds the run when it was written after the manifest and every host log (the store writes it
    last, when a run ends; a resume or an import touches them again)."""
    try:
        written = os.path.getmtime(os.path.join(run.path, TABLE))
        sources = [os.path.join(run.path, "manifest.json")] + [rundir.log_path(run.path, host)
                                                               for host in run.manifest["hosts"]]
        return run.manifest.get("ended") is not None and all(
            os.path.getmtime(path) <= written for path in sources if os.path.exists(path))
    except OSError:
        return False


def first_bad(path, bad, column, problem):
    """UserError at the file line of the first row flagged in `bad` (line 1 is the header)."""
    if bad.any():
        raise UserError(problem + REBUILD, path=path, line=int(np.flatnonzero(bad.to_numpy())[0]) + 2, field=column)


def filled(values):
    """A text column (or a frame of them) with missing values as "": a Categorical gains the category, which
    fillna alone refuses."""
    if isinstance(values, pd.DataFrame):
        return values.assign(**{column: filled(values[column]) for column in values.columns}) if len(
            values.columns) else values
    if isinstance(values.dtype, pd.CategoricalDtype) and "" not in values.cat.categories:
        values = values.cat.add_categories([""])
    return values.fillna("")


def checked(table, path, manifest):
    """results.csv's table, its columns and the values the analysis relies on checked; UserError at the first
    fault (file:line: column: problem)."""
    missing = [column for column in RESULT_COLUMNS if column not in table.columns]
    if missing:
        raise UserError("missing " + ", ".join(missing) + REBUILD, path=path, line=1, field="columns")
    first_bad(path, ~table["lab"].isin(LABS), "lab", "not a lab name ({})".format(", ".join(LABS)))
    for name in table["lab"].unique():
        absent = [column for column in lab_columns([name]) if column not in table.columns]
        if absent:
            raise UserError("missing {} (columns of {})".format(", ".join(absent), name) + REBUILD, path=path,
                            line=1, field="columns")
    first_bad(path, table["run_id"] != manifest["run_id"], "run_id", "not this run's id ({})".format(
        manifest["run_id"]))
    first_bad(path, ~table["host"].isin(list(manifest["hosts"])), "host", "not a host of this run's manifest")
    first_bad(path, table["case_id"].isna(), "case_id", "empty")
    outcome = filled(table["outcome"])
    first_bad(path, ~(outcome.isin(SPECIAL_OUTCOMES) | outcome.str.match(WORD.pattern)), "outcome",
              "not an outcome ({} or an error name)".format(", ".join(SPECIAL_OUTCOMES)))
    first_bad(path, table["errno"].notna() & ~filled(table["errno"]).str.fullmatch(r"-?[0-9]+"), "errno",
              "not an error number")
    for name in table["lab"].unique():
        rows, lab = table["lab"] == name, LAB_MODULES[name]
        for column, values in lab.AXES.items():  # an empty value is read as missing: it is "" (second_family)
            first_bad(path, rows & ~filled(table[column]).isin(values), column, "not a value of {}'s {} ({})".format(
                name, column, ", ".join(values)))
    first_bad(path, table.duplicated(["host", "lab", "case_id"]), "case_id", "a case of this host is here twice")
    return table


def read_text_table(path):
    """results.csv as text (every column str); pyarrow's reader takes 1,000,000 rows in about a second here."""
    try:
        return pd.read_csv(path, engine="pyarrow", dtype=str)
    except OSError as exc:
        raise UserError(exc.strerror or str(exc), path=path) from None
    except ValueError as exc:  # pyarrow's parse errors are ValueErrors
        raise UserError("not a CSV table: {}".format(str(exc).splitlines()[0]) + REBUILD, path=path) from None


def read_columnar(path):
    """results.parquet as written by write_run_table, or UserError: a damaged or foreign file is named."""
    import pyarrow
    try:
        table = pd.read_parquet(path)
    except OSError as exc:
        raise UserError(exc.strerror or str(exc), path=path) from None
    except (pyarrow.ArrowException, ValueError) as exc:
        raise UserError("not a columnar copy of results.csv: {}".format(str(exc).splitlines()[0]) + REBUILD,
                        path=path) from None
    if not all(isinstance(table[column].dtype, pd.CategoricalDtype) or table[column].isna().all()
               for column in table.columns):
        raise UserError("not a columnar copy of results.csv: a column is not text" + REBUILD, path=path)
    return table


def read(run):
    """The run's table, checked: its columnar copy while that is current, else results.csv."""
    if columnar_is_current(run):
        path = os.path.join(run.path, COLUMNAR)
        table = read_columnar(path)
    else:
        path = os.path.join(run.path, TABLE)
        table = read_text_table(path)
    return with_columns(checked(table, path, run.manifest))


def write(frame, path):
    """A table as CSV without its index, whole: a temporary file renamed over the old one. pyarrow's writer: 1,000,000
    rows in ~1 s, where pandas' takes ~7 s."""
    import pyarrow
    import pyarrow.csv
    temporary = path + ".tmp"
    try:
        arrow = pyarrow.Table.from_pandas(frame, preserve_index=False)
    except (pyarrow.ArrowInvalid, pyarrow.ArrowTypeError):
        # a column of numbers from some hosts and "" from others (a measure one host could not take): as text,
        # which is how read() takes every column anyway
        text = {column: frame[column].map(as_text) for column in mixed_columns(frame)}
        arrow = pyarrow.Table.from_pandas(frame.assign(**text), preserve_index=False)
    pyarrow.csv.write_csv(arrow, temporary)
    os.replace(temporary, path)


def write_run_table(frame, run_dir):
    """A run's results.csv, then its columnar copy: the CSV read back as text, so that both hold the same."""
    path = os.path.join(run_dir, TABLE)
    write(frame, path)
    columnar = os.path.join(run_dir, COLUMNAR)
    temporary = columnar + ".tmp"
    read_text_table(path).astype("category").to_parquet(temporary, index=False)
    os.replace(temporary, columnar)


def as_text(value):
    """A cell as CSV text, numbers as pyarrow writes them (1024, not 1024.0); None and NaN stay empty."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def mixed_columns(frame):
    """The object columns of `frame` holding both text and other values (None and NaN aside)."""
    def mixed(values):
        kinds = {type(value) for value in values.dropna()}
        return str in kinds and len(kinds) > 1
    return [column for column in frame.columns if frame[column].dtype == object and mixed(frame[column])]


def load(run_dir):
    """The tidy table of one run directory: its results.csv while that is current, else its host logs."""
    run = rundir.read_run(run_dir, with_logs=False)
    return read(run) if is_current(run) else from_logs(rundir.read_run(run_dir))


def load_runs(run_dirs):
    return concat([load(run_dir) for run_dir in run_dirs])
