"""The ledger core: balances equal their entries, nothing goes below -credit_limit, concurrency is safe."""

from __future__ import annotations

import asyncio

import pytest
from tortoise.exceptions import IntegrityError, OperationalError

from billing.accounts import ledger, opening, wallets
from billing.accounts.ledger import CausedBy, Leg
from billing.core import realtime, sql
from billing.core.errors import BillingError, ErrorCode
from billing.core.money import MAX_AMOUNT, MAX_BALANCE
from models.enums import ExternalAccount, LedgerCause, OwnerKind
from models.tenancy import Partner
from models.wallets import LedgerEntry, Posting, Wallet
from tests.factories import a_partner, a_workspace, partner_viewer

pytestmark = pytest.mark.usefixtures("database")


async def entries_sum(wallet_id: int) -> int:
    rows = await sql.fetch("SELECT COALESCE(SUM(amount), 0) AS total FROM ledger_entry WHERE wallet_id = $1", wallet_id)
    return int(rows[0]["total"])


async def balance(wallet_id: int) -> int:
    return (await Wallet.get(id=wallet_id)).balance


async def funded_wallet(amount: int, unit: str = "POINTS") -> Wallet:
    workspace = await a_workspace(await a_partner())
    wallet = await opening.workspace_wallet(workspace, unit)
    if amount:
        await ledger.post([Leg(amount, unit, ExternalAccount.ISSUANCE, wallet.id)], cause=LedgerCause.GRANT)
    return wallet


async def test_grant_then_spend_keeps_balance_equal_to_entries() -> None:
    wallet = await funded_wallet(500)
    new_balance = await wallets.spend(wallet.id, 200, cause=LedgerCause.USAGE, note="add-on")
    assert new_balance == 300
    assert await balance(wallet.id) == 300 == await entries_sum(wallet.id)
    entries = await LedgerEntry.filter(wallet_id=wallet.id).order_by("id")
    assert [(e.amount, e.balance_after) for e in entries] == [(500, 500), (-200, 300)]


async def test_a_spend_beyond_the_balance_is_refused_and_writes_nothing() -> None:
    wallet = await funded_wallet(100)
    postings_before = await Posting.all().count()
    with pytest.raises(BillingError) as refused:
        await wallets.spend(wallet.id, 101, cause=LedgerCause.USAGE)
    assert refused.value.code is ErrorCode.INSUFFICIENT_BALANCE
    assert await balance(wallet.id) == 100 == await entries_sum(wallet.id)
    assert await Posting.all().count() == postings_before


async def test_the_credit_limit_allows_an_overdraft_down_to_minus_the_limit() -> None:
    wallet = await funded_wallet(10)
    await Wallet.filter(id=wallet.id).update(credit_limit=50)
    assert await wallets.spend(wallet.id, 60, cause=LedgerCause.USAGE) == -50
    with pytest.raises(BillingError) as refused:
        await wallets.spend(wallet.id, 1, cause=LedgerCause.USAGE)
    assert refused.value.code is ErrorCode.INSUFFICIENT_BALANCE
    assert await entries_sum(wallet.id) == -50


async def test_a_posting_with_several_legs_is_all_or_nothing() -> None:
    """A usage event charges the project's credit and the partner's balance at once."""
    rich = await funded_wallet(1000, "USD")
    poor = await funded_wallet(5, "USD")
    with pytest.raises(BillingError) as refused:
        await ledger.post(
            [
                Leg(100, "USD", rich.id, ExternalAccount.PARTNER_REVENUE),
                Leg(10, "USD", poor.id, ExternalAccount.PLATFORM_REVENUE),
            ],
            cause=LedgerCause.USAGE,
            caused_by=CausedBy("UsageEvent", "evt-1"),
        )
    assert refused.value.code is ErrorCode.INSUFFICIENT_BALANCE  # the poor leg, not a malformed posting
    assert await balance(rich.id) == 1000 == await entries_sum(rich.id)
    assert await balance(poor.id) == 5 == await entries_sum(poor.id)

    result = await ledger.post(
        [
            Leg(100, "USD", rich.id, ExternalAccount.PARTNER_REVENUE),
            Leg(5, "USD", poor.id, ExternalAccount.PLATFORM_REVENUE),
        ],
        cause=LedgerCause.USAGE,
    )
    assert result.balance_of(rich.id) == 900 and result.balance_of(poor.id) == 0
    assert len(await LedgerEntry.filter(posting_id=result.posting_id)) == 2


