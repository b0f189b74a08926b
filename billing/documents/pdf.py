"""A document as a PDF page (or pages), in its issuer's branding and the reader's language (en, pt-BR).

Rendered with fpdf2, a pure-Python PDF writer: nothing to install beside the Python package, no browser or
system library, and the same bytes every time for the same document, language and branding (the file's
dates are the document's finalization, not the moment it is drawn). Text is set in the PDF's standard
Helvetica, which holds Latin-1 (Portuguese included); a character outside it prints as "?".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from billing.core.errors import BillingError, ErrorCode
from billing.core.money import format_minor
from billing.documents import invoices
from models.documents import Document, DocumentLine
from models.enums import DocumentKind, DocumentStatus
from models.tenancy import Branding, Partner, Workspace

LANGUAGES = ("en", "pt-BR")
PLATFORM_NAME = "whitebill"
_GREY = (90, 90, 90)

_WORDS: dict[str, dict[str, str]] = {
    "en": {
        DocumentKind.INVOICE: "Invoice",
        DocumentKind.CREDIT_NOTE: "Credit note",
        DocumentKind.RECEIPT: "Receipt",
        "number": "Number",
        "date": "Date",
        "to": "Billed to",
        "from": "From",
        "tax_id": "Tax id",
        "description": "Description",
        "quantity": "Qty",
        "unit_price": "Unit price",
        "discount": "Discount",
        "tax": "Tax",
        "total": "Total",
        "subtotal": "Subtotal",
        "discounts": "Discounts",
        "taxes": "Taxes",
        "included": "included",
        "refers_to": "Refers to invoice",
        "reason": "Reason",
        "void": "VOID",
        "coupon": "Coupon",
    },
    "pt-BR": {
        DocumentKind.INVOICE: "Fatura",
        DocumentKind.CREDIT_NOTE: "Nota de crédito",
        DocumentKind.RECEIPT: "Recibo",
        "number": "Número",
        "date": "Data",
        "to": "Cliente",
        "from": "Emitente",
        "tax_id": "CPF/CNPJ",
        "description": "Descrição",
        "quantity": "Qtd",
        "unit_price": "Preço unit.",
        "discount": "Desconto",
        "tax": "Imposto",
        "total": "Total",
        "subtotal": "Subtotal",
        "discounts": "Descontos",
        "taxes": "Impostos",
        "included": "incluso",
        "refers_to": "Referente à fatura",
        "reason": "Motivo",
        "void": "CANCELADA",
        "coupon": "Cupom",
    },
}


def check_language(language: str) -> str:
    if language not in LANGUAGES:
        raise BillingError(ErrorCode.INVALID_INPUT, f"a language is one of {', '.join(LANGUAGES)}", field="language")
    return language


def language_for(currency: str) -> str:
    """The reader's language when none is asked for: Portuguese for amounts in reais, else English."""
    return "pt-BR" if currency == "BRL" else "en"


@dataclass(frozen=True, slots=True)
class Party:
    name: str
    tax_id: str | None = None
    email: str | None = None


@dataclass(frozen=True, slots=True)
class Page:
    """Everything a document's PDF shows, read once from the database."""

    document: Document
    lines: Sequence[DocumentLine]
    issuer: Party
    buyer: Party
    colour: tuple[int, int, int]
    refers_to: str | None  # the invoice's number, for a credit note or a receipt


def _rgb(colour: str | None) -> tuple[int, int, int]:
    if not colour or len(colour) != 7:
        return (51, 51, 51)
    return (int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16))


async def page_of(document: Document) -> Page:
    colour = None
    if document.partner_id is None:
        issuer = Party(PLATFORM_NAME)
    else:
        partner = await Partner.get(id=document.partner_id)
        branding = await Branding.get_or_none(partner_id=partner.id)
        issuer = Party(
            branding.display_name if branding else partner.name,
            partner.tax_id,
            branding.support_email if branding else None,
        )
        colour = branding.primary_color if branding else None
    kind, _, buyer_id = document.buyer_key.partition(":")
    if kind == "WORKSPACE":
        workspace = await Workspace.get_or_none(id=int(buyer_id))
        buyer = Party(workspace.name, workspace.tax_id, workspace.owner_email) if workspace else Party("")
    else:
        partner_buyer = await Partner.get_or_none(id=int(buyer_id))
        buyer = Party(partner_buyer.name, partner_buyer.tax_id) if partner_buyer else Party("")
    refers = await Document.get_or_none(id=document.refers_to_id) if document.refers_to_id else None
    lines = await DocumentLine.filter(document_id=document.id).order_by("position")
    return Page(document, lines, issuer, buyer, _rgb(colour), refers.number_text if refers else None)


_PLAIN = str.maketrans({"\u2014": "-", "\u2013": "-", "\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'"})


def latin(text: str) -> str:
    """What Helvetica can set: typographic dashes and quotes as plain ones, "..." for an ellipsis, "EUR" for
    the euro sign, and "?" for anything else outside Latin-1."""
    plain = text.translate(_PLAIN).replace("\u2026", "...").replace("\u20ac", "EUR")
    return plain.encode("latin-1", "replace").decode("latin-1")


