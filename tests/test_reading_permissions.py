"""What a list needs, node(id:) needs too: a caller that may not list a partner's team, its API keys,
its audit log or its webhook endpoints gets null for one of them by id, not the row. A client
(workspace) reads its partner's public settings but not how the partner chases unpaid clients. A
platform key that does not manage partners cannot make a partner's first (all-powerful) user."""

from __future__ import annotations

import pytest

from billing.core.errors import BillingError, ErrorCode
from billing.core.tenancy import Viewer
from billing.tenants import api_keys, identity
from models.enums import Permission
from models.operations import AuditLog, WebhookEndpoint
from models.tenancy import PartnerUser
from schema.ids import to_global_id
from tests.factories import PLATFORM, a_partner, a_workspace, partner_viewer
from tests.graphql import GraphQLClient
from tests.test_identity import PASSWORD, a_partner_admin, login_over_api, mailed_token

pytestmark = pytest.mark.usefixtures("database")

NODE = "query($id: ID!) { node(id: $id) { id } }"


async def test_node_needs_what_the_list_needs(server) -> None:
    partner, admin = await a_partner_admin()
    key = await api_keys.create_key(partner_id=partner.id, name="full")
    endpoint = await WebhookEndpoint.create(partner_id=partner.id, url="https://hooks.example/x", secret_encrypted=b"")
    entry = await AuditLog.filter(partner_id=partner.id).first()
    assert entry is not None
    ids = {
        "PartnerUser": to_global_id("PartnerUser", admin.id),
        "ApiKey": to_global_id("ApiKey", key.key.id),
        "WebhookEndpoint": to_global_id("WebhookEndpoint", endpoint.id),
        "AuditEntry": to_global_id("AuditEntry", entry.id),
    }
    full = GraphQLClient(server.url, key.secret)
    for name, global_id in ids.items():
        assert (await full.data(NODE, {"id": global_id}))["node"] == {"id": global_id}, name

    narrow_key = await api_keys.create_key(partner_id=partner.id, permissions=frozenset({Permission.MANAGE_WORKSPACES}))
    narrow = GraphQLClient(server.url, narrow_key.secret)
    for name, global_id in ids.items():
        assert (await narrow.data(NODE, {"id": global_id}))["node"] is None, name
    for query in ("{ partnerUsers { nodes { id } } }", "{ apiKeys { nodes { id } } }", "{ auditLog { nodes { id } } }"):
        refused = await narrow.execute(query)
        assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN", query


async def test_a_client_does_not_read_its_partners_dunning_policy(server) -> None:
    partner = await a_partner()
    workspace = await a_workspace(partner)
    await identity.create_workspace_user(partner_viewer(partner), workspace_id=workspace.id, email="c@client.example")
    await identity.reset_password(token=await mailed_token("c@client.example"), new_password=PASSWORD)
    client = await login_over_api(GraphQLClient(server.url), partner.slug, "c@client.example", PASSWORD)
    agency = GraphQLClient(server.url, (await api_keys.create_key(partner_id=partner.id)).secret)
    query = "query($id: ID!) { node(id: $id) { ... on Partner { dunningPolicy { retryDays } } } }"
    variables = {"id": to_global_id("Partner", partner.id)}
    assert (await agency.data(query, variables))["node"]["dunningPolicy"]["retryDays"]
    seen = (await client.data(query, variables))["node"]
    assert seen == {"dunningPolicy": None}


async def test_only_the_platform_managing_partners_makes_a_partners_first_admin() -> None:
    partner = await a_partner()
    product = Viewer(kind="PLATFORM", actor="key:product", permissions=frozenset({Permission.REPORT_USAGE}))
    with pytest.raises(BillingError) as refused:
        await identity.invite_partner_user(product, partner_id=partner.id, email="me@attacker.example")
    assert refused.value.code is ErrorCode.FORBIDDEN
    assert not await PartnerUser.exists(partner_id=partner.id)
    made = await identity.invite_partner_user(PLATFORM, partner_id=partner.id, email="owner@agency.example")
    assert made.user.is_admin
