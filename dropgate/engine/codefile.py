"""An incremental CSV parser of code files (RFC 4180), fed in chunks of bytes.

The standard ``csv`` module parses; this module streams: each chunk's complete
lines go through one ``csv.reader`` (so memory stays bounded by the chunk, however
large the file), the incomplete last line waits for the next chunk. Accepted: an
optional UTF-8 byte-order mark, LF or CRLF, quoted fields, blank lines (skipped),
whitespace around a code (trimmed), and a first line ``code`` or ``code,type``
(case-insensitive) that is a header: with a ``type`` column each row names its
code type, without one a row is a single code.

A line over ``MAX_LINE_BYTES`` (checked while the line is still incomplete), text
that is not UTF-8, a row with the wrong number of fields, a code that is not 1-64
characters of ``[A-Za-z0-9_.-]`` or a bad type is an error naming the line. ``feed``
answers the rows before the bad line together with the error.
"""

from __future__ import annotations

import codecs
import csv
import re

from dropgate.errors import ValidationError
from dropgate.ids import ID_CHARS, ID_MAX_LENGTH, TYPE_PATTERN

MAX_LINE_BYTES = 256
_CODE_RE = re.compile(f"[{ID_CHARS}]{{1,{ID_MAX_LENGTH}}}")  # a code is an id
_CHARS_RE = re.compile(f"[{ID_CHARS}]+")
_TYPE_RE = re.compile(TYPE_PATTERN)
_HEADERS = {("code",): False, ("code", "type"): True}


def _reason(code: str) -> str:
    """Why ``code`` (stripped, non-blank) is not a code."""
    if any(ord(c) < 0x20 and c not in "\t\r\x0b\x0c" for c in code) or "\x7f" in code:
        return "binary data"
    shown = code if len(code) <= 40 else code[:40] + "..."
    if len(code) > ID_MAX_LENGTH and _CHARS_RE.fullmatch(code):
        return f"code longer than 64 characters ({shown!r})"
    return f"invalid characters in {shown!r}: a code is 1-64 characters of A-Z, a-z, 0-9, '_', '.' or '-'"


def _line_problem(line: str, code: str) -> str | None:
    """Why a line of the plain path is refused (None: it is fine)."""
    if len(line.encode()) > MAX_LINE_BYTES:
        return f"line longer than {MAX_LINE_BYTES} bytes"
    if _CODE_RE.fullmatch(code) is None:
        return _reason(code)
    return None


def line_error(line_no: int, reason: str) -> ValidationError:
    return ValidationError(f"Line {line_no}: {reason}.", details={"line": line_no, "reason": reason})


class CodeFileParser:
    """``feed(chunk)`` -> (codes, types, error); ``finish()`` for the last line.

    ``types`` is None while the file has no ``type`` column, else one type per code.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")("strict")
        self._rest = ""
        self._failed = False
        self._first = True  # no non-blank row seen yet: it may be a header
        self.has_type = False
        self.lines = 0  # complete lines seen

    def feed(self, chunk: bytes) -> tuple[list[str], list[str] | None, ValidationError | None]:
        return self._take(chunk, final=False)

    def finish(self) -> tuple[list[str], list[str] | None, ValidationError | None]:
        """The last line when the file does not end with a newline."""
        return self._take(b"", final=True)

    def _take(self, chunk: bytes, *, final: bool
              ) -> tuple[list[str], list[str] | None, ValidationError | None]:
        if self._failed:
            raise RuntimeError("the parser already reported an error")
        try:
            data = self._rest + self._decoder.decode(chunk, final)
        except UnicodeDecodeError as exc:
            # the lines before the undecodable bytes are still good
            good = (self._rest + exc.object[:exc.start].decode("utf-8", "replace")
                    if isinstance(exc.object, bytes) else self._rest)
            lines = good.split("\n")
            codes, types, error = self._rows(lines[:-1], plain=False)
            if error is None:
                error = line_error(self.lines + 1, "binary data (not UTF-8 text)")
            self._failed = True
            return codes, types, error
        plain = '"' not in data and "," not in data
        if final:
            lines, self._rest = data.split("\n"), ""
            if lines and lines[-1] == "":
                lines.pop()
        else:
            lines = data.split("\n")
            self._rest = lines.pop()
        codes, types, error = self._rows(lines, plain=plain)
        if error is None and len(self._rest.encode()) > MAX_LINE_BYTES:
            error = line_error(self.lines + 1, f"line longer than {MAX_LINE_BYTES} bytes")
        if error is not None:
            self._failed = True
        return codes, types, error

    def _rows(self, lines: list[str], *, plain: bool
              ) -> tuple[list[str], list[str] | None, ValidationError | None]:
        base = self.lines
        if self._first or self.has_type or not plain:
            return self._csv_rows(lines, base)
        # the bulk case: a code per line, no quote, no comma: what csv.reader would
        # answer, at a third of its cost
        codes: list[str] = []
        append = codes.append
        match = _CODE_RE.fullmatch
        for i, line in enumerate(lines):
            code = line.strip()
            if not code:
                continue
            if match(code) is None or len(line) > MAX_LINE_BYTES // 4:
                error = _line_problem(line, code)
                if error is not None:
                    self.lines = base + i + 1
                    return codes, None, line_error(self.lines, error)
            append(code)
        self.lines = base + len(lines)
        return codes, None, None

    def _csv_rows(self, lines: list[str], base: int
                  ) -> tuple[list[str], list[str] | None, ValidationError | None]:
        codes: list[str] = []
        types: list[str] | None = [] if self.has_type else None
        for i, line in enumerate(lines):
            if len(line) > MAX_LINE_BYTES // 4 and len(line.encode()) > MAX_LINE_BYTES:
                self.lines = base + i + 1
                return codes, types, line_error(self.lines, f"line longer than {MAX_LINE_BYTES} bytes")
        reader = csv.reader((ln[:-1] if ln.endswith("\r") else ln for ln in lines), strict=True)
        match = _CODE_RE.fullmatch
        append = codes.append
        try:
            for row in reader:
                n = base + reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if self._first:
                    self._first = False
                    header = _HEADERS.get(tuple(f.strip().lower() for f in row))
                    if header is not None:
                        self.has_type = header
                        types = [] if header else None
                        continue
                want = 2 if self.has_type else 1
                if len(row) != want:
                    self.lines = n
                    shape = "code,type" if self.has_type else "one code"
                    return codes, types, line_error(
                        n, f"{len(row)} fields where a row is {shape}")
                code = row[0].strip()
                if match(code) is None:
                    self.lines = n
                    return codes, types, line_error(n, _reason(code))
                if types is not None:
                    ctype = row[1].strip()
                    if _TYPE_RE.fullmatch(ctype) is None:
                        self.lines = n
                        return codes, types, line_error(
                            n, f"invalid type {ctype[:40]!r}: a type is ^[a-z][a-z0-9_-]{{0,31}}$")
                    types.append(ctype)
                append(code)
        except csv.Error as exc:
            self.lines = base + reader.line_num
            reason = "binary data" if "NUL" in str(exc) else f"malformed CSV ({exc})"
            return codes, types, line_error(self.lines, reason)
        self.lines = base + len(lines)
        return codes, types, None
