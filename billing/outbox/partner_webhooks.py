"""Partner webhooks: outbox events delivered as signed JSON to the partner's endpoints.

Each outbox event becomes one delivery per matching endpoint (unique per endpoint and event, so a
re-run fans out nothing twice). Workers claim deliveries with leases (SKIP LOCKED on PostgreSQL): a
killed worker's delivery is taken again when its lease runs out, so delivery is at least once, and
receivers dedupe on the stable event id. A failed attempt is retried with exponential back-off (30 s,
1 min, 2 min...) until the endpoint's ``max_attempts``, after which the delivery is DEAD (it can be
resent by hand).

The signature, so a partner can check a request in a few lines::

    t, v1 = (part.split("=", 1)[1] for part in request.headers["Whitebill-Signature"].split(","))
    expected = hmac.new(secret.encode(), f"{t}.".encode() + raw_body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, v1) and abs(time.time() - int(t)) < 300
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

import httpx
from tortoise.queryset import QuerySet

from billing.core import audit, clock, credentials, observe, outbound, sql, tenancy, work
from billing.core.errors import BillingError, ErrorCode
from billing.core.tenancy import Viewer
from billing.outbox import payloads
from billing.outbox.signing import sign
from models.enums import Permission, ViewerKind, WorkState
from models.operations import OutboxEvent, WebhookDelivery, WebhookEndpoint

log = logging.getLogger("whitebill.partner_webhooks")
SIGNATURE_HEADER = "Whitebill-Signature"
TIMEOUT = httpx.Timeout(10.0)
DEADLINE_SECONDS = 10.0  # a whole request, connect to last byte
MAX_ENDPOINTS = 20
CONCURRENCY = 8  # requests in flight per worker
# Deliveries one worker claims at a time: sent CONCURRENCY at once, each within DEADLINE_SECONDS, a batch ends
# well inside its lease, so a live worker never loses a claim to another one (which would send it twice).
BATCH = CONCURRENCY * 4
assert BATCH / CONCURRENCY * DEADLINE_SECONDS <= work.DEFAULT_LEASE.total_seconds() * 2 / 3  # a third to spare
TEST_EVENT = "webhook.test"
# Events for whitebill's own senders, never for a partner's endpoint: a password e-mail carries its token.
INTERNAL = ("email.",)


async def create_endpoint(
    viewer: Viewer,
    *,
    partner_id: int,
    url: str,
    events: list[str],
    max_attempts: int = 8,
    payload_version: int = payloads.LATEST,
) -> tuple[WebhookEndpoint, str]:
    """Add an endpoint; returns it with its signing secret, shown this once."""
    viewer.require(Permission.MANAGE_BILLING)
    if viewer.kind is ViewerKind.WORKSPACE:
        raise BillingError(ErrorCode.FORBIDDEN, "webhooks are the partner's")
    partner = await tenancy.get_scoped(tenancy.partners(viewer), partner_id, "partner")
    if not 1 <= max_attempts <= 20:
        raise BillingError(ErrorCode.INVALID_INPUT, "between 1 and 20 attempts", field="maxAttempts")
    _check_version(payload_version, "payloadVersion")
    if await WebhookEndpoint.filter(partner_id=partner.id).count() >= MAX_ENDPOINTS:
        raise BillingError(ErrorCode.INVALID_INPUT, f"at most {MAX_ENDPOINTS} endpoints", field="url")
    cleaned = sorted({e.strip() for e in events if e.strip()})
    if any(len(e) > 64 for e in cleaned):
        raise BillingError(ErrorCode.INVALID_INPUT, "an event type has at most 64 characters", field="events")
    secret = "whsec_" + secrets.token_urlsafe(32)
    endpoint = await WebhookEndpoint.create(
        partner_id=partner.id,
        url=await outbound.check_url(url, field="url"),
        secret_encrypted=credentials.encrypt({"secret": secret}),
        secret_hint=credentials.hint({"secret": secret}),
        events=cleaned,
        max_attempts=max_attempts,
        payload_version=payload_version,
    )
    await audit.record(
        actor=viewer.actor,
        action="webhook_endpoint.create",
        target_type="WebhookEndpoint",
        target_id=endpoint.id,
        partner_id=partner.id,
        after={"url": endpoint.url, "events": cleaned, "payload_version": payload_version},
    )
    return endpoint, secret


async def _endpoint_of(viewer: Viewer, endpoint_id: int) -> WebhookEndpoint:
    """One of the caller's partner's endpoints; another's, or none, is not found (field endpointId)."""
    return await tenancy.get_scoped(
        tenancy.partner_owned(WebhookEndpoint.all(), viewer), endpoint_id, "webhook endpoint", field="endpointId"
    )


