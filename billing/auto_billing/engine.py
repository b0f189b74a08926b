"""Auto-billing (flow C, Stammer): a partner's pool pays its clients' credits and seats, and whitebill
buys what a pool (or a client) lacks.

**Agency auto-billing** (``Partner.auto_billing_enabled``). A paid period's included MESSAGE_CREDITS
and SEATS are owed to the workspace as a :class:`PoolGrant` and transferred from the partner's pool.
When the pool is short the grant waits: the pool's slot is claimed in the granting transaction and
the worker buys the cheapest combination of the platform's ACTIVE packages of that unit covering the
shortfall (seats: exactly; :mod:`billing.auto_billing.package_optimizer`) as ONE payment through the platform's
gateway: the partner's saved card, or recorded as collected when the platform has no gateway. The
purchase credits the pool (an ordinary PaymentPurpose.WALLET_CREDIT fulfilment), the waiting grants are transferred
oldest first, and the partner gets one ``auto_billing.performed``. A decline grants nothing, tells
the partner (``auto_billing.failed``) and is retried after a back-off (1 hour, 6 hours, then daily).
A partner reselling below another buys from its parent instead, at the parent's price, through the
parent's gateway; every level above is then debited its own parent's price (``platform_deductions``).

**Workspace auto-billing** (the partner's ``for_clients`` setting, and only while it sells packages
of the unit). When usage finds too few credits it is still accepted within the overdraft: the
wallet's credit limit is raised to it while the purchase runs, and the worker buys the partner's
packages covering what was overdrawn, charging the workspace through the partner's gateway. The
credits come out of the partner's pool (which may have to buy first: the cascade) when the partner
uses agency auto-billing, else they are issued like any purchase. After a decline the overdraft
closes, the partner is told, and usage beyond the balance is refused with the reason until the
back-off has passed.

Exactly once, with any number of workers: one :class:`AutoBillingSlot` per buying wallet, claimed
by conditional updates (the transaction that finds the need claims it and queues the job; the job
takes the claim before it works out what to buy, so a stale worker finds nothing to do); grants are
delivered by a conditional update in the transaction of their transfer; payments fulfil once. No
provider is ever called inside a transaction: charges run in the worker, through ``top_ups.charge``.
Rows are locked in one order so that concurrent transactions queue instead of deadlocking: a pool's
slot, then wallets (in ascending id, as the ledger takes them), then a workspace's slot.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from billing.accounts import expiry, ledger, opening, top_ups
from billing.accounts.ledger import CausedBy, Leg
from billing.auto_billing.package_optimizer import Basket, Offer, cheapest_cover, cheapest_exact
from billing.catalog import plans
from billing.charges import gateway_configs, payments
from billing.core import audit, clock, sql, tenancy, work
from billing.core.errors import BillingError, ErrorCode
from billing.core.money import MAX_AMOUNT, check_amount
from billing.core.tenancy import Viewer
from billing.documents import invoices
from gateways.manual import ManualGateway
from models.auto_billing import AutoBillingSlot, PoolGrant, PoolGrantStatus
from models.catalog import CreditPackage
from models.enums import (
    LedgerCause,
    OwnerKind,
    PaymentMethodKind,
    PaymentPurpose,
    PaymentStatus,
    Permission,
    PlanStatus,
    Unit,
)
from models.payments import GatewayConfig, Payment, SavedPaymentMethod
from models.tenancy import Partner
from models.wallets import Wallet

POOL_UNITS = frozenset({Unit.MESSAGE_CREDITS.value, Unit.SEATS.value})
CLIENT_UNITS = frozenset({Unit.MESSAGE_CREDITS.value})
EXACT_UNITS = frozenset({Unit.SEATS.value})  # a chatbot seat is bought exactly
BUY_JOB = "auto_billing.buy"
NOTE = "auto-billing"  # every auto-billing payment's note starts with it
_SETTINGS_KEY = "auto_billing"
_PREPARING = -1  # the slot's value inside the worker's transaction, never committed
_TAKE = (
    "UPDATE auto_billing_slot SET in_flight_payment_id = -1 WHERE wallet_id = $1 AND (in_flight_payment_id = 0 "
    "OR (in_flight_payment_id IS NULL AND (retry_after IS NULL OR retry_after <= $2)))"
)
_CLAIM = (
    "UPDATE auto_billing_slot SET in_flight_payment_id = 0 WHERE wallet_id = $1 AND in_flight_payment_id IS NULL "
    "AND (retry_after IS NULL OR retry_after <= $2)"
)
_FREE = (
    "UPDATE auto_billing_slot SET in_flight_payment_id = NULL, failures = $1, retry_after = $2, last_failure = $3 "
    "WHERE wallet_id = $4 AND in_flight_payment_id = $5"
)
# Row locks taken early to keep the lock order (a statement that changes nothing but locks the row).
_LOCK_SLOT = "UPDATE auto_billing_slot SET failures = failures WHERE wallet_id = $1"
_LOCK_WALLET = "UPDATE wallet SET credit_limit = credit_limit WHERE id = $1"


# --- settings ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Settings:
    enabled: bool  # grants come out of the pool, and a short pool is refilled by buying
    for_clients: bool  # workspaces buy the partner's packages when usage runs short
    client_overdraft: int  # MESSAGE_CREDITS a workspace may overdraw while its purchase runs


def settings_of(partner: Partner) -> Settings:
    raw = (partner.settings or {}).get(_SETTINGS_KEY) or {}
    return Settings(
        enabled=partner.auto_billing_enabled,
        for_clients=bool(raw.get("for_clients", False)),
        client_overdraft=int(raw.get("client_overdraft", 0)),
    )


async def configure(
    viewer: Viewer, *, partner_id: int, enabled: bool, for_clients: bool, client_overdraft: int
) -> Overview:
    """A partner turns its auto-billing on or off, and its clients' (with their overdraft). Turning
    it on again clears a back-off: what waits is bought at once. Returns the auto-billing as it now
    stands."""
    if viewer.kind == "WORKSPACE":
        raise BillingError(ErrorCode.FORBIDDEN, "auto-billing is the partner's setting")
    viewer.require(Permission.MANAGE_BILLING)
    partner = await tenancy.get_scoped(tenancy.partners(viewer), partner_id, "partner")
    check_amount(client_overdraft, field="clientOverdraft", allow_zero=True)
    if for_clients and client_overdraft == 0:
        raise BillingError(
            ErrorCode.INVALID_INPUT,
            "clients' auto-billing needs an overdraft for the usage that sets it off",
            field="clientOverdraft",
        )
    before = settings_of(partner)
    partner.auto_billing_enabled = enabled
    partner.settings = {
        **(partner.settings or {}),
        _SETTINGS_KEY: {"for_clients": for_clients, "client_overdraft": client_overdraft},
    }
    async with in_transaction("default"):
        await partner.save(update_fields=["auto_billing_enabled", "settings"])
        await audit.record(
            actor=viewer.actor,
            action="auto_billing.configure",
            target_type="Partner",
            target_id=partner.id,
            partner_id=partner.id,
            before={
                "enabled": before.enabled,
                "for_clients": before.for_clients,
                "overdraft": audit.quantity(before.client_overdraft, Unit.MESSAGE_CREDITS.value),
            },
            after={
                "enabled": enabled,
                "for_clients": for_clients,
                "overdraft": audit.quantity(client_overdraft, Unit.MESSAGE_CREDITS.value),
            },
        )
        if enabled:
            await sql.execute(
                "UPDATE auto_billing_slot SET failures = 0, retry_after = NULL WHERE wallet_id IN "
                "(SELECT id FROM wallet WHERE owner_key = $1)",
                f"PARTNER:{partner.id}",
            )
            waiting = PoolGrant.filter(partner_id=partner.id, status=PoolGrantStatus.PENDING)
            for unit in sorted(set(await waiting.values_list("unit", flat=True))):
                await _settle_pool(partner.id, str(unit))
    return await overview(viewer, partner_id=partner.id)


# --- the pool pays its clients' grants ------------------------------------------------------------


async def pool_units(partner_id: int) -> frozenset[str]:
    """The units a partner's clients receive out of its pool (none without agency auto-billing)."""
    partner = await Partner.get(id=partner_id)
    return POOL_UNITS if partner.auto_billing_enabled else frozenset()


