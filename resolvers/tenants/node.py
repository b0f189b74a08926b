"""Relay node(id:): every type resolves through the viewer's tenant scope, so a foreign id is null."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import strawberry
from strawberry.types import Info
from tortoise.queryset import QuerySet

from billing.catalog import plans
from billing.core import tenancy
from billing.core.tenancy import Viewer
from models.catalog import PlanFamily as PlanFamilyRow
from models.operations import WebhookDelivery as WebhookDeliveryRow
from models.operations import WebhookEndpoint as WebhookEndpointRow
from schema.accounts.types import LedgerEntry, Wallet
from schema.auth import viewer_with
from schema.catalog.types import AddOn, CreditPackage, Plan, PlanFamily
from schema.context import Context
from schema.ids import from_global_id
from schema.outbox.types import WebhookDelivery, WebhookEndpoint
from schema.relay import Node
from schema.sales.types import Payment
from schema.subscriptions.types import Subscription
from schema.tenants.types import ApiKey, AuditEntry, Partner, PartnerUser, Project, Workspace, WorkspaceUser

_RESOLVABLE: dict[str, tuple[Callable[[Viewer], QuerySet[Any]], Callable[[Any], Node]]] = {
    "Partner": (tenancy.partners, Partner.of),
    "Workspace": (tenancy.workspaces, Workspace.of),
    "Project": (tenancy.projects, Project.of),
    "Wallet": (tenancy.wallets, Wallet.of),
    "LedgerEntry": (lambda v: tenancy.ledger_entries(v).select_related("posting"), LedgerEntry.of),
    "Payment": (tenancy.payments, Payment.of),
    "PartnerUser": (tenancy.partner_users, PartnerUser.of),
    "WorkspaceUser": (tenancy.workspace_users, WorkspaceUser.of),
    "ApiKey": (tenancy.api_keys, ApiKey.of),
    "AuditEntry": (tenancy.audit_entries, AuditEntry.of),
    "Plan": (plans.visible_plans, Plan.of),
    "PlanFamily": (lambda _: PlanFamilyRow.all(), PlanFamily.of),
    "AddOn": (plans.visible_add_ons, AddOn.of),
    "CreditPackage": (plans.visible_credit_packages, CreditPackage.of),
    "WebhookEndpoint": (lambda v: tenancy.partner_owned(WebhookEndpointRow.all(), v), WebhookEndpoint.of),
    "WebhookDelivery": (lambda v: tenancy.partner_owned(WebhookDeliveryRow.all(), v), WebhookDelivery.of),
    "Subscription": (tenancy.subscriptions, Subscription.of),
}


async def node(info: Info[Context, None], id: strawberry.ID) -> Node | None:
    viewer = viewer_with(info)
    type_name, db_id = from_global_id(id)
    resolvable = _RESOLVABLE.get(type_name)
    if resolvable is None:
        return None
    scoped, to_node = resolvable
    row = await scoped(viewer).get_or_none(id=db_id)
    return to_node(row) if row is not None else None
