"""The agent's records: every line it prints, and every line of a <host>.jsonl, is one JSON object whose `record`
says its kind:

    host    the host's facts (labs/hostfacts.py): first, and again before the cases of each resumed part
    plan    {lab, cases}: how many cases of that lab follow
    case    one case: lab, case_id, outcome, errno, witness, detail, and its lab's PARAMETERS, STEPS and MEASURES
    end     {cases, seconds, cpu_seconds}: the agent ran to its end

and, answering `./socklab why` (labs/why.py; never in a host log):

    port    {proto, port, address, family, uid, table, blind_spot, owners}: what was asked, how it was read
    holder  one socket on the port: family, v6only, state, local_address, local_port, remote_address, remote_port,
            uid, inode, expires, pids, process
    answer  one option set's bind() tried now: opts, tried, setsockopt, bind, errno, detail

The type and the values of every field are here, and parse() checks a line against them: whoever reads a record
(the runner as lines arrive, an import, a stored log, bench) reads it through parse(). A field a kind does not
name is kept if it is a plain value (a fact or a column of a later agent); a field it names must be what it says.
"""
import math
import re

from formats import jsonfile
from formats.textfile import shortened
from labs import LABS, module
from labs.selection import value_problem
from labs.sockopts import OPTION_VALUES
from labs.vocabulary import ERROR, INCONCLUSIVE, OK, OPTIONS, TCP_STATES, UNSUPPORTED, is_option_set

HOST, PLAN, CASE, END = "host", "plan", "case", "end"
PORT, HOLDER, ANSWER = "port", "holder", "answer"
WHY_KINDS = (PORT, HOLDER, ANSWER)
RUN_KINDS = (HOST, PLAN, CASE, END)  # what a run's output (a host log) holds
KINDS = RUN_KINDS + WHY_KINDS
# What a host is: a resumed run checks they are the same, and every case row carries them (and python).
HOST_COLUMNS = ("os_family", "os_release", "os_version")
FACT_COLUMNS = HOST_COLUMNS + ("upstream_release", "python")
# The OS families the agent names (labs.sockopts.platform_family; gVisor, a system of its own, among them).
OS_FAMILIES = tuple(OPTION_VALUES)
FAMILY_NAME = re.compile(r"^[a-z][a-z0-9_]*$")  # another system's sys.platform, as platform_family passes it on
WORD = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")  # an error name (EADDRINUSE, E4711, TimeoutError) or a step value
SPECIAL_OUTCOMES = (OK, UNSUPPORTED, INCONCLUSIVE, ERROR)
LAB_MODULES = {name: module(name) for name in LABS}


class RecordError(ValueError):
    """A line that is not a record of the agent: the field at fault (None for the line as a whole) and why."""

    def __init__(self, field, problem):
        super().__init__("{}: {}".format(field, problem) if field else problem)
        self.field, self.problem = field, problem


def shown(value):
    return shortened(repr(value))


# Each check takes a value and returns why it is not right, or None.

def text(value):
    return None if isinstance(value, str) else "{} is not text".format(shown(value))


def nonempty_text(value):
    return text(value) or (None if value else "empty")


def whole(value):
    if isinstance(value, int) and not isinstance(value, bool):
        return None if value >= 0 else "{} is below 0".format(value)
    return "{} is not a whole number".format(shown(value))


def number(value):
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return None if value >= 0 else "{} is below 0".format(value)
    return "{} is not a number of seconds".format(shown(value))


def flag(value):
    return None if isinstance(value, bool) else "{} is not true or false".format(shown(value))


def os_family(value):
    if isinstance(value, str) and FAMILY_NAME.match(value):
        return None
    return "{} is not an OS family ({}, ...)".format(shown(value), ", ".join(OS_FAMILIES))


def option_list(value):
    if isinstance(value, list) and all(item in OPTIONS for item in value):
        return None
    return "{} is not a list of options among {}".format(shown(value), ", ".join(OPTIONS))


def sysctls(value):
    if isinstance(value, dict) and all(isinstance(item, str) for item in value.values()):
        return None
    return "{} is not a mapping of sysctl names to their values (text)".format(shown(value))


def lab_name(value):
    return None if value in LABS and isinstance(value, str) else "unknown lab {} (labs: {})".format(
        shown(value), ", ".join(LABS))


def outcome(value):
    if isinstance(value, str) and (value in SPECIAL_OUTCOMES or WORD.match(value)):
        return None
    return "{} is not an outcome ({} or an error name)".format(shown(value), ", ".join(SPECIAL_OUTCOMES))


def errno(value):
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return None
    return "{} is not an error number".format(shown(value))


def step(value):
    """A step's result: ok, an error name, one of the lab's STEP_VALUES, or empty (the step was not reached)."""
    if isinstance(value, str) and (value == "" or WORD.match(value)):
        return None
    return "{} is not a step's result (ok, an error name, a word of the lab's, or empty)".format(shown(value))


def plain(value):
    """A measure, or a field no kind names: text, a number, true/false or null, not a list or a mapping."""
    if value is None or isinstance(value, (str, bool, int)) or (isinstance(value, float) and math.isfinite(value)):
        return None
    return "{} is not a plain value (text, a number, true/false, null)".format(shown(value))


