"""A workspace pays for something its partner sells (a plan, an add-on, a credit package) with a
card (new or saved), boleto, pix, or by hand, as the partner's gateway configuration allows.

The payment row commits first, under the caller's idempotency key; only then is the provider
called, outside any transaction, with our payment's reference as its idempotency key. A retry with
the same key continues the same payment: one left unknown by a timeout is looked up at the provider
before anything is charged again. What was bought is delivered when the payment succeeds, whether
that is in the charge's own answer, a webhook, or the reconciler, exactly once.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from billing.accounts import opening, top_ups
from billing.accounts.opening import workspace_wallet
from billing.catalog import plans
from billing.charges import charging, gateway_configs, payments
from billing.core import audit, idempotency, tenancy
from billing.core.errors import BillingError, ErrorCode
from billing.core.money import Money
from billing.core.tenancy import Viewer
from billing.documents import coupons, invoices
from billing.subscriptions import current, lifecycle, workspace_status
from billing.subscriptions.lifecycle import Subscriber
from models.catalog import AddOn, CreditPackage
from models.documents import CouponRedemption
from models.enums import (
    OwnerKind,
    PaymentMethodKind,
    PaymentMode,
    PaymentPurpose,
    PaymentStatus,
    Permission,
    PlanStatus,
)
from models.payments import GatewayConfig, Payment, SavedPaymentMethod
from models.subscriptions import Subscription, WorkspaceAddOn
from models.tenancy import Workspace

MAX_ADD_ON_QUANTITY = 1000
_TAX_ID = re.compile(r"\d{11}|\d{14}")  # CPF or CNPJ, digits only


@dataclass(frozen=True, slots=True)
class Item:
    """Exactly one of plan, add-on or credit package."""

    plan_id: int | None = None
    add_on_id: int | None = None
    credit_package_id: int | None = None
    quantity: int = 1


@dataclass(frozen=True, slots=True)
class CheckoutResult:
    payment: Payment | None  # None when nothing had to be paid (a free plan, a trial)
    subscription: Subscription | None = None


async def add_on_bought(payment: Payment) -> None:
    purpose = payment.purpose
    row, _ = await WorkspaceAddOn.get_or_create(
        workspace_id=purpose["workspace_id"],
        add_on_id=purpose["add_on_id"],
        defaults={"partner_id": payment.partner_id, "quantity": 0},
    )
    if not row.active:
        # Bought again with money, it is not paid in points: the points period it had ended with it.
        row.paid_through = None
    row.quantity = (row.quantity if row.active else 0) + int(purpose["quantity"])
    row.active, row.lapsed_at = True, None
    await row.save(update_fields=["quantity", "active", "lapsed_at", "paid_through"])
    await workspace_status.recompute(int(purpose["workspace_id"]))


@dataclass(frozen=True, slots=True)
class Priced:
    price: Money
    purpose: dict[str, Any]
    line: invoices.LineInput  # the invoice's line for it

    @property
    def item(self) -> coupons.Item:
        return coupons.Item(self.line.item_type, int(self.line.item_id or 0))


async def _priced(viewer: Viewer, workspace: Workspace, item: Item) -> Priced | None:
    """The price, the purpose and the invoice line of what is bought; None for a plan that starts
    without paying."""
    chosen = [x for x in (item.plan_id, item.add_on_id, item.credit_package_id) if x is not None]
    if len(chosen) != 1:
        raise BillingError(ErrorCode.INVALID_INPUT, "choose exactly one plan, add-on or credit package", field="item")
    if item.plan_id is not None:
        sale = await lifecycle.plan_for_sale(viewer, workspace, item.plan_id)
        if sale is None:
            return None
        plan, price = sale
        subscriber = Subscriber(workspace.partner_id, workspace.id)
        line = invoices.LineInput(plan.name, price.amount, 1, "Plan", plan.id)
        return Priced(price, lifecycle.purchase_purpose(subscriber, plan, ""), line)
    if not 1 <= item.quantity <= MAX_ADD_ON_QUANTITY:
        raise BillingError(ErrorCode.INVALID_INPUT, f"quantity is 1 to {MAX_ADD_ON_QUANTITY}", field="quantity")
    if item.add_on_id is not None:
        add_on = await AddOn.get_or_none(id=item.add_on_id, partner_id=workspace.partner_id)
        if add_on is None or add_on.status is not PlanStatus.ACTIVE:
            raise BillingError(ErrorCode.NOT_FOUND, "add-on not found", field="addOnId")
        purpose = {
            "kind": PaymentPurpose.ADD_ON_PURCHASE,
            "workspace_id": workspace.id,
            "add_on_id": add_on.id,
            "quantity": item.quantity,
        }
        line = invoices.LineInput(add_on.name, add_on.price_amount, item.quantity, "AddOn", add_on.id)
        return Priced(Money(add_on.price_amount * item.quantity, add_on.currency), purpose, line)
    package = await CreditPackage.get_or_none(id=item.credit_package_id, partner_id=workspace.partner_id)
    if package is None or package.status is not PlanStatus.ACTIVE:
        raise BillingError(ErrorCode.NOT_FOUND, "credit package not found", field="creditPackageId")
    wallet = await workspace_wallet(workspace, package.unit)
    purpose = {
        "kind": PaymentPurpose.WALLET_CREDIT,
        "wallet_id": wallet.id,
        "quantity": package.quantity * item.quantity,
        "package_id": package.id,
        "packages": plans.package_lines(package, item.quantity),
    }
    line = invoices.LineInput(package.name, package.price_amount, item.quantity, "CreditPackage", package.id)
    return Priced(Money(package.price_amount * item.quantity, package.currency), purpose, line)


@dataclass(frozen=True, slots=True)
class Sale:
    """Who pays whom: the payer, and the collector whose gateway configuration takes the money (a
    partner for its clients; None: the platform, for partners)."""

    payer_key: str
    partner_id: int  # the tenant the payment belongs to
    collector_id: int | None

    def collector_of_record(self) -> dict[str, int]:
        """What a payment's purpose keeps of its collector when that is not the default one (the platform,
        for a partner's payment): a parent collecting from a partner reselling below it."""
        return {"collector": self.collector_id} if self.payer_key.startswith("PARTNER:") and self.collector_id else {}

    def payer_id(self) -> str | None:
        """The payer's global id: "WORKSPACE:4" is the Workspace 4, "PARTNER:2" the Partner 2."""
        kind, _, db_id = self.payer_key.partition(":")
        return audit.global_id(kind.capitalize(), int(db_id))


