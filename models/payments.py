"""Gateway configurations, payments, saved payment methods and provider webhook events."""

from tortoise import fields

from models.base import Entity
from models.enums import GatewayMode, PaymentMethodKind, PaymentPurpose, PaymentStatus, RefundStatus


class GatewayConfig(Entity):
    """A partner's (or, with partner null, the platform's) payment provider configuration."""

    partner = fields.ForeignKeyField(
        "models.Partner", related_name="gateway_configs", null=True, on_delete=fields.CASCADE
    )
    partner_id: int | None
    provider = fields.CharField(max_length=32)  # entry point name: manual, stripe, asaas...
    mode = fields.CharEnumField(GatewayMode, max_length=8, default=GatewayMode.TEST)
    credentials_encrypted = fields.BinaryField(null=True)
    credentials_hint = fields.CharField(max_length=16, null=True)
    methods = fields.JSONField(default=list)  # the methods clients may use, a subset of the provider's
    is_active = fields.BooleanField(default=True)  # the one new checkouts go to
    settings = fields.JSONField(default=dict)
    # Our answers to this configuration's provider webhooks: how many non-2xx in a row (a provider's
    # queue stalls behind them), and since when the partner was told (after WEBHOOK_FAILING_AFTER of them).
    webhook_failures = fields.IntField(default=0, db_default=0)  # db_default: rows made before it start at 0
    webhook_failing_since = fields.DatetimeField(null=True)
    # Set when a payment asked to keep its card succeeded and the provider gave no reusable token (Asaas
    # approves card tokenization per production account); cleared by the next card kept.
    card_saving_unavailable_since = fields.DatetimeField(null=True)

    class Meta:
        table = "gateway_config"


class GatewayCustomer(Entity):
    """A payer's customer record at one configuration's provider."""

    gateway_config = fields.ForeignKeyField("models.GatewayConfig", related_name=None, on_delete=fields.CASCADE)
    gateway_config_id: int
    payer_key = fields.CharField(max_length=64)
    provider_customer_ref = fields.CharField(max_length=128)

    class Meta:
        table = "gateway_customer"
        unique_together = (("gateway_config", "payer_key"),)


class SavedPaymentMethod(Entity):
    partner = fields.ForeignKeyField("models.Partner", related_name=None, null=True, on_delete=fields.CASCADE)
    partner_id: int | None
    gateway_config = fields.ForeignKeyField("models.GatewayConfig", related_name=None, on_delete=fields.RESTRICT)
    gateway_config_id: int
    payer_key = fields.CharField(max_length=64)  # "WORKSPACE:12" or "PARTNER:7"
    kind = fields.CharEnumField(PaymentMethodKind, max_length=16)
    provider_customer_ref = fields.CharField(max_length=128, null=True)
    provider_method_ref = fields.CharField(max_length=128)
    brand = fields.CharField(max_length=32, null=True)
    last4 = fields.CharField(max_length=4, null=True)
    is_default = fields.BooleanField(default=True)
    replaced_at = fields.DatetimeField(null=True)
    # The payer's address when the card was kept: sent with its later off-session charges (Asaas requires
    # ``remoteIp`` on every charge of a ``creditCardToken``).
    remote_ip = fields.CharField(max_length=45, null=True)

    class Meta:
        table = "saved_payment_method"


