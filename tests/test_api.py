"""The API through HTTP against a real uvicorn process, on SQLite and on PostgreSQL.

The vertical slice of the foundation: the platform creates a partner, the partner creates a
workspace with its default project, lists and finds it, grants units by hand and reads them back;
another partner sees none of it.
"""

from __future__ import annotations

import httpx
import pytest

from billing.tenants import api_keys
from models.tenancy import Project, Workspace
from schema.ids import from_global_id, to_global_id
from tests.graphql import GraphQLClient

pytestmark = pytest.mark.usefixtures("database")

CREATE_PARTNER = """
mutation($name: String!, $slug: String!) {
  createPartner(input: {name: $name, slug: $slug, defaultCurrency: "BRL"}) {
    partner { id name slug defaultCurrency }
    errors { code message field }
  }
}"""
CREATE_KEY = """
mutation($partnerId: ID) {
  createApiKey(input: {name: "backend", partnerId: $partnerId}) { keyId secret errors { code field } }
}"""
CREATE_WORKSPACE = """
mutation($name: String!, $email: String!) {
  createWorkspace(input: {name: $name, ownerEmail: $email}) {
    workspace { id name ownerEmail status }
    defaultProject { id name isDefault }
    errors { code message field }
  }
}"""
GRANT = """
mutation($id: ID!, $amount: String!, $key: String!, $unit: String! = "POINTS", $note: String! = "") {
  grantUnits(input: {workspaceId: $id, unit: $unit, amount: $amount, note: $note, idempotencyKey: $key}) {
    wallet { id unit balance { amount unit } }
    errors { code message field }
  }
}"""


@pytest.fixture
async def platform(server) -> GraphQLClient:
    key = await api_keys.create_key(partner_id=None, name="platform")
    return GraphQLClient(server.url, key.secret)


async def onboard(platform: GraphQLClient, slug: str) -> tuple[str, GraphQLClient]:
    """A partner and a client holding its API key, made through the API."""
    data = await platform.data(CREATE_PARTNER, {"name": slug.title(), "slug": slug})
    partner = data["createPartner"]["partner"]
    key = (await platform.data(CREATE_KEY, {"partnerId": partner["id"]}))["createApiKey"]
    assert key["errors"] == []
    return partner["id"], GraphQLClient(platform.base_url, key["secret"])


async def new_workspace(client: GraphQLClient, name: str, email: str) -> dict:
    result = (await client.data(CREATE_WORKSPACE, {"name": name, "email": email}))["createWorkspace"]
    assert result["errors"] == []
    return result


async def test_the_vertical_slice(platform: GraphQLClient) -> None:
    partner_id, agency = await onboard(platform, "acme")
    created = await new_workspace(agency, "Padaria Central", "Dono@Padaria.example")
    workspace = created["workspace"]
    assert workspace["ownerEmail"] == "dono@padaria.example" and workspace["status"] == "RESTRICTED"
    assert created["defaultProject"]["isDefault"] is True
    await new_workspace(agency, "Loja Azul", "contato@lojaazul.example")

    listed = await agency.data(
        "{ workspaces(first: 1) { edges { cursor node { name } } pageInfo { hasNextPage endCursor } } }"
    )
    page = listed["workspaces"]
    assert [e["node"]["name"] for e in page["edges"]] == ["Padaria Central"] and page["pageInfo"]["hasNextPage"]
    rest = await agency.data(
        "query($after: String) { workspaces(first: 10, after: $after) { nodes { name } pageInfo { hasNextPage } } }",
        {"after": page["pageInfo"]["endCursor"]},
    )
    assert [n["name"] for n in rest["workspaces"]["nodes"]] == ["Loja Azul"]
    assert rest["workspaces"]["pageInfo"]["hasNextPage"] is False

    found = await agency.data('{ workspaces(ownerEmail: "DONO@padaria.example") { nodes { id } } }')
    assert found["workspaces"]["nodes"] == [{"id": workspace["id"]}]

    node = await agency.data(
        "query($id: ID!) { node(id: $id) { id ... on Workspace { name partner { id }"
        " projects { nodes { isDefault } pageInfo { hasNextPage } } } } }",
        {"id": workspace["id"]},
    )
    assert node["node"]["name"] == "Padaria Central" and node["node"]["partner"]["id"] == partner_id
    assert node["node"]["projects"] == {"nodes": [{"isDefault": True}], "pageInfo": {"hasNextPage": False}}

    granted = await agency.data(
        GRANT, {"id": workspace["id"], "amount": "500", "key": "welcome", "note": "welcome pack"}
    )
    wallet = granted["grantUnits"]["wallet"]
    assert wallet["balance"] == {"amount": "500", "unit": "POINTS"}
    again = await agency.data(GRANT, {"id": workspace["id"], "amount": "500", "key": "welcome", "note": "welcome pack"})
    assert again["grantUnits"]["wallet"]["balance"]["amount"] == "500"  # a replay, not a second grant

    entries = await agency.data(
        "query($id: ID!) { node(id: $id) { ... on Wallet { balance { amount } entries(first: 10) { nodes {"
        " amount { amount unit } balanceAfter { amount } cause note actor causedBy counterAccount postingId } } } } }",
        {"id": wallet["id"]},
    )
    [entry] = entries["node"]["entries"]["nodes"]
    assert entry == {
        "amount": {"amount": "500", "unit": "POINTS"},
        "balanceAfter": {"amount": "500"},
        "cause": "GRANT",
        "note": "welcome pack",
        "actor": entry["actor"],
        "causedBy": workspace["id"],  # a global id: node(id:) finds what caused it
        "counterAccount": "ISSUANCE",
        "postingId": entry["postingId"],
    }
    assert from_global_id(entry["postingId"])[0] == "Posting"