def collector_of(payment: Payment) -> int | None:
    """Who collects a payment, and so who alone may say it was paid by hand: the workspace's partner for a
    client's payment; for a partner's, the platform (None) or the parent it tops its balance up with."""
    if payment.payer_key.startswith("WORKSPACE:"):
        return payment.partner_id
    collector = payment.purpose.get("collector")
    return int(collector) if collector is not None else None


async def _route(
    sale: Sale, method: PaymentMethodKind, saved_method_id: int | None
) -> tuple[GatewayConfig | None, SavedPaymentMethod | None]:
    """Which configuration collects: a saved card's own (even after the collector switched
    provider), otherwise the collector's active one; none means the collector records it by hand."""
    if saved_method_id is not None:
        saved = await charging.saved_methods(sale.payer_key).get_or_none(id=saved_method_id)
        if saved is None:
            raise BillingError(ErrorCode.NOT_FOUND, "saved payment method not found", field="savedPaymentMethodId")
        if method is not saved.kind:
            raise BillingError(
                ErrorCode.METHOD_NOT_ALLOWED, f"the saved method is a {saved.kind.value}", field="method"
            )
        return await GatewayConfig.get(id=saved.gateway_config_id), saved
    config = await gateway_configs.active_config(sale.collector_id)
    offered = set(config.methods) if config else {PaymentMethodKind.MANUAL.value}
    if method.value not in offered:
        raise BillingError(
            ErrorCode.METHOD_NOT_ALLOWED,
            f"{method.value} is not offered here (offered: {', '.join(sorted(offered))})",
            field="method",
        )
    return config, None


