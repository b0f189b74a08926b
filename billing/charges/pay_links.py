"""Pay-now links: the address, e-mailed to the payer, of the page where a payment that waits for them is
completed on-session (a card charge the bank wants authenticated). The link names the payment by its
random reference and carries an HMAC of it made with the configured secret key, so it cannot be guessed
or changed into another payment's, and holds no secret of its own."""

from __future__ import annotations

import hashlib
import hmac

from billing.core import config
from billing.core.errors import BillingError, ErrorCode

PATH = "/pay"


def _key() -> bytes:
    first = next((k.strip() for k in config.current().secret_key.split(",") if k.strip()), "")
    if not first:
        raise BillingError(ErrorCode.GATEWAY_NOT_CONFIGURED, "pay-now links need WHITEBILL_SECRET_KEY")
    return hashlib.sha256(b"whitebill pay-now link\0" + first.encode()).digest()


def mac(reference: str) -> str:
    return hmac.new(_key(), reference.encode(), hashlib.sha256).hexdigest()[:32]


def link(reference: str) -> str:
    return f"{config.current().public_url.rstrip('/')}{PATH}/{reference}/{mac(reference)}"


def verify(reference: str, given: str) -> bool:
    return len(given) == 32 and hmac.compare_digest(mac(reference), given)
