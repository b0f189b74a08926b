"""Password hashing with argon2id. Tests set WHITEBILL_CHEAP_PASSWORD_HASH for fast parameters."""

from __future__ import annotations

import os

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from billing.core.errors import BillingError, ErrorCode

MIN_LENGTH = 8
MAX_LENGTH = 200

_cheap = os.environ.get("WHITEBILL_CHEAP_PASSWORD_HASH", "").lower() in {"1", "true", "yes"}
_hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1) if _cheap else PasswordHasher()
# Verified against when the user does not exist, so that "no such user" takes as long as "wrong password".
_DUMMY_HASH = _hasher.hash("not a real password, only a timing decoy")


def check_new_password(password: str, field: str = "password") -> str:
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise BillingError(
            ErrorCode.INVALID_INPUT, f"a password has {MIN_LENGTH} to {MAX_LENGTH} characters", field=field
        )
    if "\x00" in password or any(0xD800 <= ord(c) <= 0xDFFF for c in password):
        raise BillingError(
            ErrorCode.INVALID_INPUT, "the password contains characters that are not allowed", field=field
        )
    return password


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Constant work whether or not there is a hash to check against."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
