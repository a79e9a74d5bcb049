"""Amounts out exactly as they came in: ``format_amount`` is ``parse_amount``'s inverse in
every currency exponent, with the sign and the leading zeros of the minor digits kept."""

from __future__ import annotations

import pytest

from dropgate.money import MAX_MINOR, format_amount, parse_amount


@pytest.mark.parametrize(("minor", "currency", "text"), [
    (2550, "usd", "25.50"), (5, "usd", "0.05"), (0, "usd", "0.00"), (-2550, "usd", "-25.50"),
    (-5, "usd", "-0.05"), (100, "jpy", "100"), (-7, "jpy", "-7"), (0, "jpy", "0"),
    (1, "kwd", "0.001"), (123456, "kwd", "123.456"), (-1000, "bhd", "-1.000"),
    (MAX_MINOR, "usd", "100000000000.00"), (1, "xyz", "0.01"),  # unlisted: 2 decimals
])
def test_format_amount(minor: int, currency: str, text: str) -> None:
    assert format_amount(minor, currency) == text


@pytest.mark.parametrize("currency", ["usd", "jpy", "kwd", "eur"])
def test_format_then_parse_is_the_identity(currency: str) -> None:
    for minor in (*range(1, 1200, 7), 10**9 + 3, MAX_MINOR):
        assert parse_amount(format_amount(minor, currency), currency) == minor
