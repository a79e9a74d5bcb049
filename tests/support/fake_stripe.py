"""A local fake of the Stripe API parts dropgate uses, for the real ``stripe`` library.

Serves ``POST /v1/checkout/sessions``, ``POST /v1/checkout/sessions/{id}/expire``,
``POST /v1/refunds`` and ``GET /v1/payment_intents/{id}`` on 127.0.0.1 (form-encoded
in, JSON out, Stripe's error shape). As Stripe does, it expires only an open session,
and refunds only a payment it took, for no more than is left of it (``amount``
default: the rest); a completed event (``event()``) is what takes the payment. It
honours ``Idempotency-Key`` like Stripe, and can be told to fail (HTTP 500), hang
(never answer), or answer a session without its ``url``. ``event()`` builds the
webhook events Stripe would send, signed with the endpoint secret; ``charge_event()``
the charge events (a refund made in the dashboard, a dispute).

It validates what Stripe validates, with Stripe's answers (400 ``invalid_request_error``
naming the ``param``): ``success_url`` / ``cancel_url`` absolute http(s) URLs of at most
5000 characters, ``expires_at`` 30 minutes to 24 hours after the session's creation.
Idempotency as Stripe documents it: the key is checked first (a replay answers the
first result without validating again; the same key with other parameters or on
another endpoint is a 400 ``idempotency_error``), and a request refused by validation
stores nothing under its key.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import msgspec
from aiohttp import web
from aiohttp.test_utils import TestServer

from dropgate.checkout.payments.base import sign_payload

Mode = Literal["ok", "fail", "hang", "malformed", "control"]
WEBHOOK_SECRET = "whsec_test_fake"
API_KEY = "sk_test_fake"
MIN_EXPIRY_S = 30 * 60
MAX_EXPIRY_S = 24 * 3600
MAX_URL_LENGTH = 5000
IDEMPOTENCY_MISMATCH = ("Keys for idempotent requests can only be used with the same parameters they "
                        "were first used with. Try using a key other than '{key}' if you meant to "
                        "execute a different request.")


class Refused(Exception):
    """A request Stripe refuses before acting on it (nothing stored under its key)."""

    def __init__(self, param: str, message: str, code: str = "parameter_invalid") -> None:
        super().__init__(message)
        self.param, self.code = param, code

    def response(self) -> web.Response:
        return web.json_response({"error": {"type": "invalid_request_error", "code": self.code,
                                             "param": self.param, "message": str(self)}}, status=400)


def check_url(form: Any, param: str) -> None:
    """Stripe's check of a redirect URL: absolute, http or https, not too long."""
    value = form.get(param)
    if value is None:
        return
    url = str(value)
    parts = urlsplit(url)
    if (parts.scheme not in ("http", "https") or not parts.netloc or url != url.strip()
            or any(c.isspace() for c in url)):
        raise Refused(param, "Not a valid URL", code="url_invalid")
    if len(url) > MAX_URL_LENGTH:
        raise Refused(param, f"Invalid URL: must be {MAX_URL_LENGTH} characters or less.",
                      code="url_invalid")


def check_expires_at(form: Any, now_s: int) -> None:
    """Stripe's window: 30 minutes to 24 hours after the session's creation (``now_s``)."""
    if "expires_at" not in form:
        return
    try:
        expires_at = int(str(form["expires_at"]))
    except ValueError:
        raise Refused("expires_at", "Invalid integer: " + str(form["expires_at"])) from None
    if expires_at - now_s < MIN_EXPIRY_S:
        raise Refused("expires_at", "The `expires_at` timestamp must be at least 30 minutes from "
                      "Checkout Session creation.")
    if expires_at - now_s > MAX_EXPIRY_S:
        raise Refused("expires_at", "The `expires_at` timestamp must be less than 24 hours from "
                      "Checkout Session creation.")


