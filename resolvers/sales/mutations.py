"""Selling: the gateway a partner (or the platform) takes payments with, checkout, refunds and the refund
policy, payments the partner collected its own way, platform packages and the partner's centralised
balance bought from the platform."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from billing.charges import gateway_configs
from billing.core import money
from billing.core.money import Money as DomainMoney
from billing.core.money import to_minor
from billing.sales import checkout, partner_balance, purchases, refunds
from models import enums
from models.enums import Permission
from models.payments import Payment as PaymentRow
from models.wallets import Wallet as WalletRow
from schema.accounts.types import Wallet
from schema.auth import target_partner, viewer_with
from schema.context import Context
from schema.errors import UserError
from schema.ids import expect_id
from schema.mutations import PRICE_FIELDS, mutation
from schema.sales.types import GatewayConfig, GatewayMode, Payment, PaymentMethodKind, Refund, RefundPlanPolicy
from schema.subscriptions.types import Subscription
from schema.tenants.types import Partner


def _saved_method(global_id: strawberry.ID | None) -> int | None:
    return expect_id(global_id, "SavedPaymentMethod", "savedPaymentMethodId") if global_id else None


# --- gateways -----------------------------------------------------------------------------------------


@strawberry.input(description="Where a partner's clients (or, with no partnerId from the platform, partners) pay.")
class ConfigureGatewayInput:
    provider: str = strawberry.field(description="An installed gateway: manual, stripe, asaas, or a plugin's name.")
    methods: list[PaymentMethodKind]
    partner_id: strawberry.ID | None = strawberry.field(
        default=None, description="Omit, as the platform, to configure the gateway that charges partners."
    )
    mode: GatewayMode = enums.GatewayMode.TEST
    api_key: str | None = strawberry.field(default=None, description="Write-only; stored encrypted.")
    webhook_secret: str | None = strawberry.field(
        default=None, description="Write-only: Stripe's signing secret, or the token Asaas sends with each event."
    )


@strawberry.type
class ConfigureGatewayPayload:
    gateway_config: GatewayConfig | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


# --- checkout -----------------------------------------------------------------------------------------


@strawberry.input(description="Exactly one of planId, addOnId, creditPackageId.")
class CheckoutItemInput:
    plan_id: strawberry.ID | None = None
    add_on_id: strawberry.ID | None = None
    credit_package_id: strawberry.ID | None = None
    quantity: int = 1


@strawberry.input(description="Pay for a plan, an add-on or a credit package.")
class CheckoutInput:
    workspace_id: strawberry.ID
    item: CheckoutItemInput
    method: PaymentMethodKind
    idempotency_key: str
    card_token: str | None = strawberry.field(
        default=None, description="A new card as the provider's frontend library made it (Stripe: pm_...)."
    )
    saved_payment_method_id: strawberry.ID | None = None
    save_card: bool = strawberry.field(default=False, description="Keep the new card for renewals and top-ups.")
    tax_id: str | None = strawberry.field(default=None, description="The payer's CPF or CNPJ (Asaas needs one).")
    payer_ip: str | None = strawberry.field(
        default=None,
        description="The payer's public IP address as your frontend saw it, sent to the provider with card "
        "charges (Asaas requires it with a kept card); without it, the address this request came from.",
    )
    coupon_codes: list[str] = strawberry.field(
        default_factory=list,
        description="Coupon codes the client typed (any case); more than one only where the partner stacks them.",
    )


def client_address(info: Info[Context, None]) -> str | None:
    request = info.context.request
    client = getattr(request, "client", None)
    return getattr(client, "host", None)


@strawberry.type
class CheckoutPayload:
    payment: Payment | None = strawberry.field(
        default=None, description="Pending: see payerAction for the link or the boleto/pix instructions."
    )
    subscription: Subscription | None = strawberry.field(
        default=None, description="The plan, once paid (or at once for a free plan or a trial)."
    )
    errors: list[UserError] = strawberry.field(default_factory=list)


def _item(item: CheckoutItemInput) -> checkout.Item:
    package = item.credit_package_id
    return checkout.Item(
        plan_id=expect_id(item.plan_id, "Plan", "planId") if item.plan_id else None,
        add_on_id=expect_id(item.add_on_id, "AddOn", "addOnId") if item.add_on_id else None,
        credit_package_id=expect_id(package, "CreditPackage", "creditPackageId") if package else None,
        quantity=item.quantity,
    )


# --- refunds ------------------------------------------------------------------------------------------


@strawberry.input
class RefundPaymentInput:
    payment_id: strawberry.ID
    idempotency_key: str
    amount: str | None = strawberry.field(
        default=None, description="A decimal amount; omit to refund what is left (of the line, if one is named)."
    )
    reason: str = ""
    invoice_line_id: strawberry.ID | None = strawberry.field(
        default=None,
        description="A line of the payment's invoice: the refund's credit note credits that line (none: its lines "
        "in order).",
    )


@strawberry.type
class RefundPaymentPayload:
    payment: Payment | None = None
    refund: Refund | None = strawberry.field(default=None, description="REQUESTED until the provider says it is done.")
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class SetRefundPolicyInput:
    partner_id: strawberry.ID | None = None
    plan_policy: RefundPlanPolicy
    take_back_units: bool = True


@strawberry.type
class SetRefundPolicyPayload:
    partner: Partner | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


# --- payments the partner collected its own way -------------------------------------------------------


@strawberry.input(description="The partner collected a payment its own way; the workspace receives units.")
class RecordManualPurchaseInput:
    workspace_id: strawberry.ID
    unit: str
    quantity: str
    price_amount: str
    price_currency: str
    note: str = ""
    idempotency_key: str


@strawberry.type
class RecordManualPurchasePayload:
    payment: Payment | None = None
    wallet: Wallet | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input(description="The partner collected a pending manual payment its own way.")
class RecordPaymentInput:
    payment_id: strawberry.ID
    idempotency_key: str = strawberry.field(description="A repeat with the same key answers the first result.")
    note: str = ""


@strawberry.type
class RecordPaymentPayload:
    payment: Payment | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


# --- what partners buy from the platform --------------------------------------------------------------


@strawberry.input(description="A partner buys a platform package for its pool (extras in bulk, to hand out).")
class BuyPlatformPackageInput:
    package_id: strawberry.ID
    method: PaymentMethodKind
    idempotency_key: str
    quantity: int = 1
    partner_id: strawberry.ID | None = None
    card_token: str | None = None
    saved_payment_method_id: strawberry.ID | None = None
    save_card: bool = False


@strawberry.type
class BuyPlatformPackagePayload:
    payment: Payment | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input(description="The partner pays the platform to raise its centralised balance.")
class TopUpPartnerBalanceInput:
    amount: str = strawberry.field(description='In the partner\'s currency, e.g. "500.00".')
    method: PaymentMethodKind
    idempotency_key: str
    partner_id: strawberry.ID | None = None
    card_token: str | None = None
    saved_payment_method_id: strawberry.ID | None = None
    save_card: bool = False


@strawberry.type
class TopUpPartnerBalancePayload:
    payment: Payment | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class Mutation:
    @mutation(
        permission=Permission.CONFIGURE_GATEWAY,
        description="Point new checkouts at a provider; earlier configurations keep settling what they started.",
    )
    async def configure_gateway(
        self, info: Info[Context, None], input: ConfigureGatewayInput
    ) -> ConfigureGatewayPayload:
        viewer = viewer_with(info)
        config = await gateway_configs.configure(
            viewer,
            # No partnerId: the caller's own, or for the platform the gateway that charges partners.
            partner_id=expect_id(input.partner_id, "Partner", "partnerId") if input.partner_id else viewer.partner_id,
            provider=input.provider,
            methods=[enums.PaymentMethodKind(m.value) for m in input.methods],
            mode=enums.GatewayMode(input.mode.value),
            api_key=input.api_key,
            webhook_secret=input.webhook_secret,
        )
        return ConfigureGatewayPayload(gateway_config=GatewayConfig.of(config))

    @mutation(
        description="Pay for a plan, an add-on or a credit package by card, boleto, pix or by hand.",
        fields={f: f"item.{f}" for f in ("planId", "addOnId", "creditPackageId", "quantity")},
    )
    async def checkout(self, info: Info[Context, None], input: CheckoutInput) -> CheckoutPayload:
        made = await checkout.checkout(
            viewer_with(info),
            workspace_id=expect_id(input.workspace_id, "Workspace", "workspaceId"),
            item=_item(input.item),
            method=enums.PaymentMethodKind(input.method.value),
            idempotency_key=input.idempotency_key,
            card_token=input.card_token,
            saved_method_id=_saved_method(input.saved_payment_method_id),
            save_card=input.save_card,
            tax_id=input.tax_id,
            payer_ip=input.payer_ip,
            seen_ip=client_address(info),
            coupon_codes=input.coupon_codes,
        )
        return CheckoutPayload(
            payment=Payment.of(made.payment) if made.payment else None,
            subscription=Subscription.of(made.subscription) if made.subscription else None,
        )

    @mutation(
        permission=Permission.MANAGE_BILLING,
        description="Refund a payment in full or in part; what it bought is taken back by the refund policy.",
    )
    async def refund_payment(self, info: Info[Context, None], input: RefundPaymentInput) -> RefundPaymentPayload:
        refunded, refund = await refunds.refund_payment(
            viewer_with(info),
            payment_id=expect_id(input.payment_id, "Payment", "paymentId"),
            amount=input.amount,
            reason=input.reason,
            idempotency_key=input.idempotency_key,
            invoice_line_id=expect_id(input.invoice_line_id, "DocumentLine", "invoiceLineId")
            if input.invoice_line_id
            else None,
        )
        return RefundPaymentPayload(payment=Payment.of(refunded), refund=Refund.of(refund))

    @mutation(permission=Permission.MANAGE_BILLING)
    async def set_refund_policy(self, info: Info[Context, None], input: SetRefundPolicyInput) -> SetRefundPolicyPayload:
        viewer = viewer_with(info)
        partner = await refunds.set_policy(
            viewer,
            partner_id=target_partner(viewer, input.partner_id),
            plan_policy=enums.RefundPlanPolicy(input.plan_policy.value),
            take_back_units=input.take_back_units,
        )
        return SetRefundPolicyPayload(partner=Partner.of(partner))

    @mutation(permission=Permission.MANAGE_BILLING, fields=PRICE_FIELDS)
    async def record_manual_purchase(
        self, info: Info[Context, None], input: RecordManualPurchaseInput
    ) -> RecordManualPurchasePayload:
        workspace_id = expect_id(input.workspace_id, "Workspace", "workspaceId")
        unit = money.check_unit(input.unit)
        purchase = await purchases.record_manual_purchase(
            viewer_with(info),
            workspace_id=workspace_id,
            unit=unit,
            quantity=to_minor(input.quantity, unit, field="quantity"),
            price=DomainMoney.parse(input.price_amount, input.price_currency, field="priceAmount"),
            note=input.note,
            idempotency_key=input.idempotency_key,
        )
        return RecordManualPurchasePayload(
            payment=Payment.of(await PaymentRow.get(id=purchase.payment_id)),
            wallet=Wallet.of(await WalletRow.get(id=purchase.wallet_id)),
        )

    @mutation(
        permission=Permission.MANAGE_BILLING,
        description="Record a pending manual payment as collected; it is delivered once.",
    )
    async def record_payment(self, info: Info[Context, None], input: RecordPaymentInput) -> RecordPaymentPayload:
        paid = await purchases.record_payment(
            viewer_with(info),
            payment_id=expect_id(input.payment_id, "Payment", "paymentId"),
            note=input.note,
            idempotency_key=input.idempotency_key,
        )
        return RecordPaymentPayload(payment=Payment.of(paid))

    @mutation(
        permission=Permission.MANAGE_BILLING,
        description="A partner buys a platform package for its pool, through the platform's gateway.",
    )
    async def buy_platform_package(
        self, info: Info[Context, None], input: BuyPlatformPackageInput
    ) -> BuyPlatformPackagePayload:
        viewer = viewer_with(info)
        payment = await checkout.buy_platform_package(
            viewer,
            partner_id=target_partner(viewer, input.partner_id),
            package_id=expect_id(input.package_id, "CreditPackage", "packageId"),
            method=enums.PaymentMethodKind(input.method.value),
            idempotency_key=input.idempotency_key,
            quantity=input.quantity,
            card_token=input.card_token,
            saved_method_id=_saved_method(input.saved_payment_method_id),
            save_card=input.save_card,
        )
        return BuyPlatformPackagePayload(payment=Payment.of(payment))

    @mutation(
        permission=Permission.MANAGE_BILLING,
        description="The partner pays the platform, through its gateway, to raise its centralised balance.",
    )
    async def top_up_partner_balance(
        self, info: Info[Context, None], input: TopUpPartnerBalanceInput
    ) -> TopUpPartnerBalancePayload:
        viewer = viewer_with(info)
        payment = await partner_balance.top_up(
            viewer,
            partner_id=target_partner(viewer, input.partner_id),
            amount=input.amount,
            method=enums.PaymentMethodKind(input.method.value),
            idempotency_key=input.idempotency_key,
            card_token=input.card_token,
            saved_method_id=_saved_method(input.saved_payment_method_id),
            save_card=input.save_card,
        )
        return TopUpPartnerBalancePayload(payment=Payment.of(payment))
