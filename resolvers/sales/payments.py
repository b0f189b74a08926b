"""Gateways and payments: configure a provider, check out, refund, the refund policy, credit packages."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from billing.catalog import plans
from billing.charges import gateway_configs
from billing.core.errors import BillingError, ErrorCode
from billing.core.money import Money, to_minor
from billing.sales import checkout, refunds
from models import enums
from models.enums import Permission
from models.tenancy import Partner as PartnerRow
from schema.auth import target_partner, viewer_with
from schema.catalog.types import CreditPackage
from schema.context import Context
from schema.errors import UserError, payload
from schema.ids import expect_id
from schema.sales.types import GatewayConfig, GatewayMode, Payment, PaymentMethodKind, RefundPlanPolicy
from schema.subscriptions.types import Subscription
from schema.tenants.types import Partner


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


async def configure_gateway(info: Info[Context, None], input: ConfigureGatewayInput) -> ConfigureGatewayPayload:
    async def run() -> ConfigureGatewayPayload:
        viewer = viewer_with(info, Permission.CONFIGURE_GATEWAY)
        partner_id = expect_id(input.partner_id, "Partner", "partnerId") if input.partner_id else viewer.partner_id
        config = await gateway_configs.configure(
            viewer,
            partner_id=partner_id,
            provider=input.provider,
            methods=[enums.PaymentMethodKind(m.value) for m in input.methods],
            mode=enums.GatewayMode(input.mode.value),
            api_key=input.api_key,
            webhook_secret=input.webhook_secret,
        )
        return ConfigureGatewayPayload(gateway_config=GatewayConfig.of(config))

    return await payload(run, lambda errors: ConfigureGatewayPayload(errors=errors))


def _saved_method(global_id: strawberry.ID | None) -> int | None:
    return expect_id(global_id, "SavedPaymentMethod", "savedPaymentMethodId") if global_id else None


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


@strawberry.type
class CheckoutPayload:
    payment: Payment | None = strawberry.field(
        default=None, description="Pending: see payerAction for the link or the boleto/pix instructions."
    )
    subscription: Subscription | None = strawberry.field(
        default=None, description="The plan, once paid (or at once for a free plan or a trial)."
    )
    errors: list[UserError] = strawberry.field(default_factory=list)


async def checkout_(info: Info[Context, None], input: CheckoutInput) -> CheckoutPayload:
    async def run() -> CheckoutPayload:
        item = input.item
        made = await checkout.checkout(
            viewer_with(info),
            workspace_id=expect_id(input.workspace_id, "Workspace", "workspaceId"),
            item=checkout.Item(
                plan_id=expect_id(item.plan_id, "Plan", "planId") if item.plan_id else None,
                add_on_id=expect_id(item.add_on_id, "AddOn", "addOnId") if item.add_on_id else None,
                credit_package_id=(
                    expect_id(item.credit_package_id, "CreditPackage", "creditPackageId")
                    if item.credit_package_id
                    else None
                ),
                quantity=item.quantity,
            ),
            method=enums.PaymentMethodKind(input.method.value),
            idempotency_key=input.idempotency_key,
            card_token=input.card_token,
            saved_method_id=_saved_method(input.saved_payment_method_id),
            save_card=input.save_card,
            tax_id=input.tax_id,
        )
        return CheckoutPayload(
            payment=Payment.of(made.payment) if made.payment else None,
            subscription=Subscription.of(made.subscription) if made.subscription else None,
        )

    return await payload(run, lambda errors: CheckoutPayload(errors=errors))


@strawberry.input
class RefundPaymentInput:
    payment_id: strawberry.ID
    idempotency_key: str
    amount: str | None = strawberry.field(default=None, description="A decimal amount; omit to refund what is left.")
    reason: str = ""


@strawberry.type
class RefundPaymentPayload:
    payment: Payment | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


async def refund_payment(info: Info[Context, None], input: RefundPaymentInput) -> RefundPaymentPayload:
    async def run() -> RefundPaymentPayload:
        viewer = viewer_with(info, Permission.MANAGE_BILLING)
        payment_id = expect_id(input.payment_id, "Payment", "paymentId")
        amount = None
        if input.amount is not None:
            row = await refunds.payment_for(viewer, payment_id)
            amount = to_minor(input.amount, row.currency, field="amount")
        made = await refunds.refund_payment(
            viewer, payment_id=payment_id, amount=amount, reason=input.reason, idempotency_key=input.idempotency_key
        )
        return RefundPaymentPayload(payment=Payment.of(made))

    return await payload(run, lambda errors: RefundPaymentPayload(errors=errors))


@strawberry.input
class SetRefundPolicyInput:
    partner_id: strawberry.ID | None = None
    plan_policy: RefundPlanPolicy
    take_back_units: bool = True


@strawberry.type
class SetRefundPolicyPayload:
    partner: Partner | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


async def set_refund_policy(info: Info[Context, None], input: SetRefundPolicyInput) -> SetRefundPolicyPayload:
    async def run() -> SetRefundPolicyPayload:
        viewer = viewer_with(info, Permission.MANAGE_BILLING)
        row: PartnerRow = await refunds.set_policy(
            viewer,
            partner_id=target_partner(viewer, input.partner_id),
            plan_policy=enums.RefundPlanPolicy(input.plan_policy.value),
            take_back_units=input.take_back_units,
        )
        return SetRefundPolicyPayload(partner=Partner.of(row))

    return await payload(run, lambda errors: SetRefundPolicyPayload(errors=errors))


@strawberry.input(description="A package of units (points, credits...) a partner sells to its clients.")
class CreateCreditPackageInput:
    name: str
    unit: str
    quantity: int
    price_amount: str = strawberry.field(description="A decimal amount in the currency, e.g. 49.90.")
    price_currency: str
    expires_after_days: int | None = strawberry.field(
        default=None, description="Units bought expire this many days after the purchase."
    )


@strawberry.type
class CreateCreditPackagePayload:
    credit_package: CreditPackage | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


async def create_credit_package(
    info: Info[Context, None], input: CreateCreditPackageInput
) -> CreateCreditPackagePayload:
    async def run() -> CreateCreditPackagePayload:
        viewer = viewer_with(info, Permission.MANAGE_PLANS)
        if viewer.kind == "WORKSPACE":
            raise BillingError(ErrorCode.FORBIDDEN, "packages are made by the partner")
        currency = input.price_currency.upper()
        row = await plans.create_credit_package(
            viewer,
            name=input.name,
            unit=input.unit,
            quantity=input.quantity,
            price=Money(to_minor(input.price_amount, currency, field="priceAmount"), currency),
            expires_after_days=input.expires_after_days,
        )
        return CreateCreditPackagePayload(credit_package=CreditPackage.of(row))

    return await payload(run, lambda errors: CreateCreditPackagePayload(errors=errors))


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


async def buy_platform_package(info: Info[Context, None], input: BuyPlatformPackageInput) -> BuyPlatformPackagePayload:
    async def run() -> BuyPlatformPackagePayload:
        viewer = viewer_with(info, Permission.MANAGE_BILLING)
        made = await checkout.buy_platform_package(
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
        return BuyPlatformPackagePayload(payment=Payment.of(made))

    return await payload(run, lambda errors: BuyPlatformPackagePayload(errors=errors))