def optional(check):
    """`check`, or null."""
    return lambda value: None if value is None else check(value)


def one_of(*values):
    return lambda value: None if value in values and isinstance(value, str) else "{} is not one of {}".format(
        shown(value), ", ".join(values))


def port_number(value):
    return whole(value) or (None if 1 <= value <= 65535 else "{} is not a port (1-65535)".format(value))


def whole_list(value):
    if isinstance(value, list) and not any(whole(item) for item in value):
        return None
    return "{} is not a list of whole numbers".format(shown(value))


def option_set(value):
    if isinstance(value, str) and is_option_set(value):
        return None
    return "{} is not an option set (options among {} joined by +, or none)".format(shown(value), ", ".join(OPTIONS))


# {kind: {field: (required, check)}}; a case adds its lab's fields (lab_fields).
FIELDS = {
    HOST: {
        "os_family": (True, os_family), "os_release": (True, text), "os_version": (True, text),
        "upstream_release": (False, text),  # the upstream kernel version a distribution hides (issue 16)
        "machine": (False, text), "hostname": (False, text), "python": (False, text),
        "python_executable": (False, text), "admin": (False, flag), "options": (False, option_list),
        "witness": (False, text), "sysctls": (False, sysctls),
        "runner_image": (False, nonempty_text),  # a CI runner's image, e.g. ubuntu24/20261201.1 (issue 19)
        # the command the agent ran under (the local transport's launcher, e.g. "runsc --network=none do") and
        # what it said of itself ("runsc version 0.0~20221219.0"): gVisor's release comes from there (issue 14)
        "launcher": (False, nonempty_text), "implementation_version": (False, nonempty_text),
    },
    PLAN: {"lab": (True, lab_name), "cases": (True, whole)},
    CASE: {"lab": (True, lab_name), "case_id": (True, nonempty_text), "outcome": (True, outcome), "errno": (False, errno),
           "witness": (False, text), "detail": (False, text)},
    END: {"cases": (True, whole), "seconds": (False, number), "cpu_seconds": (False, number)},
    PORT: {"proto": (True, one_of("tcp", "udp")), "port": (True, port_number), "address": (True, nonempty_text),
           "family": (True, one_of("inet", "inet6", "dual")), "uid": (False, optional(whole)),
           "table": (True, nonempty_text), "blind_spot": (False, text), "owners": (True, nonempty_text)},
    HOLDER: {"family": (True, one_of("inet", "inet6")), "v6only": (False, optional(flag)),
             "state": (True, one_of(*TCP_STATES)), "local_address": (True, nonempty_text),
             "local_port": (True, port_number), "remote_address": (False, text),
             "remote_port": (False, optional(port_number)), "uid": (False, optional(whole)),
             "inode": (False, optional(whole)), "expires": (False, optional(number)), "pids": (False, whole_list),
             "process": (False, text)},
    ANSWER: {"opts": (True, option_set), "tried": (True, flag), "setsockopt": (False, step), "bind": (False, step),
             "errno": (False, errno), "detail": (False, text)},
}


def lab_fields(lab):
    """The fields a case of `lab` (its module) may have beside the common ones: parameters, steps, measures."""
    def parameter(column):
        def check(value):
            if text(value):
                return text(value)
            problem = value_problem(lab, column, value)
            return problem and "{} is not a value of {} ({})".format(shown(value), column, problem)
        return check
    fields = {column: (False, parameter(column)) for column in lab.PARAMETERS}
    fields.update((column, (False, step)) for column in lab.STEPS)
    fields.update((column, (False, plain)) for column in lab.MEASURES)
    return fields


CASE_FIELDS = {name: dict(FIELDS[CASE], **lab_fields(lab)) for name, lab in LAB_MODULES.items()}


def checked(record, named=KINDS):
    """The record, each field checked against its kind; RecordError naming the first field at fault. An unknown
    kind's error lists `named`: the kinds where the record is read (a host log: RUN_KINDS)."""
    if not isinstance(record, dict):
        raise RecordError(None, "not a socklab record (a JSON object)")
    kind = record.get("record")
    if kind not in KINDS:
        raise RecordError("record", "{} is not a record kind ({})".format(
            shown(kind) if "record" in record else "missing", ", ".join(named)))
    fields = FIELDS[kind]
    if kind == CASE:
        problem = lab_name(record.get("lab")) if "lab" in record else "missing"
        if problem:
            raise RecordError("lab", problem)
        fields = CASE_FIELDS[record["lab"]]
    for field, (required, check) in fields.items():
        if field in record:
            problem = check(record[field])
            if problem:
                raise RecordError(field, problem)
        elif required:
            raise RecordError(field, "missing")
    if kind != HOST:  # a host record may carry facts of any shape; a row's other fields are its columns
        for field, value in record.items():
            if field not in fields and field != "record":
                problem = plain(value)
                if problem:
                    raise RecordError(field, problem)
    return record


def parse(line, named=KINDS):
    """The record a line of agent output holds; RecordError when it is not JSON or not a socklab record (an
    unknown kind's error lists `named`, as checked() does)."""
    try:
        return checked(jsonfile.parse(line), named)
    except jsonfile.Invalid as exc:
        raise RecordError(exc.field, "not a JSON record: " + exc.syntax if exc.syntax else exc.problem) from None