async def test_a_transfer_writes_both_sides_in_one_posting() -> None:
    pool = await funded_wallet(9000, "MESSAGE_CREDITS")
    client = await funded_wallet(0, "MESSAGE_CREDITS")
    result = await ledger.post([Leg(8000, "MESSAGE_CREDITS", pool.id, client.id)], cause=LedgerCause.TRANSFER)
    assert (result.balance_of(pool.id), result.balance_of(client.id)) == (1000, 8000)
    pool_entry = await LedgerEntry.get(posting_id=result.posting_id, wallet_id=pool.id)
    assert pool_entry.counter_wallet_id == client.id and pool_entry.amount == -8000


async def test_units_cannot_be_mixed() -> None:
    points = await funded_wallet(100, "POINTS")
    credits = await funded_wallet(100, "MESSAGE_CREDITS")
    with pytest.raises(BillingError) as refused:
        await ledger.post([Leg(10, "POINTS", points.id, credits.id)], cause=LedgerCause.TRANSFER)
    assert refused.value.code is ErrorCode.UNIT_MISMATCH
    assert await balance(points.id) == 100 and await balance(credits.id) == 100


@pytest.mark.parametrize("amount", [0, -5, 10**16])
async def test_absurd_amounts_are_refused(amount: int) -> None:
    wallet = await funded_wallet(100)
    with pytest.raises(BillingError) as refused:
        await ledger.post([Leg(amount, "POINTS", ExternalAccount.ISSUANCE, wallet.id)], cause=LedgerCause.GRANT)
    assert refused.value.code is ErrorCode.INVALID_AMOUNT


async def test_the_database_itself_refuses_a_balance_below_the_credit_limit() -> None:
    """Even a write that bypasses the ledger cannot overdraw a wallet."""
    wallet = await funded_wallet(10)
    with pytest.raises((IntegrityError, OperationalError)):
        await sql.execute("UPDATE wallet SET balance = -1 WHERE id = $1", wallet.id)
    assert await balance(wallet.id) == 10


async def test_one_wallet_per_owner_and_unit() -> None:
    wallet = await funded_wallet(0)
    again = await opening.open_wallet(
        partner_id=wallet.partner_id,
        owner_kind=OwnerKind.WORKSPACE,
        owner_id=wallet.workspace_id,
        unit="POINTS",
    )
    assert again.id == wallet.id
    with pytest.raises(IntegrityError):
        await Wallet.create(
            partner_id=wallet.partner_id,
            owner_kind=OwnerKind.WORKSPACE,
            workspace_id=wallet.workspace_id,
            owner_key=wallet.owner_key,
            unit="POINTS",
        )


async def test_200_concurrent_spends_of_1_on_a_wallet_holding_100() -> None:
    """Exactly 100 succeed; the balance is 0 and equals the sum of its entries."""
    wallet = await funded_wallet(100)

    async def spend_one() -> bool:
        try:
            await wallets.spend(wallet.id, 1, cause=LedgerCause.USAGE)
        except BillingError as error:
            assert error.code is ErrorCode.INSUFFICIENT_BALANCE
            return False
        return True

    outcomes = await asyncio.gather(*(spend_one() for _ in range(200)))
    assert outcomes.count(True) == 100
    assert await balance(wallet.id) == 0 == await entries_sum(wallet.id)
    assert await LedgerEntry.filter(wallet_id=wallet.id, amount=-1).count() == 100


async def test_200_concurrent_keyed_debits_through_the_service() -> None:
    """The same through the partner's debit service, each with its own idempotency key."""
    partner = await a_partner()
    workspace = await a_workspace(partner)
    viewer = partner_viewer(partner)
    await wallets.adjust_workspace_balance(
        viewer, workspace_id=workspace.id, unit="POINTS", amount=100, note="", idempotency_key="fund"
    )

    async def debit(i: int) -> bool:
        try:
            await wallets.adjust_workspace_balance(
                viewer,
                workspace_id=workspace.id,
                unit="POINTS",
                amount=1,
                note="",
                idempotency_key=f"spend-{i}",
                debit=True,
            )
        except BillingError as error:
            assert error.code is ErrorCode.INSUFFICIENT_BALANCE
            return False
        return True

    outcomes = await asyncio.gather(*(debit(i) for i in range(200)))
    assert outcomes.count(True) == 100
    wallet = await Wallet.get(workspace_id=workspace.id, unit="POINTS")
    assert wallet.balance == 0 == await entries_sum(wallet.id)


