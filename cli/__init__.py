"""socklab's command line: invoke's Program over the tasks of tasks.py, as `./socklab` runs it.

- Every mistake in what was given ends in one line on stderr and exit status 2, no traceback: a task's
  formats.errors.UserError, and invoke's own parse errors (an unknown option or task, a missing value, a number
  that is not one or is out of range: NUMBERS). A test bed that cannot be built (testbed.LabError) ends in one line
  and exit status 1.
- A short flag means the same in every task (SHORT_FLAGS); every other option is long only. Invoke would pick
  short flags per task from the names, so -h, -o and -r meant different things in different tasks.
- Paths on the command line are the user's: ./socklab starts this from the checkout and passes the directory it
  was started in as SOCKLAB_CWD; main() works there.
"""
import os
import re

import invoke
from invoke.exceptions import Exit, ParseError
from invoke.parser import Argument

from formats.errors import UserError
from testbed.errors import LabError

NAME = "./socklab"
SHORT_FLAGS = {"hosts": "i", "lab": "l", "where": "w", "out": "o", "run": "r", "expectations": "e", "parallel": "p"}
NUMBERS = {"parallel": (1, 256), "count": (1, 200), "rounds": (1, 1000), "timeout": (1, 86400)}  # (least, most)
# invoke's parse errors, said the socklab way
PARSE_ERRORS = (
    (re.compile(r"^No idea what '(.*)' is!$"),
     "no task or option {0!r} (`./socklab --list` lists the tasks, `./socklab --help TASK` a task's options)"),
    (re.compile(r"^Flag <Argument: ([^ >]+).*> needed value and was not given one!$"), "--{0}: needs a value"),
    (re.compile(r"^'(.*)' did not receive required positional arguments: (.*)$"), "{0}: {1} missing"),
)


def one_line(message):
    """An invoke parse error as the line socklab prints."""
    message = " ".join(str(message).split())
    for pattern, text in PARSE_ERRORS:
        found = pattern.match(message)
        if found:
            return "error: " + text.format(*found.groups())
    return "error: " + message


class NumberArgument(Argument):
    """A number option: a value that is not a whole number, or is out of NUMBERS' range, is a parse error."""

    def set_value(self, value, cast=True):
        try:
            super().set_value(value, cast)
        except ValueError:
            raise ParseError("--{}: {!r} is not a whole number".format(self.name, value)) from None
        least, most = NUMBERS.get(self.name, (None, None))
        if least is not None and not least <= self.value <= most:
            raise ParseError("--{}: {} is not in {}-{}".format(self.name, self.value, least, most))


class Task(invoke.Task):
    """A socklab task: SHORT_FLAGS only, numbers checked, a UserError one line and exit status 2."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **dict(kwargs, auto_shortflags=False))

    def arg_opts(self, name, default, taken_names):
        opts = super().arg_opts(name, default, taken_names)
        if name in SHORT_FLAGS:
            opts["names"].append(SHORT_FLAGS[name])
        return opts

    def get_arguments(self, ignore_unknown_help=None):
        arguments = super().get_arguments(ignore_unknown_help)
        for argument in arguments:
            if argument.kind in (int, float):
                argument.__class__ = NumberArgument
        return arguments

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except UserError as exc:
            raise Exit("error: {}".format(exc), code=2) from None
        except LabError as exc:
            raise Exit("error: {}".format(exc), code=1) from None


def task(*args, **kwargs):
    """invoke.task, making a socklab Task."""
    return invoke.task(*args, klass=Task, **kwargs)


class Program(invoke.Program):
    """invoke's Program, its parse errors one line and exit status 2."""

    def parse_core(self, argv):
        try:
            super().parse_core(argv)
        except ParseError as exc:
            raise Exit(one_line(exc), code=2) from None

    def parse_tasks(self):
        # invoke gives a task's missing positional arguments the next tokens, even --help (`why --help` asked about
        # a port named "--help", `compare --help` missed its second run): a task's --help or -h asks for its help.
        tokens = self.core.unparsed
        if tokens and tokens[0] in self.collection.task_names and {"--help", "-h"} & set(tokens):
            self.args.help.value, self.core.unparsed = tokens[0], []
        try:
            super().parse_tasks()
        except ParseError as exc:
            raise Exit(one_line(exc), code=2) from None


def main(argv=None):
    os.chdir(os.environ.get("SOCKLAB_CWD") or os.getcwd())
    import collect
    import tasks
    Program(name="socklab", binary=NAME, version=collect.__version__,
            namespace=invoke.Collection.from_module(tasks)).run(argv)
