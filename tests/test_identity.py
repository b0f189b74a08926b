"""People and sessions: invitations, login per brand, password resets, permissions, keys, branding."""

from __future__ import annotations

import asyncio
import hashlib
import importlib
from collections import Counter
from datetime import timedelta

import pytest
from tortoise import Tortoise

from billing.core import clock
from billing.core.errors import BillingError, ErrorCode
from billing.outbox import emails
from billing.tenants import api_keys, identity, ratelimit
from models.enums import Permission, WorkState
from models.operations import OutboxEvent
from models.tenancy import PartnerUser, PasswordResetToken, WorkspaceUser
from schema.ids import to_global_id
from tests.counting import count_statements
from tests.factories import PLATFORM, a_partner, a_workspace, partner_viewer
from tests.graphql import GraphQLClient
from whitebill.settings import configure_domain, load_settings

pytestmark = pytest.mark.usefixtures("database")

PASSWORD = "correct horse battery"


def as_event(event: OutboxEvent) -> dict[str, object]:
    """An outbox row as the worker hands it to the senders."""
    return {"id": event.id, "event_type": event.event_type, "partner_id": event.partner_id, "payload": event.payload}


async def mailed_token(email: str) -> str:
    """The token in the newest password e-mail to ``email``, made as the e-mail sender makes it (the
    outbox row names the person; the token exists only in the letter and, hashed, in the database)."""
    events = await OutboxEvent.filter(event_type=identity.LINK_EVENT).order_by("-id")
    for event in events:
        if event.payload["to"] == email:
            letter = await emails.letter_for(as_event(event))
            assert letter is not None and letter.secret, f"the e-mail to {email} has no link"
            return letter.secret
    raise AssertionError(f"no password e-mail to {email}")


async def a_partner_admin(email: str = "owner@agency.example") -> tuple[object, PartnerUser]:
    partner = await a_partner()
    new = await identity.invite_partner_user(PLATFORM, partner_id=partner.id, email=email)
    await identity.reset_password(token=await mailed_token(email), new_password=PASSWORD)
    return partner, await PartnerUser.get(id=new.user.id)


async def test_the_first_user_of_a_partner_is_its_admin_and_sets_a_password_by_email() -> None:
    partner, admin = await a_partner_admin()
    assert admin.is_admin and set(admin.permissions) == {p.value for p in partner_viewer(partner).permissions}
    session = await identity.login(
        brand=partner.slug, email="OWNER@agency.example", password=PASSWORD, client_address="10.0.0.1"
    )
    assert session.token.startswith("wbs_")
    viewer = await identity.authenticate_session(session.token)
    assert viewer is not None and viewer.kind == "PARTNER" and viewer.partner_id == partner.id
    second = await identity.invite_partner_user(
        viewer, partner_id=partner.id, email="ops@agency.example", permissions=frozenset({Permission.READ_REPORTS})
    )
    assert not second.user.is_admin and second.user.permissions == ["READ_REPORTS"]


async def test_one_person_can_be_a_client_of_two_brands() -> None:
    brand_a, brand_b = await a_partner("Brand A"), await a_partner("Brand B")
    for brand, password in ((brand_a, "password for A"), (brand_b, "password for B")):
        workspace = await a_workspace(brand)
        await identity.create_workspace_user(
            partner_viewer(brand), workspace_id=workspace.id, email="maria@example.com"
        )
        await identity.reset_password(token=await mailed_token("maria@example.com"), new_password=password)
    assert await WorkspaceUser.filter(email="maria@example.com").count() == 2
    a = await identity.login(
        brand=brand_a.slug, email="maria@example.com", password="password for A", client_address=None
    )
    assert a.viewer.partner_id == brand_a.id and a.viewer.kind == "WORKSPACE"
    with pytest.raises(BillingError) as wrong_brand:
        await identity.login(
            brand=brand_b.slug, email="maria@example.com", password="password for A", client_address=None
        )
    assert wrong_brand.value.code is ErrorCode.INVALID_CREDENTIALS


