"""Money's own rules, one example each: currencies and their decimals, parsing and what it refuses (with the
code, field and message the API shows), formatting, rounding, and arithmetic that never mixes currencies."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, localcontext

import pytest

from billing.core import money
from billing.core.errors import BillingError, ErrorCode
from billing.core.money import MAX_AMOUNT, Money


def refused(error: pytest.ExceptionInfo[BillingError], code: ErrorCode, field: str | None, message: str) -> None:
    assert (error.value.code, error.value.field, error.value.message) == (code, field, message)


def test_each_currency_has_its_iso_decimals_and_other_units_have_none() -> None:
    assert [money.exponent(c) for c in ("JPY", "USD", "BRL", "KWD")] == [0, 2, 2, 3]
    assert [money.decimal_places(u) for u in ("JPY", "USD", "KWD", "POINTS", "MESSAGE_CREDITS")] == [0, 2, 3, 0, 0]
    assert money.is_currency("KWD") and money.is_currency("BRL") and not money.is_currency("POINTS")


def test_a_currency_code_is_trimmed_and_upper_cased_and_unknown_ones_are_refused() -> None:
    assert money.check_currency(" brl ") == "BRL"
    with pytest.raises(BillingError) as error:
        money.check_currency("XYZ")
    refused(error, ErrorCode.INVALID_INPUT, "currency", "unknown currency 'XYZ'")
    with pytest.raises(BillingError) as error:
        money.check_currency("zzz", field="price.currency")
    refused(error, ErrorCode.INVALID_INPUT, "price.currency", "unknown currency 'zzz'")


def test_an_amount_is_positive_or_zero_when_allowed_and_at_most_the_largest() -> None:
    assert money.check_amount(1) == 1 and money.check_amount(MAX_AMOUNT) == MAX_AMOUNT
    assert money.check_amount(0, allow_zero=True) == 0
    for amount, allow_zero in ((0, False), (-1, False), (MAX_AMOUNT + 1, False), (-1, True), (MAX_AMOUNT + 1, True)):
        with pytest.raises(BillingError) as error:
            money.check_amount(amount, allow_zero=allow_zero)
        bound = "zero or more" if allow_zero else "positive"
        refused(error, ErrorCode.INVALID_AMOUNT, "amount", f"amount must be {bound} and at most {MAX_AMOUNT}")
    with pytest.raises(BillingError) as error:
        money.check_amount(0, "price")
    assert error.value.field == "price"


def test_text_that_is_not_a_plain_decimal_is_refused_and_echoed_at_most_40_characters() -> None:
    with pytest.raises(BillingError) as error:
        money.parse_decimal("1e3")
    refused(error, ErrorCode.INVALID_AMOUNT, "amount", "'1e3' is not a plain decimal number")
    forty = "x" * 40
    with pytest.raises(BillingError) as error:
        money.parse_decimal(forty, "price")
    refused(error, ErrorCode.INVALID_AMOUNT, "price", f"{forty!r} is not a plain decimal number")
    with pytest.raises(BillingError) as error:
        money.parse_decimal(forty + "y", "price")
    refused(error, ErrorCode.INVALID_AMOUNT, "price", f"{forty + '...'!r} is not a plain decimal number")


def test_minor_units_from_text_refuse_extra_decimals_and_huge_amounts() -> None:
    assert money.to_minor("49.90", "BRL") == 4990 and money.to_minor("49.9000", "BRL") == 4990
    assert money.to_minor("-1.5", "KWD") == -1500 and money.to_minor("500", "POINTS") == 500
    with pytest.raises(BillingError) as error:
        money.to_minor("1.005", "USD")
    refused(error, ErrorCode.INVALID_AMOUNT, "amount", "USD amounts have at most 2 decimal places")
    with pytest.raises(BillingError) as error:
        money.to_minor("1.5", "JPY", "price")
    refused(error, ErrorCode.INVALID_AMOUNT, "price", "JPY amounts have at most 0 decimal places")
    with pytest.raises(BillingError) as error:
        money.to_minor("abc", "USD", "price")
    refused(error, ErrorCode.INVALID_AMOUNT, "price", "'abc' is not a plain decimal number")
    # 30 digits: beyond the 28 of Python's default decimal context, still exact, then refused as too large.
    for text in ("9" * 30, "-" + "9" * 30 + ".5"):
        with pytest.raises(BillingError) as error:
            money.to_minor(text, "USD", "price")
        assert (error.value.code, error.value.field) == (ErrorCode.INVALID_AMOUNT, "price")
    assert money.to_minor(money.format_minor(MAX_AMOUNT, "USD"), "USD") == MAX_AMOUNT
    assert money.to_minor(money.format_minor(-MAX_AMOUNT, "USD"), "USD") == -MAX_AMOUNT
    with pytest.raises(BillingError) as error:
        money.to_minor(money.format_minor(MAX_AMOUNT + 1, "USD"), "USD")
    refused(error, ErrorCode.INVALID_AMOUNT, "amount", f"amount is too large (at most {MAX_AMOUNT} minor units)")
    with pytest.raises(BillingError) as error:
        money.to_minor(money.format_minor(-MAX_AMOUNT - 1, "USD"), "USD", "price")
    assert (error.value.code, error.value.field) == (ErrorCode.INVALID_AMOUNT, "price")


def test_an_entered_amount_is_minor_units_or_text_in_the_unit() -> None:
    assert money.minor_of(4990, "BRL") == 4990
    assert money.minor_of("49.90", "BRL") == 4990
    with pytest.raises(BillingError) as error:
        money.minor_of("49.999", "BRL", "price")
    refused(error, ErrorCode.INVALID_AMOUNT, "price", "BRL amounts have at most 2 decimal places")
    with pytest.raises(BillingError) as error:
        money.minor_of("49.999", "BRL")
    assert error.value.field == "amount"


def test_reading_minor_units_is_exact_whatever_the_callers_decimal_context() -> None:
    with localcontext() as context:
        context.prec = 3
        assert money.to_minor("123456.78", "USD") == 12345678
        assert money.to_minor("12345678901.234", "KWD") == 12345678901234


def test_minor_units_are_written_as_exact_decimals() -> None:
    assert money.format_minor(4990, "BRL") == "49.90"
    assert money.format_minor(-5, "USD") == "-0.05"
    assert money.format_minor(0, "USD") == "0.00" and money.format_minor(0, "KWD") == "0.000"  # never "-0.00"
    assert money.format_minor(1500, "KWD") == "1.500"
    assert money.format_minor(-500, "JPY") == "-500" and money.format_minor(500, "POINTS") == "500"
    assert money.plain_decimal(Decimal("20.0000")) == "20"
    assert money.plain_decimal(Decimal("12.5000")) == "12.5"
    assert money.plain_decimal(Decimal("1E+2")) == "100"


def test_rounding_to_minor_units_is_half_even_whatever_the_callers_decimal_context() -> None:
    with localcontext() as context:
        context.rounding = ROUND_HALF_UP
        assert money.round_to_minor(Decimal("0.005"), "USD") == 0
        assert money.round_to_minor(Decimal("0.015"), "USD") == 2
        assert money.round_to_minor(Decimal("2.5"), "JPY") == 2


def test_money_adds_and_subtracts_only_in_its_own_currency() -> None:
    a, b = Money(4990, "BRL"), Money(1010, "BRL")
    assert a + b == Money(6000, "BRL")
    assert a - b == Money(3980, "BRL")
    assert b - a == Money(-3980, "BRL")
    assert -a == Money(-4990, "BRL") and -(-a) == a
    for combine in (lambda: a + Money(1, "USD"), lambda: a - Money(1, "USD")):
        with pytest.raises(BillingError) as error:
            combine()
        refused(error, ErrorCode.CURRENCY_MISMATCH, None, "cannot combine BRL and USD")


def test_money_is_written_and_read_as_a_decimal_with_its_currency() -> None:
    assert Money(4990, "BRL").decimal_string() == "49.90"
    assert str(Money(-1500, "KWD")) == "-1.500 KWD"
    assert Money.parse("49.90", " brl") == Money(4990, "BRL")
    with pytest.raises(BillingError) as error:
        Money.parse("1.5", "XYZ", "price")
    refused(error, ErrorCode.INVALID_INPUT, "currency", "unknown currency 'XYZ'")
    with pytest.raises(BillingError) as error:
        Money.parse("1.005", "USD", "price")
    refused(error, ErrorCode.INVALID_AMOUNT, "price", "USD amounts have at most 2 decimal places")
    with pytest.raises(BillingError) as error:
        Money.parse("1.005", "USD")
    assert error.value.field == "amount"


def test_a_wallet_unit_is_a_named_unit_or_a_currency() -> None:
    assert money.check_unit(" points ") == "POINTS" and money.check_unit("brl") == "BRL"
    with pytest.raises(BillingError) as error:
        money.check_unit("XYZ")
    refused(error, ErrorCode.INVALID_INPUT, "unit", "unknown currency 'XYZ'")
    with pytest.raises(BillingError) as error:
        money.check_unit("X" * 33)
    refused(error, ErrorCode.INVALID_INPUT, "unit", "unit must be at most 32 characters")