async def grant_from_pool(
    *,
    partner_id: int,
    workspace_id: int,
    unit: str,
    quantity: int,
    source: CausedBy,
    note: str,
    expires_at: datetime | None = None,
) -> None:
    """Owe ``quantity`` units to a workspace out of its partner's pool, once per source and unit (call
    in the granting transaction): transferred at once if the pool holds them, else when auto-billing
    has bought them."""
    await sql.execute(
        "INSERT INTO pool_grant (created_at, partner_id, workspace_id, unit, quantity, source, status, note,"
        " expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (source, unit) DO NOTHING",
        clock.now(),
        partner_id,
        workspace_id,
        unit,
        check_amount(quantity, field="quantity"),
        f"{source.type}:{source.id}"[:64],
        PoolGrantStatus.PENDING.value,
        note,
        expires_at,
    )
    await _settle_pool(partner_id, unit)


async def credit_from_pool(payment: Payment) -> None:
    """A workspace's auto-billing purchase was paid: its credits come out of the partner's pool."""
    wallet = await Wallet.get(id=int(payment.purpose["wallet_id"]))
    assert wallet.partner_id is not None and wallet.workspace_id is not None  # a workspace's wallet
    await grant_from_pool(
        partner_id=wallet.partner_id,
        workspace_id=wallet.workspace_id,
        unit=wallet.unit,
        quantity=int(payment.purpose["quantity"]),
        source=CausedBy("Payment", str(payment.id)),
        note=payment.note,
    )