def _check_version(version: int, field: str) -> None:
    if version not in payloads.VERSIONS:
        versions = " or ".join(str(v) for v in payloads.VERSIONS)
        raise BillingError(ErrorCode.INVALID_INPUT, f"a payload version is {versions}", field=field)


async def set_payload_version(viewer: Viewer, *, endpoint_id: int, version: int) -> WebhookEndpoint:
    """Move an endpoint to another payload version (``billing.outbox.payloads``): events fanned out from
    now on are written in it; deliveries already queued, and their resends, keep the body they were
    signed with."""
    viewer.require(Permission.MANAGE_BILLING)
    endpoint = await _endpoint_of(viewer, endpoint_id)
    _check_version(version, "version")
    if endpoint.payload_version != version:
        before = endpoint.payload_version
        endpoint.payload_version = version
        await endpoint.save(update_fields=["payload_version"])
        await audit.record(
            actor=viewer.actor,
            action="webhook_endpoint.payload_version",
            target_type="WebhookEndpoint",
            target_id=endpoint.id,
            partner_id=endpoint.partner_id,
            before={"payload_version": before},
            after={"payload_version": version},
        )
    return endpoint


def endpoints_of(viewer: Viewer, partner_id: int) -> QuerySet[WebhookEndpoint]:
    """A partner's endpoints, as ``viewer`` may list them: none without MANAGE_BILLING, none for the
    partner's clients (an unpermitted caller sees an empty list, not an error)."""
    endpoints = tenancy.partner_owned(WebhookEndpoint.filter(partner_id=partner_id), viewer)
    if Permission.MANAGE_BILLING not in viewer.permissions:
        return endpoints.filter(id=None)
    return endpoints


async def fan_out(event: dict[str, Any], endpoints: list[WebhookEndpoint] | None = None) -> int:
    """Queue an outbox event for every endpoint of its partner that wants it; returns how many.
    ``endpoints``: the partner's enabled endpoints, when the caller has them already."""
    if event.get("partner_id") is None or str(event["event_type"]).startswith(INTERNAL):
        return 0
    if endpoints is None:
        endpoints = await WebhookEndpoint.filter(partner_id=event["partner_id"], enabled=True)
    only = (event.get("payload") or {}).get("endpoint_id") if event["event_type"] == TEST_EVENT else None
    if only is not None:
        wanted = [e for e in endpoints if e.id == only]
    else:
        wanted = [e for e in endpoints if not e.events or event["event_type"] in e.events]
    if not wanted:
        return 0
    bodies: dict[int, str] = {}  # by payload version
    queued = 0
    for endpoint in wanted:
        if endpoint.payload_version not in bodies:
            bodies[endpoint.payload_version] = payloads.body(event, endpoint.payload_version)
        queued += await sql.execute(
            "INSERT INTO webhook_delivery (created_at, state, run_at, attempts, endpoint_id, partner_id, event_id,"
            " event_type, body) VALUES ($1, $2, $1, 0, $3, $4, $5, $6, $7)"
            " ON CONFLICT (endpoint_id, event_id) DO NOTHING",
            clock.now(),
            WorkState.PENDING.value,
            endpoint.id,
            endpoint.partner_id,
            event["id"],
            event["event_type"],
            bodies[endpoint.payload_version],
        )
    return queued


_DONE = (
    "UPDATE webhook_delivery SET state = $1, finished_at = $2, lease_owner = NULL, lease_until = NULL, "
    "last_status = $3 WHERE id = $4 AND lease_owner = $5"
)