@dataclass
class FakeStripe:
    mode: Mode = "ok"
    refund_mode: Mode = "ok"
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: list[dict[str, Any]] = field(default_factory=list)
    payments: dict[str, dict[str, Any]] = field(default_factory=dict)  # payment intent -> payment
    calls: int = 0
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _idem: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # key -> (request, answer)
    refused: list[dict[str, Any]] = field(default_factory=list)  # the 400s answered, as sent
    server: TestServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/checkout/sessions", self._create_session)
        app.router.add_post("/v1/checkout/sessions/{id}/expire", self._expire_session)
        app.router.add_post("/v1/refunds", self._create_refund)
        app.router.add_get("/v1/payment_intents/{id}", self._get_payment_intent)
        return app

    async def start(self) -> None:
        self.server = TestServer(self.app(), host="127.0.0.1")
        await self.server.start_server()

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()

    async def _gate(self, request: web.Request, mode: Mode) -> web.Response | None:
        self.calls += 1
        if request.headers.get("Authorization") != f"Bearer {API_KEY}":
            return _error(401, "authentication_error", "Invalid API key provided.")
        if mode == "fail":
            return _error(500, "api_error", "Something went wrong on Stripe's end.")
        if mode == "hang":
            await asyncio.sleep(3600)
        return None

    async def _idempotent(self, request: web.Request, make: Any) -> web.Response:
        """Stripe's rule: the same key replays the first answer (without validating again),
        but only for the same endpoint and parameters (else an idempotency_error); a
        request refused by validation (``Refused``) stores nothing."""
        key = request.headers.get("Idempotency-Key")
        params = request.path + "\n" + repr(sorted((await request.post()).items()))
        if key and key in self._idem:
            first_params, first_body = self._idem[key]
            if params != first_params:
                return _error(400, "idempotency_error", IDEMPOTENCY_MISMATCH.format(key=key))
            return web.Response(body=first_body, content_type="application/json")
        try:
            body = msgspec.json.encode(await make())
        except Refused as exc:
            self.refused.append({"param": exc.param, "message": str(exc)})
            return exc.response()
        if key:
            self._idem[key] = (params, body)
        return web.Response(body=body, content_type="application/json")

    async def _create_session(self, request: web.Request) -> web.Response:
        refused = await self._gate(request, self.mode)
        if refused is not None:
            return refused
        form = await request.post()

        async def make() -> dict[str, Any]:
            now_s = int(time.time())
            check_url(form, "success_url")
            check_url(form, "cancel_url")
            check_expires_at(form, now_s)
            sid = f"cs_test_{next(self._ids):06d}"
            session: dict[str, Any] = {
                "id": sid, "object": "checkout.session", "mode": form.get("mode"),
                "status": "open", "payment_status": "unpaid",
                "expires_at": int(str(form["expires_at"])),
                "client_reference_id": form.get("client_reference_id"),
                "amount_total": int(str(form["line_items[0][price_data][unit_amount]"]))
                * int(str(form["line_items[0][quantity]"])),
                "currency": form["line_items[0][price_data][currency]"],
                "metadata": {k[len("metadata["):-1]: str(v) for k, v in form.items()
                             if k.startswith("metadata[")},
                "url": f"https://checkout.stripe.test/c/pay/{sid}",
                "payment_intent": None, "created": now_s,
                "success_url": form.get("success_url"), "cancel_url": form.get("cancel_url"),
            }
            if self.mode == "malformed":
                del session["url"]
            if self.mode == "control":  # an id no caller can keep on one line
                session["id"] = sid + "\nx"
            self.sessions[sid] = session
            return session

        return await self._idempotent(request, make)

    async def _expire_session(self, request: web.Request) -> web.Response:
        refused = await self._gate(request, self.mode)
        if refused is not None:
            return refused
        session = self.sessions.get(request.match_info["id"])
        if session is None:
            return _error(404, "invalid_request_error", "No such checkout.session")
        if session["status"] != "open":
            return _error(400, "invalid_request_error",
                          f"Only Checkout Sessions with a status of open can be expired; this one is "
                          f"{session['status']}.")
        session["status"] = "expired"
        return web.json_response(session)

    async def _get_payment_intent(self, request: web.Request) -> web.Response:
        refused = await self._gate(request, "ok")
        if refused is not None:
            return refused
        payment = self.payments.get(request.match_info["id"])
        if payment is None:
            return _error(404, "invalid_request_error", "No such payment_intent")
        return web.json_response({"id": request.match_info["id"], "object": "payment_intent",
                                  "amount": payment["amount"], "currency": payment["currency"],
                                  "status": "succeeded", "metadata": payment["metadata"]})

    async def _create_refund(self, request: web.Request) -> web.Response:
        refused = await self._gate(request, self.refund_mode)
        if refused is not None:
            return refused
        form = await request.post()

        key = request.headers.get("Idempotency-Key")
        if key and key in self._idem:
            return await self._idempotent(request, _never)  # replayed (or refused: other params)
        intent = str(form.get("payment_intent") or "")
        payment = self.payments.get(intent)
        if payment is None:
            return _error(400, "invalid_request_error", f"No such payment_intent: '{intent}'")
        left = payment["amount"] - payment["refunded"]
        amount = int(str(form["amount"])) if "amount" in form else left
        if left == 0:
            return _error(400, "invalid_request_error", f"Charge ch_{intent} has already been refunded.")
        if amount < 1 or amount > left:
            return _error(400, "invalid_request_error",
                          f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left})")

        async def make() -> dict[str, Any]:
            payment["refunded"] += amount
            refund = {"id": f"re_test_{next(self._ids):06d}", "object": "refund", "amount": amount,
                      "payment_intent": intent, "charge": payment["charge"], "status": "succeeded",
                      "metadata": {k[len("metadata["):-1]: str(v) for k, v in form.items()
                                   if k.startswith("metadata[")}}
            self.refunds.append(refund)
            return refund

        return await self._idempotent(request, make)

    def return_url(self, session_id: str, *, paid: bool) -> str:
        """Where Stripe's page sends the buyer: ``success_url`` with ``{CHECKOUT_SESSION_ID}``
        filled in, or ``cancel_url`` as given."""
        session = self.sessions[session_id]
        if paid:
            return str(session["success_url"]).replace("{CHECKOUT_SESSION_ID}", session_id)
        return str(session["cancel_url"])

    def event(self, event_type: str, session_id: str, *, event_id: str | None = None,
              secret: str = WEBHOOK_SECRET, **changes: Any) -> tuple[bytes, dict[str, str]]:
        """A signed webhook for one of our sessions, as Stripe would POST it (``changes``:
        session fields altered after the fact, e.g. another ``amount_total``)."""
        session = dict(self.sessions[session_id])
        if event_type == "checkout.session.completed":
            session.update(status="complete", payment_status="paid",
                           payment_intent="pi_" + session_id)
            self.sessions[session_id]["status"] = "complete"
            self.payments.setdefault("pi_" + session_id, {
                "amount": session.get("amount_total", 0), "currency": session.get("currency"), "refunded": 0,
                "metadata": dict(session.get("metadata") or {}), "charge": "ch_" + session_id})
        elif event_type == "checkout.session.expired":
            session.update(status="expired")
            if self.sessions[session_id]["status"] == "open":
                self.sessions[session_id]["status"] = "expired"
        session.update(changes)
        payload = msgspec.json.encode({
            "id": event_id or f"evt_test_{next(self._ids):06d}", "object": "event",
            "type": event_type, "created": int(time.time()), "livemode": False,
            "api_version": "2024-06-20", "data": {"object": session},
        })
        return payload, {"Stripe-Signature": sign_payload(payload, secret),
                         "Content-Type": "application/json"}


    def charge_event(self, event_type: str, payment_intent: str, *, event_id: str | None = None,
                     refunds: list[dict[str, Any]] | None = None, listed: bool = True,
                     metadata: bool = True) -> tuple[bytes, dict[str, str]]:
        """A signed ``charge.refunded`` (the charge, listing ``refunds``: default every
        refund made so far; ``listed=False`` as newer API versions send it, without the
        list) or ``charge.dispute.created`` (the dispute, with no metadata of ours)."""
        payment = self.payments[payment_intent]
        obj: dict[str, Any]
        if event_type == "charge.dispute.created":
            obj = {"id": f"dp_test_{next(self._ids):06d}", "object": "dispute", "charge": payment["charge"],
                   "payment_intent": payment_intent, "amount": payment["amount"],
                   "currency": payment["currency"], "status": "needs_response", "metadata": {}}
        else:
            made = [r for r in self.refunds if r["payment_intent"] == payment_intent] if refunds is None else refunds
            obj = {"id": payment["charge"], "object": "charge", "payment_intent": payment_intent,
                   "amount": payment["amount"], "currency": payment["currency"],
                   "amount_refunded": sum(r["amount"] for r in made), "refunded": True,
                   "metadata": dict(payment["metadata"]) if metadata else {}}
            if listed:
                obj["refunds"] = {"object": "list", "data": made, "has_more": False}
        payload = msgspec.json.encode({
            "id": event_id or f"evt_test_{next(self._ids):06d}", "object": "event",
            "type": event_type, "created": int(time.time()), "livemode": False,
            "api_version": "2024-06-20", "data": {"object": obj},
        })
        return payload, {"Stripe-Signature": sign_payload(payload, WEBHOOK_SECRET),
                         "Content-Type": "application/json"}

    def dashboard_refund(self, payment_intent: str, amount: int | None = None) -> dict[str, Any]:
        """A refund made in Stripe's dashboard (no API call of dropgate's)."""
        payment = self.payments[payment_intent]
        amount = payment["amount"] - payment["refunded"] if amount is None else amount
        assert 0 < amount <= payment["amount"] - payment["refunded"]
        payment["refunded"] += amount
        refund = {"id": f"re_test_{next(self._ids):06d}", "object": "refund", "amount": amount,
                  "payment_intent": payment_intent, "charge": payment["charge"], "status": "succeeded",
                  "metadata": {}}
        self.refunds.append(refund)
        return refund


async def _never() -> dict[str, Any]:
    raise AssertionError("an idempotent replay never makes a new object")


def _error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response({"error": {"type": kind, "message": message}}, status=status)
