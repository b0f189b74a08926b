"""Partner webhook payload versions: version 2 speaks the API's language (global ids, ISO 8601 times in UTC,
a version field); endpoints on version 1 keep the body their receivers were written for until their partner
moves them, and a resend repeats the exact body first signed."""

from __future__ import annotations

import ast
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from billing.core.ids import to_global_id
from billing.outbox import payloads
from billing.tenants import api_keys
from models.operations import WebhookDelivery, WebhookEndpoint
from schema.ids import from_global_id
from tests.factories import a_partner, a_workspace
from tests.graphql import GraphQLClient
from tests.test_partner_webhooks import drain, receiving
from whitebill.settings import load_settings
from whitebill.worker import Worker

ROOT = Path(__file__).resolve().parent.parent

PURCHASE = """mutation($id: ID!, $key: String!) { recordManualPurchase(input: {workspaceId: $id, unit: "POINTS",
quantity: "10", priceAmount: "9.90", priceCurrency: "BRL", idempotencyKey: $key}) {
payment { id } wallet { id } errors { code } } }"""
CREATE = """mutation($url: String!, $version: Int!) { createWebhookEndpoint(input: {url: $url,
payloadVersion: $version}) { endpoint { id payloadVersion } errors { code field } } }"""
SET_VERSION = """mutation($e: ID!, $v: Int!) { setWebhookPayloadVersion(input: {endpointId: $e, version: $v}) {
endpoint { id payloadVersion } errors { code field } } }"""


def an_event(**changes: object) -> dict[str, object]:
    event: dict[str, object] = {
        "id": 41,
        "event_type": "payment.succeeded",
        "created_at": "2026-12-04 10:00:00.250000+00:00",  # as SQLite gives a stored time back
        "partner_id": 7,
        "payload": {
            "payment_id": 12,
            "payer_key": "WORKSPACE:3",
            "amount": 990,
            "currency": "BRL",
            "purpose": "WALLET_CREDIT",
            "packages": [{"package_id": 5, "count": 2}],
            "deduction_id": 9,
            "was_done": True,
            "owner": "PLATFORM",
            "at": "2026-12-05T00:00:00+00:00",
        },
    }
    event.update(changes)
    return event


def test_version_2_gives_global_ids_iso_times_and_its_version() -> None:
    body = json.loads(payloads.body(an_event(), 2))
    assert body == {
        "id": "evt_41",
        "version": 2,
        "type": "payment.succeeded",
        "created_at": "2026-12-04T10:00:00.250000+00:00",
        "partner_id": to_global_id("Partner", 7),
        "data": {
            "payment_id": to_global_id("Payment", 12),
            "payer_key": to_global_id("Workspace", 3),
            "amount": 990,
            "currency": "BRL",
            "purpose": "WALLET_CREDIT",
            "packages": [{"package_id": to_global_id("CreditPackage", 5), "count": 2}],
            "deduction_id": 9,  # no API object: the number the deductions report shows
            "was_done": True,
            "owner": "PLATFORM",
            "at": "2026-12-05T00:00:00+00:00",
        },
    }


def test_version_2_times_are_utc_whatever_the_database_gave() -> None:
    for given in (
        datetime(2026, 12, 4, 7, 0, tzinfo=timezone(timedelta(hours=-3))),  # a datetime in another zone (PostgreSQL)
        "2026-12-04 10:00:00+00:00",  # text (SQLite)
        "2026-12-04 07:00:00-03:00",
        "2026-12-04 10:00:00",  # no zone: stored times are UTC
    ):
        created = json.loads(payloads.body(an_event(created_at=given), 2))["created_at"]
        assert datetime.fromisoformat(created) == datetime(2026, 12, 4, 10, tzinfo=UTC)
        assert created.startswith("2026-12-04T10:00:00") and created.endswith("+00:00"), created


def test_version_1_is_the_body_partners_had_before() -> None:
    body = json.loads(payloads.body(an_event(), 1))
    assert body == {
        "id": "evt_41",
        "type": "payment.succeeded",
        "created_at": "2026-12-04 10:00:00.250000+00:00",
        "partner_id": 7,
        "data": an_event()["payload"],
    }
    with pytest.raises(ValueError, match="payload version 3"):
        payloads.body(an_event(), 3)


