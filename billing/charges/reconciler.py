"""The reconciler: the worker asks providers again about payments still open (pending, unknown,
or cut off mid-charge), backing off from 5 minutes after the charge's answer (1 minute for a charge cut
off mid-call) to a day (``charging.BACKOFF``); a boleto can take days to be paid.

Any number of workers may run it: a payment is claimed by moving its ``next_check_at`` forward
with a conditional update, so each check is taken by one worker, and a worker that dies holding
one only delays it by the lease.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from billing.charges import charging, gateway_configs
from billing.core import clock, sql
from models.payments import GatewayConfig, Payment

log = logging.getLogger("whitebill.reconciler")
LEASE = timedelta(minutes=10)
_DUE = (
    "SELECT id, next_check_at FROM payment WHERE next_check_at IS NOT NULL AND next_check_at <= $1 "
    "AND status IN ('CREATED', 'PENDING', 'UNKNOWN', 'REQUIRES_ACTION') ORDER BY next_check_at, id LIMIT $2"
)


async def _claim(payment_id: int, seen: object) -> bool:
    taken = await sql.execute(
        "UPDATE payment SET next_check_at = $1, check_attempts = check_attempts + 1 "
        "WHERE id = $2 AND next_check_at = $3",
        clock.now() + LEASE,
        payment_id,
        seen,
    )
    return taken == 1


async def check(payment: Payment) -> None:
    """Ask the payment's provider about it once and fold the answer in."""
    if payment.status not in charging.OPEN or payment.gateway_config_id is None:
        await sql.execute("UPDATE payment SET next_check_at = NULL WHERE id = $1", payment.id)
        return
    config = await GatewayConfig.get(id=payment.gateway_config_id)
    if config.provider == gateway_configs.MANUAL:
        await sql.execute("UPDATE payment SET next_check_at = NULL WHERE id = $1", payment.id)
        return
    await charging.resolve_unknown(payment, config, gateway_configs.gateway_for(config))
    await charging.schedule_check(payment)


async def run_due(*, limit: int = 20) -> int:
    """Check up to ``limit`` payments whose time has come; returns how many were checked."""
    handled = 0
    for row in await sql.fetch(_DUE, clock.now(), limit):
        if not await _claim(int(row["id"]), row["next_check_at"]):
            continue  # another worker took it
        handled += 1
        payment = await Payment.get(id=int(row["id"]))
        try:
            await check(payment)
        except Exception:
            log.exception("reconciling a payment failed", extra={"payment_id": payment.id})
    return handled