async def test_login_failures_all_look_the_same() -> None:
    partner, _ = await a_partner_admin()
    messages = set()
    for brand, email, password in (
        (partner.slug, "owner@agency.example", "wrong password"),
        (partner.slug, "nobody@agency.example", PASSWORD),
        ("no-such-brand", "owner@agency.example", PASSWORD),
        (None, "owner@agency.example", PASSWORD),  # not a platform operator
    ):
        with pytest.raises(BillingError) as refused:
            await identity.login(brand=brand, email=email, password=password, client_address=None)
        assert refused.value.code is ErrorCode.INVALID_CREDENTIALS
        messages.add(refused.value.message)
    assert len(messages) == 1


async def test_logins_are_rate_limited_per_email() -> None:
    partner, _ = await a_partner_admin()
    for _ in range(ratelimit.per_email("login").amount):
        with pytest.raises(BillingError) as wrong:
            await identity.login(
                brand=partner.slug, email="owner@agency.example", password="guess", client_address=None
            )
        assert wrong.value.code is ErrorCode.INVALID_CREDENTIALS  # refused for the password, not yet limited
    with pytest.raises(BillingError) as limited:
        await identity.login(brand=partner.slug, email="owner@agency.example", password=PASSWORD, client_address=None)
    assert limited.value.code is ErrorCode.RATE_LIMITED


def spellings_of(partner, email: str) -> list[tuple[str, str]]:
    """Every way one account may be named at sign-in: its brand with spaces, tabs or capitals, or as the
    partner's id, and its e-mail likewise."""
    slug = partner.slug
    brands = [f"{slug} ", f" {slug}", f"{slug}\t", slug.upper(), str(partner.id), f" {partner.id} "]
    emails_ = [email, f" {email.upper()}", f"{email}\t"]
    return [(brand, e) for brand in brands for e in emails_]


async def test_every_spelling_of_a_brand_and_e_mail_shares_one_login_allowance() -> None:
    partner, _ = await a_partner_admin()
    for _ in range(ratelimit.per_email("login").amount):
        with pytest.raises(BillingError) as wrong:
            await identity.login(
                brand=partner.slug, email="owner@agency.example", password="guess", client_address=None
            )
        assert wrong.value.code is ErrorCode.INVALID_CREDENTIALS
    for brand, email in spellings_of(partner, "owner@agency.example"):
        with pytest.raises(BillingError) as limited:
            await identity.login(brand=brand, email=email, password=PASSWORD, client_address=None)
        assert limited.value.code is ErrorCode.RATE_LIMITED, (brand, email)


async def test_every_spelling_of_a_brand_and_e_mail_shares_one_reset_allowance() -> None:
    partner, _ = await a_partner_admin()
    before = await OutboxEvent.filter(event_type=identity.LINK_EVENT).count()
    allowance = ratelimit.per_email("reset").amount
    for _ in range(allowance):
        await identity.request_password_reset(brand=partner.slug, email="owner@agency.example", client_address=None)
    for brand, email in spellings_of(partner, "owner@agency.example"):
        with pytest.raises(BillingError) as limited:
            await identity.request_password_reset(brand=brand, email=email, client_address=None)
        assert limited.value.code is ErrorCode.RATE_LIMITED, (brand, email)
    assert await OutboxEvent.filter(event_type=identity.LINK_EVENT).count() - before == allowance


async def test_one_client_address_however_written_shares_one_allowance(monkeypatch) -> None:
    """An IPv4 client also written as IPv4-mapped IPv6, and an IPv6 client anywhere in its /64."""
    monkeypatch.setenv("WHITEBILL_LOGIN_LIMIT_PER_ADDRESS", "3/minute")
    configure_domain(load_settings())
    partner = await a_partner()
    for spellings in (
        ["10.0.0.1", "::ffff:10.0.0.1", "::FFFF:a00:1", "10.0.0.1"],
        ["2001:db8::1", "2001:DB8::2", "2001:db8:0:0:ffff::3", "2001:0db8:0000:0000:abcd::9"],
    ):
        for attempt, address in enumerate(spellings):
            with pytest.raises(BillingError) as refused:
                await identity.login(
                    brand=partner.slug, email=f"guess{attempt}@agency.example", password="x", client_address=address
                )
            expected = ErrorCode.RATE_LIMITED if attempt == 3 else ErrorCode.INVALID_CREDENTIALS
            assert refused.value.code is expected, address
    # Another /64 is another client.
    with pytest.raises(BillingError) as other:
        await identity.login(brand=partner.slug, email="x@agency.example", password="x", client_address="2001:db8:1::1")
    assert other.value.code is ErrorCode.INVALID_CREDENTIALS


