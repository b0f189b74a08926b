"""Coupons: something off what a workspace pays its partner, shown on the invoice line it reduces.

A coupon takes a percentage of a line's amount (rounded once, half-even, to the minor unit) or a fixed
amount in its own currency (only on invoices in that currency). It applies to the plans, add-ons or
packages it names (none named: to all of them), until it expires, to at most ``max_redemptions``
redemptions in all and ``max_per_workspace`` per workspace.

A redemption is taken in the transaction that opens the checkout's payment: one conditional UPDATE moves
the coupon's count past the one before it unless the limit is reached (on PostgreSQL the coupon's row then
stays locked until that transaction ends, so two checkouts racing for the last redemption get it once),
and the workspace's redemption takes the next ``seq``, which the database holds unique. A checkout whose
invoice is voided (its payment failed for good) gives its redemption back; a late success takes it again.

For a plan, the duration says which periods the coupon reduces: ONCE the first it applies to, REPEATING
the first ``periods`` of them, FOREVER all; periods are counted by the subscription's period numbers, so a
renewal charged again after a decline gets the same discount. Coupons on one line add up only where the
partner lets them stack, each reckoned on the line's amount, and together they never take more than the
line's amount: no total is ever negative.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from billing.core import clock, sql
from billing.core.errors import BillingError, ErrorCode
from billing.core.money import check_amount, check_currency
from billing.core.text import check_text
from billing.documents import taxes
from models.documents import Coupon, CouponRedemption
from models.enums import CouponDuration, CouponKind
from models.tenancy import Partner

_CODE = re.compile(r"[A-Z0-9][A-Z0-9_-]{2,39}")
MAX_CODES = 5
MAX_NAMED = 200  # plans, add-ons or packages a coupon may name, each


@dataclass(frozen=True, slots=True)
class Item:
    """What an invoice line bills, as the coupon's lists name it: "Plan", "AddOn" or "CreditPackage"."""

    kind: str
    item_id: int


@dataclass(frozen=True, slots=True)
class Discount:
    """One coupon's share of a line's discount, as the line shows it."""

    code: str
    name: str
    amount: int  # minor units

    def as_json(self) -> dict[str, object]:
        return {"code": self.code, "name": self.name, "amount": self.amount}


def check_code(code: str) -> str:
    """A code as clients type it, any case: 3 to 40 letters, digits, ``-`` or ``_``, nothing around it."""
    upper = code.upper()
    if not _CODE.fullmatch(upper):
        raise BillingError(
            ErrorCode.INVALID_INPUT, "a coupon code is 3 to 40 letters, digits, - or _", field="couponCode"
        )
    return upper


def _ids(values: Sequence[int], field: str) -> list[int]:
    if len(values) > MAX_NAMED or any(v <= 0 for v in values):
        raise BillingError(ErrorCode.INVALID_INPUT, f"at most {MAX_NAMED} ids", field=field)
    return sorted(set(values))


