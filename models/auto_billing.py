"""Auto-billing (flow C): units owed to workspaces out of a partner's pool, and the one purchase in
flight per wallet that refills a pool or a workspace's credits."""

from enum import StrEnum

from tortoise import fields

from models.base import Entity


class PoolGrantStatus(StrEnum):
    PENDING = "PENDING"  # the pool does not hold it yet: auto-billing is buying
    DELIVERED = "DELIVERED"


class PoolGrant(Entity):
    """Units a workspace receives from its partner's pool: a plan's included units for one paid period,
    or credits the workspace bought through auto-billing. Delivered with one transfer, once."""

    partner = fields.ForeignKeyField("models.Partner", related_name=None, on_delete=fields.RESTRICT)
    partner_id: int
    workspace = fields.ForeignKeyField("models.Workspace", related_name=None, on_delete=fields.RESTRICT)
    workspace_id: int
    unit = fields.CharField(max_length=32)
    quantity = fields.BigIntField()
    # What owes it, e.g. "SubscriptionPeriod:12" or "Payment:7": one grant per source and unit.
    source = fields.CharField(max_length=64)
    status = fields.CharEnumField(PoolGrantStatus, max_length=16, default=PoolGrantStatus.PENDING)
    note = fields.TextField(default="")
    expires_at = fields.DatetimeField(null=True)  # a plan's allowance ends with its period
    posting_id = fields.BigIntField(null=True)  # the transfer that delivered it
    delivered_at = fields.DatetimeField(null=True)

    class Meta:
        table = "pool_grant"
        unique_together = (("source", "unit"),)
        indexes = (("partner_id", "unit", "status"),)


class AutoBillingSlot(Entity):
    """At most one auto-billing purchase in flight per wallet (a partner's pool, or a workspace's
    credits). ``in_flight_payment_id``: null when free, 0 once claimed (the worker is about to buy),
    then the payment's id until it has its answer. After a decline it waits until ``retry_after``."""

    partner = fields.ForeignKeyField("models.Partner", related_name=None, on_delete=fields.CASCADE)
    partner_id: int
    wallet = fields.OneToOneField("models.Wallet", related_name="auto_billing_slot", on_delete=fields.CASCADE)
    wallet_id: int
    in_flight_payment_id = fields.BigIntField(null=True)
    failures = fields.IntField(default=0)  # declines in a row
    retry_after = fields.DatetimeField(null=True)
    last_failure = fields.TextField(null=True)
    # A workspace wallet's own credit limit while auto-billing's overdraft is open (restored after).
    credit_limit_before = fields.BigIntField(null=True)

    class Meta:
        table = "auto_billing_slot"
