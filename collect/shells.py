"""Command lines for a lab host's login shell, each word quoted so the program gets exactly that argv.

The SSH server hands the command string we send to the account's shell: POSIX sh on Linux, FreeBSD, macOS and
Cygwin; on Windows, Win32-OpenSSH's DefaultShell, cmd.exe or PowerShell (Windows PowerShell 5.1 or PowerShell 7).
`for_name(name).command(words)` is the line that runs program words[0] with the arguments words[1:], each word
arriving unchanged whatever it holds. A word the shell cannot carry faithfully raises ValueError instead.

Each class says which rules of its shell it relies on and where they are documented. tests/test_shells.py runs
the sh lines through the real shells and checks the Windows ones against those documented rules.
"""
import re
import shlex
import subprocess

MIN_PYTHON = (3, 8)


def _refuse(shell, word, characters, why):
    for character in characters:
        if character in word:
            raise ValueError("{} cannot carry {!r} in a word ({}): {!r}".format(shell, character, why, word))


class Shell:
    """One kind of login shell.

    name: "sh", "cmd" or "powershell". quote(word): one argument word, quoted for this shell. command(words):
    the line running program words[0] with words[1:]. python_candidates: commands (tuples of words) that may
    run Python 3.8+, best first. first_python(args): one line running the first of them that is Python 3.8+
    with args, or None where the shell has no such line (the caller then tries each candidate in turn).
    """

    python_candidates = (("py", "-3"), ("python",), ("python3",))

    def command(self, words):
        if isinstance(words, str):
            raise TypeError("command() takes a list of words, not a string: {!r}".format(words))
        words = list(words)
        if not words:
            raise ValueError("a command needs at least the program")
        return " ".join([self._program(words[0])] + [self.quote(word) for word in words[1:]])

    def _program(self, word):
        return self.quote(word)

    def first_python(self, args):
        return None


class PosixShell(Shell):
    """sh -c, or another POSIX login shell (dash, bash, ksh, zsh; not csh, tcsh or fish): inside '...' no
    character is special, so shlex.quote carries any word but NUL, which no argv string can hold."""

    name = "sh"
    # newest first: a host with only a versioned Python (FreeBSD's python311 package) is found too
    python_candidates = ((("python3",),) + tuple(("python3.{}".format(minor),) for minor in range(15, 7, -1))
                         + (("python",),))

    def quote(self, word):
        _refuse("sh", word, "\0", "an argv string ends at NUL")
        return shlex.quote(word)

    def _program(self, word):
        # Quoted even where shlex.quote leaves it bare: a word with a quoted character is never taken as an
        # alias, a reserved word (if, !) or an assignment (A=b) (POSIX XCU 2.3.1, 2.4, 2.10.2 rule 7).
        quoted = self.quote(word)
        return quoted if quoted.startswith("'") else "'{}'".format(quoted)

    def first_python(self, args):
        # The check reads /dev/null: the chosen Python gets the caller's stdin (the script) untouched.
        check = "import sys; sys.exit(sys.version_info < {!r})".format(MIN_PYTHON)
        missing = "socklab: no Python {}.{} or newer found".format(*MIN_PYTHON)
        return ('for candidate in {names}; do '
                'if "$candidate" -c {check} </dev/null >/dev/null 2>&1; then exec "$candidate"{args}; fi; '
                'done; echo {missing} >&2; exit 127').format(
                    names=" ".join(self.quote(name) for (name,) in self.python_candidates),
                    check=self.quote(check), args="".join(" " + self.quote(arg) for arg in args),
                    missing=self.quote(missing))


