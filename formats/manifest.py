"""manifest.json: what a run is (hosts, labs, --where, start and end, tool and agent version, the inventory it
used) and where each host stands (status, reason, cases). Checked field by field on read; written whole, to a
temporary file renamed over it, so a reader (or a crash) never meets half of one.

    run_id, tool_version, agent_version, started, ended (null while the run is open), labs, where,
    hosts: {name: {status, reason, cases, started, ended}}, reopened: [when], published: {...} (an archived
    run), inventory: {name: settings} (the hosts' settings when the run was made, for --resume)

The counts of a run under way are brought up to date as its cases arrive (collect/store.py), at most once a
second; a reader takes each host's count from its log (formats.rundir), so a killed controller misleads no one.
"""
import datetime
import json
import os

from formats import jsonfile, records
from formats.errors import UserError
from formats.hostlog import host_name_problem
from formats.records import shown
from labs import LABS, module
from labs.selection import check_where, parse_where

FILE = "manifest.json"
# Host statuses; only "completed" means every planned case came back.
PENDING, RUNNING, COMPLETED, FAILED = "pending", "running", "completed", "failed"
STATUSES = (PENDING, RUNNING, COMPLETED, FAILED)


def now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def new(run_id, hosts, labs, where, tool_version, agent_version, inventory=None):
    """The manifest of a run about to start: every host pending."""
    manifest = {
        "run_id": run_id, "tool_version": tool_version, "agent_version": agent_version, "started": now(),
        "ended": None, "labs": list(labs), "where": list(where),
        "hosts": {name: {"status": PENDING, "reason": "", "cases": 0} for name in hosts},
    }
    if inventory is not None:
        manifest["inventory"] = inventory
    return manifest


def text_or_null(value):
    return None if value is None else records.text(value)


def list_of(check, what):
    def checked(value):
        if isinstance(value, list) and not any(check(item) for item in value):
            return None
        return "{} is not a list of {}".format(shown(value), what)
    return checked


def mapping(value):
    return None if isinstance(value, dict) else "{} is not a mapping".format(shown(value))


def status(value):
    return None if value in STATUSES and isinstance(value, str) else "{} is not a status ({})".format(
        shown(value), ", ".join(STATUSES))


FIELDS = {
    "run_id": (True, records.nonempty_text), "tool_version": (False, records.text),
    "agent_version": (False, records.text), "started": (False, records.text), "ended": (False, text_or_null),
    "labs": (False, list_of(records.lab_name, "lab names")), "where": (False, list_of(records.text, "texts")),
    "hosts": (True, mapping), "reopened": (False, list_of(records.text, "times")), "published": (False, mapping),
    "inventory": (False, mapping),
}
HOST_FIELDS = {"status": (False, status), "reason": (False, records.text), "cases": (False, records.whole),
               "started": (False, records.text), "ended": (False, records.text)}


def check_fields(value, fields, path, text, where):
    """Each field of `value` against `fields` ({name: (required, check)}); UserError at the field's line."""
    for name, (required, check) in fields.items():
        if name in value:
            problem = check(value[name])
        else:
            problem = "missing" if required else None
        if problem:
            raise UserError(problem, path=path, line=jsonfile.line_of(text, where + [name]),
                            field=jsonfile.field_text(where + [name]))


def checked(manifest, path, text):
    """The manifest, every field checked (see the module's docstring); UserError naming file, line and field."""
    def fail(problem, where):
        raise UserError(problem, path=path, line=jsonfile.line_of(text, where), field=jsonfile.field_text(where))
    if not isinstance(manifest, dict):
        raise UserError("not a socklab manifest (a JSON object)", path=path, line=1)
    check_fields(manifest, FIELDS, path, text, [])
    for name, entry in manifest["hosts"].items():
        problem = host_name_problem(name) or mapping(entry)
        if problem:
            fail(problem, ["hosts", name])
        check_fields(entry, HOST_FIELDS, path, text, ["hosts", name])
    for name, settings in (manifest.get("inventory") or {}).items():
        problem = host_name_problem(name) or mapping(settings)
        if problem:
            fail(problem, ["inventory", name])
    try:
        check_where([module(lab) for lab in manifest.get("labs") or LABS], parse_where(manifest.get("where") or []))
    except ValueError as exc:
        fail(str(exc), ["where"])
    return manifest


def read(run_dir):
    """The checked manifest of a run directory; UserError when there is none or it is not one."""
    path = os.path.join(run_dir, FILE)
    if not os.path.exists(path):
        raise UserError("not a run directory (no {})".format(FILE), path=run_dir)
    manifest, text = jsonfile.read(path)
    return checked(manifest, path, text)


def write(run_dir, manifest):
    """Replace manifest.json whole: a reader never sees half of it."""
    temporary = os.path.join(run_dir, FILE + ".tmp")
    with open(temporary, "w", encoding="utf-8") as stream:
        json.dump(manifest, stream, indent=2)
    os.replace(temporary, os.path.join(run_dir, FILE))
