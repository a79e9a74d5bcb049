"""docs/api.md, the HTTP contract, stays true to the code (#14).

Read in-process, no servers: the router the app builds from ``ROUTE_TABLES``, the
OpenAPI document built from the same declarations, the request and answer structs and
the error table. Checked:

- the routes of docs/api.md's tables are exactly the routes the app registers (method
  and path, parameter names included) and the operations of ``/openapi.json``; every
  other ``METHOD /path`` the page mentions is registered too;
- each route's row starts its answer with the route's success status, names its answer
  struct, and lists its request body's fields exactly (``name?`` when optional);
- the Objects table lists every struct an answer can contain, with exactly its fields
  (``name?`` when it may be left out of the answer);
- the error table holds every code of ``dropgate/errors.py`` with its status, and every
  error code the page names exists;
- every ``DROPGATE_*`` setting the page names exists.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp import web

from dropgate.errors import ERRORS
from dropgate.http.openapi import build_openapi
from dropgate.http.routes import ROUTE_TABLES
from dropgate.http.routing import RouteSpec, add_routes
from dropgate.models.common import ErrorBody
from dropgate.settings import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
SPECS = [spec for table in ROUTE_TABLES for spec in table.specs]
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_ROUTE_RE = re.compile(r"`(" + "|".join(METHODS) + r") (/[^`\s?]*)")
_CELL_ROUTE_RE = re.compile(r"^`(" + "|".join(METHODS) + r") (/[^`\s?]*)`$")
_FIELDS_RE = re.compile(r"`(\{.*?\})`")
_CODE_RE = re.compile(r"`([A-Z][A-Z0-9_]{2,})`")
_SETTING_RE = re.compile(r"\bDROPGATE_[A-Z0-9_]*[A-Z0-9]")
# Settings the page names that are not ``Settings`` fields: none today.
_NOT_SETTINGS: frozenset[str] = frozenset()


def _text() -> str:
    return DOC.read_text(encoding="utf-8")


def split_row(line: str) -> list[str]:
    """A Markdown table row's cells (``\\|`` is a literal bar inside a cell)."""
    body = line.strip()
    assert body.startswith("|") and body.endswith("|"), line
    cells = re.split(r"(?<!\\)\|", body[1:-1])
    return [cell.strip().replace("\\|", "|") for cell in cells]


_SEPARATOR_RE = re.compile(r"\|(\s*:?-{3,}:?\s*\|)+")


def _data_rows(text: str) -> list[list[str]]:
    """The cells of every table's data rows (after its header and separator rows)."""
    rows: list[list[str]] = []
    in_fence = False
    block: list[str] = []
    for line in [*text.splitlines(), ""]:
        if line.startswith("```"):
            in_fence = not in_fence
        if not in_fence and line.startswith("|"):
            block.append(line)
            continue
        if len(block) >= 2 and _SEPARATOR_RE.fullmatch(block[1].strip()):
            rows += [split_row(row) for row in block[2:]]
        block = []
    return rows


def field_list(braces: str) -> dict[str, bool]:
    """``{a, b?, c: [{d}]}`` -> ``{"a": False, "b": True, "c": False}`` (name -> marked optional)."""
    inner = braces.strip()[1:-1]
    parts: list[str] = []
    depth, start, quoted = 0, 0, False
    for i, ch in enumerate(inner):
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in "[{":
            depth += 1
        elif not quoted and ch in "]}":
            depth -= 1
        elif not quoted and ch == "," and depth == 0:
            parts.append(inner[start:i])
            start = i + 1
    parts.append(inner[start:])
    fields: dict[str, bool] = {}
    for part in parts:
        name = part.split(":", 1)[0].strip()
        if not name:
            continue
        optional = name.endswith("?")
        fields[name.rstrip("?")] = optional
    return fields


def struct_fields(cls: type[Any], *, answer: bool) -> dict[str, bool]:
    """A struct's JSON field names -> optional (request: not required; answer: may be left out)."""
    config = cls.__struct_config__
    fields: dict[str, bool] = {}
    if config.tag_field is not None:
        fields[config.tag_field] = False
    for f in msgspec.structs.fields(cls):
        if answer:
            optional = f.default is msgspec.UNSET or (config.omit_defaults and not f.required)
        else:
            optional = not f.required
        fields[f.encode_name] = optional
    return fields


def _structs_in(tp: Any, seen: set[type[Any]]) -> None:
    info = msgspec.inspect.type_info(tp)
    stack: list[Any] = [info]
    while stack:
        t = stack.pop()
        if isinstance(t, msgspec.inspect.Metadata):
            stack.append(t.type)
        elif isinstance(t, msgspec.inspect.StructType):
            if t.cls not in seen:
                seen.add(t.cls)
                stack.extend(f.type for f in t.fields)
        elif isinstance(t, msgspec.inspect.UnionType):
            stack.extend(t.types)
        elif isinstance(t, msgspec.inspect.ListType | msgspec.inspect.SetType
                        | msgspec.inspect.FrozenSetType | msgspec.inspect.VarTupleType):
            stack.append(t.item_type)
        elif isinstance(t, msgspec.inspect.DictType):
            stack.extend((t.key_type, t.value_type))


