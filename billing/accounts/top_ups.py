"""Watching balances: low-balance notices and automatic top-ups.

After a wallet's balance changes, :func:`watch` does two things, each at most once per crossing:

- below its ``low_balance_threshold`` it emits ``wallet.low_balance`` (re-armed when the balance is
  back at or above the threshold);
- below its auto top-up ``threshold`` it claims the wallet's single top-up slot with a conditional
  update and queues the charge of the configured package. While a top-up is in flight (pending
  counts) no other starts, so one crossing never charges twice; after a decline the next attempt
  waits (1 hour, then 6, then a day) and the partner is told.

Charges run outside any transaction: by a job, or by :func:`top_up_now` when a renewal needs the
points before it can go on.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from billing.accounts.opening import named_wallet
from billing.catalog import plans
from billing.charges import charging, gateway_configs, payments
from billing.core import audit, clock, observe, sql, work
from billing.core.errors import BillingError, ErrorCode
from billing.core.money import Entered, Money, minor_of
from billing.core.tenancy import Viewer
from gateways.manual import ManualGateway
from models.catalog import CreditPackage
from models.enums import OwnerKind, PaymentMethodKind, PaymentPurpose, PaymentStatus, Permission, PlanStatus
from models.payments import GatewayConfig, Payment, SavedPaymentMethod
from models.tenancy import Partner
from models.wallets import AutoTopUp, Wallet

CHARGE_JOB = "wallet.top_up"
BACKOFF = (timedelta(hours=1), timedelta(hours=6), timedelta(days=1))

_NOTIFY_LOW = (
    "UPDATE wallet SET low_balance_notified = TRUE WHERE id = $1 AND low_balance_threshold IS NOT NULL "
    "AND balance < low_balance_threshold AND NOT low_balance_notified"
)
_REARM_LOW = (
    "UPDATE wallet SET low_balance_notified = FALSE WHERE id = $1 AND low_balance_notified "
    "AND (low_balance_threshold IS NULL OR balance >= low_balance_threshold)"
)
_CLAIM = (
    "UPDATE auto_top_up SET in_flight_payment_id = $1 WHERE wallet_id = $2 AND enabled "
    "AND in_flight_payment_id IS NULL AND (retry_after IS NULL OR retry_after <= $3)"
)


def payer_key_of(wallet: Wallet) -> str | None:
    if wallet.owner_kind is OwnerKind.WORKSPACE:
        return f"WORKSPACE:{wallet.workspace_id}"
    if wallet.owner_kind is OwnerKind.PARTNER:
        return f"PARTNER:{wallet.partner_id}"
    return None  # a project's credit is assigned by its partner, not bought


async def collector_of(wallet: Wallet) -> int | None:
    """Who collects what a wallet's owner pays: its partner for a workspace; for a partner, the platform
    (None), or the parent a partner reselling below another buys the platform's packages from."""
    if wallet.owner_kind is OwnerKind.WORKSPACE:
        return wallet.partner_id
    return (await Partner.get(id=wallet.partner_id)).parent_id


async def paying_card(wallet: Wallet) -> SavedPaymentMethod | None:
    """The card that pays for credit bought for a wallet (an auto top-up, a top-up bought now, an
    auto-billing purchase): its payer's card on file with the wallet's collector, if any."""
    payer_key = payer_key_of(wallet)
    return await charging.card_on_file(payer_key, await collector_of(wallet)) if payer_key else None


STATE = (  # what watch decides on: one row per wallet, parameter $1 the wallet's id
    "SELECT w.balance, w.low_balance_threshold, w.low_balance_notified, a.threshold, a.in_flight_payment_id "
    "FROM wallet w LEFT JOIN auto_top_up a ON a.wallet_id = w.id AND a.enabled WHERE w.id = $1"
)