async def open_payment(
    viewer: Viewer,
    sale: Sale,
    price: Money,
    purpose: dict[str, Any],
    *,
    method: PaymentMethodKind,
    saved_method_id: int | None,
    save_card: bool,
    payer_ip: str | None = None,
    lines: Sequence[invoices.LineInput] | None = None,
    redemptions: Sequence[CouponRedemption] = (),
) -> Payment:
    """The payment row and its invoice (``lines``), committed before any provider hears of it; a manual
    one is issued PENDING, and one that coupons bring to nothing is paid at once."""
    config, _ = await _route(sale, method, saved_method_id)
    purpose = {**purpose, **sale.collector_of_record()}
    if method is PaymentMethodKind.CARD and saved_method_id is None:
        purpose = {**purpose, "save_card": save_card}  # a card paid on a hosted page is kept only if asked
    payment = await payments.create_payment(
        partner_id=sale.partner_id,
        payer_key=sale.payer_key,
        gateway_config_id=config.id if config else None,
        provider=config.provider if config else gateway_configs.MANUAL,
        method=method,
        amount=price.amount,
        currency=price.currency,
        purpose=purpose,
        remote_ip=payer_ip,
        lines=lines,
    )
    await coupons.bind(redemptions, payment.id)  # before it is paid: the plan it starts takes its coupons
    if config is None or config.provider == gateway_configs.MANUAL or payment.amount == 0:
        await lifecycle.collect(payment, PaymentMode.MANUAL, by_hand=False, refuse_decline=True)
    await audit.record(
        actor=viewer.actor,
        action="checkout",
        target_type="Payment",
        target_id=payment.id,
        partner_id=sale.partner_id,
        after={
            "purpose": purpose["kind"],
            "method": method.value,
            "amount": audit.money(price),
            "payer": sale.payer_id(),
        },
    )
    return payment


async def collect(
    payment: Payment,
    sale: Sale,
    method: PaymentMethodKind,
    *,
    card_token: str | None,
    saved_method_id: int | None,
    save_card: bool,
) -> Payment:
    """Outside any transaction: charge the committed payment, or continue it on a retry (an unknown
    one is looked up first; one certainly not attempted, say for a missing tax id, is charged now)."""
    if payment.gateway_config_id is None or payment.provider == gateway_configs.MANUAL:
        return payment
    if payment.status not in (PaymentStatus.CREATED, PaymentStatus.UNKNOWN, PaymentStatus.NOT_ATTEMPTED):
        return payment
    _, saved = await _route(sale, method, saved_method_id) if saved_method_id else (None, None)
    return await charging.collect(payment, saved_method=saved, method_token=card_token, save_method=save_card)


def check_payer_ip(value: str) -> str:
    """A payer's public internet address, written as such: no padding, no private, loopback, reserved
    or link-local address (a frontend passing its own would mislead the provider's fraud checks)."""
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise BillingError(ErrorCode.INVALID_INPUT, "not an IP address", field="payerIp") from None
    if not address.is_global:
        raise BillingError(ErrorCode.INVALID_INPUT, "not a public internet address", field="payerIp")
    return str(address)


def _address_or_none(value: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address(value)) if value else None
    except ValueError:
        return None


def check_card(method: PaymentMethodKind, card_token: str | None, saved_method_id: int | None) -> None:
    if card_token is not None and (method is not PaymentMethodKind.CARD or saved_method_id is not None):
        raise BillingError(ErrorCode.INVALID_INPUT, "a card token goes with a new card payment", field="cardToken")
    if method is PaymentMethodKind.BALANCE:
        raise BillingError(ErrorCode.METHOD_NOT_ALLOWED, "this is not paid from a balance", field="method")