async def test_money_in_a_currency_keeps_its_minor_units(platform: GraphQLClient) -> None:
    _, agency = await onboard(platform, "brl-agency")
    workspace = (await new_workspace(agency, "Cliente", "c@cliente.example"))["workspace"]
    granted = await agency.data(GRANT, {"id": workspace["id"], "amount": "49.90", "key": "k", "unit": "BRL"})
    assert granted["grantUnits"]["wallet"]["balance"] == {"amount": "49.90", "unit": "BRL"}
    refused = await agency.data(GRANT, {"id": workspace["id"], "amount": "0.001", "key": "k2", "unit": "BRL"})
    assert refused["grantUnits"]["errors"][0]["code"] == "INVALID_AMOUNT"


async def test_another_partners_objects_answer_as_not_found(platform: GraphQLClient) -> None:
    _, alpha = await onboard(platform, "alpha")
    _, beta = await onboard(platform, "beta")
    workspace = (await new_workspace(alpha, "Alpha Client", "a@alpha.example"))["workspace"]
    wallet = (await alpha.data(GRANT, {"id": workspace["id"], "amount": "10", "key": "k"}))["grantUnits"]["wallet"]
    missing = to_global_id("Workspace", 999_999)

    for object_id in (workspace["id"], wallet["id"], missing):
        assert (await beta.data("query($id: ID!) { node(id: $id) { id } }", {"id": object_id}))["node"] is None
    assert (await beta.data("{ workspaces { nodes { id } } }"))["workspaces"]["nodes"] == []
    assert (await beta.data('{ workspaces(ownerEmail: "a@alpha.example") { nodes { id } } }'))["workspaces"][
        "nodes"
    ] == []

    # A mutation on a foreign id says NOT_FOUND, exactly as for an id that does not exist.
    for object_id in (workspace["id"], missing):
        refused = await beta.data(GRANT, {"id": object_id, "amount": "10", "key": f"steal-{object_id}"})
        assert refused["grantUnits"] == {
            "wallet": None,
            "errors": [{"code": "NOT_FOUND", "message": "workspace not found", "field": "workspaceId"}],
        }
    still = await alpha.data(
        "query($id: ID!) { node(id: $id) { ... on Wallet { balance { amount } } } }", {"id": wallet["id"]}
    )
    assert still["node"]["balance"]["amount"] == "10"

    # A partner cannot see the platform's partner list beyond itself.
    partners = await beta.data("{ partners { nodes { slug } } }")
    assert partners["partners"]["nodes"] == [{"slug": "beta"}]


async def test_a_partner_cannot_create_partners_or_keys_with_more_than_it_holds(
    platform: GraphQLClient,
) -> None:
    _, agency = await onboard(platform, "small")
    refused = await agency.data(CREATE_PARTNER, {"name": "Mine", "slug": "mine"})
    assert refused["createPartner"]["errors"][0]["code"] == "FORBIDDEN"
    limited = await agency.data(
        "mutation { createApiKey(input: {permissions: [READ_REPORTS]}) { secret errors { code } } }"
    )
    reader = GraphQLClient(agency.base_url, limited["createApiKey"]["secret"])
    escalation = await reader.data("mutation { createApiKey(input: {}) { secret errors { code } } }")
    assert escalation["createApiKey"]["errors"] == [{"code": "FORBIDDEN"}]
    granted = await reader.data(GRANT, {"id": to_global_id("Workspace", 1), "amount": "1", "key": "x"})
    assert granted["grantUnits"]["errors"][0]["code"] == "FORBIDDEN"


