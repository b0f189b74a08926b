"""The package optimiser: Stammer's examples, its tie-breaks, exact seats, and Hypothesis against brute
force (small cases) and against a plain DP without the best-rate fill (large shortfalls)."""

from __future__ import annotations

import itertools
import sys
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.auto_billing.package_optimizer import (
    MAX_TABLE,
    Basket,
    CatalogueTooFine,
    NoExactCombination,
    Offer,
    cheapest_cover,
    cheapest_exact,
)

CREDITS_2000 = Offer(1, 2000, 1000)  # 2,000 credits for $10
CREDITS_5000 = Offer(2, 5000, 2000)  # 5,000 credits for $20


def bought(basket: Basket) -> dict[int, int]:
    return {offer.key: count for offer, count in basket.lines}


def key(basket: Basket, shortfall: int) -> tuple[int, int, int]:
    return basket.price, basket.surplus(shortfall), basket.packages


def test_stammer_pool_9000_plan_10000_buys_one_package_of_2000_for_10() -> None:
    basket = cheapest_cover([CREDITS_2000], 10_000 - 9_000)
    assert bought(basket) == {1: 1} and basket.price == 1000 and basket.quantity == 2000


def test_a_shortfall_of_4500_buys_one_5000_for_20_not_three_2000() -> None:
    basket = cheapest_cover([CREDITS_2000, CREDITS_5000], 4500)
    assert bought(basket) == {2: 1} and basket.price == 2000
    # "The first package that fits" would pick 2,000s; greedy by rate alone fails elsewhere:
    assert bought(cheapest_cover([CREDITS_2000, CREDITS_5000], 6000)) == {1: 3}  # $30 < 2 x 5,000 for $40


def test_seats_have_5_need_10_buy_exactly_5() -> None:
    three_for_6, two_for_10 = Offer(7, 3, 600), Offer(8, 2, 1000)
    exact = cheapest_exact([three_for_6, two_for_10], 10 - 5)
    assert exact.quantity == 5 and bought(exact) == {7: 1, 8: 1} and exact.price == 1600
    assert cheapest_cover([three_for_6, two_for_10], 5).quantity == 6  # a cover would buy a seat too many


def test_no_exact_combination_is_a_typed_error() -> None:
    with pytest.raises(NoExactCombination) as refused:
        cheapest_exact([Offer(1, 2, 100), Offer(2, 4, 150)], 5)
    assert refused.value.shortfall == 5 and refused.value.quantities == [2, 4]
    assert "exactly 5" in str(refused.value)


def test_ties_go_to_the_least_surplus_then_the_fewest_packages() -> None:
    assert bought(cheapest_cover([Offer(1, 4, 1000), Offer(2, 3, 1000)], 3)) == {2: 1}  # surplus 0, not 1
    assert bought(cheapest_cover([Offer(1, 1, 100), Offer(2, 2, 200)], 2)) == {2: 1}  # one package, not two
    assert bought(cheapest_cover([Offer(1, 2, 100), Offer(2, 2, 90)], 3)) == {2: 2}  # the cheaper of a size


def test_nothing_short_buys_nothing_and_bad_offers_are_refused() -> None:
    assert cheapest_cover([CREDITS_2000], 0) == Basket()
    assert cheapest_exact([CREDITS_2000], -5) == Basket()
    with pytest.raises(ValueError):
        cheapest_cover([Offer(1, 0, 100)], 10)
    with pytest.raises(ValueError):
        cheapest_cover([], 10)


def test_with_nothing_short_even_an_empty_or_bad_catalogue_buys_nothing() -> None:
    for solve in (cheapest_cover, cheapest_exact):
        assert solve([], 0) == Basket() and solve([Offer(1, 0, 0)], 0) == Basket()
    assert Basket().surplus(0) == 0 and Basket().surplus(-5) == 0
    assert cheapest_cover([CREDITS_2000], 1500).surplus(-5) == 2000  # what is bought beyond no shortfall at all


def test_refusals_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match=r"^there is nothing to buy$"):
        cheapest_cover([], 10)
    free = Offer(1, 100, 0)
    with pytest.raises(ValueError) as refused:
        cheapest_cover([CREDITS_2000, free], 10)
    assert str(refused.value) == f"an offer needs a positive quantity and price: {free}"
    with pytest.raises(NoExactCombination) as none:
        cheapest_exact([], 7)
    assert (none.value.shortfall, none.value.quantities) == (7, [])
    assert str(none.value) == "no combination of packages of none makes exactly 7"
    with pytest.raises(NoExactCombination) as odd:
        cheapest_exact([Offer(1, 4, 150), Offer(2, 2, 100), Offer(3, 4, 120)], 5)
    assert (odd.value.shortfall, odd.value.quantities) == (5, [2, 4])
    assert str(odd.value) == "no combination of packages of 2, 4 makes exactly 5"


def test_a_basket_lists_the_largest_packages_first() -> None:
    basket = cheapest_exact([Offer(1, 2, 100), Offer(2, 5, 240)], 7)
    assert [(offer.key, count) for offer, count in basket.lines] == [(2, 1), (1, 1)]
    basket = cheapest_exact([Offer(2, 5, 240), Offer(1, 2, 100)], 7)
    assert [(offer.key, count) for offer, count in basket.lines] == [(2, 1), (1, 1)]


