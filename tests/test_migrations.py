"""Migrations applied to a database as an older release left it, with rows in it, on SQLite and on
PostgreSQL: the schema change goes through and the rows come out as the new code reads them."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import secrets
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from tortoise.backends.base import executor
from tortoise.context import TortoiseContext
from tortoise.models import Model

from billing.catalog import rate_cards
from billing.core import audit, clock, sql
from models.catalog import AddOn, PlatformRate, RateCardCell
from models.enums import AddOnState, PaymentMethodKind, PaymentPurpose, PaymentStatus, RefundStatus, WorkspaceStatus
from models.operations import WebhookEndpoint
from models.payments import GatewayConfig, IgnoredProviderEvent, Payment, Refund
from models.subscriptions import WorkspaceAddOn
from models.tenancy import Partner, Project, Workspace
from models.wallets import Wallet
from tests.conftest import Backend
from whitebill import db


@contextlib.contextmanager
def _older_database(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An empty database of the backend, not migrated (dropped afterwards on PostgreSQL)."""
    if not backend.is_postgres:
        yield f"sqlite://{tmp_path_factory.mktemp('older') / 'older.sqlite3'}"
        return
    name = f"whitebill_test_{secrets.token_hex(4)}_older"
    parts = urlsplit(backend.url)
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        admin = urlunsplit(("postgresql", parts.netloc, "/postgres", "", ""))

        async def drop() -> None:
            conn = await asyncpg.connect(admin)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await conn.close()

        asyncio.run(drop())


async def older_payment(**fields: object) -> int:
    """A payment row as a release before 0015 wrote it (the model has columns that did not exist then)."""
    now = clock.now()
    row = {
        "created_at": now,
        "updated_at": now,
        "note": "",
        "refunded_amount": 0,
        "reversed_amount": 0,
        "check_attempts": 0,
        **fields,
    }
    row["purpose"] = json.dumps(row["purpose"])
    for key in ("method", "status", "purpose_kind"):
        row[key] = str(getattr(row[key], "value", row[key]))
    names = list(row)
    marks = ", ".join(f"${i}" for i in range(1, len(names) + 1))
    rows = await sql.fetch(
        f"INSERT INTO payment ({', '.join(names)}) VALUES ({marks}) RETURNING id",
        *row.values(),
    )
    return int(rows[0]["id"])


async def _connected(url: str, act: Callable[[], Awaitable[None]]) -> None:
    # Tortoise caches INSERT statements per connection name: another backend's must be forgotten.
    executor.EXECUTOR_CACHE.clear()
    async with TortoiseContext() as ctx:
        await ctx.init(config=db.tortoise_config(url))
        await act()


async def as_of_release(model: Model) -> None:
    """Write ``model`` (built in memory by today's model) in the columns its table has at the release the
    database is at, and give it its id: the model itself would write, and read back, columns that release
    does not have."""
    table = model._meta.db_table
    if sql.is_postgres():
        rows = await sql.fetch(
            "SELECT column_name AS name FROM information_schema.columns WHERE table_name = $1", table
        )
    else:
        rows = await sql.fetch(f"SELECT name FROM pragma_table_info('{table}')")
    present = {row["name"] for row in rows}
    values = {
        column: model._meta.fields_map[name].to_db_value(getattr(model, name), model)
        for name, column in model._meta.fields_db_projection.items()
        if column in present and column != "id"
    }
    placeholders = ", ".join(f"${n}" for n in range(1, len(values) + 1))
    made = await sql.fetch(
        f"INSERT INTO {table} ({', '.join(values)}) VALUES ({placeholders}) RETURNING id",
        *values.values(),
    )
    model.id = made[0]["id"]


async def an_old_partner() -> Partner:
    """A partner as the releases these tests start from made it, with its branding: raw rows, since the
    models have more columns now (branding.allowed_origins since 0019, partner.coupons_stack since 0021)."""
    partner = Partner(name="Agency", slug=f"p-{secrets.token_hex(4)}", default_currency="BRL", created_at=clock.now())
    await as_of_release(partner)
    await sql.execute(
        "INSERT INTO branding (created_at, partner_id, display_name) VALUES ($1, $2, $3)",
        clock.now(),
        partner.id,
        "Agency",
    )
    return partner


