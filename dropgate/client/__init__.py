"""The dropgate Python client: ``AsyncDropgate`` (asyncio) and ``Dropgate`` (blocking).

::

    from dropgate.client import AsyncDropgate, AlreadyUsed

    async with AsyncDropgate("http://127.0.0.1:8080", api_key) as dg:
        invite = await dg.invites.create("LAUNCH", max_uses=100)
        try:
            await dg.invites.redeem("LAUNCH", user_id="u1")
        except AlreadyUsed:
            ...

Requests and answers are the msgspec structs the server itself uses
(``dropgate.models``); errors are one exception class per API error code, all
under ``DropgateError``. This package imports only the shared models and errors
(and aiohttp's client): never Redis, PostgreSQL or server code.
"""

from __future__ import annotations

from dropgate.client.aio import AsyncDropgate
from dropgate.client.base import Namespace
from dropgate.client.errors import *  # noqa: F403 - every exception class, re-exported
from dropgate.client.errors import __all__ as _errors
from dropgate.client.sync import Dropgate, SyncNamespace
from dropgate.client.transport import RetryPolicy, new_idempotency_key

__all__ = [
    "AsyncDropgate",
    "Dropgate",
    "Namespace",
    "RetryPolicy",
    "SyncNamespace",
    "new_idempotency_key",
    *_errors,
]