def _check_tax_id(tax_id: str | None) -> str | None:
    if tax_id is None:
        return None
    digits = re.sub(r"[.\-/\s]", "", tax_id)
    if not _TAX_ID.fullmatch(digits):
        raise BillingError(ErrorCode.INVALID_INPUT, "a CPF has 11 digits, a CNPJ 14", field="taxId")
    return digits


async def checkout(
    viewer: Viewer,
    *,
    workspace_id: int,
    item: Item,
    method: PaymentMethodKind,
    idempotency_key: str,
    card_token: str | None = None,
    saved_method_id: int | None = None,
    save_card: bool = False,
    tax_id: str | None = None,
    payer_ip: str | None = None,
    seen_ip: str | None = None,
    coupon_codes: Sequence[str] = (),
) -> CheckoutResult:
    """Sell a workspace a plan, an add-on or a package. ``payer_ip`` is the payer's address as the
    partner's frontend saw it (checked); without it, ``seen_ip``, the address this request came from.
    Providers that weigh fraud by it get it with every card charge (Asaas requires it with a kept card)."""
    if viewer.kind != "WORKSPACE":
        viewer.require(Permission.MANAGE_BILLING)
    workspace = await tenancy.get_scoped(tenancy.workspaces(viewer), workspace_id, "workspace")
    tax_id = _check_tax_id(tax_id)
    check_card(method, card_token, saved_method_id)
    address = check_payer_ip(payer_ip) if payer_ip is not None else _address_or_none(seen_ip)
    sale = Sale(f"WORKSPACE:{workspace.id}", workspace.partner_id, workspace.partner_id)
    request = {
        "workspace": workspace_id,
        "item": [item.plan_id, item.add_on_id, item.credit_package_id, item.quantity],
        "method": method.value,
        "card": card_token,
        "saved": saved_method_id,
        "coupons": [code.upper() for code in coupon_codes],
    }
    if tax_id is not None and tax_id != workspace.tax_id:  # kept for every later charge, retries included
        workspace.tax_id = tax_id
        await workspace.save(update_fields=["tax_id"])

    async def act() -> list[Any]:
        priced = await _priced(viewer, workspace, item)
        if priced is None:  # a free plan or a trial: nothing to collect
            assert item.plan_id is not None
            if coupon_codes:
                raise BillingError(
                    ErrorCode.COUPON_NOT_APPLICABLE,
                    "nothing is paid for this plan now: its partner can apply a coupon to its renewals",
                    field="couponCodes",
                )
            made = await lifecycle.purchase_plan(
                viewer, workspace_id=workspace.id, plan_id=item.plan_id, idempotency_key=f"checkout:{idempotency_key}"
            )
            return ["Subscription" if isinstance(made, Subscription) else "Payment", made.id]
        line, redemptions = priced.line, list[CouponRedemption]()
        if coupon_codes:
            taken, redemptions = await coupons.redeem(
                workspace.partner_id, workspace.id, coupon_codes, priced.item, priced.price.currency
            )
            line = replace(line, discounts=tuple(coupons.discounts(taken, line.quantity * line.unit_price)))
        payment = await open_payment(
            viewer,
            sale,
            priced.price,
            priced.purpose,
            method=method,
            saved_method_id=saved_method_id,
            save_card=save_card,
            payer_ip=address,
            lines=[line],
            redemptions=redemptions,
        )
        return ["Payment", payment.id]

    kind, made_id = await idempotency.run_once(
        scope=viewer.scope,
        operation="checkout",
        key=idempotency_key,
        request=request,
        action=act,
        encode=list,
        decode=list,
    )
    if kind == "Subscription":
        return CheckoutResult(None, await Subscription.get(id=made_id))
    payment = await collect(
        await Payment.get(id=made_id),
        sale,
        method,
        card_token=card_token,
        saved_method_id=saved_method_id,
        save_card=save_card,
    )
    subscription = await current.live_subscription(workspace.id) if item.plan_id else None
    return CheckoutResult(payment, subscription if payment.status is PaymentStatus.SUCCEEDED else None)


