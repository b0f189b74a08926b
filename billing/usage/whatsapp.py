"""Delivered-message usage (WhatsApp conversation charges): priced, charged and recorded in batches.

The platform's product reports what was delivered with a key holding REPORT_USAGE (never the
partner it bills). Each billable event charges its project's credit at the partner's rate and the
partner's centralised balance at the platform's rate, at usage time, in one transaction per batch.
Free messages (service; utility inside the 24-hour customer-service window; anything inside the
72-hour free entry window) are recorded and not charged. An event id seen before is acknowledged as
a duplicate and never charged again: the database's unique (partner, event id) decides, so two
senders racing with the same event charge it once.

When a project's credit runs out, the partner's ``usage_credit_policy`` decides: REFUSE (a hard
stop at zero) or ALLOW_TO_CREDIT_LIMIT (down to the project wallet's credit limit). The centralised
balance goes down to its own credit limit, which the platform sets. Refused events are not kept, so
the product may send them again once there is credit.

Every event row carries its two amounts and the id of the batch's posting, whose ledger entries on
the project's credit and on the centralised balance are the sums of those amounts: each event is
traceable to its charge, and reports add up to the ledger.

Subscribers to a wallet's balance hear of usage like of any posting (``billing.core.realtime``).

On PostgreSQL a batch is two statements in one transaction: one inserts the events (ON CONFLICT
DO NOTHING RETURNING tells the duplicates), debits every project and writes the posting and its
project entries; the second debits the centralised balance, the row every sender of a partner
shares, as late as possible, so its lock is held only until the commit. If a balance would go
beyond its limit, the transaction is undone and the batch goes through the careful path, which
locks the wallets and decides event by event (SQLite always takes that path).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

import asyncpg
import msgspec
from tortoise.exceptions import OperationalError
from tortoise.transactions import in_transaction

from billing.accounts import ledger, opening, top_ups
from billing.accounts.ledger import CausedBy, Leg
from billing.catalog import rate_cards
from billing.catalog.calling_codes import country_of
from billing.core import clock, config, observe, realtime, sql
from billing.core.errors import BillingError, ErrorCode
from billing.core.tenancy import Viewer
from billing.core.text import storable_line
from billing.usage import exact_amounts
from billing.usage.exact_amounts import FINE, HALF
from models.enums import ExternalAccount, LedgerCause, MessageCategory, OwnerKind, Permission, TierScope

MAX_BATCH = 1000
MAX_COUNT = 1_000_000
MAX_EVENT_ID = 128
CATEGORIES = frozenset(c.value for c in MessageCategory)


class Window(StrEnum):
    NONE = "NONE"
    CUSTOMER_SERVICE = "CUSTOMER_SERVICE"  # inside the 24-hour customer-service window
    FREE_ENTRY = "FREE_ENTRY"  # inside the 72-hour free entry point window


class Status(StrEnum):
    CHARGED = "CHARGED"
    FREE = "FREE"
    DUPLICATE = "DUPLICATE"
    REFUSED = "REFUSED"


class Reason(StrEnum):
    INSUFFICIENT_CREDIT = "INSUFFICIENT_CREDIT"  # the project's credit (and the partner's policy) do not cover it
    PARTNER_BALANCE_INSUFFICIENT = "PARTNER_BALANCE_INSUFFICIENT"  # the centralised balance is at its limit
    NO_RATE = "NO_RATE"  # the platform has no rate for this country and category
    PROJECT_NOT_FOUND = "PROJECT_NOT_FOUND"
    INVALID_EVENT = "INVALID_EVENT"


WINDOWS = frozenset(w.value for w in Window)


@dataclass(slots=True)
class UsageIn:
    """One report: ``count`` messages of ``category`` to one recipient (its number or its country)."""

    project_id: int
    event_id: str
    category: str
    occurred_at: datetime
    count: int = 1
    country: str | None = None
    recipient: str | None = None
    window: str = "NONE"


class UsageLike(Protocol):
    """What ingestion reads of an event: ``UsageIn``, or the HTTP endpoint's decoded body as it is."""

    event_id: str
    category: str
    occurred_at: datetime
    count: int
    country: str | None
    recipient: str | None
    window: str


class UsageResult(msgspec.Struct, gc=False):
    """One event's outcome. Not tracked by the garbage collector (it holds no containers): a batch
    makes a thousand, and tracked objects would set off collections that scan the whole batch."""

    event_id: str
    status: Status
    partner_amount: int = 0  # exact, in fine units of ``currency`` (exact_amounts): the project's credit
    platform_amount: int = 0  # exact, in fine units: the partner's centralised balance
    currency: str | None = None
    reason: Reason | None = None
    message: str | None = None
    country: str | None = None


