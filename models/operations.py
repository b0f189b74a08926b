"""Cross-cutting records: idempotency, the outbox, background jobs, the audit log, the test clock."""

from tortoise import fields

from models.base import Entity
from models.enums import IdempotencyStatus, WorkState


class IdempotencyRecord(Entity):
    """The first answer to (tenant, operation, key), kept at least 30 days."""

    scope = fields.CharField(max_length=64)  # "PARTNER:7", "PLATFORM"
    operation = fields.CharField(max_length=64)
    key = fields.CharField(max_length=255)
    request_hash = fields.CharField(max_length=64)
    status = fields.CharEnumField(IdempotencyStatus, max_length=16)
    claim_token = fields.CharField(max_length=32, null=True)  # who holds an IN_PROGRESS claim
    result = fields.JSONField(null=True)
    locked_until = fields.DatetimeField(null=True)
    expires_at = fields.DatetimeField()

    class Meta:
        table = "idempotency_record"
        unique_together = (("scope", "operation", "key"),)


class LeasedWork(Entity):
    """Columns a worker claims with: due time, lease owner and lease expiry, attempts."""

    state = fields.CharEnumField(WorkState, max_length=8, default=WorkState.PENDING)
    run_at = fields.DatetimeField()
    lease_owner = fields.CharField(max_length=64, null=True)
    lease_until = fields.DatetimeField(null=True)
    attempts = fields.IntField(default=0)
    last_error = fields.TextField(null=True)
    finished_at = fields.DatetimeField(null=True)

    class Meta:
        abstract = True


class OutboxEvent(LeasedWork):
    """A notification written in the same transaction as the change it announces."""

    partner = fields.ForeignKeyField("models.Partner", related_name=None, null=True, on_delete=fields.CASCADE)
    partner_id: int | None
    event_type = fields.CharField(max_length=64)
    payload = fields.JSONField()

    class Meta:
        table = "outbox_event"
        indexes = (("state", "run_at"),)


class Job(LeasedWork):
    """Background work (renewals, retries, reconciliation). A dedupe key makes scheduling idempotent."""

    kind = fields.CharField(max_length=64)
    payload = fields.JSONField(default=dict)
    dedupe_key = fields.CharField(max_length=200, null=True, unique=True)
    result = fields.JSONField(null=True)

    class Meta:
        table = "job"
        indexes = (("state", "run_at"),)


class AuditLog(Entity):
    """Every manual or privileged action: who, when, what before and after, request id."""

    partner = fields.ForeignKeyField("models.Partner", related_name=None, null=True, on_delete=fields.CASCADE)
    partner_id: int | None
    actor = fields.CharField(max_length=120)
    action = fields.CharField(max_length=64)
    target_type = fields.CharField(max_length=32)
    target_id = fields.CharField(max_length=64)
    before = fields.JSONField(null=True)
    after = fields.JSONField(null=True)
    request_id = fields.CharField(max_length=64, null=True)

    class Meta:
        table = "audit_log"


class ClockSetting(Entity):
    """The test clock's offset, shared with worker processes through the database."""

    name = fields.CharField(max_length=32, unique=True)
    offset_microseconds = fields.BigIntField(default=0)

    class Meta:
        table = "clock_setting"


class WebhookEndpoint(Entity):
    """Where a partner wants its events: an URL, a signing secret (encrypted) and the event types."""

    partner = fields.ForeignKeyField("models.Partner", related_name=None, on_delete=fields.CASCADE)
    partner_id: int
    url = fields.CharField(max_length=500)
    secret_encrypted = fields.BinaryField()
    secret_hint = fields.CharField(max_length=16, null=True)
    events = fields.JSONField(default=list)  # empty: every event
    enabled = fields.BooleanField(default=True)
    max_attempts = fields.IntField(default=8)  # then the delivery is DEAD
    # The body's shape (billing.outbox.payloads): 2, the API's ids and times, for endpoints made since 0.2.0;
    # db_default: those made before it keep version 1.
    payload_version = fields.SmallIntField(default=2, db_default=1)

    class Meta:
        table = "webhook_endpoint"


class WebhookDelivery(LeasedWork):
    """One outbox event to one endpoint: retried with back-off, at least once, with a stable event id."""

    endpoint = fields.ForeignKeyField("models.WebhookEndpoint", related_name="deliveries", on_delete=fields.CASCADE)
    endpoint_id: int
    partner = fields.ForeignKeyField("models.Partner", related_name=None, on_delete=fields.CASCADE)
    partner_id: int
    event_id = fields.BigIntField()  # the outbox event's id
    event_type = fields.CharField(max_length=64)
    body = fields.TextField()  # the exact JSON sent, signed as is
    last_status = fields.IntField(null=True)

    class Meta:
        table = "webhook_delivery"
        unique_together = (("endpoint", "event_id"),)
        indexes = (("state", "run_at"),)


class PersistedOperation(Entity):
    """A GraphQL operation the deployment trusts (``whitebill operations register``): its document, as
    registered, under the SHA-256 of that text, which clients send instead of the text
    (``extensions.persistedQuery.sha256Hash``). With WHITEBILL_OPERATIONS=registered, only these run."""

    sha256 = fields.CharField(max_length=64, unique=True)  # lower-case hex of the document's UTF-8 bytes
    name = fields.CharField(max_length=200, null=True)  # the operation's name; null: an anonymous one
    document = fields.TextField()  # the operation and the fragments it uses, exactly as hashed

    class Meta:
        table = "persisted_operation"
