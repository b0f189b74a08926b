"""The documents payments get: an invoice per payment (its total is what is charged), PAID with a receipt
when paid, VOID when the payment fails for good; coupons by their duration on the first charge and the
renewals, never past a line's amount; a credit note when a refund is done, never when only asked; and the
last redemption of a coupon raced by two checkouts granted once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from billing.accounts import opening
from billing.catalog import plans
from billing.charges import payments
from billing.core import clock
from billing.core.errors import BillingError, ErrorCode
from billing.core.money import Money
from billing.documents import coupons, credit_notes, issuing, numbering
from billing.sales import checkout, purchases, refunds
from billing.subscriptions import lifecycle, renewals
from gateways.base import Outcome
from models.documents import Coupon, CouponRedemption, Document, DocumentLine, TaxRate
from models.enums import (
    BillingInterval,
    CouponDuration,
    CouponKind,
    DocumentKind,
    DocumentStatus,
    OwnerKind,
    PaymentMethodKind,
    PaymentStatus,
    PeriodStatus,
    RefundStatus,
    SeriesReset,
)
from models.payments import Payment, Refund
from models.subscriptions import Subscription, SubscriptionPeriod
from tests.conftest import Backend
from tests.factories import a_partner, a_workspace, partner_viewer

pytestmark = pytest.mark.usefixtures("database")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


async def at(moment: datetime) -> None:
    await clock.advance(moment - clock.now())


async def taxed_partner():
    """Acme, with ISS 5 % included in its prices and PIS 1.65 % added on top."""
    partner = await a_partner("Acme")
    await TaxRate.create(partner_id=partner.id, name="ISS", percentage=Decimal(5), inclusive=True)
    await TaxRate.create(partner_id=partner.id, name="PIS", percentage=Decimal("1.65"), inclusive=False)
    for kind, mark in ((DocumentKind.INVOICE, ""), (DocumentKind.CREDIT_NOTE, "CN-")):
        await numbering.set_series(partner.id, kind, prefix=f"ACME-{mark}{{year}}-", reset=SeriesReset.NEVER)
    return partner


async def a_plan(partner, amount: int = 9990):
    return await plans.create_plan(
        partner_viewer(partner), name="Pro", interval=BillingInterval.MONTHLY, price=Money(amount, "BRL"), limits={}
    )


async def record(partner, payment_id: int) -> None:
    await purchases.record_payment(
        partner_viewer(partner), payment_id=payment_id, note="pix", idempotency_key=f"rec-{payment_id}"
    )


async def sell(partner, workspace_id: int, item: checkout.Item, key: str, codes: list[str] | None = None):
    """A checkout of ``item`` for the workspace, collected by hand, with the coupon codes typed."""
    return await checkout.checkout(
        partner_viewer(partner),
        workspace_id=workspace_id,
        item=item,
        method=PaymentMethodKind.MANUAL,
        idempotency_key=key,
        coupon_codes=codes or [],
    )


async def invoice_lines(invoice: Document) -> list[tuple]:
    return [
        (line.description, line.subtotal, line.discount, [(t["name"], t["amount"]) for t in line.taxes], line.total)
        for line in await DocumentLine.filter(document_id=invoice.id).order_by("position")
    ]


async def test_a_ten_percent_coupon_for_three_periods_and_two_taxes_one_inclusive_make_these_four_invoices() -> None:
    partner = await taxed_partner()
    workspace = await a_workspace(partner)
    plan = await a_plan(partner)
    await coupons.create(
        partner.id, code="SAVE10", name="10 % off", kind=CouponKind.PERCENTAGE, percentage=Decimal(10),
        duration=CouponDuration.REPEATING, periods=3,
    )  # fmt: skip
    await at(utc(2027, 1, 10, 9))
    bought = await sell(partner, workspace.id, checkout.Item(plan_id=plan.id), "buy", ["save10"])  # any case
    assert bought.payment is not None
    await record(partner, bought.payment.id)
    subscription = await Subscription.get(workspace_id=workspace.id)
    assert subscription.price_amount == 9990  # the plan's price, not the first charge's
    for month in (2, 3, 4):  # three renewals, each paid
        await at(utc(2027, month, 10, 9))
        assert await renewals.run_due() == 1
        for period in await SubscriptionPeriod.filter(subscription_id=subscription.id, status=PeriodStatus.DUE):
            assert period.payment_id is not None
            await record(partner, period.payment_id)

    invoices = await Document.filter(kind=DocumentKind.INVOICE, partner_id=partner.id).order_by("number")
    assert [i.number_text for i in invoices] == [f"ACME-2027-00000{n}" for n in (1, 2, 3, 4)]
    # By hand, per line, each amount rounded once, half-even:
    # With the coupon: 10 % of 99.90 is 9.99, leaving 89.91 (ISS inside). The net is 89.91 / 1.05 =
    # 85.628571...; ISS is 5 % of it, 4.281428... -> 4.28; PIS 1.65 % of it, 1.412871... -> 1.41.
    # The total is 89.91 + 1.41 (PIS on top; ISS is inside) = 91.32.
    discounted = [("Pro", 9990, 999, [("ISS", 428), ("PIS", 141)], 9132)]
    # Without it: net 99.90 / 1.05 = 95.142857...; ISS 4.757142... -> 4.76; PIS 1.569857... -> 1.57;
    # total 99.90 + 1.57 = 101.47.
    full = [("Pro, period 4", 9990, 0, [("ISS", 476), ("PIS", 157)], 10147)]
    assert await invoice_lines(invoices[0]) == discounted
    assert await invoice_lines(invoices[1]) == [("Pro, period 2", *discounted[0][1:])]
    assert await invoice_lines(invoices[2]) == [("Pro, period 3", *discounted[0][1:])]
    assert await invoice_lines(invoices[3]) == full
    assert [(i.subtotal, i.discount_total, i.tax_total, i.total) for i in invoices] == [(9990, 999, 569, 9132)] * 3 + [
        (9990, 0, 633, 10147)
    ]
    # Each invoice is what its payment charged, paid, and has its receipt.
    for invoice in invoices:
        payment = await Payment.get(id=invoice.payment_id)
        assert (payment.amount, payment.status, invoice.status) == (
            invoice.total,
            PaymentStatus.SUCCEEDED,
            DocumentStatus.PAID,
        )
        receipt = await Document.get(kind=DocumentKind.RECEIPT, refers_to_id=invoice.id)
        assert (receipt.total, receipt.payment_id, receipt.status) == (
            invoice.total,
            payment.id,
            DocumentStatus.FINALIZED,
        )
    assert (await Coupon.get(code="SAVE10")).redeemed == 1


async def test_a_declined_payment_voids_its_invoice_and_gives_its_coupon_back() -> None:
    partner = await a_partner("Acme")
    workspace = await a_workspace(partner)
    plan = await a_plan(partner)
    await coupons.create(
        partner.id, code="ONCE", name="R$ 10 off", kind=CouponKind.FIXED, amount=1000, currency="BRL",
        duration=CouponDuration.ONCE, max_redemptions=1,
    )  # fmt: skip
    bought = await sell(partner, workspace.id, checkout.Item(plan_id=plan.id), "buy", ["ONCE"])
    assert bought.payment is not None and bought.payment.amount == 8990
    assert (await Coupon.get(code="ONCE")).redeemed == 1
    await payments.move(bought.payment.id, PaymentStatus.CANCELED, reason="expired")
    invoice = await Document.get(kind=DocumentKind.INVOICE, payment_id=bought.payment.id)
    assert invoice.status is DocumentStatus.VOID and invoice.number == 1  # it keeps its number
    assert (await Coupon.get(code="ONCE")).redeemed == 0
    assert not await Document.exists(kind=DocumentKind.RECEIPT)
    # Taken again by a new checkout: one redemption was left, and it is the only one.
    again = await sell(partner, workspace.id, checkout.Item(plan_id=plan.id), "buy-again", ["ONCE"])
    assert again.payment is not None and (await issuing.invoice_of(again.payment.id)).number == 2  # type: ignore[union-attr]
    assert await CouponRedemption.filter(released_at=None).count() == 1


async def test_a_coupon_never_makes_a_total_negative_and_a_free_charge_is_paid_at_once() -> None:
    partner = await a_partner("Acme")
    workspace = await a_workspace(partner)
    plan = await a_plan(partner, amount=500)
    await coupons.create(
        partner.id, code="BIG", name="R$ 20 off", kind=CouponKind.FIXED, amount=2000, currency="BRL",
        duration=CouponDuration.ONCE,
    )  # fmt: skip
    bought = await sell(partner, workspace.id, checkout.Item(plan_id=plan.id), "buy", ["BIG"])
    assert bought.payment is not None
    assert (bought.payment.amount, bought.payment.status) == (0, PaymentStatus.SUCCEEDED)
    [line] = await DocumentLine.filter(document__payment_id=bought.payment.id, document__kind=DocumentKind.INVOICE)
    assert (line.subtotal, line.discount, line.total, line.discounts) == (
        500,
        500,
        0,
        [{"code": "BIG", "name": "R$ 20 off", "amount": 500}],
    )
    assert (await Subscription.get(workspace_id=workspace.id)).price_amount == 500


async def test_coupons_refused_other_currencies_other_plans_and_stacking_unless_allowed() -> None:
    partner = await a_partner("Acme")
    workspace = await a_workspace(partner)
    plan, other = await a_plan(partner), await a_plan(partner, amount=100)
    await coupons.create(
        partner.id, code="USD5", name="5 dollars", kind=CouponKind.FIXED, amount=500, currency="USD",
        duration=CouponDuration.ONCE,
    )  # fmt: skip
    await coupons.create(
        partner.id, code="ONLYPRO", name="Pro only", kind=CouponKind.PERCENTAGE, percentage=Decimal(5),
        duration=CouponDuration.FOREVER, plan_ids=[plan.id],
    )  # fmt: skip
    await coupons.create(
        partner.id, code="TEN", name="10 %", kind=CouponKind.PERCENTAGE, percentage=Decimal(10),
        duration=CouponDuration.FOREVER,
    )  # fmt: skip
    cases = [
        (plan.id, ["USD5"], ErrorCode.CURRENCY_MISMATCH),
        (other.id, ["ONLYPRO"], ErrorCode.COUPON_NOT_APPLICABLE),
        (plan.id, ["ONLYPRO", "TEN"], ErrorCode.COUPON_NOT_APPLICABLE),  # the partner does not stack them
        (plan.id, ["NOPE"], ErrorCode.NOT_FOUND),
        (plan.id, [" TEN"], ErrorCode.INVALID_INPUT),  # padded
        (plan.id, ["TEN\x00"], ErrorCode.INVALID_INPUT),
    ]
    for n, (plan_id, codes, code) in enumerate(cases):
        with pytest.raises(BillingError) as refused:
            await sell(partner, workspace.id, checkout.Item(plan_id=plan_id), f"k{n}", codes)
        assert refused.value.code is code, codes
    assert not await Document.exists() and not await Payment.exists()
    assert sum(c.redeemed for c in await Coupon.all()) == 0
    # Allowed to stack, both apply, each on the line's amount: 5 % and 10 % of 99.90.
    partner.coupons_stack = True
    await partner.save(update_fields=["coupons_stack"])
    bought = await sell(partner, workspace.id, checkout.Item(plan_id=plan.id), "stacked", ["ONLYPRO", "TEN"])
    assert bought.payment is not None and bought.payment.amount == 9990 - 500 - 999  # 4.995 -> 5.00 (half-even)


async def test_the_last_redemption_raced_by_two_checkouts_is_granted_once(database: Backend) -> None:
    partner = await a_partner("Acme")
    plan = await a_plan(partner)
    first, second = await a_workspace(partner, "One"), await a_workspace(partner, "Two")
    await coupons.create(
        partner.id, code="LAST", name="last one", kind=CouponKind.PERCENTAGE, percentage=Decimal(50),
        duration=CouponDuration.ONCE, max_redemptions=1,
    )  # fmt: skip

    async def buy(workspace) -> Payment | BillingError:
        try:
            made = await sell(partner, workspace.id, checkout.Item(plan_id=plan.id), f"race-{workspace.id}", ["LAST"])
        except BillingError as error:
            return error
        assert made.payment is not None
        return made.payment

    results = await asyncio.gather(buy(first), buy(second))
    won = [r for r in results if isinstance(r, Payment)]
    lost = [r for r in results if isinstance(r, BillingError)]
    assert len(won) == 1 and [e.code for e in lost] == [ErrorCode.COUPON_EXHAUSTED]
    assert won[0].amount == 4995
    assert (await Coupon.get(code="LAST")).redeemed == 1
    assert await CouponRedemption.filter(released_at=None).count() == 1
    # Nothing of the refused checkout was kept: no payment, no invoice, no number taken.
    assert await Payment.all().count() == 1 and await Document.filter(kind=DocumentKind.INVOICE).count() == 1
    assert (await issuing.invoice_of(won[0].id)).number == 1  # type: ignore[union-attr]  # the loser's number: rolled back


async def test_the_same_workspace_cannot_hold_a_coupon_twice_beyond_its_limit() -> None:
    partner = await a_partner("Acme")
    workspace = await a_workspace(partner)
    package = await plans.create_credit_package(
        partner_viewer(partner), name="500 points", unit="points", quantity=500, price=Money(1000, "BRL")
    )
    await coupons.create(
        partner.id, code="PER1", name="once each", kind=CouponKind.PERCENTAGE, percentage=Decimal(10),
        duration=CouponDuration.ONCE, max_per_workspace=1,
    )  # fmt: skip

    async def buy(key: str):
        return await sell(partner, workspace.id, checkout.Item(credit_package_id=package.id), key, ["PER1"])

    assert (await buy("a")).payment.amount == 900  # type: ignore[union-attr]
    with pytest.raises(BillingError) as refused:
        await buy("b")
    assert refused.value.code is ErrorCode.COUPON_EXHAUSTED
    assert (await buy("a")).payment.amount == 900  # type: ignore[union-attr]  # the same key: the same checkout


async def test_refunding_one_line_issues_a_credit_note_when_done_and_the_invoice_does_not_change() -> None:
    partner = await taxed_partner()
    workspace = await a_workspace(partner)
    wallet = await opening.open_wallet(
        partner_id=partner.id, owner_kind=OwnerKind.WORKSPACE, owner_id=workspace.id, unit="points"
    )
    made = await payments.create_payment(
        partner_id=partner.id,
        payer_key=f"WORKSPACE:{workspace.id}",
        gateway_config_id=None,
        provider="manual",
        method=PaymentMethodKind.MANUAL,
        amount=2 * 4990 + 1990,
        currency="BRL",
        purpose={"kind": "WALLET_CREDIT", "wallet_id": wallet.id, "quantity": 1000},
        lines=[
            issuing.invoices.LineInput("500 points", 4990, 2),
            issuing.invoices.LineInput("Support hour", 1990),
        ],
    )
    await payments.move(made.id, PaymentStatus.SUCCEEDED, reason="paid")
    invoice = await issuing.invoice_of(made.id)
    assert invoice is not None and invoice.status is DocumentStatus.PAID
    before = await snapshot(invoice.id)
    lines = await DocumentLine.filter(document_id=invoice.id).order_by("position")
    # Line 1: 99.80 with 5 % inside: net 95.047619...; PIS 1.65 % of it, 1.568285... -> 1.57; total 101.37.
    # Line 2: 19.90: net 18.952380...; PIS 0.312714... -> 0.31; total 20.21.
    assert ([line.total for line in lines], made.amount) == ([10137, 2021], 10137 + 2021)
    _, refund = await refunds.refund_payment(
        partner_viewer(partner), payment_id=made.id, amount=None, reason="no support", idempotency_key="r1",
        invoice_line_id=lines[1].id,
    )  # fmt: skip
    assert (refund.amount, refund.status) == (2021, RefundStatus.DONE)  # a manual payment's refund is done at once
    note = await Document.get(kind=DocumentKind.CREDIT_NOTE, refers_to_id=invoice.id)
    [credited] = await DocumentLine.filter(document_id=note.id)
    # The line's tax goes with it: ISS 0.95 + PIS 0.31 = 1.26 of 20.21, all of it.
    assert (note.number_text, note.total, credited.refers_to_line_id, credited.total, credited.tax) == (
        "ACME-CN-" + str(clock.now().year) + "-000001",
        2021,
        lines[1].id,
        2021,
        lines[1].tax,
    )
    assert await snapshot(invoice.id) == before
    assert await credit_notes.credited_per_line(invoice.id) == {lines[1].id: 2021}
    # That line is all credited: another refund of it is refused before anything is asked.
    with pytest.raises(BillingError) as refused:
        await refunds.refund_payment(
            partner_viewer(partner), payment_id=made.id, amount=None, reason="", idempotency_key="r2",
            invoice_line_id=lines[1].id,
        )  # fmt: skip
    assert refused.value.code is ErrorCode.INVALID_AMOUNT


async def snapshot(document_id: int) -> tuple:
    """Everything a finalized document says (its number, amounts, lines), as stored."""
    document = await Document.get(id=document_id)
    lines = await DocumentLine.filter(document_id=document_id).order_by("position").values()
    return (
        document.number_text,
        document.finalized_at,
        document.subtotal,
        document.discount_total,
        document.tax_total,
        document.total,
        document.currency,
        document.buyer_key,
        [{k: v for k, v in line.items() if k != "created_at"} for line in lines],
    )


async def test_a_coupon_the_partner_applies_by_hand_reduces_the_next_renewals_by_its_duration() -> None:
    partner = await a_partner("Acme")
    workspace = await a_workspace(partner)
    plan = await a_plan(partner, amount=10000)
    await at(utc(2027, 1, 10, 9))
    await lifecycle.assign_plan(
        partner_viewer(partner), workspace_id=workspace.id, plan_id=plan.id, note="", idempotency_key="a"
    )
    await coupons.create(
        partner.id, code="LOYAL", name="loyalty", kind=CouponKind.FIXED, amount=1500, currency="BRL",
        duration=CouponDuration.REPEATING, periods=2, expires_at=utc(2027, 1, 20),
    )  # fmt: skip
    await coupons.apply_by_hand(partner.id, workspace.id, "loyal")
    await at(utc(2027, 1, 21))  # expired now: redemptions held keep their duration, new ones are refused
    with pytest.raises(BillingError) as refused:
        await coupons.apply_by_hand(partner.id, workspace.id, "LOYAL")
    assert refused.value.code is ErrorCode.COUPON_NOT_APPLICABLE
    subscription = await Subscription.get(workspace_id=workspace.id)
    charged = []
    for month in (2, 3, 4):
        await at(utc(2027, month, 10, 9))
        assert await renewals.run_due() == 1
        for period in await SubscriptionPeriod.filter(subscription_id=subscription.id, status=PeriodStatus.DUE):
            assert period.payment_id is not None
            charged.append((period.number, (await Payment.get(id=period.payment_id)).amount))
            await record(partner, period.payment_id)
    # The first two renewals after it was applied, 15.00 off each; then the price.
    assert charged == [(2, 8500), (3, 8500), (4, 10000)]


async def test_a_dispute_lost_credits_what_is_left_of_the_invoice_and_a_refund_only_asked_credits_nothing() -> None:
    partner = await taxed_partner()
    workspace = await a_workspace(partner)
    plan = await a_plan(partner)
    bought = await sell(partner, workspace.id, checkout.Item(plan_id=plan.id), "buy")
    assert bought.payment is not None
    await record(partner, bought.payment.id)
    invoice = await issuing.invoice_of(bought.payment.id)
    assert invoice is not None
    refund = await Refund.create(
        payment_id=bought.payment.id, partner_id=partner.id, amount=1000, currency="BRL", key="asked"
    )  # REQUESTED: the provider has not said it is done
    assert not await Document.exists(kind=DocumentKind.CREDIT_NOTE)
    await refunds.settle(refund.id, Outcome.SUCCEEDED)
    first = await Document.get(kind=DocumentKind.CREDIT_NOTE)
    assert first.total == 1000
    assert await refunds.record_chargeback(bought.payment.id, reason="fraudulent")
    notes = await Document.filter(kind=DocumentKind.CREDIT_NOTE).order_by("number")
    assert [(n.number, n.total) for n in notes] == [(1, 1000), (2, invoice.total - 1000)]
    assert notes[1].note == "dispute lost: fraudulent"
    assert sum(n.total for n in notes) == invoice.total  # all of it, and never more


async def test_a_refund_with_a_long_reason_on_several_lines_still_gets_its_credit_note() -> None:
    partner = await a_partner("Acme")
    workspace = await a_workspace(partner)
    plan = await a_plan(partner)
    bought = await sell(partner, workspace.id, checkout.Item(plan_id=plan.id), "buy")
    assert bought.payment is not None
    await record(partner, bought.payment.id)
    reason = "The client asked\nfor its money back. " + "x" * 450
    _, refund = await refunds.refund_payment(
        partner_viewer(partner), payment_id=bought.payment.id, amount=None, reason=reason, idempotency_key="r"
    )
    assert refund.status is RefundStatus.DONE
    note = await Document.get(kind=DocumentKind.CREDIT_NOTE)
    assert note.total == 9990 and len(note.note) == 300 and "\n" not in note.note


async def test_a_forever_coupon_that_makes_a_plan_free_keeps_it_free_at_every_renewal() -> None:
    partner = await a_partner("Acme")
    workspace = await a_workspace(partner)
    plan = await a_plan(partner, amount=5000)
    await coupons.create(
        partner.id, code="FREE", name="on the house", kind=CouponKind.PERCENTAGE, percentage=Decimal(100),
        duration=CouponDuration.FOREVER,
    )  # fmt: skip
    await at(utc(2027, 1, 10, 9))
    bought = await sell(partner, workspace.id, checkout.Item(plan_id=plan.id), "buy", ["FREE"])
    assert bought.payment is not None and bought.payment.status is PaymentStatus.SUCCEEDED  # nothing to pay
    subscription = await Subscription.get(workspace_id=workspace.id)
    for month in (2, 3):
        await at(utc(2027, month, 10, 9))
        assert await renewals.run_due() == 1
    periods = await SubscriptionPeriod.filter(subscription_id=subscription.id).order_by("number")
    paid = [(await Payment.get(id=p.payment_id)).amount for p in periods if p.payment_id is not None]
    assert paid == [0, 0, 0] and [p.status for p in periods] == [PeriodStatus.PAID] * 3


async def test_a_redemption_given_back_leaves_the_workspace_under_its_limit() -> None:
    partner = await a_partner("Acme")
    workspace = await a_workspace(partner)
    package = await plans.create_credit_package(
        partner_viewer(partner), name="500 points", unit="points", quantity=500, price=Money(1000, "BRL")
    )
    await coupons.create(
        partner.id, code="TWICE", name="twice each", kind=CouponKind.PERCENTAGE, percentage=Decimal(10),
        duration=CouponDuration.ONCE, max_per_workspace=2,
    )  # fmt: skip

    async def buy(key: str) -> Payment:
        made = await sell(partner, workspace.id, checkout.Item(credit_package_id=package.id), key, ["TWICE"])
        assert made.payment is not None
        return made.payment

    first, _ = await buy("a"), await buy("b")
    await payments.move(first.id, PaymentStatus.CANCELED, reason="expired")  # gives its redemption back
    third = await buy("c")  # under the limit again: its number follows the highest held
    assert third.amount == 900
    with pytest.raises(BillingError) as refused:
        await buy("d")
    assert refused.value.code is ErrorCode.COUPON_EXHAUSTED