@pytest.mark.parametrize(
    ("variables", "code", "field"),
    [
        ({"id": "not-an-id", "amount": "1"}, "INVALID_ID", "workspaceId"),
        ({"id": "V29ya3NwYWNlOi0x", "amount": "1"}, "INVALID_ID", "workspaceId"),  # "Workspace:-1"
        ({"id": to_global_id("Wallet", 1), "amount": "1"}, "NOT_FOUND", "workspaceId"),
        ({"id": to_global_id("Workspace", 2**70), "amount": "1"}, "INVALID_ID", "workspaceId"),
        ({"id": None, "amount": "-5"}, "INVALID_AMOUNT", "amount"),
        ({"id": None, "amount": "0"}, "INVALID_AMOUNT", "amount"),
        ({"id": None, "amount": "1e9"}, "INVALID_AMOUNT", "amount"),
        ({"id": None, "amount": "NaN"}, "INVALID_AMOUNT", "amount"),
        ({"id": None, "amount": "1" * 40}, "INVALID_AMOUNT", "amount"),
        ({"id": None, "amount": "9999999999999999"}, "INVALID_AMOUNT", "amount"),
        ({"id": None, "amount": "1", "unit": "DOGECOIN"}, "INVALID_INPUT", "unit"),
        ({"id": None, "amount": "1", "key": ""}, "INVALID_INPUT", "idempotencyKey"),
        ({"id": None, "amount": "1", "note": "x" * 1001}, "INVALID_INPUT", "note"),
    ],
)
async def test_bad_input_gets_a_typed_error(platform: GraphQLClient, variables: dict, code: str, field: str) -> None:
    _, agency = await onboard(platform, "strict")
    workspace = (await new_workspace(agency, "Client", "c@strict.example"))["workspace"]
    variables = {"key": "k", **variables}
    variables["id"] = variables["id"] or workspace["id"]
    result = await agency.data(GRANT, variables)
    assert result["grantUnits"]["wallet"] is None
    assert [(e["code"], e["field"]) for e in result["grantUnits"]["errors"]] == [(code, field)]


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ('{ node(id: "%%%") { id } }', "INVALID_ID"),
        ("{ workspaces(first: 101) { nodes { id } } }", "PAGE_SIZE_TOO_LARGE"),
        ("{ workspaces(first: -1) { nodes { id } } }", "INVALID_PAGE_SIZE"),
        ('{ workspaces(after: "bm9wZQ==") { nodes { id } } }', "INVALID_CURSOR"),
        ("{ workspaces(first: 2147483647) { nodes { id } } }", "PAGE_SIZE_TOO_LARGE"),
    ],
)
async def test_bad_query_arguments_get_a_typed_error(platform: GraphQLClient, query: str, code: str) -> None:
    _, agency = await onboard(platform, "queries")
    body = await agency.execute(query)
    assert [e["extensions"]["code"] for e in body["errors"]] == [code]


async def test_without_a_key_nothing_is_served(server) -> None:
    anonymous = GraphQLClient(server.url)
    body = await anonymous.execute("{ workspaces { nodes { id } } }")
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    body = await GraphQLClient(server.url, "wb_nope_nope").execute("{ viewer { kind } }")
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


@pytest.mark.parametrize(
    "payload",
    [
        b'{"query": "{ viewer { kind } }", "variables": {"x": "a\\u0000b"}}',
        b'{"query": "{ viewer { kind } }", "variables": {"x": "\\ud800"}}',
        b'{"query": ',
        b"[]",
    ],
)
async def test_malformed_bodies_are_client_errors(platform: GraphQLClient, payload: bytes) -> None:
    async with httpx.AsyncClient(base_url=platform.base_url) as http:
        response = await http.post(
            "/graphql",
            content=payload,
            headers={"content-type": "application/json", "authorization": f"Bearer {platform.token}"},
        )
    assert 400 <= response.status_code < 500, response.text


@pytest.mark.parametrize(
    "query",
    [
        '{ workspaces(ownerEmail: "a\\u0000b") { nodes { id } } }',
        'mutation { requestPasswordReset(input: {email: "x@y.example", brand: "nul\\u0000.example"}) { ok } }',
        '{ auditLog(action: "wallet\\u0000grant") { nodes { id } } }',
    ],
)
async def test_nul_in_a_string_literal_is_refused_before_execution(platform: GraphQLClient, query: str) -> None:
    body = await platform.execute(query)
    assert body.get("data") is None and "NUL" in body["errors"][0]["message"]