async def _settle_pool(partner_id: int, unit: str) -> None:
    """Deliver what the pool holds; if grants still wait, have auto-billing buy (when it is on)."""
    pool = await _pool(partner_id, unit)
    buying = (await Partner.get(id=partner_id)).auto_billing_enabled
    if buying:
        await _ensure_slot(pool)
        await sql.execute(_LOCK_SLOT, pool.id)  # the pool's slot before any wallet
    await deliver_pending(partner_id, unit)
    if buying and await PoolGrant.exists(partner_id=partner_id, unit=unit, status=PoolGrantStatus.PENDING):
        await _want(pool)


async def deliver_pending(partner_id: int, unit: str) -> list[PoolGrant]:
    """Transfer waiting grants from the pool, oldest first, for as long as it holds them."""
    pool = await _pool(partner_id, unit)
    delivered: list[PoolGrant] = []
    waiting = await PoolGrant.filter(partner_id=partner_id, unit=unit, status=PoolGrantStatus.PENDING).order_by("id")
    for grant in waiting:
        try:
            if await _deliver(grant, pool):
                delivered.append(grant)
        except BillingError as error:
            if error.code is not ErrorCode.INSUFFICIENT_BALANCE:
                raise
            break  # the oldest waits for the next purchase; younger ones wait behind it
    if delivered:
        await top_ups.watch(pool.id)
    return delivered


async def _deliver(grant: PoolGrant, pool: Wallet) -> bool:
    async with in_transaction("default"):
        claimed = await sql.execute(
            "UPDATE pool_grant SET status = $1, delivered_at = $2 WHERE id = $3 AND status = $4",
            PoolGrantStatus.DELIVERED.value,
            clock.now(),
            grant.id,
            PoolGrantStatus.PENDING.value,
        )
        if claimed != 1:
            return False  # another worker delivered it
        wallet = await opening.open_wallet(
            partner_id=grant.partner_id, owner_kind=OwnerKind.WORKSPACE, owner_id=grant.workspace_id, unit=grant.unit
        )
        posted = await ledger.post(
            [Leg(grant.quantity, grant.unit, pool.id, wallet.id)],
            cause=LedgerCause.TRANSFER,
            caused_by=CausedBy("PoolGrant", str(grant.id)),
            note=grant.note,
        )
        await sql.execute("UPDATE pool_grant SET posting_id = $1 WHERE id = $2", posted.posting_id, grant.id)
        await expiry.consume(pool.id, grant.quantity)
        if grant.expires_at is not None:
            await expiry.add_lot(wallet, grant.quantity, grant.expires_at)
        kind, _, ref = grant.source.partition(":")
        if kind == "Payment":
            await _client_done(await Payment.get(id=int(ref)))
    await top_ups.watch(wallet.id)
    return True


