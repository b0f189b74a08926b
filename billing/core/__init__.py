"""The ground every area stands on: money and its one rounding rule, the clock tests can move, periods and
proration, tenant scoping, idempotency keys, the audit log and outbox events, leased background work, realtime
announcements, plain SQL helpers, encrypted credentials."""
