"""Usage amounts kept exact, and the one rounding of a wallet's running usage total.

A WhatsApp rate has more decimals than money does (BRL 0.0625 a message, 0.075 with a 20 % margin). Each
event's amount is kept exact in *fine units*, 10^-10 of the currency's minor unit: every rate has at most
10 decimals of the major unit (the platform's at most 8; a partner's is rounded once to 10, half-even,
when its card is built: ``rate_cards.kept``), so ``count x rate`` is always a whole number of fine units.

A wallet keeps a *usage remainder*: the exact usage charged to it, in fine units, less the whole minor
units its usage entries moved. Each batch adds its events' exact amounts to the remainder and moves the
whole minor units that the running total, rounded half-up, has crossed. So the usage moved from a wallet
is always its exact running total rounded half-up, once, whatever the split into events and batches, and
the balance is within half a minor unit of the exact figure at every moment (the remainder lies in
[-1/2, 1/2) of a minor unit).
"""

from __future__ import annotations

from fractions import Fraction

from billing.core.money import decimal_places, exponent

FINE = 10**10  # fine units in one minor unit
HALF = FINE // 2


def charge_fine(count: int, rate: Fraction, currency: str) -> int:
    """``count x rate`` (major units per message) in fine units, exactly."""
    exact = count * rate * 10 ** exponent(currency) * FINE
    if exact.denominator != 1:  # a rate past rate_cards.KEPT_DECIMALS: rate_cards.kept() was not applied
        raise ValueError("a rate with more than 10 decimals")
    return int(exact.numerator)


def carry(remainder: int, fine: int) -> tuple[int, int]:
    """Add ``fine`` (>= 0) to a wallet's usage ``remainder``: the whole minor units to move now, and the
    remainder after. The remainder stays in [-HALF, HALF)."""
    whole, rest = divmod(remainder + fine + HALF, FINE)
    return whole, rest - HALF


def split(fine: int) -> tuple[int, int]:
    """An exact amount as stored on its event: whole minor units and the fine units beyond them."""
    return divmod(fine, FINE)


def format_fine(fine: int, currency: str) -> str:
    """Fine units as an exact decimal string with at least the currency's decimals: 750000000000 BRL
    (7.5 minor units) -> "0.075", 8000000000000 -> "0.80"."""
    digits = decimal_places(currency)
    sign = "-" if fine < 0 else ""
    scale = 10**digits * FINE
    whole, frac = divmod(abs(fine), scale)
    text = f"{frac:0{digits + 10}d}".rstrip("0")
    text = text.ljust(digits, "0")
    return f"{sign}{whole}.{text}" if text else f"{sign}{whole}"
