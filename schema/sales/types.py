"""Payments, the gateway configurations that take them, and saved cards."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
import strawberry.scalars
from strawberry.types import Info

from billing.charges.gateway_configs import webhook_url
from billing.sales.provider_webhooks import WEBHOOK_FAILING_AFTER, ignored_events_of
from models import catalog as catalog_models
from models import enums
from models import payments as payment_models
from schema.amounts import Money
from schema.context import Context
from schema.ids import to_global_id
from schema.relay import Connection, Node, paginate

PaymentStatus = strawberry.enum(enums.PaymentStatus)
RefundStatus = strawberry.enum(
    enums.RefundStatus,
    description="REQUESTED until the provider says it is DONE (only then is anything taken back); FAILED when "
    "the provider refused, denied or cancelled it, or when a done refund failed after all (what it took is "
    "given back).",
)


@strawberry.type(description="Money going back to the payer of a payment.")
class Refund(Node):
    amount: Money
    status: RefundStatus
    reason: str
    failure_reason: str | None
    payer_action: strawberry.scalars.JSON | None = strawberry.field(
        description="A boleto refund: the link where the payer gives the bank details the money goes to."
    )
    created_at: datetime
    settled_at: datetime | None

    @classmethod
    def of(cls, row: payment_models.Refund) -> Refund:
        return cls(
            id=strawberry.ID(to_global_id("Refund", row.id)),
            amount=Money.of(row.amount, row.currency),
            status=row.status,
            reason=row.reason,
            failure_reason=row.failure_reason,
            payer_action=row.payer_action,
            created_at=row.created_at,
            settled_at=row.settled_at,
        )


PaymentMethodKind = strawberry.enum(enums.PaymentMethodKind, name="PaymentMethod")


PaymentPurpose = strawberry.enum(enums.PaymentPurpose, description="What a payment buys.")


@strawberry.type(description="Some of one credit package a payment bought, as the package was sold then.")
class PaymentPackageLine:
    package_id: strawberry.ID
    name: str
    quantity: str = strawberry.field(description="Units in one package.")
    count: int = strawberry.field(description="How many of the package.")


async def _package_lines(purpose: dict[str, Any]) -> list[PaymentPackageLine]:
    lines = purpose.get("packages")
    if lines is None and purpose.get("package_id"):  # a payment made before lines were kept: one package
        package = await catalog_models.CreditPackage.get_or_none(id=purpose["package_id"])
        if package is None or package.quantity <= 0:
            return []
        count = int(purpose.get("quantity", 0)) // package.quantity
        lines = [{"package_id": package.id, "name": package.name, "quantity": package.quantity, "count": count}]
    return [
        PaymentPackageLine(
            package_id=strawberry.ID(to_global_id("CreditPackage", int(line["package_id"]))),
            name=str(line.get("name", "")),
            quantity=str(line["quantity"]),
            count=int(line["count"]),
        )
        for line in lines or ()
    ]


@strawberry.type(description="An attempt to collect money.")
class Payment(Node):
    amount: Money
    status: PaymentStatus
    method: PaymentMethodKind
    provider: str
    provider_reference: str | None
    purpose: PaymentPurpose
    note: str
    created_at: datetime
    db_id: strawberry.Private[int]
    purpose_detail: strawberry.Private[dict[str, Any]]
    refunded: Money | None = strawberry.field(default=None, description="What its DONE refunds gave back.")
    decline_reason: str | None = None
    payer_action: strawberry.scalars.JSON | None = strawberry.field(
        default=None, description="What the payer needs to pay a pending payment: a link or instructions."
    )

    @strawberry.field(description="The credit packages it bought, and how many of each (none for other purposes).")
    async def package_lines(self) -> list[PaymentPackageLine]:
        return await _package_lines(self.purpose_detail)

    @strawberry.field(description="Its refunds, oldest first, whatever their state.")
    async def refunds(self, first: int | None = None, after: str | None = None) -> Connection[Refund]:
        rows = payment_models.Refund.filter(payment_id=self.db_id)
        return await paginate(rows, first=first, after=after, to_node=Refund.of)

    @classmethod
    def of(cls, row: payment_models.Payment) -> Payment:
        return cls(
            id=strawberry.ID(to_global_id("Payment", row.id)),
            db_id=row.id,
            purpose_detail=row.purpose,
            amount=Money.of(row.amount, row.currency),
            status=row.status,
            method=row.method,
            provider=row.provider,
            provider_reference=row.provider_ref,
            purpose=row.purpose_kind,
            note=row.note,
            created_at=row.created_at,
            payer_action=row.payer_action,
            refunded=Money.of(row.refunded_amount, row.currency) if row.refunded_amount else None,
            decline_reason=row.decline_reason,
        )


GatewayMode = strawberry.enum(enums.GatewayMode)


RefundPlanPolicy = strawberry.enum(enums.RefundPlanPolicy)


@strawberry.type(
    description="A provider event verified at a configuration's URL that matched no payment of the partner's "
    "configurations of that provider (a transfer, an invoice, a payment made elsewhere): answered 200 and "
    "changed nothing. Applied (and gone from this list) if a payment later gets its provider payment id."
)
class IgnoredProviderEvent(Node):
    event_type: str = strawberry.field(description="The provider's event type, e.g. TRANSFER_DONE.")
    provider_event_id: str
    provider_payment_id: str | None = strawberry.field(description="The provider's payment it names, if any.")
    received_at: datetime

    @classmethod
    def of(cls, row: payment_models.IgnoredProviderEvent) -> IgnoredProviderEvent:
        return cls(
            id=strawberry.ID(to_global_id("IgnoredProviderEvent", row.id)),
            event_type=row.event_type,
            provider_event_id=row.event_id,
            provider_payment_id=row.provider_ref,
            received_at=row.created_at,
        )


@strawberry.type(description="A payment provider configuration. Credentials are write-only: only a hint shows.")
class GatewayConfig(Node):
    db_id: strawberry.Private[int]
    provider: str
    mode: GatewayMode
    methods: list[PaymentMethodKind]
    is_active: bool = strawberry.field(description="New checkouts go here; inactive ones still settle their payments.")
    credentials_hint: str | None = strawberry.field(description="The last characters of the API key, e.g. …f00d.")
    webhook_url: str = strawberry.field(description="Where the provider must send its events for this configuration.")
    webhook_failures: int = strawberry.field(
        description="Our non-2xx answers in a row to this configuration's webhooks (unverified or not processed); "
        "a 2xx resets it."
    )
    webhook_failing: bool = strawberry.field(
        description=f"True after {WEBHOOK_FAILING_AFTER} non-2xx answers in a row (the partner was sent "
        "gateway.webhook_failing), until the next 2xx: the provider's queue may be stalled."
    )
    webhook_failing_since: datetime | None
    card_saving_available: bool = strawberry.field(
        description="False once a payment asked to keep its card succeeded without the provider giving a reusable "
        "token (Asaas approves card tokenization per production account; the partner was sent "
        "gateway.card_saving_unavailable): renewals then send the payer a link to pay. True again when a card is kept."
    )
    card_saving_unavailable_since: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, row: payment_models.GatewayConfig) -> GatewayConfig:
        return cls(
            id=strawberry.ID(to_global_id("GatewayConfig", row.id)),
            db_id=row.id,
            provider=row.provider,
            mode=row.mode,
            methods=[enums.PaymentMethodKind(m) for m in row.methods],
            is_active=row.is_active,
            credentials_hint=row.credentials_hint,
            webhook_url=webhook_url(row),
            webhook_failures=row.webhook_failures,
            webhook_failing=row.webhook_failing_since is not None,
            webhook_failing_since=row.webhook_failing_since,
            card_saving_available=row.card_saving_unavailable_since is None,
            card_saving_unavailable_since=row.card_saving_unavailable_since,
            created_at=row.created_at,
        )

    @strawberry.field(description="Verified events that arrived here and matched no payment, newest first.")
    async def ignored_provider_events(
        self, info: Info[Context, None], first: int | None = None, after: str | None = None
    ) -> Connection[IgnoredProviderEvent]:
        events = ignored_events_of(info.context.require_viewer(), self.db_id)
        return await paginate(events, first=first, after=after, to_node=IgnoredProviderEvent.of, newest_first=True)


@strawberry.type(description="A card kept at the provider for off-session charges: never its number, only a hint.")
class SavedPaymentMethod(Node):
    kind: PaymentMethodKind
    provider: str
    brand: str | None
    last4: str | None
    is_default: bool
    created_at: datetime

    @classmethod
    def of(cls, row: payment_models.SavedPaymentMethod, provider: str) -> SavedPaymentMethod:
        return cls(
            id=strawberry.ID(to_global_id("SavedPaymentMethod", row.id)),
            kind=row.kind,
            provider=provider,
            brand=row.brand,
            last4=row.last4,
            is_default=row.is_default,
            created_at=row.created_at,
        )