@dataclass(slots=True)
class _Project:
    id: int
    partner_id: int
    currency: str
    allow_credit: bool
    wallet_id: int | None
    central_id: int | None
    versions: tuple[int, int]
    # Resellers of resellers: the partners of its chain, the platform's direct partner first (this one
    # last), and the centralised balance each pays from (this partner's own, ``central_id``, last).
    chain: tuple[int, ...] = ()
    centrals: tuple[int, ...] = ()


class _Priced(msgspec.Struct, gc=False):
    """An event ready to write: its result (amounts filled) and its row values (no cycles: untracked)."""

    event: UsageLike
    result: UsageResult
    project: _Project
    free: bool
    partner_amount: int  # as priced, before any attempt to write it
    platform_amount: int
    # A price with volume tiers: the event is priced when written, by its messages' places in the month.
    tiered: rate_cards.Price | None = None
    volume: tuple[str, str, str, str] | None = None  # (scope, country, category, month) it counts in
    # Resellers of resellers: what each level of the chain pays its parent, top first (the last is
    # ``platform_amount``), as priced and as charged; one amount for a direct partner.
    costs: tuple[int, ...] = ()
    charged_costs: tuple[int, ...] = ()

    def reset(self) -> None:
        """The result as priced: a retried write starts again from here."""
        result = self.result
        result.status = Status.FREE if self.free else Status.CHARGED
        result.reason = result.message = None
        result.partner_amount, result.platform_amount = self.partner_amount, self.platform_amount
        self.charged_costs = self.costs


@dataclass(slots=True)
class _Group:
    """The events of one partner in a batch."""

    partner_id: int
    currency: str
    central_id: int
    events: list[_Priced] = field(default_factory=list)
    chain: tuple[int, ...] = ()  # as on _Project: top first, this partner last
    centrals: tuple[int, ...] = ()

    def counter_account(self, central_id: int) -> ExternalAccount:
        """Where a level's usage goes: the platform's direct partner pays the platform, each level below
        pays its parent."""
        return ExternalAccount.PLATFORM_REVENUE if central_id == self.centrals[0] else ExternalAccount.PARTNER_REVENUE


def refuse(result: UsageResult, reason: Reason, message: str) -> None:
    result.status, result.reason, result.message = Status.REFUSED, reason, message
    result.partner_amount = result.platform_amount = 0


def _validate(event: UsageLike, result: UsageResult) -> str | None:
    """The event's country, or None after refusing it."""
    if event.category not in CATEGORIES:
        refuse(result, Reason.INVALID_EVENT, f"unknown category {event.category[:40]!r}")
        return None
    if event.window not in WINDOWS:
        refuse(result, Reason.INVALID_EVENT, f"unknown window {event.window[:40]!r}")
        return None
    if not 1 <= event.count <= MAX_COUNT:
        refuse(result, Reason.INVALID_EVENT, f"count is 1 to {MAX_COUNT}")
        return None
    if event.recipient is not None:
        try:
            country = country_of(event.recipient)
        except ValueError:
            refuse(result, Reason.INVALID_EVENT, "recipient is not an international phone number")
            return None
        if event.country is not None and country is not None and event.country.upper() != country:
            refuse(result, Reason.INVALID_EVENT, f"recipient is in {country}, not {event.country[:8]}")
            return None
        return country or rate_cards.REST_OF_WORLD
    if event.country is None:
        refuse(result, Reason.INVALID_EVENT, "give the recipient's number or country")
        return None
    try:
        return rate_cards.check_country(event.country[:8])  # no country is longer: an echo stays short
    except BillingError as error:
        refuse(result, Reason.INVALID_EVENT, error.message)
        return None


# Free: anything inside the 72-hour free entry window, service messages, and utility messages inside
# the 24-hour customer-service window.
_FREE = frozenset(
    {(category, Window.FREE_ENTRY.value) for category in CATEGORIES}
    | {(MessageCategory.SERVICE.value, window.value) for window in Window}
    | {(MessageCategory.UTILITY.value, Window.CUSTOMER_SERVICE.value)}
)


def _is_free(category: str, window: str) -> bool:
    return (category, window) in _FREE


# Each project with its partner's currency and policy, its credit, the partner's balance and those of the
# partners above it, and the stamps of the rate cards that price it (``rate_cards.versions``: so cached
# cards are checked without a query).
PROJECTS_SQL = (
    "SELECT p.id, p.partner_id, pa.default_currency AS currency, pa.usage_credit_policy AS policy,"  # noqa: S608 (CHAIN_CARDS: a constant)
    " pw.id AS wallet_id, cw.id AS central_id,"
    f" (SELECT {rate_cards.CARD_STAMP} FROM rate_card r WHERE r.partner_id IS NULL"
    " AND r.currency = pa.default_currency) AS pv,"
    f" (SELECT sum{rate_cards.CARD_STAMP} FROM rate_card r WHERE r.currency = pa.default_currency"
    f" AND {rate_cards.CHAIN_CARDS}) AS ov, pa.parent_id AS parent, gp.parent_id AS grandparent,"
    " (SELECT id FROM wallet w WHERE w.owner_key = 'PARTNER:' || pa.parent_id AND w.unit = pa.default_currency)"
    " AS parent_central,"
    " (SELECT id FROM wallet w WHERE w.owner_key = 'PARTNER:' || gp.parent_id AND w.unit = pa.default_currency)"
    " AS grandparent_central"
    " FROM project p JOIN partner pa ON pa.id = p.partner_id LEFT JOIN partner gp ON gp.id = pa.parent_id"
    " LEFT JOIN wallet pw ON pw.owner_key = 'PROJECT:' || p.id AND pw.unit = pa.default_currency"
    " LEFT JOIN wallet cw ON cw.owner_key = 'PARTNER:' || pa.id AND cw.unit = pa.default_currency"
)