async def test_a_reset_token_works_once() -> None:
    partner, _ = await a_partner_admin()
    await identity.request_password_reset(brand=partner.slug, email="owner@agency.example", client_address=None)
    token = await mailed_token("owner@agency.example")
    await identity.reset_password(token=token, new_password="a brand new password")
    with pytest.raises(BillingError) as reused:
        await identity.reset_password(token=token, new_password="yet another password")
    assert reused.value.code is ErrorCode.INVALID_TOKEN
    await identity.login(
        brand=partner.slug, email="owner@agency.example", password="a brand new password", client_address=None
    )


async def test_concurrent_uses_of_one_reset_token_succeed_once() -> None:
    partner, _ = await a_partner_admin()
    await identity.request_password_reset(brand=partner.slug, email="owner@agency.example", client_address=None)
    token = await mailed_token("owner@agency.example")

    async def use(i: int) -> bool:
        try:
            await identity.reset_password(token=token, new_password=f"new password {i}")
        except BillingError as error:
            assert error.code is ErrorCode.INVALID_TOKEN  # the token already used by the winner
            return False
        return True

    assert (await asyncio.gather(*(use(i) for i in range(5)))).count(True) == 1


async def test_a_reset_token_expires() -> None:
    partner, _ = await a_partner_admin()
    await identity.request_password_reset(brand=partner.slug, email="owner@agency.example", client_address=None)
    token = await mailed_token("owner@agency.example")
    await clock.advance(identity.RESET_LIFETIME + timedelta(minutes=1))
    with pytest.raises(BillingError) as expired:
        await identity.reset_password(token=token, new_password="too late password")
    assert expired.value.code is ErrorCode.INVALID_TOKEN


async def test_a_password_change_ends_sessions_and_pending_reset_tokens() -> None:
    partner, _ = await a_partner_admin()
    session = await identity.login(
        brand=partner.slug, email="owner@agency.example", password=PASSWORD, client_address=None
    )
    await identity.request_password_reset(brand=partner.slug, email="owner@agency.example", client_address=None)
    pending = await mailed_token("owner@agency.example")
    viewer = await identity.authenticate_session(session.token)
    assert viewer is not None
    await identity.change_password(viewer, current=PASSWORD, new="a changed password")
    assert await identity.authenticate_session(session.token) is None
    with pytest.raises(BillingError) as dead:
        await identity.reset_password(token=pending, new_password="should not work")
    assert dead.value.code is ErrorCode.INVALID_TOKEN


async def test_a_reset_request_does_the_same_work_for_a_known_and_an_unknown_email(monkeypatch) -> None:
    """Nothing to time: a known e-mail and an unknown one run the same statements, make the same hash
    calls and write the same shape of outbox row, and neither makes a token. Only the e-mail sender,
    later and out of the requester's sight, finds somebody to write to for one of them."""
    partner, _ = await a_partner_admin()
    tokens = await PasswordResetToken.all().count()
    work = {}
    for email in ("owner@agency.example", "ghost@agency.example"):
        calls: Counter[str] = Counter()

        def counting(name, real):
            def counted(*args, **kwargs):
                calls[name] += 1
                return real(*args, **kwargs)

            return counted

        monkeypatch.setattr(hashlib, "sha256", counting("sha256", hashlib.sha256))
        monkeypatch.setattr(identity, "hash_password", counting("hash_password", identity.hash_password))
        monkeypatch.setattr(identity, "verify_password", counting("verify_password", identity.verify_password))
        statements = count_statements(monkeypatch)
        assert await identity.request_password_reset(brand=partner.slug, email=email, client_address="10.0.0.9") is None
        monkeypatch.undo()
        row = await OutboxEvent.filter(event_type=identity.LINK_EVENT).order_by("-id").first()
        assert row is not None and row.payload["to"] == email
        shape = {key: type(value).__name__ for key, value in row.payload.items() if key != "to"}
        work[email] = (dict(calls), statements["statements"], shape, row.partner_id, row.state)
    assert work["owner@agency.example"] == work["ghost@agency.example"]
    assert work["ghost@agency.example"][0]["sha256"] > 0  # the same hashing happened, it was not skipped
    assert await PasswordResetToken.all().count() == tokens  # a request makes no token: the sender does
    ghost_row, owner_row = await OutboxEvent.filter(event_type=identity.LINK_EVENT).order_by("-id").limit(2)
    assert await emails.letter_for(as_event(ghost_row)) is None
    letter = await emails.letter_for(as_event(owner_row))
    assert letter is not None and letter.to == "owner@agency.example"


