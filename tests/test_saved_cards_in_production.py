"""Kept cards as production providers treat them, end to end: GraphQL on a real server, the real Asaas
SDK against the fake Asaas (in its production-like modes), the worker in this process.

- The payer's address reaches the provider: given by the partner's frontend (checked) or seen by the
  server, kept with the payment and with the card it keeps, sent as Asaas's ``remoteIp``.
- An Asaas account without card tokenization: the checkout succeeds, no card is kept, the payer and the
  partner are told, and the next renewal sends the payer a link to pay.
"""

from __future__ import annotations

import uuid

import pytest

from billing.tenants import api_keys
from models.payments import Payment
from schema.ids import from_global_id, to_global_id
from tests.factories import a_partner, a_workspace
from tests.graphql import GraphQLClient
from tests.shop import CHECKOUT, CONFIGURE, CREATE_PLAN

pytestmark = pytest.mark.usefixtures("database")


async def a_shop(server, provider: str = "manual", methods: tuple[str, ...] = ("MANUAL",), **credentials: str) -> dict:
    partner = await a_partner()
    client = GraphQLClient(server.url, (await api_keys.create_key(partner_id=partner.id)).secret)
    made = await client.data(CONFIGURE, {"provider": provider, "methods": list(methods), **credentials})
    assert made["configureGateway"]["errors"] == [], made
    plan = (await client.data(CREATE_PLAN, {"name": "Pro", "amount": "99.90"}))["createPlan"]["plan"]["id"]
    workspace = await a_workspace(partner, email="dono@padaria.example")
    return {
        "partner": partner,
        "client": client,
        "plan": plan,
        "workspace": workspace,
        "ws": to_global_id("Workspace", workspace.id),
        "config": made["configureGateway"]["gatewayConfig"],
    }


CHECKOUT_WITH_IP = CHECKOUT.replace("$taxId: String)", "$taxId: String, $payerIp: String)").replace(
    "taxId: $taxId})", "taxId: $taxId, payerIp: $payerIp})"
)


async def checkout_from(shop: dict, method: str, payer_ip: str | None, **extra) -> dict:
    variables = {"ws": shop["ws"], "item": {"planId": shop["plan"]}, "method": method, "key": str(uuid.uuid4())}
    made = await shop["client"].data(CHECKOUT_WITH_IP, {**variables, "payerIp": payer_ip, **extra})
    return made["checkout"]


@pytest.mark.parametrize(
    "given",
    ["10.1.2.3", "192.168.0.10", "127.0.0.1", "::1", "169.254.1.1", " 8.8.8.8", "8.8.8.8 ", "8.8.8", "", "a" * 300],
)
async def test_a_payer_address_that_is_not_a_public_one_written_plainly_is_refused(server, given: str) -> None:
    shop = await a_shop(server)
    answer = await checkout_from(shop, "MANUAL", given)
    assert answer["payment"] is None
    assert [(e["code"], e["field"]) for e in answer["errors"]] == [("INVALID_INPUT", "payerIp")]
    assert await Payment.filter(payer_key=f"WORKSPACE:{shop['workspace'].id}").count() == 0


async def test_the_payer_address_is_kept_as_given_or_as_the_server_saw_the_request(server) -> None:
    shop = await a_shop(server)
    given = await checkout_from(shop, "MANUAL", "2001:4860:4860::8888")
    assert given["errors"] == [], given
    seen = await checkout_from(shop, "MANUAL", None)
    kept = [(await Payment.get(id=from_global_id(answer["payment"]["id"])[1])).remote_ip for answer in (given, seen)]
    assert kept == ["2001:4860:4860::8888", "127.0.0.1"]  # the test server is reached over loopback
