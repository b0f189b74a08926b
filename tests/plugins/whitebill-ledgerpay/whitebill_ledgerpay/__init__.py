"""LedgerPay: a made-up provider packaged the way a third party would ship a whitebill gateway.

It imports only whitebill's published contract (``gateways.base``). Its "provider" keeps payments
in a JSON file named by the ``LEDGERPAY_STATE`` environment variable, so several processes (the
server, the worker, the test) see one provider. Cards are tokens: ``tok_ok`` pays, ``tok_decline``
is declined, ``tok_pending`` waits for the payer (the test then calls :func:`settle`). Webhooks are
signed with HMAC-SHA256 of the raw body under the webhook secret.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gateways.base import (
    Capabilities,
    ChargeRequest,
    ChargeResult,
    GatewayConfig,
    Outcome,
    Payer,
    RefundResult,
    SavedMethod,
    WebhookNotice,
    WebhookRejected,
)


@contextmanager
def _state() -> Iterator[dict[str, Any]]:
    path = Path(os.environ.get("LEDGERPAY_STATE", "ledgerpay.json"))
    path.touch(exist_ok=True)
    with path.open("r+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        raw = handle.read()
        state = json.loads(raw) if raw else {"payments": {}, "customers": {}}
        yield state
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(state))


def sign(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def settle(provider_ref: str) -> None:
    """The payer completes a pending payment at the provider."""
    with _state() as state:
        state["payments"][provider_ref]["status"] = "paid"


def payments_made() -> list[dict[str, Any]]:
    with _state() as state:
        return list(state["payments"].values())


class LedgerPayGateway:
    name = "ledgerpay"

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config

    def capabilities(self) -> Capabilities:
        return Capabilities(methods=frozenset({"CARD"}), supports_refunds=True, supports_saved_methods=True)

    async def ensure_customer(self, payer: Payer) -> str | None:
        with _state() as state:
            return state["customers"].setdefault(payer.key, f"cus_{uuid.uuid4().hex[:10]}")

    def _result(self, row: dict[str, Any]) -> ChargeResult:
        saved = SavedMethod(row["card"], "CARD", "ledgercard", "0000") if row["status"] == "paid" else None
        outcome = {"paid": Outcome.SUCCEEDED, "declined": Outcome.DECLINED, "pending": Outcome.PENDING}[row["status"]]
        reason = "card_declined" if outcome is Outcome.DECLINED else None
        action = (
            {"kind": "URL", "url": f"https://ledgerpay.example/pay/{row['id']}"} if row["status"] == "pending" else None
        )
        return ChargeResult(
            outcome, provider_ref=row["id"], decline_reason=reason, payer_action=action, saved_method=saved
        )

    async def charge(self, request: ChargeRequest) -> ChargeResult:
        card = request.saved_method_ref or request.method_token
        if not card:
            return ChargeResult(Outcome.NOT_ATTEMPTED, decline_reason="no card")
        with _state() as state:
            existing = next((p for p in state["payments"].values() if p["reference"] == request.idempotency_key), None)
            if existing is None:  # the provider dedupes on our idempotency key
                existing = {
                    "id": f"lp_{uuid.uuid4().hex[:12]}",
                    "reference": request.idempotency_key,
                    "amount": request.amount,
                    "status": {"tok_decline": "declined", "tok_pending": "pending"}.get(card, "paid"),
                    "card": card,
                    "refunded": 0,
                }
                state["payments"][existing["id"]] = existing
        return self._result(existing)

    async def get_payment(self, provider_ref: str) -> ChargeResult:
        with _state() as state:
            return self._result(state["payments"][provider_ref])

    async def find_payment(self, reference: str, payer: Payer) -> ChargeResult | None:
        with _state() as state:
            found = next((p for p in state["payments"].values() if p["reference"] == reference), None)
        return self._result(found) if found else None

    async def refund(self, provider_ref: str, amount: int, currency: str, idempotency_key: str) -> RefundResult:
        with _state() as state:
            row = state["payments"][provider_ref]
            row["refunded"] = min(row["amount"], row["refunded"] + amount)
        return RefundResult(Outcome.SUCCEEDED, provider_ref=f"{provider_ref}_r")

    async def parse_webhook(self, body: bytes, headers: dict[str, str]) -> WebhookNotice:
        secret = self.config.credentials.get("webhook_secret", "")
        if not secret or not hmac.compare_digest(headers.get("ledgerpay-signature", ""), sign(body, secret)):
            raise WebhookRejected("bad signature")
        event = json.loads(body)
        return WebhookNotice(
            event_id=event["id"],
            event_type=event["type"],
            provider_ref=event["payment"],
            outcome=Outcome.SUCCEEDED if event["type"] == "payment.paid" else None,
            refunded_amount=event.get("refunded"),
        )