class Payment(Entity):
    """An attempt to collect money. Our id is created before the provider is called and is its idempotency key."""

    partner = fields.ForeignKeyField("models.Partner", related_name="payments", null=True, on_delete=fields.RESTRICT)
    partner_id: int | None
    payer_key = fields.CharField(max_length=64)
    # Random and unique: the idempotency key we send to the provider (ids repeat across installs).
    reference = fields.CharField(max_length=64, unique=True)
    gateway_config = fields.ForeignKeyField(
        "models.GatewayConfig", related_name=None, null=True, on_delete=fields.RESTRICT
    )
    gateway_config_id: int | None
    provider = fields.CharField(max_length=32)
    method = fields.CharEnumField(PaymentMethodKind, max_length=16)
    amount = fields.BigIntField()
    currency = fields.CharField(max_length=3)
    status = fields.CharEnumField(PaymentStatus, max_length=24, default=PaymentStatus.CREATED)
    provider_ref = fields.CharField(max_length=128, null=True)
    # What it pays for: {"kind": "WALLET_CREDIT", "wallet_id": 5, "quantity": 500}
    purpose = fields.JSONField()
    purpose_kind = fields.CharEnumField(PaymentPurpose, max_length=32)  # the column stays a VARCHAR(32)
    decline_reason = fields.TextField(null=True)
    payer_action = fields.JSONField(null=True)  # hosted invoice URL, boleto line, pix payload...
    note = fields.TextField(default="")
    remote_ip = fields.CharField(max_length=45, null=True)  # the payer's address at checkout, when known
    refunded_amount = fields.BigIntField(default=0)
    # How much of what it bought has been taken back (refunds, chargebacks): reversals apply the
    # difference to the refunded amount once, with a conditional update on this column.
    reversed_amount = fields.BigIntField(default=0)
    # The reconciler asks the provider again at this time (pending and unknown payments), backing off.
    next_check_at = fields.DatetimeField(null=True, index=True)
    check_attempts = fields.IntField(default=0)
    fulfilled_at = fields.DatetimeField(null=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "payment"
        unique_together = (("provider", "provider_ref"),)


class Refund(Entity):
    """Money going back to the payer, asked of the provider (or recorded for a manual payment). It is
    REQUESTED until the provider says it is DONE; only then is what the payment bought taken back. A
    refund the provider refuses, denies or that fails later is FAILED (what a done one took is given
    back). Refunds made at the provider itself (its dashboard) are recorded when it reports them."""

    payment = fields.ForeignKeyField("models.Payment", related_name="refunds", on_delete=fields.RESTRICT)
    payment_id: int
    partner = fields.ForeignKeyField("models.Partner", related_name=None, null=True, on_delete=fields.RESTRICT)
    partner_id: int | None
    amount = fields.BigIntField()  # minor units of the payment's currency
    currency = fields.CharField(max_length=3)
    status = fields.CharEnumField(RefundStatus, max_length=16, default=RefundStatus.REQUESTED)
    # The idempotency key the provider dedupes this refund on (ours), or the provider's own id for one
    # made at the provider.
    key = fields.CharField(max_length=128)
    provider_ref = fields.CharField(max_length=255, null=True)
    reason = fields.TextField(default="")
    failure_reason = fields.TextField(null=True)
    payer_action = fields.JSONField(null=True)  # a boleto refund: where the payer gives bank details
    # The invoice line this refund gives back (its credit note credits that line); none: the invoice's
    # lines in order.
    invoice_line = fields.ForeignKeyField(
        "models.DocumentLine", related_name=None, null=True, on_delete=fields.RESTRICT
    )
    invoice_line_id: int | None
    # The reconciler asks the provider again about a REQUESTED refund at this time, backing off.
    next_check_at = fields.DatetimeField(null=True, index=True)
    check_attempts = fields.IntField(default=0)
    settled_at = fields.DatetimeField(null=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "refund"
        unique_together = (("payment", "key"),)


class PaymentTransition(Entity):
    """Every state change of a payment, in order: the audit trail of money."""

    payment = fields.ForeignKeyField("models.Payment", related_name="transitions", on_delete=fields.CASCADE)
    payment_id: int
    from_status = fields.CharEnumField(PaymentStatus, max_length=24)
    to_status = fields.CharEnumField(PaymentStatus, max_length=24)
    reason = fields.TextField(default="")

    class Meta:
        table = "payment_transition"


class WebhookEvent(Entity):
    """A provider webhook, stored once per provider event id so it is processed exactly once."""

    gateway_config = fields.ForeignKeyField("models.GatewayConfig", related_name=None, on_delete=fields.RESTRICT)
    gateway_config_id: int
    provider = fields.CharField(max_length=32)
    event_id = fields.CharField(max_length=128)
    event_type = fields.CharField(max_length=64)
    payload = fields.JSONField()
    processed_at = fields.DatetimeField(null=True)

    class Meta:
        table = "webhook_event"
        unique_together = (("gateway_config", "event_id"),)


class IgnoredProviderEvent(Entity):
    """A verified provider event that matched no payment of the partner's configurations of that provider
    (a transfer, an invoice, a payment made outside whitebill...). It was answered 200, so the provider's
    queue moved on, and changed nothing. If a payment later learns its provider reference (the event
    overtook the charge's own reply), the event is applied to it then and this row goes away."""

    gateway_config = fields.ForeignKeyField("models.GatewayConfig", related_name=None, on_delete=fields.CASCADE)
    gateway_config_id: int  # where it arrived
    provider = fields.CharField(max_length=32)
    event_id = fields.CharField(max_length=128)
    event_type = fields.CharField(max_length=64)
    provider_ref = fields.CharField(max_length=128, null=True, index=True)  # the provider's payment id, if any
    reference = fields.CharField(max_length=64, null=True)  # our payment reference, where the provider echoes it
    notice = fields.JSONField()  # what the event says about the payment, to apply it later
    payload = fields.JSONField()

    class Meta:
        table = "ignored_provider_event"
        unique_together = (("gateway_config", "event_id"),)
