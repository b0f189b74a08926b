"""Every place that rounds money, fed exact ties: values that lie exactly half a minor unit between
two amounts. Random decimals almost never land there, so half-up (or half away from zero) would
pass a property test that draws them; these draw nothing else.

The rule everywhere is half-even (banker's rounding): n + 1/2 goes to whichever of n and n + 1 is
even. The oracle below is built from the ``n`` the tie was made from, not from any rounding code:
``n + n % 2`` (Python's ``%`` is never negative, so -2.5 = -3 + 1/2 goes to -3 + 1 = -2).

Tried: ROUND_HALF_UP in ``money.round_to_minor``, ``floor(x + 1/2)`` in ``periods.round_half_even``
and ``twice >= denominator`` in ``rate_cards.kept`` each fail these tests. A usage running total
is the one place that rounds half-up (``exact_amounts.carry``): its ties are drawn too.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from billing.catalog.pricing import MAX_PERCENTAGE, partner_price
from billing.catalog.rate_cards import KEPT_DECIMALS, RATE_DECIMALS, kept
from billing.core import money
from billing.core.periods import prorate, round_half_even
from billing.usage.exact_amounts import FINE, HALF, carry, charge_fine
from models.enums import MarginKind

# Currencies by their minor-unit exponent: none (JPY), two (USD), three (KWD).
CURRENCIES = {0: ["JPY", "KRW", "CLP"], 2: ["USD", "BRL", "EUR"], 3: ["KWD", "BHD", "TND"]}
currencies = st.sampled_from([code for codes in CURRENCIES.values() for code in codes])
# n of the tie n + 1/2, as many even as odd, both signs.
halves_below = st.integers(min_value=-(10**12), max_value=10**12)


def to_even(n: int) -> int:
    """n + 1/2 rounded half-even: n when n is even, n + 1 when it is odd."""
    return n + n % 2


def test_the_oracle_itself() -> None:
    # 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -0.5 -> 0, -1.5 -> -2, -2.5 -> -2
    assert [to_even(n) for n in (0, 1, 2, -1, -2, -3)] == [0, 2, 2, 0, -2, -2]


@given(n=halves_below, currency=currencies)
def test_round_to_minor_takes_a_tie_to_the_even_minor_unit(n: int, currency: str) -> None:
    digits = money.exponent(currency)
    assert digits in CURRENCIES and currency in CURRENCIES[digits]
    # (n + 1/2) minor units = (2n + 1) x 5 / 10^(digits + 1) major units, written exactly.
    value = Decimal((2 * n + 1) * 5).scaleb(-(digits + 1))
    assert Fraction(value) * 10**digits == Fraction(2 * n + 1, 2)
    assert money.round_to_minor(value, currency) == to_even(n)


@given(n=halves_below, scale=st.integers(1, 10**6))
def test_round_half_even_takes_a_tie_to_the_even_integer(n: int, scale: int) -> None:
    assert round_half_even(Fraction((2 * n + 1) * scale, 2 * scale)) == to_even(n)


@given(
    n=st.integers(min_value=-(10**9), max_value=10**9),
    k=st.integers(1, 16),
    left=st.integers(1, 10**6),
)
def test_proration_of_a_tie_takes_the_even_minor_unit(n: int, k: int, left: int) -> None:
    # amount (2n + 1) k with ``left`` seconds left of 2 k x left: (2n + 1) k x left / (2 k left)
    # = n + 1/2. What is left is 1 / (2k) of the period: off-centre whenever k > 1.
    amount, total = (2 * n + 1) * k, 2 * k * left
    start = datetime(2026, 1, 31, tzinfo=UTC)
    end = start + timedelta(seconds=total)
    assert prorate(amount, start, end, end - timedelta(seconds=left)) == to_even(n)


@given(
    odd_price=st.integers(0, 10**9),
    twos=st.integers(0, 4),
    fives=st.integers(0, 4),
    data=st.data(),
)
def test_a_percentage_margin_of_half_a_minor_unit_goes_to_even(
    odd_price: int, twos: int, fives: int, data: st.DataObject
) -> None:
    # price = o1 x s and percentage = 50 o2 / s with o1, o2 odd and s = 2^twos 5^fives (so the
    # percentage has at most 4 decimals): margin = o1 o2 s 50 / (s 100) = o1 o2 / 2, a tie.
    s = 2**twos * 5**fives
    o1 = 2 * odd_price + 1
    o2 = 2 * data.draw(st.integers(0, (int(MAX_PERCENTAGE) * s // 50 - 1) // 2), label="o2 // 2") + 1
    places = max(twos, fives)
    percentage = Decimal(50 * o2 * 2 ** (places - twos) * 5 ** (places - fives)).scaleb(-places)
    assert Fraction(percentage) == Fraction(50 * o2, s) and 0 <= percentage <= MAX_PERCENTAGE
    price = o1 * s
    n = (o1 * o2 - 1) // 2  # the margin is n + 1/2
    currency = data.draw(currencies, label="currency")
    charged = partner_price(money.Money(price, currency), MarginKind.PERCENTAGE, percentage)
    assert charged == money.Money(price + to_even(n), currency)


@given(n=st.integers(0, 10**12))
def test_a_partner_rate_half_way_past_ten_decimals_goes_to_even(n: int) -> None:
    # (n + 1/2) x 10^-10: a platform rate with a margin can have more decimals than a rate is kept with.
    rate = Fraction(2 * n + 1, 2 * 10**KEPT_DECIMALS)
    assert kept(rate) == Fraction(to_even(n), 10**KEPT_DECIMALS)


@given(
    odd=st.integers(0, 10**6),
    twos=st.integers(0, 3),
    fives=st.integers(0, 3),
    currency=currencies,
    before=st.integers(-HALF, HALF - 1),
)
def test_a_usage_running_total_half_way_between_minor_units_moves_up(
    odd: int, twos: int, fives: int, currency: str, before: int
) -> None:
    # count = 2^twos 5^fives messages at (2 odd + 1) / (2 x 10^digits x count) major units each:
    # count x rate = (odd + 1/2) minor units, a rate a card can hold (at most 8 decimals). Added to a
    # remainder of 0 it moves odd + 1 (half-up, the rule for a running total: any split of the same events
    # moves the same); added to any other remainder, the whole units the exact running total crossed.
    digits = money.exponent(currency)
    count = 2**twos * 5**fives
    rate = Fraction(2 * odd + 1, 2 * 10**digits * count)
    assert (rate * 10**RATE_DECIMALS).denominator == 1
    fine = charge_fine(count, rate, currency)
    assert fine == odd * FINE + HALF
    assert carry(0, fine) == (odd + 1, -HALF)
    moved, after = carry(before, fine)
    assert Fraction(before + fine - after, FINE) == moved  # what moved is what the remainder lost
    assert moved == math.floor(Fraction(before + fine, FINE) + Fraction(1, 2))
