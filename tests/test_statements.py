"""A page of N workspaces costs a constant number of SQL statements, and on PostgreSQL a query
holds one pooled connection, not one per statement."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest
from tortoise import Tortoise

from billing.accounts import wallets
from billing.tenants import api_keys
from tests.counting import count_statements
from tests.factories import a_partner, a_workspace, partner_viewer
from whitebill.app import create_app
from whitebill.settings import Settings

pytestmark = pytest.mark.usefixtures("database")

PAGE = """query($first: Int!) { workspaces(first: $first) { nodes { id name status partner { name }
  projects { nodes { name } } wallets { unit balance { amount } } subscription { status price { amount } }
  usage { name value } } } }"""


async def measure(app: object, token: str, first: int, monkeypatch: pytest.MonkeyPatch) -> Counter:
    """Statements run and connections taken while answering one page query, by one app as a server process
    runs it (which reads the registry of persisted operations at most every few seconds, not per request)."""
    counts = count_statements(monkeypatch)
    client = Tortoise.get_connection("default")
    pool = getattr(client, "_pool", None)
    if pool is not None:
        original_acquire = type(pool).acquire

        def acquire(self, *args, **kwargs):
            counts["connections"] += 1
            return original_acquire(self, *args, **kwargs)

        monkeypatch.setattr(type(pool), "acquire", acquire)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:  # type: ignore[arg-type]
        response = await http.post(
            "/graphql",
            json={"query": PAGE, "variables": {"first": first}},
            headers={"authorization": f"Bearer {token}"},
        )
    monkeypatch.undo()
    body = response.json()
    assert not body.get("errors"), body
    assert len(body["data"]["workspaces"]["nodes"]) == first
    return counts


async def test_statements_per_page_do_not_grow_with_the_page(database, monkeypatch: pytest.MonkeyPatch) -> None:
    partner = await a_partner()
    viewer = partner_viewer(partner)
    for i in range(12):
        workspace = await a_workspace(partner, name=f"Client {i}")
        await wallets.adjust_workspace_balance(
            viewer, workspace_id=workspace.id, unit="POINTS", amount=10 + i, note="", idempotency_key=f"k{i}"
        )
    token = (await api_keys.create_key(partner_id=partner.id)).secret
    app = create_app(Settings(env="test"), manage_database=False)
    await measure(app, token, 1, monkeypatch)  # warm up: the key's last-used time is written once, the registry read

    small = await measure(app, token, 2, monkeypatch)
    large = await measure(app, token, 12, monkeypatch)
    assert small["statements"] == large["statements"] <= 8, (small, large)  # key, page, and one per nested field
    if database.is_postgres:
        # One for the key lookup, one for the whole query.
        assert small["connections"] == large["connections"] <= 2, (small, large)
