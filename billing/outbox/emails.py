"""E-mail to people, in their partner's branding: password resets and invitations, a payment waiting
for the payer (with its "pay now" link or boleto/pix instructions), a failed payment, a renewal
issued or overdue (each dunning step), a plan about to end without renewing, and a receipt for each
payment, its PDF attached.

Sent over SMTP with the configured ``smtp_url`` (``WHITEBILL_SMTP_URL``:
``smtp://user:password@host:587?starttls=true``, or ``smtps://…`` for TLS from the start) from
``mail_from`` (``WHITEBILL_MAIL_FROM``); without it (development) each e-mail is written to the log
instead, with any reset link left out.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from billing.core import config
from billing.core.money import format_minor
from billing.documents import issuing, pdf
from billing.tenants import identity
from models.documents import Document
from models.tenancy import Branding, Partner, Workspace

log = logging.getLogger("whitebill.emails")


@dataclass(frozen=True, slots=True)
class Letter:
    to: str
    subject: str
    lines: list[str]
    secret: str | None = None  # a token the log must never show
    attachments: tuple[tuple[str, bytes], ...] = ()  # (file name, PDF)


async def _brand(partner_id: int | None) -> tuple[str, str, str | None]:
    """Display name, colour and support address of the partner (or of whitebill itself)."""
    if partner_id is None:
        return "whitebill", "#333333", None
    branding = await Branding.get_or_none(partner_id=partner_id)
    if branding is None:
        partner = await Partner.get_or_none(id=partner_id)
        return (partner.name if partner else "whitebill"), "#333333", None
    return branding.display_name, branding.primary_color or "#333333", branding.support_email


async def _owner_of(payload: dict[str, Any]) -> str | None:
    workspace_id = payload.get("workspace_id")
    payer = str(payload.get("payer_key") or payload.get("payer") or "")
    if workspace_id is None and payer.startswith("WORKSPACE:"):
        workspace_id = int(payer.split(":", 1)[1])
    if workspace_id is None:
        return None
    workspace = await Workspace.get_or_none(id=workspace_id)
    return workspace.owner_email if workspace else None


def _how_to_pay(action: dict[str, Any] | None) -> list[str]:
    if not action:
        return []
    lines = []
    if action.get("kind") == "BOLETO":
        lines.append(f"Boleto: {action.get('boleto_line')}")
    if action.get("kind") == "PIX":
        lines.append(f"Pix copia e cola: {action.get('pix_payload')}")
    if action.get("expires_at"):
        lines.append(f"Pay by: {action['expires_at']}")
    if action.get("url"):
        lines.append(f"Pay now: {action['url']}")
    if action.get("kind") == "MANUAL":
        lines.append(str(action.get("instructions", "Pay as agreed with us.")))
    return lines


async def letter_for(event: dict[str, Any]) -> Letter | None:
    """The e-mail an outbox event calls for, if any."""
    kind, payload = event["event_type"], event.get("payload") or {}
    if kind == identity.LINK_EVENT:
        # The token is made now and lives only in this letter; the database keeps its hash.
        link = await identity.mint_link(event)
        if link is None:
            return None
        base = config.current().reset_url  # the page that takes ?token=
        verb = "Set" if link.purpose == "invite" else "Reset"
        hours = link.lifetime / timedelta(hours=1)
        return Letter(
            to=link.to,
            subject=f"{verb} your password",
            lines=[f"{verb} your password here: {base}?token={link.token}", f"The link works for {hours:g} hours."],
            secret=link.token,
        )
    to = await _owner_of(payload)
    if to is None:
        return None
    if kind == "payment.pending":
        amount = format_minor(int(payload["amount"]), payload["currency"])
        return Letter(
            to, f"Payment of {amount} {payload['currency']} waiting", _how_to_pay(payload.get("payer_action"))
        )
    if kind == "payment.requires_action":
        amount = format_minor(int(payload["amount"]), payload["currency"])
        link = (payload.get("payer_action") or {}).get("url")
        return Letter(
            to,
            f"Confirm your payment of {amount} {payload['currency']}",
            [
                "Your bank asks you to confirm this payment before it goes through. Nothing has been charged yet.",
                f"Confirm it here: {link}",
            ],
        )
    if kind == "payment.card_not_saved":
        return Letter(
            to,
            "Your payment went through; your card was not kept",
            [
                "Thank you: your payment went through.",
                "We could not keep your card for the next payments: when one falls due we will send you a link to pay.",
            ],
        )
    if kind == issuing.RECEIPT_ISSUED:
        document = await Document.get_or_none(id=payload.get("document_id"))
        if document is None:
            return None
        amount = format_minor(int(payload["amount"]), payload["currency"])
        return Letter(
            to,
            f"Receipt {document.number_text}",
            [f"Thank you: we received your payment of {amount} {payload['currency']}.", "Your receipt is attached."],
            attachments=((f"{document.number_text}.pdf", await pdf.render_document(document)),),
        )
    if kind == "payment.failed":
        return Letter(to, "Your payment did not go through", [f"Reason: {payload.get('reason') or 'declined'}"])
    if kind == "renewal.issued":
        return Letter(to, "Your plan renews: payment due", [f"Period {payload.get('period')} is due."])
    if kind == "renewal.overdue":
        failures = payload.get("failures", 0)
        lines = [f"Your renewal is overdue ({failures} attempt{'s' if failures != 1 else ''} so far)."]
        if payload.get("next_retry_at"):
            lines.append(f"We will try again on {payload['next_retry_at']}.")
        return Letter(to, "Your renewal is overdue", lines)
    if kind == "subscription.expiring":
        day = str(payload.get("ends_at", ""))[:10]
        plan = payload.get("plan_name") or "current"
        return Letter(
            to,
            f"Your plan ends on {day}",
            [
                f"Your {plan} plan ends on {day} and will not renew ({payload.get('reason')}).",
                "To keep your service, renew or choose a plan before then.",
            ],
        )
    return None


def _message(letter: Letter, brand: str, colour: str, support: str | None, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"{brand} <{sender}>"
    message["To"] = letter.to
    message["Subject"] = f"[{brand}] {letter.subject}"
    if support:
        message["Reply-To"] = support
    footer = f"— {brand}" + (f" · {support}" if support else "")
    message.set_content("\n".join([*letter.lines, "", footer]))
    body = "".join(f"<p>{html.escape(line)}</p>" for line in letter.lines)
    message.add_alternative(
        f'<div style="border-top:4px solid {html.escape(colour)};font-family:sans-serif">'
        f"<h2>{html.escape(brand)}</h2>{body}<p style='color:#777'>{html.escape(footer)}</p></div>",
        subtype="html",
    )
    for name, data in letter.attachments:
        message.add_attachment(data, maintype="application", subtype="pdf", filename=name)
    return message


async def send(event: dict[str, Any]) -> bool:
    """Send the e-mail this event calls for; False if it calls for none. Raises if SMTP fails (the
    outbox retries it with back-off)."""
    letter = await letter_for(event)
    if letter is None:
        return False
    brand, colour, support = await _brand(event.get("partner_id"))
    configured = config.current()
    url = configured.smtp_url
    if not url:
        shown = [line.replace(letter.secret, "…") if letter.secret else line for line in letter.lines]
        log.info("e-mail (no SMTP configured)", extra={"to": letter.to, "subject": letter.subject, "lines": shown})
        return True
    parts = urlsplit(url)
    options = parse_qs(parts.query)
    sender = configured.mail_from if configured.mail_from is not None else f"no-reply@{parts.hostname}"
    await aiosmtplib.send(
        _message(letter, brand, colour, support, sender),
        hostname=parts.hostname,
        port=parts.port or (465 if parts.scheme == "smtps" else 25),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        use_tls=parts.scheme == "smtps",
        start_tls=options.get("starttls", ["false"])[0] == "true",
        timeout=20,
    )
    return True