class CmdShell(Shell):
    """cmd.exe. Win32-OpenSSH runs `"cmd.exe" /c "<command>"` (contrib/win32/win32compat/w32-doexec.c). Per
    `cmd /?`, /c then drops that first and last quote, unless the line holds exactly two quotes with no
    &<>()@^| between them and the text between names an executable file, which a program followed by its
    arguments does not. cmd reads what is left once, as a command line (not a batch file), and starts the
    program with it; the program's C runtime splits it into argv.

    Assumes cmd's defaults: command extensions on, delayed expansion off (`cmd /?`; sshd passes no /E or /V).
    With delayed expansion turned on in the registry, a `!NAME!` in a word would still be expanded.
    A batch file (.bat, .cmd) as the program re-reads its arguments with cmd's rules: no quoting here can
    protect & | < > in them, so the program must be an executable.
    """

    name = "cmd"
    # What cmd acts on outside quotes (Colascione, "Everyone quotes command line arguments the wrong way", MSDN
    # blog 2011); ! only matters with delayed expansion, and without it the caret is simply removed. For %,
    # see _no_percent_expansion.
    METACHARACTERS = '^&|<>()"!'
    # A program word of these alone means nothing to cmd or the C runtime, so it goes bare.
    BARE_PROGRAM = re.compile(r"[A-Za-z0-9_.:\\-]+")
    LINE_BREAK = "cmd ends a command at a line break, and an argv string at NUL"

    def quote(self, word):
        _refuse("cmd.exe", word, "\0\r\n", self.LINE_BREAK)
        # First the Microsoft C runtime form ("Parsing C++ command-line arguments"): quotes when the word is
        # empty or has a space or tab, \" for a quote, backslashes doubled only before a quote. list2cmdline
        # is what Popen uses on Windows; it is not in subprocess.__all__, but the subprocess docs describe
        # these rules for it, and the tests decode its output by the Microsoft rules independently.
        crt = subprocess.list2cmdline([word])
        # Then a caret before every metacharacter, the double quotes included: cmd never enters a quoted
        # region, so every caret escapes, and cmd removes each one, handing the program the C runtime form.
        escaped = "".join("^" + c if c in self.METACHARACTERS else c for c in crt)
        return self._no_percent_expansion(escaped)

    def _program(self, word):
        _refuse("cmd.exe", word, "\0\r\n", self.LINE_BREAK)
        _refuse("cmd.exe", word, '"', "no Windows file name holds one, and the program word is in plain quotes")
        if not word:
            raise ValueError("cmd.exe: the program cannot be an empty word")
        if self.BARE_PROGRAM.fullmatch(word):
            return word
        # cmd takes the program from the first word, which a caret-escaped quote or space would not delimit:
        # plain quotes, inside which & | < > ( ) ^ are text. The C runtime reads argv[0] up to the closing
        # quote without backslash rules, so a trailing backslash needs no doubling.
        return self._no_percent_expansion('"{}"'.format(word))

    @staticmethod
    def _no_percent_expansion(text):
        # cmd expands %NAME% before it looks at quotes or carets, and on a command line neither ^% nor %%
        # escapes it (nor would a caret inside the program's quotes). So each % becomes %%cd:~,% : the first %
        # meets the empty name (undefined, so kept as a literal %), then %cd:~,% is an empty substring of the
        # always-defined CD and vanishes; no variable name can form across our %. Rust's std does the same
        # since CVE-2024-24576 (library/std/src/sys/args/windows.rs).
        return text.replace("%", "%%cd:~,%")


class PowerShell(Shell):
    """PowerShell, Windows PowerShell 5.1 or PowerShell 7. Win32-OpenSSH runs `"powershell.exe" -c <command>`,
    the command one argument escaped by the C runtime rules (w32-doexec.c; build_commandline_string in misc.c).
    It gets quotes as it holds a space and does not start with ', and needs no other escaping as it holds no
    double quote and ends in ', so PowerShell receives it exactly.

    Words are single-quoted strings after the call operator: & 'prog' 'arg' ... In such a string nothing is
    special but the quote, and any of ' U+2018 U+2019 U+201A U+201B is one; two in a row stand for the second
    (PowerShell tokenizer.cs ScanStringLiteral, CharTraits.cs IsSingleQuote), so doubling each carries any text.

    PowerShell then builds the program's command line itself, and versions differ (about_Parsing,
    $PSNativeCommandArgumentPassing): 7.3+ escapes each argument by the C runtime rules; Windows PowerShell
    5.1 only puts quotes around an argument holding whitespace (NativeCommandParameterBinder), so it drops an
    empty argument, passes a " raw, and leaves a trailing backslash to escape its closing quote (PowerShell
    issues #1995, #7400). No literal reads the same under both for those words, so quote() refuses them; a
    Windows path holds no " and needs no trailing backslash. Every other word reaches the program unchanged
    under 5.1, 7.0-7.2 and 7.3+.

    powershell -c exits 0 or 1, not with the program's own status (PowerShell issue #13501).
    """

    name = "powershell"
    SINGLE_QUOTES = "'\u2018\u2019\u201a\u201b"

    def quote(self, word):
        # Line breaks: refused rather than trusted, as nothing documents them through sshd's and
        # powershell.exe's command lines, and no path, host or user name holds one.
        _refuse("PowerShell", word, "\0\r\n", "an argv string ends at NUL; line breaks are not passed")
        _refuse("PowerShell", word, '"', "Windows PowerShell 5.1 passes it to the program unescaped")
        if not word:
            raise ValueError("PowerShell cannot carry an empty word: Windows PowerShell 5.1 drops it")
        # str.isspace() covers .NET's char.IsWhiteSpace, the test 5.1 quotes by.
        if word.endswith("\\") and any(c.isspace() for c in word):
            raise ValueError("PowerShell cannot carry a word with whitespace ending in a backslash: Windows "
                             "PowerShell 5.1 passes it as \"...\\\", an escaped quote to the program; drop the "
                             "trailing backslash: {!r}".format(word))
        if word == "--%":
            # The native binder takes this value as the stop-parsing token, quoted or not, and expands
            # %NAME% in every argument after it (NativeCommandParameterBinder.BindParameters).
            raise ValueError("PowerShell cannot carry the word '--%': it is its stop-parsing token")
        return "'{}'".format("".join(c * 2 if c in self.SINGLE_QUOTES else c for c in word))

    def command(self, words):
        # The call operator: a quoted program name alone would be a string expression, not a command.
        return "& " + super().command(words)


SHELLS = {shell.name: shell for shell in (PosixShell(), CmdShell(), PowerShell())}


def for_name(name):
    try:
        return SHELLS[name]
    except KeyError:
        raise ValueError("unknown shell {!r}: expected one of {}".format(name, ", ".join(SHELLS))) from None