# --- a workspace's usage runs short -------------------------------------------------------------


async def spend_within_overdraft(wallet: Wallet, spend: Callable[[], Awaitable[int]]) -> int:
    """Run ``spend`` (usage leaving ``wallet``). When the wallet is short and its workspace has
    auto-billing, the usage is accepted within the overdraft while a purchase is queued; beyond it,
    or after a decline, it is refused with the reason. Call inside the ingestion transaction: it only
    claims and queues, the worker charges."""
    try:
        return await spend()
    except BillingError as error:
        if error.code is not ErrorCode.INSUFFICIENT_BALANCE:
            raise
        overdraft = await _client_overdraft(wallet)
        if overdraft is None:
            raise
        slot = await _ensure_slot(wallet)
        if slot.in_flight_payment_id is None and slot.retry_after is not None and slot.retry_after > clock.now():
            raise BillingError(
                ErrorCode.INSUFFICIENT_BALANCE,
                f"auto-billing was declined ({slot.last_failure or 'no reason given'}): usage beyond the balance"
                f" is refused until {slot.retry_after.isoformat()} or until credits are added",
                field="amount",
                reason="AUTO_BILLING_DECLINED",
            ) from error
        await _open_overdraft(wallet, overdraft)
        try:
            return await spend()
        except BillingError as again:
            if again.code is not ErrorCode.INSUFFICIENT_BALANCE:
                raise
            raise BillingError(
                ErrorCode.INSUFFICIENT_BALANCE,
                f"usage beyond the auto-billing overdraft of {overdraft} {wallet.unit} is refused"
                " until the credits being bought arrive",
                field="amount",
                reason="OVERDRAFT_EXCEEDED",
            ) from again


async def _client_overdraft(wallet: Wallet) -> int | None:
    """The overdraft of a workspace wallet whose auto-billing is on, else None."""
    if wallet.owner_kind is not OwnerKind.WORKSPACE or wallet.unit not in CLIENT_UNITS or wallet.partner_id is None:
        return None
    terms = settings_of(await Partner.get(id=wallet.partner_id))
    if not terms.for_clients or terms.client_overdraft <= 0:
        return None
    if not await CreditPackage.exists(partner_id=wallet.partner_id, unit=wallet.unit, status=PlanStatus.ACTIVE):
        return None  # it exists only while the partner sells packages of the unit
    return terms.client_overdraft


async def _open_overdraft(wallet: Wallet, overdraft: int) -> None:
    # The wallet's own limit is kept aside the first time and comes back when the purchase settles.
    rows = await sql.fetch("SELECT credit_limit FROM wallet WHERE id = $1", wallet.id)
    await sql.execute(
        "UPDATE wallet SET credit_limit = $1, updated_at = $2 WHERE id = $3 AND credit_limit < $1",
        overdraft,
        clock.now(),
        wallet.id,
    )
    await sql.execute(
        "UPDATE auto_billing_slot SET credit_limit_before = $1 WHERE wallet_id = $2 AND credit_limit_before IS NULL",
        int(rows[0]["credit_limit"]),
        wallet.id,
    )
    await _want(wallet)


