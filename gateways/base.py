"""The gateway contract. Adapters turn every provider answer into one of five outcomes.

Our payment exists before the provider is called, and its random reference is passed as the
provider's idempotency key, so retrying a charge after a timeout can never charge twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable


class Outcome(StrEnum):
    SUCCEEDED = "SUCCEEDED"
    PENDING = "PENDING"  # the payer must act (boleto, pix, hosted invoice) or the provider is still working
    DECLINED = "DECLINED"
    NOT_ATTEMPTED = "NOT_ATTEMPTED"  # certainly not charged: safe to retry
    UNKNOWN = "UNKNOWN"  # may or may not have been charged: reconcile later


@dataclass(frozen=True, slots=True)
class Capabilities:
    methods: frozenset[str]  # CARD, BOLETO, PIX, MANUAL
    currencies: frozenset[str] | None = None  # None: any
    supports_refunds: bool = False
    supports_saved_methods: bool = False


@dataclass(frozen=True, slots=True)
class Payer:
    key: str  # "WORKSPACE:12"
    name: str
    email: str | None = None
    tax_id: str | None = None
    provider_customer_ref: str | None = None


@dataclass(frozen=True, slots=True)
class ChargeRequest:
    payment_id: int
    idempotency_key: str  # the payment's random reference: the provider must dedupe on it
    amount: int  # minor units
    currency: str
    method: str
    payer: Payer
    description: str = ""
    saved_method_ref: str | None = None
    off_session: bool = False


@dataclass(frozen=True, slots=True)
class ChargeResult:
    outcome: Outcome
    provider_ref: str | None = None
    decline_reason: str | None = None
    # What the payer needs to pay: {"url": ...}, {"boleto_line": ..., "url": ...}, {"pix_payload": ..., ...}
    payer_action: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class RefundResult:
    outcome: Outcome
    provider_ref: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class WebhookNotice:
    """A verified provider event, reduced to what changed about which payment."""

    event_id: str
    event_type: str
    provider_ref: str | None
    reference: str | None = None  # our payment reference, where the provider echoes it back
    outcome: Outcome | None = None
    refunded_amount: int | None = None
    disputed: bool = False
    raw: dict[str, Any] = field(default_factory=dict)


class WebhookRejected(Exception):
    """The webhook failed verification: it must change nothing."""


@runtime_checkable
class Gateway(Protocol):
    """What whitebill needs from a payment provider."""

    name: str

    def capabilities(self) -> Capabilities: ...

    async def ensure_customer(self, payer: Payer) -> str | None: ...

    async def charge(self, request: ChargeRequest) -> ChargeResult: ...

    async def get_payment(self, provider_ref: str) -> ChargeResult: ...

    async def refund(self, provider_ref: str, amount: int, currency: str, idempotency_key: str) -> RefundResult: ...

    async def parse_webhook(self, body: bytes, headers: dict[str, str]) -> WebhookNotice: ...


GatewayFactory = Any  # a callable (config: dict) -> Gateway, registered under the entry point group
