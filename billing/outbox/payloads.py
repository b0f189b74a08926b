"""What a partner's endpoint receives for an outbox event: the JSON body, in the payload version the
endpoint asked for (``WebhookEndpoint.payload_version``).

- **Version 1** (endpoints made before 0.2.0 keep it until their partner moves them): the event as the
  domain wrote it, with database ids (``"partner_id": 7``) and ``created_at`` as the database gave it.
- **Version 2** (the default for new endpoints): the API's conventions. Every id is the global id the API
  uses (``"workspace_id": "V29ya3NwYWNlOjEy"``, ``"partner_id"`` too), an owner or payer key
  (``"WORKSPACE:12"``) is its owner's global id, every time is ISO 8601 in UTC (``2026-12-04T10:00:00+00:00``),
  and the body says ``"version": 2``. Numbers that name no API object stay numbers: ``deduction_id`` (the
  row of the deductions CSV reports), ``lot_id``, ``grant_id`` and ``period_id``.

Amounts are the same in both: integer minor units beside their ``currency`` (or ``unit``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from billing.core.ids import to_global_id

VERSIONS = (1, 2)
LATEST = 2
# Keys whose number is a row the API shows, and the API type that row is.
GLOBAL_TYPES = {
    "partner_id": "Partner",
    "workspace_id": "Workspace",
    "project_id": "Project",
    "wallet_id": "Wallet",
    "payment_id": "Payment",
    "refund_id": "Refund",
    "subscription_id": "Subscription",
    "plan_id": "Plan",
    "fallback_plan_id": "Plan",
    "add_on_id": "AddOn",
    "package_id": "CreditPackage",
    "card_id": "SavedPaymentMethod",
    "document_id": "Document",
    "gateway_config_id": "GatewayConfig",
    "endpoint_id": "WebhookEndpoint",
    "coupon_id": "Coupon",
    "tax_rate_id": "TaxRate",
}
# Keys whose number names no API object: kept as numbers in every version.
KEPT_AS_NUMBERS = frozenset({"deduction_id", "lot_id", "grant_id", "period_id"})
# Keys holding an owner key ("WORKSPACE:12", "PARTNER:7", "PROJECT:3", or "PLATFORM").
OWNER_KEYS = frozenset({"payer_key", "payer", "owner"})
_OWNER_TYPES = {"WORKSPACE": "Workspace", "PARTNER": "Partner", "PROJECT": "Project"}


def body(event: dict[str, Any], version: int) -> str:
    """The exact JSON sent (and signed) for ``event``, an outbox row, to an endpoint on ``version``."""
    if version == 1:
        return _version_1(event)
    if version != 2:
        raise ValueError(f"payload version {version} is one of {VERSIONS}")
    partner_id = event["partner_id"]
    return json.dumps(
        {
            "id": f"evt_{event['id']}",
            "version": 2,
            "type": event["event_type"],
            "created_at": _iso(event.get("created_at")),
            "partner_id": None if partner_id is None else to_global_id("Partner", int(partner_id)),
            "data": _converted(event["payload"]),
        },
        separators=(",", ":"),
        default=str,
    )


def _version_1(event: dict[str, Any]) -> str:
    created = event.get("created_at")
    return json.dumps(
        {
            "id": f"evt_{event['id']}",
            "type": event["event_type"],
            "created_at": created.isoformat() if isinstance(created, datetime) else created,
            "partner_id": event["partner_id"],
            "data": event["payload"],
        },
        separators=(",", ":"),
        default=str,
    )


def _iso(value: Any) -> Any:
    """A stored time (a datetime from PostgreSQL, text from SQLite) as ISO 8601 in UTC."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).isoformat()
    return value


def _converted(value: Any, key: str | None = None) -> Any:
    """``value`` with the API's ids, under ``key`` (the key it sits under, if any)."""
    if isinstance(value, dict):
        return {k: _converted(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_converted(item, key) for item in value]
    if key in GLOBAL_TYPES and isinstance(value, int) and not isinstance(value, bool):
        return to_global_id(GLOBAL_TYPES[key], value)
    if key in OWNER_KEYS and isinstance(value, str):
        return _owner(value)
    if isinstance(value, datetime):
        return _iso(value)
    return value


def _owner(key: str) -> str:
    """``"WORKSPACE:12"`` as the workspace's global id; ``"PLATFORM"`` (or anything else) as it is."""
    kind, _, number = key.partition(":")
    if kind in _OWNER_TYPES and number.isascii() and number.isdigit():
        return to_global_id(_OWNER_TYPES[kind], int(number))
    return key
