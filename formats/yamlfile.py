"""YAML that remembers where each value came from, so a bad value can be reported as file:line: field.

PyYAML's composer already knows every node's position; this loader keeps it on the containers it builds:
a mapping's `.lines[key]` is the line of that key, a list's `.lines[i]` the line of item i, `.line` their own.
"""
import yaml

from formats.errors import UserError


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


class _Loader(yaml.SafeLoader):
    def construct_mapping(self, node, deep=False):
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


def load(path):
    """Parse a YAML file into LineDict/LineList; a syntax error or a missing file is a UserError."""
    try:
        with open(path, encoding="utf-8") as stream:
            return yaml.load(stream, Loader=_Loader)
    except OSError as exc:
        raise UserError(exc.strerror or str(exc), path=path) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise UserError("not valid YAML: {}".format(exc.problem or exc.context), path=path,
                        line=mark.line + 1 if mark else None) from None
