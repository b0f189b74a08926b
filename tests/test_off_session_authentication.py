"""An off-session card charge the bank wants authenticated (3-D Secure), end to end: GraphQL on a real
server, the real Stripe SDK against localstripe, the worker in this process, e-mail to a real SMTP server.

Real Stripe answers such a charge with HTTP 402 ``authentication_required`` and leaves the PaymentIntent
in ``requires_payment_method``; localstripe answers ``requires_action``. Either way the renewal's
payment becomes REQUIRES_ACTION, the payer is e-mailed a pay-now link in the partner's branding, and the
renewal waits; once the payer authenticates (here localstripe's ``POST
/v1/payment_intents/{id}/_authenticate``, what Stripe.js does in the browser) the period is paid once.
"""

from __future__ import annotations

import re
import secrets
from datetime import timedelta

import anyio
import httpx
import pytest

from billing.charges import pay_links, payments
from billing.core import clock
from billing.tenants import api_keys, branding
from models.enums import PaymentMethodKind, PaymentStatus, PeriodStatus, SubscriptionStatus
from models.payments import Payment, SavedPaymentMethod
from models.subscriptions import Subscription, SubscriptionPeriod
from schema.ids import to_global_id
from tests.factories import a_partner, a_workspace, partner_viewer
from tests.graphql import GraphQLClient
from tests.shop import CONFIGURE, CREATE_PLAN, buy
from tests.test_emails import Inbox, inbox  # noqa: F401
from whitebill.settings import load_settings
from whitebill.worker import Worker

pytestmark = pytest.mark.usefixtures("database")

VISA = "4242424242424242"
NEEDS_3DS = "4000002500003155"  # localstripe (like Stripe's test card) asks to authenticate every charge
STRIPE_KEY = "sk_test_" + secrets.token_hex(12)
STRIPE_SECRET = "whsec_" + secrets.token_hex(16)


async def settle(worker: Worker) -> None:
    for _ in range(20):
        if not await worker.tick():
            return


async def authenticate_at_stripe(localstripe, payment: Payment) -> None:
    """What Stripe.js does in the payer's browser, with the client secret whitebill handed out."""
    secret = payment.payer_action["client_secret"]
    await anyio.to_thread.run_sync(
        lambda: localstripe.api(
            "POST",
            f"/v1/payment_intents/{payment.provider_ref}/_authenticate",
            data={"client_secret": secret, "success": "true"},
        )
    )


