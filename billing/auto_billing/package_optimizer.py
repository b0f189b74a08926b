"""Which packages to buy: the cheapest combination that covers a shortfall (flow C, auto-billing).

Pure functions over (quantity, price) offers; nothing here touches the database.

:func:`cheapest_cover` returns the multiset of packages whose quantities add up to at least the
shortfall at the lowest total price; among equally cheap ones, the least surplus; then the fewest
packages. :func:`cheapest_exact` (chatbot seats are bought exactly) returns the cheapest multiset
adding up to exactly the shortfall, then the fewest packages, and raises :class:`NoExactCombination`
when none exists. Both are exact, not greedy: 2,000 for $10 and 5,000 for $20 against a shortfall of
4,500 buys one 5,000 ($20), not three 2,000 ($30).

How, and why it is exact
------------------------
1. *Reduce by the gcd.* Every total is a multiple of ``g``, the gcd of the quantities, so work in
   units of ``g``: the target is ``ceil(shortfall / g)`` (for an exact cover the shortfall must be a
   multiple of ``g``). Surplus in real units is ``g * (total - target)`` plus a constant, so the
   order of candidates does not change.

2. *Window.* An optimal cover never totals ``target + max quantity`` or more: dropping any one
   package would still cover the target at a lower price. So only totals in
   ``[target, target + qmax - 1]`` are candidates.

3. *Fill with the best rate.* Let ``b`` be the package with the lowest price per unit (ties: the
   largest one), ``m`` its reduced quantity. Claim: some optimal basket has fewer than ``m``
   packages other than ``b``. Take an optimal basket with ``k >= m`` other packages in any order;
   among the ``k + 1`` prefix sums of their quantities, two are congruent modulo ``m`` (pigeonhole),
   so a non-empty run of them adds up to ``j * m``. Replace that run by ``j`` copies of ``b``: the
   total quantity (hence coverage and surplus) is unchanged, and the price does not rise because no
   package has a better rate than ``b``. Had it fallen, the basket was not optimal, so it is equal,
   which means every package of the run has ``b``'s rate and so (``b`` being the largest such) at
   most ``b``'s quantity: ``j`` is at most the run's length and the count does not rise either. The
   new basket is optimal with fewer other packages; repeat until fewer than ``m`` remain. Those
   weigh at most ``R = (m - 1) * qmax``, so this basket holds at least
   ``c = max(0, (target - R) // m)`` copies of ``b``. Fixing those ``c`` copies up front leaves a
   problem of size at most ``R + m`` whatever the shortfall, and any optimum of that residue plus
   ``c`` copies of ``b`` is an optimum of the whole (every objective shifts by a constant).

4. *Dynamic programming* over exact totals ``0 .. residue + qmax - 1`` (unbounded knapsack keeping
   the lowest ``(price, count)`` for each total), then the best candidate of the window.

Time and memory are ``O(n * (m + 1) * qmax)`` in reduced units, independent of the shortfall: a
catalogue of 2,000 and 5,000 credits reduces to 2 and 5. A catalogue so fine-grained that the table
would exceed :data:`MAX_TABLE` cells (coprime sizes of thousands of units each) is refused with
:class:`CatalogueTooFine` rather than answered approximately.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from functools import reduce
from math import gcd

MAX_TABLE = 2_000_000


@dataclass(frozen=True, slots=True)
class Offer:
    """A package on sale: ``quantity`` units for ``price`` minor units. ``key`` names it (its id)."""

    key: int
    quantity: int
    price: int


@dataclass(frozen=True, slots=True)
class Basket:
    """How many of each offer to buy, largest packages first."""

    lines: tuple[tuple[Offer, int], ...] = ()

    @property
    def quantity(self) -> int:
        return sum(offer.quantity * count for offer, count in self.lines)

    @property
    def price(self) -> int:
        return sum(offer.price * count for offer, count in self.lines)

    @property
    def packages(self) -> int:
        return sum(count for _, count in self.lines)

    def surplus(self, shortfall: int) -> int:
        return self.quantity - max(shortfall, 0)


class NoExactCombination(ValueError):
    """No multiset of the offers adds up to exactly the shortfall."""

    def __init__(self, shortfall: int, quantities: Iterable[int]) -> None:
        self.shortfall = shortfall
        self.quantities = sorted(set(quantities))
        sizes = ", ".join(str(q) for q in self.quantities) or "none"
        super().__init__(f"no combination of packages of {sizes} makes exactly {shortfall}")


class CatalogueTooFine(ValueError):
    """The package sizes are too unlike each other to optimise exactly within MAX_TABLE cells."""


def cheapest_cover(offers: Iterable[Offer], shortfall: int) -> Basket:
    """The cheapest packages adding up to at least ``shortfall``; ties: least surplus, fewest packages."""
    return _solve(list(offers), shortfall, exact=False)


def cheapest_exact(offers: Iterable[Offer], shortfall: int) -> Basket:
    """The cheapest packages adding up to exactly ``shortfall``; ties: fewest packages."""
    return _solve(list(offers), shortfall, exact=True)


def _usable(offers: list[Offer]) -> list[Offer]:
    """One offer per quantity (the cheapest; then the lowest key), largest first."""
    cheapest: dict[int, Offer] = {}
    for offer in offers:
        if offer.quantity <= 0 or offer.price <= 0:
            raise ValueError(f"an offer needs a positive quantity and price: {offer}")
        known = cheapest.get(offer.quantity)
        if known is None or (offer.price, offer.key) < (known.price, known.key):
            cheapest[offer.quantity] = offer
    return sorted(cheapest.values(), key=lambda o: (-o.quantity, o.price, o.key))


def _solve(offers: list[Offer], shortfall: int, *, exact: bool) -> Basket:
    if shortfall <= 0:
        return Basket()
    usable = _usable(offers)
    if not usable:
        if exact:
            raise NoExactCombination(shortfall, [])
        raise ValueError("there is nothing to buy")
    g = reduce(gcd, (o.quantity for o in usable))
    if exact and shortfall % g:
        raise NoExactCombination(shortfall, (o.quantity for o in usable))
    target = -(-shortfall // g)
    sizes = [o.quantity // g for o in usable]
    best = min(range(len(usable)), key=lambda i: (Fraction(usable[i].price, sizes[i]), -sizes[i], i))
    m, qmax = sizes[best], max(sizes)
    fill = max(0, (target - (m - 1) * qmax) // m)
    rest = target - fill * m
    top = rest if exact else rest + qmax - 1
    if top + 1 > MAX_TABLE:
        raise CatalogueTooFine(
            f"package sizes {', '.join(str(o.quantity) for o in usable)} need a table of {top + 1} cells"
        )
    counts = _knapsack([(sizes[i], usable[i].price) for i in range(len(usable))], rest, top, exact=exact)
    if counts is None:
        raise NoExactCombination(shortfall, (o.quantity for o in usable))
    counts[best] += fill
    return Basket(tuple((usable[i], c) for i, c in enumerate(counts) if c))


def _knapsack(items: list[tuple[int, int]], low: int, top: int, *, exact: bool) -> list[int] | None:
    """Counts of each (size, price) item reaching a total in ``[low, top]`` at the lowest (price,
    total, count); with ``exact``, the total is ``low``. None when no total in range is reachable."""
    unreachable = -1
    price = [0] + [unreachable] * top
    count = [0] * (top + 1)
    choice = [-1] * (top + 1)
    for total in range(1, top + 1):
        best_price, best_count, best_item = unreachable, 0, -1
        for index, (size, item_price) in enumerate(items):
            if size > total:
                continue
            before = price[total - size]
            if before == unreachable:
                continue
            candidate, candidate_count = before + item_price, count[total - size] + 1
            if best_item < 0 or (candidate, candidate_count) < (best_price, best_count):
                best_price, best_count, best_item = candidate, candidate_count, index
        if best_item >= 0:
            price[total], count[total], choice[total] = best_price, best_count, best_item
    totals = [low] if exact else range(low, top + 1)
    reachable = [t for t in totals if price[t] != unreachable]
    if not reachable:
        return None
    total = min(reachable, key=lambda t: (price[t], t, count[t]))
    counts = [0] * len(items)
    while total > 0:
        index = choice[total]
        counts[index] += 1
        total -= items[index][0]
    return counts
