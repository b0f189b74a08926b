"""The compiled read path's SQL writes values exactly as the API's Python code does: global ids, times and
amounts, over random values, on PostgreSQL (where compiled statements run)."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from billing.catalog import plans
from billing.core import sql
from billing.core.ids import to_global_id
from billing.core.money import _EXPONENTS, _KNOWN_CURRENCIES, Money, format_minor
from billing.subscriptions import entitlements, lifecycle, limits
from billing.tenants import partners
from models.enums import BillingInterval, MarginKind
from models.tenancy import Partner
from tests.factories import PLATFORM, a_workspace, partner_viewer
from whitebill.compiled import values

pytestmark = pytest.mark.usefixtures("database")

UNITS = [*sorted(_KNOWN_CURRENCIES), "POINTS", "MESSAGE_CREDITS", "SEATS", "CONVERSATIONS"]
# The statements only read: there is nothing in the database to reset between examples.
FEW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def postgres(database):
    """The test's database, PostgreSQL only (skipped before any example is drawn on SQLite)."""
    if not database.is_postgres:
        pytest.skip("compiled statements run on PostgreSQL only")
    return database


@FEW
@given(st.lists(st.tuples(st.integers(-(10**18), 10**18), st.sampled_from(UNITS)), min_size=1, max_size=40))
async def test_amounts_are_written_as_format_minor_writes_them(postgres, pairs: list[tuple[int, str]]) -> None:
    rows = await sql.fetch(
        f"SELECT {values.amount('a', 'u')} AS text FROM unnest($1::bigint[], $2::text[]) WITH ORDINALITY AS v(a, u, n)"
        " ORDER BY n",
        [a for a, _ in pairs],
        [u for _, u in pairs],
    )
    assert [r["text"] for r in rows] == [format_minor(a, u) for a, u in pairs]


async def test_each_currency_exponent_is_written_with_its_places(postgres) -> None:
    for code, places in {**_EXPONENTS, "BRL": 2, "POINTS": 0}.items():
        [row] = await sql.fetch(f"SELECT {values.amount('$1::bigint', '$2::text')} AS text", -1234567, code)
        assert row["text"] == format_minor(-1234567, code), (code, places)


MOMENTS = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC))


@FEW
@given(st.lists(MOMENTS, min_size=1, max_size=40))
async def test_times_are_written_as_strawberry_writes_them(postgres, moments: list[datetime]) -> None:
    moments += [datetime(2026, 12, 6, 3, 4, 5, tzinfo=UTC), datetime(2026, 12, 6, 3, 4, 5, 10, tzinfo=UTC)]
    rows = await sql.fetch(
        f"SELECT {values.date_time('t')} AS text FROM unnest($1::timestamptz[]) WITH ORDINALITY AS v(t, n) ORDER BY n",
        moments,
    )
    assert [r["text"] for r in rows] == [m.isoformat() for m in moments]


@FEW
@given(
    st.from_regex(r"[A-Z][A-Za-z0-9_]{0,40}", fullmatch=True),
    st.lists(st.integers(1, 2**63 - 1), min_size=1, max_size=40),
)
async def test_global_ids_are_written_as_to_global_id_writes_them(postgres, type_name: str, ids: list[int]) -> None:
    rows = await sql.fetch(
        f"SELECT {values.global_id(type_name, 'i')} AS text FROM unnest($1::bigint[]) WITH ORDINALITY AS v(i, n)"
        " ORDER BY n",
        ids,
    )
    assert [r["text"] for r in rows] == [to_global_id(type_name, i) for i in ids]


TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=70)