async def _projects(ids: set[int]) -> dict[int, _Project]:
    if not ids:
        return {}
    listed = ", ".join(str(int(i)) for i in sorted(ids))  # integers only
    rows = await sql.fetch(f"{PROJECTS_SQL} WHERE p.id IN ({listed})")
    found = {}
    for row in rows:
        central = row["central_id"]
        if central is None:  # the centralised balance opens at zero the first time it is needed
            central = await _central(row["partner_id"], row["currency"])
        # Resellers of resellers: the balances of the partners above this one (opened the first time too).
        above = [
            (partner_id, wallet_id or await _central(partner_id, row["currency"]))
            for partner_id, wallet_id in (
                (row["grandparent"], row["grandparent_central"]),
                (row["parent"], row["parent_central"]),
            )
            if partner_id is not None
        ]
        found[row["id"]] = _Project(
            id=row["id"],
            partner_id=row["partner_id"],
            currency=row["currency"],
            allow_credit=row["policy"] == "ALLOW_TO_CREDIT_LIMIT",
            wallet_id=row["wallet_id"],
            central_id=central,
            versions=(int(row["pv"] or 0), int(row["ov"] or 0)),
            chain=(*(p for p, _ in above), row["partner_id"]),
            centrals=(*(w for _, w in above), central),
        )
    return found


async def _central(partner_id: int, currency: str) -> int:
    """The partner's centralised balance in ``currency`` (with its parent, or the platform's), opened at zero
    the first time it is needed."""
    opened = await opening.open_wallet(
        partner_id=partner_id, owner_kind=OwnerKind.PARTNER, owner_id=partner_id, unit=currency
    )
    return int(opened.id)


async def _price(
    events: Sequence[UsageLike], project_ids: Sequence[int], results: list[UsageResult]
) -> dict[int, _Group]:
    """Validate and price every event; the ones left to write, grouped by partner."""
    projects = await _projects(set(project_ids))
    tables: dict[tuple[int, str], rate_cards.RateTable] = {}
    # (rate, count) -> the client's amount and each level's: most events of a batch share a few cells. A
    # rate is one object per cell price of a card, and each batch reads each card once.
    priced: dict[tuple[int, int], tuple[int, tuple[int, ...]]] = {}
    groups: dict[int, _Group] = {}
    seen: set[str] = set()
    for event, project_id, result in zip(events, project_ids, results, strict=True):
        if not 0 < len(event.event_id) <= MAX_EVENT_ID or not storable_line(event.event_id):
            # NUL would fail the whole batch's statement on PostgreSQL (SQLite stores it): refused
            # alone, the same on both.
            refuse(result, Reason.INVALID_EVENT, f"an event id is 1 to {MAX_EVENT_ID} characters, no control ones")
            continue
        if event.event_id in seen:
            result.status = Status.DUPLICATE
            continue
        seen.add(event.event_id)
        project = projects.get(project_id)
        if project is None:
            refuse(result, Reason.PROJECT_NOT_FOUND, "project not found")
            continue
        country = _validate(event, result)
        if country is None:
            continue
        result.country = country
        free = _is_free(event.category, event.window)
        amounts: tuple[int, tuple[int, ...]] | None = None
        tiered = volume = None
        if not free:
            key = (project.partner_id, project.currency)
            card = tables.get(key)
            if card is None:
                card = tables[key] = await rate_cards.table(project.partner_id, project.currency, project.versions)
            price = card.price(country, event.category, event.occurred_at)
            if price is None:
                refuse(result, Reason.NO_RATE, f"no rate for {country} {event.category}")
                continue
            if price.tiers:
                tiered = price
                # A partner's volume is its whole chain's: the platform's tiers are earned by the platform's
                # direct partner, with everything sold below it (chain[0]: the partner itself when direct).
                scope = (
                    f"PROJECT:{project.id}" if card.tier_scope is TierScope.PROJECT else f"PARTNER:{project.chain[0]}"
                )
                volume = (scope, country, event.category, event.occurred_at.astimezone(UTC).strftime("%Y-%m"))
                amounts = (0, (0,) * len(project.chain))  # priced when written
            else:
                cell = (id(price.rate), event.count)
                amounts = priced.get(cell)
                if amounts is None:
                    amounts = priced[cell] = (
                        exact_amounts.charge_fine(event.count, price.rate.partner, project.currency),
                        tuple(exact_amounts.charge_fine(event.count, c, project.currency) for c in price.rate.costs()),
                    )
        result.currency = project.currency
        if amounts is None:
            result.status = Status.FREE
        else:
            result.status = Status.CHARGED
            result.partner_amount, result.platform_amount = amounts[0], amounts[1][-1]
            if project.wallet_id is None and result.partner_amount > 0:
                refuse(result, Reason.INSUFFICIENT_CREDIT, "the project has no credit")
                continue
        group = groups.get(project.partner_id)
        if group is None:
            assert project.central_id is not None
            group = groups[project.partner_id] = _Group(
                project.partner_id, project.currency, project.central_id, chain=project.chain, centrals=project.centrals
            )
        costs = amounts[1] if amounts is not None else (0,) * len(project.chain)
        group.events.append(
            _Priced(
                event,
                result,
                project,
                free,
                result.partner_amount,
                result.platform_amount,
                tiered,
                volume,
                costs,
                costs,
            )
        )
    return groups