async def top_up_wallet(viewer: Viewer, *, wallet_id: int, package_id: int, idempotency_key: str) -> CheckoutResult:
    """Buy one of the partner's packages for a workspace's wallet now: charged to the card an auto
    top-up would charge (through the configuration that saved it), else collected by hand."""
    wallet = await tenancy.get_scoped(tenancy.wallets(viewer), wallet_id, "wallet")
    if wallet.owner_kind is not OwnerKind.WORKSPACE or wallet.workspace_id is None:
        raise BillingError(ErrorCode.NOT_FOUND, "workspace wallet not found", field="walletId")
    card = await top_ups.paying_card(wallet)
    return await checkout(
        viewer,
        workspace_id=wallet.workspace_id,
        item=Item(credit_package_id=package_id),
        method=PaymentMethodKind.CARD if card else PaymentMethodKind.MANUAL,
        saved_method_id=card.id if card else None,
        idempotency_key=f"top-up:{idempotency_key}",
    )


async def buy_platform_package(
    viewer: Viewer,
    *,
    partner_id: int,
    package_id: int,
    method: PaymentMethodKind,
    idempotency_key: str,
    quantity: int = 1,
    card_token: str | None = None,
    saved_method_id: int | None = None,
    save_card: bool = False,
) -> Payment:
    """A partner buys one of the platform's packages in bulk (extra conversations, message credits)
    for its pool, through the platform's gateway, to hand out to its clients with transferUnits.

    A partner reselling below another buys them from its parent, through the parent's gateway, at the
    parent's price (its cost plus its margin on the package); once paid, every level above is debited its
    own parent's price (``platform_deductions.on_package_payment``)."""
    viewer.require(Permission.MANAGE_BILLING)
    if viewer.kind == "WORKSPACE":
        raise BillingError(ErrorCode.FORBIDDEN, "packages for the pool are bought by the partner")
    partner = await tenancy.get_scoped(tenancy.partners(viewer), partner_id, "partner")
    check_card(method, card_token, saved_method_id)
    if not 1 <= quantity <= MAX_ADD_ON_QUANTITY:
        raise BillingError(ErrorCode.INVALID_INPUT, f"quantity is 1 to {MAX_ADD_ON_QUANTITY}", field="quantity")
    sale = Sale(f"PARTNER:{partner.id}", partner.id, partner.parent_id)

    async def act() -> int:
        package = await CreditPackage.get_or_none(id=package_id, partner_id=None)
        if package is None or package.status is not PlanStatus.ACTIVE:
            raise BillingError(ErrorCode.NOT_FOUND, "credit package not found", field="packageId")
        if partner.parent_id is not None and package.currency != partner.default_currency:
            raise BillingError(
                ErrorCode.CURRENCY_MISMATCH,
                f"a partner reselling below another buys in its chain's currency, {partner.default_currency}",
                field="packageId",
            )
        price, owed_above = await plans.package_purchase(partner.id, [(package, quantity)])
        pool = await opening.open_wallet(
            partner_id=partner.id, owner_kind=OwnerKind.PARTNER, owner_id=partner.id, unit=package.unit
        )
        purpose = {
            "kind": PaymentPurpose.WALLET_CREDIT,
            "wallet_id": pool.id,
            "quantity": package.quantity * quantity,
            "package_id": package.id,
            "packages": plans.package_lines(package, quantity),
            "price": price.amount,
            **({"owed_above": owed_above} if owed_above else {}),  # what each level above pays its parent
        }
        payment = await open_payment(
            viewer, sale, price, purpose, method=method, saved_method_id=saved_method_id, save_card=save_card
        )
        return int(payment.id)

    payment_id = await idempotency.run_once(
        scope=viewer.scope,
        operation="package.buy",
        key=idempotency_key,
        request={"partner": partner_id, "package": package_id, "quantity": quantity, "method": method.value},
        action=act,
        encode=int,
        decode=int,
    )
    return await collect(
        await Payment.get(id=payment_id),
        sale,
        method,
        card_token=card_token,
        saved_method_id=saved_method_id,
        save_card=save_card,
    )
