"""The compiled read path's SQL writes values exactly as the API's Python code does: global ids, times and
amounts, over random values, on PostgreSQL (where compiled statements run)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.core import sql
from billing.core.ids import to_global_id
from billing.core.money import _EXPONENTS, _KNOWN_CURRENCIES, format_minor
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