async def test_sessions_expire_and_logout_ends_them() -> None:
    partner, _ = await a_partner_admin()
    first = await identity.login(
        brand=partner.slug, email="owner@agency.example", password=PASSWORD, client_address=None
    )
    assert await identity.logout(first.token)
    assert await identity.authenticate_session(first.token) is None
    second = await identity.login(
        brand=partner.slug, email="owner@agency.example", password=PASSWORD, client_address=None
    )
    await clock.advance(identity.SESSION_LIFETIME + timedelta(seconds=1))
    assert await identity.authenticate_session(second.token) is None


async def test_a_revoked_key_stops_working() -> None:
    partner = await a_partner()
    new = await api_keys.create_key(partner_id=partner.id, name="backend")
    assert await api_keys.authenticate(new.secret) is not None
    await new.key.refresh_from_db()
    assert new.key.last_used_at is not None
    await api_keys.revoke_key(partner_viewer(partner), new.key.id)
    assert await api_keys.authenticate(new.secret) is None


# ---------------------------------------------------------------- through the API


async def login_over_api(client: GraphQLClient, brand: str, email: str, password: str) -> GraphQLClient:
    result = await client.data(
        "mutation($b: String, $e: String!, $p: String!) { login(input: {brand: $b, email: $e, password: $p}) {"
        " token viewer { kind email } errors { code } } }",
        {"b": brand, "e": email, "p": password},
    )
    assert result["login"]["errors"] == [], result
    return GraphQLClient(client.base_url, result["login"]["token"])


async def test_a_team_member_without_a_permission_is_refused_naming_it(server) -> None:
    partner, _ = await a_partner_admin()
    admin = await login_over_api(GraphQLClient(server.url), partner.slug, "owner@agency.example", PASSWORD)
    invited = await admin.data(
        'mutation { invitePartnerUser(input: {email: "reader@agency.example", permissions: [READ_REPORTS]}) {'
        " user { id isAdmin permissions } errors { code } } }"
    )
    assert invited["invitePartnerUser"]["user"]["permissions"] == ["READ_REPORTS"]
    await identity.reset_password(token=await mailed_token("reader@agency.example"), new_password=PASSWORD)
    reader = await login_over_api(GraphQLClient(server.url), partner.slug, "reader@agency.example", PASSWORD)
    workspace = await a_workspace(partner)
    refused = await reader.data(
        'mutation($id: ID!) { grantUnits(input: {workspaceId: $id, unit: "POINTS", amount: "5",'
        ' idempotencyKey: "k"}) { errors { code message } } }',
        {"id": to_global_id("Workspace", workspace.id)},
    )
    [error] = refused["grantUnits"]["errors"]
    assert error["code"] == "FORBIDDEN" and "MANAGE_BILLING" in error["message"]
    viewer = await reader.data("{ viewer { kind via email permissions partner { slug } } }")
    assert viewer["viewer"] == {
        "kind": "PARTNER",
        "via": "SESSION",
        "email": "reader@agency.example",
        "permissions": ["READ_REPORTS"],
        "partner": {"slug": partner.slug},
    }
    # The admin grants MANAGE_BILLING; the same session may now grant units.
    granted = await admin.data(
        "mutation($id: ID!) { setPartnerUserPermissions(input: {userId: $id,"
        " permissions: [READ_REPORTS, MANAGE_BILLING]}) { user { permissions } errors { code } } }",
        {"id": invited["invitePartnerUser"]["user"]["id"]},
    )
    assert set(granted["setPartnerUserPermissions"]["user"]["permissions"]) == {"READ_REPORTS", "MANAGE_BILLING"}
    allowed = await reader.data(
        'mutation($id: ID!) { grantUnits(input: {workspaceId: $id, unit: "POINTS", amount: "5",'
        ' idempotencyKey: "k"}) { wallet { balance { amount } } errors { code } } }',
        {"id": to_global_id("Workspace", workspace.id)},
    )
    assert allowed["grantUnits"]["wallet"]["balance"]["amount"] == "5"
    log = await admin.data(
        '{ auditLog(action: "partner_user.permissions") { nodes { actor before after requestId } } }'
    )
    [entry] = log["auditLog"]["nodes"]
    assert entry["before"] == {"permissions": ["READ_REPORTS"]} and entry["requestId"]