async def _close_overdraft(wallet_id: int, *, settled: bool = True) -> None:
    """Back to the wallet's own limit, or to what is overdrawn now if that is more (the next usage
    that finds too few credits buys again). After a decline (``settled`` False) the own limit stays
    on record, so the next purchase's close restores it rather than the debt left by the decline."""
    rows = await sql.fetch("SELECT credit_limit_before FROM auto_billing_slot WHERE wallet_id = $1", wallet_id)
    before = rows[0]["credit_limit_before"] if rows else None
    if before is None:
        return
    await sql.execute(
        "UPDATE wallet SET credit_limit = CASE WHEN -balance > $1 THEN -balance ELSE $1 END, updated_at = $2 "
        "WHERE id = $3",
        int(before),
        clock.now(),
        wallet_id,
    )
    if settled:
        await sql.execute("UPDATE auto_billing_slot SET credit_limit_before = NULL WHERE wallet_id = $1", wallet_id)


# --- buying ------------------------------------------------------------------------------------


async def _pool(partner_id: int, unit: str) -> Wallet:
    return await opening.open_wallet(
        partner_id=partner_id, owner_kind=OwnerKind.PARTNER, owner_id=partner_id, unit=unit
    )


async def _ensure_slot(wallet: Wallet) -> AutoBillingSlot:
    await sql.execute(
        "INSERT INTO auto_billing_slot (created_at, partner_id, wallet_id, failures) VALUES ($1, $2, $3, 0)"
        " ON CONFLICT (wallet_id) DO NOTHING",
        clock.now(),
        wallet.partner_id,
        wallet.id,
    )
    return await AutoBillingSlot.get(wallet_id=wallet.id)


async def _want(wallet: Wallet) -> bool:
    """Claim the wallet's slot and queue the purchase, in the caller's transaction. False when a
    purchase is in flight (its settlement looks again) or backing off (a retry is queued)."""
    await _ensure_slot(wallet)
    if await sql.execute(_CLAIM, wallet.id, clock.now()) != 1:
        return False
    await work.schedule(BUY_JOB, {"wallet_id": wallet.id})
    return True


async def buy_job(job: dict[str, Any]) -> dict[str, Any]:
    payment = await buy(int(job["wallet_id"]))
    return {"payment_id": payment.id if payment else None, "status": payment.status.value if payment else None}


async def buy(wallet_id: int) -> Payment | None:
    """The worker's part: take the wallet's claimed slot, work out what is missing, make it one
    payment and charge it, outside any transaction. None when nothing had to be bought."""
    payment_id = await _prepare(wallet_id)
    if payment_id is None:
        return None
    return await top_ups.charge(payment_id)


class _CannotBuy(Exception):
    pass


async def _prepare(wallet_id: int) -> int | None:
    async with in_transaction("default"):
        if (await Wallet.get(id=wallet_id)).owner_kind is OwnerKind.WORKSPACE:
            await sql.execute(_LOCK_WALLET, wallet_id)  # a workspace's wallet before its slot
        if await sql.execute(_TAKE, wallet_id, clock.now()) != 1:
            # Not ours to take: free and backing off, or a purchase already made (a job run again
            # after a crash): that one is continued, never made twice.
            rows = await sql.fetch("SELECT in_flight_payment_id FROM auto_billing_slot WHERE wallet_id = $1", wallet_id)
            in_flight = rows[0]["in_flight_payment_id"] if rows else None
            return int(in_flight) if in_flight else None
        wallet = await Wallet.get(id=wallet_id)
        need = await _need(wallet)
        if need <= 0:
            await sql.execute(_FREE, 0, None, None, wallet_id, _PREPARING)
            if wallet.owner_kind is OwnerKind.WORKSPACE:
                await _close_overdraft(wallet_id)
            return None
        try:
            basket, currency, names = await _basket(wallet, need)
            if basket.price > MAX_AMOUNT:
                raise _CannotBuy(f"buying {need} {wallet.unit} would cost more than one payment can hold")
        except _CannotBuy as problem:
            await _failed(wallet, _PREPARING, str(problem), payment=None)
            return None
        payment = await _new_payment(wallet, basket, currency, names)
        await sql.execute(
            "UPDATE auto_billing_slot SET in_flight_payment_id = $1 WHERE wallet_id = $2 AND in_flight_payment_id = $3",
            payment.id,
            wallet_id,
            _PREPARING,
        )
    return int(payment.id)


