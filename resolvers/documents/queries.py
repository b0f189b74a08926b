"""Reading documents, the caller's tax rates and numbering, and its coupons."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from billing.documents import manage
from models import enums
from models.enums import Permission, ViewerKind
from schema.auth import viewer_with
from schema.context import Context
from schema.documents.types import Coupon, Document, DocumentKind, DocumentSeries, TaxRate
from schema.relay import Connection, paginate


@strawberry.type
class Query:
    @strawberry.field(
        description="Invoices, credit notes and receipts, newest first: a partner's own and the platform's to it, "
        "a workspace's own, every one for the platform."
    )
    async def documents(
        self,
        info: Info[Context, None],
        kind: DocumentKind | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[Document]:
        found = manage.documents(viewer_with(info), enums.DocumentKind(kind.value) if kind else None)
        return await paginate(found, first=first, after=after, to_node=Document.of, newest_first=True)

    @strawberry.field(description="The caller's tax rates (the platform's own, for the platform), at most 20.")
    async def tax_rates(self, info: Info[Context, None]) -> list[TaxRate]:
        viewer = viewer_with(info)
        if viewer.kind is ViewerKind.WORKSPACE:
            return []
        return [TaxRate.of(rate) for rate in await manage.tax_rates(viewer.partner_id)]

    @strawberry.field(description="How the caller numbers each kind of document: one series per kind.")
    async def document_series(self, info: Info[Context, None]) -> list[DocumentSeries]:
        viewer = viewer_with(info)
        if viewer.kind is ViewerKind.WORKSPACE:
            return []
        return [DocumentSeries.of(series) for series in await manage.series(viewer.partner_id)]

    @strawberry.field(description="The partner's coupons, oldest first (every partner's, for the platform).")
    async def coupons(
        self, info: Info[Context, None], first: int | None = None, after: str | None = None
    ) -> Connection[Coupon]:
        viewer = viewer_with(info, Permission.MANAGE_BILLING)
        return await paginate(manage.visible_coupons(viewer), first=first, after=after, to_node=Coupon.of)
