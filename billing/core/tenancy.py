"""Who is calling, and the one place that scopes every lookup to the caller's tenant.

Every query of tenant data starts here: an object of another tenant answers exactly like one that
does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from tortoise.expressions import Q, Subquery
from tortoise.models import Model
from tortoise.queryset import QuerySet

from billing.core.errors import BillingError, ErrorCode
from models.enums import Permission, ViewerKind
from models.operations import AuditLog
from models.payments import Payment
from models.subscriptions import Subscription
from models.tenancy import ApiKey, Partner, PartnerUser, Project, Workspace, WorkspaceUser
from models.wallets import LedgerEntry, Wallet

M = TypeVar("M", bound=Model)


@dataclass(frozen=True, slots=True)
class Viewer:
    """The authenticated caller."""

    kind: ViewerKind
    actor: str  # "api_key:3", "user:PARTNER:9": written to the audit log and postings
    partner_id: int | None = None
    workspace_id: int | None = None
    permissions: frozenset[Permission] = field(default_factory=frozenset)
    expires_at: datetime | None = None  # a session's end; a key does not expire

    def __post_init__(self) -> None:
        # Callers outside billing (tests, benchmarks) may still name the kind by its value.
        object.__setattr__(self, "kind", ViewerKind(self.kind))

    @property
    def is_platform(self) -> bool:
        return self.kind is ViewerKind.PLATFORM

    @property
    def scope(self) -> str:
        """The idempotency scope of this caller's tenant."""
        if self.is_platform:
            return "PLATFORM"
        return f"PARTNER:{self.partner_id}"

    def require(self, permission: Permission) -> None:
        if permission not in self.permissions:
            raise BillingError(ErrorCode.FORBIDDEN, f"this action needs the {permission.value} permission")


def _scoped(
    queryset: QuerySet[M],
    viewer: Viewer,
    *,
    workspace_field: str | None = "workspace_id",
    with_descendants: bool = False,
) -> QuerySet[M]:
    if viewer.is_platform:
        return queryset
    if with_descendants and viewer.kind is ViewerKind.PARTNER:
        return queryset.filter(partner_id__in=Subquery(partners(viewer, with_descendants=True).values("id")))
    queryset = queryset.filter(partner_id=viewer.partner_id)
    if viewer.kind is ViewerKind.WORKSPACE and workspace_field:
        queryset = queryset.filter(**{workspace_field: viewer.workspace_id})
    return queryset


def partner_owned(queryset: QuerySet[M], viewer: Viewer) -> QuerySet[M]:
    """Rows that belong to a partner as a whole (its webhooks...): never its clients'."""
    if viewer.kind is ViewerKind.WORKSPACE:
        return queryset.filter(id=None)
    return _scoped(queryset, viewer, workspace_field=None)


def partners(viewer: Viewer, *, with_descendants: bool = False) -> QuerySet[Partner]:
    """The caller's partner (every partner, for the platform); ``with_descendants``: and, for a partner, the
    partners reselling through it, at any level (never its parent or its parent's other children).

    Reading goes down the chain: the ``with_descendants`` scopes below (a parent reads its descendants'
    workspaces, wallets, payments and reports). Acting does not: every other scope is the caller's own
    tenant, and what a parent may do to a partner below it is named where it is allowed
    (:func:`sub_partner`)."""
    if viewer.is_platform:
        return Partner.all()
    if with_descendants and viewer.kind is ViewerKind.PARTNER:
        own = viewer.partner_id
        # WHITEBILL_MAX_PARTNER_LEVELS is at most 3: a partner's descendants are at most two levels down.
        return Partner.filter(Q(id=own) | Q(parent_id=own) | Q(parent__parent_id=own))
    return Partner.filter(id=viewer.partner_id)


async def sub_partner(viewer: Viewer, partner_id: int, *, field: str = "partnerId", child: bool = False) -> Partner:
    """A partner the caller may act on as a parent: one reselling through the caller's partner, at any level
    below it or, with ``child``, directly below it (MANAGE_SUB_PARTNERS); for the platform, any partner
    (MANAGE_PARTNERS), or with ``child`` one of its direct partners. FORBIDDEN for the caller's own partner
    (a partner does not fund or provision itself), NOT_FOUND for any other."""
    if viewer.is_platform:
        viewer.require(Permission.MANAGE_PARTNERS)
        return await get_scoped(
            Partner.filter(parent_id=None) if child else Partner.all(), partner_id, "partner", field=field
        )
    viewer.require(Permission.MANAGE_SUB_PARTNERS)
    if partner_id == viewer.partner_id:
        raise BillingError(ErrorCode.FORBIDDEN, "a partner does not act on itself as its own parent", field=field)
    below = Partner.filter(parent_id=viewer.partner_id) if child else partners(viewer, with_descendants=True)
    return await get_scoped(below.exclude(id=viewer.partner_id), partner_id, "partner", field=field)


