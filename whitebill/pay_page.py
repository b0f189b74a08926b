"""The pay-now page: ``GET /pay/{reference}/{mac}`` shows a payment that waits for its payer in the
partner's branding; ``POST`` sends the payer to the provider's page to complete it on-session (a card
charge the bank wants authenticated), which comes back to ``GET /pay/{reference}/{mac}/return``.

The link is a capability (it is e-mailed to the payer): the page is never cached, never framed, sends no
referrer and loads nothing from elsewhere."""

from __future__ import annotations

import html

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from billing.core.money import format_minor
from billing.sales import pay_now
from models.enums import PaymentStatus

HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' https:; "
    "frame-ancestors 'none'; base-uri 'none'",
}
NOT_FOUND = "<!doctype html><title>Not found</title><p>This payment link is not valid.</p>"


async def _page(request: Request) -> pay_now.PayNow | None:
    return await pay_now.find(request.path_params["reference"], request.path_params["mac"])


async def show(request: Request) -> Response:
    page = await _page(request)
    if page is None:
        return HTMLResponse(NOT_FOUND, status_code=404, headers=HEADERS)
    return HTMLResponse(render(page), headers=HEADERS)


async def go_on(request: Request) -> Response:
    page = await _page(request)
    if page is None:
        return HTMLResponse(NOT_FOUND, status_code=404, headers=HEADERS)
    target = await pay_now.go_on(page)
    here = str(request.url.path)
    return RedirectResponse(target or here, status_code=303, headers=HEADERS)


async def came_back(request: Request) -> Response:
    page = await _page(request)
    if page is None:
        return HTMLResponse(NOT_FOUND, status_code=404, headers=HEADERS)
    await pay_now.came_back(page)
    here = str(request.url.path).removesuffix(pay_now.RETURN)
    return RedirectResponse(here, status_code=303, headers=HEADERS)


_SAYS = {
    PaymentStatus.SUCCEEDED: "Paid. Thank you.",
    PaymentStatus.DECLINED: "This payment did not go through.",
    PaymentStatus.CANCELED: "This payment was cancelled.",
    PaymentStatus.NOT_ATTEMPTED: "This payment was not made.",
}


def render(page: pay_now.PayNow) -> str:
    payment = page.payment
    e = html.escape
    amount = f"{format_minor(payment.amount, payment.currency)} {payment.currency}"
    if payment.status is PaymentStatus.REQUIRES_ACTION and page.can_continue:
        body = (
            "<p>Your bank asks you to confirm this payment before it goes through. Nothing has been charged yet.</p>"
            '<form method="post"><button type="submit">Confirm with my bank</button></form>'
        )
    elif payment.status is PaymentStatus.REQUIRES_ACTION:
        body = "<p>Your bank asks you to confirm this payment: open the app where you made the purchase.</p>"
    else:
        body = f"<p>{e(_SAYS.get(payment.status, 'This payment is being processed.'))}</p>"
    support = f'<p class="support">Questions? {e(page.support)}</p>' if page.support else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(page.brand)}: payment</title>"
        "<style>body{font-family:sans-serif;margin:0;background:#f6f6f6}"
        f"main{{max-width:28rem;margin:2rem auto;background:#fff;padding:1.5rem;border-top:4px solid {e(page.colour)}}}"
        f"button{{background:{e(page.colour)};color:#fff;border:0;padding:.75rem 1.25rem;font-size:1rem}}"
        ".amount{font-size:1.5rem;font-weight:bold}.support{color:#777}</style></head>"
        f"<body><main><h1>{e(page.brand)}</h1><p>{e(payment.note or 'Payment')}</p>"
        f'<p class="amount">{e(amount)}</p>{body}{support}</main></body></html>'
    )