async def test_an_off_session_renewal_that_needs_authentication_waits_for_the_payer_and_is_paid_once(
    server,
    localstripe,
    inbox: Inbox,  # noqa: F811
) -> None:
    partner = await a_partner("Agência Sol")
    await branding.update_branding(
        partner_viewer(partner),
        partner_id=partner.id,
        change=branding.BrandingChange(display_name="Sol Chatbots", primary_color="#ff8800"),
    )
    client = GraphQLClient(server.url, (await api_keys.create_key(partner_id=partner.id)).secret)
    made = await client.data(
        CONFIGURE, {"provider": "stripe", "methods": ["CARD"], "key": STRIPE_KEY, "secret": STRIPE_SECRET}
    )
    assert made["configureGateway"]["errors"] == [], made
    plan = (await client.data(CREATE_PLAN, {"name": "Pro", "amount": "99.90"}))["createPlan"]["plan"]["id"]
    workspace = await a_workspace(partner, email="dono@padaria.example")
    shop = {"client": client, "ws": to_global_id("Workspace", workspace.id)}
    worker = Worker(load_settings())

    # The first period, on-session, with the card saved for the renewals.
    card = await anyio.to_thread.run_sync(lambda: localstripe.create_card(VISA))
    bought = await buy(shop, {"planId": plan}, card=card, save=True)
    assert bought["payment"]["status"] == "SUCCEEDED", bought
    subscription = await Subscription.get(workspace_id=workspace.id)
    assert subscription.status is SubscriptionStatus.ACTIVE
    # The payer's bank starts asking for authentication on this card (its 3-D Secure twin at localstripe).
    saved = await SavedPaymentMethod.get(payer_key=f"WORKSPACE:{workspace.id}", replaced_at=None)
    strict = await anyio.to_thread.run_sync(lambda: localstripe.create_card(NEEDS_3DS))
    await anyio.to_thread.run_sync(
        lambda: localstripe.api(
            "POST", f"/v1/payment_methods/{strict}/attach", data={"customer": saved.provider_customer_ref}
        )
    )
    await SavedPaymentMethod.filter(id=saved.id).update(provider_method_ref=strict)
    inbox.messages.clear()

    # The renewal is charged off-session to the saved card, and the bank wants the payer.
    await clock.advance(subscription.current_period_end - clock.now())
    await settle(worker)
    second = await SubscriptionPeriod.get(subscription_id=subscription.id, number=2)
    renewal = await Payment.get(id=second.payment_id)
    assert renewal.status is PaymentStatus.REQUIRES_ACTION and second.status is PeriodStatus.DUE
    link = renewal.payer_action["url"]
    assert link == pay_links.link(renewal.reference) and link.startswith(load_settings().public_url)
    [letter] = [m for m in inbox.messages if "Confirm your payment" in m["Subject"]]
    assert letter["Subject"] == "[Sol Chatbots] Confirm your payment of 99.90 BRL"
    assert link in inbox.text(inbox.messages.index(letter))

    # The payer opens the link (the page at the server, in the partner's branding) ...
    path = link.removeprefix(load_settings().public_url)
    async with httpx.AsyncClient(base_url=server.url, timeout=10, follow_redirects=False) as http:
        page = await http.get(path)
        assert page.status_code == 200 and "Sol Chatbots" in page.text and "99.90 BRL" in page.text
        assert "Confirm with my bank" in page.text and page.headers["cache-control"] == "no-store"
        assert (await http.get(path[:-1] + ("0" if path[-1] != "0" else "1"))).status_code == 404  # a forged link
        asked = await http.post(path)
        assert asked.status_code == 303  # localstripe has no bank page to send the payer to: back to the page
        # ... authenticates with the bank (Stripe.js in the browser), and comes back.
        await authenticate_at_stripe(localstripe, renewal)
        back = await http.get(path + "/return")
        assert back.status_code == 303 and back.headers["location"] == path
        paid_page = await http.get(path)
        assert "Paid. Thank you." in paid_page.text
    for _ in range(3):  # the reconciler and the dunning days that follow change nothing more
        await clock.advance(timedelta(days=1))
        await settle(worker)

    renewal = await Payment.get(id=renewal.id)
    second = await SubscriptionPeriod.get(id=second.id)
    assert renewal.status is PaymentStatus.SUCCEEDED and second.status is PeriodStatus.PAID
    assert await Payment.filter(payer_key=f"WORKSPACE:{workspace.id}").count() == 2  # never charged again
    assert (await Subscription.get(id=subscription.id)).status is SubscriptionStatus.ACTIVE
    assert len([m for m in inbox.messages if "Confirm your payment" in m["Subject"]]) == 1
    assert re.fullmatch(r"[0-9a-f]{32}", link.rsplit("/", 1)[1])


async def test_a_pay_now_link_not_made_here_or_for_a_payment_that_does_not_wait_finds_or_does_nothing() -> None:
    from billing.sales import pay_now
    from tests.factories import a_partner as partner_of

    partner = await partner_of()
    workspace = await a_workspace(partner)
    paid = await payments.create_payment(
        partner_id=partner.id,
        payer_key=f"WORKSPACE:{workspace.id}",
        gateway_config_id=None,
        provider="manual",
        method=PaymentMethodKind.MANUAL,
        amount=990,
        currency="BRL",
        purpose={"kind": "WALLET_CREDIT", "wallet_id": 0, "quantity": 1},
    )
    assert await pay_now.find(paid.reference, "0" * 32) is None  # a forged MAC
    assert await pay_now.find("pay_" + "1" * 60 + "x", pay_links.mac("pay_" + "1" * 60 + "x")) is None  # too long
    assert await pay_now.find("pay_nothing", pay_links.mac("pay_nothing")) is None  # no such payment
    page = await pay_now.find(paid.reference, pay_links.mac(paid.reference))
    assert page is not None and page.can_continue is False and page.brand == partner.name
    assert await pay_now.go_on(page) is None  # it does not wait for its payer: nowhere to send them
    await pay_now.came_back(page)
    assert (await Payment.get(id=paid.id)).status is PaymentStatus.CREATED
