"""The HTTP boundary of a real uvicorn process: whatever arrives, the answer is never a 5xx, every
refusal is JSON with a code, bodies are read no further than their route's limit, and the connection
stays usable after a refusal.

/graphql refusals look like GraphQL errors (``errors[].extensions.code``); /usage, the report
downloads and webhooks answer ``errors[].code``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import websockets

from billing.core.errors import BillingError, ErrorCode
from billing.core.money import to_minor
from billing.tenants import api_keys
from billing.tenants.identity import find_brand
from models.tenancy import Partner
from schema.ids import decode_cursor, from_global_id, to_global_id
from tests.factories import a_partner, a_workspace
from tests.graphql import GraphQLClient
from tests.shop import CONFIGURE

pytestmark = pytest.mark.usefixtures("database")

MiB = 1024 * 1024


def code_of(response: httpx.Response) -> str:
    """The code of a refusal, in either shape; fails unless the body is JSON with one."""
    assert response.headers["content-type"].startswith("application/json"), (response.status_code, response.text)
    error = response.json()["errors"][0]
    code = error.get("code") or (error.get("extensions") or {}).get("code")
    assert isinstance(code, str) and code, response.text
    return code


@pytest.fixture
async def http(server) -> AsyncIterator[httpx.AsyncClient]:
    """One kept-alive connection: a refusal must leave it usable."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=httpx.Limits(max_connections=1)) as client:
        yield client


async def still_served(http: httpx.AsyncClient) -> None:
    answer = await http.post("/graphql", json={"query": "{ __typename }"})
    assert answer.json() == {"data": {"__typename": "Query"}}


