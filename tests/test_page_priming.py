"""A page of workspaces loads what its fields ask before they run (schema/context.py, Loaders.prime_*):
the same answers and errors as loading field by field, and no statement that loading field by field would
not run."""

from __future__ import annotations

from typing import Any

import pytest

from billing.catalog import plans
from billing.core.money import Money
from billing.subscriptions import lifecycle
from billing.tenants import partners
from models.enums import BillingInterval, MarginKind
from schema import context
from schema.context import Context
from tests.counting import count_statements
from tests.factories import PLATFORM, partner_viewer
from whitebill.schema import schema

pytestmark = pytest.mark.usefixtures("database")


async def a_page() -> Any:
    """A reseller with a margin and three workspaces, two of them on a platform plan."""
    partner = await partners.create_partner(PLATFORM, name="Agency", slug="agency-priming", currency="BRL")
    viewer = partner_viewer(partner)
    await plans.set_margin(viewer, kind=MarginKind.PERCENTAGE, value=10)
    plan = await plans.create_plan(
        PLATFORM, name="Pro", interval=BillingInterval.MONTHLY, price=Money(1000, "BRL"), limits={"members": 3}
    )
    for n in range(3):
        workspace = await partners.create_workspace(viewer, name=f"W{n}", owner_email=f"w{n}@example.com")
        if n:
            await lifecycle.assign_plan(
                viewer, workspace_id=workspace.id, plan_id=plan.id, note="", idempotency_key=f"priming{n}"
            )
    return viewer


async def run(viewer: Any, query: str) -> Any:
    return await schema.execute(query, context_value=Context(viewer=viewer, request_id="t"))


async def test_a_failed_priming_statement_fails_each_field_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    """The page's other fields answer; each workspace's subscription answers with its own error."""
    viewer = await a_page()

    async def broken(keys: list[int]) -> list[Any]:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(context, "_load_live_subscriptions", broken)
    result = await run(viewer, "{ workspaces { nodes { name subscription { status } } } }")
    assert [n["name"] for n in result.data["workspaces"]["nodes"]] == ["W0", "W1", "W2"]
    assert [n["subscription"] for n in result.data["workspaces"]["nodes"]] == [None, None, None]
    assert sorted(tuple(e.path) for e in result.errors) == [
        ("workspaces", "nodes", n, "subscription") for n in range(3)
    ]


QUERIES = [
    # Fields under @skip or @include: not primed (the statements only they would run).
    "{ workspaces { nodes { id subscription @skip(if: true) { plan { price { amount } } } "
    "wallets @include(if: false) { unit } } } }",
    # The same page under two aliases: read once.
    "{ a: workspaces { nodes { subscription { plan { price { amount } } } wallets { unit } } } "
    "b: workspaces { nodes { subscription { plan { price { amount } } } wallets { unit } } } }",
    # A nested connection's fields are not the page's.
    "{ workspaces { nodes { projects { nodes { wallets { unit } } } } } }",
    # Each partner's page: the caller's margins are read once.
    "{ partners { nodes { workspaces { nodes { subscription { plan { price { amount } } } } } } } }",
    "{ workspaces { edges { node { limits { name value } subscription { status } } } } }",
]


@pytest.mark.parametrize("query", QUERIES)
async def test_priming_runs_no_statement_field_by_field_loading_would_not(
    monkeypatch: pytest.MonkeyPatch, query: str
) -> None:
    viewer = await a_page()

    async def counted(primed: bool) -> tuple[Any, int]:
        if not primed:

            async def nothing(*args: Any, **kwargs: Any) -> Any:
                return False

            monkeypatch.setattr(context.Loaders, "prime_workspaces", nothing)
            monkeypatch.setattr(context.Loaders, "prime_margins", nothing)
        counts = count_statements(monkeypatch)
        result = await run(viewer, query)
        monkeypatch.undo()
        return result, counts["statements"]

    by_field, loaded = await counted(primed=False)
    primed, read = await counted(primed=True)
    assert (primed.data, primed.errors) == (by_field.data, by_field.errors)
    assert read <= loaded, (read, loaded)
