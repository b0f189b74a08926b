"""SQL expressions that write a value exactly as the API's Python code writes it, for statements in which
PostgreSQL builds a response's JSON. Each mirrors one Python function and is checked against it over random
values on PostgreSQL (tests/test_compiled_values.py):

- :func:`global_id`: ``billing.core.ids.to_global_id`` (base64 of "Type:id");
- :func:`date_time`: strawberry's ``DateTime`` (``datetime.isoformat()`` of an aware UTC time: microseconds
  only when there are some, ``+00:00``);
- :func:`amount`: ``billing.core.money.format_minor`` (minor units as an exact decimal in the unit's places:
  a currency's exponent, none for POINTS and other units);
- :func:`plan_price`: ``billing.catalog.plans.price_down`` (a platform plan's price with each level's margin
  on top, the most specific margin of each level, rounded once per level, half-even);
- :func:`limits`: ``Workspace.limits`` (``billing.subscriptions.limits.combine`` of the live plan's limits
  and the active add-ons' deltas times their quantities, by name in code-point order).

Column arguments are SQL expressions the compiler writes itself, never text from a request.
"""

from __future__ import annotations

import re

from billing.core.money import _EXPONENTS, _KNOWN_CURRENCIES
from billing.subscriptions.current import LIVE

_ALIAS = re.compile(r"[a-z_][a-z0-9_]*")
_PARAMETER = re.compile(r"\$[1-9][0-9]*::bigint\[\]")
CHAIN = "(SELECT ids FROM wb_chain)"  # the caller's chain, in a statement that starts with with_chain()
_IDENTIFIER_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")


def global_id(type_name: str, column: str) -> str:
    if not type_name or not set(type_name) <= _IDENTIFIER_CHARS or type_name[0].isdigit():
        raise ValueError(f"{type_name!r} is not a GraphQL type name")
    # encode(..., 'base64') breaks lines every 76 characters; Python's b64encode never does.
    return f"translate(encode(convert_to('{type_name}:' || ({column})::text, 'UTF8'), 'base64'), E'\\n', '')"


def global_id_of(type_column: str, id_column: str) -> str:
    """``to_global_id`` of a type name and an id both read from columns (a posting's ``caused_by``)."""
    return f"translate(encode(convert_to(({type_column}) || ':' || ({id_column})::text, 'UTF8'), 'base64'), E'\\n', '')"


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
        f" (({amount_column})::numeric * 0.{'0' * (places - 1)}1)::text"  # exact: a product keeps every digit
        for places, codes in sorted(by_places.items())
        if places
    )
    return f"(CASE {cases} ELSE ({amount_column})::text END)"


def _half_even_percent(amount: str, percentage: str) -> str:
    """``amount`` times ``percentage`` / 100 (both non-negative numerics) rounded to an integer, half to even,
    exactly: PostgreSQL's numeric division keeps a limited number of decimals, which near 10^12 could
    make a quotient just below a half look like one. The product is exact; its division by 100 is done
    as an integer quotient and remainder."""
    product = f"(({amount}) * ({percentage}))"
    quotient = f"div({product}, 100)"
    twice_the_rest = f"(2 * ({product} - 100 * {quotient}))"
    return (
        f"(CASE WHEN {twice_the_rest} > 100 THEN {quotient} + 1"
        f" WHEN {twice_the_rest} = 100 THEN {quotient} + mod({quotient}, 2) ELSE {quotient} END)"
    )


