"""Property-based tests: random sequences of ledger operations keep every invariant, and money
arithmetic agrees with a slow exact reference."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from tortoise import Tortoise
from tortoise.backends.base import executor

from billing.accounts import ledger, opening, wallets
from billing.accounts.ledger import Leg
from billing.core import money, sql
from billing.core.errors import BillingError, ErrorCode
from models.enums import ExternalAccount, LedgerCause
from models.wallets import Wallet
from tests.conftest import Backend, _wipe
from tests.factories import a_partner, a_workspace, partner_viewer
from whitebill import db

# ---------------------------------------------------------------- money against a slow reference


def reference_round(value: Fraction, digits: int) -> int:
    """Half-even rounding of an exact fraction to ``digits`` decimals, done with integers only."""
    scaled = value * 10**digits
    floor = scaled.numerator // scaled.denominator
    rest = scaled - floor
    if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and floor % 2 == 1):
        return floor + 1
    return floor


@given(
    st.decimals(min_value=Decimal("-1e9"), max_value=Decimal("1e9"), allow_nan=False, places=8),
    st.sampled_from(["USD", "BRL", "JPY", "KWD"]),
)
def test_rounding_once_half_even_matches_the_exact_reference(value: Decimal, currency: str) -> None:
    assert money.round_to_minor(value, currency) == reference_round(Fraction(value), money.exponent(currency))


@given(
    st.integers(min_value=-money.MAX_AMOUNT, max_value=money.MAX_AMOUNT),
    st.sampled_from(["USD", "JPY", "KWD", "POINTS"]),
)
def test_minor_units_survive_a_round_trip_through_text(amount: int, unit: str) -> None:
    assert money.to_minor(money.format_minor(amount, unit), unit) == amount


@given(st.text(max_size=40))
def test_parsing_any_text_either_succeeds_exactly_or_raises_a_typed_error(text: str) -> None:
    try:
        minor = money.to_minor(text, "USD")
    except BillingError as error:
        assert error.code is ErrorCode.INVALID_AMOUNT
    else:
        assert Fraction(Decimal(text.strip())) * 100 == minor


# ---------------------------------------------------------------- the ledger as a state machine

UNIT = "POINTS"


class LedgerMachine(RuleBasedStateMachine):
    """Grants, spends, transfers, credit limits and idempotent replays in any order. After every
    step each balance equals its entries and the model, and none is below -credit_limit."""

    runner: asyncio.Runner
    backend: Backend
    wallets_made = Bundle("wallets")

    def __init__(self) -> None:
        super().__init__()
        self.expected: dict[int, int] = {}
        self.limits: dict[int, int] = {}
        self.keys: dict[str, int] = {}  # idempotency key -> the grant amount it was first used with
        self.run = self.runner.run

    @initialize()
    def fresh_tenant(self) -> None:
        async def setup() -> None:
            await _wipe(self.backend)
            self.partner = await a_partner()
            self.viewer = partner_viewer(self.partner)

        self.run(setup())

    @rule(target=wallets_made)
    def open_wallet(self) -> int:
        async def make() -> int:
            workspace = await a_workspace(self.partner)
            return (await opening.workspace_wallet(workspace, UNIT)).id

        wallet_id = self.run(make())
        self.expected[wallet_id] = 0
        self.limits[wallet_id] = 0
        return wallet_id

    @rule(wallet=wallets_made, amount=st.integers(1, 10_000))
    def grant(self, wallet: int, amount: int) -> None:
        self.run(ledger.post([Leg(amount, UNIT, ExternalAccount.ISSUANCE, wallet)], cause=LedgerCause.GRANT))
        self.expected[wallet] += amount

    @rule(wallet=wallets_made, amount=st.integers(1, 10_000))
    def spend(self, wallet: int, amount: int) -> None:
        allowed = self.expected[wallet] - amount >= -self.limits[wallet]
        try:
            self.run(wallets.spend(wallet, amount, cause=LedgerCause.USAGE))
        except BillingError as error:
            assert not allowed and error.code is ErrorCode.INSUFFICIENT_BALANCE
        else:
            assert allowed
            self.expected[wallet] -= amount

    @rule(source=wallets_made, destination=wallets_made, amount=st.integers(1, 10_000))
    def transfer(self, source: int, destination: int, amount: int) -> None:
        if source == destination:
            return
        allowed = self.expected[source] - amount >= -self.limits[source]
        try:
            self.run(ledger.post([Leg(amount, UNIT, source, destination)], cause=LedgerCause.TRANSFER))
        except BillingError as error:
            assert not allowed and error.code is ErrorCode.INSUFFICIENT_BALANCE
        else:
            assert allowed
            self.expected[source] -= amount
            self.expected[destination] += amount

    @rule(wallet=wallets_made, limit=st.integers(0, 5_000))
    def set_credit_limit(self, wallet: int, limit: int) -> None:
        allowed = self.expected[wallet] >= -limit
        try:
            self.run(wallets.set_credit_limit(self.viewer, wallet_id=wallet, credit_limit=limit))
        except BillingError as error:
            assert not allowed and error.code is ErrorCode.INVALID_INPUT and error.field == "creditLimit"
        else:
            assert allowed
            self.limits[wallet] = limit

    @precondition(lambda self: self.expected)
    @rule(key=st.sampled_from(["k1", "k2", "k3"]), amount=st.integers(1, 500), data=st.data())
    def keyed_grant(self, key: str, amount: int, data: st.DataObject) -> None:
        """The same key again grants nothing more; with another amount it is refused."""
        wallet = data.draw(st.sampled_from(sorted(self.expected)))

        async def grant() -> None:
            workspace_id = (await Wallet.get(id=wallet)).workspace_id
            await wallets.adjust_workspace_balance(
                self.viewer, workspace_id=workspace_id, unit=UNIT, amount=amount, note="", idempotency_key=key
            )

        first = key not in self.keys
        try:
            self.run(grant())
        except BillingError as error:
            assert not first and error.code is ErrorCode.IDEMPOTENCY_KEY_REUSED
            return
        if first:
            self.keys[key] = wallet
            self.expected[wallet] += amount

    @invariant()
    def balances_equal_entries_and_the_model(self) -> None:
        if not self.expected:
            return
        rows = self.run(
            sql.fetch(
                "SELECT w.id, w.balance, w.credit_limit, COALESCE(SUM(e.amount), 0) AS total FROM wallet w"
                " LEFT JOIN ledger_entry e ON e.wallet_id = w.id GROUP BY w.id, w.balance, w.credit_limit"
            )
        )
        for row in rows:
            assert row["balance"] == int(row["total"]) == self.expected[row["id"]]
            assert row["balance"] >= -row["credit_limit"]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
def test_random_ledger_programs_keep_every_invariant(backend: Backend) -> None:
    # A runner of its own: Hypothesis drives the steps synchronously, each step runs to completion.
    with asyncio.Runner() as runner:
        executor.EXECUTOR_CACHE.clear()
        runner.run(Tortoise.init(config=db.tortoise_config(backend.url), _enable_global_fallback=True))
        try:
            LedgerMachine.runner = runner
            LedgerMachine.backend = backend
            run_state_machine_as_test(
                LedgerMachine,
                settings=settings(
                    max_examples=25,
                    stateful_step_count=20,
                    deadline=None,
                    derandomize=True,
                    database=None,
                    suppress_health_check=list(HealthCheck),
                ),
            )
        finally:
            runner.run(_wipe(backend))
            runner.run(Tortoise.close_connections())