async def create(
    partner_id: int,
    *,
    code: str,
    name: str,
    kind: CouponKind,
    duration: CouponDuration,
    percentage: Decimal | None = None,
    amount: int | None = None,
    currency: str | None = None,
    periods: int | None = None,
    plan_ids: Sequence[int] = (),
    add_on_ids: Sequence[int] = (),
    package_ids: Sequence[int] = (),
    max_redemptions: int | None = None,
    max_per_workspace: int | None = None,
    expires_at: datetime | None = None,
) -> Coupon:
    code = check_code(code)
    name = check_text(name, "name", max_length=100)
    if kind is CouponKind.PERCENTAGE:
        if percentage is None or amount is not None or currency is not None:
            raise BillingError(ErrorCode.INVALID_INPUT, "a percentage coupon has a percentage only", field="percentage")
        _, percentage = taxes.check_rate(name, percentage)
    else:
        if amount is None or currency is None or percentage is not None:
            raise BillingError(ErrorCode.INVALID_INPUT, "a fixed coupon has an amount and a currency", field="amount")
        amount, currency = check_amount(amount), check_currency(currency)
    if (duration is CouponDuration.REPEATING) != (periods is not None) or (
        periods is not None and not 0 < periods <= 120
    ):
        raise BillingError(ErrorCode.INVALID_INPUT, "a repeating coupon lasts 1 to 120 periods", field="periods")
    for limit, field in ((max_redemptions, "maxRedemptions"), (max_per_workspace, "maxPerWorkspace")):
        if limit is not None and not 0 < limit <= 1_000_000:
            raise BillingError(ErrorCode.INVALID_INPUT, "a limit is 1 to 1000000", field=field)
    if expires_at is not None and expires_at <= clock.now():
        raise BillingError(ErrorCode.INVALID_INPUT, "a coupon expires in the future", field="expiresAt")
    try:
        async with in_transaction("default"):
            return await Coupon.create(
                partner_id=partner_id,
                code=code,
                name=name,
                kind=kind,
                percentage=percentage,
                amount=amount,
                currency=currency,
                duration=duration,
                periods=periods,
                plan_ids=_ids(plan_ids, "planIds"),
                add_on_ids=_ids(add_on_ids, "addOnIds"),
                package_ids=_ids(package_ids, "packageIds"),
                max_redemptions=max_redemptions,
                max_per_workspace=max_per_workspace,
                expires_at=expires_at,
            )
    except IntegrityError:
        raise BillingError(ErrorCode.ALREADY_EXISTS, "the partner has a coupon with that code", field="code") from None


def applies_to(coupon: Coupon, item: Item) -> bool:
    named = {"Plan": coupon.plan_ids, "AddOn": coupon.add_on_ids, "CreditPackage": coupon.package_ids}
    if not (coupon.plan_ids or coupon.add_on_ids or coupon.package_ids):
        return True
    return item.item_id in named.get(item.kind, [])


def discounts(coupons: Sequence[Coupon], subtotal: int) -> list[Discount]:
    """Each coupon's amount off a line of ``subtotal``, none taking the line below zero."""
    made = []
    left = subtotal
    for coupon in coupons:
        if coupon.kind is CouponKind.PERCENTAGE:
            assert coupon.percentage is not None
            off = taxes.rounded(Decimal(subtotal) * Decimal(coupon.percentage) / taxes.HUNDRED)
        else:
            off = int(coupon.amount or 0)
        off = min(off, left)
        left -= off
        made.append(Discount(coupon.code, coupon.name, off))
    return made


def _check_usable(coupon: Coupon, item: Item, currency: str) -> None:
    if not coupon.active or (coupon.expires_at is not None and coupon.expires_at <= clock.now()):
        raise BillingError(ErrorCode.COUPON_NOT_APPLICABLE, f"coupon {coupon.code} has expired", field="couponCodes")
    if not applies_to(coupon, item):
        raise BillingError(
            ErrorCode.COUPON_NOT_APPLICABLE, f"coupon {coupon.code} does not apply to this", field="couponCodes"
        )
    if coupon.kind is CouponKind.FIXED and coupon.currency != currency:
        raise BillingError(
            ErrorCode.CURRENCY_MISMATCH, f"coupon {coupon.code} is in {coupon.currency}", field="couponCodes"
        )


