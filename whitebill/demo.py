"""Seeds a demo platform so GraphiQL shows something at once. Safe to run again: it adds nothing
twice, and prints fresh keys each time (keys are stored hashed, so old ones cannot be shown)."""

from __future__ import annotations

from tortoise import Tortoise

from billing.accounts import wallets
from billing.core.tenancy import Viewer
from billing.subscriptions import lifecycle
from billing.tenants import api_keys, partners
from billing.tenants.passwords import hash_password
from models.catalog import AddOn, CreditPackage, Plan, PlanFamily
from models.enums import PARTNER_PERMISSIONS, PLATFORM_PERMISSIONS, BillingInterval, Unit
from models.tenancy import ApiKey, Branding, Partner, PartnerUser, Workspace, WorkspaceUser
from schema.ids import to_global_id
from whitebill import db
from whitebill.settings import Settings

DEMO_SLUG = "demo-agency"
DEMO_USER = "owner@demo-agency.example"
DEMO_PASSWORD = "demo-password"  # noqa: S105 (the demo's, printed on purpose)
DEMO_DOMAIN = "demo.localhost"  # browsers and curl resolve *.localhost to this machine: the portal's brand
DEMO_CLIENT = "dono@padaria.example"
SYSTEM = Viewer(kind="PLATFORM", actor="demo", permissions=PLATFORM_PERMISSIONS)


async def _catalog() -> None:
    if await PlanFamily.exists(name="Chatbot"):
        return
    family = await PlanFamily.create(name="Chatbot", description="Basic and Pro, monthly or yearly")
    for tier, monthly, limits in (
        ("Basic", 2900, {"chatbots": 1, "members": 3, "conversations": 1000, "message_credits": 10000}),
        ("Pro", 9900, {"chatbots": 5, "members": 10, "conversations": 10000, "message_credits": 50000}),
    ):
        await Plan.create(
            family=family,
            name=f"{tier} Monthly",
            interval=BillingInterval.MONTHLY,
            price_amount=monthly,
            currency="USD",
            limits=limits,
        )
        await Plan.create(
            family=family,
            name=f"{tier} Yearly",
            interval=BillingInterval.YEARLY,
            price_amount=monthly * 10,
            currency="USD",
            limits=limits,
        )
    await CreditPackage.create(
        name="2,000 message credits",
        unit=Unit.MESSAGE_CREDITS,
        quantity=2000,
        price_amount=1000,
        currency="USD",
    )


async def _partner() -> Partner:
    partner = await Partner.get_or_none(slug=DEMO_SLUG)
    if partner is None:
        partner = await partners.create_partner(SYSTEM, name="Demo Agency", slug=DEMO_SLUG, currency="BRL")
        await AddOn.create(
            partner=partner,
            name="Extra chatbot",
            limit_deltas={"chatbots": 1},
            price_amount=4990,
            currency="BRL",
            points_cost=200,
        )
        await CreditPackage.create(
            partner=partner,
            name="500 points",
            unit=Unit.POINTS,
            quantity=500,
            price_amount=4990,
            currency="BRL",
        )
    agency = Viewer(kind="PARTNER", actor="demo", partner_id=partner.id, permissions=PARTNER_PERMISSIONS)
    for name, email in (
        ("Padaria Central", "dono@padaria.example"),
        ("Clinica Sorriso", "admin@sorriso.example"),
        ("Loja Azul", "contato@lojaazul.example"),
    ):
        if not await Workspace.exists(partner_id=partner.id, owner_email=email):
            workspace = await partners.create_workspace(agency, name=name, owner_email=email)
            await wallets.adjust_workspace_balance(
                agency,
                workspace_id=workspace.id,
                unit="POINTS",
                amount=500,
                note="welcome points",
                idempotency_key=f"demo-welcome-{workspace.id}",
            )
            basic = await Plan.get(name="Basic Monthly")
            await lifecycle.assign_plan(
                agency,
                workspace_id=workspace.id,
                plan_id=basic.id,
                note="demo",
                idempotency_key=f"demo-plan-{workspace.id}",
            )
    if partner.domain is None and not await Partner.exists(domain=DEMO_DOMAIN):
        partner.domain = DEMO_DOMAIN
        await partner.save(update_fields=["domain"])
        await Branding.filter(partner_id=partner.id).update(primary_color="#6d28d9", secondary_color="#0f9d7a")
    padaria = await Workspace.get(partner_id=partner.id, owner_email=DEMO_CLIENT)
    if not await WorkspaceUser.exists(partner_id=partner.id, email=DEMO_CLIENT):
        await WorkspaceUser.create(
            partner_id=partner.id,
            workspace_id=padaria.id,
            email=DEMO_CLIENT,
            name="Dono da Padaria",
            password_hash=hash_password(DEMO_PASSWORD),
        )
    if not await PartnerUser.exists(partner_id=partner.id):
        await PartnerUser.create(
            partner_id=partner.id,
            email=DEMO_USER,
            name="Demo owner",
            is_admin=True,
            permissions=sorted(p.value for p in PARTNER_PERMISSIONS),
            password_hash=hash_password(DEMO_PASSWORD),
        )
    return partner


async def seed(settings: Settings, *, port: int = 8000) -> None:
    await db.connect(settings.database_url)
    try:
        await _catalog()
        partner = await _partner()
        await ApiKey.filter(name__in=["demo platform", "demo partner"]).delete()
        platform_key = await api_keys.create_key(
            partner_id=None, name="demo platform", creator=api_keys.operator("demo")
        )
        partner_key = await api_keys.create_key(
            partner_id=partner.id, name="demo partner", creator=api_keys.operator("demo")
        )
    finally:
        await Tortoise.close_connections()
    print(
        f"""
Demo data is ready: partner "Demo Agency" (id {to_global_id("Partner", partner.id)}) with three workspaces.

  Platform operator key:  {platform_key.secret}
  Demo partner key:       {partner_key.secret}
  Demo partner sign-in:   login(input: {{brand: "{DEMO_SLUG}", email: "{DEMO_USER}", password: "{DEMO_PASSWORD}"}})

The reference portal: http://{DEMO_DOMAIN}:{port}/portal/ (staff: {DEMO_USER}, a client: {DEMO_CLIENT};
both with the password {DEMO_PASSWORD}).

Open http://127.0.0.1:{port}/graphql and add the header
  {{"Authorization": "Bearer {partner_key.secret}"}}
then run:  {{ workspaces(first: 10) {{ nodes {{ id name ownerEmail wallets {{ unit balance {{ amount unit }} }} }} }} }}
""",
        flush=True,
    )
