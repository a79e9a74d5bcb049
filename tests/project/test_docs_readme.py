"""README.md stands alone and every command it shows exists (#14).

Checked without running anything: the README opens with its title, one paragraph and
then the two commands (``make demo``, ``make test``); every table is well formed (a
blank line before it, a header row, a separator row, the same number of cells on every
row); no paragraph appears twice, nor any run of eight words in two paragraphs; every
``make TARGET`` it shows is a target of the Makefile; every ``dropgate ...`` command
line it shows names subcommands and options the command's parser has; every
``python -m MODULE`` and ``benchmarks.MODULE`` it names can be run; every
``DROPGATE_*`` variable it names is a setting (or one of the test suite's own); and API
readers are pointed at docs/api.md and docs/design.md, never outside the repository.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
from collections import Counter
from pathlib import Path

import msgspec
import pytest

from dropgate.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
# DROPGATE_* variables the README may name that are not settings: the test suite's own.
TEST_VARIABLES = frozenset({"DROPGATE_TEST_REDIS_URL", "DROPGATE_TEST_DATABASE_URL"})
SHINGLE = 8  # words in a row that may not appear in two paragraphs
_SEPARATOR_RE = re.compile(r"\|(\s*:?-{3,}:?\s*\|)+")
_MAKE_RE = re.compile(r"(?:^|[\s;&|(])make\s+(?:[A-Z_]+=\S*\s+)*([a-z][\w-]*)")
_DROPGATE_RE = re.compile(r"(?<![\w/.\[-])dropgate(?=\s|$)(.*)")
_PYTHON_M_RE = re.compile(r"\bpython[\d.]*\s+-m\s+([\w.]+)")
_BENCHMARK_RE = re.compile(r"^(benchmarks\.\w+)\b")
_SETTING_RE = re.compile(r"\bDROPGATE_[A-Z0-9_]*[A-Z0-9]\b")


def _lines() -> list[str]:
    return README.read_text(encoding="utf-8").splitlines()


def _prose_lines() -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    out: list[tuple[int, str]] = []
    in_fence = False
    for number, line in enumerate(_lines(), 1):
        if line.startswith("```"):
            in_fence = not in_fence
            continue
        if not in_fence:
            out.append((number, line))
    return out


def _fenced_blocks() -> list[tuple[str, list[str]]]:
    """(info string, lines) of every fenced code block."""
    blocks: list[tuple[str, list[str]]] = []
    current: tuple[str, list[str]] | None = None
    for line in _lines():
        if line.startswith("```"):
            if current is None:
                current = (line[3:].strip(), [])
            else:
                blocks.append(current)
                current = None
        elif current is not None:
            current[1].append(line)
    return blocks


def _code() -> list[str]:
    """Every command the README shows: inline code spans, the lines of shell blocks, and
    the ``$ ``-prompted lines of other blocks (the rest of those is program output)."""
    spans = [span for _, line in _prose_lines() for span in re.findall(r"`([^`]+)`", line)]
    for info, block in _fenced_blocks():
        for line in block:
            if line.startswith("$ "):
                spans.append(line[2:])
            elif info in ("sh", "bash", "shell", "console"):
                spans.append(line)
    return spans


def _paragraphs() -> list[str]:
    """Prose paragraphs (blank-line separated, outside code, tables and headings), whitespace normalized."""
    paragraphs: list[str] = []
    current: list[str] = []
    for _, line in [*_prose_lines(), (0, "")]:
        if not line.strip() or line.startswith(("#", "|")):
            if current:
                paragraphs.append(" ".join(" ".join(current).split()))
            current = []
        else:
            current.append(line)
    return paragraphs


def _split_row(line: str) -> list[str]:
    body = line.strip()
    return re.split(r"(?<!\\)\|", body[1:-1])


def test_the_two_commands_come_first() -> None:
    lines = _lines()
    assert lines[0] == "# dropgate"
    first_fence = next(i for i, line in enumerate(lines) if line.startswith("```"))
    before = "\n".join(lines[1:first_fence]).strip()
    assert before and "\n\n" not in before, "only one paragraph between the title and the two commands"
    assert not before.startswith(("#", "-", "|", "*")), "that paragraph is prose"
    commands = [line.split("#")[0].strip() for line in _fenced_blocks()[0][1] if line.strip()]
    assert commands[:2] == ["make demo", "make test"]


def test_every_table_is_well_formed() -> None:
    lines = _lines()
    in_fence = False
    block: list[tuple[int, str]] = []
    tables = 0
    for number, line in [*enumerate(lines, 1), (len(lines) + 1, "")]:
        if line.startswith("```"):
            in_fence = not in_fence
        if not in_fence and line.startswith("|"):
            block.append((number, line))
            continue
        if block:
            first = block[0][0]
            assert first == 1 or not lines[first - 2].strip(), f"README.md:{first}: no blank line before the table"
            assert len(block) >= 3, f"README.md:{first}: a table needs a header, a separator and rows"
            assert _SEPARATOR_RE.fullmatch(block[1][1].strip()), f"README.md:{block[1][0]}: not a separator row"
            width = len(_split_row(block[0][1]))
            for n, row in block:
                assert row.rstrip().endswith("|"), f"README.md:{n}: a row ends with |"
                assert len(_split_row(row)) == width, f"README.md:{n}: {len(_split_row(row))} cells, header has {width}"
            tables += 1
        block = []
    assert tables >= 3


def test_no_paragraph_or_run_of_words_appears_twice() -> None:
    paragraphs = _paragraphs()
    repeated = [p for p, n in Counter(paragraphs).items() if n > 1]
    assert not repeated, f"paragraphs repeated in README.md: {repeated}"
    # near repeats too: the same SHINGLE words in a row in two different paragraphs
    where: dict[str, set[int]] = {}
    for index, paragraph in enumerate(paragraphs):
        words = re.sub(r"[`*]", "", paragraph).lower().split()
        for start in range(len(words) - SHINGLE + 1):
            where.setdefault(" ".join(words[start:start + SHINGLE]), set()).add(index)
    repeated = sorted(run for run, found in where.items() if len(found) > 1)
    assert not repeated, f"README.md says these twice (in different paragraphs): {repeated}"


def test_every_make_target_shown_exists() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", makefile, re.M))
    for phony in re.findall(r"^\.PHONY:(.*)$", makefile, re.M):
        targets |= set(phony.split())
    shown = {m for code in _code() for m in _MAKE_RE.findall(code)}
    assert {"demo", "test", "lint", "lock", "lock-upgrade", "test-latest"} <= shown
    assert not shown - targets, f"README.md shows make targets the Makefile lacks: {sorted(shown - targets)}"


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {opt for action in parser._actions for opt in action.option_strings}


def test_every_dropgate_command_line_shown_exists() -> None:
    from dropgate.cli import build_parser

    root = build_parser()
    checked = 0
    for code in _code():
        for match in _DROPGATE_RE.finditer(code):
            parser, path = root, ["dropgate"]
            positional_seen = False
            for raw in match.group(1).split():
                token = raw.strip("`'\"[](),;").replace("\\|", "|")
                if not token:
                    continue
                if token.startswith("--"):
                    option = token.split("=")[0]
                    assert option in _options(parser), f"README.md shows `{' '.join(path)} {option}`: no such option"
                    continue
                commands = _subparsers(parser)
                if commands and not positional_seen:
                    assert token in commands, f"README.md shows `{' '.join(path)} {token}`: no such command"
                    parser, path = commands[token], [*path, token]
                    checked += 1
                else:
                    positional_seen = True  # a FILE, a CODE, a metavar: the parser's business
    assert checked >= 10


def test_every_module_shown_can_be_run() -> None:
    modules = {m for code in _code() for m in _PYTHON_M_RE.findall(code)}
    modules |= {m for code in _code() for m in _BENCHMARK_RE.findall(code.strip())}
    assert "dropgate" in modules
    for module in sorted(modules):
        spec = importlib.util.find_spec(module)
        assert spec is not None, f"README.md shows `python -m {module}`: no such module"
        if spec.submodule_search_locations is not None:  # a package runs its __main__
            assert importlib.util.find_spec(module + ".__main__") is not None, module


def test_every_variable_named_is_a_setting() -> None:
    settings = {"DROPGATE_" + f.name.upper() for f in msgspec.structs.fields(Settings)}
    named = set(_SETTING_RE.findall(README.read_text(encoding="utf-8")))
    assert "DROPGATE_STARTUP_WAIT_S" in named
    assert not named - settings - TEST_VARIABLES, sorted(named - settings - TEST_VARIABLES)


@pytest.mark.parametrize("target", ["docs/api.md", "docs/design.md"])
def test_readers_are_pointed_at_the_documents_in_the_repository(target: str) -> None:
    text = README.read_text(encoding="utf-8")
    assert f"]({target})" in text
    links = re.findall(r"\]\(([^)#\s]+)", text)
    outside = [link for link in links if "://" not in link and not (ROOT / link).resolve().is_relative_to(ROOT)]
    assert not outside, f"README.md links outside the repository: {outside}"