async def watch(wallet_id: int, state: dict[str, Any] | None = None) -> None:
    """Call after a wallet's balance changed (inside or outside the transaction that changed it).
    One read decides (``state``, the wallet's row of :data:`STATE`, when the caller read it after
    the change: then none); a write follows only when a notice or a top-up is due."""
    if state is None:
        rows = await sql.fetch(STATE, wallet_id)
        if not rows:
            return
        state = rows[0]
    balance, threshold = int(state["balance"]), state["low_balance_threshold"]
    if threshold is not None and balance < threshold and not state["low_balance_notified"]:
        if await sql.execute(_NOTIFY_LOW, wallet_id):
            wallet = await Wallet.get(id=wallet_id)
            await audit.emit(
                "wallet.low_balance",
                wallet.partner_id,
                {
                    "wallet_id": wallet.id,
                    "owner": wallet.owner_key,
                    "unit": wallet.unit,
                    "balance": wallet.balance,
                    "threshold": wallet.low_balance_threshold,
                },
            )
    elif state["low_balance_notified"] and (threshold is None or balance >= threshold):
        await sql.execute(_REARM_LOW, wallet_id)
    top_up_below = state["threshold"]
    if top_up_below is not None and state["in_flight_payment_id"] is None and balance < top_up_below:
        await _start(wallet_id)


async def _start(wallet_id: int, *, only_below_threshold: bool = True) -> int | None:
    """Claim the wallet's top-up slot and make its payment; None if there is no rule, the slot is
    taken (a top-up in flight, or backing off after a decline), or the balance is high enough."""
    rule = await AutoTopUp.get_or_none(wallet_id=wallet_id, enabled=True, in_flight_payment_id=None)
    if rule is None:
        return None
    wallet = await Wallet.get(id=wallet_id)
    if only_below_threshold and wallet.balance >= rule.threshold:
        return None
    try:
        async with observe.savepoint():  # inside a caller's transaction: what _SlotTaken undoes is not reported
            payment = await _new_payment(wallet, rule)
            if payment is None:
                return None
            if await sql.execute(_CLAIM, payment.id, wallet_id, clock.now()) != 1:
                raise _SlotTaken  # undo this payment
            await work.schedule(CHARGE_JOB, {"payment_id": payment.id}, dedupe_key=f"top-up:{payment.id}")
    except _SlotTaken:
        return None
    return int(payment.id)


class _SlotTaken(Exception):
    pass


async def _route(wallet: Wallet) -> tuple[GatewayConfig | None, SavedPaymentMethod | None]:
    """The payer's card on file through the configuration that saved it; else the collector's
    configuration if it is manual (the partner bills its client by hand, as agreed) or takes cards on
    the provider's own page (the payer is sent a link to pay); else nothing."""
    card = await paying_card(wallet)
    if card is not None:
        return await GatewayConfig.get(id=card.gateway_config_id), card
    config = await gateway_configs.active_config(await collector_of(wallet))
    if config is None or config.provider == ManualGateway.name or _pays_by_link(config):
        return config, None
    return None, None


def _pays_by_link(config: GatewayConfig) -> bool:
    return (
        PaymentMethodKind.CARD.value in config.methods
        and gateway_configs.gateway_for(config).capabilities().hosted_card_page
    )


async def _new_payment(wallet: Wallet, rule: AutoTopUp) -> Payment | None:
    payer_key = payer_key_of(wallet)
    package = await CreditPackage.get(id=rule.package_id)
    if payer_key is None or package.status is not PlanStatus.ACTIVE:  # an archived package is never bought
        return None
    config, card = await _route(wallet)
    collector = await collector_of(wallet)
    price, owed_above = Money(package.price_amount, package.currency), list[dict[str, int]]()
    if collector is not None and wallet.owner_kind is OwnerKind.PARTNER and wallet.partner_id is not None:
        price, owed_above = await plans.package_purchase(wallet.partner_id, [(package, 1)])
    return await payments.create_payment(
        partner_id=wallet.partner_id,
        payer_key=payer_key,
        gateway_config_id=config.id if config else None,
        provider=config.provider if config else ManualGateway.name,
        method=PaymentMethodKind.CARD
        if card or (config and config.provider != ManualGateway.name)
        else PaymentMethodKind.MANUAL,
        amount=price.amount,
        currency=price.currency,
        purpose={
            "kind": PaymentPurpose.WALLET_CREDIT,
            "wallet_id": wallet.id,
            "quantity": package.quantity,
            "package_id": package.id,
            "packages": plans.package_lines(package, 1),
            "price": price.amount,
            "auto_top_up": True,
            "card_id": card.id if card else None,
            # A partner reselling below another buys from its parent (see checkout.Sale.collector_of_record),
            # and what each level above owes for it is fixed now (platform_deductions.on_package_payment).
            **({"collector": collector} if wallet.owner_kind is OwnerKind.PARTNER and collector else {}),
            **({"owed_above": owed_above} if owed_above else {}),
        },
        note=f"auto top-up: {package.name}",
    )


