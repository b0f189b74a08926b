"""Query bombs are refused before anything runs, and other requests keep being served."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest
from strawberry.extensions import SchemaExtension

from billing.tenants import api_keys
from tests.factories import a_partner, a_workspace
from whitebill.app import create_app
from whitebill.schema import MAX_ALIASES, MAX_COST, MAX_DEPTH, MAX_TOKENS, schema
from whitebill.settings import Settings

pytestmark = pytest.mark.usefixtures("database")

resolved: list[str] = []


class CountResolvers(SchemaExtension):
    """Records every field a request resolves."""

    def resolve(self, _next: Any, root: Any, info: Any, *args: Any, **kwargs: Any) -> Any:
        resolved.append(info.field_name)
        return _next(root, info, *args, **kwargs)


DEEP = (
    "{ viewer { partner { workspaces { nodes { partner { workspaces { nodes { partner { workspaces { nodes {"
    " partner { workspaces { nodes { id } } } } } } } } } } } } } }"
)
ALIASES = "{ " + " ".join(f"a{i}: viewer {{ kind }}" for i in range(40)) + " }"
TOKENS = "{ viewer { " + " ".join(["kind"] * 2100) + " } }"
COSTLY = (
    "{ partners(first: 100) { nodes { workspaces(first: 100) { nodes { wallets { entries(first: 100) {"
    " nodes { id } } } } } } } }"
)
FRAGMENT_CYCLE = (
    "{ viewer { ...A } } fragment A on Viewer { partner { workspaces { nodes { partner { ...B } } } } }"
    " fragment B on Partner { workspaces { nodes { partner { name } } } }"
)
MAX_BYTES = Settings(env="test").max_query_bytes
LARGE = "{ viewer { kind } }" + " " * MAX_BYTES  # an honest query, padded past the size limit
BOMBS = {"depth": DEEP, "aliases": ALIASES, "tokens": TOKENS, "cost": COSTLY, "size": LARGE}
# What each bomb must be refused with: its code, and a message naming the limit it hit.
REFUSALS = {
    "depth": ("QUERY_TOO_COMPLEX", rf"exceeds maximum operation depth of {MAX_DEPTH}$"),
    "aliases": ("QUERY_TOO_COMPLEX", rf"^40 aliases found\. Allowed: {MAX_ALIASES}$"),
    "tokens": ("QUERY_TOO_COMPLEX", rf"^Syntax Error: Document contains more than {MAX_TOKENS} tokens\b"),
    "cost": ("QUERY_TOO_COMPLEX", rf"^Query cost \d+ exceeds the maximum of {MAX_COST}\b"),
    "size": ("QUERY_TOO_LARGE", rf"^the query is larger than {MAX_BYTES} bytes$"),
}


def assert_refused(body: dict, kind: str) -> None:
    """No data; every error carries the bomb's code (a depth bomb is also too costly: same code), and
    one names the very limit the bomb was built to hit."""
    code, limit = REFUSALS[kind]
    assert body.get("data") is None and body["errors"], body
    assert all(error["extensions"]["code"] == code for error in body["errors"]), body
    assert any(re.search(limit, error["message"]) for error in body["errors"]), body


@pytest.fixture
async def client(monkeypatch: pytest.MonkeyPatch) -> httpx.AsyncClient:
    monkeypatch.setattr(schema, "extensions", (*schema.extensions, CountResolvers))
    partner = await a_partner()
    await a_workspace(partner)
    key = (await api_keys.create_key(partner_id=None)).secret
    app = create_app(Settings(env="test"), manage_database=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://test", headers={"authorization": f"Bearer {key}"}
    ) as http:
        yield http


@pytest.mark.parametrize("kind", BOMBS)
async def test_a_bomb_is_refused_before_any_resolver_runs(client: httpx.AsyncClient, kind: str) -> None:
    resolved.clear()
    response = await client.post("/graphql", json={"query": BOMBS[kind]})
    body = response.json()
    assert response.status_code == (400 if kind == "size" else 200), body
    assert_refused(body, kind)
    assert resolved == []


async def test_a_legitimate_query_still_resolves(client: httpx.AsyncClient) -> None:
    resolved.clear()
    body = (await client.post("/graphql", json={"query": "{ viewer { kind } }"})).json()
    assert body == {"data": {"viewer": {"kind": "PLATFORM"}}}
    assert resolved == ["viewer", "kind"]


async def test_requests_keep_being_served_during_a_flood_of_bombs(client: httpx.AsyncClient) -> None:
    kinds = list(BOMBS)

    async def bomb(i: int) -> dict:
        return (await client.post("/graphql", json={"query": BOMBS[kinds[i % len(kinds)]]})).json()

    async def honest() -> dict:
        return (await client.post("/graphql", json={"query": "{ partners(first: 5) { nodes { name } } }"})).json()

    results = await asyncio.gather(*(bomb(i) for i in range(40)), *(honest() for _ in range(10)))
    bombs, honest_results = results[:40], results[40:]
    for i, body in enumerate(bombs):
        assert_refused(body, kinds[i % len(kinds)])
    assert all(len(r["data"]["partners"]["nodes"]) == 1 for r in honest_results)


async def test_cyclic_fragments_are_refused(client: httpx.AsyncClient) -> None:
    body = (await client.post("/graphql", json={"query": "{ viewer { ...A } } fragment A on Viewer { ...A }"})).json()
    assert body.get("data") is None, body
    assert [(e["extensions"]["code"], e["message"]) for e in body["errors"]] == [
        ("INVALID_QUERY", "Cannot spread fragment 'A' within itself.")
    ]
    response = await client.post("/graphql", json={"query": FRAGMENT_CYCLE})  # deep through fragments, not cyclic
    assert response.status_code == 200
    assert all(e.get("extensions", {}).get("code") != "INTERNAL_ERROR" for e in response.json().get("errors", []))