async def _take(coupon: Coupon, workspace_id: int, payment_id: int | None) -> CouponRedemption:
    """One redemption of ``coupon`` for the workspace, inside the caller's transaction, or refused."""
    if not sql.in_transaction():
        raise RuntimeError("a coupon is redeemed inside the transaction that uses it")
    taken = await sql.execute(
        "UPDATE coupon SET redeemed = redeemed + 1 WHERE id = $1 AND active"
        " AND (max_redemptions IS NULL OR redeemed < max_redemptions) AND (expires_at IS NULL OR expires_at > $2)",
        coupon.id,
        clock.now(),
    )
    if taken != 1:
        raise BillingError(
            ErrorCode.COUPON_EXHAUSTED, f"coupon {coupon.code} has no redemptions left", field="couponCodes"
        )
    # The coupon's row is locked now (PostgreSQL): the workspace's redemptions are counted and numbered
    # one checkout at a time, the next after the highest (one given back leaves its number free).
    rows = await sql.fetch(
        "SELECT COUNT(seq) AS held, COALESCE(MAX(seq), 0) AS top FROM coupon_redemption"
        " WHERE coupon_id = $1 AND workspace_id = $2",
        coupon.id,
        workspace_id,
    )
    held, seq = int(rows[0]["held"]), int(rows[0]["top"]) + 1
    if coupon.max_per_workspace is not None and held + 1 > coupon.max_per_workspace:
        raise BillingError(
            ErrorCode.COUPON_EXHAUSTED, f"this workspace has used coupon {coupon.code}", field="couponCodes"
        )
    try:
        async with in_transaction("default"):
            return await CouponRedemption.create(
                coupon_id=coupon.id,
                partner_id=coupon.partner_id,
                workspace_id=workspace_id,
                seq=seq,
                payment_id=payment_id,
            )
    except IntegrityError:  # the same workspace's concurrent redemption took that place
        raise BillingError(
            ErrorCode.COUPON_EXHAUSTED, f"this workspace has used coupon {coupon.code}", field="couponCodes"
        ) from None


async def _found(partner_id: int, codes: Sequence[str]) -> list[Coupon]:
    if len(codes) > MAX_CODES:
        raise BillingError(ErrorCode.INVALID_INPUT, f"at most {MAX_CODES} coupons", field="couponCodes")
    wanted = list(dict.fromkeys(check_code(code) for code in codes))
    if len(wanted) > 1 and not (await Partner.get(id=partner_id)).coupons_stack:
        raise BillingError(ErrorCode.COUPON_NOT_APPLICABLE, "coupons do not stack here: use one", field="couponCodes")
    found = {c.code: c for c in await Coupon.filter(partner_id=partner_id, code__in=wanted)}
    missing = [code for code in wanted if code not in found]
    if missing:
        raise BillingError(ErrorCode.NOT_FOUND, f"coupon {missing[0]} not found", field="couponCodes")
    return [found[code] for code in wanted]


async def redeem(
    partner_id: int, workspace_id: int, codes: Sequence[str], item: Item, currency: str
) -> tuple[list[Coupon], list[CouponRedemption]]:
    """Take one redemption of each coupon ``codes`` names for a checkout of ``item``, inside the
    transaction that opens its payment; :func:`bind` then ties them to the payment."""
    coupons = await _found(partner_id, codes)
    for coupon in coupons:
        _check_usable(coupon, item, currency)
    # Taken in id order, whatever order they were typed in: two checkouts never wait on each other's coupons.
    taken = {coupon.id: await _take(coupon, workspace_id, None) for coupon in sorted(coupons, key=lambda c: c.id)}
    return coupons, [taken[coupon.id] for coupon in coupons]


async def bind(redemptions: Sequence[CouponRedemption], payment_id: int) -> None:
    if redemptions:
        await CouponRedemption.filter(id__in=[r.id for r in redemptions]).update(payment_id=payment_id)


async def apply_by_hand(partner_id: int, workspace_id: int, code: str) -> CouponRedemption:
    """The partner gives a workspace a coupon for its plan's coming renewals (its periods count from the
    first renewal it reduces)."""
    [coupon] = await _found(partner_id, [code])
    if not coupon.active or (coupon.expires_at is not None and coupon.expires_at <= clock.now()):
        raise BillingError(ErrorCode.COUPON_NOT_APPLICABLE, f"coupon {coupon.code} has expired", field="couponCode")
    async with in_transaction("default"):
        return await _take(coupon, workspace_id, None)


