"""An incremental parser of code files: one code per line, fed in chunks of bytes.

Whitespace around a code is trimmed, blank lines are skipped, a UTF-8 byte-order
mark at the start is ignored. A line over ``MAX_LINE_BYTES`` (checked while the line
is still incomplete, so memory stays bounded), binary data, or a code that is not
1-64 characters of ``[A-Za-z0-9_.-]`` is an error naming the line. ``feed`` answers
the codes before the bad line together with the error, so the caller can apply
exactly the batches that precede the bad line's batch.
"""

from __future__ import annotations

import re

from dropgate.errors import ValidationError
from dropgate.ids import ID_CHARS, ID_MAX_LENGTH

MAX_LINE_BYTES = 256
_CODE_RE = re.compile(f"[{ID_CHARS}]{{1,{ID_MAX_LENGTH}}}".encode())  # a code is an id
_CHARS_RE = re.compile(f"[{ID_CHARS}]+".encode())
_BOM = b"\xef\xbb\xbf"
_TEXT_CONTROLS = frozenset(b"\t\r\x0b\x0c")


def _reason(line: bytes) -> str:
    """Why ``line`` (stripped, non-blank) is not a code."""
    if any(b < 0x20 and b not in _TEXT_CONTROLS for b in line) or b"\x7f" in line:
        return "binary data"
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return "binary data (not UTF-8 text)"
    shown = text if len(text) <= 40 else text[:40] + "..."
    if len(line) > ID_MAX_LENGTH and _CHARS_RE.fullmatch(line):
        return f"code longer than 64 characters ({shown!r})"
    return f"invalid characters in {shown!r}: a code is 1-64 characters of A-Z, a-z, 0-9, '_', '.' or '-'"


def line_error(line_no: int, reason: str) -> ValidationError:
    return ValidationError(f"Line {line_no}: {reason}.", details={"line": line_no, "reason": reason})


class CodeFileParser:
    """``feed(chunk)`` -> (codes, error); ``finish()`` for the last line."""

    def __init__(self) -> None:
        self._rest = b""
        self._started = False
        self._failed = False
        self.lines = 0  # complete lines seen

    def feed(self, chunk: bytes) -> tuple[list[bytes], ValidationError | None]:
        if self._failed:
            raise RuntimeError("the parser already reported an error")
        if not self._started:
            if len(self._rest) + len(chunk) < len(_BOM) and _BOM.startswith(self._rest + chunk):
                self._rest += chunk
                return [], None
            chunk = self._rest + chunk
            self._rest = b""
            if chunk.startswith(_BOM):
                chunk = chunk[len(_BOM):]
            self._started = True
        data = self._rest + chunk if self._rest else chunk
        lines = data.split(b"\n")
        self._rest = lines.pop()
        codes, error = self._lines(lines)
        if error is None and len(self._rest) > MAX_LINE_BYTES:
            error = line_error(self.lines + 1, f"line longer than {MAX_LINE_BYTES} bytes")
        if error is not None:
            self._failed = True
        return codes, error

    def finish(self) -> tuple[list[bytes], ValidationError | None]:
        """The last line when the file does not end with a newline."""
        if self._failed:
            raise RuntimeError("the parser already reported an error")
        rest, self._rest = self._rest, b""
        if not self._started and rest == _BOM[: len(rest)]:
            rest = b""
        if not rest:
            return [], None
        return self._lines([rest])

    def _lines(self, lines: list[bytes]) -> tuple[list[bytes], ValidationError | None]:
        codes: list[bytes] = []
        append = codes.append
        match = _CODE_RE.fullmatch
        n = self.lines
        for raw in lines:
            n += 1
            code = raw.strip()
            if not code:
                continue
            if match(code) is None or len(raw) > MAX_LINE_BYTES:
                self.lines = n
                if len(raw) > MAX_LINE_BYTES:
                    return codes, line_error(n, f"line longer than {MAX_LINE_BYTES} bytes")
                return codes, line_error(n, _reason(code))
            append(code)
        self.lines = n
        return codes, None