async def test_a_partner_sets_a_credit_limit_for_a_postpaid_client() -> None:
    wallet = await funded_wallet(0)
    viewer = partner_viewer(await Partner.get(id=wallet.partner_id))
    updated = await wallets.set_credit_limit(viewer, wallet_id=wallet.id, credit_limit=300)
    assert updated.credit_limit == 300
    assert await wallets.spend(wallet.id, 250, cause=LedgerCause.USAGE) == -250
    with pytest.raises(BillingError) as refused:  # the limit cannot go below what is already owed
        await wallets.set_credit_limit(viewer, wallet_id=wallet.id, credit_limit=100)
    assert refused.value.code is ErrorCode.INVALID_INPUT
    assert (await Wallet.get(id=wallet.id)).credit_limit == 300


def refused_as(error: pytest.ExceptionInfo[BillingError], code: ErrorCode, field: str | None, message: str) -> None:
    """A refusal as the API shows it: its code, the field it names and its message."""
    assert (error.value.code, error.value.field, error.value.message) == (code, field, message)


async def test_a_posting_needs_legs_each_moving_1_to_the_largest_amount_between_two_places() -> None:
    wallet = await funded_wallet(0)
    other = await funded_wallet(0)
    grant = ExternalAccount.ISSUANCE
    cases: list[tuple[list[Leg], ErrorCode, str | None, str]] = [
        ([], ErrorCode.INVALID_INPUT, None, "a posting needs at least one leg"),
        (
            [Leg(MAX_AMOUNT + 1, "POINTS", grant, wallet.id)],
            ErrorCode.INVALID_AMOUNT,
            "amount",
            f"amount must be between 1 and {MAX_AMOUNT}",
        ),
        (
            [Leg(5, "POINTS", grant, wallet.id), Leg(0, "POINTS", grant, other.id)],  # every leg is checked
            ErrorCode.INVALID_AMOUNT,
            "amount",
            f"amount must be between 1 and {MAX_AMOUNT}",
        ),
        (
            [Leg(5, "POINTS", wallet.id, wallet.id)],
            ErrorCode.INVALID_INPUT,
            None,
            "a leg cannot move value to where it came from",
        ),
        (
            [Leg(5, "POINTS", grant, ExternalAccount.PLATFORM_REVENUE)],
            ErrorCode.INVALID_INPUT,
            None,
            "a leg must touch at least one wallet",
        ),
    ]
    for legs, code, field, message in cases:
        with pytest.raises(BillingError) as error:
            await ledger.post(legs, cause=LedgerCause.GRANT)
        refused_as(error, code, field, message)
    assert await balance(wallet.id) == 0 == await balance(other.id)
    assert await Posting.all().count() == 0
    result = await ledger.post([Leg(1, "POINTS", grant, wallet.id)], cause=LedgerCause.GRANT)
    assert result.balance_of(wallet.id) == 1
    result = await ledger.post([Leg(MAX_AMOUNT, "POINTS", grant, wallet.id)], cause=LedgerCause.GRANT)
    assert result.balance_of(wallet.id) == MAX_AMOUNT + 1 == await entries_sum(wallet.id)


