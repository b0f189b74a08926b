"""WhatsApp rate cards: the platform's price per delivered message by country and category, and
each partner's margin over it.

The platform keeps one card per currency: a cell per (country, category), "*" standing for every
country without a cell of its own. A partner's margin is a bulk percentage, a bulk amount added to
every message, or a margin on one cell, which overrides the bulk one. Rates keep their decimals
(WhatsApp prices are fractions of a cent): the platform's have at most 8 decimals, a partner's (with
its margin) at most 10, rounded once, half-even, when the card is built. Usage charges are kept exact and
a wallet's running total is rounded once (``billing.usage.exact_amounts``).

Ingestion reads cards from a per-process cache keyed by each card's ``version``, which every change
moves, so a change is seen by the next batch in every process.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

from tortoise.transactions import in_transaction

from billing.catalog.calling_codes import COUNTRIES
from billing.catalog.pricing import MAX_PERCENTAGE
from billing.core import audit, clock, sql, tenancy
from billing.core.errors import BillingError, ErrorCode
from billing.core.money import check_currency, parse_decimal, plain_decimal
from billing.core.tenancy import Viewer
from billing.tenants import hierarchy
from models.catalog import PlatformRate, RateCard, RateCardCell
from models.enums import MarginKind, MessageCategory, Permission, TierScope

REST_OF_WORLD = "*"
MAX_RATE = Decimal(1_000_000)
RATE_DECIMALS = 8


KEPT_DECIMALS = 10  # a partner's rate (the platform's with a margin) is kept to 10 decimals


def kept(rate: Fraction) -> Fraction:
    """A rate with at most :data:`KEPT_DECIMALS` decimals of the major unit: rounded once, half-even, if
    a margin gave it more (8 decimals times a percentage with 8 can have 18). Usage amounts are then
    exact in ``billing.usage.exact_amounts``' fine units."""
    scale = 10**KEPT_DECIMALS
    scaled = rate * scale
    if scaled.denominator == 1:
        return rate
    quotient, remainder = divmod(scaled.numerator, scaled.denominator)
    twice = 2 * remainder
    if twice > scaled.denominator or (twice == scaled.denominator and quotient % 2 == 1):
        quotient += 1
    return Fraction(quotient, scale)


def check_country(country: str, field: str = "country") -> str:
    code = country.strip().upper()
    if code != REST_OF_WORLD and code not in COUNTRIES:
        raise BillingError(ErrorCode.INVALID_INPUT, f"unknown country {country!r} (ISO 3166 alpha-2 or *)", field=field)
    return code


def check_rate(text: str, field: str = "price") -> Decimal:
    value = parse_decimal(text, field)
    if value < 0 or value > MAX_RATE or value != round(value, RATE_DECIMALS):
        raise BillingError(
            ErrorCode.INVALID_AMOUNT,
            f"a rate lies between 0 and {MAX_RATE} with at most {RATE_DECIMALS} decimals",
            field=field,
        )
    return value


def _check_margin(kind: MarginKind, text: str) -> Decimal:
    value = check_rate(text, "value")
    if kind is MarginKind.PERCENTAGE and value > MAX_PERCENTAGE:
        raise BillingError(ErrorCode.INVALID_AMOUNT, "a margin percentage lies between 0 and 1000", field="value")
    return value


def with_margin(rate: Fraction, kind: MarginKind | None, value: Decimal | None) -> Fraction:
    if kind is None or value is None:
        return rate
    if kind is MarginKind.PERCENTAGE:
        return rate * (1 + Fraction(value) / 100)
    return rate + Fraction(value)


# --- editing -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TierInput:
    """Messages from the ``from_message``-th of a month on cost ``price`` (until the next tier)."""

    from_message: int
    price: str


@dataclass(frozen=True, slots=True)
class CellInput:
    country: str
    category: MessageCategory
    price: str  # messages 1 to the first tier's from_message - 1 (0: a free quota)
    tiers: tuple[TierInput, ...] = ()


MAX_TIERS = 20
MAX_POSITION = 10**12


