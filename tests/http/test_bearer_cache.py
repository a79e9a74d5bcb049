"""``bearer_token`` keeps the headers that parsed: the same answer every time, refusals never kept."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import pytest
from aiohttp import web

from dropgate.errors import Unauthorized
from dropgate.http import auth


def _request(header: str | None) -> web.Request:
    return cast(web.Request, SimpleNamespace(headers={} if header is None else {"Authorization": header}))


def test_parsed_once_answered_alike() -> None:
    for _ in range(2):
        assert auth.bearer_token(_request("Bearer dg_abc_def")) == "dg_abc_def"
        assert auth.bearer_token(_request("bearer   dg_abc_def ")) == "dg_abc_def"
    assert auth._TOKENS["Bearer dg_abc_def"] == "dg_abc_def"


@pytest.mark.parametrize("header", [None, "", "Basic dg_abc", "Bearer ", "Bearer dg_a{b}", "Bearer " + "a" * 513])
def test_refusals_every_time_and_never_kept(header: str | None) -> None:
    for _ in range(2):
        with pytest.raises(Unauthorized):
            auth.bearer_token(_request(header))
    assert (header or "") not in auth._TOKENS


def test_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "_TOKENS", {})
    monkeypatch.setattr(auth, "_TOKENS_MAX", 3)
    for i in range(7):
        assert auth.bearer_token(_request(f"Bearer dg_k{i}")) == f"dg_k{i}"
        assert len(auth._TOKENS) <= 3
