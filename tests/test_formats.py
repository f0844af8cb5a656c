"""The run format's own parts: the YAML loader against an alias bomb (bounded in time and memory), the JSON
reader's lines, the writer lock, and the layering: analysis/ and collect/ import nothing of each other."""
import ast
import os
import time
import tracemalloc

import pytest

from collect import inventory
from analysis.expectations import load_expectations
from formats import jsonfile, rundir, yamlfile
from formats.errors import UserError
from tests.conftest import REPO


def billion_laughs(levels=9):
    """A document whose last alias stands for 9**levels values ("lol" 387,420,489 times at 9 levels)."""
    lines = ["a: &a [" + ", ".join(["lol"] * 9) + "]"]
    for level in range(1, levels):
        name, earlier = chr(ord("a") + level), chr(ord("a") + level - 1)
        lines.append("{0}: &{0} [{1}]".format(name, ", ".join(["*" + earlier] * 9)))
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("where, text", [
    ("a bare document", billion_laughs()),
    ("a host setting", billion_laughs() + "hosts:\n  x:\n    user: *i\n"),
    ("labs:", billion_laughs() + "hosts:\n  x:\n    labs: *i\n"),
    ("a group setting", billion_laughs() + "hosts:\n  x: {}\ngroups:\n  g:\n    hosts: [x]\n    user: *i\n"),
    ("an expectation value", "lab: bind_matrix\n" + billion_laughs() + "rules:\n  - when: {state: *i}\n"
                             "    expect: {bind: ok}\n    source: a source\n"),
])
def test_an_alias_bomb_is_refused_in_little_time_and_memory(where, text, tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    load = load_expectations if where == "an expectation value" else (
        yamlfile.load if where == "a bare document" else inventory.load)
    tracemalloc.start()
    started = time.perf_counter()
    with pytest.raises(UserError) as refused:
        load(str(path))
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print("\nalias bomb in {} ({} values once expanded): refused in {:.3f} s, peak {:.2f} MB".format(
        where, 9 ** 9, seconds, peak / 1e6))
    assert "aliases expand to more than 100,000 values" in str(refused.value)
    assert str(refused.value).startswith(str(path) + ":")
    assert seconds < 5 and peak < 50e6  # generous bounds: here it takes milliseconds and well under a MB


def test_json_lines_of_fields_and_keys_given_twice():
    text = '{\n  "a": 1,\n  "hosts": {\n    "x": {"status": "ok",\n      "cases": 3}\n  },\n  "l": [1,\n {"q": 2}]\n}'
    assert [jsonfile.line_of(text, path) for path in (["a"], ["hosts", "x"], ["hosts", "x", "cases"], ["l", 1, "q"],
                                                      ["absent"])] == [2, 4, 5, 8, 1]
    with pytest.raises(jsonfile.Invalid) as twice:
        jsonfile.parse('{"a": {"b": 1,\n "b": 2}}')
    assert (twice.value.field, twice.value.line) == ("a.b", 2)
    with pytest.raises(jsonfile.Invalid, match="nested deeper than 64 levels"):
        jsonfile.parse("[" * 100000)
    with pytest.raises(jsonfile.Invalid, match="NaN is not a JSON value"):
        jsonfile.parse('{"a": NaN}')


def test_one_writer_per_run(tmp_path):
    """The writer lock is an flock: a second one is refused, even from this process, and a reader can tell."""
    assert not rundir.writer_active(str(tmp_path))
    first = rundir.Lock(str(tmp_path)).acquire()
    assert rundir.writer_active(str(tmp_path))
    with pytest.raises(UserError, match="another socklab is writing this run now"):
        rundir.Lock(str(tmp_path)).acquire()
    first.release()
    assert not rundir.writer_active(str(tmp_path))
    rundir.Lock(str(tmp_path)).acquire().release()


def imported_packages(path):
    """The top-level packages a Python file imports, at its top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package, forbidden", [("analysis", {"collect", "cli", "tasks"}),
                                                ("collect", {"analysis", "cli", "tasks"}),
                                                ("formats", {"analysis", "collect", "cli", "tasks"}),
                                                ("labs", {"analysis", "collect", "formats", "cli", "tasks"})])
def test_the_layers_import_nothing_above_or_beside_them(package, forbidden):
    """collect/ and analysis/ are peers over formats/ (the run format) and labs/ (the agent): neither imports the
    other, formats/ neither of them, and the agent nothing of the controller."""
    for folder, _, names in os.walk(os.path.join(REPO, package)):
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                assert not imported_packages(path) & forbidden, (path, imported_packages(path) & forbidden)