async def test_query_bombs_are_refused_before_execution(platform: GraphQLClient) -> None:
    deep = (
        "{ viewer { partner { workspaces { nodes { partner { workspaces { nodes { partner { workspaces { nodes {"
        " partner { workspaces { nodes { id } } } } } } } } } } } } } }"
    )
    aliases = "{ " + " ".join(f"a{i}: viewer {{ kind }}" for i in range(40)) + " }"
    costly = (
        "{ partners(first: 100) { nodes { workspaces(first: 100) { nodes { wallets { entries(first: 100) {"
        " nodes { id } } } } } } } }"
    )
    limits = {  # each bomb, and the message naming the limit it must hit
        deep: "exceeds maximum operation depth of 12",
        aliases: "40 aliases found. Allowed: 30",
        costly: "exceeds the maximum of 50000",
    }
    for query, limit in limits.items():
        body = await platform.execute(query)
        assert body.get("data") is None and body["errors"], body
        assert all(e["extensions"]["code"] == "QUERY_TOO_COMPLEX" for e in body["errors"]), body
        assert any(limit in e["message"] for e in body["errors"]), body
    assert (await platform.data("{ viewer { kind } }"))["viewer"]["kind"] == "PLATFORM"


async def test_health_metrics_and_request_ids(server, platform: GraphQLClient) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        health = await http.get("/healthz")
        assert health.json() == {"status": "ok", "database": "ok"}
        await platform.data("{ viewer { kind } }")
        traced = await http.get("/healthz", headers={"x-request-id": "trace-123"})
        assert traced.headers["x-request-id"] == "trace-123"
        metrics = (await http.get("/metrics")).text
    assert 'whitebill_http_requests_total{method="POST",path="/graphql",status="200"}' in metrics
    assert "whitebill_http_request_duration_seconds_bucket" in metrics
    assert "trace-123" in server.log()


async def test_graphiql_is_served_in_development(server) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        page = await http.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 200 and "graphiql" in page.text.lower()


async def test_unknown_webhook_targets_are_not_found(server) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        for path in ("/webhooks/manual/1", "/webhooks/nope/1", f"/webhooks/manual/{10**25}"):
            assert (await http.post(path, content=b"{}")).status_code == 404


async def test_the_server_reads_the_clock_the_test_moved(platform: GraphQLClient) -> None:
    """The test clock is shared through the database: the server process sees time move too."""
    from datetime import datetime, timedelta

    from billing.core import clock

    _, agency = await onboard(platform, "timely")
    workspace = (await new_workspace(agency, "Client", "c@timely.example"))["workspace"]
    await clock.advance(timedelta(days=40))
    wallet = (await agency.data(GRANT, {"id": workspace["id"], "amount": "1", "key": "later"}))["grantUnits"]["wallet"]
    entries = await agency.data(
        "query($id: ID!) { node(id: $id) { ... on Wallet { entries { nodes { createdAt } } } } }", {"id": wallet["id"]}
    )
    created = datetime.fromisoformat(entries["node"]["entries"]["nodes"][0]["createdAt"])
    assert created - clock.now() > timedelta(days=-1)
    assert created - datetime.now(created.tzinfo) > timedelta(days=39)


async def test_privileged_actions_are_audited_with_the_request_id(platform: GraphQLClient) -> None:
    from models.operations import AuditLog

    _, agency = await onboard(platform, "audited")
    workspace = (await new_workspace(agency, "Client", "c@audited.example"))["workspace"]
    async with httpx.AsyncClient(base_url=agency.base_url) as http:
        response = await http.post(
            "/graphql",
            json={"query": GRANT, "variables": {"id": workspace["id"], "amount": "7", "key": "a", "note": "why"}},
            headers={"authorization": f"Bearer {agency.token}", "x-request-id": "audit-trail-1"},
        )
    assert response.json()["data"]["grantUnits"]["errors"] == []
    row = await AuditLog.get(action="wallet.grant")
    assert row.request_id == "audit-trail-1"
    assert row.before == {"balance": {"amount": "0", "unit": "POINTS"}}
    assert row.after == {"balance": {"amount": "7", "unit": "POINTS"}, "note": "why"}
    assert row.actor.startswith("api_key:")


async def test_a_partner_cannot_create_a_workspace_in_another_tenant(platform: GraphQLClient) -> None:
    other_id, _ = await onboard(platform, "other-tenant")
    _, agency = await onboard(platform, "self-tenant")
    result = await agency.data(
        'mutation($p: ID) { createWorkspace(input: {name: "X", ownerEmail: "x@x.example", partnerId: $p}) {'
        " workspace { id } errors { code field } } }",
        {"p": other_id},
    )
    assert result["createWorkspace"] == {"workspace": None, "errors": [{"code": "NOT_FOUND", "field": "partnerId"}]}


