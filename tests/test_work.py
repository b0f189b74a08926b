"""Background work: leased claims that many workers can share, back-off, the shared test clock, the worker."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from billing.core import audit, clock, work
from billing.outbox import notifications
from models.enums import IdempotencyStatus, WorkState
from models.operations import ClockSetting, IdempotencyRecord, Job, OutboxEvent
from whitebill.settings import Settings
from whitebill.worker import Worker

pytestmark = pytest.mark.usefixtures("database")

LEASE = work.DEFAULT_LEASE


async def a_due_job(kind: str = "test.noop", **payload: object) -> int:
    await work.schedule(kind, dict(payload))
    return (await Job.filter(kind=kind).order_by("-id").first()).id


async def test_scheduling_the_same_work_twice_queues_it_once() -> None:
    assert await work.schedule("renewal", {"subscription": 7}, dedupe_key="renewal:7:2025-07") is True
    assert await work.schedule("renewal", {"subscription": 7}, dedupe_key="renewal:7:2025-07") is False
    assert await Job.filter(kind="renewal").count() == 1
    # Without a key nothing is deduplicated.
    assert await work.schedule("renewal", {"subscription": 7}) is True
    assert await work.schedule("renewal", {"subscription": 7}) is True
    assert await Job.filter(kind="renewal").count() == 3


async def test_work_due_later_is_claimed_only_once_its_time_comes() -> None:
    await work.schedule("renewal", {}, run_at=clock.now() + timedelta(hours=1))
    assert await work.claim("job", "worker-a") == []
    await clock.advance(timedelta(minutes=59))
    assert await work.claim("job", "worker-a") == []
    await clock.advance(timedelta(minutes=2))
    [claimed] = await work.claim("job", "worker-a")
    assert claimed.attempts == 1 and claimed.row["kind"] == "renewal"


async def test_a_claimed_job_is_not_claimed_again_while_its_lease_runs() -> None:
    job_id = await a_due_job()
    [claimed] = await work.claim("job", "worker-a")
    assert claimed.id == job_id
    assert await work.claim("job", "worker-b") == []
    await clock.advance(LEASE - timedelta(seconds=1))
    assert await work.claim("job", "worker-b") == []


async def test_a_claim_takes_at_most_its_limit_oldest_first() -> None:
    ids = [await a_due_job() for _ in range(5)]
    claimed = await work.claim("job", "worker-a", limit=3)
    assert sorted(c.id for c in claimed) == ids[:3]


@pytest.mark.parametrize("claimers", [2, 5])
async def test_concurrent_workers_never_take_the_same_job(claimers: int) -> None:
    """50 due jobs, several workers claiming at once: every job goes to exactly one of them."""
    ids = {await a_due_job() for _ in range(50)}
    taken: dict[str, list[int]] = {f"worker-{n}": [] for n in range(claimers)}
    for _ in range(50):  # rounds until the queue is drained (a worker may come back with fewer than 10)
        rounds = await asyncio.gather(*(work.claim("job", owner, limit=10) for owner in taken))
        if not any(rounds):
            break
        for owner, claimed in zip(taken, rounds, strict=True):
            assert len(claimed) <= 10
            taken[owner] += [c.id for c in claimed]
    every_claim = [job_id for claimed in taken.values() for job_id in claimed]
    assert len(every_claim) == len(set(every_claim)) == 50
    assert set(every_claim) == ids
    for owner, claimed in taken.items():
        assert await Job.filter(id__in=claimed, lease_owner=owner, attempts=1).count() == len(claimed)


async def test_a_job_whose_worker_died_is_taken_again_after_its_lease() -> None:
    job_id = await a_due_job()
    [first] = await work.claim("job", "worker-a")
    await clock.advance(LEASE + timedelta(seconds=1))
    [second] = await work.claim("job", "worker-b")
    assert second.id == first.id == job_id
    assert second.attempts == 2
    # The first worker woke up: it no longer holds the lease, so its result is not recorded.
    assert await work.finish("job", job_id, "worker-a", {"by": "a"}) is False
    job = await Job.get(id=job_id)
    assert job.state is WorkState.PENDING and job.lease_owner == "worker-b"
    assert await work.finish("job", job_id, "worker-b", {"by": "b"}) is True
    job = await Job.get(id=job_id)
    assert job.state is WorkState.DONE and job.result == {"by": "b"} and job.lease_owner is None
    assert job.finished_at is not None


async def test_a_finished_job_is_never_claimed_again() -> None:
    job_id = await a_due_job()
    await work.claim("job", "worker-a")
    assert await work.finish("job", job_id, "worker-a")
    await clock.advance(LEASE * 10)
    assert await work.claim("job", "worker-b") == []


async def test_a_failing_job_backs_off_exponentially_then_dies() -> None:
    """Base 30 s, max 3 attempts: retried after 30 s, then 60 s, then DEAD."""
    job_id = await a_due_job()
    base = timedelta(seconds=30)
    delays = []
    for attempt in (1, 2):
        [claimed] = await work.claim("job", "worker-a")
        assert claimed.attempts == attempt
        failed_at = clock.now()
        await work.retry_later(
            "job", job_id, "worker-a", f"boom {attempt}", attempts=claimed.attempts, max_attempts=3, base_delay=base
        )
        job = await Job.get(id=job_id)
        assert job.state is WorkState.PENDING and job.last_error == f"boom {attempt}" and job.lease_owner is None
        delays.append(job.run_at - failed_at)
        # Not before its time...
        await clock.advance(delays[-1] - timedelta(seconds=2))
        assert await work.claim("job", "worker-a") == []
        # ...but right after it.
        await clock.advance(timedelta(seconds=3))
    assert [round(d.total_seconds()) for d in delays] == [30, 60]

    [claimed] = await work.claim("job", "worker-a")
    assert claimed.attempts == 3
    await work.retry_later(
        "job", job_id, "worker-a", "boom 3", attempts=claimed.attempts, max_attempts=3, base_delay=base
    )
    job = await Job.get(id=job_id)
    assert job.state is WorkState.DEAD and job.last_error == "boom 3"
    await clock.advance(timedelta(days=1))
    assert await work.claim("job", "worker-a") == []


async def test_a_worker_that_lost_its_lease_cannot_reschedule_the_job() -> None:
    job_id = await a_due_job()
    await work.claim("job", "worker-a")
    await clock.advance(LEASE + timedelta(seconds=1))
    await work.claim("job", "worker-b")
    await work.retry_later("job", job_id, "worker-a", "late failure", attempts=1, max_attempts=3)
    job = await Job.get(id=job_id)
    assert job.lease_owner == "worker-b" and job.last_error is None


async def test_only_known_queues_can_be_claimed() -> None:
    with pytest.raises(ValueError):
        await work.claim("payment", "worker-a")


# ---------------------------------------------------------------- the shared test clock


async def test_a_moved_clock_is_seen_by_another_process_after_refresh() -> None:
    before = clock.now()
    moved = await clock.advance(timedelta(days=3, minutes=5))
    assert moved - before >= timedelta(days=3, minutes=5)
    setting = await ClockSetting.get(name="default")
    assert setting.offset_microseconds == int(timedelta(days=3, minutes=5).total_seconds()) * 1_000_000

    clock._offset = timedelta(0)  # another process, which has not read the shared offset yet
    assert clock.now() - before < timedelta(days=1)
    await clock.refresh()
    assert clock.now() - before >= timedelta(days=3, minutes=5)


async def test_advancing_twice_adds_up_and_reset_forgets_it() -> None:
    await clock.advance(timedelta(hours=1))
    await clock.advance(timedelta(hours=2))
    assert (await ClockSetting.get(name="default")).offset_microseconds == 3 * 3600 * 1_000_000
    await clock.reset()
    assert not await ClockSetting.exists(name="default")
    await clock.refresh()
    assert clock._offset == timedelta(0)


# ---------------------------------------------------------------- the worker


async def test_one_worker_tick_delivers_due_notifications_and_runs_due_jobs() -> None:
    """A due outbox event and the daily idempotency purge: one tick handles both, and the purge
    books tomorrow's run."""
    now = clock.now()
    await audit.emit("payment.succeeded", None, {"payment_id": 1})
    await IdempotencyRecord.create(
        scope="PARTNER:1",
        operation="purchase.manual",
        key="old",
        request_hash="x",
        status=IdempotencyStatus.COMPLETED,
        expires_at=now - timedelta(days=1),
    )
    await IdempotencyRecord.create(
        scope="PARTNER:1",
        operation="purchase.manual",
        key="fresh",
        request_hash="x",
        status=IdempotencyStatus.COMPLETED,
        expires_at=now + timedelta(days=29),
    )
    await work.schedule("idempotency.purge", {}, dedupe_key=f"idempotency.purge:{now:%Y-%m-%d}")

    worker = Worker(Settings(test_clock=True), name="test")
    assert await worker.tick() == 2

    event = await OutboxEvent.get(event_type="payment.succeeded")
    assert event.state is WorkState.DONE and event.finished_at is not None
    purge = await Job.get(dedupe_key=f"idempotency.purge:{now:%Y-%m-%d}")
    assert purge.state is WorkState.DONE and purge.result == {"deleted": 1}
    assert [r.key for r in await IdempotencyRecord.all()] == ["fresh"]

    [tomorrow] = await Job.filter(kind="idempotency.purge", state=WorkState.PENDING)
    assert timedelta(hours=23) < tomorrow.run_at - now <= timedelta(days=1, minutes=1)
    assert tomorrow.dedupe_key == f"idempotency.purge:{tomorrow.run_at:%Y-%m-%d}"

    # Nothing else is due today; tomorrow the purge runs again and books the day after.
    assert await worker.tick() == 0
    await clock.advance(timedelta(days=1, minutes=1))
    assert await worker.tick() == 1
    assert await Job.filter(kind="idempotency.purge", state=WorkState.DONE).count() == 2
    assert await Job.filter(kind="idempotency.purge", state=WorkState.PENDING).count() == 1


