"""HTTP endpoint for provider webhooks: POST /webhooks/{provider}/{gateway config id}."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from billing.charges import gateway_configs
from billing.core.errors import BillingError, ErrorCode
from billing.sales import provider_webhooks
from billing.sales.provider_webhooks import NoticeResult
from gateways import registry
from gateways.base import WebhookRejected
from models.payments import GatewayConfig
from whitebill.boundary import refusal

log = logging.getLogger("whitebill.webhooks")
MAX_ID = 2**63 - 1


async def handle_provider_webhook(request: Request) -> Response:
    provider = request.path_params["provider"]
    config_id = request.path_params["config_id"]
    if config_id > MAX_ID or provider not in registry.available():
        return refusal(404, ErrorCode.NOT_FOUND, "unknown gateway")
    config = await GatewayConfig.get_or_none(id=config_id, provider=provider)
    if config is None:
        return refusal(404, ErrorCode.NOT_FOUND, "unknown gateway")
    answer = await _answer(request, config)
    try:  # counted after the answer is decided; a count that cannot be written must not change it
        await provider_webhooks.record_answer(config, answer.status_code)
    except Exception:
        log.exception("could not count a webhook answer", extra={"config_id": config.id})
    return answer


async def _answer(request: Request, config: GatewayConfig) -> Response:
    """200 for every verified event, whatever it is about (a provider's queue waits behind any other
    answer); 401 for an unverified one; 503 when we could not process it (the provider retries)."""
    body = await request.body()  # at most the server's body limit (whitebill.boundary)
    try:
        gateway = gateway_configs.gateway_for(config)
    except BillingError:
        log.error("webhook for a configuration whose credentials cannot be opened", extra={"config_id": config.id})
        return JSONResponse({"error": "gateway unavailable"}, status_code=503)
    try:
        notice = await gateway.parse_webhook(body, {k.lower(): v for k, v in request.headers.items()})
    except WebhookRejected as rejected:
        # A forged or malformed webhook changes nothing; do not echo why in detail.
        log.warning("webhook rejected", extra={"provider": config.provider, "reason": str(rejected)})
        return refusal(401, ErrorCode.UNAUTHENTICATED, "rejected")
    try:
        result = await provider_webhooks.process_notice(config, notice)
    except Exception:  # ours (the database is down...): nothing was recorded, the provider delivers it again
        log.exception("processing a verified webhook failed", extra={"config_id": config.id})
        return JSONResponse({"error": "not processed, retry later"}, status_code=503)
    return JSONResponse(
        {
            "received": True,
            "duplicate": result is NoticeResult.DUPLICATE,
            "ignored": result is NoticeResult.IGNORED,
        }
    )
