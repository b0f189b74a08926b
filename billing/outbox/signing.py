"""How partner webhooks are signed: ``Whitebill-Signature: t=<unix time>,v1=<hex>``, where ``v1`` is the
HMAC-SHA256, keyed with the endpoint's secret, of ``"<t>."`` followed by the raw body. A partner checks it
as the README shows, and refuses a ``t`` more than 300 seconds away from its own clock."""

from __future__ import annotations

import hashlib
import hmac


def sign(secret: str, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"
