"""One exception per API error code, shared by the engine, the HTTP layer and the client.

Scripts answer ``{"err": CODE, "details": {...}}``; the script runner, the HTTP
error middleware and the client all turn a code into the class below through
``ERRORS``, so the three can never disagree on a code's status or meaning.
``str(exc)`` is the human sentence the API sends as ``error``.
"""

from __future__ import annotations

from typing import Any, ClassVar


class DropgateError(Exception):
    """Base of every dropgate error: an API error code, its HTTP status and details."""

    code: ClassVar[str] = "INTERNAL"
    status: ClassVar[int] = 500
    default_message: ClassVar[str] = "Internal error."

    def __init__(
        self,
        message: str | None = None,
        *,
        details: dict[str, Any] | None = None,
        request_id: str | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.details: dict[str, Any] = details or {}
        self.request_id = request_id
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}: {self.code}: {self.message!r})"


def _error(name: str, code: str, status: int, message: str) -> type[DropgateError]:
    cls = type(name, (DropgateError,), {"code": code, "status": status, "default_message": message})
    return cls


# fmt: off
ValidationError = _error("ValidationError", "VALIDATION_ERROR", 400, "The request is invalid.")
PayloadTooLarge = _error("PayloadTooLarge", "PAYLOAD_TOO_LARGE", 413, "The request body is too large.")
NotFound = _error("NotFound", "NOT_FOUND", 404, "Not found.")
MethodNotAllowed = _error("MethodNotAllowed", "METHOD_NOT_ALLOWED", 405, "Method not allowed.")
Unauthorized = _error("Unauthorized", "UNAUTHORIZED", 401, "A valid API key is required.")
Forbidden = _error("Forbidden", "FORBIDDEN", 403, "This key may not do that.")
TenantRequired = _error("TenantRequired", "TENANT_REQUIRED", 400, "Header X-Tenant-Id is required.")
AlreadyExists = _error("AlreadyExists", "ALREADY_EXISTS", 409, "It exists already.")
Conflict = _error("Conflict", "CONFLICT", 409, "The change conflicts with the current state.")
SubscriptionInactive = _error("SubscriptionInactive", "SUBSCRIPTION_INACTIVE", 403, "The tenant's subscription is not active.")
FourEyesRequired = _error("FourEyesRequired", "FOUR_EYES_REQUIRED", 409, "A withdrawal must be approved by someone other than its initiator.")
InsufficientFunds = _error("InsufficientFunds", "INSUFFICIENT_FUNDS", 409, "The balance is too low.")
SlotFull = _error("SlotFull", "SLOT_FULL", 409, "The slot is full.")
TenantBusy = _error("TenantBusy", "TENANT_BUSY", 503, "The tenant has too many operations queued; retry shortly.")
AlreadyUsed = _error("AlreadyUsed", "ALREADY_USED", 409, "This user has already used the code.")
Exhausted = _error("Exhausted", "EXHAUSTED", 409, "The code has no uses left.")
Expired = _error("Expired", "EXPIRED", 409, "The code has expired.")
Inactive = _error("Inactive", "INACTIVE", 409, "The code is not active.")
NotStarted = _error("NotStarted", "NOT_STARTED", 409, "The code is not valid yet.")
CustomerLimit = _error("CustomerLimit", "CUSTOMER_LIMIT", 409, "This customer has used the code as often as allowed.")
InsufficientInventory = _error("InsufficientInventory", "INSUFFICIENT_INVENTORY", 409, "Not enough inventory left.")
OfferUnavailable = _error("OfferUnavailable", "OFFER_UNAVAILABLE", 409, "The offer is not available.")
InventoryConflict = _error("InventoryConflict", "INVENTORY_CONFLICT", 409, "Inventory total cannot go below reserved plus sold.")
QuantityLimit = _error("QuantityLimit", "QUANTITY_LIMIT", 400, "The quantity is over the offer's per-order limit.")
RateLimited = _error("RateLimited", "RATE_LIMITED", 429, "Too many requests; retry later.")
PaymentProviderUnavailable = _error("PaymentProviderUnavailable", "PAYMENT_PROVIDER_UNAVAILABLE", 503, "The payment provider is unavailable; nothing was charged or held.")
InvalidSignature = _error("InvalidSignature", "INVALID_SIGNATURE", 400, "The webhook signature is invalid.")
IdempotencyKeyInUse = _error("IdempotencyKeyInUse", "IDEMPOTENCY_KEY_IN_USE", 409, "A request with this idempotency key is still running.")
IdempotencyKeyReused = _error("IdempotencyKeyReused", "IDEMPOTENCY_KEY_REUSED", 422, "This idempotency key was used with a different request.")
PersistenceLagging = _error("PersistenceLagging", "PERSISTENCE_LAGGING", 503, "Writes are paused while persistence catches up; retry shortly.")
Unavailable = _error("Unavailable", "UNAVAILABLE", 503, "A backing service is unavailable; retry shortly.")
StorageUnavailable = _error("StorageUnavailable", "STORAGE_UNAVAILABLE", 502, "The file store did not answer.")
StaleEpoch = _error("StaleEpoch", "STALE_EPOCH", 409, "This actor's lease was taken over; the operation was not applied.")
Internal = _error("Internal", "INTERNAL", 500, "Internal error.")
# fmt: on

ERRORS: dict[str, type[DropgateError]] = {
    cls.code: cls
    for cls in (
        ValidationError, PayloadTooLarge, NotFound, MethodNotAllowed, Unauthorized, Forbidden,
        TenantRequired, AlreadyExists, Conflict, SubscriptionInactive, FourEyesRequired,
        InsufficientFunds, SlotFull, TenantBusy, AlreadyUsed, Exhausted, Expired, Inactive,
        NotStarted, CustomerLimit, InsufficientInventory, OfferUnavailable, InventoryConflict,
        QuantityLimit, RateLimited, PaymentProviderUnavailable, InvalidSignature,
        IdempotencyKeyInUse, IdempotencyKeyReused, PersistenceLagging, Unavailable,
        StorageUnavailable, StaleEpoch, Internal,
    )
}


def error_for(
    code: str,
    message: str | None = None,
    *,
    details: dict[str, Any] | None = None,
    request_id: str | None = None,
) -> DropgateError:
    """The exception for ``code``; an unknown code (a newer server) becomes a plain DropgateError."""
    cls = ERRORS.get(code)
    if cls is None:
        exc = DropgateError(message, details=details, request_id=request_id)
        exc.code = code  # type: ignore[misc]
        return exc
    return cls(message, details=details, request_id=request_id)
