"""What sets off what, in one place.

A lower area never imports a higher one (the import contracts in pyproject.toml say so), yet a payment
collected by the charges area must deliver what the sales, subscription or auto-billing areas sold, and a
job queued by one area is run by whichever worker claims it. These tables say which function does each:
read them to find what a paid payment delivers or what a job kind runs. :func:`install` hands them to
the areas that consult them; every process that touches the database calls it (``whitebill.db``).
"""

from __future__ import annotations

from billing.accounts import top_ups
from billing.auto_billing import engine
from billing.charges import payments
from billing.core import idempotency, work
from billing.sales import checkout, provider_webhooks, purchases
from billing.subscriptions import credit_billing, lifecycle, renewals
from billing.usage import platform_deductions
from models.enums import PaymentPurpose

P = PaymentPurpose

# A paid payment delivers what it bought, once, in the transaction that marks it paid.
ON_PAID: dict[PaymentPurpose, payments.Fulfilment] = {
    P.PLAN_PURCHASE: lifecycle.plan_bought,  # the subscription starts with its first period paid
    P.PLAN_CHANGE: lifecycle.plan_changed,  # an upgrade switches the plan
    P.SUBSCRIPTION_PERIOD: lifecycle.period_paid,  # a renewal marks its period paid, dunning cleared
    P.ADD_ON_PURCHASE: checkout.add_on_bought,  # an add-on bought for money
    P.WALLET_CREDIT: purchases.credit_wallet,  # units, points or balance bought for a wallet
}

# When a payment gets its final answer (paid, declined, not attempted, cancelled), in that transaction
# too, in this order.
ON_SETTLED: dict[PaymentPurpose, tuple[payments.Fulfilment, ...]] = {
    P.WALLET_CREDIT: (
        top_ups.settled,  # frees the wallet's automatic top-up slot
        engine.purchase_settled,  # an auto-billing purchase for a partner's pool or a client's overdraft
        # The platform's packages bought by a partner reselling below another: each level above is debited.
        platform_deductions.on_package_payment,
    ),
    # A client's plan paid to a partner on the centralised balance: the platform's price is deducted.
    P.PLAN_PURCHASE: (platform_deductions.on_client_payment,),
    P.PLAN_CHANGE: (platform_deductions.on_client_payment,),
    P.SUBSCRIPTION_PERIOD: (platform_deductions.on_client_payment,),
}

# Once a provider's answer gives a payment its provider reference: the provider's events that arrived
# before it (kept as ignored, since they matched nothing yet) are applied to it.
ON_PROVIDER_REF: payments.ReferenceLearnt = provider_webhooks.apply_held_events

# Each kind of queued job and the function a worker runs for it.
JOBS: dict[str, work.JobHandler] = {
    idempotency.PURGE_JOB: idempotency.purge_job,
    renewals.CHARGE_SAVED_CARD: renewals.charge_card_job,
    renewals.ASK_TO_PAY: renewals.ask_to_pay_job,
    top_ups.CHARGE_JOB: top_ups.charge_job,
    credit_billing.RENEW_JOB: credit_billing.renew_job,
    engine.BUY_JOB: engine.buy_job,
    platform_deductions.RETRY_JOB: platform_deductions.retry_job,
}


def install() -> None:
    payments.install(payments.Deliveries(on_paid=ON_PAID, on_settled=ON_SETTLED, on_provider_ref=ON_PROVIDER_REF))
    work.install(JOBS)
