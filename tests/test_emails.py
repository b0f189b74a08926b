"""E-mail over SMTP, in the partner's branding, to a real SMTP server on 127.0.0.1 (aiosmtpd): a
password reset, a payment waiting with its "pay now" link, a failed payment, each dunning step."""

from __future__ import annotations

import email
import email.policy
import hashlib
import re
import socket
from datetime import timedelta

import pytest
from aiosmtpd.controller import Controller

from billing.charges import payments
from billing.core import clock, sql
from billing.outbox import emails
from billing.tenants import branding, identity
from models.enums import PaymentMethodKind, PaymentStatus, WorkState
from models.operations import OutboxEvent
from models.tenancy import PasswordResetToken, WorkspaceUser
from tests.factories import PLATFORM, a_partner, a_workspace, partner_viewer
from whitebill.settings import configure_domain, load_settings
from whitebill.worker import Worker

pytestmark = pytest.mark.usefixtures("database")


class Inbox:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.refuse = 0  # how many messages to turn away first (a mail server in trouble)

    async def handle_DATA(self, server, session, envelope):
        if self.refuse:
            self.refuse -= 1
            return "451 4.3.0 try again later"
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"

    def text(self, index: int) -> str:
        return self.messages[index].get_body(preferencelist=("plain",)).get_content()


@pytest.fixture
def inbox(monkeypatch):
    box = Inbox()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv("WHITEBILL_SMTP_URL", f"smtp://127.0.0.1:{port}")
    monkeypatch.setenv("WHITEBILL_MAIL_FROM", "billing@whitebill.example")
    configure_domain(load_settings())
    yield box
    controller.stop()


async def deliver_outbox() -> None:
    worker = Worker(load_settings())
    while await worker.tick():
        pass


async def test_e_mails_go_out_over_smtp_in_the_partners_branding(inbox) -> None:
    partner = await a_partner("Agência Sol")
    viewer = partner_viewer(partner)
    await branding.update_branding(
        viewer,
        partner_id=partner.id,
        change=branding.BrandingChange(
            display_name="Sol Chatbots", primary_color="#ff8800", support_email="ajuda@sol.example"
        ),
    )
    workspace = await a_workspace(partner, email="dono@padaria.example")
    pending = await payments.create_payment(
        partner_id=partner.id,
        payer_key=f"WORKSPACE:{workspace.id}",
        gateway_config_id=None,
        provider="manual",
        method=PaymentMethodKind.BOLETO,
        amount=4990,
        currency="BRL",
        purpose={"kind": "WALLET_CREDIT", "wallet_id": 0, "quantity": 1},
    )
    action = '{"kind": "BOLETO", "boleto_line": "34191.79001 01043.510047 91020.150008 1 96610000004990", "url": "https://pay.example/b/1"}'
    await payments.move(pending.id, PaymentStatus.PENDING, payer_action=action)
    declined = await payments.create_payment(
        partner_id=partner.id,
        payer_key=f"WORKSPACE:{workspace.id}",
        gateway_config_id=None,
        provider="manual",
        method=PaymentMethodKind.CARD,
        amount=1000,
        currency="BRL",
        purpose={"kind": "WALLET_CREDIT", "wallet_id": 0, "quantity": 1},
    )
    await payments.move(declined.id, PaymentStatus.DECLINED, decline_reason="insufficient_funds")
    await OutboxEvent.create(
        partner_id=partner.id,
        event_type="renewal.overdue",
        run_at=clock.now(),
        payload={"workspace_id": workspace.id, "failures": 2, "next_retry_at": "2027-01-09T00:00:00+00:00"},
    )
    await identity.create_workspace_user(viewer, workspace_id=workspace.id, email="ana@padaria.example")
    await deliver_outbox()

    subjects = sorted(m["Subject"] for m in inbox.messages)
    assert subjects == [
        "[Sol Chatbots] Payment of 49.90 BRL waiting",
        "[Sol Chatbots] Set your password",
        "[Sol Chatbots] Your payment did not go through",
        "[Sol Chatbots] Your renewal is overdue",
    ]
    by_subject = {m["Subject"]: m for m in inbox.messages}
    invitation = by_subject["[Sol Chatbots] Set your password"]
    assert invitation["To"] == "ana@padaria.example"
    assert "?token=" in invitation.get_body(preferencelist=("plain",)).get_content()
    waiting = by_subject["[Sol Chatbots] Payment of 49.90 BRL waiting"]
    assert waiting["To"] == "dono@padaria.example" and waiting["Reply-To"] == "ajuda@sol.example"
    text = waiting.get_body(preferencelist=("plain",)).get_content()
    assert "34191.79001" in text and "Pay now: https://pay.example/b/1" in text
    assert "#ff8800" in waiting.get_body(preferencelist=("html",)).get_content()
    assert (
        "insufficient_funds"
        in by_subject["[Sol Chatbots] Your payment did not go through"]
        .get_body(preferencelist=("plain",))
        .get_content()
    )
    assert (
        "2 attempts"
        in by_subject["[Sol Chatbots] Your renewal is overdue"].get_body(preferencelist=("plain",)).get_content()
    )


