"""Who is who: the platform, partners, their workspaces and projects, users, keys, branding."""

from tortoise import fields

from models.base import Entity
from models.enums import PartnerStatus, RefundPlanPolicy, UsageCreditPolicy, WorkspaceStatus


def default_dunning_days() -> list[int]:
    """Retry a failed renewal on these days after the due date (SPEC flow F)."""
    return [1, 3, 9, 15, 21]


class Partner(Entity):
    """An agency or reseller that brands the product and sells it to its workspaces."""

    name = fields.CharField(max_length=200)
    slug = fields.CharField(max_length=80, unique=True)
    domain = fields.CharField(max_length=253, unique=True, null=True)
    status = fields.CharEnumField(PartnerStatus, default=PartnerStatus.ACTIVE, max_length=16)
    default_currency = fields.CharField(max_length=3, default="USD")
    credit_billing_enabled = fields.BooleanField(default=False)
    auto_billing_enabled = fields.BooleanField(default=False)
    fallback_plan = fields.ForeignKeyField("models.Plan", related_name=None, null=True, on_delete=fields.SET_NULL)
    fallback_plan_id: int | None
    # Dunning schedule: days after the due date on which a failed renewal is retried.
    dunning_retry_days = fields.JSONField(default=default_dunning_days)
    dunning_restrict_after = fields.IntField(default=3)
    dunning_suspend_after = fields.IntField(default=5)
    dunning_fallback_after = fields.IntField(null=True)  # UChat: drop to the fallback plan after N failures
    refund_plan_policy = fields.CharEnumField(
        RefundPlanPolicy, max_length=24, default=RefundPlanPolicy.KEEP_TO_PERIOD_END
    )
    refund_takes_back_units = fields.BooleanField(default=True)  # points bought are taken back on refund
    tax_id = fields.CharField(max_length=20, null=True)  # when the platform charges the partner through Asaas
    settings = fields.JSONField(default=dict)
    coupons_stack = fields.BooleanField(default=False, db_default=False)  # two coupons on one charge add up
    # Resellers of resellers: the partner this one resells through (None: the platform's own partner), and
    # how far below the platform it sits (1: a direct partner).
    parent = fields.ForeignKeyField("models.Partner", related_name=None, null=True, on_delete=fields.RESTRICT)
    parent_id: int | None
    level = fields.IntField(default=1, db_default=1)
    # When a project's WhatsApp credit runs out: a hard stop, or down to the project's credit limit.
    usage_credit_policy = fields.CharEnumField(UsageCreditPolicy, max_length=24, default=UsageCreditPolicy.REFUSE)

    class Meta:
        table = "partner"


class Branding(Entity):
    partner = fields.OneToOneField("models.Partner", related_name="branding", on_delete=fields.CASCADE)
    partner_id: int
    display_name = fields.CharField(max_length=200)
    logo_url = fields.CharField(max_length=500, null=True)
    logo_dark_url = fields.CharField(max_length=500, null=True)
    favicon_url = fields.CharField(max_length=500, null=True)
    primary_color = fields.CharField(max_length=7, null=True)
    secondary_color = fields.CharField(max_length=7, null=True)
    support_email = fields.CharField(max_length=254, null=True)
    # Browser origins (besides the custom domain) whose pages may call the API for this partner.
    allowed_origins = fields.JSONField(default=list, db_default="[]")

    class Meta:
        table = "branding"


class BillingProfile(Entity):
    """Legal identity of a payer (Asaas needs name, CPF/CNPJ and address)."""

    partner = fields.ForeignKeyField("models.Partner", related_name="billing_profiles", on_delete=fields.CASCADE)
    partner_id: int
    workspace = fields.OneToOneField(
        "models.Workspace", related_name="billing_profile", null=True, on_delete=fields.CASCADE
    )
    workspace_id: int | None
    is_partner_profile = fields.BooleanField(default=False)
    legal_name = fields.CharField(max_length=200)
    tax_id = fields.CharField(max_length=32, null=True)
    email = fields.CharField(max_length=254, null=True)
    phone = fields.CharField(max_length=32, null=True)
    address_line = fields.CharField(max_length=200, null=True)
    address_number = fields.CharField(max_length=20, null=True)
    complement = fields.CharField(max_length=100, null=True)
    district = fields.CharField(max_length=100, null=True)
    city = fields.CharField(max_length=100, null=True)
    state = fields.CharField(max_length=50, null=True)
    postal_code = fields.CharField(max_length=16, null=True)
    country = fields.CharField(max_length=2, default="BR")

    class Meta:
        table = "billing_profile"


class PlatformUser(Entity):
    email = fields.CharField(max_length=254, unique=True)
    password_hash = fields.CharField(max_length=200)
    name = fields.CharField(max_length=200, default="")
    is_active = fields.BooleanField(default=True)

    class Meta:
        table = "platform_user"