async def charge(payment_id: int) -> Payment:
    """Collect a claimed top-up; then free the wallet's slot (a pending one keeps it until it settles)."""
    payment = await Payment.get(id=payment_id)
    card_id = payment.purpose.get("card_id")
    if payment.status in (PaymentStatus.CREATED, PaymentStatus.UNKNOWN, PaymentStatus.NOT_ATTEMPTED):
        if payment.purpose.get("collector") is not None and (
            payment.gateway_config_id is None or payment.provider == ManualGateway.name
        ):
            # A parent collects from a partner reselling below it by hand: the parent says when it was paid
            # (recordPayment), since every level above is debited for it then.
            await payments.move(payment.id, PaymentStatus.PENDING, reason="to be recorded by the collecting parent")
        elif payment.gateway_config_id is None or payment.provider == ManualGateway.name:
            # No provider to ask: the partner collects this top-up its own way, as with any manual sale.
            await payments.move(
                payment.id,
                PaymentStatus.SUCCEEDED,
                reason="charged to the client's account, collected by hand",
                provider_ref=f"manual_{payment.reference}",
            )
        else:
            card = await SavedPaymentMethod.get_or_none(id=card_id) if card_id else None
            if card is not None:
                await charging.collect(payment, saved_method=card, description="auto top-up")
            elif not card_id:  # no card kept: a link to the provider's card page, e-mailed (payment.pending)
                await charging.collect(payment, description="auto top-up")
            else:
                await payments.move(payment.id, PaymentStatus.DECLINED, reason="no card on file")
        await payment.refresh_from_db()
    return payment


async def settled(payment: Payment) -> None:
    """Free the slot of a top-up that has its answer, in the transaction that records it, whoever
    brought the answer (the charge, a webhook, the reconciler); count declines and back off."""
    if not payment.purpose.get("auto_top_up"):
        return
    wallet_id = int(payment.purpose["wallet_id"])
    rule = await AutoTopUp.get_or_none(wallet_id=wallet_id, in_flight_payment_id=payment.id)
    if rule is None:
        return
    succeeded = payment.status is PaymentStatus.SUCCEEDED
    failures = 0 if succeeded else rule.failures + 1
    retry_after = None if succeeded else clock.now() + BACKOFF[min(failures, len(BACKOFF)) - 1]
    freed = await sql.execute(
        "UPDATE auto_top_up SET in_flight_payment_id = NULL, failures = $1, retry_after = $2 "
        "WHERE id = $3 AND in_flight_payment_id = $4",
        failures,
        retry_after,
        rule.id,
        payment.id,
    )
    if freed != 1:
        return
    await audit.emit(
        "wallet.topped_up" if succeeded else "wallet.top_up_failed",
        payment.partner_id,
        {
            "wallet_id": wallet_id,
            "payment_id": payment.id,
            "quantity": payment.purpose["quantity"],
            "amount": payment.amount,
            "currency": payment.currency,
            "reason": payment.decline_reason,
            "retry_after": retry_after.isoformat() if retry_after else None,
        },
    )


async def charge_job(job: dict[str, Any]) -> dict[str, Any]:
    payment = await charge(int(job["payment_id"]))
    return {"status": payment.status.value}