def money(amount: int, currency: str, language: str) -> str:
    """``R$ 1.234,56`` in Portuguese, ``BRL 1,234.56`` in English."""
    text = format_minor(abs(amount), currency)
    whole, _, cents = text.partition(".")
    groups = f"{int(whole):,}"
    if language == "pt-BR":
        groups = groups.replace(",", ".")
        shown = groups + ("," + cents if cents else "")
        symbol = "R$" if currency == "BRL" else currency
    else:
        shown = groups + ("." + cents if cents else "")
        symbol = currency
    return f"{'-' if amount < 0 else ''}{symbol} {shown}"


def _day(moment: datetime | None, language: str) -> str:
    if moment is None:
        return ""
    return moment.strftime("%d/%m/%Y") if language == "pt-BR" else moment.strftime("%Y-%m-%d")


def _percentage(value: object, language: str) -> str:
    text = str(value)
    text = text.rstrip("0").rstrip(".") if "." in text else text
    return text.replace(".", ",") if language == "pt-BR" else text


def render(page: Page, language: str) -> bytes:
    """The PDF's bytes: the same for the same page and language."""
    words = _WORDS[check_language(language)]
    document = page.document
    currency = document.currency
    pdf = FPDF(format="A4", unit="mm")
    pdf.set_creation_date(document.finalized_at or document.created_at)
    pdf.set_producer(PLATFORM_NAME)
    pdf.set_creator(PLATFORM_NAME)
    pdf.set_title(latin(f"{words[document.kind]} {document.number_text or ''}"))
    pdf.set_author(latin(page.issuer.name))
    pdf.set_auto_page_break(auto=True, margin=18)
    pdf.add_page()

    def text(size: float, content: str, *, bold: bool = False, grey: bool = False) -> None:
        pdf.set_font("Helvetica", "B" if bold else "", size)
        pdf.set_text_color(*(_GREY if grey else (0, 0, 0)))
        pdf.cell(0, size * 0.5, latin(content), new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    # The brand's band and name, then what the document is.
    pdf.set_fill_color(*page.colour)
    pdf.rect(0, 0, 210, 6, style="F")
    pdf.set_y(14)
    text(18, page.issuer.name, bold=True)
    for detail in (page.issuer.tax_id and f"{words['tax_id']}: {page.issuer.tax_id}", page.issuer.email):
        if detail:
            text(9, detail, grey=True)
    pdf.ln(4)
    title = words[document.kind] + (f" ({words['void']})" if document.status is DocumentStatus.VOID else "")
    text(14, title, bold=True)
    text(10, f"{words['number']}: {document.number_text or ''}")
    text(10, f"{words['date']}: {_day(document.finalized_at, language)}")
    if page.refers_to:
        text(10, f"{words['refers_to']}: {page.refers_to}")
    pdf.ln(3)
    text(9, words["to"], grey=True)
    text(11, page.buyer.name, bold=True)
    if page.buyer.tax_id:
        text(9, f"{words['tax_id']}: {page.buyer.tax_id}")
    pdf.ln(5)

    # The lines.
    widths = (78, 14, 26, 24, 20, 28)
    heads = ("description", "quantity", "unit_price", "discount", "tax", "total")
    pdf.set_font("Helvetica", "B", 9)
    pdf.set_fill_color(235, 235, 235)
    for width, head in zip(widths, heads, strict=True):
        pdf.cell(width, 7, latin(words[head]), border="B", fill=True, align="L" if head == "description" else "R")
    pdf.ln(7)
    pdf.set_font("Helvetica", "", 9)
    for line in page.lines:
        cells = (
            line.description,
            str(line.quantity),
            money(line.unit_price, currency, language),
            money(-line.discount, currency, language) if line.discount else "",
            money(line.tax, currency, language) if line.tax else "",
            money(line.total, currency, language),
        )
        for n, (width, cell) in enumerate(zip(widths, cells, strict=True)):
            shown = latin(cell)
            while n == 0 and pdf.get_string_width(shown) > width - 2 and len(shown) > 3:
                shown = shown[:-4] + "..."
            pdf.cell(width, 6, shown, align="L" if n == 0 else "R")
        pdf.ln(6)
        pdf.set_text_color(*_GREY)
        for discount in line.discounts:
            label = f"  {words['coupon']} {discount['code']}: {discount['name']}"
            pdf.cell(widths[0] + widths[1] + widths[2], 5, latin(label))
            pdf.cell(widths[3], 5, latin(money(-int(discount["amount"]), currency, language)), align="R")
            pdf.ln(5)
        pdf.set_text_color(0, 0, 0)

    # The totals, and the taxes per rate.
    pdf.ln(3)
    label_width, value_width = 150, 40

    def total(label: str, amount: int, *, bold: bool = False) -> None:
        pdf.set_font("Helvetica", "B" if bold else "", 10 if bold else 9)
        pdf.cell(label_width, 6, latin(label), align="R")
        pdf.cell(
            value_width, 6, latin(money(amount, currency, language)), align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT
        )

    total(words["subtotal"], document.subtotal)
    if document.discount_total:
        total(words["discounts"], -document.discount_total)
    for tax in invoices.tax_breakdown(page.lines):
        included = f" ({words['included']})" if tax["inclusive"] else ""
        total(f"{tax['name']} {_percentage(tax['percentage'], language)}%{included}", int(str(tax["amount"])))
    total(words["total"], document.total, bold=True)
    if document.note:
        pdf.ln(4)
        text(9, f"{words['reason']}: {document.note}", grey=True)
    return bytes(pdf.output())


async def render_document(document: Document, language: str | None = None) -> bytes:
    return render(await page_of(document), language or language_for(document.currency))
