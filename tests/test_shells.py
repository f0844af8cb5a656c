"""collect/shells.py: the command line for each shell gives the program exactly the intended argv.

sh: the lines run through the real shells on this machine (/bin/sh, and dash, bash, ksh, mksh, zsh when
installed), the program printing its argv as JSON.

cmd.exe and PowerShell cannot run on this Debian machine. Their lines are checked against the documented
rules, written below as small decoders, not against a live shell:
  - Win32-OpenSSH builds `"cmd.exe" /c "<command>"`, and `"powershell.exe" -c <command>` with the command one
    C-runtime-escaped argument (contrib/win32/win32compat/w32-doexec.c, build_commandline_string in misc.c);
  - `cmd /?`: after /c, a line starting with a quote loses it and the last quote (the rule that keeps them
    needs the text between to name an executable file, which none does here);
  - cmd on a command line (not a batch file): %NAME% is replaced when NAME is defined, else left as is with
    the scan resuming at its second %; then outside quotes ^ escapes the next character and & | < > ( ) are
    operators, a " toggles quoting (Stack Overflow 4094699, "How does the Windows Command Interpreter (CMD.EXE)
    parse scripts?"); delayed expansion off, its default;
  - the Microsoft C runtime's argv rules ("Parsing C++ command-line arguments", learn.microsoft.com);
  - PowerShell: a single-quoted string ends at any of ' U+2018 U+2019 U+201A U+201B, two in a row being one
    literal (tokenizer.cs); the native command line Windows PowerShell 5.1, PowerShell 7.0-7.2 and 7.3+
    build from the arguments (NativeCommandParameterBinder.cs, .NET ProcessStartInfo.ArgumentList).
The exact-string tests hold lines worked out by hand from the same documents.
"""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import unicodedata

import pytest

from collect import shells

SH, CMD, POWERSHELL = shells.SHELLS["sh"], shells.SHELLS["cmd"], shells.SHELLS["powershell"]

HOSTILE = [
    "; rm -rf ~ #", "$(id)", "`id`", "${PATH}", "$HOME", "$null", "@args", "a'b", "'", 'a"b', '"', '\\"',
    'a\\\\"b', "100%", "%PATH%", "%%", "%cd:~,%", "!x!", "^", "^^", "&calc", "a&&b|c", "<in >out 2>&1", "(x)",
    "*", "?", "[a]", "{a,b}", "~", "-", "-c", "--flag=a b", "x=y", "if", "@echo", ",;=",
    r"C:\Program Files\Python 3.12\python.exe", r"C:\Users\Jane O'Brien\.socklab\agent-0123.pyz",
    "C:\\dir with space\\", "C:\\trailing\\", "\\\\server\\share", "\\", "J\u00fcrgen", "\u65e5\u672c\u8a9e",
    "\u2018typographic\u2019", "\u201a\u201b", "\u201cdouble\u201d\u201e", "", " ", "  two  spaces ",
    "tab\there", "--%",
]
LINE_BREAKS = ["a\nb", "a\rb", "\n"]
POWERSHELL_REFUSES = ['a"b', '"', '\\"', 'a\\\\"b', "C:\\dir with space\\", "", "--%"]
PROGRAMS = ["py", r"C:\Python312\python.exe", r"C:\Program Files\Python 3.12\python.exe",
            r"C:\Users\Jane O'Brien & Co (2)\x^y!\python.exe", r"C:\100%\%PATH%\python.exe",
            "C:\\Users\\J\u00fcrgen\\python.exe", "C:\\trailing\\"]


class ShellWouldAct(Exception):
    """A decoder met something the shell would act on (an operator) or read in more than one way."""


# -- the shell API ------------------------------------------------------------------------------------------


def test_shells_by_name():
    assert {name: shell.name for name, shell in shells.SHELLS.items()} == {
        "sh": "sh", "cmd": "cmd", "powershell": "powershell"}
    for name, shell in shells.SHELLS.items():
        assert shells.for_name(name) is shell
    with pytest.raises(ValueError, match="unknown shell 'bash'"):
        shells.for_name("bash")


def test_python_candidates():
    assert SH.python_candidates == (("python3",), ("python3.15",), ("python3.14",), ("python3.13",),
                                    ("python3.12",), ("python3.11",),
                                    ("python3.10",), ("python3.9",), ("python3.8",), ("python",))
    assert CMD.python_candidates == POWERSHELL.python_candidates == (("py", "-3"), ("python",), ("python3",))
    assert CMD.first_python(["-"]) is None and POWERSHELL.first_python(["-"]) is None


