"""Gateway credentials at rest: encrypted with a configured key, never shown again.

The configured ``secret_key`` (``WHITEBILL_SECRET_KEY``) holds one or more Fernet keys separated by
commas (make one with ``whitebill secret-key``). The first encrypts; all of them decrypt, so a key
is rotated by putting the new one first, re-saving the configurations, and then dropping the old
one. Without a key, credentials cannot be stored at all: there is no unencrypted fallback.

The API shows only a hint: the last four characters of the main secret.
"""

from __future__ import annotations

import json

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from billing.core import config
from billing.core.errors import BillingError, ErrorCode

ENV = "WHITEBILL_SECRET_KEY"  # named in messages: where the operator sets the key
HINT_CHARS = 4


def new_key() -> str:
    return Fernet.generate_key().decode()


def _cipher() -> MultiFernet:
    raw = config.current().secret_key
    keys = [k.strip() for k in raw.split(",") if k.strip()]
    if not keys:
        raise BillingError(
            ErrorCode.GATEWAY_NOT_CONFIGURED, f"set {ENV} to store gateway credentials (they are encrypted with it)"
        )
    try:
        return MultiFernet([Fernet(k) for k in keys])
    except ValueError as exc:
        raise BillingError(ErrorCode.GATEWAY_NOT_CONFIGURED, f"{ENV} is not a valid key list") from exc


def encrypt(credentials: dict[str, str]) -> bytes:
    return _cipher().encrypt(json.dumps(credentials, sort_keys=True).encode())


def decrypt(blob: bytes | None) -> dict[str, str]:
    if not blob:
        return {}
    try:
        data = json.loads(_cipher().decrypt(bytes(blob)))
    except InvalidToken as exc:
        raise BillingError(
            ErrorCode.GATEWAY_NOT_CONFIGURED, f"stored credentials do not open with {ENV}: was the key changed?"
        ) from exc
    return {str(k): str(v) for k, v in data.items()}


def hint(credentials: dict[str, str]) -> str | None:
    """The last characters of the API key (or of the first secret), for recognising it later."""
    secret = credentials.get("api_key") or next(iter(credentials.values()), "")
    if len(secret) < 2 * HINT_CHARS:
        return "…" if secret else None  # too short to show any part of it
    return "…" + secret[-HINT_CHARS:]