def _check_tiers(tiers: tuple[TierInput, ...], field: str) -> list[dict[str, str | int]]:
    """Tiers as stored: ascending, each from a later message than the one before (the 2nd at the least)."""
    if len(tiers) > MAX_TIERS:
        raise BillingError(ErrorCode.INVALID_INPUT, f"at most {MAX_TIERS} tiers", field=field)
    checked: list[dict[str, str | int]] = []
    after = 1
    for index, tier in enumerate(tiers):
        if not after < tier.from_message <= MAX_POSITION:
            raise BillingError(
                ErrorCode.INVALID_INPUT,
                f"each tier starts after the one before it (a message from {after + 1} to {MAX_POSITION})",
                field=f"{field}[{index}].fromMessage",
            )
        price = check_rate(tier.price, f"{field}[{index}].price")
        checked.append({"from": tier.from_message, "price": plain_decimal(price)})
        after = tier.from_message
    return checked


async def _card(partner_id: int | None, currency: str) -> RateCard:
    card = await RateCard.filter(partner_id=partner_id, currency=currency).first()
    if card is None:
        await sql.execute(
            "INSERT INTO rate_card (created_at, partner_id, name, currency, version) VALUES ($1, $2, $3, $4, 1)"
            " ON CONFLICT DO NOTHING",
            clock.now(),
            partner_id,
            "platform" if partner_id is None else f"partner {partner_id}",
            currency,
        )
        card = await RateCard.filter(partner_id=partner_id, currency=currency).order_by("id").first()
        assert card is not None
    return card


async def _upsert_price(
    card: RateCard,
    country: str,
    category: MessageCategory,
    price: Decimal,
    effective_from: datetime,
    tiers: list[dict[str, str | int]],
) -> None:
    await sql.execute(
        "INSERT INTO platform_rate (created_at, rate_card_id, country, category, price, effective_from, tiers)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (rate_card_id, country, category, effective_from)"
        " DO UPDATE SET price = excluded.price, tiers = excluded.tiers",
        clock.now(),
        card.id,
        country,
        category.value,
        price if sql.is_postgres() else str(price),
        effective_from,
        json.dumps(tiers),
    )


async def _upsert_cell(
    card: RateCard, country: str, category: MessageCategory, value: Decimal, kind: str | None
) -> None:
    await sql.execute(
        "INSERT INTO rate_card_cell (created_at, rate_card_id, country, category, price, margin_kind)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (rate_card_id, country, category) DO UPDATE"
        " SET price = excluded.price, margin_kind = excluded.margin_kind",
        clock.now(),
        card.id,
        country,
        category.value,
        value if sql.is_postgres() else str(value),
        kind,
    )


async def _bump(card: RateCard) -> None:
    await sql.execute("UPDATE rate_card SET version = version + 1 WHERE id = $1", card.id)


async def set_platform_rates(
    viewer: Viewer,
    *,
    currency: str,
    cells: list[CellInput],
    effective_from: datetime | None = None,
    tier_scope: TierScope | None = None,
) -> RateCard:
    """The platform's price per delivered message for each given (country, category), in ``currency``,
    from ``effective_from`` (now when not given; never in the past: an event already charged is never
    priced again, and a late one must be priced as those were); other cells are left as they are. A usage
    event is priced by the price in force when it occurred. A cell's ``tiers`` make its price fall as a
    calendar month's messages grow, counted per ``tier_scope`` (each partner's, the default, or each
    project's); a first price of 0 is a free quota."""
    viewer.require(Permission.MANAGE_CATALOG)
    code = check_currency(currency)
    now = clock.now()
    if effective_from is not None and effective_from.tzinfo is None:
        raise BillingError(ErrorCode.INVALID_INPUT, "effectiveFrom needs a time zone", field="effectiveFrom")
    starts = now if effective_from is None else effective_from.astimezone(UTC)
    if starts < now:
        raise BillingError(ErrorCode.INVALID_INPUT, "a price takes effect now or later", field="effectiveFrom")
    if not 1 <= len(cells) <= 2000:
        raise BillingError(ErrorCode.INVALID_INPUT, "give 1 to 2000 cells", field="cells")
    # A refused cell is named by its place in the input, as sent: cells[3].price.
    checked = [
        (
            check_country(c.country, f"cells[{i}].country"),
            c.category,
            check_rate(c.price, f"cells[{i}].price"),
            _check_tiers(c.tiers, f"cells[{i}].tiers"),
        )
        for i, c in enumerate(cells)
    ]
    async with in_transaction("default"):
        card = await _card(None, code)
        for country, category, price, tiers in checked:
            await _upsert_price(card, country, category, price, starts, tiers)
        if tier_scope is not None:
            await sql.execute("UPDATE rate_card SET tier_scope = $1 WHERE id = $2", tier_scope.value, card.id)
        await _bump(card)
        await audit.record(
            actor=viewer.actor,
            action="rate_card.set",
            target_type="RateCard",
            target_id=card.id,
            partner_id=None,
            after={
                "currency": code,
                "effective_from": starts.isoformat(),
                "tier_scope": tier_scope,
                "cells": [[c, k.value, str(p), t] for c, k, p, t in checked],
            },
        )
    return await RateCard.get(id=card.id)


