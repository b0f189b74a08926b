"""The one clock. Tests move it; in test-clock mode the offset lives in the database so that
worker processes see the same time as the test that moved it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from models.operations import ClockSetting

_CLOCK_NAME = "default"
_offset = timedelta(0)
_shared = False  # read the offset from the database (test-clock mode)


def now() -> datetime:
    """The current time in UTC, moved by the test offset if any."""
    return datetime.now(UTC) + _offset


def use_shared_offset(enabled: bool) -> None:
    global _shared
    _shared = enabled


async def refresh() -> None:
    """Load the shared offset (call at the start of each request or worker tick in test-clock mode)."""
    global _offset
    if not _shared:
        return
    row = await ClockSetting.get_or_none(name=_CLOCK_NAME)
    _offset = timedelta(microseconds=row.offset_microseconds) if row else timedelta(0)


async def advance(delta: timedelta) -> datetime:
    """Move the clock forward (tests and the test-clock API only)."""
    global _offset
    _offset += delta
    micro = (_offset.days * 86_400 + _offset.seconds) * 1_000_000 + _offset.microseconds
    if _shared:
        updated = await ClockSetting.filter(name=_CLOCK_NAME).update(offset_microseconds=micro)
        if not updated:
            await ClockSetting.create(name=_CLOCK_NAME, offset_microseconds=micro)
    return now()


async def reset() -> None:
    global _offset
    _offset = timedelta(0)
    if _shared:
        await ClockSetting.filter(name=_CLOCK_NAME).delete()
