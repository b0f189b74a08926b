"""The compiled read path's SQL writes values exactly as the API's Python code does: global ids, times and
amounts, over random values, on PostgreSQL (where compiled statements run)."""

from __future__ import annotations

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
from billing.tenants import partners
from models.enums import BillingInterval, MarginKind
from models.tenancy import Partner
from tests.factories import PLATFORM, partner_viewer
from whitebill.compiled import values

pytestmark = pytest.mark.usefixtures("database")

UNITS = [*sorted(_KNOWN_CURRENCIES), "POINTS", "MESSAGE_CREDITS", "SEATS", "CONVERSATIONS"]
# The statements only read: there is nothing in the database to reset between examples.
FEW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def postgres_only(database) -> None:
    if not database.is_postgres:
        pytest.skip("compiled statements run on PostgreSQL only")


@FEW
@given(st.lists(st.tuples(st.integers(-(10**18), 10**18), st.sampled_from(UNITS)), min_size=1, max_size=40))
async def test_amounts_are_written_as_format_minor_writes_them(database, pairs: list[tuple[int, str]]) -> None:
    postgres_only(database)
    rows = await sql.fetch(
        f"SELECT {values.amount('a', 'u')} AS text FROM unnest($1::bigint[], $2::text[]) WITH ORDINALITY AS v(a, u, n)"
        " ORDER BY n",
        [a for a, _ in pairs],
        [u for _, u in pairs],
    )
    assert [r["text"] for r in rows] == [format_minor(a, u) for a, u in pairs]


async def test_each_currency_exponent_is_written_with_its_places(database) -> None:
    postgres_only(database)
    for code, places in {**_EXPONENTS, "BRL": 2, "POINTS": 0}.items():
        [row] = await sql.fetch(f"SELECT {values.amount('$1::bigint', '$2::text')} AS text", -1234567, code)
        assert row["text"] == format_minor(-1234567, code), (code, places)


MOMENTS = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC))


@FEW
@given(st.lists(MOMENTS, min_size=1, max_size=40))
async def test_times_are_written_as_strawberry_writes_them(database, moments: list[datetime]) -> None:
    postgres_only(database)
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
async def test_global_ids_are_written_as_to_global_id_writes_them(database, type_name: str, ids: list[int]) -> None:
    postgres_only(database)
    rows = await sql.fetch(
        f"SELECT {values.global_id(type_name, 'i')} AS text FROM unnest($1::bigint[]) WITH ORDINALITY AS v(i, n)"
        " ORDER BY n",
        ids,
    )
    assert [r["text"] for r in rows] == [to_global_id(type_name, i) for i in ids]


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
    database, levels: list[dict[str, Any]], price: int, currency: str
) -> None:
    """Every level's margins (bulk percentage, bulk fixed in BRL, on the family, on the plan; each
    percentage or fixed) over a platform plan in BRL, JPY or KWD: the SQL's price at every level is
    ``plans.price_for``'s."""
    postgres_only(database)
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


async def test_a_partners_own_plan_is_its_price_whatever_the_margins(database) -> None:
    postgres_only(database)
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