async def test_a_refused_posting_says_why() -> None:
    points = await funded_wallet(100)
    missing = points.id + 1000
    with pytest.raises(BillingError) as error:
        await ledger.post([Leg(10, "POINTS", ExternalAccount.ISSUANCE, missing)], cause=LedgerCause.GRANT)
    refused_as(error, ErrorCode.NOT_FOUND, "walletId", "wallet not found")
    with pytest.raises(BillingError) as error:
        await ledger.post([Leg(10, "USD", ExternalAccount.ISSUANCE, points.id)], cause=LedgerCause.GRANT)
    refused_as(error, ErrorCode.UNIT_MISMATCH, None, "wallet holds POINTS, not USD")
    with pytest.raises(BillingError) as error:
        await ledger.post(
            [
                Leg(10, "POINTS", ExternalAccount.ISSUANCE, points.id),
                Leg(10, "USD", ExternalAccount.ISSUANCE, points.id),
            ],
            cause=LedgerCause.GRANT,
        )
    refused_as(error, ErrorCode.UNIT_MISMATCH, None, f"wallet {points.id} cannot hold both POINTS and USD")
    await Wallet.filter(id=points.id).update(credit_limit=7)
    with pytest.raises(BillingError) as error:
        await ledger.post([Leg(108, "POINTS", points.id, ExternalAccount.EXPIRY)], cause=LedgerCause.USAGE)
    refused_as(
        error,
        ErrorCode.INSUFFICIENT_BALANCE,
        "amount",
        "the wallet's balance and credit limit do not cover this amount",
    )
    assert error.value.details == {"balance": 100, "credit_limit": 7}
    assert await balance(points.id) == 100 == await entries_sum(points.id)


async def test_no_balance_exceeds_the_largest_a_wallet_holds() -> None:
    wallet = await funded_wallet(0)
    await sql.execute("UPDATE wallet SET balance = $1 WHERE id = $2", MAX_BALANCE - 10, wallet.id)
    result = await ledger.post([Leg(10, "POINTS", ExternalAccount.ISSUANCE, wallet.id)], cause=LedgerCause.GRANT)
    assert result.balance_of(wallet.id) == MAX_BALANCE
    with pytest.raises(BillingError) as error:
        await ledger.post([Leg(1, "POINTS", ExternalAccount.ISSUANCE, wallet.id)], cause=LedgerCause.GRANT)
    refused_as(error, ErrorCode.INVALID_AMOUNT, "amount", f"a balance cannot exceed {MAX_BALANCE}")
    assert await balance(wallet.id) == MAX_BALANCE


async def test_a_posting_records_its_cause_and_each_entry_its_running_balance_and_counterparty() -> None:
    pool = await funded_wallet(100, "MESSAGE_CREDITS")
    client = await funded_wallet(0, "MESSAGE_CREDITS")
    result = await ledger.post(
        [
            Leg(30, "MESSAGE_CREDITS", pool.id, client.id),
            Leg(20, "MESSAGE_CREDITS", ExternalAccount.ISSUANCE, pool.id),
            Leg(5, "MESSAGE_CREDITS", client.id, ExternalAccount.PLATFORM_REVENUE),
        ],
        cause=LedgerCause.TRANSFER,
        caused_by=CausedBy("Payment", "42"),
        note="monthly top-up",
        actor="user:PARTNER:9",
    )
    posting = await Posting.get(id=result.posting_id)
    assert (posting.partner_id, posting.cause, posting.caused_by_type, posting.caused_by_id) == (
        pool.partner_id,
        LedgerCause.TRANSFER,
        "Payment",
        "42",
    )
    assert (posting.note, posting.actor) == ("monthly top-up", "user:PARTNER:9")
    rows = await LedgerEntry.filter(posting_id=result.posting_id).order_by("id")
    assert [
        (e.wallet_id, e.amount, e.balance_after, e.counter_wallet_id, e.counter_account, e.unit, e.cause) for e in rows
    ] == [
        (pool.id, -30, 70, client.id, None, "MESSAGE_CREDITS", LedgerCause.TRANSFER),
        (client.id, 30, 30, pool.id, None, "MESSAGE_CREDITS", LedgerCause.TRANSFER),
        (pool.id, 20, 90, None, "ISSUANCE", "MESSAGE_CREDITS", LedgerCause.TRANSFER),
        (client.id, -5, 25, None, "PLATFORM_REVENUE", "MESSAGE_CREDITS", LedgerCause.TRANSFER),
    ]
    assert [e.partner_id for e in rows] == [pool.partner_id, client.partner_id] * 2
    assert [(e.id, e.wallet_id, e.amount, e.balance_after) for e in result.entries] == [
        (e.id, e.wallet_id, e.amount, e.balance_after) for e in rows
    ]
    assert (result.balance_of(pool.id), result.balance_of(client.id)) == (90, 25)
    assert (await balance(pool.id), await balance(client.id)) == (90, 25)


