"""Exact money: decimal strings in, integer minor units inside, decimal strings out.

Part of the ground floor (imports nothing of dropgate but ``errors``): the API
models declare their money fields with ``Currency``, ``Amount`` and ``Percent``, the
engine and the HTTP layer convert with ``parse_*`` / ``format_*``.

Nothing on a money path is a binary float: amounts are parsed by regular expression
into integers of the currency's minor unit, Lua scripts add and compare integers,
and responses are formatted back with exactly the currency's minor-unit digits.
"""

from __future__ import annotations

import re
from typing import Annotated

import msgspec

from dropgate.errors import ValidationError

# ISO 4217 minor-unit exponents; any currency not listed has 2.
_EXPONENTS: dict[str, int] = {
    "bif": 0, "clp": 0, "djf": 0, "gnf": 0, "isk": 0, "jpy": 0, "kmf": 0, "krw": 0,
    "pyg": 0, "rwf": 0, "ugx": 0, "vnd": 0, "vuv": 0, "xaf": 0, "xof": 0, "xpf": 0,
    "bhd": 3, "iqd": 3, "jod": 3, "kwd": 3, "lyd": 3, "omr": 3, "tnd": 3,
}
# ASCII digits only (Python's \d also matches other scripts' digits) and fullmatch
# (``$`` would accept a trailing newline).
_AMOUNT_RE = re.compile(r"([0-9]{1,15})(?:\.([0-9]+))?")
_PERCENT_RE = re.compile(r"([0-9]{1,3})(?:\.([0-9]{1,4}))?")
CURRENCY_PATTERN = r"^[a-z]{3}$"
# Largest amount in minor units: keeps every product in Lua (doubles) exact.
MAX_MINOR = 10**13

Currency = Annotated[str, msgspec.Meta(pattern=CURRENCY_PATTERN, description="ISO 4217, lowercase")]
Amount = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,15}(\.[0-9]+)?$",
                                     description="decimal string, no sign or exponent")]
Percent = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,3}(\.[0-9]{1,4})?$",
                                      description="decimal string, 0 < p <= 100, 4 decimals at most")]


def exponent(currency: str) -> int:
    return _EXPONENTS.get(currency, 2)


def parse_amount(value: str, currency: str, *, field: str = "amount", positive: bool = True) -> int:
    """``"25.5"`` usd -> 2550. Refuses signs, exponents and more digits than the currency has."""
    match = _AMOUNT_RE.fullmatch(value)
    if match is None:
        raise ValidationError(f"{field} must be a decimal string such as \"25.00\".",
                              details={"field": field, "value": value})
    whole, frac = match.group(1), match.group(2) or ""
    exp = exponent(currency)
    if len(frac) > exp:
        raise ValidationError(f"{field} has more decimals than {currency} allows ({exp}).",
                              details={"field": field, "value": value})
    minor: int = int(whole) * 10**exp + int(frac.ljust(exp, "0") or "0")
    if positive and minor <= 0:
        raise ValidationError(f"{field} must be greater than 0.", details={"field": field})
    if minor > MAX_MINOR:
        raise ValidationError(f"{field} is too large.", details={"field": field})
    return minor


_UNITS = [10**exp for exp in range(4)]  # 10**exponent, for every exponent of _EXPONENTS


def format_amount(minor: int, currency: str) -> str:
    """2550 usd -> ``"25.50"``; 100 jpy -> ``"100"``. (``divmod`` and ``zfill``, not a
    nested format spec: a promo redemption formats three amounts per request.)"""
    exp = exponent(currency)
    if exp == 0:
        return str(minor)
    sign = ""
    if minor < 0:
        sign, minor = "-", -minor
    whole, frac = divmod(minor, _UNITS[exp])
    return f"{sign}{whole}.{str(frac).zfill(exp)}"


def parse_percent(value: str, *, field: str = "percent") -> int:
    """``"12.5"`` -> 125000: hundredths of a basis point, so 0 < p <= 1,000,000."""
    match = _PERCENT_RE.fullmatch(value)
    if match is None:
        raise ValidationError(f"{field} must be a decimal string with at most 4 decimals.",
                              details={"field": field, "value": value})
    units = int(match.group(1)) * 10_000 + int((match.group(2) or "").ljust(4, "0") or "0")
    if not 0 < units <= 1_000_000:
        raise ValidationError(f"{field} must be greater than 0 and at most 100.",
                              details={"field": field, "value": value})
    return units


def format_percent(units: int) -> str:
    text = f"{units // 10_000}.{units % 10_000:04d}".rstrip("0").rstrip(".")
    return text