async def _need(wallet: Wallet) -> int:
    if wallet.owner_kind is OwnerKind.WORKSPACE:
        return max(0, -int(wallet.balance))  # what usage overdrew
    assert wallet.partner_id is not None
    await deliver_pending(wallet.partner_id, wallet.unit)
    rows = await sql.fetch(
        "SELECT COALESCE(SUM(quantity), 0) AS owed FROM pool_grant WHERE partner_id = $1 AND unit = $2 AND status = $3",
        wallet.partner_id,
        wallet.unit,
        PoolGrantStatus.PENDING.value,
    )
    await wallet.refresh_from_db()
    return int(rows[0]["owed"]) - max(0, int(wallet.balance) + int(wallet.credit_limit))


async def _basket(wallet: Wallet, need: int) -> tuple[Basket, str, dict[int, str]]:
    """The optimiser's choice among the seller's ACTIVE packages of the unit (the platform's for a
    pool, the partner's for a workspace), in the partner's currency."""
    seller = None if wallet.owner_kind is OwnerKind.PARTNER else wallet.partner_id
    packages = await CreditPackage.filter(partner_id=seller, unit=wallet.unit, status=PlanStatus.ACTIVE)
    who = "the platform" if seller is None else "the partner"
    if not packages:
        raise _CannotBuy(f"{who} sells no {wallet.unit} packages")
    currencies = {p.currency for p in packages}
    partner = await Partner.get(id=wallet.partner_id)
    if seller is None and partner.parent_id is not None and partner.default_currency not in currencies:
        # Bought from its parent: a chain of resellers pays in one currency.
        raise _CannotBuy(f"{who} sells no {wallet.unit} packages in {partner.default_currency}")
    if partner.default_currency in currencies:
        currency = partner.default_currency
    elif len(currencies) == 1:
        currency = currencies.pop()
    else:
        raise _CannotBuy(f"{who} sells {wallet.unit} in {', '.join(sorted(currencies))}, none of them yours")
    # A pool pays what its partner pays for each package (a parent's price, for a partner reselling below one).
    above = (await plans.margins_down(partner.id))[1][:-1] if seller is None else []
    offers = [Offer(p.id, p.quantity, plans.stacked(above, p).amount) for p in packages if p.currency == currency]
    try:
        optimise = cheapest_exact if wallet.unit in EXACT_UNITS else cheapest_cover
        basket = optimise(offers, need)
    except ValueError as problem:  # no exact combination, or a catalogue too fine to optimise
        raise _CannotBuy(str(problem)) from problem
    return basket, currency, {p.id: p.name for p in packages}


async def _route(wallet: Wallet) -> tuple[GatewayConfig | None, SavedPaymentMethod | None]:
    """The payer's card saved with the collector's gateway (the platform's for a pool, the partner's
    for a workspace); else the collector's active configuration (none, or manual: recorded as
    collected; a real provider without a card declines)."""
    card = await top_ups.paying_card(wallet)
    if card is not None:
        return await GatewayConfig.get(id=card.gateway_config_id), card
    return await gateway_configs.active_config(await top_ups.collector_of(wallet)), None


def _payer_key(wallet: Wallet) -> str:
    if wallet.owner_kind is OwnerKind.PARTNER:
        return f"PARTNER:{wallet.partner_id}"
    return f"WORKSPACE:{wallet.workspace_id}"


