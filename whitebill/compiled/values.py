"""SQL expressions that write a value exactly as the API's Python code writes it, for statements in which
PostgreSQL builds a response's JSON. Each mirrors one Python function and is checked against it over random
values on PostgreSQL (tests/test_compiled_values.py):

- :func:`global_id`: ``billing.core.ids.to_global_id`` (base64 of "Type:id");
- :func:`date_time`: strawberry's ``DateTime`` (``datetime.isoformat()`` of an aware UTC time: microseconds
  only when there are some, ``+00:00``);
- :func:`amount`: ``billing.core.money.format_minor`` (minor units as an exact decimal in the unit's places:
  a currency's exponent, none for POINTS and other units).

Column arguments are SQL expressions the compiler writes itself, never text from a request.
"""

from __future__ import annotations

from billing.core.money import _EXPONENTS, _KNOWN_CURRENCIES

_IDENTIFIER_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")


def global_id(type_name: str, column: str) -> str:
    if not type_name or not set(type_name) <= _IDENTIFIER_CHARS or type_name[0].isdigit():
        raise ValueError(f"{type_name!r} is not a GraphQL type name")
    # encode(..., 'base64') breaks lines every 76 characters; Python's b64encode never does.
    return f"translate(encode(convert_to('{type_name}:' || ({column})::text, 'UTF8'), 'base64'), E'\\n', '')"


def date_time(column: str) -> str:
    utc = f"(({column}) AT TIME ZONE 'UTC')"
    return (
        f"""(to_char({utc}, 'YYYY-MM-DD"T"HH24:MI:SS')"""
        f" || CASE WHEN date_part('microseconds', {utc})::bigint % 1000000 = 0 THEN ''"
        f" ELSE to_char({utc}, '.US') END || '+00:00')"
    )


def _quoted(codes: set[str]) -> str:
    return ", ".join(f"'{code}'" for code in sorted(codes))


def amount(amount_column: str, unit_column: str) -> str:
    by_places: dict[int, set[str]] = {}
    for code in _KNOWN_CURRENCIES:
        by_places.setdefault(_EXPONENTS.get(code, 2), set()).add(code)
    cases = " ".join(
        f"WHEN ({unit_column}) IN ({_quoted(codes)}) THEN"
        f" round(({amount_column})::numeric / {10**places}, {places})::text"
        for places, codes in sorted(by_places.items())
        if places
    )
    return f"(CASE {cases} ELSE ({amount_column})::text END)"