async def report(
    viewer: Viewer, events: Sequence[UsageLike], project_ids: Sequence[int] | None = None
) -> list[UsageResult]:
    """Price, charge and record a batch of up to 1,000 events; one result per event, in order.
    ``project_ids`` gives each event's project when the events do not carry it (``UsageIn`` does)."""
    viewer.require(Permission.REPORT_USAGE)
    if not viewer.is_platform:
        raise BillingError(ErrorCode.FORBIDDEN, "usage is reported by the platform's product")
    if len(events) > MAX_BATCH:
        raise BillingError(ErrorCode.INVALID_INPUT, f"a batch holds at most {MAX_BATCH} events", field="events")
    check_occurred_at(events, clock.now())
    results = [UsageResult(e.event_id, Status.REFUSED) for e in events]
    if project_ids is None:
        project_ids = [e.project_id for e in events]  # type: ignore[attr-defined]
    groups = await _price(events, project_ids, results)
    if not groups:
        observe.usage_results(results)
        return results
    batch = clock.now()
    for attempt in itertools.count():
        try:
            tiered = any(item.tiered is not None for group in groups.values() for item in group.events)
            if not (sql.is_postgres() and not tiered and await _fast(groups, batch, viewer.actor)):
                await _careful(groups, batch, viewer.actor)
            observe.usage_results(results)
            return results
        except (BillingError, OperationalError, asyncpg.DeadlockDetectedError) as error:
            # Undone, nothing written: a balance moved between the careful path's lock and its
            # posting, or two batches waited on each other's events or wallets. Again, from the top.
            if attempt >= 3 or not _worth_retrying(error):
                raise
    raise AssertionError("unreachable")


def _worth_retrying(error: BaseException) -> bool:
    if isinstance(error, BillingError):
        return error.code is ErrorCode.INSUFFICIENT_BALANCE
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, asyncpg.DeadlockDetectedError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


# --- PostgreSQL: two statements per partner ---------------------------------------------------------