async def test_odd_credentials_and_lookups_are_client_errors(platform: GraphQLClient, server) -> None:
    """Over-long tokens, brands, e-mails and provider names never reach the database as 5xx."""
    for token in ("wb_" + "a" * 40 + "_x", "wb_" + "b" * 12 + "_" + "c" * 500, "x" * 5000):
        body = await GraphQLClient(server.url, token).execute("{ viewer { kind } }")
        assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    long_brand = "b" * 200 + ".example"
    login = await GraphQLClient(server.url).data(
        'mutation($b: String) { login(input: {brand: $b, email: "a@b.example", password: "whatever1"}) {'
        " errors { code } } }",
        {"b": long_brand},
    )
    assert login["login"]["errors"] == [{"code": "INVALID_CREDENTIALS"}]
    body = await platform.execute("query($e: String) { workspaces(ownerEmail: $e) { nodes { id } } }", {"e": "e" * 300})
    assert body["errors"][0]["extensions"]["code"] == "INVALID_INPUT"
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.post("/webhooks/" + "p" * 64 + "/1", content=b"{}")).status_code == 404


async def test_a_replayed_grant_answers_the_first_balance(platform: GraphQLClient) -> None:
    _, agency = await onboard(platform, "replays")
    workspace = (await new_workspace(agency, "Client", "c@replays.example"))["workspace"]
    first = await agency.data(GRANT, {"id": workspace["id"], "amount": "10", "key": "first"})
    await agency.data(GRANT, {"id": workspace["id"], "amount": "5", "key": "second"})
    replay = await agency.data(GRANT, {"id": workspace["id"], "amount": "10", "key": "first"})
    assert first["grantUnits"]["wallet"]["balance"]["amount"] == "10"
    assert replay["grantUnits"]["wallet"]["balance"]["amount"] == "10"  # what the first call answered, not 15


async def test_only_a_holder_of_every_permission_creates_a_partners_first_user(platform: GraphQLClient) -> None:
    _, agency = await onboard(platform, "first-user")
    narrow = (await agency.data("mutation { createApiKey(input: {permissions: [MANAGE_USERS]}) { secret } }"))[
        "createApiKey"
    ]["secret"]
    invite = 'mutation { invitePartnerUser(input: {email: "boss@first.example"}) { user { isAdmin } errors { code } } }'
    refused = await GraphQLClient(agency.base_url, narrow).data(invite)
    assert refused["invitePartnerUser"]["errors"] == [{"code": "FORBIDDEN"}]
    allowed = await agency.data(invite)
    assert allowed["invitePartnerUser"]["user"] == {"isAdmin": True}


async def test_a_workspaces_projects_are_a_connection_and_keys_stay_with_their_partner(
    platform: GraphQLClient,
) -> None:
    """Three projects (the default one and two more), two a page, oldest first; a partner cannot make a
    key for another partner (not found, naming partnerId)."""
    other_id, _ = await onboard(platform, "key-elsewhere")
    _, agency = await onboard(platform, "projects")
    workspace = (await new_workspace(agency, "Client", "c@projects.example"))["workspace"]
    _, db_id = from_global_id(workspace["id"])
    row = await Workspace.get(id=db_id)
    for name in ("Second", "Third"):
        await Project.create(partner_id=row.partner_id, workspace_id=row.id, name=name)
    page = """query($id: ID!, $after: String) { node(id: $id) { ... on Workspace {
      projects(first: 2, after: $after) { nodes { name isDefault } pageInfo { hasNextPage endCursor } } } } }"""
    first = (await agency.data(page, {"id": workspace["id"]}))["node"]["projects"]
    assert first["nodes"] == [{"name": "Client", "isDefault": True}, {"name": "Second", "isDefault": False}]
    assert first["pageInfo"]["hasNextPage"] is True
    rest = (await agency.data(page, {"id": workspace["id"], "after": first["pageInfo"]["endCursor"]}))["node"]
    assert rest["projects"] == {
        "nodes": [{"name": "Third", "isDefault": False}],
        "pageInfo": {"hasNextPage": False, "endCursor": rest["projects"]["pageInfo"]["endCursor"]},
    }
    refused = await agency.data(CREATE_KEY, {"partnerId": other_id})
    assert refused["createApiKey"] == {
        "keyId": None,
        "secret": None,
        "errors": [{"code": "NOT_FOUND", "field": "partnerId"}],
    }