class PartnerUser(Entity):
    partner = fields.ForeignKeyField("models.Partner", related_name="users", on_delete=fields.CASCADE)
    partner_id: int
    email = fields.CharField(max_length=254)
    password_hash = fields.CharField(max_length=200, null=True)
    name = fields.CharField(max_length=200, default="")
    is_admin = fields.BooleanField(default=False)
    permissions = fields.JSONField(default=list)
    is_active = fields.BooleanField(default=True)

    class Meta:
        table = "partner_user"
        unique_together = (("partner", "email"),)


class Workspace(Entity):
    """A partner's client: it has projects, a subscription, add-ons, limits, usage and wallets."""

    partner = fields.ForeignKeyField("models.Partner", related_name="workspaces", on_delete=fields.RESTRICT)
    partner_id: int
    name = fields.CharField(max_length=200)
    owner_email = fields.CharField(max_length=254, db_index=True)
    status = fields.CharEnumField(WorkspaceStatus, default=WorkspaceStatus.ACTIVE, max_length=16)
    # Every applying reason, e.g. [{"kind": "LIMIT_EXCEEDED", "limit": "members", "usage": 7, "max": 5}]
    status_reasons = fields.JSONField(default=list)
    auto_renew = fields.BooleanField(default=True)
    external_ref = fields.CharField(max_length=120, null=True)
    tax_id = fields.CharField(max_length=20, null=True)  # CPF/CNPJ: Asaas needs one to charge the payer
    deleted_at = fields.DatetimeField(null=True)

    class Meta:
        table = "workspace"
        unique_together = (("partner", "external_ref"),)


class Project(Entity):
    partner = fields.ForeignKeyField("models.Partner", related_name="projects", on_delete=fields.RESTRICT)
    partner_id: int
    workspace = fields.ForeignKeyField("models.Workspace", related_name="projects", on_delete=fields.CASCADE)
    workspace_id: int
    name = fields.CharField(max_length=200)
    is_default = fields.BooleanField(default=False)

    class Meta:
        table = "project"


class WorkspaceUser(Entity):
    partner = fields.ForeignKeyField("models.Partner", related_name="workspace_users", on_delete=fields.CASCADE)
    partner_id: int
    workspace = fields.ForeignKeyField("models.Workspace", related_name="users", on_delete=fields.CASCADE)
    workspace_id: int
    email = fields.CharField(max_length=254)
    password_hash = fields.CharField(max_length=200, null=True)
    name = fields.CharField(max_length=200, default="")
    is_active = fields.BooleanField(default=True)

    class Meta:
        table = "workspace_user"
        # White label: an e-mail is unique within its partner, not globally.
        unique_together = (("partner", "email"),)


class ApiKey(Entity):
    """A machine client's key: shown once, stored as a SHA-256 hash of the whole secret."""

    partner = fields.ForeignKeyField("models.Partner", related_name="api_keys", null=True, on_delete=fields.CASCADE)
    partner_id: int | None
    is_platform = fields.BooleanField(default=False)
    name = fields.CharField(max_length=200, default="")
    prefix = fields.CharField(max_length=16, unique=True)
    key_hash = fields.CharField(max_length=64, unique=True)
    permissions = fields.JSONField(default=list)
    last_used_at = fields.DatetimeField(null=True)
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "api_key"


class UserSession(Entity):
    """A login session. The token is stored hashed."""

    token_hash = fields.CharField(max_length=64, unique=True)
    user_kind = fields.CharField(max_length=16)  # PLATFORM, PARTNER, WORKSPACE
    user_id = fields.BigIntField()
    partner = fields.ForeignKeyField("models.Partner", related_name=None, null=True, on_delete=fields.CASCADE)
    partner_id: int | None
    expires_at = fields.DatetimeField()
    revoked_at = fields.DatetimeField(null=True)
    last_seen_at = fields.DatetimeField(null=True)

    class Meta:
        table = "user_session"


class PasswordResetToken(Entity):
    """A single-use, expiring token sent by e-mail to set or reset a password (stored hashed). Made when
    its e-mail is sent; the outbox row of that e-mail never holds it, and a retried send replaces it."""

    token_hash = fields.CharField(max_length=64, unique=True)
    outbox_event_id = fields.BigIntField(null=True, unique=True)  # the e-mail that carried it
    user_kind = fields.CharField(max_length=16)  # PLATFORM, PARTNER, WORKSPACE
    user_id = fields.BigIntField()
    partner = fields.ForeignKeyField("models.Partner", related_name=None, null=True, on_delete=fields.CASCADE)
    partner_id: int | None
    expires_at = fields.DatetimeField()
    used_at = fields.DatetimeField(null=True)

    class Meta:
        table = "password_reset_token"
