"""Limits on login and password-reset attempts, per e-mail and per client address.

Backed by the `limits` library; its storage is in memory by default (one process) and can be any
storage `limits` supports (e.g. redis://127.0.0.1:6379) through WHITEBILL_RATE_LIMIT_STORAGE, so that
several API processes share the counts.
"""

from __future__ import annotations

import hashlib
import os

from limits import RateLimitItem, parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from billing.core.errors import BillingError, ErrorCode

LOGIN_PER_EMAIL = parse(os.environ.get("WHITEBILL_LOGIN_LIMIT_PER_EMAIL", "10/minute"))
LOGIN_PER_ADDRESS = parse(os.environ.get("WHITEBILL_LOGIN_LIMIT_PER_ADDRESS", "60/minute"))
RESET_PER_EMAIL = parse(os.environ.get("WHITEBILL_RESET_LIMIT_PER_EMAIL", "5/hour"))
RESET_PER_ADDRESS = parse(os.environ.get("WHITEBILL_RESET_LIMIT_PER_ADDRESS", "30/hour"))

_limiter = MovingWindowRateLimiter(
    storage_from_string(os.environ.get("WHITEBILL_RATE_LIMIT_STORAGE", "async+memory://"))
)


def _key(value: str) -> str:
    # Keys never hold an e-mail or address in clear (storage may be shared or dumped).
    return hashlib.sha256(value.lower().encode()).hexdigest()[:32]


async def hit(action: str, *, email: str, address: str | None) -> None:
    """Count one attempt; RATE_LIMITED if either the e-mail or the address has used its allowance."""
    limits: list[tuple[RateLimitItem, str]] = [
        (LOGIN_PER_EMAIL if action == "login" else RESET_PER_EMAIL, f"email:{_key(email)}"),
    ]
    if address:
        limits.append((LOGIN_PER_ADDRESS if action == "login" else RESET_PER_ADDRESS, f"addr:{_key(address)}"))
    for item, key in limits:
        if not await _limiter.hit(item, action, key):
            raise BillingError(ErrorCode.RATE_LIMITED, "too many attempts: try again later")


async def reset() -> None:
    """Forget every count (tests)."""
    await _limiter.storage.reset()
