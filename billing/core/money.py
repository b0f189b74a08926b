"""Exact money: integer minor units with their currency, and one rounding rule.

No float ever touches an amount. Rates with more decimals than the currency (WhatsApp prices are
fractions of a cent) stay ``Decimal`` until :func:`round_to_minor` is called once, at charge time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal

from billing.core.errors import BillingError, ErrorCode
from billing.core.text import check_text
from models.enums import Unit

# ISO 4217 minor-unit exponents that differ from 2; every other currency code has 2.
_EXPONENTS: dict[str, int] = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0,
    "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
}  # fmt: skip
_KNOWN_CURRENCIES = frozenset(
    {
        "USD", "EUR", "BRL", "GBP", "INR", "MXN", "ARS", "COP", "PEN", "CAD", "AUD", "NZD", "CHF",
        "SEK", "NOK", "DKK", "PLN", "CZK", "HUF", "RON", "ZAR", "NGN", "KES", "EGP", "AED", "SAR",
        "ILS", "TRY", "IDR", "MYR", "PHP", "SGD", "THB", "HKD", "CNY", "TWD", "PKR", "BDT", "LKR",
    }
    | set(_EXPONENTS)
)  # fmt: skip

# 10^15 minor units: far above any real balance, far below a 64-bit column's limit, so sums of
# many such amounts stay exact in BIGINT.
MAX_AMOUNT = 10**15
# No wallet holds more than this (the database's CHECK says the same), so balances fit BIGINT.
MAX_BALANCE = 10**18
# Enough precision for any value _DECIMAL admits, so scaling never rounds.
_EXACT = Context(prec=80)


def exponent(currency: str) -> int:
    return _EXPONENTS.get(currency, 2)


def decimal_places(unit: str) -> int:
    """A wallet unit's decimal places: its currency's exponent; none for POINTS, MESSAGE_CREDITS..."""
    return exponent(unit) if is_currency(unit) else 0


def check_currency(currency: str, field: str = "currency") -> str:
    code = currency.strip().upper()
    if code not in _KNOWN_CURRENCIES:
        raise BillingError(ErrorCode.INVALID_INPUT, f"unknown currency {currency!r}", field=field)
    return code


def is_currency(unit: str) -> bool:
    return unit in _KNOWN_CURRENCIES


def check_amount(amount: int, field: str = "amount", *, allow_zero: bool = False) -> int:
    if amount < 0 or (amount == 0 and not allow_zero) or amount > MAX_AMOUNT:
        bound = "zero or more" if allow_zero else "positive"
        raise BillingError(ErrorCode.INVALID_AMOUNT, f"amount must be {bound} and at most {MAX_AMOUNT}", field=field)
    return amount


# Plain decimal notation only, one way to write each number: ASCII digits, an optional minus, no
# leading zeros, an optional fraction. No spaces, no "+", no exponents, no "_", no other scripts'
# digits, no NaN or Infinity, which Python's Decimal would all accept.
_DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]{0,29})(?:\.[0-9]{1,30})?")


def parse_decimal(text: str, field: str = "amount") -> Decimal:
    if not _DECIMAL.fullmatch(text):
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise BillingError(ErrorCode.INVALID_AMOUNT, f"{shown!r} is not a plain decimal number", field=field)
    return Decimal(text)  # exact: Decimal() from a string never rounds


def to_minor(text: str, unit: str, field: str = "amount") -> int:
    """Parse a decimal string into minor units of ``unit`` exactly; refuse extra decimals."""
    value = parse_decimal(text, field)
    digits = decimal_places(unit)
    if value != value.quantize(Decimal(1).scaleb(-digits), context=_EXACT):  # trailing zeros are fine
        raise BillingError(
            ErrorCode.INVALID_AMOUNT, f"{unit} amounts have at most {digits} decimal places", field=field
        )
    minor = int(value.scaleb(digits, context=_EXACT))
    if abs(minor) > MAX_AMOUNT:
        raise BillingError(
            ErrorCode.INVALID_AMOUNT, f"amount is too large (at most {MAX_AMOUNT} minor units)", field=field
        )
    return minor


# An amount in a unit the caller may not know yet (a wallet's, a payment's currency): minor units,
# or the decimal string a client typed, read once the service has found what it is counted in.
Entered = int | str


def minor_of(amount: Entered, unit: str, field: str = "amount") -> int:
    return to_minor(amount, unit, field) if isinstance(amount, str) else amount


def format_minor(amount: int, unit: str) -> str:
    """Minor units as an exact decimal string: 4990 BRL -> "49.90", 500 POINTS -> "500"."""
    digits = decimal_places(unit)
    if digits == 0:
        return str(amount)
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), 10**digits)
    return f"{sign}{whole}.{frac:0{digits}d}"


def plain_decimal(value: Decimal) -> str:
    """A decimal as the API writes a percentage or a rate: 20.0000 -> "20", 12.5000 -> "12.5"."""
    return format(value.normalize(), "f")


def round_to_minor(value: Decimal, currency: str) -> int:
    """Round an exact major-unit amount once, half-even, to the currency's minor unit."""
    return int(value.scaleb(exponent(currency)).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in minor units of a currency."""

    amount: int
    currency: str

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def _same(self, other: Money) -> None:
        if other.currency != self.currency:
            raise BillingError(ErrorCode.CURRENCY_MISMATCH, f"cannot combine {self.currency} and {other.currency}")

    def decimal_string(self) -> str:
        return format_minor(self.amount, self.currency)

    @classmethod
    def parse(cls, text: str, currency: str, field: str = "amount") -> Money:
        code = check_currency(currency, field="currency")
        return cls(to_minor(text, code, field), code)

    def __str__(self) -> str:
        return f"{self.decimal_string()} {self.currency}"


def check_unit(unit: str) -> str:
    """A wallet unit: one of the named units (POINTS, MESSAGE_CREDITS...) or an ISO 4217 currency."""
    value = check_text(unit, "unit", max_length=32).upper()
    if value in Unit.__members__:
        return value
    return check_currency(value, field="unit")
