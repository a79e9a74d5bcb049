"""A test server of the API that serves as ``dropgate serve`` does.

aiohttp's ``TestServer`` runs an application through a plain ``AppRunner``, which calls
the router for every request. ``dropgate serve`` goes through ``make_runner``: the hot
routes' front (http/hotpath.py) and the connection guard. Tests use this one, so that
what they check is the way production requests take.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.web_runner import BaseRunner

from dropgate.http.app import make_runner
from dropgate.http.appkeys import RUNTIME


class ApiServer(TestServer):
    """``TestServer`` of ``create_app(runtime)`` through the server's own runner."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)

    async def _make_runner(self, **kwargs: Any) -> BaseRunner:
        return make_runner(self.app, self.app[RUNTIME].settings, **kwargs)
