"""The pay-now page's side of billing: a payment that waits for its payer (a card charge the bank wants
authenticated) is found by its signed link (:mod:`billing.charges.pay_links`), and the payer is sent to
the provider's page to complete it on-session; what the provider says when they come back is folded in
like any other answer (so what the payment buys is delivered once)."""

from __future__ import annotations

from dataclasses import dataclass

from billing.charges import charging, gateway_configs, pay_links, payments
from gateways.base import CompletesOnSession, Outcome
from models.enums import PaymentStatus
from models.payments import GatewayConfig, Payment
from models.tenancy import Branding, Partner

RETURN = "/return"


@dataclass(frozen=True, slots=True)
class PayNow:
    payment: Payment
    brand: str
    colour: str
    support: str | None
    can_continue: bool  # the provider can send the payer to its page from here


async def find(reference: str, mac: str) -> PayNow | None:
    """The payment a pay-now link names, or None for a link that was not made here."""
    if len(reference) > 64 or not pay_links.verify(reference, mac):
        return None
    payment = await Payment.get_or_none(reference=reference)
    if payment is None:
        return None
    brand, colour, support = "whitebill", "#333333", None
    if payment.partner_id is not None:
        branding = await Branding.get_or_none(partner_id=payment.partner_id)
        partner = await Partner.get_or_none(id=payment.partner_id)
        brand = branding.display_name if branding else (partner.name if partner else brand)
        colour = (branding.primary_color if branding else None) or colour
        support = branding.support_email if branding else None
    gateway = await _gateway(payment)
    waiting = payment.status is PaymentStatus.REQUIRES_ACTION and isinstance(gateway, CompletesOnSession)
    return PayNow(payment, brand, colour, support, waiting)


async def _gateway(payment: Payment) -> object | None:
    if payment.gateway_config_id is None or payment.provider_ref is None:
        return None
    config = await GatewayConfig.get(id=payment.gateway_config_id)
    return gateway_configs.gateway_for(config)


async def go_on(page: PayNow) -> str | None:
    """Ask the provider to let the payer complete the payment now: the address to send them to, or None
    when there is nowhere to go (it settled, or the provider needs the partner's own frontend)."""
    payment = page.payment
    gateway = await _gateway(payment)
    if payment.status is not PaymentStatus.REQUIRES_ACTION or not isinstance(gateway, CompletesOnSession):
        return None
    assert payment.provider_ref is not None
    back = pay_links.link(payment.reference) + RETURN
    result = await gateway.continue_on_session(payment.provider_ref, back)
    if result.outcome is Outcome.REQUIRES_ACTION:
        url = (result.payer_action or {}).get("url")
        return url if isinstance(url, str) and url.startswith(("https://", "http://")) else None
    if result.outcome is not Outcome.UNKNOWN:
        await payments.apply_result(payment, result)
    return None


async def came_back(page: PayNow) -> None:
    """The payer is back from the provider's page: ask how the payment stands and fold it in."""
    payment = page.payment
    if payment.status is not PaymentStatus.REQUIRES_ACTION or payment.gateway_config_id is None:
        return
    config = await GatewayConfig.get(id=payment.gateway_config_id)
    await charging.resolve_unknown(payment, config, gateway_configs.gateway_for(config))