async def test_a_posting_without_a_cause_records_none_and_announces_the_wallets_it_changed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool = await funded_wallet(100, "MESSAGE_CREDITS")
    client = await funded_wallet(0, "MESSAGE_CREDITS")
    announced: list[realtime.Change] = []

    async def publish(*changes: realtime.Change) -> None:
        announced.extend(changes)

    monkeypatch.setattr(realtime, "publish", publish)
    result = await ledger.post([Leg(30, "MESSAGE_CREDITS", pool.id, client.id)], cause=LedgerCause.TRANSFER)
    posting = await Posting.get(id=result.posting_id)
    assert (posting.caused_by_type, posting.caused_by_id, posting.note, posting.actor) == (None, None, "", None)
    assert announced == [
        realtime.Change(realtime.WALLET, w.id, w.partner_id) for w in sorted((pool, client), key=lambda w: w.id)
    ]


async def test_a_posting_on_one_wallet_records_its_cause_and_counterparty_too() -> None:
    """On PostgreSQL a one-wallet posting is a single statement of its own: it records the same."""
    wallet = await funded_wallet(100)
    result = await ledger.post(
        [Leg(30, "POINTS", wallet.id, ExternalAccount.PLATFORM_REVENUE)],
        cause=LedgerCause.USAGE,
        caused_by=CausedBy("UsageEvent", "evt-9"),
        note="30 messages",
        actor="api_key:3",
    )
    posting = await Posting.get(id=result.posting_id)
    assert (posting.partner_id, posting.cause, posting.caused_by_type, posting.caused_by_id) == (
        wallet.partner_id,
        LedgerCause.USAGE,
        "UsageEvent",
        "evt-9",
    )
    assert (posting.note, posting.actor) == ("30 messages", "api_key:3")
    [entry] = await LedgerEntry.filter(posting_id=result.posting_id)
    assert (entry.wallet_id, entry.amount, entry.balance_after, entry.unit, entry.cause) == (
        wallet.id,
        -30,
        70,
        "POINTS",
        LedgerCause.USAGE,
    )
    assert (entry.partner_id, entry.counter_wallet_id, entry.counter_account) == (
        wallet.partner_id,
        None,
        "PLATFORM_REVENUE",
    )
    assert [(e.id, e.amount, e.balance_after) for e in result.entries] == [(entry.id, -30, 70)]
    assert result.balance_of(wallet.id) == 70 == await balance(wallet.id)


async def test_a_posting_on_the_platforms_own_wallets_has_no_partner() -> None:
    house = await opening.open_wallet(partner_id=None, owner_kind=OwnerKind.PLATFORM, owner_id=None, unit="USD")
    result = await ledger.post(
        [Leg(500, "USD", ExternalAccount.ISSUANCE, house.id), Leg(200, "USD", house.id, ExternalAccount.EXPIRY)],
        cause=LedgerCause.GRANT,
    )
    assert (await Posting.get(id=result.posting_id)).partner_id is None
    assert [(e.partner_id, e.balance_after) for e in await LedgerEntry.filter(posting_id=result.posting_id)] == [
        (None, 500),
        (None, 300),
    ]


async def test_a_posting_of_two_legs_on_one_wallet_records_its_cause_and_actor_and_both_entries() -> None:
    """Two sides on one wallet cancel out in part: on PostgreSQL such a posting leaves the one-statement
    path for the general one, which records the same cause, actor and both entries."""
    wallet = await funded_wallet(100)
    result = await ledger.post(
        [
            Leg(30, "POINTS", wallet.id, ExternalAccount.PLATFORM_REVENUE),
            Leg(10, "POINTS", ExternalAccount.ISSUANCE, wallet.id),
        ],
        cause=LedgerCause.ADJUSTMENT,
        caused_by=CausedBy("Payment", "7"),
        note="corrected",
        actor="user:PARTNER:2",
    )
    posting = await Posting.get(id=result.posting_id)
    assert (posting.cause, posting.caused_by_type, posting.caused_by_id, posting.note, posting.actor) == (
        LedgerCause.ADJUSTMENT,
        "Payment",
        "7",
        "corrected",
        "user:PARTNER:2",
    )
    entries = await LedgerEntry.filter(posting_id=result.posting_id).order_by("id")
    assert sorted((e.amount, e.counter_account) for e in entries) == [(-30, "PLATFORM_REVENUE"), (10, "ISSUANCE")]
    assert (await Wallet.get(id=wallet.id)).balance == 80