async def top_up_now(wallet_id: int) -> bool:
    """A renewal is short: start (or join) the wallet's top-up, whatever its threshold, and wait for
    its answer. True when the points arrived. Never call inside a transaction: the provider is called."""
    payment_id = await _start(wallet_id, only_below_threshold=False)
    if payment_id is None:
        rule = await AutoTopUp.get_or_none(wallet_id=wallet_id)
        payment_id = rule.in_flight_payment_id if rule else None
    if payment_id is None:
        return False
    payment = await charge(int(payment_id))
    return payment.status is PaymentStatus.SUCCEEDED


async def configure(
    viewer: Viewer,
    *,
    package_id: int,
    threshold: Entered,
    enabled: bool,
    wallet_id: int | None = None,
    workspace_id: int | None = None,
    unit: str | None = None,
) -> AutoTopUp:
    """Turn a wallet's auto top-up on or off (the partner for its clients, or a workspace for itself);
    ``threshold`` is in the wallet's unit. The wallet: by its id, or a workspace's of ``unit``."""
    if viewer.kind != "WORKSPACE":
        viewer.require(Permission.MANAGE_BILLING)
    wallet = await named_wallet(viewer, wallet_id=wallet_id, workspace_id=workspace_id, unit=unit)
    below = minor_of(threshold, wallet.unit, "threshold")
    if payer_key_of(wallet) is None:
        raise BillingError(ErrorCode.INVALID_INPUT, "a project's credit is assigned, not bought", field="walletId")
    seller = wallet.partner_id if wallet.owner_kind is OwnerKind.WORKSPACE else None
    buyer = await Partner.get(id=wallet.partner_id)
    chain_currency = buyer.default_currency if seller is None and buyer.parent_id is not None else None
    package = await CreditPackage.get_or_none(id=package_id, partner_id=seller, unit=wallet.unit)
    if package is None or package.status is not PlanStatus.ACTIVE:
        raise BillingError(ErrorCode.NOT_FOUND, f"no {wallet.unit} package of that id is sold here", field="packageId")
    if chain_currency is not None and package.currency != chain_currency:
        raise BillingError(
            ErrorCode.CURRENCY_MISMATCH,
            f"a partner reselling below another buys in its chain's currency, {chain_currency}",
            field="packageId",
        )
    if below < 0:
        raise BillingError(ErrorCode.INVALID_AMOUNT, "the threshold is zero or more", field="threshold")
    rule, _ = await AutoTopUp.get_or_create(
        wallet_id=wallet.id,
        defaults={
            "partner_id": wallet.partner_id,
            "package_id": package.id,
            "threshold": below,
            "enabled": enabled,
        },
    )
    rule.package_id, rule.threshold, rule.enabled = package.id, below, enabled
    if enabled:
        rule.failures, rule.retry_after = 0, None  # turning it on again clears the back-off
    await rule.save(update_fields=["package_id", "threshold", "enabled", "failures", "retry_after"])
    await audit.record(
        actor=viewer.actor,
        action="wallet.auto_top_up",
        target_type="Wallet",
        target_id=wallet.id,
        partner_id=wallet.partner_id,
        after={
            "package_id": audit.global_id("CreditPackage", package.id),
            "threshold": audit.quantity(below, wallet.unit),
            "enabled": enabled,
        },
    )
    if enabled:
        await watch(wallet.id)
    return rule


async def set_low_balance_threshold(
    viewer: Viewer,
    *,
    threshold: Entered | None,
    wallet_id: int | None = None,
    workspace_id: int | None = None,
    unit: str | None = None,
) -> Wallet:
    """Below ``threshold`` (in the wallet's unit; None: never) a wallet.low_balance notice is sent. The
    wallet: by its id, or a workspace's of ``unit``."""
    if viewer.kind != "WORKSPACE":
        viewer.require(Permission.MANAGE_BILLING)
    wallet = await named_wallet(viewer, wallet_id=wallet_id, workspace_id=workspace_id, unit=unit)
    below = minor_of(threshold, wallet.unit, "threshold") if threshold is not None else None
    if below is not None and below < 0:
        raise BillingError(ErrorCode.INVALID_AMOUNT, "the threshold is zero or more", field="threshold")
    await Wallet.filter(id=wallet.id).update(low_balance_threshold=below, low_balance_notified=False)
    await watch(wallet.id)
    return await Wallet.get(id=wallet.id)