async def test_an_smtp_server_that_refuses_is_retried_by_the_outbox(monkeypatch) -> None:
    monkeypatch.setenv("WHITEBILL_SMTP_URL", "smtp://127.0.0.1:9")  # nothing listens there
    configure_domain(load_settings())
    partner = await a_partner()
    workspace = await a_workspace(partner)
    await OutboxEvent.create(
        partner_id=partner.id,
        event_type="renewal.overdue",
        run_at=clock.now(),
        payload={"workspace_id": workspace.id, "failures": 1},
    )
    await Worker(load_settings()).tick()
    event = await OutboxEvent.get(event_type="renewal.overdue")
    assert event.state.value == "PENDING" and event.run_at > clock.now() and event.last_error


def link_token(message: email.message.EmailMessage) -> str:
    found = re.search(r"\?token=(\S+)", message.get_body(preferencelist=("plain",)).get_content())
    assert found, "no link in the e-mail"
    return found[1]


async def every_stored_value() -> str:
    """Every row of every table, as text: what a database dump or a backup holds."""
    tables_sql = (
        "SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public'"
        if sql.is_postgres()
        else "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    )
    dump = []
    for table in [row["name"] for row in await sql.fetch(tables_sql)]:
        dump.extend(str(row) for row in await sql.fetch(f'SELECT * FROM "{table}"'))
    return "\n".join(dump)


async def test_a_password_link_is_kept_nowhere_in_clear(inbox) -> None:
    """Only the e-mail holds the token: the database (outbox, audit log, deliveries...) keeps its hash."""
    partner = await a_partner()
    workspace = await a_workspace(partner)
    await identity.invite_partner_user(PLATFORM, partner_id=partner.id, email="owner@agency.example")
    await identity.create_workspace_user(partner_viewer(partner), workspace_id=workspace.id, email="ana@client.example")
    await deliver_outbox()
    await identity.request_password_reset(brand=partner.slug, email="owner@agency.example", client_address=None)
    await deliver_outbox()
    tokens = [link_token(message) for message in inbox.messages]
    assert len(set(tokens)) == 3
    stored = await every_stored_value()
    for token in tokens:
        assert token not in stored
        assert hashlib.sha256(token.encode()).hexdigest() in stored
    await identity.reset_password(token=tokens[1], new_password="a new password for ana")


async def test_a_retried_password_e_mail_leaves_one_valid_link(inbox) -> None:
    """The mail server turns the first attempt away after the token was made: the retry makes a new
    one and the first stops working. Once the link is used, the e-mail is not sent again."""
    partner = await a_partner()
    workspace = await a_workspace(partner)
    inbox.refuse = 1
    await identity.create_workspace_user(partner_viewer(partner), workspace_id=workspace.id, email="ana@client.example")
    await deliver_outbox()
    assert inbox.messages == []
    [event] = await OutboxEvent.filter(event_type=identity.LINK_EVENT)
    assert event.state is WorkState.PENDING and event.attempts == 1
    assert await PasswordResetToken.filter(outbox_event_id=event.id).count() == 1
    first_hash = (await PasswordResetToken.get(outbox_event_id=event.id)).token_hash
    await clock.advance(timedelta(minutes=5))
    await deliver_outbox()
    [message] = inbox.messages
    token = link_token(message)
    [row] = await PasswordResetToken.filter(user_id=(await WorkspaceUser.get(email="ana@client.example")).id)
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest() != first_hash
    await identity.reset_password(token=token, new_password="a new password for ana")
    # A worker that sends the same row once more (its lease ran out mid-send) finds the link used.
    event_row = {"id": event.id, "event_type": event.event_type, "partner_id": event.partner_id}
    assert await emails.letter_for({**event_row, "payload": event.payload}) is None
