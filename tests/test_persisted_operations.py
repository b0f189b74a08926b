"""Persisted operations against a real server: Apollo's automatic persisted queries by POST and GET, the
registry filled by `whitebill operations register`, and registered-only mode refusing everything else
with OPERATION_NOT_REGISTERED, over HTTP and over websockets."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from billing.tenants import api_keys
from tests.conftest import Backend, Server, serving
from tests.factories import a_partner, a_workspace
from whitebill import operations
from whitebill.schema import MAX_TOKENS, schema

pytestmark = pytest.mark.usefixtures("database")

NAME = "query PartnerName { viewer { partner { name } } }"
WORKSPACES = "query Clients($first: Int!) { workspaces(first: $first) { nodes { ...Client } } }"
FILE = f"""
{NAME}

{WORKSPACES}

fragment Client on Workspace {{ name status }}
fragment Unused on Workspace {{ id }}
"""
STATUS = "subscription($w: ID!) { workspaceStatusChanged(workspaceId: $w) { status } }"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def persisted(digest: str) -> dict[str, Any]:
    return {"persistedQuery": {"version": 1, "sha256Hash": digest}}


async def post(server: Server, key: str, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        return await http.post("/graphql", json=body, headers={"Authorization": f"Bearer {key}"})


async def get(server: Server, key: str, **params: Any) -> httpx.Response:
    encoded = {name: json.dumps(value) if not isinstance(value, str) else value for name, value in params.items()}
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        return await http.get(
            "/graphql", params=encoded, headers={"Authorization": f"Bearer {key}", "Accept": "application/json"}
        )


def code(response: httpx.Response) -> str:
    return str(response.json()["errors"][0]["extensions"]["code"])


def register(backend: Backend, path: Path) -> subprocess.CompletedProcess[str]:
    return operations_cli(backend, "register", str(path))


def operations_cli(backend: Backend, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DATABASE_URL=backend.url, WHITEBILL_ENV="test")
    return subprocess.run(
        [sys.executable, "-m", "whitebill.cli", "operations", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_a_hash_alone_is_not_found_until_its_query_came_once_then_runs_by_post_and_by_get(server) -> None:
    partner = await a_partner("Acme")
    key = (await api_keys.create_key(partner_id=partner.id)).secret
    query = "query Mine { viewer { partner { name } } }"
    missing = await post(server, key, {"extensions": persisted(sha(query))})
    assert (missing.status_code, code(missing), missing.json()["errors"][0]["message"]) == (
        200,
        "PERSISTED_QUERY_NOT_FOUND",
        "PersistedQueryNotFound",
    )
    expected = {"data": {"viewer": {"partner": {"name": "Acme"}}}}
    assert (await post(server, key, {"query": query, "extensions": persisted(sha(query))})).json() == expected
    assert (await post(server, key, {"extensions": persisted(sha(query))})).json() == expected
    assert (await get(server, key, extensions=persisted(sha(query)))).json() == expected
    # By GET, a hash alone is a query whatever the client accepts (not the GraphiQL page).
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        anything = await http.get(
            "/graphql",
            params={"extensions": json.dumps(persisted(sha(query)))},
            headers={"Authorization": f"Bearer {key}", "Accept": "*/*"},
        )
    assert anything.json() == expected


async def test_a_document_that_does_not_parse_or_validate_is_not_learnt(server) -> None:
    key = (await api_keys.create_key(partner_id=(await a_partner()).id)).secret
    for query in ("this is { not graphql", "{ nope }"):
        answered = await post(server, key, {"query": query, "extensions": persisted(sha(query))})
        assert answered.json()["errors"], answered.text
        missing = await post(server, key, {"extensions": persisted(sha(query))})
        assert code(missing) == "PERSISTED_QUERY_NOT_FOUND"


async def test_a_subscribe_message_without_a_query_or_with_no_payload_object_is_refused_with_a_code(server) -> None:
    key = (await api_keys.create_key(partner_id=(await a_partner()).id)).secret
    url = server.url.replace("http://", "ws://", 1) + "/graphql"
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as socket:  # type: ignore[list-item]
        await socket.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {key}"}}))
        assert json.loads(await socket.recv())["type"] == "connection_ack"
        for n, payload in enumerate(({}, {"query": None}, None, ["x"], {"query": 5})):
            await socket.send(json.dumps({"id": str(n), "type": "subscribe", "payload": payload}))
            refused = json.loads(await socket.recv())
            assert refused["type"] == "error", (payload, refused)
            assert refused["payload"][0]["extensions"]["code"] == "MALFORMED_REQUEST", (payload, refused)


@pytest.mark.parametrize(
    ("extensions", "expected"),
    [
        (persisted(sha("{ __typename }")), "PERSISTED_QUERY_HASH_MISMATCH"),  # not this query's hash
        ({"persistedQuery": {"version": 2, "sha256Hash": sha("{ viewer { kind } }")}}, "MALFORMED_REQUEST"),
        ({"persistedQuery": {"version": 1, "sha256Hash": sha("{ viewer { kind } }").upper()}}, "MALFORMED_REQUEST"),
        ({"persistedQuery": {"version": 1, "sha256Hash": "../" * 21 + "a"}}, "MALFORMED_REQUEST"),
        ({"persistedQuery": "x"}, "MALFORMED_REQUEST"),
        ({"persistedQuery": {"version": 1}}, "MALFORMED_REQUEST"),
        ({"persistedQuery": {"version": True, "sha256Hash": sha("{ viewer { kind } }")}}, "MALFORMED_REQUEST"),
    ],
)
async def test_a_persisted_query_that_does_not_match_or_is_malformed_is_refused_with_400(
    server, extensions: dict[str, Any], expected: str
) -> None:
    key = (await api_keys.create_key(partner_id=(await a_partner()).id)).secret
    refused = await post(server, key, {"query": "{ viewer { kind } }", "extensions": extensions})
    assert (refused.status_code, code(refused)) == (400, expected)


async def test_a_persisted_mutation_is_not_run_by_get(server) -> None:
    key = (await api_keys.create_key(partner_id=(await a_partner()).id)).secret
    mutation = 'mutation { createPlanFamily(input: {name: "x"}) { family { id } } }'
    learnt = await post(server, key, {"query": "{ __typename }", "extensions": persisted(sha("{ __typename }"))})
    assert learnt.status_code == 200
    await post(server, key, {"query": mutation, "extensions": persisted(sha(mutation))})  # refused: not the platform
    refused = await get(server, key, extensions=persisted(sha(mutation)))
    assert (refused.status_code, code(refused)) == (405, "METHOD_NOT_ALLOWED")


def test_each_operation_of_a_file_becomes_one_document_with_the_fragments_it_uses() -> None:
    found = operations.split(FILE, schema._schema)
    assert [op.name for op in found] == ["PartnerName", "Clients"]
    assert "fragment Client" not in found[0].document
    assert "fragment Client on Workspace" in found[1].document and "Unused" not in found[1].document
    assert all(op.sha256 == sha(op.document) for op in found)
    for bad, problem in (
        ("{ nope }", "does not validate"),
        ("query { viewer { kind } } query { viewer { kind } }", "names each"),
        ("fragment F on Workspace { id }", "no operation"),
        ("query {", "does not parse"),
    ):
        with pytest.raises(ValueError, match=problem):
            operations.split(bad, schema._schema)


@pytest.fixture
def registered_only(backend: Backend, tmp_path: Path) -> Iterator[Server]:
    with serving(backend, tmp_path / "registered.log", extra_env={"WHITEBILL_OPERATIONS": "registered"}) as started:
        yield started


async def test_registered_only_runs_registered_operations_by_hash_or_text_and_refuses_the_rest(
    backend: Backend, tmp_path: Path, registered_only: Server
) -> None:
    server = registered_only
    partner = await a_partner("Acme")
    await a_workspace(partner, "Client One")
    key = (await api_keys.create_key(partner_id=partner.id)).secret
    path = tmp_path / "dashboard.graphql"
    path.write_text(FILE)
    made = register(backend, path)
    assert made.returncode == 0, made.stderr
    documents = {op.name: op for op in operations.split(FILE, schema._schema)}
    assert made.stdout.splitlines() == [
        f"{documents['PartnerName'].sha256}  PartnerName  registered",
        f"{documents['Clients'].sha256}  Clients  registered",
    ]
    again = register(backend, path)
    assert again.stdout.splitlines()[0].endswith("already registered")

    clients = documents["Clients"]
    # The process's first requests, at once: each waits for the one read of the registry.
    first = await asyncio.gather(
        *(post(server, key, {"extensions": persisted(clients.sha256), "variables": {"first": 5}}) for _ in range(6))
    )
    assert [r.status_code for r in first] == [200] * 6, [r.text for r in first]
    by_hash = first[0]
    assert by_hash.json() == {"data": {"workspaces": {"nodes": [{"name": "Client One", "status": "RESTRICTED"}]}}}
    by_text = await post(server, key, {"query": clients.document, "variables": {"first": 5}})
    assert by_text.json() == by_hash.json()
    by_get = await get(server, key, extensions=persisted(clients.sha256), variables={"first": 5})
    assert by_get.json() == by_hash.json()

    # The registered operation laid out otherwise (as a frontend's sources write it) is the same operation.
    laid_out = await post(
        server,
        key,
        {"query": WORKSPACES + "\n\nfragment Client on Workspace {\n  name\n  status\n}", "variables": {"first": 5}},
    )
    assert laid_out.json() == by_hash.json()
    for body in (
        {"query": WORKSPACES + " fragment Client on Workspace { name }", "variables": {"first": 5}},
        {
            "query": "query Clients($first: Int!) { workspaces(first: $first) { nodes { name status } } }",
            "variables": {"first": 5},
        },
        {"query": "query PartnerName { viewer { partner { name slug } } }"},
        {"query": "{ __typename }", "extensions": persisted(sha("{ __typename }"))},  # APQ learns nothing here
        {"extensions": persisted(sha("{ __typename }"))},
    ):
        refused = await post(server, key, body)
        assert (refused.status_code, code(refused)) == (400, "OPERATION_NOT_REGISTERED"), body

    # A websocket is no way around it.
    url = server.url.replace("http://", "ws://", 1) + "/graphql"
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as socket:  # type: ignore[list-item]
        await socket.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {key}"}}))
        assert json.loads(await socket.recv())["type"] == "connection_ack"
        payload = {"query": STATUS, "variables": {"w": "V29ya3NwYWNlOjE="}}
        await socket.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
        refused = json.loads(await socket.recv())
        assert refused["type"] == "error" and refused["payload"][0]["extensions"]["code"] == "OPERATION_NOT_REGISTERED"

    # Removed, it stops running within the time the servers read the registry again.
    removed = operations_cli(backend, "remove", clients.sha256)
    assert removed.returncode == 0, removed.stderr
    await asyncio.sleep(operations.RELOAD_EVERY + 0.5)
    gone = await post(server, key, {"extensions": persisted(clients.sha256), "variables": {"first": 5}})
    assert (gone.status_code, code(gone)) == (400, "OPERATION_NOT_REGISTERED")
    assert operations_cli(backend, "remove", clients.sha256).returncode == 2  # nothing left to remove


def test_the_registered_dashboard_is_the_benchmarks_query_and_the_performance_page_names_its_hash() -> None:
    from graphql import parse, print_ast

    from bench.p1_dashboard import DASHBOARD, DASHBOARD_OPERATION

    assert DASHBOARD_OPERATION.document == print_ast(parse(DASHBOARD))
    assert DASHBOARD_OPERATION.sha256 in (Path(__file__).parents[1] / "docs" / "performance.md").read_text()


async def test_a_registered_query_runs_compiled_on_postgres_and_operations_list_says_which(
    backend: Backend, tmp_path: Path, server: Server
) -> None:
    from tests.test_isolation import compiled_answers

    partner = await a_partner("Compiled")
    await a_workspace(partner, "Client One")
    await a_workspace(partner, "Client Two")
    key = (await api_keys.create_key(partner_id=partner.id)).secret
    path = tmp_path / "dashboard.graphql"
    path.write_text(FILE)
    assert register(backend, path).returncode == 0
    documents = {op.name: op for op in operations.split(FILE, schema._schema)}
    listed = operations_cli(backend, "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == [
        f"{documents['PartnerName'].sha256}  PartnerName  general: Query.viewer is not compiled",
        f"{documents['Clients'].sha256}  Clients  compiled",
    ]
    as_json = [json.loads(line) for line in operations_cli(backend, "list", "--json").stdout.splitlines()]
    assert [line["executor"] for line in as_json] == ["general: Query.viewer is not compiled", "compiled"]

    await asyncio.sleep(operations.RELOAD_EVERY + 0.5)  # the server reads the registry again
    clients = documents["Clients"]
    before = await compiled_answers(server.url)
    by_hash = await post(server, key, {"extensions": persisted(clients.sha256), "variables": {"first": 1}})
    compiled = await compiled_answers(server.url) - before
    # The same answer by the general executor: the fragment inlined is another document, not registered.
    general = await post(
        server,
        key,
        {
            "query": "query Clients($first: Int!) { workspaces(first: $first) { nodes { name status } } }",
            "variables": {"first": 1},
        },
    )
    assert await compiled_answers(server.url) - before == compiled
    # Laid out otherwise, the same answer; outside registered-only mode the registry is not read for a text,
    # so the general executor gives it.
    laid_out = await post(
        server, key, {"query": WORKSPACES + " fragment Client on Workspace { name status }", "variables": {"first": 1}}
    )
    assert laid_out.json() == by_hash.json()
    assert await compiled_answers(server.url) - before == compiled
    assert (
        by_hash.json()
        == general.json()
        == {"data": {"workspaces": {"nodes": [{"name": "Client One", "status": "RESTRICTED"}]}}}
    )
    assert compiled == (1 if backend.is_postgres else 0)  # SQLite runs every operation on the general executor
    # Bad variables go to the general executor, which answers with its error.
    bad = await post(server, key, {"extensions": persisted(clients.sha256), "variables": {"first": "one"}})
    assert code(bad) == "INVALID_INPUT" and await compiled_answers(server.url) - before == compiled


async def test_the_portals_operations_from_its_build_run_in_registered_only_mode(
    backend: Backend, tmp_path: Path, registered_only: Server
) -> None:
    """`make web` lists every operation of the portal's sources in web/dist/portal-operations.graphql; once
    registered, each runs as the portal sends it (its sources' text), and nothing the portal does not send."""
    built = Path(__file__).parents[1] / "web" / "dist" / "portal-operations.graphql"
    assert built.exists(), "build the portal first: make web"
    made = register(backend, built)
    assert made.returncode == 0, made.stderr
    sources = sorted((Path(__file__).parents[1] / "web" / "portal" / "src").rglob("*.ts"))
    sent = {
        m.group(1) for f in sources for m in re.finditer(r"`((?:query|mutation|subscription)\b[^`]*)`", f.read_text())
    }
    assert len(sent) >= 20
    registered = {op.name for op in operations.split(built.read_text(), schema._schema)}
    assert len(registered) == len(sent)
    await asyncio.sleep(operations.RELOAD_EVERY + 0.5)
    key = (await api_keys.create_key(partner_id=(await a_partner("Portal")).id)).secret
    for text in sorted(sent):
        if text.startswith("subscription"):
            continue  # over HTTP a subscription is refused for its transport, not for being unregistered
        answer = await post(registered_only, key, {"query": text, "variables": {}})
        codes = [e.get("extensions", {}).get("code") for e in answer.json().get("errors", [])]
        assert "OPERATION_NOT_REGISTERED" not in codes, text
    refused = await post(registered_only, key, {"query": "query Who { viewer { kind } }"})
    assert code(refused) == "OPERATION_NOT_REGISTERED"


REGISTERED_CLIENTS = operations.split(FILE, schema._schema)[1].document


@pytest.mark.parametrize(
    "text",
    [
        WORKSPACES + " fragment Client on Workspace { status } fragment Client on Workspace { name status }",
        WORKSPACES + " fragment Client on Workspace { name status } fragment Junk on NoSuchType { nope }",
        WORKSPACES + " fragment Client on Workspace { name status } query Other { __typename }",
        WORKSPACES + " fragment Client on Workspace { name status " + "__typename " * 2500 + "}",
    ],
)
def test_only_a_valid_document_of_one_operation_is_compared_in_its_printed_form(text: str) -> None:
    """Duplicate or invalid fragments, a second operation, a document past the token limit (refused at once,
    before any validation): none stands for the registered operation."""
    registry = operations.Registry(operations.REGISTERED, schema._schema, max_tokens=MAX_TOKENS)
    assert registry._printed(text) is None
    laid_out = WORKSPACES + "\n\nfragment Client on Workspace {\n  name\n  status\n}"
    assert registry._printed(laid_out) == REGISTERED_CLIENTS


async def test_outside_registered_only_mode_a_text_never_waits_on_the_registry(monkeypatch) -> None:
    """A registry that cannot be read costs a plain query nothing, and the compiled path tries it again
    only RELOAD_EVERY seconds later."""
    reads = []

    async def unreadable() -> list[operations.Operation]:
        reads.append(1)
        raise OSError("the database is down")

    monkeypatch.setattr(operations, "registered", unreadable)
    registry = operations.Registry(operations.ANY, schema._schema, max_tokens=MAX_TOKENS)
    assert await registry.document_for("{ __typename }", None) == "{ __typename }"
    assert reads == []
    assert await registry.compiled(REGISTERED_CLIENTS) is None
    assert await registry.compiled(REGISTERED_CLIENTS) is None
    assert reads == [1]


async def test_a_subscribe_message_whose_operation_name_is_not_a_string_is_refused(server: Server) -> None:
    key = (await api_keys.create_key(partner_id=(await a_partner("Names")).id)).secret
    url = server.url.replace("http://", "ws://", 1) + "/graphql"
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as socket:  # type: ignore[list-item]
        await socket.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {key}"}}))
        assert json.loads(await socket.recv())["type"] == "connection_ack"
        payload = {"query": "{ __typename }", "operationName": []}
        await socket.send(json.dumps({"id": "a", "type": "subscribe", "payload": payload}))
        await socket.send(json.dumps({"id": "a", "type": "complete"}))
        refused = json.loads(await socket.recv())
        assert refused["type"] == "error" and refused["payload"][0]["extensions"]["code"] == "MALFORMED_REQUEST"
        payload = {"query": "query Q { __typename }", "operationName": "Q"}
        await socket.send(json.dumps({"id": "b", "type": "subscribe", "payload": payload}))
        assert json.loads(await socket.recv()) == {
            "id": "b",
            "type": "next",
            "payload": {"data": {"__typename": "Query"}},
        }