def test_sizes_sharing_a_divisor_can_still_miss_an_exact_shortfall() -> None:
    with pytest.raises(NoExactCombination) as refused:
        cheapest_exact([Offer(1, 4, 100), Offer(2, 6, 150)], 2)
    assert (refused.value.shortfall, refused.value.quantities) == (2, [4, 6])
    assert str(refused.value) == "no combination of packages of 4, 6 makes exactly 2"


def test_the_table_may_have_exactly_max_table_cells_and_no_more() -> None:
    # The best rate is 2,000 for 1: fewer than 2,000 x 1,999 units of shortfall leave nothing to fill
    # up front, so an exact shortfall of s needs a table of s + 1 cells.
    offers = [Offer(1, 2000, 1), Offer(2, 1999, 1000)]
    basket = cheapest_exact(offers, MAX_TABLE - 1)
    assert bought(basket) == {1: (MAX_TABLE - 2000) // 2000, 2: 1} and basket.quantity == MAX_TABLE - 1
    with pytest.raises(CatalogueTooFine) as refused:
        cheapest_exact(offers, MAX_TABLE)
    assert str(refused.value) == f"package sizes 2000, 1999 need a table of {MAX_TABLE + 1} cells"


def test_huge_shortfalls_are_fast_and_exact() -> None:
    # Seconds, not the hours a table as large as the shortfall would take. Under a tracer (coverage in
    # `make test`) this Python loop runs about 4 times slower: the budget grows with it.
    budget = 5 * (4 if sys.gettrace() else 1)
    started = time.monotonic()
    basket = cheapest_cover([Offer(1, 997, 1000), Offer(2, 1009, 1010), Offer(3, 13, 14)], 10**12)
    assert time.monotonic() - started < budget
    assert basket.quantity >= 10**12 and basket.surplus(10**12) < 1009
    assert basket.price <= -(-(10**12) // 1009) * 1010  # never worse than the best rate alone
    with pytest.raises(CatalogueTooFine):
        cheapest_cover([Offer(1, 100_003, 100_004), Offer(2, 99_991, 100_000)], 10**9)
    assert MAX_TABLE >= 1_000_000


# ---------------------------------------------------------------- against slow references

offer_lists = st.lists(
    st.tuples(st.integers(1, 10), st.integers(1, 60)), min_size=1, max_size=3, unique_by=lambda t: t
).map(lambda pairs: [Offer(i + 1, q, p) for i, (q, p) in enumerate(pairs)])


def brute_force(offers: list[Offer], shortfall: int, *, exact: bool) -> tuple[int, int, int] | None:
    """Every multiset small enough to matter: an optimal cover holds at most shortfall // q + 1 of each."""
    best = None
    for counts in itertools.product(*(range(shortfall // o.quantity + 2) for o in offers)):
        total = sum(c * o.quantity for c, o in zip(counts, offers, strict=True))
        if total < shortfall or (exact and total != shortfall):
            continue
        candidate = (sum(c * o.price for c, o in zip(counts, offers, strict=True)), total - shortfall, sum(counts))
        best = candidate if best is None else min(best, candidate)
    return best


@settings(max_examples=300, deadline=None)
@given(offer_lists, st.integers(1, 30))
def test_the_cheapest_cover_matches_brute_force(offers: list[Offer], shortfall: int) -> None:
    assert key(cheapest_cover(offers, shortfall), shortfall) == brute_force(offers, shortfall, exact=False)


@settings(max_examples=300, deadline=None)
@given(offer_lists, st.integers(1, 30))
def test_the_cheapest_exact_combination_matches_brute_force(offers: list[Offer], shortfall: int) -> None:
    expected = brute_force(offers, shortfall, exact=True)
    if expected is None:
        with pytest.raises(NoExactCombination):
            cheapest_exact(offers, shortfall)
    else:
        basket = cheapest_exact(offers, shortfall)
        assert basket.quantity == shortfall and key(basket, shortfall) == expected


def plain_dp(offers: list[Offer], shortfall: int, *, exact: bool) -> tuple[int, int, int] | None:
    """The textbook DP over every total up to shortfall + the largest package: no gcd, no fill."""
    top = shortfall if exact else shortfall + max(o.quantity for o in offers) - 1
    best: list[tuple[int, int] | None] = [(0, 0)] + [None] * top
    for total in range(1, top + 1):
        options = [
            (best[total - o.quantity][0] + o.price, best[total - o.quantity][1] + 1)
            for o in offers
            if o.quantity <= total and best[total - o.quantity] is not None
        ]
        best[total] = min(options) if options else None
    window = [shortfall] if exact else range(shortfall, top + 1)
    found = [(best[t][0], t - shortfall, best[t][1]) for t in window if best[t] is not None]
    return min(found) if found else None


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 40), st.integers(1, 500)), min_size=1, max_size=4, unique_by=lambda t: t),
    st.integers(1, 4000),
)
def test_filling_with_the_best_rate_first_loses_nothing(pairs: list[tuple[int, int]], shortfall: int) -> None:
    offers = [Offer(i + 1, q * 10, p) for i, (q, p) in enumerate(pairs)]  # a common factor, as real sizes have
    assert key(cheapest_cover(offers, shortfall), shortfall) == plain_dp(offers, shortfall, exact=False)
    expected = plain_dp(offers, shortfall, exact=True)
    if expected is None:
        with pytest.raises(NoExactCombination):
            cheapest_exact(offers, shortfall)
    else:
        assert key(cheapest_exact(offers, shortfall), shortfall) == expected