def workspaces(viewer: Viewer, *, with_descendants: bool = False) -> QuerySet[Workspace]:
    return _scoped(Workspace.filter(deleted_at=None), viewer, workspace_field="id", with_descendants=with_descendants)


def workspace_visible_sql(viewer: Viewer, alias: str, first: int) -> tuple[str, list[int | None]]:
    """The scope of :func:`workspaces` as SQL over a ``workspace`` row named ``alias``, for a hand-written
    statement on a hot path; its placeholders are numbered from ``$first``."""
    conditions = [f"{alias}.deleted_at IS NULL"]
    params: list[int | None] = []
    if not viewer.is_platform:
        conditions.append(f"{alias}.partner_id = ${first}")
        params.append(viewer.partner_id)
        if viewer.kind is ViewerKind.WORKSPACE:
            conditions.append(f"{alias}.id = ${first + 1}")
            params.append(viewer.workspace_id)
    return " AND ".join(conditions), params


def projects(viewer: Viewer, *, with_descendants: bool = False) -> QuerySet[Project]:
    return _scoped(Project.all(), viewer, with_descendants=with_descendants)


def wallets(viewer: Viewer, *, with_descendants: bool = False) -> QuerySet[Wallet]:
    return _scoped(Wallet.all(), viewer, with_descendants=with_descendants)


def ledger_entries(viewer: Viewer, *, with_descendants: bool = False) -> QuerySet[LedgerEntry]:
    if viewer.kind is ViewerKind.WORKSPACE:
        return LedgerEntry.filter(partner_id=viewer.partner_id, wallet__workspace_id=viewer.workspace_id)
    return _scoped(LedgerEntry.all(), viewer, workspace_field=None, with_descendants=with_descendants)


def subscriptions(viewer: Viewer, *, with_descendants: bool = False) -> QuerySet[Subscription]:
    return _scoped(Subscription.all(), viewer, with_descendants=with_descendants)


def payments(viewer: Viewer, *, with_descendants: bool = False) -> QuerySet[Payment]:
    if viewer.kind is ViewerKind.WORKSPACE:
        return Payment.filter(partner_id=viewer.partner_id, payer_key=f"WORKSPACE:{viewer.workspace_id}")
    return _scoped(Payment.all(), viewer, workspace_field=None, with_descendants=with_descendants)


def api_keys(viewer: Viewer) -> QuerySet[ApiKey]:
    if viewer.is_platform:
        return ApiKey.all()
    if viewer.kind is ViewerKind.WORKSPACE:
        return ApiKey.filter(id=-1)  # workspace users have no keys
    return ApiKey.filter(partner_id=viewer.partner_id)


def partner_users(viewer: Viewer) -> QuerySet[PartnerUser]:
    if viewer.is_platform:
        return PartnerUser.all()
    if viewer.kind is ViewerKind.WORKSPACE:
        return PartnerUser.filter(id=-1)  # a client does not see the agency's team
    return PartnerUser.filter(partner_id=viewer.partner_id)


def workspace_users(viewer: Viewer) -> QuerySet[WorkspaceUser]:
    return _scoped(WorkspaceUser.all(), viewer)


def audit_entries(viewer: Viewer) -> QuerySet[AuditLog]:
    if viewer.is_platform:
        return AuditLog.all()
    if viewer.kind is ViewerKind.WORKSPACE:
        return AuditLog.filter(id=-1)
    return AuditLog.filter(partner_id=viewer.partner_id)


async def get_scoped(queryset: QuerySet[M], object_id: int, what: str, *, field: str | None = None) -> M:
    """The object if the viewer may see it; NOT_FOUND otherwise, whether it exists or not. The error
    names the input field that carried the id: ``field``, or by default ``<what>Id`` (``workspaceId``)."""
    found = await queryset.get_or_none(id=object_id)
    if found is None:
        words = what.split()
        named = words[0].lower() + "".join(w.capitalize() for w in words[1:]) + "Id"
        raise BillingError(ErrorCode.NOT_FOUND, f"{what} not found", field=field or named)
    return found