def test_owner_keys_that_are_not_a_row_stay_as_they_are() -> None:
    for key in ("PLATFORM", "WORKSPACE:", "WORKSPACE:x", "WORKSPACE:١٢", "OTHER:3"):
        assert json.loads(payloads.body(an_event(payload={"payer_key": key}), 2))["data"]["payer_key"] == key


def _emitted_keys() -> set[str]:
    """Every key ending in _id in the payloads the domain emits: the dict literals passed to
    ``audit.emit`` or to a helper that emits (``_announce``), nested ones included."""
    keys: set[str] = set()
    for path in (ROOT / "billing").rglob("*.py"):
        for call in ast.walk(ast.parse(path.read_text())):
            if not isinstance(call, ast.Call):
                continue
            name = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")
            if name not in ("emit", "_announce"):
                continue
            for argument in [*call.args, *(k.value for k in call.keywords)]:
                for node in ast.walk(argument):
                    if isinstance(node, ast.Dict):
                        keys |= {
                            k.value for k in node.keys if isinstance(k, ast.Constant) and str(k.value).endswith("_id")
                        }
    return keys


def test_every_id_the_domain_emits_is_either_converted_or_named_as_kept() -> None:
    keys = _emitted_keys()
    assert {"payment_id", "workspace_id", "subscription_id", "endpoint_id"} <= keys  # the scan finds them
    assert keys - set(payloads.GLOBAL_TYPES) - payloads.KEPT_AS_NUMBERS == set()


@pytest.mark.usefixtures("database")
async def test_endpoints_receive_their_version_and_move_to_another_when_their_partner_says(server) -> None:
    partner = await a_partner()
    workspace = await a_workspace(partner)
    client = GraphQLClient(server.url, (await api_keys.create_key(partner_id=partner.id)).secret)
    worker = Worker(load_settings())
    with receiving() as (receiver, url):
        made = {}
        for version in (1, 2):
            answer = (await client.data(CREATE, {"url": f"{url}/ok?v={version}", "version": version}))[
                "createWebhookEndpoint"
            ]
            assert answer["errors"] == [] and answer["endpoint"]["payloadVersion"] == version
            made[version] = answer["endpoint"]["id"]
        bought = (await client.data(PURCHASE, {"id": to_global_id("Workspace", workspace.id), "key": "p-1"}))[
            "recordManualPurchase"
        ]
        assert bought["errors"] == []
        await drain(worker)
        secrets = {e.id: e for e in await WebhookEndpoint.filter(partner_id=partner.id)}
        by_version = {}
        for delivery in await WebhookDelivery.filter(partner_id=partner.id, event_type="receipt.issued"):
            by_version[secrets[delivery.endpoint_id].payload_version] = json.loads(delivery.body)
        old, new = by_version[1], by_version[2]
        # The same event, one id, in each endpoint's version.
        assert old["id"] == new["id"] and "version" not in old and new["version"] == 2
        assert old["partner_id"] == partner.id and new["partner_id"] == to_global_id("Partner", partner.id)
        assert new["data"]["payment_id"] == bought["payment"]["id"]  # the id the API gave for the payment
        assert to_global_id("Payment", old["data"]["payment_id"]) == new["data"]["payment_id"]
        assert new["data"]["payer_key"] == to_global_id("Workspace", workspace.id)
        assert from_global_id(new["data"]["document_id"])[0] == "Document"
        assert old["data"]["payer_key"] == f"WORKSPACE:{workspace.id}"
        created = datetime.fromisoformat(new["created_at"])
        assert "T" in new["created_at"] and created.utcoffset() is not None and created.utcoffset().total_seconds() == 0
        # No database id or owner key left anywhere in what version 2 endpoints got (every event type sent).
        every_v2 = [json.loads(d.body) for d in await WebhookDelivery.filter(partner_id=partner.id)]
        every_v2 = [b for b in every_v2 if b.get("version") == 2]
        assert {b["type"] for b in every_v2} >= {"workspace.created", "receipt.issued"}
        assert [leak for b in every_v2 for leak in _database_ids(b)] == []
        received = {json.loads(body).get("version", 1) for _, body, _ in receiver.received}
        assert received == {1, 2}

        # The partner moves its old endpoint to version 2: the next event arrives in it there.
        moved = (await client.data(SET_VERSION, {"e": made[1], "v": 2}))["setWebhookPayloadVersion"]
        assert moved == {"endpoint": {"id": made[1], "payloadVersion": 2}, "errors": []}
        again = (await client.data(PURCHASE, {"id": to_global_id("Workspace", workspace.id), "key": "p-2"}))[
            "recordManualPurchase"
        ]
        await drain(worker)
        bodies = [
            json.loads(d.body)
            for d in await WebhookDelivery.filter(partner_id=partner.id, event_type="receipt.issued").order_by("id")
        ]
        latest = [b for b in bodies if b["data"]["payment_id"] == again["payment"]["id"]]
        assert len(latest) == 2 and all(b["version"] == 2 for b in latest)

        # A resend of what the old endpoint got before the move repeats its exact body, signed as first sent.
        first = await WebhookDelivery.get(endpoint_id=from_global_id(made[1])[1], event_id=int(old["id"][4:]))
        resent = await client.data(
            "mutation($d: ID!) { resendWebhookDelivery(input: {deliveryId: $d}) { errors { code } } }",
            {"d": to_global_id("WebhookDelivery", first.id)},
        )
        assert resent["resendWebhookDelivery"]["errors"] == []
        await drain(worker)
        repeated = [body for event_id, body, _ in receiver.received if event_id == old["id"]]
        assert len(repeated) == 3 and repeated.count(first.body.encode()) == 2

    # Typed errors: a version that does not exist, another partner's endpoint.
    for version in (0, 3, -1):
        refused = (await client.data(SET_VERSION, {"e": made[2], "v": version}))["setWebhookPayloadVersion"]
        assert refused == {"endpoint": None, "errors": [{"code": "INVALID_INPUT", "field": "version"}]}
        refused = (await client.data(CREATE, {"url": "https://hooks.example/x", "version": version}))[
            "createWebhookEndpoint"
        ]
        assert refused["errors"] == [{"code": "INVALID_INPUT", "field": "payloadVersion"}]
    other = GraphQLClient(server.url, (await api_keys.create_key(partner_id=(await a_partner("Other")).id)).secret)
    refused = (await other.data(SET_VERSION, {"e": made[2], "v": 1}))["setWebhookPayloadVersion"]
    assert refused == {"endpoint": None, "errors": [{"code": "NOT_FOUND", "field": "endpointId"}]}
    assert (await WebhookEndpoint.get(id=from_global_id(made[2])[1])).payload_version == 2


