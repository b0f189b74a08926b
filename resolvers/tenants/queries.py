"""Reading tenants: node(id:), who is calling, partners and their workspaces, teams and clients' logins,
API keys, the audit log, and a partner's public branding."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import strawberry
from strawberry.types import Info
from tortoise.queryset import QuerySet

from billing.catalog import plans
from billing.core import tenancy
from billing.core.tenancy import Viewer as DomainViewer
from billing.documents import manage
from billing.tenants import branding as brandings
from billing.tenants import identity
from models.catalog import PlanFamily as PlanFamilyRow
from models.enums import CredentialKind, Permission, ViewerKind
from models.operations import WebhookDelivery as WebhookDeliveryRow
from models.operations import WebhookEndpoint as WebhookEndpointRow
from schema.accounts.types import LedgerEntry, Wallet
from schema.auth import viewer_with
from schema.catalog.types import AddOn, CreditPackage, Plan, PlanFamily
from schema.context import Context
from schema.documents.types import Coupon, Document, TaxRate
from schema.ids import expect_id, from_global_id
from schema.outbox.types import WebhookDelivery, WebhookEndpoint
from schema.relay import Connection, Node, paginate
from schema.sales.types import Payment
from schema.subscriptions.types import Subscription
from schema.tenants.types import (
    ApiKey,
    AuditEntry,
    Partner,
    PartnerUser,
    Project,
    PublicBranding,
    Viewer,
    Workspace,
    WorkspaceUser,
    workspaces_seen,
)

# What reading each kind of restricted row needs: the same for its list and for node(id:).
_READING_NEEDS: dict[str, Callable[[DomainViewer], Permission]] = {
    "PartnerUser": lambda _: Permission.MANAGE_USERS,
    "ApiKey": lambda v: Permission.MANAGE_PARTNERS if v.is_platform else Permission.MANAGE_USERS,
    "AuditEntry": lambda _: Permission.READ_REPORTS,
    "WebhookEndpoint": lambda _: Permission.MANAGE_BILLING,
    "WebhookDelivery": lambda _: Permission.MANAGE_BILLING,
    "Coupon": lambda _: Permission.MANAGE_BILLING,
}


def _reader(info: Info[Context, None], type_name: str) -> DomainViewer:
    viewer = viewer_with(info)
    viewer.require(_READING_NEEDS[type_name](viewer))
    return viewer


def _may_read(viewer: DomainViewer, type_name: str) -> bool:
    needs = _READING_NEEDS.get(type_name)
    return needs is None or needs(viewer) in viewer.permissions


def _tax_rates(viewer: DomainViewer) -> QuerySet[Any]:
    """The caller's own tax rates (a workspace reads none)."""
    return manage.tax_rates(viewer.partner_id) if viewer.kind is not ViewerKind.WORKSPACE else manage.tax_rates(-1)


# node(id:): every type resolves through the viewer's tenant scope, so a foreign id is null; so is a
# row the viewer lacks the permission to list.
_RESOLVABLE: dict[str, tuple[Callable[[DomainViewer], QuerySet[Any]], Callable[[Any], Node]]] = {
    "Partner": (lambda v: tenancy.partners(v, with_descendants=True), Partner.of),
    # Reading goes down the chain: a parent reads what the partners below it hold.
    "Workspace": (lambda v: tenancy.workspaces(v, with_descendants=True), Workspace.of),
    "Project": (lambda v: tenancy.projects(v, with_descendants=True), Project.of),
    "Wallet": (lambda v: tenancy.wallets(v, with_descendants=True), Wallet.of),
    "LedgerEntry": (
        lambda v: tenancy.ledger_entries(v, with_descendants=True).select_related("posting"),
        LedgerEntry.of,
    ),
    "Payment": (lambda v: tenancy.payments(v, with_descendants=True), Payment.of),
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
    "Subscription": (lambda v: tenancy.subscriptions(v, with_descendants=True), Subscription.of),
    "Document": (manage.documents, Document.of),
    "Coupon": (manage.visible_coupons, Coupon.of),
    "TaxRate": (_tax_rates, TaxRate.of),
}


