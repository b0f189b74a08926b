"""The manual gateway: no provider. The partner records that it collected the money its own way."""

from __future__ import annotations

from gateways.base import (
    Capabilities,
    ChargeRequest,
    ChargeResult,
    DisputeStatus,
    GatewayConfig,
    Outcome,
    Payer,
    RefundResult,
    RefundState,
    WebhookNotice,
    WebhookRejected,
)


class ManualGateway:
    name = "manual"

    def __init__(self, config: GatewayConfig | None = None) -> None:
        self.config = config or GatewayConfig()

    def capabilities(self) -> Capabilities:
        return Capabilities(methods=frozenset({"MANUAL"}), supports_refunds=True)

    async def ensure_customer(self, payer: Payer) -> str | None:
        return None

    async def charge(self, request: ChargeRequest) -> ChargeResult:
        # Recording a manual payment is the partner saying it has been paid.
        return ChargeResult(Outcome.SUCCEEDED, provider_ref=f"manual_{request.idempotency_key}")

    async def get_payment(self, provider_ref: str) -> ChargeResult:
        return ChargeResult(Outcome.SUCCEEDED, provider_ref=provider_ref)

    async def find_payment(self, reference: str, payer: Payer) -> ChargeResult | None:
        return None  # nothing is ever sent anywhere

    async def refund(self, provider_ref: str, amount: int, currency: str, idempotency_key: str) -> RefundResult:
        return RefundResult(Outcome.SUCCEEDED, provider_ref=f"{provider_ref}_refund_{idempotency_key}")

    async def refunds_of(self, provider_ref: str) -> list[RefundState] | None:
        return None  # a manual refund is done when the partner records it

    async def dispute_of(self, provider_ref: str) -> DisputeStatus | None:
        return None

    async def parse_webhook(self, body: bytes, headers: dict[str, str]) -> WebhookNotice:
        raise WebhookRejected("the manual gateway has no webhooks")