def test_the_docs_example_body_has_the_shape_version_2_sends() -> None:
    text = (ROOT / "docs" / "guides" / "partner-webhooks.md").read_text()
    [example] = [json.loads(block) for block in text.split("```json\n")[1:] for block in [block.split("```")[0]]]
    sent = json.loads(payloads.body(an_event(event_type="receipt.issued"), 2))
    assert list(example) == list(sent) and example["version"] == 2
    assert datetime.fromisoformat(example["created_at"]).utcoffset() == timedelta(0)
    for key, value in {"partner_id": example["partner_id"], **example["data"]}.items():
        if key in payloads.GLOBAL_TYPES:
            assert from_global_id(value)[0] == payloads.GLOBAL_TYPES[key], key
        elif key in payloads.OWNER_KEYS:
            assert from_global_id(value)[0] in ("Workspace", "Partner", "Project"), key


def _database_ids(value: object, key: str = "") -> list[str]:
    """Where a body still names a row as the database does: a number under an ``*_id`` key (but the ones
    kept as numbers) or a ``KIND:12`` owner key."""
    if isinstance(value, dict):
        return [leak for k, v in value.items() for leak in _database_ids(v, k)]
    if isinstance(value, list):
        return [leak for item in value for leak in _database_ids(item, key)]
    if isinstance(value, int) and not isinstance(value, bool) and key.endswith("_id"):
        return [] if key in payloads.KEPT_AS_NUMBERS else [f"{key}={value}"]
    if isinstance(value, str) and re.fullmatch(r"[A-Z_]+:[0-9]+", value):
        return [f"{key}={value}"]
    return []