class Sender:
    """One HTTP client per worker; endpoints and their opened secrets kept for a few seconds."""

    CACHE_SECONDS = 10.0

    def __init__(self) -> None:
        # Endpoints are the partners' choice: every connection goes to a checked public address.
        self.http = outbound.client(timeout=TIMEOUT, limits=httpx.Limits(max_connections=CONCURRENCY))
        self._endpoints: dict[int, tuple[float, WebhookEndpoint | None, str]] = {}
        self._slots = asyncio.Semaphore(CONCURRENCY)

    async def _endpoint(self, endpoint_id: int) -> tuple[WebhookEndpoint | None, str]:
        now = time.monotonic()
        cached = self._endpoints.get(endpoint_id)
        if cached is None or now - cached[0] > self.CACHE_SECONDS:
            endpoint = await WebhookEndpoint.get_or_none(id=endpoint_id)
            secret = credentials.decrypt(endpoint.secret_encrypted)["secret"] if endpoint else ""
            cached = (now, endpoint, secret)
            self._endpoints[endpoint_id] = cached
        return cached[1], cached[2]

    async def send(self, owner: str, claimed: work.Claimed) -> bool:
        row = claimed.row
        endpoint, secret = await self._endpoint(int(row["endpoint_id"]))
        if endpoint is None or not endpoint.enabled:
            if await work.finish("webhook_delivery", claimed.id, owner):
                observe.webhook_attempt("dropped")
            return False
        body = str(row["body"]).encode()
        headers = {
            "content-type": "application/json",
            SIGNATURE_HEADER: sign(secret, body, int(clock.now().timestamp())),
            "Whitebill-Event-Id": f"evt_{row['event_id']}",
            "Whitebill-Event-Type": str(row["event_type"]),
        }
        status: int | None = None
        async with self._slots:
            # The claim is renewed right before sending: a worker slowed past its lease (a starved CPU, a
            # long pause) finds that another worker has taken the delivery since, and leaves it to that one
            # instead of sending it a second time; renewed, nobody else takes it while it is sent.
            if not await work.renew("webhook_delivery", claimed.id, owner):
                return False
            try:
                async with asyncio.timeout(DEADLINE_SECONDS):
                    answer = await self.http.post(endpoint.url, content=body, headers=headers)
                status = answer.status_code
            except httpx.HTTPError as exc:
                # A refused address was never connected to: the partner learns that, not how its port answers.
                error = outbound.REFUSED if outbound.was_refused(exc) else f"{type(exc).__name__}"
            except TimeoutError:
                error = f"no answer within {DEADLINE_SECONDS:g} s"
            else:
                error = f"HTTP {status}"
        if status is not None and 200 <= status < 300:
            if await sql.execute(_DONE, WorkState.DONE.value, clock.now(), status, claimed.id, owner) == 1:
                observe.webhook_attempt("delivered")
            else:  # the lease ran out while the receiver answered: another worker holds it now
                log.warning("delivery %s answered after its lease ran out", claimed.id)
            return True
        await sql.execute("UPDATE webhook_delivery SET last_status = $1 WHERE id = $2", status, claimed.id)
        state = await work.retry_later(
            "webhook_delivery",
            claimed.id,
            owner,
            error,
            attempts=claimed.attempts,
            max_attempts=endpoint.max_attempts,
        )
        if state is not None:  # None: another worker holds it now, and reports what it does
            observe.webhook_attempt("dead" if state is WorkState.DEAD else "failed")
        return False

    async def aclose(self) -> None:
        await self.http.aclose()


async def resend(viewer: Viewer, *, delivery_id: int) -> WebhookDelivery:
    """Deliver once more, now (a DEAD delivery, or one the partner's receiver lost)."""
    viewer.require(Permission.MANAGE_BILLING)
    delivery = await tenancy.get_scoped(
        tenancy.partner_owned(WebhookDelivery.all(), viewer), delivery_id, "webhook delivery", field="deliveryId"
    )
    await sql.execute(
        "UPDATE webhook_delivery SET state = $1, run_at = $2, attempts = 0, lease_owner = NULL, lease_until = NULL,"
        " finished_at = NULL WHERE id = $3",
        WorkState.PENDING.value,
        clock.now(),
        delivery.id,
    )
    await delivery.refresh_from_db()
    return delivery


async def send_test_event(viewer: Viewer, *, endpoint_id: int) -> OutboxEvent:
    viewer.require(Permission.MANAGE_BILLING)
    endpoint = await _endpoint_of(viewer, endpoint_id)
    await audit.emit(TEST_EVENT, endpoint.partner_id, {"endpoint_id": endpoint.id, "message": "hello from whitebill"})
    event = await OutboxEvent.filter(partner_id=endpoint.partner_id, event_type=TEST_EVENT).order_by("-id").first()
    assert event is not None
    return event