async def test_the_worker_follows_the_clock_moved_by_another_process() -> None:
    await work.schedule("idempotency.purge", {}, run_at=clock.now() + timedelta(hours=2))
    await clock.advance(timedelta(hours=3))
    clock._offset = timedelta(0)  # the worker process has not seen the move yet
    assert await Worker(Settings(test_clock=True)).tick() == 1


async def test_a_job_nobody_handles_is_retried_later_with_its_error() -> None:
    job_id = await a_due_job("no.such.kind")
    worker = Worker(Settings(test_clock=True))
    assert await worker.tick() == 1
    job = await Job.get(id=job_id)
    assert job.state is WorkState.PENDING and job.attempts == 1
    assert "no handler" in (job.last_error or "")
    assert job.run_at > clock.now()
    assert await worker.tick() == 0


async def test_a_notification_that_cannot_be_delivered_is_retried_later(monkeypatch: pytest.MonkeyPatch) -> None:
    await audit.emit("payment.succeeded", None, {"payment_id": 1})

    async def endpoint_down(event: dict) -> None:
        raise ConnectionError("partner endpoint is down")

    monkeypatch.setattr(notifications, "deliver", endpoint_down)
    worker = Worker(Settings(test_clock=True))
    assert await worker.tick() == 1
    event = await OutboxEvent.get(event_type="payment.succeeded")
    assert event.state is WorkState.PENDING and event.attempts == 1
    assert "partner endpoint is down" in (event.last_error or "")
    assert await worker.tick() == 0  # backing off

    monkeypatch.undo()
    await clock.advance(timedelta(minutes=1))
    assert await worker.tick() == 1
    event = await OutboxEvent.get(id=event.id)
    assert event.state is WorkState.DONE and event.attempts == 2