async def _new_payment(wallet: Wallet, basket: Basket, currency: str, names: dict[int, str]) -> Payment:
    config, card = await _route(wallet)
    manual = config is None or config.provider == ManualGateway.name
    lines = [
        {"package_id": offer.key, "name": names.get(offer.key, ""), "quantity": offer.quantity, "count": count}
        for offer, count in basket.lines
    ]
    described = " + ".join(f"{line['count']} x {line['name'] or line['quantity']}" for line in lines)
    partner = await Partner.get(id=wallet.partner_id)
    from_pool = wallet.owner_kind is OwnerKind.WORKSPACE and partner.auto_billing_enabled
    # A pool of a partner reselling below another buys from its parent (checkout.Sale.collector_of_record);
    # what each level above owes for it is fixed now (platform_deductions.on_package_payment).
    parent = partner.parent_id if wallet.owner_kind is OwnerKind.PARTNER else None
    owed_above: list[dict[str, int]] = []
    if parent is not None:
        bought = {p.id: p for p in await CreditPackage.filter(id__in=[offer.key for offer, _ in basket.lines])}
        _, owed_above = await plans.package_purchase(
            partner.id, [(bought[offer.key], count) for offer, count in basket.lines]
        )
    return await payments.create_payment(
        partner_id=wallet.partner_id,
        payer_key=_payer_key(wallet),
        gateway_config_id=config.id if config else None,
        provider=config.provider if config is not None and not manual else ManualGateway.name,
        method=PaymentMethodKind.MANUAL if manual else PaymentMethodKind.CARD,
        amount=basket.price,
        currency=currency,
        purpose={
            "kind": PaymentPurpose.WALLET_CREDIT,
            "wallet_id": wallet.id,
            "quantity": basket.quantity,
            "auto_billing": True,
            "from_pool": from_pool,  # a workspace's credits come out of its partner's pool
            "card_id": card.id if card else None,
            "packages": lines,
            "price": basket.price,
            **({"collector": parent, "owed_above": owed_above} if parent else {}),
        },
        note=f"{NOTE}: {described} ({basket.quantity} {wallet.unit})",
        lines=[
            invoices.LineInput(
                names.get(offer.key) or f"{offer.quantity} {wallet.unit}",
                offer.price,
                count,
                "CreditPackage",
                offer.key,
            )
            for offer, count in basket.lines
        ],
    )


# --- answers ------------------------------------------------------------------------------------


async def purchase_settled(payment: Payment) -> None:
    """In the transaction that records a purchase's answer, whoever brought it (the charge, a
    webhook, the reconciler): deliver and tell, or free the slot with a back-off and tell."""
    if not payment.purpose.get("auto_billing"):
        return
    wallet = await Wallet.get(id=int(payment.purpose["wallet_id"]))
    if payment.status is not PaymentStatus.SUCCEEDED:
        await _failed(wallet, int(payment.id), payment.decline_reason or payment.status.value, payment=payment)
    elif wallet.owner_kind is OwnerKind.PARTNER:
        await _pool_bought(payment, wallet)
    elif not payment.purpose.get("from_pool"):
        await _client_done(payment)
    # A workspace's credits out of the pool are done when their grant is delivered (maybe already).


async def _pool_bought(payment: Payment, pool: Wallet) -> None:
    if await sql.execute(_FREE, 0, None, None, pool.id, payment.id) != 1:
        return
    assert pool.partner_id is not None
    delivered = await deliver_pending(pool.partner_id, pool.unit)
    await pool.refresh_from_db()
    shared = [{"workspace_id": g.workspace_id, "quantity": g.quantity, "grant_id": g.id} for g in delivered]
    await _performed(payment, pool, delivered=shared)
    if await PoolGrant.exists(partner_id=pool.partner_id, unit=pool.unit, status=PoolGrantStatus.PENDING):
        await _want(pool)  # grants made while this purchase ran


async def _client_done(payment: Payment) -> None:
    """A workspace's purchase has its credits: free its slot, close the overdraft, tell the partner."""
    wallet_id = int(payment.purpose["wallet_id"])
    if await sql.execute(_FREE, 0, None, None, wallet_id, payment.id) != 1:
        return
    await _close_overdraft(wallet_id)
    await _performed(payment, await Wallet.get(id=wallet_id))


async def _performed(payment: Payment, wallet: Wallet, **more: Any) -> None:
    """Auto-billing acted: one notice to the partner per purchase, once its units have arrived."""
    await audit.emit(
        "auto_billing.performed",
        wallet.partner_id,
        {
            "payer": payment.payer_key,
            "workspace_id": wallet.workspace_id,
            "wallet_id": wallet.id,
            "unit": wallet.unit,
            "quantity": payment.purpose["quantity"],
            "packages": payment.purpose.get("packages", []),
            "payment_id": payment.id,
            "amount": payment.amount,
            "currency": payment.currency,
            "balance": wallet.balance,  # the buyer's, after
            **more,
        },
    )