def plan_price(plan: str, chain: str) -> str:
    """What a plan costs at the bottom of ``chain`` (an SQL ``bigint[]`` of partner ids, the platform's
    direct partner first: ``hierarchy.ancestry``), in its minor units, for the ``plan`` row alias: a
    partner's own plan is its price; a platform plan gets, level by level, that level's most specific
    margin (the plan's, its family's, the bulk fixed one in the plan's currency, the bulk percentage; a
    fixed margin only in the plan's currency) on its parent's price."""
    if not _ALIAS.fullmatch(plan) or not (_PARAMETER.fullmatch(chain) or chain == CHAIN):
        raise ValueError("plan_price takes a row alias and a bigint[] parameter (or CHAIN), such as p and $2::bigint[]")
    step = (
        "SELECT CASE WHEN m.kind = 'PERCENTAGE'"  # noqa: S608 (an alias and a parameter, checked above)
        f" THEN s.amount + {_half_even_percent('s.amount', 'm.percentage')}"
        " ELSE s.amount + m.fixed_amount END"
        " FROM partner_margin m"
        f" WHERE m.partner_id = ({chain})[s.level + 1]"
        f" AND m.scope IN ('PLAN:' || {plan}.id, 'FAMILY:' || {plan}.family_id, 'BULK:' || {plan}.currency, 'BULK')"
        f" AND (m.kind = 'PERCENTAGE' OR m.currency = {plan}.currency)"
        f" ORDER BY CASE m.scope WHEN 'PLAN:' || {plan}.id THEN 0 WHEN 'FAMILY:' || {plan}.family_id THEN 1"
        f" WHEN 'BULK:' || {plan}.currency THEN 2 ELSE 3 END LIMIT 1"
    )
    return (
        "(WITH RECURSIVE levels(level, amount) AS ("  # noqa: S608 (an alias and a parameter, checked above)
        f" SELECT 0, ({plan}.price_amount)::numeric"
        f" UNION ALL SELECT s.level + 1, COALESCE(({step}), s.amount) FROM levels s"
        f" WHERE {plan}.partner_id IS NULL AND s.level < coalesce(cardinality({chain}), 0)"
        ") SELECT amount::bigint FROM levels ORDER BY level DESC LIMIT 1)"
    )


LIVE_STATUSES = "(" + ", ".join(f"'{status.value}'" for status in LIVE) + ")"


def with_chain(partner: str, statement: str) -> str:
    """``statement`` with :data:`CHAIN` defined: the partner ids from the platform's direct partner down to
    ``partner`` (a parameter; none for the platform), as ``hierarchy.ancestry`` reads them."""
    if not re.fullmatch(r"\$[1-9][0-9]*::bigint", partner):
        raise ValueError("with_chain takes a bigint parameter, such as $3::bigint")
    return (
        "WITH RECURSIVE wb_up(id, parent_id, depth) AS ("  # noqa: S608 (a parameter, checked, and our SQL)
        f"SELECT id, parent_id, 0 FROM partner WHERE id = {partner}"
        " UNION ALL SELECT p.id, p.parent_id, u.depth + 1 FROM partner p JOIN wb_up u ON p.id = u.parent_id),"
        " wb_chain AS (SELECT coalesce(array_agg(id ORDER BY depth DESC), '{}'::bigint[]) AS ids FROM wb_up) "
        + statement
    )


def limits(workspace: str, element: str = "json_build_object('name', l.name, 'value', l.value)") -> str:
    """A workspace's effective limits as the JSON array ``Workspace.limits`` answers, for the ``workspace``
    row alias: its newest live subscription's plan's limits plus each active add-on's deltas times its
    quantity, a name at a time, ordered by name byte for byte (Python's ``sorted``). ``element`` writes
    one limit from ``l.name`` and ``l.value`` (SQL the compiler wrote)."""
    if not _ALIAS.fullmatch(workspace):
        raise ValueError("limits takes a row alias, such as w")
    return (
        f"(SELECT coalesce(json_agg({element}"  # noqa: S608 (an alias, and the compiler's own SQL)
        " ORDER BY l.name COLLATE \"C\"), '[]'::json) FROM ("  # code-point order, whatever the collation
        "SELECT x.name, sum(x.value) AS value FROM ("
        "SELECT e.key AS name, (e.value)::numeric AS value FROM ("
        f"SELECT s.plan_id FROM subscription s WHERE s.workspace_id = {workspace}.id"
        f" AND s.status IN {LIVE_STATUSES} ORDER BY s.id DESC LIMIT 1"
        ") live JOIN plan p ON p.id = live.plan_id CROSS JOIN LATERAL jsonb_each_text(p.limits::jsonb) e"
        " UNION ALL SELECT d.key, (d.value)::numeric * wa.quantity FROM workspace_add_on wa"
        " JOIN add_on a ON a.id = wa.add_on_id CROSS JOIN LATERAL jsonb_each_text(a.limit_deltas::jsonb) d"
        f" WHERE wa.workspace_id = {workspace}.id AND wa.active"
        ") x GROUP BY x.name) l)"
    )
