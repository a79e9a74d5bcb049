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


class ValidationError(DropgateError):
    code = "VALIDATION_ERROR"
    status = 400
    default_message = "The request is invalid."


class PayloadTooLarge(DropgateError):
    code = "PAYLOAD_TOO_LARGE"
    status = 413
    default_message = "The request body is too large."


class NotFound(DropgateError):
    code = "NOT_FOUND"
    status = 404
    default_message = "Not found."


class MethodNotAllowed(DropgateError):
    code = "METHOD_NOT_ALLOWED"
    status = 405
    default_message = "Method not allowed."


class Unauthorized(DropgateError):
    code = "UNAUTHORIZED"
    status = 401
    default_message = "A valid API key is required."


class Forbidden(DropgateError):
    code = "FORBIDDEN"
    status = 403
    default_message = "This key may not do that."


class TenantRequired(DropgateError):
    code = "TENANT_REQUIRED"
    status = 400
    default_message = "Header X-Tenant-Id is required."


class AlreadyExists(DropgateError):
    code = "ALREADY_EXISTS"
    status = 409
    default_message = "It exists already."


class Conflict(DropgateError):
    code = "CONFLICT"
    status = 409
    default_message = "The change conflicts with the current state."


class SubscriptionInactive(DropgateError):
    code = "SUBSCRIPTION_INACTIVE"
    status = 403
    default_message = "The tenant's subscription is not active."


class FourEyesRequired(DropgateError):
    code = "FOUR_EYES_REQUIRED"
    status = 409
    default_message = "A withdrawal must be approved by someone other than its initiator."


class InsufficientFunds(DropgateError):
    code = "INSUFFICIENT_FUNDS"
    status = 409
    default_message = "The balance is too low."


class SlotFull(DropgateError):
    code = "SLOT_FULL"
    status = 409
    default_message = "The slot is full."


class TenantBusy(DropgateError):
    code = "TENANT_BUSY"
    status = 503
    default_message = "The tenant has too many operations queued; retry shortly."


class AlreadyUsed(DropgateError):
    code = "ALREADY_USED"
    status = 409
    default_message = "This user has already used the code."


class Exhausted(DropgateError):
    code = "EXHAUSTED"
    status = 409
    default_message = "The code has no uses left."


class Expired(DropgateError):
    code = "EXPIRED"
    status = 409
    default_message = "The code has expired."


class Inactive(DropgateError):
    code = "INACTIVE"
    status = 409
    default_message = "The code is not active."


class NotStarted(DropgateError):
    code = "NOT_STARTED"
    status = 409
    default_message = "The code is not valid yet."


class CustomerLimit(DropgateError):
    code = "CUSTOMER_LIMIT"
    status = 409
    default_message = "This customer has used the code as often as allowed."


class InsufficientInventory(DropgateError):
    code = "INSUFFICIENT_INVENTORY"
    status = 409
    default_message = "Not enough inventory left."


class OfferUnavailable(DropgateError):
    code = "OFFER_UNAVAILABLE"
    status = 409
    default_message = "The offer is not available."


class InventoryConflict(DropgateError):
    code = "INVENTORY_CONFLICT"
    status = 409
    default_message = "Inventory total cannot go below reserved plus sold."


class QuantityLimit(DropgateError):
    code = "QUANTITY_LIMIT"
    status = 400
    default_message = "The quantity is over the offer's per-order limit."


class PurchaseNotPending(DropgateError):
    code = "PURCHASE_NOT_PENDING"
    status = 409
    default_message = "The purchase is no longer pending."


class PurchaseNotPaid(DropgateError):
    code = "PURCHASE_NOT_PAID"
    status = 409
    default_message = "The purchase is not paid (or is already fully refunded)."


class RefundExceedsPayment(DropgateError):
    code = "REFUND_EXCEEDS_PAYMENT"
    status = 409
    default_message = "The refund is more than what is left of the payment."


class UserLimit(DropgateError):
    code = "USER_LIMIT"
    status = 409
    default_message = "This user already holds or owns as many units of the offer as allowed."


class RateLimited(DropgateError):
    code = "RATE_LIMITED"
    status = 429
    default_message = "Too many requests; retry later."
    #: The response's ``Retry-After`` in seconds, set by the client that received it.
    header_retry_after_s: float | None = None

    @property
    def retry_after(self) -> float | None:
        """Seconds to wait before retrying: ``details.retry_after_s``, else ``Retry-After``."""
        value = self.details.get("retry_after_s")
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        return self.header_retry_after_s


class PaymentProviderUnavailable(DropgateError):
    code = "PAYMENT_PROVIDER_UNAVAILABLE"
    status = 503
    default_message = "The payment provider is unavailable; nothing was charged or held."


class InvalidSignature(DropgateError):
    code = "INVALID_SIGNATURE"
    status = 400
    default_message = "The webhook signature is invalid."


class IdempotencyKeyInUse(DropgateError):
    code = "IDEMPOTENCY_KEY_IN_USE"
    status = 409
    default_message = "A request with this idempotency key is still running."


class IdempotencyKeyReused(DropgateError):
    code = "IDEMPOTENCY_KEY_REUSED"
    status = 422
    default_message = "This idempotency key was used with a different request."


class PersistenceLagging(DropgateError):
    code = "PERSISTENCE_LAGGING"
    status = 503
    default_message = "Writes are paused while persistence catches up; retry shortly."


class Unavailable(DropgateError):
    code = "UNAVAILABLE"
    status = 503
    default_message = "A backing service is unavailable; retry shortly."


class StorageUnavailable(DropgateError):
    code = "STORAGE_UNAVAILABLE"
    status = 502
    default_message = "The file store did not answer."


class StaleEpoch(DropgateError):
    code = "STALE_EPOCH"
    status = 409
    default_message = "This actor's lease was taken over; the operation was not applied."


class UnknownType(DropgateError):
    code = "UNKNOWN_TYPE"
    status = 400
    default_message = "The campaign has no such code type."


class InsufficientCodes(DropgateError):
    code = "INSUFFICIENT_CODES"
    status = 409
    default_message = "The pool has fewer available codes than asked (nothing was reserved)."


class Internal(DropgateError):
    code = "INTERNAL"
    status = 500
    default_message = "Internal error."


ERRORS: dict[str, type[DropgateError]] = {
    cls.code: cls
    for cls in (
        ValidationError, PayloadTooLarge, NotFound, MethodNotAllowed, Unauthorized, Forbidden,
        TenantRequired, AlreadyExists, Conflict, SubscriptionInactive, FourEyesRequired,
        InsufficientFunds, SlotFull, TenantBusy, AlreadyUsed, Exhausted, Expired, Inactive,
        NotStarted, CustomerLimit, InsufficientInventory, OfferUnavailable, InventoryConflict,
        QuantityLimit, PurchaseNotPending, PurchaseNotPaid, RefundExceedsPayment, UserLimit,
        RateLimited, PaymentProviderUnavailable, InvalidSignature,
        IdempotencyKeyInUse, IdempotencyKeyReused, PersistenceLagging, Unavailable,
        StorageUnavailable, StaleEpoch, UnknownType, InsufficientCodes, Internal,
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
