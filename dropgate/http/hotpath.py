"""The hot routes' requests, answered without aiohttp's router and middleware chain.

Why (issue #19, BENCHMARKS.md "The hot routes' own path"): a drop's crowd arrives on
four routes (an invite or promo redemption, a code reservation, a purchase), and each
of their requests paid for the router's search through every route of the API (a
regular expression per candidate), a match object built and frozen, and the middleware
chain's call, before its own work began. Those four paths have one shape each, known
in advance: this front end recognises the routes declared ``hot=True`` (routing.py) by
their segments, a dict lookup, and calls the route's handler with the parameters it parsed.

Nothing else differs. The handler is the one the router would have called
(``routing.make_handler``: auth, scopes, tenant, admission, body, the engine); given the
parameters, it answers as the middleware's ``answer`` does (request id, error shape,
headers, metrics: ``middleware.answer_for`` and ``answered``, the middleware's own), so
the two ways cannot answer differently. A request takes this way only when
the router would have matched it to the same route with the same parameters; anything
else (another method or path, a query string, a percent-escape, an ``Expect`` header)
goes to ``Application._handle``, the router and middleware, unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from operator import itemgetter
from types import MappingProxyType
from typing import Any

from aiohttp import hdrs, web

from dropgate.http.routing import RouteHandler, RouteSpec

RequestHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_SEEN_MAX = 4096  # paths whose match is kept (a crowd's are a handful; any others are forgotten)
_SEEN_PATH_MAX = 256  # characters: a longer path is matched every time, never kept


class _Hot:
    """One hot route: where its parameters sit in the path, and whom to call."""

    __slots__ = ("handler", "names", "route")

    def __init__(self, route: str, names: tuple[str, ...], handler: RouteHandler) -> None:
        self.route = route  # the template, as the metrics name it
        self.names = names  # its parameters, in path order
        self.handler = handler


class _Shape:
    """Paths of ``length`` segments with parameters at ``params``: ``fixed`` picks the
    other segments (the key of ``table``), ``values`` the parameters, both in C
    (``operator.itemgetter``: a generator over the segments was a microsecond a request)."""

    __slots__ = ("fixed", "length", "table", "values")

    def __init__(self, length: int, params: tuple[int, ...]) -> None:
        self.length = length
        self.fixed = itemgetter(*[i for i in range(length) if i not in params])
        self.values = itemgetter(*params, params[0])  # always a tuple, one item more
        self.table: dict[Any, _Hot] = {}


class HotFront:
    """The server's request handler: the hot routes' common case here, the rest to ``fallback``."""

    def __init__(self, routes: Mapping[tuple[str, str], tuple[RouteSpec, RouteHandler]],
                 fallback: RequestHandler) -> None:
        self._fallback = fallback
        shapes: dict[tuple[int, tuple[int, ...]], _Shape] = {}
        for (method, path), (spec, handler) in routes.items():
            if not spec.hot:
                continue
            segments = path.split("/")
            params = tuple(i for i, part in enumerate(segments) if part.startswith("{"))
            if (method != "POST" or not params or 0 in params
                    or any(part.startswith("{") != part.endswith("}") for part in segments)):
                raise ValueError(f"{method} {path}: the hot path serves POSTs with whole-segment parameters")
            shape = shapes.setdefault((len(segments), params), _Shape(len(segments), params))
            shape.table[shape.fixed(segments)] = _Hot(path, tuple(segments[i][1:-1] for i in params), handler)
        self._shapes = tuple(shapes.values())
        self._seen: dict[str, tuple[_Hot, Mapping[str, str]] | None] = {}  # raw path -> match

    def match(self, request: web.Request) -> tuple[_Hot, Mapping[str, str]] | None:
        """The hot route and parameters the router would find, or None (the router decides).

        A crowd sends one path over and over (one offer's, one code's), so the answer per
        path is kept (``_SEEN_MAX`` paths of up to ``_SEEN_PATH_MAX`` characters, then
        forgotten all at once): one dict lookup, 0.26 µs, instead of the split and the
        shapes' search, 1.9 µs (``benchmarks.glue``)."""
        if request.method != "POST" or hdrs.EXPECT in request.headers:
            return None  # 100-continue: the router's
        raw = request.raw_path
        try:
            return self._seen[raw]
        except KeyError:
            pass
        found = self._search(raw)
        if len(raw) <= _SEEN_PATH_MAX:  # memory bounded whatever paths a client makes up
            if len(self._seen) >= _SEEN_MAX:
                self._seen.clear()
            self._seen[raw] = found
        return found

    def _search(self, raw: str) -> tuple[_Hot, Mapping[str, str]] | None:
        if "?" in raw or "%" in raw or "{" in raw or "}" in raw:
            return None  # a query, an escape or a brace (the router's 404): the router's
        segments = raw.split("/")
        for shape in self._shapes:
            if len(segments) != shape.length:
                continue
            hot = shape.table.get(shape.fixed(segments))
            if hot is not None:
                values = shape.values(segments)
                if all(values):  # the router's {name} matches one or more characters
                    # read-only: the same parameters are handed to every request of this path
                    return hot, MappingProxyType(dict(zip(hot.names, values, strict=False)))
        return None

    def handle(self, request: web.Request) -> Awaitable[web.StreamResponse]:
        """The answer's coroutine, not a coroutine of its own (aiohttp awaits what the
        handler returns): one frame less for every step of the request."""
        found = self.match(request)
        if found is None:
            return self._fallback(request)
        hot, params = found
        return hot.handler(request, params)  # answers itself: see routing.make_handler
