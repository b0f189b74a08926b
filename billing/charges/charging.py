"""Collecting a committed payment through its gateway configuration, outside any transaction.

Everything that talks to a provider about a payment goes through here: the first charge, a retry
after an unknown outcome (which first asks the provider whether it already has the payment, by our
reference), the reconciler's re-asking, and keeping the reusable card a charge or webhook returns.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime, timedelta

from tortoise.expressions import Subquery
from tortoise.queryset import QuerySet

from billing.charges import gateway_configs, payments
from billing.core import audit, clock, sql
from gateways.base import ChargeResult, Gateway, Outcome, Payer, SavedMethod
from models.enums import PaymentMethodKind, PaymentStatus
from models.payments import GatewayConfig, Payment, SavedPaymentMethod
from models.tenancy import Partner, Workspace

S = PaymentStatus
OPEN = (S.CREATED, S.PENDING, S.UNKNOWN, S.REQUIRES_ACTION)
# When the reconciler asks again about an open payment: quickly at first (a card's answer was lost),
# then every day (a boleto is paid days later). After the last step it keeps asking daily until
# GIVE_UP_AFTER has passed since the payment was made.
BACKOFF = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=15),
    timedelta(hours=1),
    timedelta(hours=4),
    timedelta(hours=12),
    timedelta(days=1),
)
GIVE_UP_AFTER = timedelta(days=35)


async def payer_of(payer_key: str, customer_ref: str | None = None) -> Payer:
    """Who pays, as a provider sees them: a workspace (a partner's client) or a partner."""
    kind, _, raw_id = payer_key.partition(":")
    if kind == "WORKSPACE":
        workspace = await Workspace.get(id=int(raw_id))
        return Payer(payer_key, workspace.name, workspace.owner_email, workspace.tax_id, customer_ref)
    partner = await Partner.get(id=int(raw_id))
    return Payer(payer_key, partner.name, None, partner.tax_id, customer_ref)


async def customer_payer(config: GatewayConfig, gateway: Gateway, payer_key: str) -> Payer:
    """The payer with its customer at this configuration's provider (made once, then remembered)."""
    ref = await gateway_configs.customer_ref(config, gateway, await payer_of(payer_key))
    return await payer_of(payer_key, ref)


def saved_methods(payer_key: str) -> QuerySet[SavedPaymentMethod]:
    """A payer's saved methods in use: each one saved replaces the payer's earlier ones."""
    return SavedPaymentMethod.filter(payer_key=payer_key, replaced_at=None)


async def card_on_file(payer_key: str, collector_id: int | None) -> SavedPaymentMethod | None:
    """The saved card that pays for this payer, off-session: its newest card in use saved with a
    gateway configuration of the collector (the partner, for its clients; None, the platform, for
    partners), whichever of them saved it (a collector that switched provider keeps charging it
    through the old configuration until the payer saves a new card). None: no card on file."""
    collectors = GatewayConfig.filter(partner_id=collector_id).values("id")  # None: IS NULL, the platform's
    return (
        await saved_methods(payer_key)
        .filter(kind=PaymentMethodKind.CARD, gateway_config_id__in=Subquery(collectors))
        .order_by("-id")
        .first()
    )


async def keep_saved_method(
    *, config_id: int, partner_id: int | None, payer_key: str, saved: SavedMethod, remote_ip: str | None = None
) -> SavedPaymentMethod:
    """Remember a reusable method; it replaces the payer's earlier ones (whatever their provider). The
    configuration saves cards again, if it had stopped."""
    await sql.execute(
        "UPDATE gateway_config SET card_saving_unavailable_since = NULL"
        " WHERE id = $1 AND card_saving_unavailable_since IS NOT NULL",
        config_id,
    )
    existing = await SavedPaymentMethod.get_or_none(
        gateway_config_id=config_id, payer_key=payer_key, provider_method_ref=saved.provider_method_ref
    )
    now = clock.now()
    await (
        saved_methods(payer_key)
        .filter(partner_id=partner_id)
        .exclude(id=existing.id if existing else 0)
        .update(replaced_at=now, is_default=False)
    )
    if existing is not None:
        if existing.replaced_at is not None:
            existing.replaced_at, existing.is_default = None, True
            await existing.save(update_fields=["replaced_at", "is_default"])
        return existing
    return await SavedPaymentMethod.create(
        partner_id=partner_id,
        gateway_config_id=config_id,
        payer_key=payer_key,
        kind=saved.kind,
        provider_customer_ref=saved.provider_customer_ref,
        provider_method_ref=saved.provider_method_ref,
        brand=saved.brand,
        last4=saved.last4,
        is_default=True,
        remote_ip=remote_ip,
    )


CARD_SAVING_UNAVAILABLE = "gateway.card_saving_unavailable"
CARD_NOT_SAVED = "payment.card_not_saved"


async def card_not_kept(payment: Payment) -> None:
    """A card payment asked to keep its card succeeded, and the provider gave no reusable token (Asaas
    gives one only to accounts approved for card tokenization): the payment stands, the payer is told the
    card was not kept (renewals will send a link to pay), and the partner, once, that its configuration
    cannot keep cards."""
    if payment.gateway_config_id is None:
        return
    now = clock.now()
    first = await sql.execute(
        "UPDATE gateway_config SET card_saving_unavailable_since = $1"
        " WHERE id = $2 AND card_saving_unavailable_since IS NULL",
        now,
        payment.gateway_config_id,
    )
    if first == 1:
        config = await GatewayConfig.get(id=payment.gateway_config_id)
        await audit.emit(
            CARD_SAVING_UNAVAILABLE,
            payment.partner_id,
            {"gateway_config_id": config.id, "provider": config.provider, "since": now.isoformat()},
        )
    await audit.emit(
        CARD_NOT_SAVED,
        payment.partner_id,
        {"payment_id": payment.id, "payer_key": payment.payer_key, "gateway_config_id": payment.gateway_config_id},
    )


def next_check(payment: Payment, attempts: int, now: datetime) -> datetime | None:
    if now - payment.created_at > GIVE_UP_AFTER:
        return None
    return now + BACKOFF[min(attempts, len(BACKOFF) - 1)]


async def schedule_check(payment: Payment) -> None:
    """Open payments are asked about again later; settled ones are not."""
    await payment.refresh_from_db()
    when = next_check(payment, payment.check_attempts, clock.now()) if payment.status in OPEN else None
    await sql.execute("UPDATE payment SET next_check_at = $1 WHERE id = $2", when, payment.id)
    payment.next_check_at = when


async def _record(payment: Payment, config: GatewayConfig, result: ChargeResult, *, keep: bool = False) -> Payment:
    was = payment.status
    payment = await payments.apply_result(payment, result)
    if result.saved_method is not None and payment.status is S.SUCCEEDED:
        await keep_saved_method(
            config_id=config.id,
            partner_id=payment.partner_id,
            payer_key=payment.payer_key,
            saved=result.saved_method,
            remote_ip=payment.remote_ip,
        )
    elif keep and was is not S.SUCCEEDED and payment.status is S.SUCCEEDED:
        await card_not_kept(payment)
    await schedule_check(payment)
    return payment


async def resolve_unknown(payment: Payment, config: GatewayConfig, gateway: Gateway) -> bool:
    """Ask the provider about a payment whose charge may or may not have reached it.

    True when the provider answered about it (the payment moved accordingly). A provider that
    certainly never received it leaves a CREATED or UNKNOWN payment NOT_ATTEMPTED: safe to charge."""
    if payment.provider_ref:
        result = await _ask(gateway.get_payment(payment.provider_ref))
    else:
        payer = await customer_payer(config, gateway, payment.payer_key)
        found = await _ask_find(gateway, payment.reference, payer)
        if found is None:
            await payments.move(payment.id, S.NOT_ATTEMPTED, reason="the provider has no such payment")
            await payment.refresh_from_db()
            return False
        result = found
    if result.outcome is Outcome.UNKNOWN:
        return False
    await _record(payment, config, result)
    return True


async def _ask(call: Awaitable[ChargeResult]) -> ChargeResult:
    try:
        return await call
    except Exception as exc:  # the provider is down or answered nonsense: still unknown
        return ChargeResult(Outcome.UNKNOWN, decline_reason=type(exc).__name__)


async def _ask_find(gateway: Gateway, reference: str, payer: Payer) -> ChargeResult | None:
    try:
        return await gateway.find_payment(reference, payer)
    except Exception as exc:
        return ChargeResult(Outcome.UNKNOWN, decline_reason=type(exc).__name__)


async def collect(
    payment: Payment,
    *,
    saved_method: SavedPaymentMethod | None = None,
    method_token: str | None = None,
    save_method: bool = False,
    description: str = "",
) -> Payment:
    """Charge a committed gateway payment, or continue one a timeout or crash left open.

    A payment that may already be at the provider (UNKNOWN, or CREATED from a call that died
    after committing it) is looked up by our reference first, so it is never charged twice."""
    config = await GatewayConfig.get(id=payment.gateway_config_id)
    gateway = gateway_configs.gateway_for(config)
    if payment.status is S.UNKNOWN or (payment.status is S.CREATED and payment.check_attempts > 0):
        await resolve_unknown(payment, config, gateway)
        await payment.refresh_from_db()
    await payment.refresh_from_db()
    if payment.status not in (S.CREATED, S.NOT_ATTEMPTED):
        return payment
    # From here on the provider may receive it: a crash before the answer is stored leaves a
    # CREATED payment marked as attempted, which the next call or the reconciler looks up first.
    # The conditional update is also a claim: of two callers racing on one payment, one charges.
    claimed = await sql.execute(
        "UPDATE payment SET check_attempts = check_attempts + 1, next_check_at = $1 "
        "WHERE id = $2 AND status = $3 AND check_attempts = $4",
        clock.now() + BACKOFF[0],
        payment.id,
        payment.status.value,
        payment.check_attempts,
    )
    if claimed != 1:
        await payment.refresh_from_db()
        return payment
    try:
        payer = await customer_payer(config, gateway, payment.payer_key)
    except Exception as exc:  # no charge was sent: safe to retry once the cause is fixed
        # An adapter raises ValueError for what the payer must fix (a missing tax id), in words fit to show.
        reason = (
            str(exc) if isinstance(exc, ValueError) else f"the provider could not be reached ({type(exc).__name__})"
        )
        return await _record(payment, config, ChargeResult(Outcome.NOT_ATTEMPTED, decline_reason=reason))
    payment, result = await payments.charge(
        gateway,
        payment,
        payer,
        saved_method_ref=saved_method.provider_method_ref if saved_method else None,
        method_token=method_token,
        save_method=save_method,
        off_session=saved_method is not None,
        description=description,
        remote_ip=saved_method.remote_ip if saved_method is not None else None,
    )
    return await _record(payment, config, result, keep=save_method and saved_method is None)
