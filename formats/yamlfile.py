"""YAML that remembers where each value came from, so a bad value can be reported as file:line: field.

PyYAML's composer already knows every node's position; this loader keeps it on the containers it builds:
a mapping's `.lines[key]` is the line of that key, a list's `.lines[i]` the line of item i, `.line` their own.

It reads settings files (hosts.yaml, expectation tables), so it refuses, each in one line naming the line and the
field, what such a file never needs and a hostile or damaged one may hold:

- text that is not UTF-8, or holds control characters (NUL, ESC, ...);
- a key given twice in one mapping (PyYAML would keep the last one silently);
- any tag but the plain ones (text, numbers, true/false, null, lists, mappings): no tag builds an object, and a
  tagged value that does not read as its tag (`!!int "abc"`) is an error, not a traceback;
- nesting deeper than MAX_DEPTH, and aliases that stand for more than MAX_VALUES values once expanded: a
  "billion laughs" document is refused while it is composed, before anything is built or walked.

A date stays text (`2010-01-01` is that string, not a datetime).
"""
import yaml

from formats.errors import UserError
from formats.textfile import read_text, shortened

MAX_DEPTH = 64
MAX_VALUES = 100_000  # values a document stands for with its aliases expanded (the largest table: ~5,000)
CORE = "tag:yaml.org,2002:"
PLAIN_TAGS = {CORE + name for name in ("str", "int", "float", "bool", "null", "seq", "map")}
MERGE_TAG = CORE + "merge"

class LineDict(dict):
    line = None
    lines = None

    def without(self, key):
        """A copy lacking `key`, the lines of the rest kept."""
        copy = LineDict((name, value) for name, value in self.items() if name != key)
        copy.line, copy.lines = self.line, self.lines
        return copy

class LineList(list):
    line = None
    lines = None

class Refused(Exception):
    """A document this loader will not build: (line, field, problem)."""

    def __init__(self, mark, field, problem):
        super().__init__(problem)
        self.line, self.field, self.problem = mark.line + 1, shortened(field), problem

def _tag_text(tag):
    return "!!" + tag[len(CORE):] if tag.startswith(CORE) else tag

# libyaml reads the text into events, ten times faster than PyYAML's Python scanner (the expectation tables took
# most of a second); PyYAML's Python composer above it keeps the bounds below, which libyaml's own composer
# (recursive C) cannot: it crashes on a deep nesting. Without libyaml, PyYAML's Python parser does the same work.
if getattr(yaml, "__with_libyaml__", False):
    from yaml._yaml import CParser

    class _Base(yaml.composer.Composer, CParser, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
        """yaml.CSafeLoader with PyYAML's Python composer."""

        def __init__(self, stream):
            CParser.__init__(self, stream)
            yaml.composer.Composer.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)
else:
    _Base = yaml.SafeLoader


class _Loader(_Base):
    def __init__(self, stream):
        super().__init__(stream)
        self.path = []        # the field being composed, as its keys and indexes
        self.fields = {}      # id(node) -> its field, for errors found while building
        self.values = {}      # id(node) -> how many values it stands for with its aliases expanded

    # -- composing: depth and alias expansion bounded, each node's field remembered ---------------------------

    def compose_node(self, parent, index):
        if index is None:
            step = "?" if parent is not None else None  # a mapping's key
        elif isinstance(index, int):
            step = "[{}]".format(index)
        else:
            step = index.value if isinstance(index, yaml.ScalarNode) else "?"
        if step is not None:
            self.path.append(step)
        try:
            mark = self.peek_event().start_mark
            if len(self.path) > MAX_DEPTH:
                raise Refused(mark, self.field(), "nested deeper than {} levels".format(MAX_DEPTH))
            alias = self.check_event(yaml.AliasEvent)
            node = super().compose_node(parent, index)
            if alias:
                size = self.values.get(id(node))
                if size is None:
                    raise Refused(mark, self.field(), "an alias inside the value it names (*{})".format(
                        self.anchor_of(node)))
            else:
                size = 1 + sum(self.values[id(child)] for child in self.children(node))
                self.values[id(node)] = size
                if step == "?" and isinstance(node, yaml.ScalarNode):  # a key: its field is the key's own
                    self.path[-1] = node.value
                self.fields[id(node)] = self.field()
            if size > MAX_VALUES:
                raise Refused(mark, self.field(), "aliases expand to more than {:,} values: refused".format(
                    MAX_VALUES))
            return node
        finally:
            if step is not None:
                self.path.pop()

    def field(self):
        return "".join(("." if n and not step.startswith("[") else "") + step
                       for n, step in enumerate(self.path)) or None

    def anchor_of(self, node):
        return next((name for name, anchored in self.anchors.items() if anchored is node), "?")

    @staticmethod
    def children(node):
        if isinstance(node, yaml.SequenceNode):
            return node.value
        if isinstance(node, yaml.MappingNode):
            return [part for pair in node.value for part in pair]
        return []

    # -- building: plain tags only, values that read as their tag, keys once ---------------------------------

    def construct_object(self, node, deep=False):
        if node.tag not in PLAIN_TAGS:
            raise Refused(node.start_mark, self.fields.get(id(node)),
                          "tag {} is not allowed: write plain values (text, numbers, true/false, lists, "
                          "mappings)".format(_tag_text(node.tag)))
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, TypeError, KeyError, IndexError, OverflowError):
            raise Refused(node.start_mark, self.fields.get(id(node)), "{} does not read as {}".format(
                shortened(repr(node.value)) if isinstance(node, yaml.ScalarNode) else "it", _tag_text(node.tag))) from None

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = self.construct_object(key_node)
            if key in seen:
                raise Refused(key_node.start_mark, self.fields.get(id(key_node)),
                              "given twice in one mapping (first at line {})".format(seen[key]))
            seen[key] = key_node.start_mark.line + 1
        mapping = LineDict(super().construct_mapping(node, deep=True))
        mapping.line = node.start_mark.line + 1
        mapping.lines = {self.construct_object(key, deep=True): key.start_mark.line + 1 for key, _ in node.value}
        return mapping

    def construct_sequence(self, node, deep=False):
        items = LineList(super().construct_sequence(node, deep=True))
        items.line = node.start_mark.line + 1
        items.lines = [item.start_mark.line + 1 for item in node.value]
        return items

_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _Loader.construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _Loader.construct_sequence)
# A date is text here: no implicit timestamps.
_Loader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != CORE + "timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}

def load(path):
    """Parse a YAML file into LineDict/LineList; every problem (see the module's docstring) is a UserError."""
    text = read_text(path)
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    except Refused as exc:
        raise UserError(exc.problem, path=path, line=exc.line, field=exc.field) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise UserError("not valid YAML: {}".format(exc.problem or exc.context), path=path,
                        line=mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:  # the reader's own errors carry no mark
        raise UserError("not valid YAML: {}".format(exc), path=path) from None
    finally:
        loader.dispose()
