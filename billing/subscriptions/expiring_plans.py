"""Plans about to end without renewing: a ``subscription.expiring`` notice some days before the end.

A subscription that will not renew at the end of its period (canceled at period end, auto-renew off,
the plan's validity or maximum renewals reached: ``renewals.ending`` decides, as it does at the end)
is announced once per period, the configured ``expiry_notice_days`` (WHITEBILL_EXPIRY_NOTICE_DAYS)
before it ends (default 7; 0 turns the notice off), or as soon as it is known not to renew when
that is later. The outbox event goes to the partner's webhook endpoints and, as an e-mail in the
partner's branding, to the workspace's owner (``billing.outbox.emails``).

Once per period however many workers look: the notice is written in one transaction with a marker,
a job row born DONE whose unique dedupe key names the subscription and the end of its period, and
only the worker whose marker goes in writes the notice.
"""

from __future__ import annotations

import json
import logging
import math
from datetime import datetime, timedelta

from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from billing.core import audit, clock, config, sql
from billing.subscriptions import renewals
from models.catalog import Plan
from models.enums import SubscriptionStatus, WorkState
from models.operations import Job
from models.subscriptions import Subscription, SubscriptionPeriod
from models.tenancy import Workspace

log = logging.getLogger("whitebill.expiring_plans")

EVENT = "subscription.expiring"
SCAN_EVERY = timedelta(minutes=1)  # how often a worker looks (the notice is a matter of days)
_PAGE = 200
_MARK = (
    "INSERT INTO job (created_at, kind, payload, run_at, state, attempts, dedupe_key, finished_at)"
    " VALUES ($1, $2, $3, $1, $4, 0, $5, $1) ON CONFLICT (dedupe_key) DO NOTHING"
)


def notice_days() -> int:
    """Days of notice before a plan ends without renewing (0: no notice)."""
    return config.current().expiry_notice_days


def _marker(subscription: Subscription) -> str:
    return f"{EVENT}:{subscription.id}:{int(subscription.current_period_end.timestamp())}"


async def run_due(*, page: int = _PAGE) -> int:
    """Announce every subscription that is due its notice; returns how many were announced."""
    days = notice_days()
    if not days:
        return 0
    now = clock.now()
    # Live and not in dunning (its next step is the period's end), ending within the notice, and
    # with some way not to renew: renewals.ending has the last word.
    ending_soon = Subscription.filter(
        status__in=[SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING],
        next_action_at__gt=now,
        next_action_at__lte=now + timedelta(days=days),
    ).filter(
        Q(cancel_at_period_end=True)
        | Q(workspace__auto_renew=False)
        | Q(plan__validity_periods__isnull=False)
        | Q(plan__max_renewals__isnull=False)
    )
    announced, after = 0, 0
    while True:
        rows = await ending_soon.filter(id__gt=after).order_by("id").limit(page)
        due = [row for row in rows if row.next_action_at == row.current_period_end]
        markers = [_marker(row) for row in due]
        done: set[str] = set()
        if markers:
            done = {str(k) for k in await Job.filter(dedupe_key__in=markers).values_list("dedupe_key", flat=True)}
        for row, marker in zip(due, markers, strict=True):
            if marker not in done:
                announced += await _announce(row, marker, now)
        if len(rows) < page:
            return announced
        after = rows[-1].id


async def _announce(subscription: Subscription, marker: str, now: datetime) -> int:
    plan = await Plan.get(id=subscription.plan_id)
    workspace = await Workspace.get_or_none(id=subscription.workspace_id) if subscription.workspace_id else None
    billed = await SubscriptionPeriod.filter(subscription_id=subscription.id).count()
    ends = renewals.ending(subscription, plan, workspace, billed)
    if ends is None:
        return 0
    status, reason = ends
    end = subscription.current_period_end
    async with in_transaction("default"):
        payload = json.dumps({"subscription_id": subscription.id})
        if await sql.execute(_MARK, now, EVENT, payload, WorkState.DONE.value, marker) != 1:
            return 0  # another worker announced it
        await audit.emit(
            EVENT,
            subscription.partner_id,
            {
                "subscription_id": subscription.id,
                "workspace_id": subscription.workspace_id,
                "plan_id": plan.id,
                "plan_name": plan.name,
                "ends_at": end.isoformat(),
                "days_left": max(0, math.ceil((end - now) / timedelta(days=1))),
                "ending_status": status.value,
                "reason": reason,
            },
        )
    return 1