@pytest.mark.parametrize("shell", shells.SHELLS.values(), ids=list(shells.SHELLS))
def test_every_shell_refuses_nul_and_a_non_list(shell):
    with pytest.raises(ValueError, match="NUL"):
        shell.quote("a\0b")
    with pytest.raises(ValueError):
        shell.command([])
    with pytest.raises(TypeError):
        shell.command("python3 -V")


# -- sh: the real shells ------------------------------------------------------------------------------------


def posix_shells():
    found = {}
    for name in ("sh", "dash", "bash", "ksh", "mksh", "zsh"):
        path = shutil.which(name)
        if path:
            found.setdefault(os.path.realpath(path), (name, path))
    return sorted(found.values())


POSIX_SHELLS = [pytest.param(path, id=name) for name, path in posix_shells()]
PRINT_ARGV = "import json, sys; print(json.dumps(sys.argv[1:]))"


def run_sh(shell_path, line, path=None, stdin=""):
    environment = dict(os.environ, LC_ALL="C.UTF-8", PYTHONUTF8="1")
    if path:
        environment["PATH"] = path
    return subprocess.run([shell_path, "-c", line], input=stdin, capture_output=True, text=True,
                          env=environment, timeout=60)


@pytest.mark.parametrize("shell_path", POSIX_SHELLS)
@pytest.mark.parametrize("word", HOSTILE + LINE_BREAKS)
def test_sh_passes_the_word_unchanged(shell_path, word):
    result = run_sh(shell_path, SH.command([sys.executable, "-c", PRINT_ARGV, word, "after"]))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [word, "after"]


@pytest.mark.parametrize("shell_path", POSIX_SHELLS)
@pytest.mark.parametrize("program", ["if", "A=b", "my python", "it's $(id)", "!", "{"])
def test_sh_runs_a_program_of_any_name(shell_path, program, tmp_path):
    write_script(tmp_path / program, "echo ran \"$@\"\n")
    result = run_sh(shell_path, SH.command([program, "a b"]), path=str(tmp_path))
    assert (result.returncode, result.stdout) == (0, "ran a b\n"), result.stderr


def test_sh_exact_lines():
    assert SH.command(["python3", "-", "a b", "a'b"]) == "'python3' - 'a b' 'a'\"'\"'b'"
    assert SH.quote("") == "''"


def write_script(path, body):
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def write_python(directory, name, version=None):
    """A python on PATH. version None: the real one, telling its name in SOCKLAB_TEST_PYTHON. Else an old one:
    for `-c CODE` it runs CODE in the real Python with sys.version_info set to version; anything else fails.
    An old one first eats its stdin, as a version check that forgot </dev/null would let it, leaving the
    good Python no script."""
    real = shlex.quote(sys.executable)
    if version is None:
        body = "SOCKLAB_TEST_PYTHON={} exec {} \"$@\"\n".format(name, real)
    else:
        pretend = "import sys; sys.version_info = {!r}; exec(sys.argv[1])".format(version + ("final", 0))
        body = ("while read -r line; do :; done\n"
                "if [ \"$1\" = -c ]; then exec {} -c {} \"$2\"; fi\n"
                "echo 'an old Python ran' >&2; exit 3\n").format(real, shlex.quote(pretend))
    write_script(directory / name, body)


REPORT = "import json, os, sys; print(json.dumps([os.environ['SOCKLAB_TEST_PYTHON']] + sys.argv))"
ARGS = ["-", "a b", "$(id)", "it's", "", "%PATH%"]


@pytest.mark.parametrize("shell_path", POSIX_SHELLS)
@pytest.mark.parametrize("pythons, chosen", [
    ({"python3": (3, 6, 15), "python3.12": None, "python3.9": None, "python": None}, "python3.12"),
    ({"python3": None, "python3.12": None}, "python3"),
    ({"python3": (3, 7, 17), "python3.8": None, "python": None}, "python3.8"),
    ({"python3": (3, 6, 15), "python": None}, "python"),
])
def test_first_python_execs_the_first_good_candidate_with_stdin(shell_path, pythons, chosen, tmp_path):
    for name, version in pythons.items():
        write_python(tmp_path, name, version)
    result = run_sh(shell_path, SH.first_python(ARGS), path=str(tmp_path), stdin=REPORT)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [chosen] + ARGS