async def _failed(wallet: Wallet, in_flight: int, reason: str, *, payment: Payment | None) -> None:
    """Nothing is granted: free the slot with a back-off, close a workspace's overdraft, tell the
    partner; a pool tries again when the back-off is over."""
    if wallet.owner_kind is OwnerKind.WORKSPACE:
        await sql.execute(_LOCK_WALLET, wallet.id)  # a workspace's wallet before its slot
    slot = await AutoBillingSlot.get(wallet_id=wallet.id)
    failures = slot.failures + 1
    retry_after = clock.now() + top_ups.BACKOFF[min(failures, len(top_ups.BACKOFF)) - 1]
    if await sql.execute(_FREE, failures, retry_after, reason[:1000], wallet.id, in_flight) != 1:
        return
    if wallet.owner_kind is OwnerKind.WORKSPACE:
        await _close_overdraft(wallet.id, settled=False)
    else:
        await work.schedule(BUY_JOB, {"wallet_id": wallet.id}, run_at=retry_after)
    await audit.emit(
        "auto_billing.failed",
        wallet.partner_id,
        {
            "payer": _payer_key(wallet),
            "workspace_id": wallet.workspace_id,
            "wallet_id": wallet.id,
            "unit": wallet.unit,
            "payment_id": payment.id if payment else None,
            "amount": payment.amount if payment else None,
            "currency": payment.currency if payment else None,
            "reason": reason,
            "retry_after": retry_after.isoformat(),
        },
    )


# --- reading ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PoolState:
    unit: str
    balance: int
    waiting: int  # units owed to workspaces, not yet delivered
    buying: bool
    failures: int
    retry_after: datetime | None
    last_failure: str | None


@dataclass(frozen=True, slots=True)
class Overview:
    partner: Partner
    settings: Settings
    clients_active: bool  # for_clients, and the partner sells MESSAGE_CREDITS packages
    pools: list[PoolState]
    purchases: QuerySet[Payment]  # auto-billing's payments: the pool's and its clients'
    waiting: QuerySet[PoolGrant]  # what workspaces are still owed


async def overview(viewer: Viewer, *, partner_id: int) -> Overview:
    if viewer.kind == "WORKSPACE":
        raise BillingError(ErrorCode.FORBIDDEN, "auto-billing is the partner's")
    viewer.require(Permission.MANAGE_BILLING)
    partner = await tenancy.get_scoped(tenancy.partners(viewer), partner_id, "partner")
    terms = settings_of(partner)
    sells = await CreditPackage.exists(partner_id=partner.id, unit=Unit.MESSAGE_CREDITS.value, status=PlanStatus.ACTIVE)
    pools: list[PoolState] = []
    for unit in sorted(POOL_UNITS):  # every pool unit, bought into yet or not
        wallet = await Wallet.get_or_none(owner_key=f"PARTNER:{partner.id}", unit=unit)
        slot = await AutoBillingSlot.get_or_none(wallet_id=wallet.id) if wallet else None
        owed = await sql.fetch(
            "SELECT COALESCE(SUM(quantity), 0) AS owed FROM pool_grant WHERE partner_id = $1 AND unit = $2 "
            "AND status = $3",
            partner.id,
            unit,
            PoolGrantStatus.PENDING.value,
        )
        pools.append(
            PoolState(
                unit=unit,
                balance=int(wallet.balance) if wallet else 0,
                waiting=int(owed[0]["owed"]),
                buying=slot is not None and slot.in_flight_payment_id is not None,
                failures=slot.failures if slot else 0,
                retry_after=slot.retry_after if slot else None,
                last_failure=slot.last_failure if slot else None,
            )
        )
    purchases = Payment.filter(partner_id=partner.id, note__startswith=f"{NOTE}:")
    waiting = PoolGrant.filter(partner_id=partner.id, status=PoolGrantStatus.PENDING)
    return Overview(partner, terms, terms.for_clients and sells, pools, purchases, waiting)
