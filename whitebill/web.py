"""The browser pages whitebill serves itself: the reference portal at /portal/ and GraphiQL at /graphql
(in development), built from web/ by `make web` into web/dist/ and served from /ui/. Nothing a page
needs comes from another origin, and each page says so in its Content-Security-Policy.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from billing.core.errors import ErrorCode
from whitebill.boundary import refusal

DIST = Path(__file__).resolve().parent.parent / "web" / "dist"

# Scripts, styles, fonts and API calls (HTTP and the websocket) from this origin only. The portal also
# shows images from elsewhere: a brand's logo (an https URL it set) and a pix QR code (a data: PNG).
GRAPHIQL_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PORTAL_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; font-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def page(name: str, policy: str) -> Response:
    """The built page ``name`` (``portal``, ``graphiql``) under ``policy``; 404 when web/ was not built."""
    path = DIST / name / "index.html"
    if not path.is_file():
        return refusal(404, ErrorCode.NOT_FOUND, f"the {name} page is not built: run `make web` (Node.js and npm)")
    return FileResponse(path, media_type="text/html", headers={**_PAGE_HEADERS, "Content-Security-Policy": policy})


async def portal(request: Request) -> Response:
    return page("portal", PORTAL_POLICY)


async def portal_without_slash(request: Request) -> Response:
    return RedirectResponse("/portal/", status_code=308)


class Assets(StaticFiles):
    """The built scripts and styles: their names carry a hash of their content, so they never change."""

    def __init__(self) -> None:
        super().__init__(directory=DIST, check_dir=False)

    async def get_response(self, path: str, scope: Scope) -> Response:
        if not DIST.is_dir():
            return refusal(404, ErrorCode.NOT_FOUND, "web/ is not built: run `make web`")
        if not path.startswith("assets/"):  # the pages are served at their own addresses, under their policy
            return refusal(404, ErrorCode.NOT_FOUND, "not found")
        response = await super().get_response(path, scope)
        if response.status_code == 200 and path.startswith("assets/"):
            response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response
