"""Every exception the client raises, under one ``DropgateError``.

The API's error codes map to the classes of ``dropgate.errors`` (the same
classes the server raises, so the two cannot disagree); they are re-exported here
so ``from dropgate.client import InsufficientInventory`` works. The few failures
that happen before an answer exists (no connection, a timeout, an undecodable
answer) have classes of their own below, also under ``DropgateError``.
"""

from __future__ import annotations

from dropgate.errors import (
    ERRORS,
    AlreadyExists,
    AlreadyUsed,
    Conflict,
    CustomerLimit,
    DropgateError,
    Exhausted,
    Expired,
    Forbidden,
    FourEyesRequired,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    Inactive,
    InsufficientCodes,
    InsufficientFunds,
    InsufficientInventory,
    Internal,
    InvalidSignature,
    InventoryConflict,
    MethodNotAllowed,
    NotFound,
    NotStarted,
    OfferUnavailable,
    PayloadTooLarge,
    PaymentProviderUnavailable,
    PersistenceLagging,
    PurchaseNotPaid,
    PurchaseNotPending,
    QuantityLimit,
    RateLimited,
    RefundExceedsPayment,
    SlotFull,
    StaleEpoch,
    StorageUnavailable,
    SubscriptionInactive,
    TenantBusy,
    TenantRequired,
    Unauthorized,
    Unavailable,
    UnknownType,
    UserLimit,
    ValidationError,
    error_for,
)


class ConnectionFailed(DropgateError, ConnectionError):
    """No answer from the server: it could not be reached or dropped the connection.

    Raised once the client's retries are spent. For an unsafe call the operation
    may or may not have been applied; repeat it with the same ``idempotency_key``
    to find out without applying it twice.
    """

    code = "CONNECTION_FAILED"
    status = 0
    default_message = "The server could not be reached."


class Timeout(ConnectionFailed, TimeoutError):
    """The server did not answer within the client's ``timeout`` (after every retry)."""

    code = "TIMEOUT"
    status = 0
    default_message = "The server did not answer in time."


class InvalidResponse(DropgateError):
    """The server answered something the client cannot decode into the expected struct."""

    code = "INVALID_RESPONSE"
    status = 0
    default_message = "The server's answer could not be decoded."


__all__ = [
    "ERRORS",
    "AlreadyExists",
    "AlreadyUsed",
    "Conflict",
    "ConnectionFailed",
    "CustomerLimit",
    "DropgateError",
    "Exhausted",
    "Expired",
    "Forbidden",
    "FourEyesRequired",
    "IdempotencyKeyInUse",
    "IdempotencyKeyReused",
    "Inactive",
    "InsufficientCodes",
    "InsufficientFunds",
    "InsufficientInventory",
    "Internal",
    "InvalidResponse",
    "InvalidSignature",
    "InventoryConflict",
    "MethodNotAllowed",
    "NotFound",
    "NotStarted",
    "OfferUnavailable",
    "PayloadTooLarge",
    "PaymentProviderUnavailable",
    "PersistenceLagging",
    "PurchaseNotPaid",
    "PurchaseNotPending",
    "QuantityLimit",
    "RateLimited",
    "RefundExceedsPayment",
    "SlotFull",
    "StaleEpoch",
    "StorageUnavailable",
    "SubscriptionInactive",
    "TenantBusy",
    "TenantRequired",
    "Timeout",
    "Unauthorized",
    "Unavailable",
    "UnknownType",
    "UserLimit",
    "ValidationError",
    "error_for",
]
