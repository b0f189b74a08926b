"""Password hashing with argon2id. Tests configure cheap parameters (``cheap_password_hash``)."""

from __future__ import annotations

from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from billing.core import config
from billing.core.errors import BillingError, ErrorCode

MIN_LENGTH = 8
MAX_LENGTH = 200


@cache
def _hashing(cheap: bool) -> tuple[PasswordHasher, str]:
    """The hasher, and a hash verified against when the user does not exist, so that "no such user"
    takes as long as "wrong password"."""
    hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1) if cheap else PasswordHasher()
    return hasher, hasher.hash("not a real password, only a timing decoy")


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
    hasher, _ = _hashing(config.current().cheap_password_hash)
    return hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Constant work whether or not there is a hash to check against."""
    hasher, dummy = _hashing(config.current().cheap_password_hash)
    try:
        return hasher.verify(password_hash or dummy, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