async def set_partner_margin(
    viewer: Viewer,
    *,
    partner_id: int,
    kind: MarginKind | None,
    value: str | None,
    country: str | None = None,
    category: MessageCategory | None = None,
) -> RateCard:
    """A partner's margin over the platform's rates: in bulk (no country and category) or on one
    cell (both). ``kind`` None removes that margin."""
    viewer.require(Permission.MANAGE_PLANS)
    partner = await tenancy.get_scoped(tenancy.partners(viewer), partner_id, "partner")
    if (country is None) != (category is None):
        raise BillingError(ErrorCode.INVALID_INPUT, "a cell margin names both country and category", field="country")
    amount = None
    if kind is not None:
        if value is None:
            raise BillingError(ErrorCode.INVALID_INPUT, "a margin needs a value", field="value")
        amount = _check_margin(kind, value)
    cell = None if country is None else check_country(country)
    async with in_transaction("default"):
        card = await _card(partner.id, partner.default_currency)
        before = _audited_margin(card.margin_kind, card.margin_value, card.currency)
        if cell is None:
            await sql.execute(
                "UPDATE rate_card SET margin_kind = $1, margin_value = $2 WHERE id = $3",
                kind.value if kind else None,
                (amount if sql.is_postgres() else str(amount)) if amount is not None else None,
                card.id,
            )
        elif kind is None:
            assert category is not None
            await sql.execute(
                "DELETE FROM rate_card_cell WHERE rate_card_id = $1 AND country = $2 AND category = $3",
                card.id,
                cell,
                category.value,
            )
        else:
            assert category is not None and amount is not None
            await _upsert_cell(card, cell, category, amount, kind.value)
        await _bump(card)
        await audit.record(
            actor=viewer.actor,
            action="rate_card.margin",
            target_type="RateCard",
            target_id=card.id,
            partner_id=partner.id,
            before=before,
            after={**_audited_margin(kind, amount, card.currency), "country": cell, "category": category},
        )
    return await RateCard.get(id=card.id)


def _audited_margin(kind: MarginKind | None, value: Decimal | None, currency: str) -> dict[str, Any]:
    """A rate margin as the API's RateMargin shows it, with the card's currency when it is an amount."""
    return {
        "kind": kind,
        "value": None if value is None else plain_decimal(Decimal(str(value))),
        "currency": currency if kind is MarginKind.FIXED else None,
    }


# --- reading -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rate:
    """One cell's rates for one partner, in major units per message."""

    platform: Fraction  # what the partner pays: the platform's rate, or its parent's below another partner
    partner: Fraction  # what its clients pay
    # Resellers of resellers: what each level of the chain pays, from the platform's direct partner down
    # to this one (the last is ``platform``); empty for a direct partner and for the platform's own card.
    chain: tuple[Fraction, ...] = ()

    def costs(self) -> tuple[Fraction, ...]:
        """What each level pays its parent, top first: one rate for a direct partner."""
        return self.chain or (self.platform,)


@dataclass(frozen=True, slots=True)
class Price:
    """A cell's two rates from ``since`` (None: its earliest price, which covers all time before it):
    ``rate`` for a month's first messages, then each of ``tiers`` (from the message it names on)."""

    since: datetime | None
    rate: Rate
    tiers: tuple[tuple[int, Rate], ...] = ()

    def spans(self, first: int, count: int) -> list[tuple[int, Rate]]:
        """How many of ``count`` messages, the first being the month's ``first``-th, each rate prices."""
        bounds = [(1, self.rate), *self.tiers]
        end = first + count
        found = []
        for index, (start, rate) in enumerate(bounds):
            stop = bounds[index + 1][0] if index + 1 < len(bounds) else end
            overlap = min(end, stop) - max(first, start)
            if overlap > 0:
                found.append((overlap, rate))
        return found


