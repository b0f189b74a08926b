"""Balances and their immutable ledger.

``billing.accounts.ledger`` is the only writer of ``Wallet.balance`` and of ``LedgerEntry`` rows. The database
enforces ``balance >= -credit_limit`` so that no bug elsewhere can overdraw a wallet.
"""

from tortoise import fields
from tortoise.migrations.constraints import CheckConstraint

from models.base import Entity
from models.enums import LedgerCause, OwnerKind


class Wallet(Entity):
    """A balance of one unit (POINTS, MESSAGE_CREDITS, SEATS, CONVERSATIONS or a currency code)."""

    partner = fields.ForeignKeyField("models.Partner", related_name="wallets", null=True, on_delete=fields.RESTRICT)
    partner_id: int | None
    owner_kind = fields.CharEnumField(OwnerKind, max_length=16)
    workspace = fields.ForeignKeyField("models.Workspace", related_name="wallets", null=True, on_delete=fields.RESTRICT)
    workspace_id: int | None
    project = fields.ForeignKeyField("models.Project", related_name="wallets", null=True, on_delete=fields.RESTRICT)
    project_id: int | None
    # "PARTNER:7", "WORKSPACE:12": one wallet per owner and unit, whatever the owner's kind.
    owner_key = fields.CharField(max_length=64)
    unit = fields.CharField(max_length=32)
    balance = fields.BigIntField(default=0)
    credit_limit = fields.BigIntField(default=0)
    # A notice (outbox event) when the balance falls below this; re-armed once it is back above.
    # Usage charged exactly less the whole minor units usage moved, in fine units (10^-10 of a minor
    # unit), within [-1/2, 1/2) of a minor unit: billing.usage.exact_amounts.
    usage_remainder = fields.BigIntField(default=0, db_default=0)  # db_default: rows made before it start at 0
    low_balance_threshold = fields.BigIntField(null=True)
    low_balance_notified = fields.BooleanField(default=False)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "wallet"
        unique_together = (("owner_key", "unit"),)
        constraints = (
            CheckConstraint(check="balance >= -credit_limit", name="wallet_balance_within_credit_limit"),
            CheckConstraint(check="credit_limit >= 0", name="wallet_credit_limit_not_negative"),
            CheckConstraint(check="balance <= 1000000000000000000", name="wallet_balance_at_most_10_pow_18"),
        )


class Posting(Entity):
    """One balanced movement of value: one or more legs, written in one transaction."""

    partner = fields.ForeignKeyField("models.Partner", related_name=None, null=True, on_delete=fields.RESTRICT)
    partner_id: int | None
    cause = fields.CharEnumField(LedgerCause, max_length=16)
    caused_by_type = fields.CharField(max_length=32, null=True)  # "Payment", "UsageEvent", "Subscription"...
    caused_by_id = fields.CharField(max_length=64, null=True)
    note = fields.TextField(default="")
    actor = fields.CharField(max_length=120, null=True)  # who asked for it: "api_key:3", "user:PARTNER:9"

    class Meta:
        table = "posting"


class LedgerEntry(Entity):
    """One side of one leg on one wallet. Never updated, never deleted."""

    posting = fields.ForeignKeyField("models.Posting", related_name="entries", on_delete=fields.RESTRICT)
    posting_id: int
    partner = fields.ForeignKeyField("models.Partner", related_name=None, null=True, on_delete=fields.RESTRICT)
    partner_id: int | None
    wallet = fields.ForeignKeyField("models.Wallet", related_name="entries", on_delete=fields.RESTRICT)
    wallet_id: int
    unit = fields.CharField(max_length=32)
    amount = fields.BigIntField()  # signed: credit > 0, debit < 0
    balance_after = fields.BigIntField()
    cause = fields.CharEnumField(LedgerCause, max_length=16)
    # The other side: another wallet, or an external account (GATEWAY, ISSUANCE, EXPIRY...).
    counter_wallet = fields.ForeignKeyField("models.Wallet", related_name=None, null=True, on_delete=fields.RESTRICT)
    counter_wallet_id: int | None
    counter_account = fields.CharField(max_length=32, null=True)
    lot = fields.ForeignKeyField("models.CreditLot", related_name="entries", null=True, on_delete=fields.RESTRICT)
    lot_id: int | None

    class Meta:
        table = "ledger_entry"
        indexes = (("wallet_id", "id"),)


class CreditLot(Entity):
    """Credits granted or bought with an expiry, spent earliest-expiring first (wallets issue)."""

    partner = fields.ForeignKeyField("models.Partner", related_name=None, null=True, on_delete=fields.RESTRICT)
    partner_id: int | None
    wallet = fields.ForeignKeyField("models.Wallet", related_name="lots", on_delete=fields.RESTRICT)
    wallet_id: int
    amount = fields.BigIntField()
    remaining = fields.BigIntField()
    expires_at = fields.DatetimeField(null=True)
    expired_at = fields.DatetimeField(null=True)

    class Meta:
        table = "credit_lot"
        constraints = (CheckConstraint(check="remaining >= 0", name="credit_lot_remaining_not_negative"),)


class AutoTopUp(Entity):
    """Buy ``package`` for the wallet when its balance (plus a top-up in flight) falls below ``threshold``."""

    partner = fields.ForeignKeyField("models.Partner", related_name=None, null=True, on_delete=fields.CASCADE)
    partner_id: int | None
    wallet = fields.OneToOneField("models.Wallet", related_name="auto_top_up", on_delete=fields.CASCADE)
    wallet_id: int
    package = fields.ForeignKeyField("models.CreditPackage", related_name=None, on_delete=fields.RESTRICT)
    package_id: int
    threshold = fields.BigIntField()
    enabled = fields.BooleanField(default=True)
    # At most one top-up in flight per wallet: set with a conditional update, cleared when it settles.
    in_flight_payment_id = fields.BigIntField(null=True)
    failures = fields.IntField(default=0)  # declines in a row
    retry_after = fields.DatetimeField(null=True)  # back-off after a decline

    class Meta:
        table = "auto_top_up"


class PlatformDeduction(Entity):
    """What the platform takes from a partner's centralised balance for a client's plan: the
    platform price (not the partner's) of a first period or a plan change (PLAN) or of a renewal
    (RENEWAL). One row per thing paid for; debited once, as soon as the balance allows."""

    partner = fields.ForeignKeyField("models.Partner", related_name=None, on_delete=fields.RESTRICT)
    partner_id: int
    workspace = fields.ForeignKeyField("models.Workspace", related_name=None, null=True, on_delete=fields.SET_NULL)
    workspace_id: int | None
    kind = fields.CharField(max_length=16)  # PLAN or RENEWAL
    source = fields.CharField(max_length=64)  # "Payment:42": what the client paid
    plan = fields.ForeignKeyField("models.Plan", related_name=None, null=True, on_delete=fields.SET_NULL)
    plan_id: int | None
    amount = fields.BigIntField()
    currency = fields.CharField(max_length=3)
    posting_id = fields.BigIntField(null=True)  # set when debited
    debited_at = fields.DatetimeField(null=True)
    attempts = fields.IntField(default=0)
    # A sub-partner's client: every level up the chain, from this partner to the platform's direct partner,
    # each debited its parent's price ([{"partner_id": 7, "amount": 6488}, ...]), in one posting. Empty: a
    # direct partner's, which is ``partner_id`` debited ``amount`` alone.
    chain = fields.JSONField(default=list, db_default="[]")

    class Meta:
        table = "platform_deduction"
        unique_together = (("source", "kind"),)
        indexes = (("partner_id", "created_at"),)
