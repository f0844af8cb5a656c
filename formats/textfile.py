"""A file's bytes and text as every reader takes them: bounded in size, strictly UTF-8, no control characters,
each problem one line naming the file and the line."""
import re

from formats.errors import UserError

MAX_BYTES = 8 << 20  # no settings file or manifest is near this; it also bounds a read of a device or a pipe
# What YAML and a JSON document do not allow raw: the C0 and C1 controls but tab, newline, carriage return, NEL.
CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ufffe\uffff]")


def shortened(text, width=60):
    """Text for a one-line message: at most `width` characters (a field path 64 levels deep, a huge value)."""
    return text if text is None or len(text) <= width else text[:width - 3] + "..."


def read_bytes(path, max_bytes=MAX_BYTES):
    """The file's bytes; UserError when it cannot be read (absent, a folder, no permission) or is larger."""
    chunks, size = [], 0
    try:
        with open(path, "rb") as stream:
            while max_bytes is None or size <= max_bytes:  # in pieces: read(n) takes n bytes of memory at once
                chunk = stream.read(1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
    except OSError as exc:
        raise UserError(exc.strerror or str(exc), path=path) from None
    if max_bytes is not None and size > max_bytes:
        raise UserError("larger than {} MiB: not a socklab file".format(max_bytes >> 20), path=path)
    return b"".join(chunks)


def decoded(data, path, line=None):
    """UTF-8 bytes as text; UserError at the line of the first byte that is not UTF-8 (`line`: the line these
    bytes are, when they are one line of a file)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError("not UTF-8 text (byte 0x{:02x})".format(data[exc.start]), path=path,
                        line=line or data.count(b"\n", 0, exc.start) + 1) from None


def read_text(path, max_bytes=MAX_BYTES):
    """A settings file's text (YAML, JSON); UserError when it cannot be read, is too large, is not UTF-8 or holds
    a control character."""
    text = decoded(read_bytes(path, max_bytes), path)
    control = CONTROL.search(text)
    if control:
        raise UserError("control character U+{:04X} is not allowed".format(ord(control.group())), path=path,
                        line=text.count("\n", 0, control.start()) + 1)
    return text