def _index(found: tuple[Price, ...], at: datetime) -> int:
    """Which of a cell's prices is in force at ``at``: the last to start at or before it (the first if none)."""
    return bisect_right([price.since for price in found[1:] if price.since is not None], at)


@dataclass(frozen=True, slots=True)
class RateTable:
    """Both rates of every cell of one partner's currency, each cell's prices in the order they start."""

    currency: str
    prices: dict[tuple[str, str], tuple[Price, ...]]
    tier_scope: TierScope = TierScope.PARTNER

    def price(self, country: str | None, category: str, at: datetime) -> Price | None:
        """The cell's price in force at ``at`` ("*" when the country has no cell of its own)."""
        found = self.prices.get((country, category)) if country is not None else None
        if found is None:
            found = self.prices.get((REST_OF_WORLD, category))
        if found is None:
            return None
        return found[0] if len(found) == 1 else found[_index(found, at)]

    def rate(self, country: str | None, category: str, at: datetime) -> Rate | None:
        """The rates of a month's first messages in the cell's price in force at ``at``."""
        price = self.price(country, category, at)
        return price.rate if price is not None else None

    def cells_at(self, at: datetime) -> dict[tuple[str, str], Price]:
        """Each cell's price in force at ``at``."""
        return {key: found[_index(found, at)] for key, found in self.prices.items()}

    def changes(self) -> list[datetime]:
        """Every moment a cell's price changes, oldest first (past and scheduled)."""
        return sorted({price.since for found in self.prices.values() for price in found if price.since is not None})


@dataclass(frozen=True, slots=True)
class CardRef:
    """One card: the platform's (no partner) or a partner's, in one currency."""

    partner_id: int | None
    currency: str


async def card_for(viewer: Viewer, *, partner_id: int | None, currency: str | None) -> CardRef:
    """The card the viewer asks for: a partner's in its currency (the viewer's own when none is
    named), or, for the platform naming no partner, the platform's in ``currency``."""
    if partner_id is None and viewer.is_platform:
        if currency is None:
            raise BillingError(ErrorCode.INVALID_INPUT, "name the currency", field="currency")
        return CardRef(None, check_currency(currency))
    target = partner_id if partner_id is not None else viewer.partner_id
    if target is None:
        raise BillingError(ErrorCode.INVALID_INPUT, "name the partner", field="partnerId")
    partner = await tenancy.get_scoped(tenancy.partners(viewer), target, "partner")
    return CardRef(partner.id, partner.default_currency)


@dataclass(frozen=True, slots=True)
class Margin:
    """A partner's margin over the platform's rates: the bulk one (no country, no category) or one
    cell's, which wins over it."""

    kind: MarginKind
    value: Decimal  # a percentage, or an amount per message in major units
    country: str | None = None
    category: MessageCategory | None = None


async def margins(partner_id: int, currency: str) -> list[Margin]:
    """The partner's margins in ``currency``, as :func:`set_partner_margin` wrote them: the bulk one
    first, then one per cell by country and category."""
    card = await RateCard.filter(partner_id=partner_id, currency=currency).first()
    if card is None:
        return []
    found = []
    if card.margin_kind is not None and card.margin_value is not None:
        found.append(Margin(card.margin_kind, Decimal(card.margin_value)))
    for cell in await RateCardCell.filter(rate_card_id=card.id).order_by("country", "category"):
        if cell.margin_kind is not None:
            found.append(Margin(cell.margin_kind, Decimal(cell.price), cell.country, cell.category))
    return found


_cache: dict[tuple[int | None, str], tuple[tuple[int, int], RateTable]] = {}


def forget_cached() -> None:
    """Drop every cached card: for a database emptied under a running process (tests), where a new card
    can have an old one's id and version."""
    _cache.clear()


# The cards a partner's rates are built from: its own and those of the partners it resells below (at most
# two, WHITEBILL_MAX_PARTNER_LEVELS being at most 3), for a partner row named ``pa``. Each card's stamp is its
# id and its version, which only grows: the sum of the stamps moves whenever any of the cards changes, so one
# number tells a cached card is stale. (The id keeps a stamp from coming back where a database is emptied
# and filled again under a running process, as the tests do.)
CARD_STAMP = "(r.id * 4294967296 + r.version)"
CHAIN_CARDS = "r.partner_id IN (pa.id, pa.parent_id, (SELECT gp.parent_id FROM partner gp WHERE gp.id = pa.parent_id))"