@pytest.mark.parametrize("body", ["null", "true", '"x"', "12345", "[]", '[{"query": "{ __typename }"}]', "{bad"])
async def test_a_graphql_body_of_any_json_shape_is_a_coded_400_not_a_500(http: httpx.AsyncClient, body: str) -> None:
    response = await http.post("/graphql", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert code_of(response) == "MALFORMED_REQUEST"
    await still_served(http)


async def test_refusals_before_execution_are_json_with_a_code(http: httpx.AsyncClient) -> None:
    query = json.dumps({"query": "{ __typename }"})
    wrong_type = await http.post("/graphql", content=query, headers={"content-type": "text/plain"})
    assert (wrong_type.status_code, code_of(wrong_type)) == (400, "MALFORMED_REQUEST")
    no_type = await http.post("/graphql", content=query, headers={"content-type": ""})
    assert (no_type.status_code, code_of(no_type)) == (400, "MALFORMED_REQUEST")
    nul = await http.post("/graphql", json={"query": "{ __typename }", "variables": {"a": "x\x00y"}})
    assert (nul.status_code, code_of(nul)) == (400, "INVALID_INPUT")
    no_query = await http.post("/graphql", json={"variables": {}})
    assert (no_query.status_code, code_of(no_query)) == (400, "MALFORMED_REQUEST")
    mutation_by_get = await http.get("/graphql", params={"query": "mutation { logout { errors { code } } }"})
    assert (mutation_by_get.status_code, code_of(mutation_by_get)) == (405, "METHOD_NOT_ALLOWED")
    bad_variables = await http.get("/graphql", params={"query": "{ __typename }", "variables": "5"})
    assert (bad_variables.status_code, code_of(bad_variables)) == (400, "MALFORMED_REQUEST")
    await still_served(http)


@pytest.mark.parametrize("depth", [500, 1000, 1024, 1025, 100_000])
async def test_deeply_nested_json_is_answered_not_a_500(http: httpx.AsyncClient, depth: int) -> None:
    nested = "[" * depth + "]" * depth
    body = '{"query": "{ __typename }", "variables": {"a": ' + nested + "}}"
    response = await http.post("/graphql", content=body, headers={"content-type": "application/json"})
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert code_of(response) == "MALFORMED_REQUEST"
    await still_served(http)


async def pieces(total: int, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    """A body sent chunked: no Content-Length to trust."""
    for _ in range(total // size):
        yield b" " * size


@pytest.mark.parametrize(("path", "limit"), [("/graphql", MiB), ("/usage", 4 * MiB), ("/webhooks/manual/1", MiB)])
async def test_a_body_over_its_routes_limit_is_a_coded_413_declared_or_not(
    http: httpx.AsyncClient, path: str, limit: int
) -> None:
    headers = {"content-type": "application/json", "authorization": "Bearer wb_nobody"}
    declared = await http.post(path, content=b" " * (limit + 1), headers=headers)
    assert (declared.status_code, code_of(declared)) == (413, "BODY_TOO_LARGE")
    chunked = await http.post(path, content=pieces(limit + 256 * 1024), headers=headers)
    assert (chunked.status_code, code_of(chunked)) == (413, "BODY_TOO_LARGE")
    await still_served(http)
    at_the_limit = await http.post(path, content=b" " * limit, headers=headers)
    assert at_the_limit.status_code != 413  # read whole, then refused for what it says


async def test_a_query_is_counted_in_bytes_too(http: httpx.AsyncClient) -> None:
    # Comments and block strings are one token each however long: the byte limit still holds.
    commented = "{ __typename }\n#" + "x" * 70_000
    refused = await http.post("/graphql", json={"query": commented})
    assert (refused.status_code, code_of(refused)) == (400, "QUERY_TOO_LARGE")
    block = '{ node(id: """' + "é" * 40_000 + '""") { id } }'  # 40,000 characters, 80,000 bytes
    refused = await http.post("/graphql", json={"query": block})
    assert (refused.status_code, code_of(refused)) == (400, "QUERY_TOO_LARGE")
    await still_served(http)


DEEP = (
    "{ viewer { partner { workspaces { nodes { partner { workspaces { nodes { partner { workspaces { nodes {"
    " partner { workspaces { nodes { id } } } } } } } } } } } } } }"
)
LIMITS = {
    "depth": DEEP,
    "aliases": "{ " + " ".join(f"a{i}: viewer {{ kind }}" for i in range(40)) + " }",
    "tokens": "{ viewer { " + " ".join(["kind"] * 2100) + " } }",
    "introspection": "{ __schema { types { fields { type { fields { type { fields { type { name } } } } } } } } }",
    "cost": "{ partners(first: 100) { nodes { workspaces(first: 100) { nodes { wallets { entries(first: 100) {"
    " nodes { id } } } } } } } }",
}


@pytest.mark.parametrize("limit", LIMITS)
async def test_every_query_limit_refuses_with_a_code(server, limit: str) -> None:
    platform = GraphQLClient(server.url, (await api_keys.create_key(partner_id=None)).secret)
    body = await platform.execute(LIMITS[limit])
    assert body.get("data") is None and body["errors"], body
    assert {e["extensions"]["code"] for e in body["errors"]} == {"QUERY_TOO_COMPLEX"}, body


@pytest.mark.parametrize("query", ["{", "{ viewer { nope } }", "query($x: Int!) { viewer { kind } }"])
async def test_a_query_that_does_not_parse_or_validate_has_a_code(server, query: str) -> None:
    body = await GraphQLClient(server.url).execute(query)
    assert [e["extensions"]["code"] for e in body["errors"]] == ["INVALID_QUERY"], body


async def test_a_negative_page_size_is_its_own_error(server) -> None:
    platform = GraphQLClient(server.url, (await api_keys.create_key(partner_id=None)).secret)
    negative = await platform.execute("{ partners(first: -1) { nodes { id } } }")
    assert negative["errors"][0]["extensions"] == {"code": "INVALID_PAGE_SIZE", "field": "first"}
    too_large = await platform.execute("{ partners(first: 101) { nodes { id } } }")
    assert too_large["errors"][0]["extensions"] == {"code": "PAGE_SIZE_TOO_LARGE", "field": "first"}


BALANCE = "subscription($w: ID!) { walletBalanceChanged(walletId: $w) { balance { amount } } }"


async def receive(socket: Any) -> dict[str, Any]:
    return json.loads(await socket.recv(decode=True))


async def test_operations_over_a_connections_limit_or_too_large_are_refused_with_a_code(server) -> None:
    partner = await a_partner()
    workspace = await a_workspace(partner)
    key = (await api_keys.create_key(partner_id=partner.id)).secret
    granted = await GraphQLClient(server.url, key).data(
        """mutation($ws: ID!) { grantUnits(input: {workspaceId: $ws, unit: "POINTS", amount: "10",
           idempotencyKey: "ws-limit"}) { wallet { id } } }""",
        {"ws": to_global_id("Workspace", workspace.id)},
    )
    wallet = granted["grantUnits"]["wallet"]["id"]
    url = server.url.replace("http://", "ws://", 1) + "/graphql"
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as socket:  # type: ignore[list-item]
        await socket.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {key}"}}))
        assert (await receive(socket))["type"] == "connection_ack"
        for number in range(1, 22):
            payload = {"query": BALANCE, "variables": {"w": wallet}}
            await socket.send(json.dumps({"id": str(number), "type": "subscribe", "payload": payload}))
        answers: dict[str, dict[str, Any]] = {}
        while len(answers) < 21:
            message = await receive(socket)
            answers.setdefault(message["id"], message)
        assert all(answers[str(n)]["type"] == "next" for n in range(1, 21))
        refused = answers["21"]
        assert refused["type"] == "error" and refused["payload"][0]["extensions"]["code"] == "RATE_LIMITED", refused
        await socket.send(json.dumps({"id": "1", "type": "complete"}))
        huge = {"query": BALANCE + "#" + "x" * 70_000, "variables": {"w": wallet}}
        await socket.send(json.dumps({"id": "22", "type": "subscribe", "payload": huge}))
        refused = await receive(socket)
        assert refused["id"] == "22" and refused["payload"][0]["extensions"]["code"] == "QUERY_TOO_LARGE", refused


@pytest.mark.parametrize(
    "month", ["2026-12\n", "2026-12\u3000", " 2026-12", "\u0662\u0660\u0662\u0666-12", "2026-12\r\nx: y"]
)
async def test_a_report_month_that_is_not_exactly_yyyy_mm_is_refused_before_any_header(
    http: httpx.AsyncClient, month: str
) -> None:
    key = (await api_keys.create_key(partner_id=(await a_partner()).id)).secret
    response = await http.get(
        "/reports/wcc-deductions.csv", params={"month": month}, headers={"authorization": f"Bearer {key}"}
    )
    assert (response.status_code, code_of(response)) == (400, "INVALID_INPUT")
    assert response.json()["errors"][0]["field"] == "month"
    fine = await http.get(
        "/reports/wcc-deductions.csv", params={"month": "2026-12"}, headers={"authorization": f"Bearer {key}"}
    )
    assert fine.status_code == 200
    assert fine.headers["content-disposition"] == 'attachment; filename="wcc-deductions-2026-12.csv"'


async def test_a_request_id_is_echoed_only_when_plain_ascii(http: httpx.AsyncClient) -> None:
    plain = await http.get("/healthz", headers={"x-request-id": "trace-123"})
    assert plain.headers["x-request-id"] == "trace-123"
    accented = await http.get("/healthz", headers={"x-request-id": "tr\u00e9ce".encode("latin-1")})
    assert accented.status_code == 200
    assert accented.headers["x-request-id"].isascii() and accented.headers["x-request-id"] != "trace"


async def test_a_name_refuses_control_characters_while_a_note_keeps_its_line_breaks(server) -> None:
    platform = GraphQLClient(server.url, (await api_keys.create_key(partner_id=None)).secret)
    create = """mutation($name: String!) { createPartner(input: {name: $name, slug: "acme", defaultCurrency: "BRL"}) {
      partner { id } errors { code field } } }"""
    for name in ("Acme\nInc", "Acme\r\nBcc: x@evil.example", "Acme\x07", "Ac\x85me"):
        refused = (await platform.data(create, {"name": name}))["createPartner"]
        assert refused["errors"] == [{"code": "INVALID_INPUT", "field": "name"}], (name, refused)
    partner = (await platform.data(create, {"name": "Acme"}))["createPartner"]["partner"]["id"]
    key = """mutation($p: ID!) { createApiKey(input: {name: "backend", partnerId: $p}) { secret } }"""
    agency = GraphQLClient(server.url, (await platform.data(key, {"p": partner}))["createApiKey"]["secret"])
    branding = """mutation($name: String!) { updateBranding(input: {displayName: $name}) { errors { code field } } }"""
    refused = (await agency.data(branding, {"name": "Acme\r\nSubject: hi"}))["updateBranding"]
    assert refused["errors"] == [{"code": "INVALID_INPUT", "field": "displayName"}]
    workspace = await a_workspace(await Partner.get(id=from_global_id(partner)[1]))
    grant = """mutation($ws: ID!) { grantUnits(input: {workspaceId: $ws, unit: "POINTS", amount: "5",
      note: "first line\\nsecond line\\tend", idempotencyKey: "multi"}) { errors { code field } } }"""
    granted = await agency.data(grant, {"ws": to_global_id("Workspace", workspace.id)})
    assert granted["grantUnits"]["errors"] == []


@pytest.mark.parametrize("amount", [" 1", "1 ", "+5", "0001", "01.5", "1.", ".5", "1e3", "1_000", "\u0663", "-", ""])
async def test_an_amount_has_one_plain_ascii_spelling(server, amount: str) -> None:
    partner = await a_partner()
    workspace = to_global_id("Workspace", (await a_workspace(partner)).id)
    agency = GraphQLClient(server.url, (await api_keys.create_key(partner_id=partner.id)).secret)
    grant = """mutation($ws: ID!, $amount: String!) { grantUnits(input: {workspaceId: $ws, unit: "BRL",
      amount: $amount, idempotencyKey: "strict"}) { errors { code field } } }"""
    refused = (await agency.data(grant, {"ws": workspace, "amount": amount}))["grantUnits"]
    assert refused["errors"] == [{"code": "INVALID_AMOUNT", "field": "amount"}], amount
    assert (await agency.data(grant, {"ws": workspace, "amount": "0.50"}))["grantUnits"]["errors"] == []


def test_an_amount_is_read_exactly_in_its_currencys_decimals() -> None:
    assert to_minor("49.90", "BRL") == 4990 and to_minor("0", "JPY") == 0 and to_minor("-1.5", "BRL") == -150
    for text, unit in (("49.901", "BRL"), ("1.5", "JPY"), ("1.5", "POINTS")):
        with pytest.raises(BillingError) as refused:
            to_minor(text, unit)
        assert refused.value.code is ErrorCode.INVALID_AMOUNT


@pytest.mark.parametrize("number", ["\u0663", "03", "+3", " 3", "3 ", "3_0", "\uff13"])
async def test_a_global_id_is_one_of_ours_exactly_as_we_write_it(server, number: str) -> None:
    partner = await a_partner()
    workspace = await a_workspace(partner)
    agency = GraphQLClient(server.url, (await api_keys.create_key(partner_id=partner.id)).secret)
    spelled = base64.b64encode(f"Workspace:{number.replace('3', str(workspace.id))}".encode()).decode()
    query = "query($id: ID!) { node(id: $id) { id } }"
    body = await agency.execute(query, {"id": spelled})
    assert body["errors"][0]["extensions"]["code"] == "INVALID_ID", (number, body)
    unpadded = to_global_id("Workspace", workspace.id).rstrip("=")
    if unpadded != to_global_id("Workspace", workspace.id):
        assert (await agency.execute(query, {"id": unpadded}))["errors"][0]["extensions"]["code"] == "INVALID_ID"
    found = await agency.data(query, {"id": to_global_id("Workspace", workspace.id)})
    assert found["node"] == {"id": to_global_id("Workspace", workspace.id)}


async def test_a_brand_named_by_its_id_takes_ascii_digits_only() -> None:
    partner = await a_partner()
    assert await find_brand(str(partner.id)) is not None
    arabic = "".join(chr(0x0660 + int(d)) for d in str(partner.id))
    assert await find_brand(arabic) is None
    assert await find_brand(f"0{partner.id}") is None
    with pytest.raises(BillingError):
        decode_cursor(base64.b64encode(b"cursor:\xd9\xa3").decode())


@pytest.mark.parametrize("field", ["key", "secret"])
async def test_a_gateway_credential_is_printable_ascii_as_the_headers_it_travels_in(server, field: str) -> None:
    agency = GraphQLClient(server.url, (await api_keys.create_key(partner_id=(await a_partner()).id)).secret)
    credentials = {"key": "sk_test_ok", "secret": "whsec_ok", field: "sk_cl\u00e9"}
    configured = await agency.data(CONFIGURE, {"provider": "stripe", "methods": ["CARD"], **credentials})
    errors = configured["configureGateway"]["errors"]
    assert [(e["code"], e["field"]) for e in errors] == [
        ("INVALID_INPUT", {"key": "apiKey", "secret": "webhookSecret"}[field])
    ]