EVENTS_AND_PROJECTS_SQL = """
WITH p AS (
    INSERT INTO posting (created_at, partner_id, cause, caused_by_type, caused_by_id, note, actor)
    VALUES ($1, $2, 'USAGE', 'UsageBatch', NULL, '', $3) RETURNING id
), ins AS (
    INSERT INTO usage_event (created_at, partner_id, project_id, event_id, country, category, window_kind, count,
                             free, occurred_at, charged_amount, charged_fraction, platform_amount, platform_fraction,
                             currency, posting_id, levels)
    SELECT $1, $2, e.project_id, e.event_id, e.country, e.category, e.window_kind, e.count, e.free, e.occurred_at,
           e.charged, e.charged_fraction, e.platform, e.platform_fraction, $4, (SELECT id FROM p), e.levels::jsonb
    FROM unnest($5::bigint[], $6::text[], $7::text[], $8::text[], $9::text[], $10::int[], $11::bool[],
                $12::timestamptz[], $13::bigint[], $14::bigint[], $15::bigint[], $16::bigint[], $21::text[])
         AS e(project_id, event_id, country, category, window_kind, count, free, occurred_at, charged,
              charged_fraction, platform, platform_fraction, levels)
    ON CONFLICT (partner_id, event_id) DO NOTHING
    RETURNING project_id, event_id, charged_amount, charged_fraction, platform_amount, platform_fraction
), tot AS (
    SELECT project_id, sum(charged_amount)::bigint AS whole, sum(charged_fraction)::bigint AS fine
    FROM ins GROUP BY project_id
), lk AS (
    -- Each project's credit, held before its remainder is read: the running total is rounded once.
    SELECT w.id, w.usage_remainder, tot.whole, tot.fine, m.allow_credit
    FROM tot JOIN unnest($17::bigint[], $18::bigint[], $19::bool[]) AS m(project_id, wallet_id, allow_credit)
         ON m.project_id = tot.project_id
    JOIN wallet w ON w.id = m.wallet_id
    WHERE tot.whole > 0 OR tot.fine > 0
    ORDER BY w.id FOR UPDATE OF w
), mv AS (
    SELECT id, allow_credit, whole + (usage_remainder + fine + {half}) / {fine} AS moved,
           (usage_remainder + fine + {half}) % {fine} - {half} AS remainder
    FROM lk
), u AS (
    UPDATE wallet w SET balance = w.balance - mv.moved, usage_remainder = mv.remainder, updated_at = $1
    FROM mv
    WHERE w.id = mv.id AND w.balance - mv.moved >= CASE WHEN mv.allow_credit THEN -w.credit_limit ELSE 0 END
    RETURNING w.id, w.balance, w.partner_id, mv.moved AS amount,
              w.low_balance_threshold IS NOT NULL AND w.balance < w.low_balance_threshold AS low
), n AS (
    SELECT {notify} FROM u WHERE u.amount > 0  -- a remainder that moved no minor unit changes no balance
), e AS (
    INSERT INTO ledger_entry (created_at, posting_id, partner_id, wallet_id, unit, amount, balance_after, cause,
                              counter_wallet_id, counter_account)
    SELECT $1, (SELECT id FROM p), $2, u.id, $4, -u.amount, u.balance, 'USAGE', NULL, 'PARTNER_REVENUE'
    FROM u WHERE u.amount > 0
)
SELECT (SELECT id FROM p) AS posting_id,
       (SELECT count(*) FROM ins) AS inserted_count,
       (SELECT CASE WHEN count(*) < $20 THEN array_agg(event_id) END FROM ins) AS inserted,
       (SELECT coalesce(sum(platform_amount), 0) FROM ins)::bigint AS platform_whole,
       (SELECT coalesce(sum(platform_fraction), 0) FROM ins)::bigint AS platform_fine,
       (SELECT count(*) FROM lk) AS to_charge,
       (SELECT array_agg(id) FROM u) AS charged,
       (SELECT array_agg(id) FROM u WHERE low) AS low,
       (SELECT count(*) FROM n) AS notified
"""

CENTRAL_SQL = """
WITH lk AS (
    SELECT id, usage_remainder FROM wallet WHERE id = $3 FOR UPDATE
), mv AS (
    SELECT id, $1::bigint + (usage_remainder + $7::bigint + {half}) / {fine} AS moved,
           (usage_remainder + $7::bigint + {half}) % {fine} - {half} AS remainder
    FROM lk
), w AS (
    UPDATE wallet SET balance = balance - mv.moved, usage_remainder = mv.remainder, updated_at = $2
    FROM mv
    WHERE wallet.id = mv.id AND balance - mv.moved >= -credit_limit
    RETURNING wallet.id, wallet.balance, wallet.partner_id, mv.moved,
              low_balance_threshold IS NOT NULL AND balance < low_balance_threshold AS low
), n AS (
    SELECT {notify} FROM w WHERE w.moved > 0
), e AS (
    INSERT INTO ledger_entry (created_at, posting_id, partner_id, wallet_id, unit, amount, balance_after, cause,
                              counter_wallet_id, counter_account)
    SELECT $2, $4, $5, w.id, $6, -w.moved, w.balance, 'USAGE', NULL, $8 FROM w WHERE w.moved > 0
)
SELECT id, low, (SELECT count(*) FROM n) AS notified FROM w
"""


def _sql(template: str, wallet: str, partner: str) -> str:
    return (
        template.replace("{notify}", realtime.notify_sql(realtime.WALLET, wallet, partner))
        .replace("{half}", str(HALF))
        .replace("{fine}", str(FINE))
    )


EVENTS_AND_PROJECTS_SQL = _sql(EVENTS_AND_PROJECTS_SQL, "u.id", "u.partner_id")
CENTRAL_SQL = _sql(CENTRAL_SQL, "w.id", "w.partner_id")


class _Short(Exception):
    """A balance would pass its limit: undo the batch and take the careful path."""


def event_rows(group: _Group) -> list[list[Any]]:
    """The arrays the events statement takes, in its parameter order ($5..$16): each exact amount as its
    whole minor units and the fine units beyond them."""
    items = group.events
    charged = [exact_amounts.split(i.partner_amount) for i in items]
    platform = [exact_amounts.split(i.platform_amount) for i in items]
    return [
        [i.project.id for i in items],
        [i.event.event_id for i in items],
        [i.result.country for i in items],
        [i.event.category for i in items],
        [i.event.window for i in items],
        [i.event.count for i in items],
        [i.free for i in items],
        [i.event.occurred_at for i in items],
        [c[0] for c in charged],
        [c[1] for c in charged],
        [p[0] for p in platform],
        [p[1] for p in platform],
    ]