async def versions(partner_id: int | None, currency: str) -> tuple[int, int]:
    """The platform card's stamp and the sum of the stamps of the partner's cards down its chain (CARD_STAMP)."""
    rows = await sql.fetch(
        f"SELECT (SELECT {CARD_STAMP} FROM rate_card r WHERE r.partner_id IS NULL AND r.currency = $1) AS platform,"  # noqa: S608 (constants)
        f" (SELECT sum{CARD_STAMP} FROM partner pa, rate_card r WHERE pa.id = $2 AND r.currency = $1 AND {CHAIN_CARDS})"
        " AS own",
        currency,
        partner_id or 0,
    )
    return int(rows[0]["platform"] or 0), int(rows[0]["own"] or 0)


async def table(partner_id: int | None, currency: str, known: tuple[int, int] | None = None) -> RateTable:
    """The partner's rates in ``currency`` (None: the platform's alone); ``known`` versions (read
    with other data) save a query."""
    current = known if known is not None else await versions(partner_id, currency)
    cached = _cache.get((partner_id, currency))
    if cached is not None and cached[0] == current:
        return cached[1]
    built = await _build(partner_id, currency)
    _cache[(partner_id, currency)] = (current, built)
    return built


@dataclass(frozen=True, slots=True)
class _Level:
    """One partner's card in a chain: its bulk margin and its margins per cell."""

    card: RateCard | None
    cells: dict[tuple[str, str], RateCardCell]

    def on(self, key: tuple[str, str], rate: Fraction) -> Fraction:
        """``rate`` (its parent's) with this level's margin for the cell, rounded once (:func:`kept`)."""
        override = self.cells.get(key)
        if override is not None:
            return kept(with_margin(rate, override.margin_kind, Decimal(override.price)))
        if self.card is not None:
            value = None if self.card.margin_value is None else Decimal(self.card.margin_value)
            return kept(with_margin(rate, self.card.margin_kind, value))
        return rate


async def _level(partner_id: int, currency: str) -> _Level:
    card = await RateCard.filter(partner_id=partner_id, currency=currency).first()
    cells = {}
    if card is not None:
        cells = {(c.country, c.category.value): c for c in await RateCardCell.filter(rate_card_id=card.id)}
    return _Level(card, cells)


async def _build(partner_id: int | None, currency: str) -> RateTable:
    platform = await RateCard.filter(partner_id=None, currency=currency).first()
    if platform is None:
        return RateTable(currency, {})
    # Each level's rate is its parent's with its own margin, rounded once per level.
    levels = [await _level(level, currency) for level in await hierarchy.ancestry(partner_id)] if partner_id else []
    timelines: dict[tuple[str, str], list[Price]] = {}

    def rates(key: tuple[str, str], price: object) -> Rate:
        base = Fraction(Decimal(str(price)))
        paid = [base]  # what each level pays, then what the last level's clients pay
        for level in levels:
            paid.append(level.on(key, paid[-1]))
        if len(paid) <= 2:
            return Rate(base, paid[-1])
        return Rate(paid[-2], paid[-1], tuple(paid[:-1]))

    for row in await PlatformRate.filter(rate_card_id=platform.id).order_by("effective_from", "id"):
        key = (row.country, row.category.value)
        tiers = tuple((int(tier["from"]), rates(key, tier["price"])) for tier in row.tiers or ())
        timeline = timelines.setdefault(key, [])
        # The earliest price covers all time before it: it starts at None.
        timeline.append(Price(row.effective_from if timeline else None, rates(key, row.price), tiers))
    prices = {key: tuple(found) for key, found in timelines.items()}
    return RateTable(currency, prices, platform.tier_scope)


def moment(at: datetime | None, field: str = "at") -> datetime | None:
    """A moment a caller names (None: now), in UTC; one without a time zone is refused."""
    if at is not None and at.tzinfo is None:
        raise BillingError(ErrorCode.INVALID_INPUT, f"{field} needs a time zone", field=field)
    return at.astimezone(UTC) if at is not None else None


def format_rate(rate: Fraction) -> str:
    """A rate as a decimal string when it has a finite one (up to 12 decimals), else rounded there."""
    value = Decimal(rate.numerator) / Decimal(rate.denominator)
    return format(value.quantize(Decimal(1).scaleb(-12)).normalize(), "f")
