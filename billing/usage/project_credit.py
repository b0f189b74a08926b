"""A project's WhatsApp credit (WCC): what the partner assigns to it, in the partner's currency.

Assigning credit moves nothing out of the partner's centralised balance: the balance pays the
platform's price only when messages are delivered (``billing.usage.whatsapp``). Credit can be taken back,
never below zero (or below the project's credit limit, which the partner sets).
"""

from __future__ import annotations

from dataclasses import dataclass

from tortoise.transactions import in_transaction

from billing.accounts import ledger, opening, top_ups
from billing.accounts.ledger import CausedBy, Leg
from billing.core import audit, idempotency, tenancy
from billing.core.errors import BillingError, ErrorCode
from billing.core.money import MAX_AMOUNT, to_minor
from billing.core.tenancy import Viewer
from billing.core.text import check_text
from models.enums import ExternalAccount, LedgerCause, Permission, UsageCreditPolicy
from models.tenancy import Partner


@dataclass(frozen=True, slots=True)
class Assignment:
    wallet_id: int
    posting_id: int
    balance: int


async def assign(viewer: Viewer, *, project_id: int, amount: int | str, note: str, idempotency_key: str) -> Assignment:
    """Add (amount > 0) or take back (amount < 0) credit on a project, in its partner's currency:
    minor units, or a decimal string in that currency ("150.00", as the API takes it)."""
    viewer.require(Permission.MANAGE_BILLING)
    if viewer.kind == "WORKSPACE":
        raise BillingError(ErrorCode.FORBIDDEN, "a project's credit is assigned by its partner")
    project = await tenancy.get_scoped(tenancy.projects(viewer), project_id, "project")
    partner = await Partner.get(id=project.partner_id)
    currency = partner.default_currency
    if isinstance(amount, str):
        amount = to_minor(amount, currency)
    if amount == 0 or abs(amount) > MAX_AMOUNT:
        raise BillingError(ErrorCode.INVALID_AMOUNT, f"amount is non-zero and at most {MAX_AMOUNT}", field="amount")
    note = check_text(note, "note", max_length=1000, allow_empty=True, multiline=True)

    async def act() -> Assignment:
        wallet = await opening.project_wallet(project, currency)
        leg = (
            Leg(amount, currency, ExternalAccount.ISSUANCE, wallet.id)
            if amount > 0
            else Leg(-amount, currency, wallet.id, ExternalAccount.ISSUANCE)
        )
        async with in_transaction("default"):
            posted = await ledger.post(
                [leg],
                cause=LedgerCause.ADJUSTMENT,
                caused_by=CausedBy("Project", str(project.id)),
                note=note,
                actor=viewer.actor,
            )
            await audit.record(
                actor=viewer.actor,
                action="project.credit",
                target_type="Project",
                target_id=project.id,
                partner_id=project.partner_id,
                after={"amount": audit.quantity(amount, currency), "note": note},
            )
        return Assignment(wallet.id, posted.posting_id, posted.balance_of(wallet.id))

    made = await idempotency.run_once(
        scope=viewer.scope,
        operation="project.credit",
        key=idempotency_key,
        request={"project": project_id, "amount": amount},
        action=act,
        encode=lambda a: [a.wallet_id, a.posting_id, a.balance],
        decode=lambda raw: Assignment(*raw),
    )
    await top_ups.watch(made.wallet_id)
    return made


async def set_policy(viewer: Viewer, *, partner_id: int, policy: UsageCreditPolicy) -> Partner:
    """What happens when a project's credit runs out: REFUSE (hard stop) or ALLOW_TO_CREDIT_LIMIT."""
    viewer.require(Permission.MANAGE_BILLING)
    partner = await tenancy.get_scoped(tenancy.partners(viewer), partner_id, "partner")
    before = partner.usage_credit_policy
    partner.usage_credit_policy = policy
    async with in_transaction("default"):
        await partner.save(update_fields=["usage_credit_policy"])
        await audit.record(
            actor=viewer.actor,
            action="usage.credit_policy",
            target_type="Partner",
            target_id=partner.id,
            partner_id=partner.id,
            before={"policy": before},
            after={"policy": policy.value},
        )
    return partner