@FEW
@given(st.lists(st.tuples(TEXT, TEXT), min_size=1, max_size=20))
async def test_global_ids_of_columns_are_written_as_to_global_id_writes_them(
    postgres, pairs: list[tuple[str, str]]
) -> None:
    """A posting's caused_by: a type and an id that are text, of any length (no line breaks in the base64)."""
    rows = await sql.fetch(
        f"SELECT {values.global_id_of('t', 'i')} AS text"
        " FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS v(t, i, n) ORDER BY n",
        [t for t, _ in pairs],
        [i for _, i in pairs],
    )
    assert [r["text"] for r in rows] == [to_global_id(t, i) for t, i in pairs]


def test_a_type_name_that_is_not_one_is_refused() -> None:
    for bad in ("", "1Plan", "Plan'; DROP TABLE plan; --", "Pl an"):
        with pytest.raises(ValueError):
            values.global_id(bad, "id")


PERCENT = st.decimals(min_value=0, max_value=1000, places=4, allow_nan=False, allow_infinity=False)
MARGIN = st.one_of(
    st.none(),
    st.tuples(st.just(MarginKind.PERCENTAGE), PERCENT),
    st.tuples(st.just(MarginKind.FIXED), st.integers(0, 10**9)),
)
LEVEL = st.fixed_dictionaries(
    {"bulk": MARGIN, "bulk_fixed": st.one_of(st.none(), st.integers(0, 10**9)), "family": MARGIN, "plan": MARGIN}
)


TIE = {"bulk": (MarginKind.PERCENTAGE, Decimal(50)), "bulk_fixed": None, "family": None, "plan": None}


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example([TIE], 1, "BRL")  # 0.5 of a centavo: half to even, 0
@example(
    [{"bulk": (MarginKind.PERCENTAGE, Decimal("50.0001")), "bulk_fixed": None, "family": None, "plan": None}],
    999_999_999_999_999,
    "BRL",
)  # .49995 of a centavo: below a half, though a division to PostgreSQL's default scale makes it one
@example([TIE, TIE], 3, "BRL")  # 3 + 1.5 -> 5, then 5 + 2.5 -> 7: a tie at each level, each to even
@example(
    [{"bulk": None, "bulk_fixed": 500, "family": (MarginKind.PERCENTAGE, Decimal("12.5")), "plan": None}], 4990, "BRL"
)  # the family's margin wins over the bulk fixed one
@given(
    st.lists(LEVEL, min_size=1, max_size=3),
    st.integers(0, 10**9),
    st.sampled_from(["BRL", "JPY", "KWD"]),
)
async def test_a_plans_price_down_a_chain_is_what_price_down_makes_of_it(
    postgres, levels: list[dict[str, Any]], price: int, currency: str
) -> None:
    """Every level's margins (bulk percentage, bulk fixed in BRL, on the family, on the plan; each
    percentage or fixed) over a platform plan in BRL, JPY or KWD: the SQL's price at every level is
    ``plans.price_for``'s."""
    tag = secrets.token_hex(4)
    family = await plans.create_plan_family(PLATFORM, name=f"Family {tag}")
    plan = await plans.create_plan(
        PLATFORM, name="P", interval=BillingInterval.MONTHLY, price=Money(price, currency), limits={},
        family_id=family.id,
    )  # fmt: skip
    chain: list[Partner] = [await partners.create_partner(PLATFORM, name="L1", slug=f"l1-{tag}", currency="BRL")]
    for n in range(1, len(levels)):
        chain.append(
            await partners.create_sub_partner(partner_viewer(chain[-1]), name=f"L{n + 1}", slug=f"l{n + 1}-{tag}")
        )
    for partner, margins in zip(chain, levels, strict=True):
        viewer = partner_viewer(partner)
        if margins["bulk_fixed"] is not None:
            await plans.set_margin(viewer, kind=MarginKind.FIXED, value=Decimal(margins["bulk_fixed"]), currency="BRL")
        for scope, target in (("bulk", {}), ("family", {"family_id": family.id}), ("plan", {"plan_id": plan.id})):
            if margins[scope] is None:
                continue
            kind, value = margins[scope]
            if scope == "bulk" and kind is MarginKind.FIXED:
                target = {"currency": currency}
            await plans.set_margin(viewer, kind=kind, value=Decimal(value), **target)
    for depth in range(1, len(chain) + 1):
        ids = [p.id for p in chain[:depth]]
        [row] = await sql.fetch(
            f"SELECT {values.plan_price('p', '$2::bigint[]')} AS amount FROM plan p WHERE p.id = $1", plan.id, ids
        )
        assert row["amount"] == (await plans.price_for(ids[-1], plan)).amount, (depth, levels)


