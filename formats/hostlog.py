"""<host>.jsonl: the agent's lines for one host, verbatim, appended as they arrive (Writer), read whole (read()).

A log is records (formats.records): a host record, then per lab a plan and its cases, then an end record; a
resumed run appends another host record, plans, cases and end. Reading checks every line, that the first record
is the host's, and that no case is there twice. The only damage tolerated is a last line cut short by a crash
(no newline, not a whole record): it was never complete, and is skipped.
"""
import os
import re
from typing import NamedTuple

from formats import records
from formats.errors import UserError
from formats.textfile import decoded, read_bytes, shortened
from labs.hostfacts import upstream_release

SUFFIX = ".jsonl"
# Host names become file names (<host>.jsonl): characters that are safe everywhere.
HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def host_name_problem(name, what="host"):
    """Why `name` cannot name a host (its log's file name; a group's name is held to the same), or None."""
    if isinstance(name, str) and HOST_NAME.match(name):
        return None
    return "{} name {}: use letters, digits, '.', '_' or '-' (at most 64)".format(what, shortened(repr(name)))


class HostLog(NamedTuple):
    path: str
    facts: dict           # the last host record; None when the log holds none (the host never answered)
    cases: list           # the case records, each with the FACT_COLUMNS of the host record before it
    ended: bool           # an end record follows the last host record: that part ran to its end
    ends: list            # the end records (the agent's counts and seconds, one per part)
    cut: int              # the line number of a last line cut short, else 0

    def done(self):
        """{lab: [case_id]} of the cases the log holds."""
        found = {}
        for case in self.cases:
            found.setdefault(case["lab"], []).append(case["case_id"])
        return found


class Reader:
    """Checks a host's records line by line, as they come (an import, a stored log): the first is the host's
    facts, no case twice. `path` names the file in errors; each problem is a UserError at its line."""

    def __init__(self, path):
        self.path, self.facts, self.cases, self.ends, self.ended, self.first_line = path, None, [], [], False, {}

    def add(self, record, number):
        kind = record["record"]
        if kind in records.WHY_KINDS:
            raise UserError("a {} record answers `./socklab why`: it is no part of a run".format(kind),
                            path=self.path, line=number, field="record")
        if self.facts is None and kind != records.HOST:
            raise UserError("the first record must be the host's facts, not a {} record".format(kind),
                            path=self.path, line=number, field="record")
        if kind == records.HOST:
            if "upstream_release" not in record:  # an agent older than the fact, or a published table
                record = dict(record, upstream_release=upstream_release(record.get("os_release"), ""))
            self.facts, self.ended = record, False
        elif kind == records.CASE:
            key = (record["lab"], record["case_id"])
            if key in self.first_line:
                raise UserError("case {} of {} is here twice (first at line {})".format(
                    record["case_id"], record["lab"], self.first_line[key]), path=self.path, line=number,
                    field="case_id")
            self.first_line[key] = number
            default = getattr(records.LAB_MODULES[record["lab"]], "ID_DEFAULT", None)
            if default and default[0] not in record:  # an agent older than the parameter: its cases have its default
                record = dict(record, **{default[0]: default[1]})
            self.cases.append(dict(record, **{column: self.facts.get(column, "") for column in
                                              records.FACT_COLUMNS}))
        elif kind == records.END:
            self.ends.append(record)
            self.ended = True


def read(path):
    """The HostLog of a <host>.jsonl (or of agent output captured by hand); UserError (file:line: field: problem)
    at the first line that is not a record."""
    data = read_bytes(path, max_bytes=None)
    lines = data.split(b"\n")
    cut = 0
    reader = Reader(path)
    for number, raw in enumerate(lines, 1):
        last = number == len(lines)
        if not raw.strip():
            continue
        try:
            record = records.parse(decoded(raw, path, number), records.RUN_KINDS)  # a why record: add()
        except (records.RecordError, UserError) as exc:
            if last:  # no newline after it: cut short while being written
                cut = number
                break
            if isinstance(exc, UserError):
                raise
            raise UserError(exc.problem, path=path, line=number, field=exc.field) from None
        reader.add(record, number)
    return HostLog(path, reader.facts, reader.cases, reader.ended, reader.ends, cut)


class Writer:
    """<host>.jsonl, appended line by line; each line reaches the file before the next is read."""

    def __init__(self, path):
        self.stream = open(path, "a+b")
        self.drop_cut_line()

    def drop_cut_line(self):
        """A last line without its newline was cut short by a crash: appending after it would glue two lines."""
        size = self.stream.seek(0, os.SEEK_END)
        if size == 0:
            return
        self.stream.seek(max(0, size - (1 << 16)))
        tail = self.stream.read()
        if not tail.endswith(b"\n"):
            self.stream.truncate(size - len(tail) + tail.rfind(b"\n") + 1)

    def write(self, line):
        self.stream.write((line if line.endswith("\n") else line + "\n").encode("utf-8"))
        self.stream.flush()

    def close(self):
        self.stream.close()