async def test_a_workspace_user_sees_only_its_workspace(server) -> None:
    partner = await a_partner()
    mine, other = await a_workspace(partner, name="Mine"), await a_workspace(partner, name="Other")
    await identity.create_workspace_user(partner_viewer(partner), workspace_id=mine.id, email="client@mine.example")
    await identity.reset_password(token=await mailed_token("client@mine.example"), new_password=PASSWORD)
    client = await login_over_api(GraphQLClient(server.url), partner.slug, "client@mine.example", PASSWORD)
    listed = await client.data("{ workspaces { nodes { name } } viewer { kind workspace { name } } }")
    assert listed["workspaces"]["nodes"] == [{"name": "Mine"}]
    assert listed["viewer"] == {"kind": "WORKSPACE", "workspace": {"name": "Mine"}}
    assert (await client.data("query($id: ID!) { node(id: $id) { id } }", {"id": to_global_id("Workspace", other.id)}))[
        "node"
    ] is None
    logout = await client.data("mutation { logout { ok } }")
    assert logout["logout"]["ok"] is True
    after = await client.execute("{ viewer { kind } }")
    assert after["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_the_viewer_says_who_calls_and_with_what_as_enums(server) -> None:
    """kind and via are enums in the schema; a key reads PLATFORM or PARTNER and API_KEY, with no e-mail,
    and logout refuses it (a key is not a session)."""
    introspected = await GraphQLClient(server.url).data(
        '{ kind: __type(name: "ViewerKind") { kind enumValues { name } }'
        ' via: __type(name: "CredentialKind") { kind enumValues { name } }'
        ' viewer: __type(name: "Viewer") { fields { name type { ofType { name } } } } }'
    )
    assert introspected["kind"] == {
        "kind": "ENUM",
        "enumValues": [{"name": "PLATFORM"}, {"name": "PARTNER"}, {"name": "WORKSPACE"}],
    }
    assert introspected["via"] == {"kind": "ENUM", "enumValues": [{"name": "API_KEY"}, {"name": "SESSION"}]}
    types = {f["name"]: f["type"]["ofType"] for f in introspected["viewer"]["fields"]}
    assert types["kind"] == {"name": "ViewerKind"} and types["via"] == {"name": "CredentialKind"}

    partner = await a_partner()
    for owner, kind in ((None, "PLATFORM"), (partner.id, "PARTNER")):
        key = GraphQLClient(server.url, (await api_keys.create_key(partner_id=owner)).secret)
        seen = await key.data("{ viewer { kind via email } }")
        assert seen["viewer"] == {"kind": kind, "via": "API_KEY", "email": None}
        refused = await key.data("mutation { logout { ok errors { code } } }")
        assert refused["logout"] == {"ok": False, "errors": [{"code": "UNAUTHENTICATED"}]}


async def test_revoking_a_key_that_is_not_yours_names_the_key_field(server) -> None:
    mine, other = await a_partner(), await a_partner("Other")
    foreign = await api_keys.create_key(partner_id=other.id)
    agency = GraphQLClient(server.url, (await api_keys.create_key(partner_id=mine.id)).secret)
    refused = await agency.data(
        "mutation($k: ID!) { revokeApiKey(input: {keyId: $k}) { key { id } errors { code field } } }",
        {"k": to_global_id("ApiKey", foreign.key.id)},
    )
    assert refused["revokeApiKey"] == {"key": None, "errors": [{"code": "NOT_FOUND", "field": "keyId"}]}


async def test_branding_is_validated_and_public_by_domain(server) -> None:
    partner = await a_partner()
    key = (await api_keys.create_key(partner_id=partner.id)).secret
    agency = GraphQLClient(server.url, key)
    bad = await agency.data(
        'mutation { updateBranding(input: {logoUrl: "http://insecure.example/logo.png", primaryColor: "red"}) {'
        " errors { code field } } }"
    )
    assert {e["field"] for e in bad["updateBranding"]["errors"]} <= {"logoUrl", "primaryColor"}
    ok = await agency.data(
        'mutation { updateBranding(input: {displayName: "Acme Chat", logoUrl: "https://cdn.acme.example/logo.png",'
        ' primaryColor: "#FF6600", supportEmail: "help@acme.example", customDomain: "chat.acme.example"}) {'
        " branding { displayName primaryColor customDomain } errors { code } } }"
    )
    assert ok["updateBranding"]["branding"] == {
        "displayName": "Acme Chat",
        "primaryColor": "#ff6600",
        "customDomain": "chat.acme.example",
    }
    public = await GraphQLClient(server.url).data(
        '{ branding(domain: "chat.acme.example") { partnerId branding { displayName logoUrl } } }'
    )
    assert public["branding"]["branding"] == {
        "displayName": "Acme Chat",
        "logoUrl": "https://cdn.acme.example/logo.png",
    }
    assert (await GraphQLClient(server.url).data('{ branding(domain: "nobody.example") { partnerId } }'))[
        "branding"
    ] is None
    # The brand's domain is also how its users sign in.
    assert (await identity.find_brand("chat.acme.example")).id == partner.id


async def test_a_platform_operator_signs_in_without_a_brand() -> None:
    await identity.create_platform_user(email="ops@platform.example", password=PASSWORD)
    session = await identity.login(brand=None, email="ops@platform.example", password=PASSWORD, client_address=None)
    assert session.viewer.is_platform and Permission.MANAGE_PARTNERS in session.viewer.permissions


async def test_password_e_mails_written_before_0011_are_scrubbed_of_their_tokens() -> None:
    """Rows from before tokens left the outbox: a sent one keeps its link working, an unsent one loses
    its old token and is sent with a new one; no payload keeps a token."""
    scrub = importlib.import_module("models.migrations.0011_reset_tokens_off_the_outbox").scrub_link_tokens
    partner = await a_partner()
    users = [
        await PartnerUser.create(partner_id=partner.id, email=f"{name}@agency.example", permissions=[])
        for name in ("sent", "unsent")
    ]
    old_tokens = ["token-of-a-sent-e-mail", "token-of-an-unsent-e-mail"]
    for user, token, state in zip(users, old_tokens, (WorkState.DONE, WorkState.PENDING), strict=True):
        await PasswordResetToken.create(
            token_hash=hashlib.sha256(token.encode()).hexdigest(),
            user_kind="PARTNER",
            user_id=user.id,
            partner_id=partner.id,
            expires_at=clock.now() + identity.INVITE_LIFETIME,
        )
        await OutboxEvent.create(
            partner_id=partner.id,
            event_type=identity.LINK_EVENT,
            state=state,
            run_at=clock.now(),
            payload={"to": user.email, "purpose": "invite", "token": token, "user_kind": "PARTNER"},
        )
    assert await scrub(Tortoise.get_connection("default")) == 2
    for event in await OutboxEvent.filter(event_type=identity.LINK_EVENT):
        assert "token" not in event.payload and not any(t in str(event.payload) for t in old_tokens)
    await identity.reset_password(token=old_tokens[0], new_password=PASSWORD)
    with pytest.raises(BillingError) as ended:
        await identity.reset_password(token=old_tokens[1], new_password=PASSWORD)
    assert ended.value.code is ErrorCode.INVALID_TOKEN
    await identity.reset_password(token=await mailed_token("unsent@agency.example"), new_password=PASSWORD)
    assert await scrub(Tortoise.get_connection("default")) == 0  # once is enough
