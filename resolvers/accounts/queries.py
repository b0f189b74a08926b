"""Reading a partner's month: its statement."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from billing.accounts import statements
from schema.accounts.types import PartnerStatement
from schema.auth import target_partner, viewer_with
from schema.context import Context


@strawberry.type
class Query:
    @strawberry.field(
        description="The partner's monthly statement (YYYY-MM, UTC) in its currency unless another is named; also "
        "at /reports/statement.csv and /reports/statement.pdf?month=YYYY-MM."
    )
    async def partner_statement(
        self,
        info: Info[Context, None],
        month: str,
        partner_id: strawberry.ID | None = None,
        currency: str | None = None,
    ) -> PartnerStatement:
        viewer = viewer_with(info)
        statement = await statements.monthly(
            viewer, partner_id=target_partner(viewer, partner_id), month=month, currency=currency
        )
        return PartnerStatement.of(statement)
