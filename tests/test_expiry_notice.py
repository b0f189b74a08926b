"""The "plan about to expire" notice, under the movable clock: a plan that will not renew (auto-renew
off, canceled at period end, validity or maximum renewals reached) is announced 7 days before it ends
(WHITEBILL_EXPIRY_NOTICE_DAYS), once per period however many workers look, to the partner's webhook
endpoints and by e-mail to the workspace's owner in the partner's branding."""

from __future__ import annotations

import asyncio
import json

import pytest

from billing.core.ids import to_global_id
from billing.outbox import partner_webhooks
from billing.subscriptions import expiring_plans, lifecycle
from billing.tenants import branding
from models.enums import SubscriptionStatus
from models.operations import OutboxEvent
from tests.factories import a_partner, a_workspace, partner_viewer
from tests.test_emails import deliver_outbox, inbox  # noqa: F401
from tests.test_partner_webhooks import receiving
from tests.test_renewals import a_plan, assigned, at, pay_due, utc
from whitebill.settings import configure_domain, load_settings

pytestmark = pytest.mark.usefixtures("database")


async def notices() -> list[dict]:
    return [e.payload for e in await OutboxEvent.filter(event_type=expiring_plans.EVENT).order_by("id")]


async def test_auto_renew_off_is_announced_seven_days_before_the_end_once_by_mail_and_webhook(inbox) -> None:  # noqa: F811
    partner = await a_partner("Agência Sol")
    viewer = partner_viewer(partner)
    await branding.update_branding(
        viewer,
        partner_id=partner.id,
        change=branding.BrandingChange(display_name="Sol Chatbots", support_email="ajuda@sol.example"),
    )
    workspace = await a_workspace(partner, email="dono@padaria.example")
    await at(utc(2027, 1, 10, 9))
    subscription = await assigned(partner, workspace, await a_plan(partner, "Pro"))  # ends Feb 10, 09:00
    await lifecycle.set_auto_renew(viewer, workspace_id=workspace.id, enabled=False)
    await deliver_outbox()  # the first period's receipt, recorded as paid by hand: nothing else yet
    assert [m["Subject"] for m in inbox.messages] == [f"[Sol Chatbots] Receipt {partner.slug.upper()}-R-2027-000001"]
    inbox.messages.clear()
    with receiving() as (receiver, url):
        await partner_webhooks.create_endpoint(viewer, partner_id=partner.id, url=url + "/ok", events=[])
        await at(utc(2027, 2, 3, 8, 59))  # 7 days and a minute before: not yet
        await deliver_outbox()
        assert await notices() == [] and inbox.messages == []

        await at(utc(2027, 2, 3, 9))
        await deliver_outbox()
        await deliver_outbox()  # other workers, later looks: still one notice
        await at(utc(2027, 2, 6))
        await deliver_outbox()
        assert await notices() == [
            {
                "subscription_id": subscription.id,
                "workspace_id": workspace.id,
                "plan_id": subscription.plan_id,
                "plan_name": "Pro",
                "ends_at": "2027-02-10T09:00:00+00:00",
                "days_left": 7,
                "ending_status": "CANCELED",
                "reason": "auto-renew is off",
            }
        ]
        [mail] = inbox.messages
        assert (mail["To"], mail["Subject"], mail["Reply-To"]) == (
            "dono@padaria.example",
            "[Sol Chatbots] Your plan ends on 2027-02-10",
            "ajuda@sol.example",
        )
        assert "Pro plan ends on 2027-02-10 and will not renew (auto-renew is off)" in inbox.text(0)
        bodies = [json.loads(body) for _, body, _ in receiver.received]
        assert [b["data"]["subscription_id"] for b in bodies if b["type"] == expiring_plans.EVENT] == [
            to_global_id("Subscription", subscription.id)  # the API's id (payload version 2)
        ]

    await at(utc(2027, 2, 10, 9))
    await deliver_outbox()
    await subscription.refresh_from_db()
    assert subscription.status is SubscriptionStatus.CANCELED and len(await notices()) == 1


async def test_only_plans_that_will_not_renew_are_announced_each_once_per_period() -> None:
    partner = await a_partner()
    viewer = partner_viewer(partner)
    renewing, canceling, limited, toggling = [await a_workspace(partner, name) for name in "RCLT"]
    await at(utc(2027, 1, 5))
    plan = await a_plan(partner, "Basic")
    await assigned(partner, renewing, plan, "r")
    await assigned(partner, canceling, plan, "c")
    toggled = await assigned(partner, toggling, plan, "t")
    two_months = await assigned(partner, limited, await a_plan(partner, "Two months", validity_periods=2), "l")
    await lifecycle.cancel(viewer, workspace_id=canceling.id, at_period_end=True)
    await lifecycle.set_auto_renew(viewer, workspace_id=toggling.id, enabled=False)

    await at(utc(2027, 1, 29))  # 7 days before Feb 5
    await deliver_outbox()
    assert sorted((n["workspace_id"], n["reason"]) for n in await notices()) == [
        (canceling.id, "canceled at period end"),
        (toggling.id, "auto-renew is off"),
    ]  # the two-month plan renews once more; the renewing one renews

    # Auto-renew back on: it renews on Feb 5; off again, the next period's end is announced too.
    await lifecycle.set_auto_renew(viewer, workspace_id=toggling.id, enabled=True)
    await at(utc(2027, 2, 5))
    await deliver_outbox()
    await pay_due(partner, two_months.id)
    await pay_due(partner, toggled.id)  # an unpaid renewal is dunning's business, not this notice's
    await lifecycle.set_auto_renew(viewer, workspace_id=toggling.id, enabled=False)
    await at(utc(2027, 2, 26))  # 7 days before Mar 5
    await deliver_outbox()
    later = [(n["workspace_id"], n["ends_at"][:10], n["ending_status"]) for n in (await notices())[2:]]
    assert sorted(later) == [
        (limited.id, "2027-03-05", "EXPIRED"),  # its second and last period
        (toggling.id, "2027-03-05", "CANCELED"),
    ]
    await at(utc(2027, 3, 1))
    await deliver_outbox()
    assert len(await notices()) == 4


async def canceled_at_period_end() -> None:
    """A monthly plan from Jan 5, canceled at its period's end (Feb 5)."""
    partner = await a_partner()
    workspace = await a_workspace(partner)
    await at(utc(2027, 1, 5))
    await assigned(partner, workspace, await a_plan(partner))
    await lifecycle.cancel(partner_viewer(partner), workspace_id=workspace.id, at_period_end=True)


async def test_several_workers_at_once_write_one_notice() -> None:
    await canceled_at_period_end()
    await at(utc(2027, 2, 1))
    announced = await asyncio.gather(*(expiring_plans.run_due() for _ in range(6)))
    assert sum(announced) == 1 and len(await notices()) == 1


async def test_the_notice_period_is_configurable_and_zero_turns_it_off(monkeypatch) -> None:
    await canceled_at_period_end()
    await at(utc(2027, 1, 30))  # 6 days before the end
    monkeypatch.setenv("WHITEBILL_EXPIRY_NOTICE_DAYS", "0")
    configure_domain(load_settings())
    assert await expiring_plans.run_due() == 0
    monkeypatch.setenv("WHITEBILL_EXPIRY_NOTICE_DAYS", "3")
    configure_domain(load_settings())
    assert await expiring_plans.run_due() == 0
    await at(utc(2027, 2, 2))
    assert await expiring_plans.run_due() == 1
    assert [n["days_left"] for n in await notices()] == [3]
