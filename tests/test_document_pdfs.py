"""Documents as PDFs, read back with a PDF text extractor (pypdf): through the API's short-lived link in
the partner's branding and the language asked for, attached to the receipt e-mail, the same bytes every
time (a credit note against an invoice leaves the invoice's PDF as it was), and a link that was altered
or has expired shows nothing."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from pypdf import PdfReader

from billing.catalog import plans
from billing.core import clock
from billing.core.money import Money
from billing.documents import coupons, links, manage, pdf
from billing.sales import checkout, purchases
from billing.tenants import api_keys, branding
from models.documents import Document
from models.enums import BillingInterval, CouponDuration, CouponKind, DocumentKind, PaymentMethodKind, SeriesReset
from tests.factories import a_partner, a_workspace, partner_viewer
from tests.graphql import GraphQLClient
from tests.test_emails import deliver_outbox, inbox  # noqa: F401 (the fixture)

pytestmark = pytest.mark.usefixtures("database")
ROOT = Path(__file__).resolve().parent.parent

DOCUMENTS = """query($lang: DocumentLanguage) { documents(first: 10, kind: INVOICE) { nodes { id number status
  total { amount currency } taxes { name amount { amount } } lines { id description discounts { code } }
  pdfUrl(language: $lang) } } }"""
CREDIT = """mutation($id: ID!, $line: ID!) { creditInvoice(input: {invoiceId: $id, reason: "desconto extra",
  lines: [{lineId: $line, amount: "10.00"}]}) { creditNote { number total { amount } pdfUrl } errors { code } } }"""


def text_of(data: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


async def a_sale():
    """Sol Chatbots sells its Pro plan (99.90, ISS 5 % included, PIS 1.65 % on top) with a 10 % coupon to
    the Padaria, which pays by hand: one invoice, paid, and its receipt."""
    partner = await a_partner("Agência Sol")
    viewer = partner_viewer(partner)
    await branding.update_branding(
        viewer,
        partner_id=partner.id,
        change=branding.BrandingChange(display_name="Sol Chatbots", primary_color="#ff8800"),
    )
    await manage.create_tax_rate(viewer, name="ISS", percentage=Decimal(5), inclusive=True)
    await manage.create_tax_rate(viewer, name="PIS", percentage=Decimal("1.65"), inclusive=False)
    await manage.set_document_series(
        viewer, kind=DocumentKind.INVOICE, prefix="SOL-{year}-", digits=6, reset=SeriesReset.NEVER
    )
    await manage.set_document_series(
        viewer, kind=DocumentKind.RECEIPT, prefix="SOL-R-", digits=4, reset=SeriesReset.NEVER
    )
    workspace = await a_workspace(partner, "Padaria São João", email="dono@padaria.example")
    plan = await plans.create_plan(
        viewer, name="Pro — mensal", interval=BillingInterval.MONTHLY, price=Money(9990, "BRL"), limits={}
    )
    await coupons.create(
        partner.id, code="BEMVINDO", name="Boas-vindas", kind=CouponKind.PERCENTAGE, percentage=Decimal(10),
        duration=CouponDuration.ONCE,
    )  # fmt: skip
    sold = await checkout.checkout(
        viewer,
        workspace_id=workspace.id,
        item=checkout.Item(plan_id=plan.id),
        method=PaymentMethodKind.MANUAL,
        idempotency_key="sale",
        coupon_codes=["bemvindo"],
    )
    assert sold.payment is not None
    await purchases.record_payment(viewer, payment_id=sold.payment.id, note="pix", idempotency_key="paid")
    return partner, workspace


async def test_an_invoice_pdf_through_its_link_shows_its_number_totals_and_brand_and_never_changes(server) -> None:
    partner, _ = await a_sale()
    agency = GraphQLClient(server.url, (await api_keys.create_key(partner_id=partner.id)).secret)
    [invoice] = (await agency.data(DOCUMENTS, {"lang": "PT_BR"}))["documents"]["nodes"]
    year = clock.now().year
    assert (invoice["number"], invoice["status"], invoice["total"]) == (
        f"SOL-{year}-000001",
        "PAID",
        {"amount": "91.32", "currency": "BRL"},
    )
    assert invoice["taxes"] == [
        {"name": "ISS", "amount": {"amount": "4.28"}},
        {"name": "PIS", "amount": {"amount": "1.41"}},
    ]
    assert invoice["lines"][0]["discounts"] == [{"code": "BEMVINDO"}]

    async with httpx.AsyncClient(base_url=server.url) as http:
        got = await http.get(urlsplit(invoice["pdfUrl"]).path)
        assert got.status_code == 200 and got.headers["content-type"] == "application/pdf"
        assert got.headers["cache-control"] == "private, no-store"
        shown = text_of(got.content)
        if os.environ.get("WHITEBILL_UPDATE_SCREENSHOTS") == "1":  # the README's picture of a page (poppler)
            picture = ROOT / "docs" / "screenshots" / "invoice"
            command = ["pdftoppm", "-png", "-r", "60", "-singlefile", "-", str(picture)]
            await asyncio.to_thread(subprocess.run, command, input=got.content, check=True)
        for expected in ("Sol Chatbots", "Fatura", f"SOL-{year}-000001", "Padaria São João", "Pro - mensal",
                         "Cupom BEMVINDO: Boas-vindas -R$ 9,99", "ISS 5% (incluso) R$ 4,28", "PIS 1,65% R$ 1,41",
                         "Total R$ 91,32"):  # fmt: skip
            assert expected in shown, (expected, shown)
        english = await http.get(
            urlsplit((await agency.data(DOCUMENTS, {"lang": "EN"}))["documents"]["nodes"][0]["pdfUrl"]).path
        )
        assert "Invoice" in text_of(english.content) and "Total BRL 91.32" in text_of(english.content)

        # A credit note against it (a correction of one line, by hand): the invoice's PDF is the same bytes.
        credited = await agency.data(
            CREDIT,
            {"id": invoice["id"], "line": invoice["lines"][0]["id"]},
        )
        note = credited["creditInvoice"]["creditNote"]
        assert (note["number"], note["total"]) == (f"{partner.slug.upper()}-CN-{year}-000001", {"amount": "10.00"})
        again = await http.get(
            urlsplit((await agency.data(DOCUMENTS, {"lang": "PT_BR"}))["documents"]["nodes"][0]["pdfUrl"]).path
        )
        assert again.content == got.content
        note_pdf = text_of((await http.get(urlsplit(note["pdfUrl"]).path)).content)
        assert "Nota de crédito" in note_pdf and f"Referente à fatura: SOL-{year}-000001" in note_pdf
        assert "Motivo: desconto extra" in note_pdf

        # Altered, it shows nothing: another document, another language, a later expiry, another signature.
        path = urlsplit(invoice["pdfUrl"]).path
        _, _, document_id, language, expires, mac = path.split("/")
        for altered in (
            f"/documents/{int(document_id) + 1}/{language}/{expires}/{mac}",
            f"/documents/{document_id}/en/{expires}/{mac}",
            f"/documents/{document_id}/{language}/{int(expires) + 60}/{mac}",
            f"/documents/{document_id}/{language}/{expires}/{'0' * 40}.pdf",
            f"/documents/{document_id}/xx/{expires}/{mac}",
        ):
            refused = await http.get(altered)
            assert refused.status_code == 404 and b"%PDF" not in refused.content, altered


async def test_a_link_expires_after_ten_minutes() -> None:
    document_id, language = 7, "en"
    url = links.link(document_id, language)
    _, _, _, _, expires, mac = urlsplit(url).path.removesuffix(".pdf").split("/")
    assert links.verify(document_id, language, int(expires), mac)
    await clock.advance(links.LIFETIME + timedelta(seconds=1))
    assert not links.verify(document_id, language, int(expires), mac)


async def test_the_receipt_e_mail_carries_its_pdf(inbox) -> None:  # noqa: F811 (the fixture)
    _, workspace = await a_sale()
    await deliver_outbox()
    [mail] = [m for m in inbox.messages if "Receipt" in m["Subject"]]
    assert mail["To"] == "dono@padaria.example" and mail["Subject"] == "[Sol Chatbots] Receipt SOL-R-0001"
    [attachment] = list(mail.iter_attachments())
    assert (attachment.get_content_type(), attachment.get_filename()) == ("application/pdf", "SOL-R-0001.pdf")
    shown = text_of(attachment.get_content())
    assert "Sol Chatbots" in shown and "Recibo" in shown and "SOL-R-0001" in shown and "R$ 91,32" in shown
    receipt = await Document.get(kind=DocumentKind.RECEIPT)
    assert attachment.get_content() == await pdf.render_document(receipt)  # the same bytes, every time
    assert receipt.buyer_key == f"WORKSPACE:{workspace.id}"