def level_rows(group: _Group) -> list[str | None]:
    """($21): each event's ``usage_event.levels``, as JSON text (None for a direct partner's events)."""
    if len(group.chain) < 2:
        return [None] * len(group.events)
    made: dict[tuple[int, ...], str | None] = {}  # most events of a batch cost the same: one text per costs
    rows = []
    for item in group.events:
        text = made.get(item.charged_costs)
        if text is None:
            text = made[item.charged_costs] = _levels(group, item)
        rows.append(text)
    return rows


def _levels(group: _Group, item: _Priced) -> str | None:
    """What each partner above the group's pays its parent for ``item``, top first, as stored."""
    if len(group.chain) < 2:
        return None
    return json.dumps([[p, cost] for p, cost in zip(group.chain[:-1], item.charged_costs[:-1], strict=True)])


def project_rows(group: _Group) -> list[list[Any]]:
    """($17..$19): each project of the group with its wallet and policy."""
    projects = {item.project.id: item.project for item in group.events if item.project.wallet_id is not None}
    return [
        [p.id for p in projects.values()],
        [p.wallet_id for p in projects.values()],
        [p.allow_credit for p in projects.values()],
    ]


async def _fast(groups: dict[int, _Group], now: datetime, actor: str | None) -> bool:
    """True when the whole batch was written; False (nothing written) when a balance was short."""
    low: list[int] = []
    inserted: dict[int, set[str]] = {}
    try:
        async with sql.connection().acquire_connection() as raw, raw.transaction():
            # (wallet, whole, fine, posting, partner, currency, account): each centralised balance's share.
            central: list[tuple[int, int, int, int, int, str, str]] = []
            for group in groups.values():
                row = await raw.fetchrow(
                    EVENTS_AND_PROJECTS_SQL,
                    now,
                    group.partner_id,
                    actor,
                    group.currency,
                    *event_rows(group),
                    *project_rows(group),
                    len(group.events),
                    level_rows(group),
                )
                if row["to_charge"] != len(row["charged"] or ()):
                    raise _Short
                fresh = None
                if row["inserted_count"] < len(group.events):  # some were seen before
                    fresh = inserted[group.partner_id] = set(row["inserted"] or ())
                low.extend(row["low"] or ())
                posting_id = row["posting_id"]
                if row["platform_whole"] or row["platform_fine"]:
                    whole, fine = row["platform_whole"], row["platform_fine"]
                    account = group.counter_account(group.central_id).value
                    central.append(
                        (group.central_id, whole, fine, posting_id, group.partner_id, group.currency, account)
                    )
                # Resellers of resellers: each level above pays its parent its share of the same events.
                for level, (partner_id, wallet_id) in enumerate(
                    zip(group.chain[:-1], group.centrals[:-1], strict=True)
                ):
                    total = sum(
                        item.charged_costs[level]
                        for item in group.events
                        if fresh is None or item.event.event_id in fresh
                    )
                    if total:
                        whole, fine = exact_amounts.split(total)
                        account = group.counter_account(wallet_id).value
                        central.append((wallet_id, whole, fine, posting_id, partner_id, group.currency, account))
            # The shared rows last, in id order, each held from its update to the commit.
            for wallet_id, whole, fine, posting_id, partner_id, currency, account in sorted(central):
                row = await raw.fetchrow(
                    CENTRAL_SQL, whole, now, wallet_id, posting_id, partner_id, currency, fine, account
                )
                if row is None:
                    raise _Short
                if row["low"]:
                    low.append(row["id"])
    except _Short:
        return False
    observe.ledger_posted(LedgerCause.USAGE.value, len(groups))  # one posting per partner, committed
    for group in groups.values():
        fresh = inserted.get(group.partner_id)
        if fresh is None:
            continue
        for item in group.events:
            if item.event.event_id not in fresh:
                _duplicate(item.result)
    for wallet_id in low:
        await top_ups.watch(wallet_id)
    return True


def _duplicate(result: UsageResult) -> None:
    result.status = Status.DUPLICATE
    result.partner_amount = result.platform_amount = 0


# --- any backend: lock, decide event by event --------------------------------------------------------


@dataclass(slots=True)
class _Room:
    """A wallet as locked, and what this batch has taken from it so far."""

    balance: int
    credit_limit: int
    remainder: int  # the usage remainder, fine units
    moved: int = 0  # whole minor units this batch takes

    def take(self, whole: int, fine: int, floor: int) -> bool:
        """Take an exact amount (``whole`` minor units and ``fine`` units), unless the balance would fall
        below ``floor``; False (nothing taken) then."""
        crossed, remainder = exact_amounts.carry(self.remainder, fine)
        if self.balance - self.moved - whole - crossed < floor:
            return False
        self.moved += whole + crossed
        self.remainder = remainder
        return True


