"""``Dropgate``: the synchronous client, for scripts and notebooks.

It runs an ``AsyncDropgate`` on a private event loop in a daemon thread, so it
works where an event loop is already running (Jupyter) as well as in plain
scripts. Every namespace and method of the async client is here with the same
arguments and docstrings; calls block until the answer (or exception) arrives, and
list methods give plain iterators (``for invite in dg.invites.list(): ...``).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

from dropgate.client.aio import AsyncDropgate
from dropgate.client.base import Namespace
from dropgate.models.ops import Health, Readiness

T = TypeVar("T")


class _LoopThread:
    """An event loop running forever in its own daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="dropgate-client",
                                        daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("A synchronous dropgate call cannot run on the client's own loop.")
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # e.g. KeyboardInterrupt: do not leave the call running
            raise

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


def _blocking_pages(loop: _LoopThread, items: AsyncIterator[T]) -> Iterator[T]:
    """An async list iterator (``invites.list()``, …) walked from synchronous code: each
    item is fetched on the client's loop, so pages are still requested one at a time as
    the caller gets to them."""

    async def step() -> T:
        return await items.__anext__()

    while True:
        try:
            yield loop.run(step())
        except StopAsyncIteration:
            return


def _shutdown(loop: _LoopThread, client: AsyncDropgate) -> None:
    if loop.loop.is_closed():
        return
    try:
        loop.run(client.aclose())
    finally:
        loop.stop()


class SyncNamespace:
    """A namespace of ``AsyncDropgate`` whose methods block instead of returning coroutines."""

    def __init__(self, namespace: Namespace, loop: _LoopThread) -> None:
        self._namespace = namespace
        self._loop = loop

    def __repr__(self) -> str:
        return f"<sync {self._namespace!r}>"

    def __dir__(self) -> list[str]:
        return [n for n in dir(self._namespace) if not n.startswith("_")]

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._namespace, name)
        if name.startswith("_") or not callable(attr):
            return attr
        loop = self._loop
        if inspect.iscoroutinefunction(attr):
            method: Callable[..., Coroutine[Any, Any, Any]] = attr

            @functools.wraps(method)
            def call(*args: Any, **kwargs: Any) -> Any:
                return loop.run(method(*args, **kwargs))
        else:  # list methods answer async iterators: walk them here as plain iterators
            plain: Callable[..., Any] = attr

            @functools.wraps(plain)
            def call(*args: Any, **kwargs: Any) -> Any:
                result = plain(*args, **kwargs)
                if isinstance(result, AsyncIterator):
                    return _blocking_pages(loop, result)
                return result

        self.__dict__[name] = call
        return call


class Dropgate:
    """The dropgate API from synchronous code; same arguments as ``AsyncDropgate``.

    ::

        with Dropgate("http://127.0.0.1:8080", "dg_...") as dg:
            dg.invites.redeem("LAUNCH", user_id="u1")

    Namespaces (``dg.invites``, ``dg.tenants``, …) mirror the async client's.
    Close it with ``close()`` or a ``with`` block. Safe to share between threads.
    """

    def __init__(self, base_url: str, api_key: str, *, tenant_id: str | None = None,
                 **options: Any) -> None:
        self._loop = _LoopThread()
        self._owner = True
        self._parent: Dropgate | None = None

        async def build() -> AsyncDropgate:  # the aiohttp session is created on its loop
            client = AsyncDropgate(base_url, api_key, tenant_id=tenant_id, **options)
            return await client.__aenter__()

        try:
            self._async = self._loop.run(build())
        except BaseException:
            self._loop.stop()
            raise
        # closes the session and stops the thread if the client is dropped without close()
        self._finalizer = weakref.finalize(self, _shutdown, self._loop, self._async)
        self._wrap_namespaces()

    def _wrap_namespaces(self) -> None:
        for name, value in vars(self._async).items():
            if isinstance(value, Namespace):
                setattr(self, name, SyncNamespace(value, self._loop))

    def __getattr__(self, name: str) -> Any:
        # only reached for attributes not set in __init__ (namespaces are set there)
        raise AttributeError(f"Dropgate has no attribute {name!r}")

    @property
    def tenant_id(self) -> str | None:
        return self._async.tenant_id

    @property
    def async_client(self) -> AsyncDropgate:
        """The ``AsyncDropgate`` underneath (its coroutines must run on this client's loop)."""
        return self._async

    def __repr__(self) -> str:
        tenant = f", tenant_id={self.tenant_id!r}" if self.tenant_id else ""
        return f"Dropgate({self._async.base_url!r}{tenant})"

    def for_tenant(self, tenant_id: str) -> Dropgate:
        """A view of this client acting on ``tenant_id`` (admin keys), sharing its session."""
        view = object.__new__(Dropgate)
        view._loop = self._loop
        view._owner = False
        view._parent = self  # keeps the owner (and so its session and thread) alive
        view._async = self._async.for_tenant(tenant_id)
        view._wrap_namespaces()
        return view

    def __enter__(self) -> Dropgate:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the session and stop the client's thread (a ``for_tenant`` view closes nothing)."""
        if self._owner:
            self._finalizer()

    def health(self) -> Health:
        """``GET /healthz``: the server process is up."""
        return self._loop.run(self._async.health())

    def readiness(self) -> Readiness:
        """``GET /readyz``: Redis, PostgreSQL and the persistence backlog, ready or not (no retries)."""
        return self._loop.run(self._async.readiness())

    def openapi(self) -> dict[str, Any]:
        """``GET /openapi.json``: the server's OpenAPI 3.1 document."""
        return self._loop.run(self._async.openapi())

    def metrics(self) -> str:
        """``GET /metrics``: the Prometheus text exposition."""
        return self._loop.run(self._async.metrics())