async def test_a_partners_own_plan_is_its_price_whatever_the_margins(postgres) -> None:
    partner = await partners.create_partner(PLATFORM, name="Own", slug="own-plan", currency="BRL")
    own = await plans.create_plan(
        partner_viewer(partner), name="Own", interval=BillingInterval.MONTHLY, price=Money(2990, "BRL"), limits={}
    )
    await plans.set_margin(partner_viewer(partner), kind=MarginKind.PERCENTAGE, value=Decimal(50))
    [row] = await sql.fetch(
        f"SELECT {values.plan_price('p', '$2::bigint[]')} AS amount FROM plan p WHERE p.id = $1", own.id, [partner.id]
    )
    assert row["amount"] == 2990 == (await plans.price_for(partner.id, own)).amount
    with pytest.raises(ValueError):
        values.plan_price("p; DROP TABLE plan", "$2::bigint[]")


NAMES = st.sampled_from(["members", "chatbots", "conversations", "a", "z9", "seats_extra", "_x", "b_", "x0"])
DELTAS = st.dictionaries(NAMES, st.integers(0, 10**6), min_size=1, max_size=4)  # an add-on raises one at least
LIMITS = st.dictionaries(NAMES, st.integers(0, 10**12), max_size=5)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(
    {"_x": 1, "a": 2, "b_": 3, "members": 4}, [({"x0": 5, "a": 1}, 2, False), ({"z9": 1}, 3, True)]
)  # by code point
@given(
    st.one_of(st.none(), LIMITS),
    st.lists(st.tuples(DELTAS, st.integers(0, 10_000), st.booleans()), max_size=4),
)
async def test_a_workspaces_limits_are_what_combine_makes_of_its_plan_and_add_ons(
    postgres, plan_limits: dict[str, int] | None, add_ons: list[tuple[dict[str, int], int, bool]]
) -> None:
    """A live plan's limits (or none), and add-ons of random deltas and quantities, some removed: the SQL's
    array is `effective_limits` by name, as Workspace.limits answers it."""
    tag = secrets.token_hex(4)
    partner = await partners.create_partner(PLATFORM, name="Limits", slug=f"limits-{tag}", currency="BRL")
    viewer = partner_viewer(partner)
    workspace = await a_workspace(partner)
    if plan_limits is not None:
        plan = await plans.create_plan(
            viewer, name="P", interval=BillingInterval.MONTHLY, price=Money(0, "BRL"), limits=plan_limits
        )
        await lifecycle.assign_plan(viewer, workspace_id=workspace.id, plan_id=plan.id, note="", idempotency_key=tag)
    for deltas, quantity, removed in add_ons:
        add_on = await plans.create_add_on(viewer, name="A", limit_deltas=deltas, price=Money(0, "BRL"))
        await entitlements.set_add_on(
            viewer, workspace_id=workspace.id, add_on_id=add_on.id, quantity=quantity, force=True
        )
        if removed:
            await entitlements.set_add_on(
                viewer, workspace_id=workspace.id, add_on_id=add_on.id, quantity=0, force=True
            )
    [row] = await sql.fetch(f"SELECT {values.limits('w')} AS limits FROM workspace w WHERE w.id = $1", workspace.id)
    found = json.loads(row["limits"]) if isinstance(row["limits"], str) else row["limits"]
    expected = await limits.effective_limits(workspace.id)
    assert found == [{"name": name, "value": value} for name, value in sorted(expected.items())]