async def release(payment_id: int) -> None:
    """The checkout's payment failed for good (its invoice is void): its redemptions go back."""
    for redemption in await CouponRedemption.filter(payment_id=payment_id, released_at=None):
        moved = await sql.execute(
            "UPDATE coupon_redemption SET released_at = $1, seq = NULL WHERE id = $2 AND released_at IS NULL",
            clock.now(),
            redemption.id,
        )
        if moved == 1:
            await sql.execute("UPDATE coupon SET redeemed = redeemed - 1 WHERE id = $1", redemption.coupon_id)


async def retake(payment_id: int) -> None:
    """A payment given up on succeeded after all: the discount it was charged with was given, so its
    redemptions count again (even past a limit reached meanwhile: the money was taken at that price)."""
    for redemption in (
        await CouponRedemption.filter(payment_id=payment_id).exclude(released_at=None).order_by("coupon_id")
    ):
        # The coupon's row first (its lock, as a checkout takes it), then the next number after the highest.
        await sql.execute("UPDATE coupon SET redeemed = redeemed + 1 WHERE id = $1", redemption.coupon_id)
        rows = await sql.fetch(
            "SELECT COALESCE(MAX(seq), 0) AS top FROM coupon_redemption WHERE coupon_id = $1 AND workspace_id = $2",
            redemption.coupon_id,
            redemption.workspace_id,
        )
        moved = await sql.execute(
            "UPDATE coupon_redemption SET released_at = NULL, seq = $1 WHERE id = $2 AND released_at IS NOT NULL",
            int(rows[0]["top"]) + 1,
            redemption.id,
        )
        if moved != 1:  # taken back by a concurrent answer about the same payment: count it once
            await sql.execute("UPDATE coupon SET redeemed = redeemed - 1 WHERE id = $1", redemption.coupon_id)


async def attach(payment_id: int, subscription_id: int, first_period: int) -> None:
    """The plan a checkout bought started: its coupons count that subscription's periods from ``first_period``."""
    await CouponRedemption.filter(payment_id=payment_id, released_at=None).update(
        subscription_id=subscription_id, first_period=first_period
    )


def _covers(coupon: Coupon, first: int, number: int) -> bool:
    if coupon.duration is CouponDuration.FOREVER:
        return number >= first
    last = first if coupon.duration is CouponDuration.ONCE else first + int(coupon.periods or 1) - 1
    return first <= number <= last


async def for_period(
    subscription_id: int, workspace_id: int, period_number: int, plan_id: int, currency: str
) -> list[Coupon]:
    """The coupons that reduce the subscription's period ``period_number``: those its checkout took and
    those its partner applied by hand (which start counting here, at the first period they reach)."""
    held = await CouponRedemption.filter(workspace_id=workspace_id, released_at=None).filter(
        subscription_id__isnull=True, payment_id__isnull=True
    )
    for redemption in held:  # applied by hand: this subscription's first renewal since takes it
        await sql.execute(
            "UPDATE coupon_redemption SET subscription_id = $1, first_period = $2"
            " WHERE id = $3 AND subscription_id IS NULL",
            subscription_id,
            period_number,
            redemption.id,
        )
    found: list[Coupon] = []
    for redemption in await CouponRedemption.filter(subscription_id=subscription_id, released_at=None).order_by("id"):
        coupon = await Coupon.get(id=redemption.coupon_id)
        if redemption.first_period is None or not _covers(coupon, redemption.first_period, period_number):
            continue
        if applies_to(coupon, Item("Plan", plan_id)) and (
            coupon.kind is CouponKind.PERCENTAGE or coupon.currency == currency
        ):
            found.append(coupon)
    if len(found) > 1 and not (await Partner.get(id=found[0].partner_id)).coupons_stack:
        return found[:1]  # the partner does not stack coupons: the one held longest
    return found