@pytest.mark.parametrize("shell_path", POSIX_SHELLS)
def test_first_python_without_a_good_python(shell_path, tmp_path):
    write_python(tmp_path, "python3", (3, 6, 15))
    write_python(tmp_path, "python", (2, 7, 18))
    result = run_sh(shell_path, SH.first_python(ARGS), path=str(tmp_path), stdin=REPORT)
    assert (result.returncode, result.stdout) == (127, "")
    assert result.stderr == "socklab: no Python 3.8 or newer found\n"


# -- the Microsoft C runtime's argv rules --------------------------------------------------------------------


def crt_argv(line):
    """argv as the Microsoft C runtime splits a command line: words end at a space or tab outside quotes.
    argv[0], the program, takes its quotes only as delimiters. After it, 2n backslashes and a quote give n
    backslashes and a delimiting quote, 2n+1 give n and a literal quote; other backslashes are literal. A ""
    inside quotes is read differently by different runtimes, so it is refused here."""
    i, n = 0, len(line)
    word, quoted = [], False
    while i < n and (quoted or line[i] not in " \t"):
        if line[i] == '"':
            quoted = not quoted
        else:
            word.append(line[i])
        i += 1
    argv = ["".join(word)]
    while True:
        while i < n and line[i] in " \t":
            i += 1
        if i == n:
            return argv
        word, quoted = [], False
        while i < n and (quoted or line[i] not in " \t"):
            if line[i] == "\\":
                run = len(line) - i - len(line[i:].lstrip("\\"))
                i += run
                if i < n and line[i] == '"':
                    word.append("\\" * (run // 2))
                    if run % 2:
                        word.append('"')
                        i += 1
                else:
                    word.append("\\" * run)
            elif line[i] == '"':
                if quoted and line[i + 1:i + 2] == '"':
                    raise ShellWouldAct('"" inside quotes: {!r}'.format(line))
                quoted = not quoted
                i += 1
            else:
                word.append(line[i])
                i += 1
        argv.append("".join(word))


@pytest.mark.parametrize("line, argv", [  # the examples in "Parsing C++ command-line arguments"
    ('"a b c" d e', ["a b c", "d", "e"]),
    ('"ab\\"c" "\\\\" d', ['ab"c', "\\", "d"]),
    ('a\\\\\\b d"e f"g h', ["a\\\\\\b", "de fg", "h"]),
    ('a\\\\\\"b c d', ['a\\"b', "c", "d"]),
    ('a\\\\\\\\"b c" d e', ["a\\\\b c", "d", "e"]),
])
def test_the_argv_decoder_follows_microsofts_examples(line, argv):
    assert crt_argv("prog " + line) == ["prog"] + argv


# -- cmd.exe, by its documented rules -------------------------------------------------------------------------

CMD_ENVIRONMENT = {"PATH": r"C:\Windows\system32", "CD": r"C:\Users\lab", "OS": "Windows_NT"}


def cmd_percent(line):
    """%NAME% -> NAME's value; an undefined NAME (the empty one too) stays, the scan resuming at its second %;
    %NAME:~,% -> NAME's empty substring. Any other substitution would be a gap in this model."""
    out, i = [], 0
    while i < len(line):
        if line[i] != "%" or "%" not in line[i + 1:]:
            out.append(line[i])
            i += 1
            continue
        end = line.index("%", i + 1)
        name, colon, modifier = line[i + 1:end].partition(":")
        if name.upper() not in CMD_ENVIRONMENT:
            out.append(line[i:end])
            i = end
        elif colon and modifier != "~,":
            raise ShellWouldAct("a %NAME:...% substitution: {!r}".format(line))
        else:
            out.append("" if colon else CMD_ENVIRONMENT[name.upper()])
            i = end + 1
    return "".join(out)


def cmd_carets(line):
    """A " toggles quoting; inside quotes all is text; outside, ^ is dropped and escapes the next character,
    and an unescaped & | < > ( ) is an operator. Returns the line handed to the program and the program cmd
    starts: the first token, up to a delimiter (space, tab , ; =) outside quotes, without its quotes; a quote
    behind a caret is only a character."""
    out, program, in_program, quoted, i = [], [], True, False, 0
    while i < len(line):
        c, a_quote = line[i], False
        if c == '"':
            quoted, a_quote = not quoted, True
        elif not quoted and c == "^":
            i += 1
            if i == len(line):
                raise ShellWouldAct("a caret ends the line: {!r}".format(line))
            c = line[i]
        elif not quoted and c in "&|<>()":
            raise ShellWouldAct("operator {!r}: {!r}".format(c, line))
        if in_program and not quoted and c in " \t,;=":
            in_program = False
        elif in_program and not a_quote:
            program.append(c)
        out.append(c)
        i += 1
    return "".join(out), "".join(program)


def cmd_runs(command):
    """The program's argv when Win32-OpenSSH runs command with cmd.exe: sshd wraps it in quotes, /c drops the
    first and last quote, cmd expands %, then reads quotes and carets and starts the program it names with
    what is left, which the program's C runtime splits. cmd and the program must agree on the program."""
    line = '"{}"'.format(command)
    last = line.rindex('"')
    line, program = cmd_carets(cmd_percent(line[1:last] + line[last + 1:]))
    argv = crt_argv(line)
    if program != argv[0]:
        raise ShellWouldAct("cmd starts {!r}, whose argv[0] is {!r}".format(program, argv[0]))
    return argv


@pytest.mark.parametrize("word", HOSTILE)
@pytest.mark.parametrize("program", ["py", r"C:\Program Files\Python 3.12\python.exe"])
def test_cmd_passes_the_word_unchanged(program, word):
    words = [program, "-", word, "after"]
    assert cmd_runs(CMD.command(words)) == words


@pytest.mark.parametrize("program", PROGRAMS)
def test_cmd_runs_a_program_of_any_path(program):
    assert cmd_runs(CMD.command([program, "a b"])) == [program, "a b"]


@pytest.mark.parametrize("word", LINE_BREAKS)
def test_cmd_refuses_a_line_break(word):
    with pytest.raises(ValueError, match="line break"):
        CMD.quote(word)
    with pytest.raises(ValueError):
        CMD.command([word, "x"])


@pytest.mark.parametrize("program", ['"py"', 'C:\\a"b\\python.exe', ""])
def test_cmd_refuses_a_program_no_file_can_be_named(program):
    with pytest.raises(ValueError):
        CMD.command([program, "x"])


def test_cmd_exact_lines():
    assert (CMD.command(["py", "-3", "-", r"C:\Users\Jane O'Brien\.socklab\agent-0123.pyz"])
            == 'py -3 - ^"C:\\Users\\Jane O\'Brien\\.socklab\\agent-0123.pyz^"')
    assert (CMD.command([r"C:\Program Files\Python 3.12\python.exe", "-"])
            == r'"C:\Program Files\Python 3.12\python.exe" -')
    assert CMD.command([r"C:\100%\python.exe"]) == r'"C:\100%%cd:~,%\python.exe"'
    assert CMD.quote("%PATH%") == "%%cd:~,%PATH%%cd:~,%"
    assert CMD.quote('a"b c') == r'^"a\^"b c^"'
    assert CMD.quote("C:\\dir with space\\") == r'^"C:\dir with space\\^"'
    assert CMD.quote("") == '^"^"'
    assert CMD.quote("&calc") == "^&calc"
    assert CMD.quote("!x! ^") == '^"^!x^! ^^^"'


def test_the_cmd_model_catches_plain_c_runtime_quoting():
    with pytest.raises(ShellWouldAct):
        cmd_runs("py " + subprocess.list2cmdline(["&calc"]))
    assert cmd_runs("py " + subprocess.list2cmdline(["%PATH%"])) == ["py", CMD_ENVIRONMENT["PATH"]]


# -- PowerShell, by its documented rules ----------------------------------------------------------------------

SINGLE_QUOTES = "'\u2018\u2019\u201a\u201b"


def sshd_powershell_command(command):
    """PowerShell's -c argument: sshd quotes an argument holding a space unless it starts with ', escaping each
    " and the backslashes before one; powershell.exe splits its command line by the C runtime rules and joins
    the words after -c with spaces."""
    escaped = re.sub(r'(\\*)"', lambda m: m.group(1) * 2 + '\\"', command)
    if " " in command and not command.startswith("'"):
        escaped = '"{}"'.format(escaped)
    argv = crt_argv(r'"C:\WINDOWS\System32\WindowsPowerShell\v1.0\powershell.exe" -c ' + escaped)
    assert argv[1] == "-c"
    return " ".join(argv[2:])


def powershell_call(command):
    """The words of `& 'program' 'argument' ...`, read as PowerShell reads single-quoted strings."""
    if not command.startswith("& "):
        raise ShellWouldAct("not a call: {!r}".format(command))
    words, i = [], 2
    while True:
        if command[i] not in SINGLE_QUOTES:
            raise ShellWouldAct("not a single-quoted string at {}: {!r}".format(i, command))
        word, i = [], i + 1
        while True:
            if command[i] in SINGLE_QUOTES:
                if command[i + 1:i + 2] and command[i + 1] in SINGLE_QUOTES:
                    word.append(command[i + 1])
                    i += 2
                    continue
                i += 1
                break
            word.append(command[i])
            i += 1
        words.append("".join(word))
        if i == len(command):
            return words
        if command[i] != " ":
            raise ShellWouldAct("no space after a string at {}: {!r}".format(i, command))
        i += 1


def dotnet_whitespace(c):
    return c in "\t\n\v\f\r \x85\xa0" or unicodedata.category(c) in ("Zs", "Zl", "Zp")


def needs_quotes(argument):
    """Windows PowerShell 5.1's test: whitespace outside "..." pairs."""
    quotes = 0
    for c in argument:
        if c == '"':
            quotes += 1
        elif dotnet_whitespace(c) and quotes % 2 == 0:
            return True
    return False


def windows_powershell_51_arguments(arguments):
    """Quotes around an argument that needs them, nothing escaped; an empty argument left out."""
    return " ".join('"{}"'.format(a) if needs_quotes(a) else a for a in arguments if a)


def powershell_70_legacy_arguments(arguments):
    """As 5.1, but the backslashes ending a quoted argument doubled (PowerShell PR #4965)."""
    return " ".join('"{}{}"'.format(a, "\\" * (len(a) - len(a.rstrip("\\")))) if needs_quotes(a) else a
                    for a in arguments if a)


def powershell_73_arguments(arguments):
    """.NET's ProcessStartInfo.ArgumentList: each argument by the C runtime rules."""
    def one(a):
        if a and not any(dotnet_whitespace(c) or c == '"' for c in a):
            return a
        # a run of backslashes doubled before a quote (escaped as \") and before the closing quote
        escaped = re.sub(r'(\\*)("|\Z)', lambda m: m.group(1) * 2 + "\\" * len(m.group(2)) + m.group(2), a)
        return '"{}"'.format(escaped)
    return " ".join(one(a) for a in arguments)


NATIVE_ARGUMENT_PASSING = [windows_powershell_51_arguments, powershell_70_legacy_arguments,
                           powershell_73_arguments]


def powershell_runs(command):
    """The program's argv as each PowerShell version starts it, argv[0] being the program PowerShell runs."""
    words = powershell_call(sshd_powershell_command(command))
    return [[words[0]] + crt_argv("program " + build(words[1:]))[1:] for build in NATIVE_ARGUMENT_PASSING]


@pytest.mark.parametrize("word", [word for word in HOSTILE if word not in POWERSHELL_REFUSES])
def test_powershell_passes_the_word_unchanged(word):
    words = [r"C:\Program Files\Python 3.12\python.exe", "-", word, "after"]
    assert powershell_runs(POWERSHELL.command(words)) == [words] * len(NATIVE_ARGUMENT_PASSING)


@pytest.mark.parametrize("program", PROGRAMS)
def test_powershell_runs_a_program_of_any_path(program):
    words = [program, "a b"]
    assert powershell_runs(POWERSHELL.command(words)) == [words] * len(NATIVE_ARGUMENT_PASSING)


@pytest.mark.parametrize("word", POWERSHELL_REFUSES + LINE_BREAKS)
def test_powershell_refuses_what_windows_powershell_51_mangles(word):
    with pytest.raises(ValueError):
        POWERSHELL.quote(word)


@pytest.mark.parametrize("word", ["C:\\dir with space\\", "", 'a"b'])
def test_the_powershell_model_shows_why_those_are_refused(word):
    passed = crt_argv("program " + windows_powershell_51_arguments([word, "after"]))[1:]
    assert passed != [word, "after"]
    assert crt_argv("program " + powershell_73_arguments([word, "after"]))[1:] == [word, "after"]


def test_powershell_exact_lines():
    assert (POWERSHELL.command(["py", "-3", "-", r"C:\Users\Jane O'Brien\.socklab\agent-0123.pyz"])
            == r"& 'py' '-3' '-' 'C:\Users\Jane O''Brien\.socklab\agent-0123.pyz'")
    assert POWERSHELL.quote("\u2018x\u2019 \u201a\u201b") == "'\u2018\u2018x\u2019\u2019 \u201a\u201a\u201b\u201b'"
    assert POWERSHELL.quote("$(calc) `n; &x") == "'$(calc) `n; &x'"
