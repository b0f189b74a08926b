"""Short-lived links to a document's PDF: ``/documents/{id}/{language}/{expires}/{mac}.pdf``.

The API hands one to a caller who may read the document; whoever holds it may download that PDF, in that
language, until it expires (``LIFETIME``), and nothing else: the link carries an HMAC of all four parts made
with the configured secret key, so no part can be changed, and it holds no secret of its own."""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta

from billing.core import clock, config
from billing.core.errors import BillingError, ErrorCode

PATH = "/documents"
LIFETIME = timedelta(minutes=10)


def _key() -> bytes:
    first = next((k.strip() for k in config.current().secret_key.split(",") if k.strip()), "")
    if not first:
        raise BillingError(ErrorCode.GATEWAY_NOT_CONFIGURED, "document links need WHITEBILL_SECRET_KEY")
    return hashlib.sha256(b"whitebill document link\0" + first.encode()).digest()


def _mac(document_id: int, language: str, expires: int) -> str:
    message = f"{document_id}\0{language}\0{expires}".encode()
    return hmac.new(_key(), message, hashlib.sha256).hexdigest()[:40]


def link(document_id: int, language: str) -> str:
    expires = int((clock.now() + LIFETIME).timestamp())
    base = config.current().public_url.rstrip("/")
    return f"{base}{PATH}/{document_id}/{language}/{expires}/{_mac(document_id, language, expires)}.pdf"


def verify(document_id: int, language: str, expires: int, given: str) -> bool:
    """Whether a link's parts are as signed and it has not expired."""
    if len(given) != 40 or expires < clock.now().timestamp():
        return False
    return hmac.compare_digest(_mac(document_id, language, expires), given)
