"""Seeds a demo platform so GraphiQL shows something at once, and every example of the README and the
docs answers as written (tests/test_doc_examples.py runs them). Safe to run again: it adds nothing twice
and keeps the keys it made before (they are stored hashed, so they cannot be shown again); ``--new-keys``
replaces them."""

from __future__ import annotations

from tortoise import Tortoise
from tortoise.expressions import Q

from billing.accounts import wallets
from billing.catalog import rate_cards
from billing.core.tenancy import Viewer
from billing.subscriptions import lifecycle
from billing.tenants import api_keys, partners
from billing.tenants.passwords import hash_password
from billing.usage import project_credit
from models.catalog import AddOn, CreditPackage, Plan, PlanFamily, RateCard
from models.enums import (
    PARTNER_PERMISSIONS,
    PLATFORM_PERMISSIONS,
    BillingInterval,
    MarginKind,
    MessageCategory,
    Permission,
    Unit,
)
from models.tenancy import ApiKey, Branding, Partner, PartnerUser, Project, Workspace, WorkspaceUser
from models.wallets import Posting
from schema.ids import to_global_id
from whitebill import ready
from whitebill.settings import Settings

DEMO_SLUG = "demo-agency"
DEMO_USER = "owner@demo-agency.example"
DEMO_PASSWORD = "demo-password"  # noqa: S105 (the demo's, printed on purpose)
DEMO_DOMAIN = "demo.localhost"  # browsers and curl resolve *.localhost to this machine: the portal's brand
DEMO_CLIENT = "dono@padaria.example"
SYSTEM = Viewer(kind="PLATFORM", actor="demo", permissions=PLATFORM_PERMISSIONS)
KEYS = ("demo platform", "demo partner", "demo usage")  # the names of the keys the demo makes
BALANCE_NOTE = "demo: the centralised balance usage is paid from"
CREDIT_NOTE = "demo: project credit"
# The platform's price per delivered WhatsApp message in BRL, per country ("*": any other) and category.
RATES = (
    ("BR", MessageCategory.MARKETING, "0.0625"),
    ("BR", MessageCategory.UTILITY, "0.0080"),
    ("BR", MessageCategory.AUTHENTICATION, "0.0315"),
    ("BR", MessageCategory.SERVICE, "0"),
    ("*", MessageCategory.MARKETING, "0.0750"),
    ("*", MessageCategory.UTILITY, "0.0150"),
    ("*", MessageCategory.AUTHENTICATION, "0.0400"),
    ("*", MessageCategory.SERVICE, "0"),
)


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


async def _usage(partner: Partner) -> Project:
    """WhatsApp usage priced and paid for: the platform's rates in BRL, the demo partner's 20 % margin over
    them, R$ 1,000.00 on its centralised balance and R$ 50.00 of credit on the first workspace's default
    project (the project the README's /usage example names). Each is made once."""
    if not await RateCard.exists(partner_id=None, currency="BRL"):
        cells = [rate_cards.CellInput(country, category, price) for country, category, price in RATES]
        await rate_cards.set_platform_rates(SYSTEM, currency="BRL", cells=cells)
    agency = Viewer(kind="PARTNER", actor="demo", partner_id=partner.id, permissions=PARTNER_PERMISSIONS)
    if not await rate_cards.margins(partner.id, "BRL"):
        await rate_cards.set_partner_margin(agency, partner_id=partner.id, kind=MarginKind.PERCENTAGE, value="20")
    # Each grant once: found by its note, not only by its idempotency key (keys are forgotten after 30 days).
    if not await Posting.exists(note=BALANCE_NOTE):
        await wallets.grant_partner_balance(
            SYSTEM,
            partner_id=partner.id,
            currency="BRL",
            amount=100_000,
            note=BALANCE_NOTE,
            idempotency_key="demo-partner-balance",
        )
    padaria = await Workspace.get(partner_id=partner.id, owner_email=DEMO_CLIENT)
    project = await Project.get(workspace_id=padaria.id, is_default=True)
    if not await Posting.exists(note=CREDIT_NOTE):
        await project_credit.assign(
            agency, project_id=project.id, amount="50.00", note=CREDIT_NOTE, idempotency_key="demo-project-credit"
        )
    return project


async def _keys(partner: Partner, *, new_keys: bool) -> dict[str, str] | None:
    """The demo's three keys: made when missing (or all replaced with ``new_keys``), their secrets returned;
    None when the ones made before are kept."""
    demo_keys = ApiKey.filter(name__in=KEYS).filter(Q(partner_id=partner.id) | Q(partner_id=None))
    kept = await demo_keys.filter(revoked_at=None).values_list("name", flat=True)
    if set(kept) == set(KEYS) and not new_keys:
        return None
    await demo_keys.delete()
    creator = api_keys.operator("demo")
    platform = await api_keys.create_key(partner_id=None, name=KEYS[0], creator=creator)
    agency = await api_keys.create_key(partner_id=partner.id, name=KEYS[1], creator=creator)
    usage = await api_keys.create_key(
        partner_id=None, name=KEYS[2], permissions=frozenset({Permission.REPORT_USAGE}), creator=creator
    )
    return {"platform": platform.secret, "partner": agency.secret, "usage": usage.secret}


async def seed(settings: Settings, *, port: int = 8000, new_keys: bool = False) -> None:
    await ready.connect(settings)
    try:
        await _catalog()
        partner = await _partner()
        project = await _usage(partner)
        keys = await _keys(partner, new_keys=new_keys)
    finally:
        await Tortoise.close_connections()
    partner_key = keys["partner"] if keys else "wb_…the demo partner key…"
    if keys:
        shown = f"""
  Platform operator key:  {keys["platform"]}
  Demo partner key:       {keys["partner"]}
  Product usage key:      {keys["usage"]}   (REPORT_USAGE: export PRODUCT_KEY=... for POST /usage)"""
    else:
        shown = """
  The demo's keys made before still work; they are stored hashed, so they cannot be shown again.
  `whitebill demo --new-keys` replaces them (and the old ones stop working)."""
    print(
        f"""
Demo data is ready: partner "Demo Agency" (id {to_global_id("Partner", partner.id)}) with three workspaces;
WhatsApp usage is priced in BRL, and project {to_global_id("Project", project.id)} has R$ 50.00 of credit.
{shown}
  Demo partner sign-in:   login(input: {{brand: "{DEMO_SLUG}", email: "{DEMO_USER}", password: "{DEMO_PASSWORD}"}})

The reference portal: http://{DEMO_DOMAIN}:{port}/portal/ (staff: {DEMO_USER}, a client: {DEMO_CLIENT};
both with the password {DEMO_PASSWORD}).

Open http://127.0.0.1:{port}/graphql and add the header
  {{"Authorization": "Bearer {partner_key}"}}
then run:  {{ workspaces(first: 10) {{ nodes {{ id name ownerEmail wallets {{ unit balance {{ amount unit }} }} }} }} }}
""",
        flush=True,
    )
