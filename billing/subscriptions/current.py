"""A subscriber's current subscription: the live one (active, trialing or past due), newest first."""

from __future__ import annotations

from models.enums import SubscriptionStatus
from models.subscriptions import Subscription

LIVE = (SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING, SubscriptionStatus.PAST_DUE)


async def live_subscription(workspace_id: int) -> Subscription | None:
    return await Subscription.filter(workspace_id=workspace_id, status__in=LIVE).order_by("-id").first()


async def live_partner_subscription(partner_id: int) -> Subscription | None:
    return await Subscription.filter(partner_id=partner_id, workspace_id=None, status__in=LIVE).order_by("-id").first()
