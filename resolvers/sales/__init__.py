"""Sales: gateway configurations, checkout, refunds, manual payments, the partner's centralised balance."""

from __future__ import annotations

import strawberry

from resolvers.accounts import wallets
from resolvers.sales import payments
from resolvers.usage import usage


@strawberry.type
class Mutation:
    record_manual_purchase: wallets.RecordManualPurchasePayload = strawberry.mutation(
        resolver=wallets.record_manual_purchase
    )
    configure_gateway: payments.ConfigureGatewayPayload = strawberry.mutation(
        resolver=payments.configure_gateway,
        description="Point new checkouts at a provider; earlier configurations keep settling what they started.",
    )
    checkout: payments.CheckoutPayload = strawberry.mutation(
        resolver=payments.checkout_,
        description="Pay for a plan, an add-on or a credit package by card, boleto, pix or by hand.",
    )
    refund_payment: payments.RefundPaymentPayload = strawberry.mutation(
        resolver=payments.refund_payment,
        description="Refund a payment in full or in part; what it bought is taken back by the refund policy.",
    )
    buy_platform_package: payments.BuyPlatformPackagePayload = strawberry.mutation(
        resolver=payments.buy_platform_package,
        description="A partner buys a platform package for its pool, through the platform's gateway.",
    )
    set_refund_policy: payments.SetRefundPolicyPayload = strawberry.mutation(resolver=payments.set_refund_policy)
    top_up_partner_balance: usage.TopUpPartnerBalancePayload = strawberry.mutation(
        resolver=usage.top_up_partner_balance,
        description="The partner pays the platform, through its gateway, to raise its centralised balance.",
    )
    record_payment: wallets.RecordPaymentPayload = strawberry.mutation(
        resolver=wallets.record_payment,
        description="Record a pending manual payment as collected; it is delivered once.",
    )