async def _careful(groups: dict[int, _Group], now: datetime, actor: str | None) -> None:
    wallet_ids = sorted(
        {c for g in groups.values() for c in g.centrals}
        | {i.project.wallet_id for g in groups.values() for i in g.events if i.project.wallet_id is not None}
    )
    touched: set[int] = set()
    async with in_transaction("default"):
        listed = ", ".join(str(int(w)) for w in wallet_ids)
        if not sql.is_postgres():
            # SQLite locks the whole database at the first write: take it now, before reading.
            await sql.execute(f"UPDATE wallet SET balance = balance WHERE id IN ({listed})")  # noqa: S608 (ints)
        lock = " ORDER BY id FOR UPDATE" if sql.is_postgres() else ""
        rows = await sql.fetch(
            f"SELECT id, balance, credit_limit, usage_remainder FROM wallet WHERE id IN ({listed}){lock}"  # noqa: S608
        )
        room = {r["id"]: _Room(int(r["balance"]), int(r["credit_limit"]), int(r["usage_remainder"])) for r in rows}
        volumes = await _hold_volumes({item.volume for g in groups.values() for item in g.events if item.volume}, now)
        counted = dict(volumes)
        for group in groups.values():
            await _decide(group, room, now, actor, touched, counted)
        for key, count in counted.items():
            if count != volumes[key]:
                await sql.execute(
                    "UPDATE message_volume SET count = $1 WHERE scope = $2 AND country = $3 AND category = $4"
                    " AND month = $5",
                    count,
                    *key,
                )
    for wallet_id in sorted(touched):
        await top_ups.watch(wallet_id)


Volume = tuple[str, str, str, str]


async def _hold_volumes(keys: set[Volume], now: datetime) -> dict[Volume, int]:
    """The month's message counts the batch's tiered events add to, each row held until the commit."""
    counts = {}
    lock = " FOR UPDATE" if sql.is_postgres() else ""  # SQLite: the batch holds the whole database
    for key in sorted(keys):
        await sql.execute(
            "INSERT INTO message_volume (created_at, scope, country, category, month, count)"
            " VALUES ($1, $2, $3, $4, $5, 0) ON CONFLICT (scope, country, category, month) DO NOTHING",
            now,
            *key,
        )
        query = "SELECT count FROM message_volume WHERE scope = $1 AND country = $2 AND category = $3 AND month = $4"
        rows = await sql.fetch(query + lock, *key)
        counts[key] = int(rows[0]["count"])
    return counts


def _price_tiered(item: _Priced, counted: dict[Volume, int], currency: str) -> None:
    """Price an event with volume tiers by its messages' places in the month, as counted so far."""
    assert item.tiered is not None and item.volume is not None
    spans = item.tiered.spans(counted[item.volume] + 1, item.event.count)
    result = item.result
    result.partner_amount = sum(exact_amounts.charge_fine(n, rate.partner, currency) for n, rate in spans)
    item.charged_costs = tuple(
        sum(exact_amounts.charge_fine(n, rate.costs()[level], currency) for n, rate in spans)
        for level in range(len(item.costs))
    )
    result.platform_amount = item.charged_costs[-1]
    if not result.partner_amount and not result.platform_amount:  # inside a free quota
        result.status = Status.FREE


