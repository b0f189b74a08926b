"""``GET /documents/{id}/{language}/{expires}/{mac}.pdf``: a document's PDF through the short-lived link the
API handed out (:mod:`billing.documents.links`). A link altered, expired or of a document that is not
finalized answers 404, the same for each, and the PDF is never cached on the way."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from billing.documents import links, pdf
from models.documents import Document
from models.enums import DocumentStatus

HEADERS = {
    "Cache-Control": "private, no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
}


def _not_found() -> Response:
    return PlainTextResponse("This document link is not valid (it may have expired).", 404, headers=HEADERS)


async def download(request: Request) -> Response:
    params = request.path_params
    document_id, language, expires = params["document_id"], params["language"], params["expires"]
    if language not in pdf.LANGUAGES or not links.verify(document_id, language, expires, params["mac"]):
        return _not_found()
    document = await Document.get_or_none(id=document_id)
    if document is None or document.status is DocumentStatus.DRAFT:
        return _not_found()
    body = await pdf.render_document(document, language)
    name = (document.number_text or f"document-{document.id}").replace('"', "")
    disposition = f'inline; filename="{name}.pdf"'
    return Response(body, media_type="application/pdf", headers={**HEADERS, "Content-Disposition": disposition})
