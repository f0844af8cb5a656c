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
import json
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
FACTS_KEY = "socklab.host_facts"  # results.parquet's metadata: {host: its facts}
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
            if not column.cat.categories.is_monotonic_increasing:  # joined by pyarrow: in order of appearance
                return column.cat.reorder_categories(column.cat.categories.sort_values())
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
            categories = [table[column].cat.categories for table in tables]
            if all(each.equals(categories[0]) for each in categories):
                continue  # the same already (a host's nightly runs): pandas keeps them
            union = pd.Index(np.unique(np.concatenate([np.asarray(each, dtype=object) for each in categories])),
                             dtype="str")
            tables = [table if table[column].cat.categories.equals(union) else
                      table.assign(**{column: table[column].cat.set_categories(union)}) for table in tables]
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
        raise UserError(problem + REBUILD, path=path, line=int(np.flatnonzero(np.asarray(bad))[0]) + 2, field=column)


def filled(values):
    """A text column (or a frame of them) with missing values as "": a Categorical gains the category, which
    fillna alone refuses."""
    if isinstance(values, pd.DataFrame):
        return values.assign(**{column: filled(values[column]) for column in values.columns}) if len(
            values.columns) else values
    if isinstance(values.dtype, pd.CategoricalDtype) and "" not in values.cat.categories:
        values = values.cat.add_categories([""])
    return values.fillna("")


def text_column(frame, column):
    """A column as text, missing values and an absent column as "" (object values): a Categorical by its codes,
    so that a million rows cost one take, not a million conversions."""
    if column not in frame.columns:
        return pd.Series([""] * len(frame), index=frame.index, dtype=object)
    series = frame[column]
    if isinstance(series.dtype, pd.CategoricalDtype):  # missing (-1) is the "" after the categories
        values = np.append(np.asarray(series.cat.categories.astype(str), dtype=object), "")
        return pd.Series(values[series.cat.codes.to_numpy()], index=frame.index, dtype=object)
    return series.astype(object).where(series.notna(), "").astype(str).astype(object)


def checked(table, path, manifest, case_key=("host", "lab", "case_id")):
    """results.csv's table, its columns and the values the analysis relies on checked; UserError at the first
    fault (file:line: column: problem). Several runs' rows are checked at once with `manifest["run_id"]` an array
    (each row's run id) and a run column in `case_key`."""
    missing = [column for column in RESULT_COLUMNS if column not in table.columns]
    if missing:
        raise UserError("missing " + ", ".join(missing) + REBUILD, path=path, line=1, field="columns")
    first_bad(path, ~table["lab"].isin(LABS), "lab", "not a lab name ({})".format(", ".join(LABS)))
    for name in table["lab"].unique():
        absent = [column for column in lab_columns([name]) if column not in table.columns]
        if absent:
            raise UserError("missing {} (columns of {})".format(", ".join(absent), name) + REBUILD, path=path,
                            line=1, field="columns")
    first_bad(path, table["run_id"].to_numpy(dtype=object) != manifest["run_id"], "run_id",
              "not this run's id ({})".format(manifest["run_id"]))
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
    first_bad(path, table.duplicated(list(case_key)), "case_id", "a case of this host is here twice")
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


def write_run_table(frame, run_dir, facts):
    """A run's results.csv, then its columnar copy: the CSV read back as text, so that both hold the same, and
    each host's facts ({host: its last host record}) in the file's metadata, so that a reader of one host's rows
    (history) need not read its log."""
    import pyarrow
    import pyarrow.parquet
    path = os.path.join(run_dir, TABLE)
    write(frame, path)
    columnar = os.path.join(run_dir, COLUMNAR)
    temporary = columnar + ".tmp"
    arrow = pyarrow.Table.from_pandas(read_text_table(path).astype("category"), preserve_index=False)
    arrow = arrow.replace_schema_metadata(dict(arrow.schema.metadata or {}, **{FACTS_KEY: json.dumps(facts)}))
    pyarrow.parquet.write_table(arrow, temporary)
    os.replace(temporary, columnar)


def host_rows(runs, host):
    """({number: facts}, rows) of `host` over `runs` (formats.rundir.Run, numbered by position) from the columnar
    copies that are current and hold the host's facts; rows has a `run` column (the number). pyarrow reads each
    copy with a filter on host and joins them before pandas sees them: a year of nightly runs is one conversion
    and one check, not 365. The runs left out (no current copy) are for their logs to tell."""
    import pyarrow
    import pyarrow.parquet
    facts, parts, paths = {}, [], {}
    for number, run in enumerate(runs):
        if not (is_current(run) and columnar_is_current(run)):
            continue
        path = os.path.join(run.path, COLUMNAR)
        try:
            part = pyarrow.parquet.read_table(path, filters=[("host", "==", host)])
            known = json.loads(part.schema.metadata[FACTS_KEY.encode()]).get(host)
        except (OSError, KeyError, TypeError, AttributeError, ValueError, pyarrow.ArrowException):
            continue  # a copy without facts, or damaged: the log says the same
        if isinstance(known, dict):
            facts[number], paths[number] = known, path
            text = pyarrow.dictionary(pyarrow.int32(), pyarrow.string())  # one index type, so that they join
            part = part.cast(pyarrow.schema([field.with_type(text) for field in part.schema]).with_metadata(None))
            parts.append(part.append_column("run", pyarrow.array(np.full(len(part), number, dtype=np.int64))))
    if not parts:
        return facts, pd.DataFrame()
    rows = pyarrow.concat_tables(parts, promote_options="permissive").unify_dictionaries().to_pandas()
    number = rows.pop("run").to_numpy()
    run_ids = np.array([run.manifest["run_id"] for run in runs], dtype=object)
    try:
        checked(rows.assign(run=number), ", ".join(paths.values()), {"run_id": run_ids[number], "hosts": [host]},
                case_key=("run", "host", "lab", "case_id"))
    except UserError:  # told again for the one run it is in, so that its file and line are named
        for each, path in paths.items():
            checked(rows[number == each].reset_index(drop=True), path, runs[each].manifest)
        raise
    return facts, with_columns(rows).assign(run=number)


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