@strawberry.type
class Query:
    @strawberry.field(description="Any object by its global id; null if unknown or not yours.")
    async def node(self, info: Info[Context, None], id: strawberry.ID) -> Node | None:
        viewer = viewer_with(info)
        type_name, db_id = from_global_id(id)
        resolvable = _RESOLVABLE.get(type_name)
        if resolvable is None or not _may_read(viewer, type_name):
            return None
        scoped, to_node = resolvable
        row = await scoped(viewer).get_or_none(id=db_id)
        return to_node(row) if row is not None else None

    @strawberry.field
    async def viewer(self, info: Info[Context, None]) -> Viewer:
        current = viewer_with(info)
        via = identity.credential_kind(info.context.token)
        email = await identity.email_of(current) if via is CredentialKind.SESSION else None
        return Viewer.of(current, via=via, email=email)

    @strawberry.field
    async def partners(
        self, info: Info[Context, None], first: int | None = None, after: str | None = None
    ) -> Connection[Partner]:
        viewer = viewer_with(info)
        seen = tenancy.partners(viewer, with_descendants=True)  # a partner, and those reselling through it
        return await paginate(seen, first=first, after=after, to_node=Partner.of)

    @strawberry.field(
        description="Your workspaces (every one, for the platform), oldest first; filter by owner e-mail. Those of"
        " the partners reselling below you: Partner.workspaces."
    )
    async def workspaces(
        self,
        info: Info[Context, None],
        first: int | None = None,
        after: str | None = None,
        owner_email: str | None = None,
    ) -> Connection[Workspace]:
        return await workspaces_seen(info, first=first, after=after, owner_email=owner_email)

    @strawberry.field(description="The team of the caller's partner (every partner's, for the platform).")
    async def partner_users(
        self, info: Info[Context, None], first: int | None = None, after: str | None = None
    ) -> Connection[PartnerUser]:
        viewer = _reader(info, "PartnerUser")
        return await paginate(tenancy.partner_users(viewer), first=first, after=after, to_node=PartnerUser.of)

    @strawberry.field
    async def workspace_users(
        self,
        info: Info[Context, None],
        workspace_id: strawberry.ID,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[WorkspaceUser]:
        viewer = viewer_with(info)
        workspace = await tenancy.get_scoped(
            tenancy.workspaces(viewer), expect_id(workspace_id, "Workspace", "workspaceId"), "workspace"
        )
        return await paginate(
            tenancy.workspace_users(viewer).filter(workspace_id=workspace.id),
            first=first,
            after=after,
            to_node=WorkspaceUser.of,
        )

    @strawberry.field
    async def api_keys(
        self, info: Info[Context, None], first: int | None = None, after: str | None = None
    ) -> Connection[ApiKey]:
        return await paginate(tenancy.api_keys(_reader(info, "ApiKey")), first=first, after=after, to_node=ApiKey.of)

    @strawberry.field(description="A partner reads its own tenant's audit log, the platform everyone's.")
    async def audit_log(
        self,
        info: Info[Context, None],
        first: int | None = None,
        after: str | None = None,
        action: str | None = None,
    ) -> Connection[AuditEntry]:
        scoped = tenancy.audit_entries(_reader(info, "AuditEntry"))
        if action:
            scoped = scoped.filter(action=action[:64])
        return await paginate(scoped, first=first, after=after, to_node=AuditEntry.of)

    @strawberry.field(description="Public: a partner's branding by its domain.")
    async def branding(self, domain: str) -> PublicBranding | None:
        # Public on purpose: a login page must style itself before anyone signs in.
        found = await brandings.branding_for_domain(domain)
        return PublicBranding.of(*found) if found is not None else None
