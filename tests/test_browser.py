"""The browser pages in real Chromium against a real ``whitebill serve`` (and the Asaas fake): GraphiQL runs
a query with no internet, and the reference portal does what a brand's clients and staff need: a client
buys points with pix and sees "paid" and the new balance without reloading; a client of one brand cannot
sign in on another brand's domain; a partner grants units and the client's open page shows them.

Brands are reached by name (``brand-….localhost``): Chromium sends those names to this machine, so each
test's partners have their own origins on the one server. Every page is kept to this machine (see
``tests.browser``): a request elsewhere fails the test. Screenshots of the pages go to docs/screenshots
when WHITEBILL_UPDATE_SCREENSHOTS is set.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from playwright.async_api import expect

from billing.accounts import wallets
from billing.tenants import api_keys
from models.payments import Payment
from models.tenancy import Partner, Workspace
from tests.browser import Tab, chromium
from tests.conftest import Server
from tests.factories import a_client_login, a_partner, a_staff_login, a_workspace, partner_viewer
from tests.graphql import GraphQLClient
from tests.shop import CREATE_PACKAGE
from tests.test_gateway_scenarios import CPF, configure

pytestmark = pytest.mark.usefixtures("database")

PASSWORD = "a long enough password"
BRANDING = """mutation($input: UpdateBrandingInput!) { updateBranding(input: $input) { errors { code message } } }"""
WAIT = 15_000  # ms: a webhook's round trip through the fake and the server, on a busy machine


@dataclass
class Brand:
    partner: Partner
    api: GraphQLClient
    domain: str
    url: str  # the portal on the brand's domain
    workspace: Workspace
    client_email: str


async def a_brand(server: Server, asaas, *, name: str, colour: str) -> Brand:
    """A partner selling a 500-point package by pix through Asaas, with its portal on its own domain and
    one client (who holds 100 points) that signs in there."""
    partner = await a_partner(name)
    api = GraphQLClient(server.url, (await api_keys.create_key(partner_id=partner.id)).secret)
    domain = f"brand-{secrets.token_hex(4)}.localhost"
    branding = {"customDomain": domain, "displayName": name, "primaryColor": colour, "secondaryColor": "#0f9d7a"}
    assert (await api.data(BRANDING, {"input": branding}))["updateBranding"]["errors"] == []
    await configure({"client": api, "asaas": asaas, "server": server}, "asaas", ["PIX", "BOLETO", "CARD"])
    assert (await api.data(CREATE_PACKAGE))["createCreditPackage"]["errors"] == []
    workspace = await a_workspace(partner, name="Padaria Central")
    client_email = f"client-{secrets.token_hex(3)}@padaria.example"
    await a_client_login(partner, workspace, client_email, PASSWORD)
    await wallets.adjust_workspace_balance(
        partner_viewer(partner),
        workspace_id=workspace.id,
        unit="POINTS",
        amount=100,
        note="welcome",
        idempotency_key=f"welcome-{workspace.id}",
    )
    port = server.url.rsplit(":", 1)[1]
    return Brand(partner, api, domain, f"http://{domain}:{port}/portal/", workspace, client_email)


async def sign_in(tab: Tab, url: str, email: str) -> None:
    await tab.page.goto(url)
    await tab.page.fill("[data-test=sign-in] input[name=email]", email)
    await tab.page.fill("[data-test=sign-in] input[name=password]", PASSWORD)
    await tab.page.click("[data-test=sign-in] button[type=submit]")


def kept_to_this_machine(*tabs: Tab) -> None:
    for tab in tabs:
        assert tab.outside == [], f"the page asked for something off this machine: {tab.outside}"
        assert tab.problems == [], tab.problems


async def test_graphiql_runs_a_query_with_no_internet(server: Server, tmp_path: Path) -> None:
    partner = await a_partner("Agência Azul")
    key = (await api_keys.create_key(partner_id=partner.id)).secret
    async with chromium() as browser:
        tab = await browser.tab()
        response = await tab.page.goto(f"{server.url}/graphql")
        assert response is not None and response.ok
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "connect-src 'self'" in policy and "unpkg" not in policy
        await expect(tab.page.locator(".graphiql-container")).to_be_visible(timeout=WAIT)
        await tab.page.get_by_text("Headers", exact=True).click()
        await tab.page.wait_for_function(
            """() => [...document.querySelectorAll('.CodeMirror')].some(
                (e) => e.CodeMirror && e.CodeMirror.getValue().includes('Authorization'))"""
        )
        # Typed into the editors as a person pasting would (CodeMirror's own input path).
        for wanted, text in (
            ("query", "query Me { viewer { kind partner { name } } }"),
            ("Authorization", f'{{"Authorization": "Bearer {key}"}}'),
        ):
            await tab.page.evaluate(
                """(wanted) => {
                    const editors = [...document.querySelectorAll('.CodeMirror')].map((e) => e.CodeMirror);
                    const editor = editors.find((e) => e.getValue().includes(wanted));
                    editor.focus();
                    editor.execCommand('selectAll');
                }""",
                wanted,
            )
            await tab.page.keyboard.insert_text(text)
        await expect(tab.page.locator(".graphiql-query-editor")).to_contain_text("query Me")
        # GraphiQL reads the operation's name from the editor after a pause in typing, as a person makes.
        await tab.page.wait_for_timeout(1000)
        await tab.page.click(".graphiql-execute-button")
        result = tab.page.locator(".graphiql-response")
        await expect(result).to_contain_text('"name": "Agência Azul"', timeout=WAIT)
        await expect(result).to_contain_text('"kind": "PARTNER"')
        await tab.screenshot("graphiql", tmp_path)
        kept_to_this_machine(tab)
        assert key not in tab.page.url


async def test_a_client_buys_points_with_pix_and_the_page_turns_paid_with_the_new_balance_by_itself(
    server: Server, asaas, tmp_path: Path
) -> None:
    brand = await a_brand(server, asaas, name="Agência Roxa", colour="#6d28d9")
    async with chromium() as browser:
        tab = await browser.tab(locale="pt-BR")
        await sign_in(tab, brand.url, brand.client_email)
        page = tab.page
        balance = page.locator("[data-test=balance-POINTS]")
        await expect(balance).to_have_text("100 Pontos", timeout=WAIT)
        await expect(page.locator("[data-test=brand-name]")).to_have_text("Agência Roxa")
        await tab.screenshot("portal-client", tmp_path)
        await page.evaluate("window.stillTheSamePage = true")

        await page.locator("[data-test=buy] select[name=item]").select_option(label="500 points · R$ 50,00")
        await page.select_option("[data-test=buy] select[name=method]", "PIX")
        await page.fill("[data-test=buy] input[name=taxId]", CPF)
        await page.click("[data-test=buy] button[type=submit]")
        await expect(page.locator("[data-test=pix-qr]")).to_be_visible(timeout=WAIT)
        state = page.locator("[data-test=payment-state]")
        await expect(state).to_have_attribute("data-status", "PENDING")
        await expect(page.locator("[data-test=pix-code]")).to_have_value(re.compile("^000201"))
        await tab.screenshot("portal-pix", tmp_path)

        payment = await Payment.filter(payer_key=f"WORKSPACE:{brand.workspace.id}").order_by("-id").first()
        assert payment is not None and payment.provider_ref
        await anyio.to_thread.run_sync(lambda: asaas.pay(payment.provider_ref))  # the payer's bank app

        await expect(state).to_have_attribute("data-status", "SUCCEEDED", timeout=WAIT)
        await expect(state).to_have_text("Pago: obrigado!")
        await expect(balance).to_have_text("600 Pontos", timeout=WAIT)
        await expect(page.locator("[data-test=payments]")).to_contain_text("R$ 50,00")
        assert await page.evaluate("window.stillTheSamePage") is True  # no reload, no navigation
        await tab.screenshot("portal-paid", tmp_path)
        kept_to_this_machine(tab)
    assert await Payment.filter(payer_key=f"WORKSPACE:{brand.workspace.id}").count() == 1


async def test_a_client_of_one_brand_cannot_sign_in_on_another_brands_domain(
    server: Server, asaas, tmp_path: Path
) -> None:
    a = await a_brand(server, asaas, name="Agência A", colour="#b91c1c")
    b = await a_brand(server, asaas, name="Agência B", colour="#1d4ed8")
    async with chromium() as browser:
        tab = await browser.tab()
        await tab.page.goto(b.url)
        await expect(tab.page.locator("[data-test=brand-name]")).to_have_count(0)
        await expect(tab.page.locator("h1")).to_have_text("Agência B", timeout=WAIT)
        await tab.screenshot("portal-sign-in", tmp_path)
        await sign_in(tab, b.url, a.client_email)
        problem = tab.page.locator("[data-test=problem]")
        await expect(problem).to_have_attribute("data-code", "INVALID_CREDENTIALS", timeout=WAIT)
        # Asking for brand A from brand B's page, as a hand-made request would: refused as such.
        answer = await tab.page.evaluate(
            """async ([brand, email, password]) => {
                const query = 'mutation($i: LoginInput!) { login(input: $i) { token errors { code } } }';
                const response = await fetch('/graphql', {method: 'POST', headers: {'Content-Type': 'application/json'},
                  body: JSON.stringify({query, variables: {i: {brand, email, password}}})});
                return (await response.json()).data.login;
            }""",
            [a.domain, a.client_email, PASSWORD],
        )
        assert answer == {"token": None, "errors": [{"code": "FORBIDDEN"}]}
        assert await tab.page.evaluate("sessionStorage.length") == 0
        # On its own brand's domain the same person signs in.
        await sign_in(tab, a.url, a.client_email)
        await expect(tab.page.locator("[data-test=balance-POINTS]")).to_have_text("100 Points", timeout=WAIT)
        kept_to_this_machine(tab)


async def test_a_partner_grants_units_and_the_clients_open_page_shows_them(
    server: Server, asaas, tmp_path: Path
) -> None:
    brand = await a_brand(server, asaas, name="Agência Verde", colour="#047857")
    staff_email = f"staff-{secrets.token_hex(3)}@agency.example"
    await a_staff_login(brand.partner, staff_email, PASSWORD)
    async with chromium() as browser:
        client = await browser.tab(locale="pt-BR")
        await sign_in(client, brand.url, brand.client_email)
        balance = client.page.locator("[data-test=balance-POINTS]")
        await expect(balance).to_have_text("100 Pontos", timeout=WAIT)
        await client.page.evaluate("window.stillTheSamePage = true")

        staff = await browser.tab()
        await sign_in(staff, brand.url, staff_email)
        rows = staff.page.locator("[data-test=workspace-row]")
        await expect(rows).to_have_count(1, timeout=WAIT)
        await expect(rows.first).to_contain_text("Padaria Central")
        await staff.screenshot("portal-dashboard", tmp_path)
        await rows.first.get_by_role("link").click()
        adjust = staff.page.locator("[data-test=adjust]")
        await adjust.locator("select[name=unit]").select_option("POINTS")
        await adjust.locator("input[name=amount]").fill("250")
        await adjust.locator("input[name=note]").fill("campaign bonus")
        await adjust.get_by_role("button", name="Grant").click()
        await expect(staff.page.locator(".ledger")).to_contain_text("campaign bonus", timeout=WAIT)
        await expect(staff.page.locator("[data-test=balance-POINTS]")).to_have_text("350 Points")
        await staff.screenshot("portal-workspace", tmp_path)

        await expect(balance).to_have_text("350 Pontos", timeout=WAIT)
        assert await client.page.evaluate("window.stillTheSamePage") is True

        # The staff's other pages: the gateway (with the address to give Asaas) and webhook deliveries.
        await staff.page.get_by_role("link", name="Payment gateway").click()
        gateways = staff.page.locator(".gateways")
        await expect(gateways).to_contain_text("asaas", timeout=WAIT)
        await expect(gateways).to_contain_text("/webhooks/asaas/")
        await staff.page.get_by_role("link", name="Webhook deliveries").click()
        await expect(staff.page.locator("main h2")).to_have_text("Webhook deliveries", timeout=WAIT)
        kept_to_this_machine(client, staff)
