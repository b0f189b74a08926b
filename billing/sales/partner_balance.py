"""The partner's centralised balance with the platform (flow D): topped up through the platform's
gateway, like any payment to the platform. The platform may also fund it by hand
(``wallets.grant_partner_balance``) and sets its credit limit (``wallets.set_credit_limit``).

A partner reselling below another holds its balance with its parent: it tops up through the parent's
gateway, the parent funds it by hand, and only the parent records a manual top-up as paid (nobody records
its own payment: that would credit its own balance).

What takes money out of it: the platform price of its clients' plans (``platform_deductions``),
delivered WhatsApp messages at the platform's rate (``usage``), and the partner's own plan.
"""

from __future__ import annotations

from billing.accounts import opening
from billing.core import idempotency, tenancy
from billing.core.errors import BillingError, ErrorCode
from billing.core.money import Entered, Money, check_amount, minor_of
from billing.core.tenancy import Viewer
from billing.sales import checkout
from models.enums import OwnerKind, PaymentMethodKind, PaymentPurpose, Permission
from models.payments import Payment
from models.tenancy import Partner


async def top_up(
    viewer: Viewer,
    *,
    partner_id: int,
    amount: Entered,
    method: PaymentMethodKind,
    idempotency_key: str,
    card_token: str | None = None,
    saved_method_id: int | None = None,
    save_card: bool = False,
) -> Payment:
    """The partner pays ``amount`` (in its currency) to the platform; the balance
    grows by it when the payment succeeds (at once for a card, on the webhook for boleto or pix,
    when the platform records a manual one). Retried with the same key, one payment."""
    viewer.require(Permission.MANAGE_BILLING)
    if viewer.kind == "WORKSPACE":
        raise BillingError(ErrorCode.FORBIDDEN, "the balance is the partner's")
    partner: Partner = await tenancy.get_scoped(tenancy.partners(viewer), partner_id, "partner")
    paid = check_amount(minor_of(amount, partner.default_currency))
    checkout.check_card(method, card_token, saved_method_id)
    # Each level's balance is with its parent: the platform's direct partners pay the platform, a partner
    # reselling below another pays that one, through its gateway.
    sale = checkout.Sale(f"PARTNER:{partner.id}", partner.id, partner.parent_id)
    currency = partner.default_currency

    async def act() -> int:
        balance = await opening.open_wallet(
            partner_id=partner.id, owner_kind=OwnerKind.PARTNER, owner_id=partner.id, unit=currency
        )
        purpose = {"kind": PaymentPurpose.WALLET_CREDIT, "wallet_id": balance.id, "quantity": paid}
        payment = await checkout.open_payment(
            viewer,
            sale,
            Money(paid, currency),
            purpose,
            method=method,
            saved_method_id=saved_method_id,
            save_card=save_card,
        )
        return int(payment.id)

    payment_id = await idempotency.run_once(
        scope=viewer.scope,
        operation="balance.top_up",
        key=idempotency_key,
        request={"partner": partner_id, "amount": paid, "method": method.value},
        action=act,
        encode=int,
        decode=int,
    )
    return await checkout.collect(
        await Payment.get(id=payment_id),
        sale,
        method,
        card_token=card_token,
        saved_method_id=saved_method_id,
        save_card=save_card,
    )
