"""``Namespace``: the base of ``client.<domain>``, one method per API operation.

A domain's namespace is a few lines: a subclass whose methods build the request
struct the server decodes (``dropgate.models``) and call ``self._call(METHOD,
PATH_TEMPLATE, ResponseStruct, path=..., body=...)``. The (method, path) pair is a
literal on purpose: a test reads every namespace and checks that each pair is a
route of the server and that every route has a method.

Adding a domain: ``dropgate/client/<domain>.py`` with ``class Offers(Namespace)``;
the first argument positional, the rest keyword-only and named as the API's fields;
every POST method takes ``idempotency_key: str | None = None``; a docstring naming
the route and the exceptions it raises. Then one line in
``AsyncDropgate._attach_namespaces`` (``self.offers = Offers(self)``): the blocking
``Dropgate`` wraps every namespace by itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, overload
from urllib.parse import quote

import msgspec

from dropgate.client.errors import InvalidResponse
from dropgate.client.transport import Answer
from dropgate.models.idempotency import REPLAYED_BY_KEY

if TYPE_CHECKING:
    from dropgate.client.aio import AsyncDropgate

T = TypeVar("T")


def fill_path(template: str, values: Mapping[str, object]) -> str:
    """``/v1/invites/{code}`` with each value percent-encoded (a ``/`` cannot change the route)."""
    return template.format_map({k: quote(str(v), safe="") for k, v in values.items()})


def decode(answer: Answer, response: type[T]) -> T:
    try:
        return msgspec.json.decode(answer.body, type=response)
    except msgspec.MsgspecError as exc:
        raise InvalidResponse(f"Unexpected answer ({exc}).", request_id=answer.request_id) from exc


class Namespace:
    """Base of every ``client.<domain>`` namespace."""

    def __init__(self, client: AsyncDropgate) -> None:
        self._client = client

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self._client!r}>"

    @overload
    async def _call(self, method: str, path: str, response: type[T], *,
                    path_params: Mapping[str, object] | None = ..., body: Any = ...,
                    query: Mapping[str, str | None] | None = ...,
                    idempotency_key: str | None = ..., content_type: str = ...) -> T: ...

    @overload
    async def _call(self, method: str, path: str, response: None, *,
                    path_params: Mapping[str, object] | None = ..., body: Any = ...,
                    query: Mapping[str, str | None] | None = ...,
                    idempotency_key: str | None = ..., content_type: str = ...) -> None: ...

    async def _call(
        self,
        method: str,
        path: str,
        response: type[T] | None,
        *,
        path_params: Mapping[str, object] | None = None,
        body: Any = None,
        query: Mapping[str, str | None] | None = None,
        idempotency_key: str | None = None,
        content_type: str = "application/json",
    ) -> T | None:
        """Send one API call and decode its answer into ``response`` (None: no body expected).

        ``path`` is the route's template exactly as the server declares it; ``body`` a
        request struct (encoded with msgspec), or raw bytes sent as ``content_type``
        (e.g. a CSV upload); ``query`` drops None values.
        """
        answer = await self._client._transport.request(
            method,
            fill_path(path, path_params or {}),
            body=None if body is None else body if isinstance(body, bytes) else msgspec.json.encode(body),
            params={k: v for k, v in (query or {}).items() if v is not None} or None,
            tenant_id=self._client.tenant_id,
            idempotency_key=idempotency_key,
            content_type=content_type,
            replayable=(method, path) in REPLAYED_BY_KEY,
        )
        if response is None:
            return None
        if response is bytes:  # a non-JSON answer (a CSV export): its bytes as they came
            return answer.body  # type: ignore[return-value]
        return decode(answer, response)

    async def _pages(
        self,
        fetch: Callable[[dict[str, str | None]], Awaitable[Any]],
        filters: Mapping[str, str | None],
        *,
        page_size: int | None,
        consistent: bool,
    ) -> AsyncIterator[Any]:
        """Every item of a list, fetching page after page (``next_cursor``) as it is iterated."""
        cursor: str | None = None
        while True:
            page = await fetch({**filters, "limit": None if page_size is None else str(page_size),
                                "consistent": "true" if consistent else None, "cursor": cursor})
            for item in page.data:
                yield item
            if not page.has_more:
                return
            cursor = page.next_cursor


def flag(value: bool | None) -> str | None:
    """A boolean filter as the query sends it (None: not sent)."""
    return None if value is None else "true" if value else "false"
