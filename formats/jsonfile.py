"""JSON as socklab reads it: a value of a file or of one line, each problem one line.

Refused: what is not JSON, a key given twice in one object (json keeps the last silently), NaN and Infinity (not
JSON, though Python writes them), nesting deeper than MAX_DEPTH. A file's errors name the line of the field at
fault: the values come from the fast standard parser, and line_of() walks the text for the line when it is needed.
"""
import json
import re

from formats.errors import UserError
from formats.textfile import read_text

MAX_DEPTH = 64


class Invalid(ValueError):
    """Not a JSON value socklab takes; `line` is its line within the text parsed, when known."""

    def __init__(self, problem, line=None, field=None, syntax=None):
        super().__init__(problem)
        self.problem, self.line, self.field = problem, line, field
        self.syntax = syntax  # the parser's message, when the text is not JSON at all


class _Twice(Exception):
    def __init__(self, key):
        super().__init__(key)
        self.key = key


def _object(pairs):
    result = dict(pairs)
    if len(result) != len(pairs):
        seen = set()
        raise _Twice(next(key for key, _ in pairs if key in seen or seen.add(key)))
    return result


def _constant(name):
    raise Invalid("{} is not a JSON value".format(name))


DEPTH = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _too_deep(text):
    """The line where nesting passes MAX_DEPTH, or None (strings skipped, so brackets inside them do not count)."""
    depth = 0
    for found in DEPTH.finditer(text):
        token = found.group()
        if token in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return text.count("\n", 0, found.start()) + 1
        elif token in "]}":
            depth -= 1
    return None


def parse(text):
    """The JSON value of `text`; Invalid naming the problem, its line within `text` and, for a key given twice,
    that key's field."""
    if text.count("[") + text.count("{") > MAX_DEPTH:  # only then can it be too deep: the walk is not free
        line = _too_deep(text)
        if line is not None:
            raise Invalid("nested deeper than {} levels".format(MAX_DEPTH), line)
    try:
        return json.loads(text, object_pairs_hook=_object, parse_constant=_constant)
    except json.JSONDecodeError as exc:
        raise Invalid("not valid JSON: {}".format(exc.msg), exc.lineno, syntax=exc.msg) from None
    except _Twice as exc:
        field, line = duplicate_key(text) or ([exc.key], None)
        raise Invalid("given twice in one object", line, field_text(field)) from None


def read(path):
    """(value, text) of a JSON file; UserError (file:line: field: problem) when it is not one."""
    text = read_text(path)
    try:
        return parse(text), text
    except Invalid as exc:
        raise UserError(exc.problem, path=path, line=exc.line, field=exc.field) from None


def field_text(path):
    """["hosts", "local", "status"] -> "hosts.local.status"; list indexes as [i]."""
    return "".join("[{}]".format(step) if isinstance(step, int) else ("." if n else "") + str(step)
                   for n, step in enumerate(path))


TOKEN = re.compile(r'\s+|"(?:[^"\\]|\\.)*"|[\[\]{}:,]|[^\s\[\]{}:,"]+')


def _walk(text):
    """(path, line, is_key) of every value (and, with is_key, every key) of a valid JSON text, in order; the walk
    is iterative, so any depth is fine."""
    line, stack = 1, []  # stack: [container kind, current key or index, expecting a key]
    for found in TOKEN.finditer(text):
        token = found.group()
        if token.isspace():
            line += token.count("\n")
            continue
        if token in ",:":
            if token == "," and stack:
                frame = stack[-1]
                if frame[0] == "[":
                    frame[1] += 1
                else:
                    frame[2] = True
            continue
        if token in "]}":
            stack.pop()
            continue
        if stack and stack[-1][0] == "{" and stack[-1][2]:
            stack[-1][1], stack[-1][2] = json.loads(token), False
            yield [frame[1] for frame in stack], line, True
            continue
        yield [frame[1] for frame in stack], line, False
        if token in "[{":
            stack.append([token, 0, True] if token == "{" else [token, 0, False])
        line += token.count("\n")


def line_of(text, path):
    """The line of the value at `path` (keys and list indexes) in a valid JSON text; of its deepest part found
    when the path goes further than the text."""
    best = 1
    for found, line, _ in _walk(text):
        if found == list(path[:len(found)]) and len(found) <= len(path):
            best = line
            if len(found) == len(path):
                return line
    return best


def duplicate_key(text):
    """(path, line) of the first key given twice in one object of a JSON text, or None."""
    seen = {}
    for found, line, is_key in _walk(text):
        if not is_key:
            continue
        parent = tuple(found[:-1]) + (len(found),)
        keys = seen.setdefault(parent, set())
        if found[-1] in keys:
            return found, line
        keys.add(found[-1])
    return None
