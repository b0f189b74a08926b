"""CORS by brand, against a real uvicorn process: preflights for any listed origin, answers readable only
by a page of the caller's partner or the platform's, websocket upgrades checked the same way, and a
sign-in refused on a page of another brand."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import websockets

from billing.core.errors import BillingError, ErrorCode
from billing.tenants import api_keys, origins
from models.tenancy import Branding, Partner
from tests.conftest import Backend, Server, as_production, serving
from tests.factories import a_client_login, a_partner, a_workspace
from tests.graphql import GraphQLClient
from whitebill.settings import configure_domain, load_settings

pytestmark = pytest.mark.usefixtures("database")

PLATFORM_PAGE = "https://console.platform.example"
PASSWORD = "a long client password"
BRANDING = """mutation($input: UpdateBrandingInput!) {
  updateBranding(input: $input) { branding { customDomain allowedOrigins } errors { code field message } }
}"""
LOGIN = """mutation($brand: String) {
  login(input: {email: "client@a.example", password: "a long client password", brand: $brand}) { token errors { code } }
}"""


@pytest.fixture(scope="module")
def cors_server(backend: Backend, providers: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("cors") / f"{backend.name}.log"
    with serving(backend, log, extra_env={"WHITEBILL_CORS_ORIGINS": PLATFORM_PAGE}) as started:
        yield started


@dataclass
class Brand:
    partner_id: int
    key: str
    domain: str
    listed: str  # an origin in its allowedOrigins

    @property
    def page(self) -> str:
        return f"https://{self.domain}"


async def a_brand(server: Server) -> Brand:
    """A partner with a custom domain and one more listed origin, set through the API (so the server's
    directory of origins hears of it at once)."""
    partner = await a_partner()
    key = (await api_keys.create_key(partner_id=partner.id)).secret
    name = secrets.token_hex(4)
    domain, listed = f"brand-{name}.example", f"https://app.agency-{name}.example:8443"
    data = await GraphQLClient(server.url, key).data(
        BRANDING, {"input": {"customDomain": domain, "allowedOrigins": [listed, f"{listed}/"]}}
    )
    assert data["updateBranding"] == {
        "branding": {"customDomain": domain, "allowedOrigins": [listed]},
        "errors": [],
    }
    return Brand(partner.id, key, domain, listed)


async def preflight(server: Server, path: str, origin: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url) as http:
        return await http.options(
            path,
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )


async def ask(server: Server, origin: str, key: str | None, query: str = "{ __typename }") -> httpx.Response:
    headers = {"Origin": origin}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    async with httpx.AsyncClient(base_url=server.url) as http:
        return await http.post("/graphql", json={"query": query}, headers=headers)


@pytest.mark.parametrize("path", ["/graphql", "/usage", "/reports/usage.csv"])
async def test_a_preflight_from_a_listed_origin_is_allowed_and_from_any_other_is_not(
    cors_server: Server, path: str
) -> None:
    brand = await a_brand(cors_server)
    for origin in (brand.page, brand.listed, PLATFORM_PAGE, f"http://{brand.domain}:5173"):
        answer = await preflight(cors_server, path, origin)
        assert answer.status_code == 200, (origin, answer.text)
        assert answer.headers["access-control-allow-origin"] == origin
        assert "POST" in answer.headers["access-control-allow-methods"]
        assert "authorization" in answer.headers["access-control-allow-headers"].lower()
        assert "access-control-allow-credentials" not in answer.headers
    for origin in (
        "https://evil.example",
        f"https://{brand.domain}.evil.example",
        f"https://evil-{brand.domain}",
        "null",
        brand.listed.replace(":8443", ":9443"),  # the listed origin's host, another port
        brand.listed.replace("https:", "http:"),
    ):
        answer = await preflight(cors_server, path, origin)
        assert answer.status_code == 400, origin
        assert "access-control-allow-origin" not in answer.headers, origin
        assert answer.json()["errors"][0]["code"] == "FORBIDDEN", origin


async def test_an_answer_is_readable_only_by_a_page_of_the_callers_partner_or_the_platform(
    cors_server: Server,
) -> None:
    a, b = await a_brand(cors_server), await a_brand(cors_server)
    platform_key = (await api_keys.create_key(partner_id=None)).secret

    def allowed(answer: httpx.Response) -> str | None:
        assert answer.status_code == 200, answer.text
        return answer.headers.get("access-control-allow-origin")

    assert allowed(await ask(cors_server, a.page, a.key)) == a.page
    assert allowed(await ask(cors_server, a.listed, a.key)) == a.listed
    assert allowed(await ask(cors_server, PLATFORM_PAGE, a.key)) == PLATFORM_PAGE
    assert allowed(await ask(cors_server, PLATFORM_PAGE, platform_key)) == PLATFORM_PAGE
    # Another partner's credentials, or the platform's, on a partner's page: the page may not read it.
    assert allowed(await ask(cors_server, a.page, b.key)) is None
    assert allowed(await ask(cors_server, a.listed, platform_key)) is None
    # Nothing sent but the public: any listed page reads it (a login page styles itself first).
    public = f"{{ branding(domain: {json.dumps(a.domain)}) {{ branding {{ displayName }} }} }}"
    assert allowed(await ask(cors_server, b.page, None, public)) == b.page
    assert allowed(await ask(cors_server, "https://evil.example", None, public)) is None
    assert allowed(await ask(cors_server, "https://evil.example", a.key)) is None


async def test_a_sign_in_on_a_page_of_another_brand_is_forbidden(cors_server: Server) -> None:
    a, b = await a_brand(cors_server), await a_brand(cors_server)
    partner = await Partner.get(id=a.partner_id)
    await a_client_login(partner, await a_workspace(partner), "client@a.example", PASSWORD)

    def login(answer: httpx.Response) -> tuple[str | None, bool]:
        payload = answer.json()["data"]["login"]
        return (payload["errors"] or [{"code": None}])[0]["code"], payload["token"] is not None

    async def sign_in(origin: str, brand: str | None) -> httpx.Response:
        async with httpx.AsyncClient(base_url=cors_server.url) as http:
            return await http.post(
                "/graphql", json={"query": LOGIN, "variables": {"brand": brand}}, headers={"Origin": origin}
            )

    assert login(await sign_in(b.page, a.domain)) == ("FORBIDDEN", False)
    assert login(await sign_in(b.listed, str(a.partner_id))) == ("FORBIDDEN", False)
    assert login(await sign_in(a.page, None)) == ("FORBIDDEN", False)  # the platform's sign-in on a brand's page
    assert login(await sign_in(b.page, "no-such-brand")) == ("FORBIDDEN", False)
    assert login(await sign_in(a.page, a.domain)) == (None, True)
    assert login(await sign_in(PLATFORM_PAGE, a.domain)) == (None, True)


async def test_a_websocket_from_an_unlisted_origin_or_with_another_partners_credentials_is_refused(
    cors_server: Server,
) -> None:
    a, b = await a_brand(cors_server), await a_brand(cors_server)
    url = cors_server.url.replace("http://", "ws://") + "/graphql"

    async def opened(origin: str, key: str) -> str:
        try:
            async with websockets.connect(
                url, subprotocols=["graphql-transport-ws"], additional_headers={"Origin": origin}
            ) as socket:
                init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {key}"}}
                await socket.send(json.dumps(init))
                try:
                    return json.loads(await socket.recv())["type"]
                except websockets.ConnectionClosed as closed:
                    return f"closed {closed.rcvd.code if closed.rcvd else None}"
        except websockets.InvalidStatus as refused:
            return f"refused {refused.response.status_code}"

    assert await opened(a.page, a.key) == "connection_ack"
    assert await opened(PLATFORM_PAGE, b.key) == "connection_ack"
    assert await opened("https://evil.example", a.key) == "refused 403"
    assert await opened(a.listed, b.key) == "closed 4403"


def test_origins_are_checked_as_a_browser_sends_them(monkeypatch: pytest.MonkeyPatch) -> None:
    assert origins.check_origin(" HTTPS://App.Example.com ", "f", production=True) == "https://app.example.com"
    assert origins.check_origin("https://app.example.com:443", "f", production=True) == "https://app.example.com"
    assert origins.check_origin("https://app.example.com/", "f", production=True) == "https://app.example.com"
    assert origins.check_origin("http://localhost:5173", "f", production=False) == "http://localhost:5173"
    for bad in (
        "http://app.example.com",  # http in production
        "https://app.example.com/path",
        "https://user@app.example.com",
        "https://app.example.com?x=1",
        "javascript:alert(1)",
        "https://",
        "app.example.com",
        "https://app.example.com:99999",
        "https://app\u00e9.example.com",
        "https://app.example.com\x00",
    ):
        with pytest.raises(BillingError) as refused:
            origins.check_origin(bad, "allowedOrigins", production=True)
        assert refused.value.code is ErrorCode.INVALID_INPUT and refused.value.field == "allowedOrigins", bad
    with pytest.raises(BillingError):
        origins.check_allowed_origins([f"https://a{n}.example" for n in range(origins.MAX_ALLOWED_ORIGINS + 1)])
    monkeypatch.setenv("WHITEBILL_CORS_ORIGINS", "https://a.example, http://b.example")
    as_production(monkeypatch)
    with pytest.raises(ValueError, match="WHITEBILL_CORS_ORIGINS"):
        load_settings()
    monkeypatch.setenv("WHITEBILL_ENV", "development")
    assert load_settings().cors_origins == ("https://a.example", "http://b.example")


async def test_in_production_a_custom_domain_is_an_origin_only_over_https_on_its_default_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    partner = await a_partner()
    partner.domain = f"brand-{secrets.token_hex(4)}.example"
    await partner.save()
    other_port = f"https://{partner.domain}:8443"
    await Branding.filter(partner_id=partner.id).update(allowed_origins=[other_port])
    origins.forget()
    as_production(monkeypatch)
    configure_domain(load_settings())
    try:
        assert await origins.owner_of(f"https://{partner.domain}") == origins.Owner(partner.id)
        assert await origins.owner_of(f"https://{partner.domain}:443") == origins.Owner(partner.id)
        assert await origins.owner_of(f"http://{partner.domain}") is None
        assert await origins.owner_of(f"https://{partner.domain}:9443") is None
        assert await origins.owner_of(other_port) == origins.Owner(partner.id)  # listed by the domain's owner
    finally:
        monkeypatch.setenv("WHITEBILL_ENV", "test")
        configure_domain(load_settings())
    assert await origins.owner_of(f"http://{partner.domain}:8000") == origins.Owner(partner.id)


async def test_a_partner_cannot_list_another_partners_domain_or_listed_origin(cors_server: Server) -> None:
    a, b = await a_brand(cors_server), await a_brand(cors_server)
    api = GraphQLClient(cors_server.url, b.key)
    for taken in (a.page, f"http://{a.domain}:5173", a.listed):
        data = await api.data(BRANDING, {"input": {"allowedOrigins": [b.listed, taken]}})
        assert data["updateBranding"]["errors"] == [
            {"code": "ALREADY_EXISTS", "field": "allowedOrigins", "message": f"{taken} belongs to another partner"}
        ]
    # Nothing changed: A's pages are still A's, and only A's credentials may be read there.
    assert (await ask(cors_server, a.page, a.key)).headers.get("access-control-allow-origin") == a.page
    assert "access-control-allow-origin" not in (await ask(cors_server, a.listed, b.key)).headers
    data = await api.data(BRANDING, {"input": {"allowedOrigins": [b.listed, f"http://{b.domain}:5173"]}})
    assert data["updateBranding"]["errors"] == []


async def test_a_partner_cannot_take_a_domain_on_which_another_partner_lists_its_pages(cors_server: Server) -> None:
    a, b = await a_brand(cors_server), await a_brand(cors_server)
    taken = b.listed.removeprefix("https://").split(":")[0]
    data = await GraphQLClient(cors_server.url, a.key).data(BRANDING, {"input": {"customDomain": taken}})
    assert data["updateBranding"]["errors"] == [
        {"code": "ALREADY_EXISTS", "field": "customDomain", "message": "another partner's pages are on that domain"}
    ]
    assert (await ask(cors_server, b.listed, b.key)).headers.get("access-control-allow-origin") == b.listed
    # Nor may a partner list this server's own origin (its public URL's), whose pages are the platform's.
    own = load_settings().public_url
    data = await GraphQLClient(cors_server.url, a.key).data(BRANDING, {"input": {"allowedOrigins": [own]}})
    assert [e["code"] for e in data["updateBranding"]["errors"]] == ["ALREADY_EXISTS"]


async def test_usage_and_reports_answers_are_readable_only_by_the_callers_pages_and_vary_on_credentials(
    cors_server: Server,
) -> None:
    a, b = await a_brand(cors_server), await a_brand(cors_server)
    async with httpx.AsyncClient(base_url=cors_server.url) as http:
        for key, allowed in ((a.key, a.page), (b.key, None)):
            headers = {"Origin": a.page, "Authorization": f"Bearer {key}"}
            usage = await http.post("/usage", json={"events": []}, headers=headers)
            report = await http.get("/reports/wcc-deductions.csv", params={"month": "2026-11"}, headers=headers)
            for answer in (usage, report):
                assert answer.headers.get("access-control-allow-origin") == allowed, answer.text
                assert "Authorization" in answer.headers["vary"] and "Origin" in answer.headers["vary"]


async def test_a_password_reset_asked_on_another_brands_page_is_forbidden(cors_server: Server) -> None:
    a, b = await a_brand(cors_server), await a_brand(cors_server)
    reset = """mutation($brand: String) { requestPasswordReset(input: {email: "x@a.example", brand: $brand}) {
      ok errors { code } } }"""
    async with httpx.AsyncClient(base_url=cors_server.url) as http:
        for origin, code in ((b.page, "FORBIDDEN"), (a.page, None)):
            body = {"query": reset, "variables": {"brand": a.domain}}
            payload = (await http.post("/graphql", json=body, headers={"Origin": origin})).json()["data"]
            errors = payload["requestPasswordReset"]["errors"]
            assert (errors[0]["code"] if errors else None) == code


async def test_websockets_without_an_origin_or_from_this_servers_own_pages_connect(cors_server: Server) -> None:
    a = await a_brand(cors_server)
    platform_key = (await api_keys.create_key(partner_id=None)).secret
    url = cors_server.url.replace("http://", "ws://") + "/graphql"

    async def opened(headers: dict[str, str], key: str) -> str:
        async with websockets.connect(url, subprotocols=["graphql-transport-ws"], additional_headers=headers) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {key}"}}))
            try:
                return json.loads(await ws.recv())["type"]
            except websockets.ConnectionClosed as closed:
                return f"closed {closed.rcvd.code if closed.rcvd else None}"

    assert await opened({}, a.key) == "connection_ack"  # not a browser
    assert await opened({"Origin": cors_server.url}, platform_key) == "connection_ack"  # GraphiQL, here
    assert await opened({"Origin": a.page}, platform_key) == "closed 4403"  # the platform's key on A's page


async def test_the_public_branding_does_not_list_a_partners_origins(cors_server: Server) -> None:
    a = await a_brand(cors_server)
    public = f"{{ branding(domain: {json.dumps(a.domain)}) {{ branding {{ customDomain allowedOrigins }} }} }}"
    data = await GraphQLClient(cors_server.url).data(public)
    assert data["branding"]["branding"] == {"customDomain": a.domain, "allowedOrigins": None}


async def test_built_pages_are_served_only_at_their_addresses_under_their_policy(cors_server: Server) -> None:
    from whitebill.web import DIST

    if not (DIST / "portal" / "index.html").is_file():
        pytest.skip("web/ is not built (make web)")
    async with httpx.AsyncClient(base_url=cors_server.url) as http:
        for copy in ("/ui/portal/index.html", "/ui/graphiql/index.html", "/ui/.built"):
            assert (await http.get(copy)).status_code == 404, copy
        page = await http.get("/portal/")
        assert page.status_code == 200 and "frame-ancestors 'none'" in page.headers["content-security-policy"]
        asset = page.text.split('src="')[1].split('"')[0]
        served = await http.get(asset)
        assert served.status_code == 200 and "immutable" in served.headers["cache-control"]
