"""Code and documents cite documents inside the repository only (#14).

Every ``*.md`` path named in a file under dropgate/, tests/ or benchmarks/ (comments,
docstrings, messages) must exist in the repository: at the root, under docs/, or next
to the file that names it; none may point out of the repository (``../``). Every
relative link of README.md and docs/*.md must resolve to a file inside the repository.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("dropgate", "tests", "benchmarks")
_MD_PATH_RE = re.compile(r"(?<![\w/.-])((?:\.\./|\./)*[\w][\w/.-]*\.md)\b")
_LINK_RE = re.compile(r"\]\(([^)\s]+)\)")


def _texts() -> list[Path]:
    files: list[Path] = []
    for top in SOURCES:
        for path in sorted((ROOT / top).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".so"):
                files.append(path)
    return files


def _inside(path: Path) -> bool:
    return path.resolve().is_relative_to(ROOT)


def test_every_document_the_code_cites_exists_in_the_repository() -> None:
    missing: list[str] = []
    scanned = 0
    for path in _texts():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        scanned += 1
        for number, line in enumerate(text.splitlines(), 1):
            for cited in _MD_PATH_RE.findall(line):
                if "://" in line[max(0, line.find(cited) - 12):line.find(cited)]:
                    continue  # part of a URL
                candidates = [ROOT / cited, ROOT / "docs" / cited, path.parent / cited]
                if not any(c.is_file() and _inside(c) for c in candidates):
                    missing.append(f"{path.relative_to(ROOT)}:{number}: {cited}")
    assert scanned > 100
    assert not missing, "documents cited that are not in the repository:\n" + "\n".join(missing)


def test_every_link_of_the_documents_stays_in_the_repository() -> None:
    broken: list[str] = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for link in _LINK_RE.findall(doc.read_text(encoding="utf-8")):
            target = link.split("#")[0]
            if "://" in link or link.startswith(("#", "mailto:")) or not target:
                continue
            resolved = doc.parent / target
            if not (resolved.exists() and _inside(resolved)):
                broken.append(f"{doc.relative_to(ROOT)}: {link}")
    assert not broken, "links that leave the repository or lead nowhere:\n" + "\n".join(broken)