def answer_structs() -> set[type[Any]]:
    """Every struct an answer can contain: the routes' answers and what they nest, the error body."""
    seen: set[type[Any]] = set()
    for spec in SPECS:
        for tp in (spec.response, *spec.alternatives, *spec.other_responses.values()):
            if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
                _structs_in(tp, seen)
    _structs_in(ErrorBody, seen)
    return seen


def registered_routes() -> set[tuple[str, str]]:
    app = web.Application()
    add_routes(app, ROUTE_TABLES)
    return {(r.method, r.resource.canonical) for r in app.router.routes()
            if r.method != "HEAD" and r.resource is not None}


def route_rows() -> dict[tuple[str, str], list[str]]:
    rows: dict[tuple[str, str], list[str]] = {}
    for cells in _data_rows(_text()):
        match = _CELL_ROUTE_RE.match(cells[0])
        if match:
            key = (match.group(1), match.group(2))
            assert key not in rows, f"docs/api.md lists {key} twice"
            assert len(cells) == 3, f"docs/api.md: a route row has route | body | answer: {cells}"
            rows[key] = cells
    return rows


def _spec(method: str, path: str) -> RouteSpec:
    return next(s for s in SPECS if (s.method, s.path) == (method, path))


def test_the_route_tables_list_exactly_the_registered_routes() -> None:
    documented = set(route_rows())
    registered = registered_routes()
    assert not registered - documented, f"routes missing from docs/api.md: {sorted(registered - documented)}"
    assert not documented - registered, f"docs/api.md lists routes the app does not serve: " \
                                        f"{sorted(documented - registered)}"


def test_the_route_tables_match_the_openapi_document() -> None:
    doc = build_openapi(SPECS)
    operations = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert set(route_rows()) == operations


def test_every_route_the_page_mentions_is_registered() -> None:
    mentioned = set(_ROUTE_RE.findall(_text()))
    unknown = sorted(mentioned - registered_routes())
    assert not unknown, f"docs/api.md mentions routes the app does not serve: {unknown}"


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.method} {s.path}")
def test_each_route_row_has_its_status_answer_and_body_fields(spec: RouteSpec) -> None:
    row = route_rows().get((spec.method, spec.path))
    assert row is not None, f"{spec.method} {spec.path} has no row in docs/api.md"
    _, body_cell, answer_cell = row
    status = re.match(r"(\d{3})\b", answer_cell)
    assert status is not None and int(status.group(1)) == spec.status, (spec.path, answer_cell)
    response = spec.response
    if isinstance(response, type) and issubclass(response, msgspec.Struct):
        assert f"`{response.__name__}`" in answer_cell, (spec.path, response.__name__)
    braces = _FIELDS_RE.search(body_cell)
    if spec.body is None:
        if spec.request_content is None:
            assert braces is None, f"{spec.method} {spec.path} takes no body: {body_cell}"
        return
    assert braces is not None, f"{spec.method} {spec.path}: its body's fields are missing"
    assert field_list(braces.group(1)) == struct_fields(spec.body, answer=False), (spec.path, body_cell)


def test_the_objects_table_has_every_answer_struct_with_its_fields() -> None:
    objects: dict[str, str] = {}
    for cells in _data_rows(_text()):
        match = re.fullmatch(r"`([A-Z][A-Za-z]+)`", cells[0])
        if match and len(cells) == 2:
            objects[match.group(1)] = cells[1]
    structs = {cls.__name__: cls for cls in answer_structs()}
    assert set(objects) == set(structs), (
        f"missing from docs/api.md's objects: {sorted(set(structs) - set(objects))}; "
        f"not answered by any route: {sorted(set(objects) - set(structs))}")
    for name, cell in objects.items():
        braces = _FIELDS_RE.search(cell)
        assert braces is not None, name
        assert field_list(braces.group(1)) == struct_fields(structs[name], answer=True), (name, cell)


def test_the_error_table_has_every_code_with_its_status() -> None:
    table: dict[str, int] = {}
    for cells in _data_rows(_text()):
        match = re.fullmatch(r"`([A-Z][A-Z0-9_]+)`", cells[0])
        if match and len(cells) == 3 and cells[1].isdigit():
            assert match.group(1) not in table, f"{match.group(1)} is in the error table twice"
            table[match.group(1)] = int(cells[1])
    assert table == {code: cls.status for code, cls in ERRORS.items()}


def test_every_error_code_is_named_and_every_named_code_exists() -> None:
    text = _text()
    named = {code for code in _CODE_RE.findall(text)
             if code not in METHODS and code != "HEAD" and not code.startswith("DROPGATE_")}
    assert not set(ERRORS) - named, f"error codes docs/api.md never names: {sorted(set(ERRORS) - named)}"
    assert not named - set(ERRORS), f"docs/api.md names codes that do not exist: {sorted(named - set(ERRORS))}"


def test_every_setting_the_page_names_exists() -> None:
    settings = {"DROPGATE_" + f.name.upper() for f in msgspec.structs.fields(Settings)}
    named = set(_SETTING_RE.findall(_text()))
    assert not named - settings - _NOT_SETTINGS, sorted(named - settings - _NOT_SETTINGS)
