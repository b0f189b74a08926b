"""Limits on login and password-reset attempts, per e-mail and per client address.

Backed by the `limits` library; its storage is in memory by default (one process) and can be any
storage `limits` supports (e.g. redis://127.0.0.1:6379) through the configured ``rate_limit_storage``
(WHITEBILL_RATE_LIMIT_STORAGE), so that several API processes share the counts.
"""

from __future__ import annotations

import hashlib
import ipaddress
from functools import cache

from limits import RateLimitItem, parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from billing.core import config
from billing.core.errors import BillingError, ErrorCode

_parsed = cache(parse)


def per_email(action: str) -> RateLimitItem:
    """Attempts allowed per e-mail for ``action`` ("login" or a reset)."""
    limits = config.current()
    return _parsed(limits.login_limit_per_email if action == "login" else limits.reset_limit_per_email)


def per_address(action: str) -> RateLimitItem:
    """Attempts allowed per client address for ``action`` ("login" or a reset)."""
    limits = config.current()
    return _parsed(limits.login_limit_per_address if action == "login" else limits.reset_limit_per_address)


@cache
def _limiter_on(storage: str) -> MovingWindowRateLimiter:
    return MovingWindowRateLimiter(storage_from_string(storage))


def _limiter() -> MovingWindowRateLimiter:
    return _limiter_on(config.current().rate_limit_storage)


def _key(value: str) -> str:
    # Keys never hold an e-mail or address in clear (storage may be shared or dumped).
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def canonical_address(address: str) -> str:
    """One client, one allowance: an IPv4 address however it is written (also as IPv4-mapped IPv6),
    and an IPv6 client by its /64, the block one subscriber holds (it can pick any address in it)."""
    try:
        parsed = ipaddress.ip_address(address.strip().split("%", 1)[0])
    except ValueError:
        return address.strip().lower()
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


async def hit(action: str, *, account: str, address: str | None) -> None:
    """Count one attempt; RATE_LIMITED if either the account or the address has used its allowance.

    ``account`` is the caller's canonical key for who is targeted (the resolved brand and the canonical
    e-mail): any spelling of the same account must arrive here as the same string."""
    limits: list[tuple[RateLimitItem, str]] = [(per_email(action), f"email:{_key(account)}")]
    if address:
        limits.append((per_address(action), f"addr:{_key(canonical_address(address))}"))
    limiter = _limiter()
    for item, key in limits:
        if not await limiter.hit(item, action, key):
            raise BillingError(ErrorCode.RATE_LIMITED, "too many attempts: try again later")


async def reset() -> None:
    """Forget every count (tests)."""
    await _limiter().storage.reset()