async def _decide(
    group: _Group,
    room: dict[int, _Room],
    now: datetime,
    actor: str | None,
    touched: set[int],
    counted: dict[Volume, int],
) -> None:
    centrals = [room[c] for c in group.centrals]
    # A level's balance can be in several groups (two partners below it): each group posts what it took.
    before = {wallet_id: wallet.moved for wallet_id, wallet in room.items()}
    changed: set[int] = set()
    kept: list[int] = []
    for item in group.events:
        item.reset()
        result, event, project = item.result, item.event, item.project
        if item.tiered is not None:
            _price_tiered(item, counted, group.currency)
        charged, charged_fine = exact_amounts.split(result.partner_amount)
        platform, platform_fine = exact_amounts.split(result.platform_amount)
        rows = await sql.fetch(
            "INSERT INTO usage_event (created_at, partner_id, project_id, event_id, country, category, window_kind,"
            " count, free, occurred_at, charged_amount, charged_fraction, platform_amount, platform_fraction,"
            " currency, levels) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
            " ON CONFLICT (partner_id, event_id) DO NOTHING RETURNING id",
            now,
            group.partner_id,
            project.id,
            event.event_id,
            result.country,
            event.category,
            event.window,
            event.count,
            result.status is Status.FREE,
            event.occurred_at,
            charged,
            charged_fine,
            platform,
            platform_fine,
            group.currency,
            _levels(group, item),
        )
        if not rows:
            _duplicate(result)
            continue
        row_id = int(rows[0]["id"])
        wallet = room[project.wallet_id] if project.wallet_id is not None else None
        undo = (wallet.moved, wallet.remainder) if wallet is not None else (0, 0)
        reason = None
        if result.partner_amount and wallet is None:
            reason = (Reason.INSUFFICIENT_CREDIT, "the project has no credit")
        elif result.partner_amount:
            assert wallet is not None
            if not wallet.take(charged, charged_fine, -wallet.credit_limit if project.allow_credit else 0):
                reason = (Reason.INSUFFICIENT_CREDIT, "the project's credit does not cover this event")
        if reason is None:
            # Every level of the chain pays its parent its share, or the event is refused: all or none.
            undone = [(c.moved, c.remainder) for c in centrals]
            for central, cost in zip(centrals, item.charged_costs, strict=True):
                whole, fine = exact_amounts.split(cost)
                if not central.take(whole, fine, -central.credit_limit):
                    reason = (Reason.PARTNER_BALANCE_INSUFFICIENT, "the partner's balance is at its credit limit")
                    if wallet is not None:
                        wallet.moved, wallet.remainder = undo
                    for taken, (moved, remainder) in zip(centrals, undone, strict=True):
                        taken.moved, taken.remainder = moved, remainder
                    break
        if reason is not None:
            refuse(result, *reason)
            await sql.execute("DELETE FROM usage_event WHERE id = $1", row_id)
            continue
        if result.partner_amount:
            changed.add(project.wallet_id)  # type: ignore[arg-type]
        changed.update(c for c, cost in zip(group.centrals, item.charged_costs, strict=True) if cost)
        if item.volume is not None:
            counted[item.volume] += event.count
        kept.append(row_id)
    if not kept:
        return
    legs = [
        Leg(
            room[wallet_id].moved - before[wallet_id],
            group.currency,
            wallet_id,
            group.counter_account(wallet_id) if wallet_id in group.centrals else ExternalAccount.PARTNER_REVENUE,
        )
        for wallet_id in sorted(changed)
        if room[wallet_id].moved - before[wallet_id]
    ]
    if legs:
        posting_id = (
            await ledger.post(legs, cause=LedgerCause.USAGE, caused_by=CausedBy("UsageBatch", ""), actor=actor)
        ).posting_id
    else:  # free events, or amounts still under a whole minor unit: a posting without entries
        posting_id = await _bare_posting(group.partner_id, now, actor)
    for wallet_id in sorted(changed):
        await sql.execute("UPDATE wallet SET usage_remainder = $1 WHERE id = $2", room[wallet_id].remainder, wallet_id)
    listed = ", ".join(str(i) for i in kept)
    await sql.execute(f"UPDATE usage_event SET posting_id = $1 WHERE id IN ({listed})", posting_id)  # noqa: S608
    touched.update(int(leg.source) for leg in legs)


async def _bare_posting(partner_id: int, now: datetime, actor: str | None) -> int:
    rows = await sql.fetch(
        "INSERT INTO posting (created_at, partner_id, cause, caused_by_type, caused_by_id, note, actor)"
        " VALUES ($1, $2, 'USAGE', 'UsageBatch', NULL, '', $3) RETURNING id",
        now,
        partner_id,
        actor,
    )
    observe.ledger_posted(LedgerCause.USAGE.value)  # inside the batch's transaction: counted once it commits
    return int(rows[0]["id"])


def as_utc(moment: datetime, field: str = "occurredAt") -> datetime:
    if moment.tzinfo is None:
        raise BillingError(ErrorCode.INVALID_EVENT, "occurredAt needs a time zone", field=field)
    return moment.astimezone(UTC)


def occurred_window(now: datetime) -> tuple[datetime, datetime]:
    """When a usage event may have happened: from the start of the UTC month ``usage_months_back``
    months before now's (by default the previous month's) to ``usage_max_ahead_seconds`` past now."""
    settings = config.current()
    utc_now = now.astimezone(UTC)
    year, month = divmod(utc_now.year * 12 + utc_now.month - 1 - settings.usage_months_back, 12)
    return datetime(year, month + 1, 1, tzinfo=UTC), utc_now + timedelta(seconds=settings.usage_max_ahead_seconds)


def check_occurred_at(events: Sequence[UsageLike], now: datetime) -> None:
    """Refuse the whole batch, before anything is charged, if an event happened outside the window:
    an event dated 0001-01-01 or 9999-12-31 would be charged and shown in no month's report or CSV."""
    earliest, latest = occurred_window(now)
    for index, event in enumerate(events):
        moment = event.occurred_at
        field = f"events[{index}].occurredAt"
        if moment.tzinfo is None:
            raise BillingError(ErrorCode.INVALID_EVENT, "occurredAt needs a time zone", field=field)
        if moment < earliest:
            raise BillingError(
                ErrorCode.INVALID_EVENT,
                f"occurredAt {moment.isoformat()} is before {earliest.isoformat()}, the earliest usage still"
                " reported (its month's reports are closed)",
                field=field,
            )
        if moment > latest:
            raise BillingError(
                ErrorCode.INVALID_EVENT,
                f"occurredAt {moment.isoformat()} is in the future (after {latest.isoformat()})",
                field=field,
            )