async def an_old_workspace(partner: Partner) -> Workspace:
    """A workspace of ``partner`` with its default project, as those releases made them."""
    workspace = Workspace(
        partner_id=partner.id,
        name="Client",
        owner_email=f"{secrets.token_hex(4)}@client.example",
        status=WorkspaceStatus.RESTRICTED,
        status_reasons=[],
        created_at=clock.now(),
    )
    await as_of_release(workspace)
    await as_of_release(
        Project(
            partner_id=partner.id, workspace_id=workspace.id, name="Client", is_default=True, created_at=clock.now()
        )
    )
    return workspace


def _read(url: str, read: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(_connected(url, read))


# --- one walk per database ------------------------------------------------------------------------------


async def fill_0012(made: dict[str, Any]) -> None:
    """Rows as the release before 0012 wrote them."""
    lapse = made["lapse"] = clock.now() - timedelta(days=3)
    ids: dict[str, int] = made.setdefault("ids", {})
    partner = await an_old_partner()
    workspace = await an_old_workspace(partner)

    async def lapsed(name: str, run_at: datetime = lapse) -> None:
        await audit.emit(
            "add_on.lapsed", partner.id, {"workspace_id": workspace.id, "add_on_id": ids[name], "points_needed": 10}
        )
        await sql.execute("UPDATE outbox_event SET run_at = $1 WHERE id = (SELECT MAX(id) FROM outbox_event)", run_at)

    async def audited(action: str, name: str, quantity: int, *, old_form: bool = False) -> None:
        add_on = ids[name] if old_form else audit.global_id("AddOn", ids[name])  # ids before 0.2.0
        await audit.record(
            actor="test",
            action=action,
            target_type="Workspace",
            target_id=workspace.id,
            partner_id=partner.id,
            after={"add_on_id": add_on, "quantity": quantity},
        )

    names = ("lapsed", "removed", "held", "set_again", "bought_with_points", "bought_with_money", "set_before")
    for name in names:
        add_on = await AddOn.create(partner_id=partner.id, name=name, currency="BRL", points_cost=10)
        ids[name] = add_on.id
        held = name == "held"
        await sql.execute(
            "INSERT INTO workspace_add_on (created_at, partner_id, workspace_id, add_on_id, quantity, active,"
            " paid_through) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            clock.now(),
            partner.id,
            workspace.id,
            add_on.id,
            2 if held else 0,
            held,
            lapse,
        )
    await lapsed("lapsed", lapse - timedelta(days=30))  # lapsed twice: the latest counts
    await lapsed("lapsed")
    # Lapsed, then set again by the partner and removed.
    await lapsed("set_again")
    await audited("add_on.set", "set_again", 1)
    await audited("add_on.set", "set_again", 0)
    # Lapsed, then bought again with points (an audit row of before 0.2.0), then removed.
    await lapsed("bought_with_points")
    await audited("add_on.points", "bought_with_points", 1, old_form=True)
    # Lapsed, then bought with money the next day, and taken back with the refunded payment.
    await lapsed("bought_with_money")
    await older_payment(
        partner_id=partner.id,
        payer_key=f"WORKSPACE:{workspace.id}",
        reference=f"pay-{secrets.token_hex(4)}",
        provider="manual",
        method=PaymentMethodKind.MANUAL,
        amount=1500,
        currency="BRL",
        status=PaymentStatus.REFUNDED,
        purpose={"workspace_id": workspace.id, "add_on_id": ids["bought_with_money"], "quantity": 1},
        purpose_kind=PaymentPurpose.ADD_ON_PURCHASE,
        fulfilled_at=lapse + timedelta(days=1),
    )
    # Set by the partner before it lapsed: that does not undo the lapse.
    await audited("add_on.set", "set_before", 1)
    await lapsed("set_before")


async def fill_0013(made: dict[str, Any]) -> None:
    """Rows as the release before 0013 wrote them."""
    partner = await an_old_partner()
    made["partner"] = partner.id
    # The 0012 columns only: the model now has more.
    await sql.execute(
        "INSERT INTO gateway_config (created_at, partner_id, provider, mode, methods, is_active, settings)"
        " VALUES ($1, $2, 'manual', 'TEST', '[\"MANUAL\"]', TRUE, '{}')",
        clock.now(),
        partner.id,
    )


async def fill_0014(made: dict[str, Any]) -> None:
    """Rows as the release before 0014 wrote them."""
    partner = await an_old_partner()
    for name, refunded, status in (
        ("refunded", 1500, PaymentStatus.PARTIALLY_REFUNDED),
        ("paid", 0, PaymentStatus.SUCCEEDED),
    ):
        made[name] = await older_payment(
            partner_id=partner.id,
            payer_key="WORKSPACE:1",
            reference=f"pay_{name}",
            provider="manual",
            method=PaymentMethodKind.MANUAL,
            amount=5000,
            currency="BRL",
            purpose={"kind": "WALLET_CREDIT", "wallet_id": 1, "quantity": 10},
            purpose_kind=PaymentPurpose.WALLET_CREDIT,
            status=status,
            refunded_amount=refunded,
            reversed_amount=refunded,
        )


async def fill_0015(made: dict[str, Any]) -> None:
    """Rows as the release before 0015 wrote them."""
    partner = await an_old_partner()
    made["partner"] = partner.id
    await sql.execute(
        "INSERT INTO gateway_config (created_at, partner_id, provider, mode, methods, is_active, settings,"
        " webhook_failures) VALUES ($1, $2, 'manual', 'TEST', '[\"MANUAL\"]', TRUE, '{}', 0)",
        clock.now(),
        partner.id,
    )
    made["payment"] = await older_payment(
        partner_id=partner.id,
        payer_key="WORKSPACE:1",
        reference="pay_before_0015",
        provider="manual",
        method=PaymentMethodKind.MANUAL,
        amount=5000,
        currency="BRL",
        status=PaymentStatus.SUCCEEDED,
        purpose={"kind": "WALLET_CREDIT", "wallet_id": 1, "quantity": 10},
        purpose_kind=PaymentPurpose.WALLET_CREDIT,
    )


async def fill_0016(made: dict[str, Any]) -> None:
    """Rows as the release before 0016 wrote them."""
    partner = await an_old_partner()
    made["partner"] = partner.id
    rows = await sql.fetch(
        "INSERT INTO wallet (created_at, updated_at, partner_id, owner_kind, owner_key, unit, balance,"
        " credit_limit, low_balance_notified) VALUES ($1, $1, $2, 'PARTNER', $3, 'BRL', -8, 10, FALSE)"
        " RETURNING id",
        clock.now(),
        partner.id,
        f"PARTNER:{partner.id}:old",
    )
    made["wallet"] = int(rows[0]["id"])


async def fill_0017(made: dict[str, Any]) -> None:
    """Rows as the release before 0017 wrote them."""
    partner = await an_old_partner()
    made["partner_id"] = partner.id
    for owner, name in ((None, "platform"), (partner.id, "partner")):  # the two cards
        rows = await sql.fetch(
            "INSERT INTO rate_card (created_at, partner_id, name, currency, version) VALUES ($1, $2, $3, 'BRL', 1)"
            " RETURNING id",
            clock.now(),
            owner,
            name,
        )
        made[name] = int(rows[0]["id"])
    await sql.execute(
        "UPDATE rate_card SET margin_kind = 'PERCENTAGE', margin_value = $1 WHERE id = $2",
        Decimal(20) if sql.is_postgres() else "20",
        made["partner"],
    )
    for card, country, price, kind in (
        (made["platform"], "BR", "0.0625", None),
        (made["platform"], "*", "0.6", None),
        (made["partner"], "BR", "10", "PERCENTAGE"),  # the partner's margin on that cell: 10 %, not 20
    ):
        await sql.execute(
            "INSERT INTO rate_card_cell (created_at, rate_card_id, country, category, price, margin_kind)"
            " VALUES ($1, $2, $3, 'MARKETING', $4, $5)",
            clock.now(),
            card,
            country,
            Decimal(price) if sql.is_postgres() else price,
            kind,
        )


async def fill_0025(made: dict[str, Any]) -> None:
    """An endpoint as the release before 0025 made it: its receiver reads version 1 bodies."""
    partner = await an_old_partner()
    endpoint = WebhookEndpoint(
        partner_id=partner.id, url="https://hooks.agency.example/in", secret_encrypted=b"x", created_at=clock.now()
    )
    await as_of_release(endpoint)
    made["partner"], made["endpoint"] = partner.id, endpoint.id


# Each step: the migration the database is at, the next one's name, and the rows the release at it wrote.
STEPS: list[tuple[str, str, Callable[[dict[str, Any]], Awaitable[None]]]] = [
    ("0011_reset_tokens_off_the_outbox", "0012", fill_0012),
    ("0012_add_on_lapsed_at", "0013", fill_0013),
    ("0013_provider_webhook_queue", "0014", fill_0014),
    ("0014_refunds", "0015", fill_0015),
    ("0015_remote_ip_and_card_saving", "0016", fill_0016),
    ("0016_exact_usage", "0017", fill_0017),
    ("0024_persisted_operations", "0025", fill_0025),
]


@dataclass
class Walk:
    url: str
    applied: list[list[str]]  # what each step's upgrade applied
    made: dict[str, dict[str, Any]]  # what each step's rows need to be found again, by the next migration


@pytest.fixture(scope="session")
def walked(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Walk]:
    """One database per backend walked from 0011 to the newest migration: at each release, the rows it
    wrote; then the next migration; the last step migrates to the newest. Each test then reads its rows as
    today's code does. (One walk, not one database per test: each migration applied costs Tortoise a
    replay of the models' state, seconds per test.)"""
    made: dict[str, dict[str, Any]] = {}
    with _older_database(backend, tmp_path_factory) as url:

        async def walk() -> list[list[str]]:
            applied = []
            await db.migrate(url, quiet=True, upto=STEPS[0][0])
            for n, (_, name, fill) in enumerate(STEPS):
                rows = made[name] = {}
                await _connected(url, functools.partial(fill, rows))
                upto = STEPS[n + 1][0] if n + 1 < len(STEPS) else None
                applied.append(await db.migrate(url, quiet=True, upto=upto))
            return applied

        yield Walk(url, asyncio.run(walk()), made)


def test_each_step_applies_the_next_migration_and_the_last_every_one_after_it(walked: Walk) -> None:
    assert walked.applied == [
        ["models.0012_add_on_lapsed_at"],
        ["models.0013_provider_webhook_queue"],
        ["models.0014_refunds"],
        ["models.0015_remote_ip_and_card_saving"],
        ["models.0016_exact_usage"],
        [
            "models.0017_dated_platform_rates",
            "models.0018_volume_tiers",
            "models.0019_allowed_origins",
            "models.0020_documents",
            "models.0021_coupons",
            "models.0022_partner_hierarchy",
            "models.0023_usage_levels",
            "models.0024_persisted_operations",
        ],
        ["models.0025_webhook_payload_versions"],
    ]


def test_0012_applies_on_a_database_at_0011_and_tells_lapsed_add_ons_from_removed_ones(walked: Walk) -> None:
    """At 0011 a lapsed add-on and a removed one were the same row (inactive, quantity 0); the lapse
    had written its add_on.lapsed event. After 0012 an inactive add-on reads LAPSED, since its latest
    lapse, unless something held it again after that lapse (set by the partner, bought with points or
    with money: it was removed since); REMOVED without a lapse; the held one ACTIVE."""
    lapse, ids = walked.made["0012"]["lapse"], walked.made["0012"]["ids"]

    async def after() -> None:
        rows = {row.add_on_id: row for row in await WorkspaceAddOn.all()}
        found = {name: (rows[ids[name]].state, rows[ids[name]].lapsed_at, rows[ids[name]].quantity) for name in ids}
        assert found == {
            "lapsed": (AddOnState.LAPSED, lapse, 0),
            "removed": (AddOnState.REMOVED, None, 0),
            "held": (AddOnState.ACTIVE, None, 2),
            "set_again": (AddOnState.REMOVED, None, 0),
            "bought_with_points": (AddOnState.REMOVED, None, 0),
            "bought_with_money": (AddOnState.REMOVED, None, 0),
            "set_before": (AddOnState.LAPSED, lapse, 0),
        }
        assert rows[ids["held"]].paid_through == lapse  # the rest of the row as it was

    _read(walked.url, after)


def test_0013_applies_on_a_database_at_0012_and_gateway_configurations_start_with_no_failures(walked: Walk) -> None:
    """A configuration made at 0012 comes out with no failed answers and not failing, and settles as
    before; an ignored provider event can be kept against it."""
    made = walked.made["0013"]

    async def after() -> None:
        [config] = await GatewayConfig.filter(partner_id=made["partner"])
        assert (config.webhook_failures, config.webhook_failing_since, config.is_active) == (0, None, True)
        await IgnoredProviderEvent.create(
            gateway_config_id=config.id,
            provider="manual",
            event_id="evt_1",
            event_type="TRANSFER_DONE",
            notice={},
            payload={},
        )
        assert await IgnoredProviderEvent.filter(gateway_config_id=config.id).count() == 1

    _read(walked.url, after)


def test_0014_gives_each_payment_refunded_before_it_one_done_refund_of_its_refunded_amount(walked: Walk) -> None:
    """Refunds become rows: a payment refunded at 0013 comes out with one DONE refund adding up to its
    refunded amount, one never refunded with none, and either can be refunded further."""
    made = walked.made["0014"]

    async def after() -> None:
        rows = await Refund.filter(payment_id__in=[made["refunded"], made["paid"]]).order_by("id")
        found = [(r.payment_id, r.amount, r.currency, r.status, r.key, r.settled_at is not None) for r in rows]
        assert found == [(made["refunded"], 1500, "BRL", RefundStatus.DONE, "before-0014", True)]
        assert await Refund.filter(payment_id=made["paid"]).count() == 0

    _read(walked.url, after)


def test_0015_leaves_payments_and_configurations_as_they_were_with_no_address_and_card_saving_on(
    walked: Walk,
) -> None:
    made = walked.made["0015"]

    async def after() -> None:
        payment = await Payment.get(id=made["payment"])
        assert (payment.remote_ip, payment.status, payment.amount) == (None, PaymentStatus.SUCCEEDED, 5000)
        [config] = await GatewayConfig.filter(partner_id=made["partner"])
        assert config.card_saving_unavailable_since is None

    _read(walked.url, after)


def test_0016_keeps_usage_charged_before_it_as_it_was_with_no_fractions_and_no_remainder(walked: Walk) -> None:
    """Usage charged event by event before 0016 keeps its amounts; its fractions and every wallet's usage
    remainder start at 0, which is what was charged."""
    made = walked.made["0016"]

    async def after() -> None:
        wallet = await Wallet.get(id=made["wallet"])
        assert (wallet.balance, wallet.usage_remainder) == (-8, 0)

    _read(walked.url, after)


def test_0017_moves_the_platforms_prices_to_dated_rates_and_prices_usage_as_before(walked: Walk) -> None:
    """The platform's cells at 0016 become its first dated prices (covering all time before them too); a
    partner's margin cells stay where they were; a card reads and prices as it did."""
    made = walked.made["0017"]

    async def after() -> None:
        rates = await PlatformRate.filter(rate_card_id=made["platform"]).order_by("country")
        assert [(r.country, Decimal(r.price)) for r in rates] == [("*", Decimal("0.6")), ("BR", Decimal("0.0625"))]
        assert await RateCardCell.filter(rate_card_id=made["platform"]).count() == 0
        assert await RateCardCell.filter(rate_card_id=made["partner"]).count() == 1
        rate_cards.forget_cached()
        table = await rate_cards.table(made["partner_id"], "BRL")
        long_ago = datetime(2000, 1, 1, tzinfo=UTC)
        for at in (long_ago, clock.now()):
            br, elsewhere = table.rate("BR", "MARKETING", at), table.rate("AR", "MARKETING", at)
            assert br is not None and elsewhere is not None
            assert (br.platform, br.partner) == (Fraction(1, 16), Fraction(1, 16) * Fraction(11, 10))
            assert (elsewhere.platform, elsewhere.partner) == (Fraction(3, 5), Fraction(3, 5) * Fraction(6, 5))
        assert table.changes() == []

    _read(walked.url, after)


def test_0025_keeps_existing_endpoints_on_payload_version_1_and_gives_new_ones_version_2(walked: Walk) -> None:
    """A receiver written for the bodies sent before 0025 keeps getting them; an endpoint made after it gets
    the API's ids and times (version 2)."""
    made = walked.made["0025"]

    async def after() -> None:
        assert (await WebhookEndpoint.get(id=made["endpoint"])).payload_version == 1
        new = await WebhookEndpoint.create(
            partner_id=made["partner"], url="https://hooks.example/new", secret_encrypted=b"x"
        )
        assert (await WebhookEndpoint.get(id=new.id)).payload_version == 2

    _read(walked.url, after)
