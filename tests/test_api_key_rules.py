"""API keys' rules live in the service, so the command line, the API and the worker obey the same ones:
a key never holds a permission its creator lacks, nor one its owner cannot hold; named no permissions,
it gets what its creator holds, as far as its owner can hold it. The command line acts as the platform
operator, and names a partner by its database id or by the API's global id."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from billing.core.errors import BillingError, ErrorCode
from billing.core.tenancy import Viewer
from billing.tenants import api_keys
from models.enums import PARTNER_PERMISSIONS, PLATFORM_PERMISSIONS, Permission
from models.operations import AuditLog
from models.tenancy import ApiKey
from schema.ids import to_global_id
from tests.factories import a_partner
from tests.test_cli import whitebill

on_both_databases = pytest.mark.usefixtures("database")

P = Permission


def a_partner_member(partner_id: int, *permissions: Permission) -> Viewer:
    return Viewer(kind="PARTNER", actor="user:PARTNER:7", partner_id=partner_id, permissions=frozenset(permissions))


async def held(new: api_keys.NewKey) -> frozenset[Permission]:
    viewer = await api_keys.authenticate(new.secret)
    assert viewer is not None
    return viewer.permissions


@on_both_databases
async def test_the_command_line_operator_may_give_a_key_all_its_owner_can_hold() -> None:
    partner = await a_partner()
    cli = api_keys.operator("cli")
    assert await held(await api_keys.create_key(partner_id=None, creator=cli)) == PLATFORM_PERMISSIONS
    assert await held(await api_keys.create_key(partner_id=partner.id, creator=cli)) == PARTNER_PERMISSIONS
    product = await api_keys.create_key(partner_id=None, permissions=frozenset({P.REPORT_USAGE}), creator=cli)
    assert await held(product) == {P.REPORT_USAGE}
    # What the owner cannot hold stays refused, even to the operator: only the platform's product reports usage.
    with pytest.raises(BillingError) as refused:
        await api_keys.create_key(partner_id=partner.id, permissions=frozenset({P.REPORT_USAGE}), creator=cli)
    assert refused.value.code is ErrorCode.FORBIDDEN and "REPORT_USAGE" in refused.value.message


@on_both_databases
async def test_a_key_never_holds_a_permission_its_creator_lacks() -> None:
    partner = await a_partner()
    reader = a_partner_member(partner.id, P.MANAGE_USERS, P.READ_REPORTS)
    before = await ApiKey.all().count()
    for asked in ({P.MANAGE_BILLING}, {P.READ_REPORTS, P.CONFIGURE_GATEWAY}):
        with pytest.raises(BillingError) as refused:
            await api_keys.create_key(partner_id=partner.id, permissions=frozenset(asked), creator=reader)
        assert (refused.value.code, refused.value.field) == (ErrorCode.FORBIDDEN, "permissions")
        assert "creator lacks" in refused.value.message
    # A platform caller is held to what it holds too: the operator is only allowed more because it holds more.
    partners_only = Viewer(kind="PLATFORM", actor="user:PLATFORM:2", permissions=frozenset({P.MANAGE_PARTNERS}))
    with pytest.raises(BillingError) as refused:
        await api_keys.create_key(partner_id=None, permissions=frozenset({P.MANAGE_CATALOG}), creator=partners_only)
    assert refused.value.code is ErrorCode.FORBIDDEN
    assert await ApiKey.all().count() == before  # nothing was made


@on_both_databases
async def test_named_no_permissions_a_key_gets_what_its_creator_holds_as_far_as_its_owner_can_hold_it() -> None:
    partner = await a_partner()
    reader = a_partner_member(partner.id, P.MANAGE_USERS, P.READ_REPORTS)
    new = await api_keys.create_key(partner_id=partner.id, name="reports", creator=reader)
    assert await held(new) == {P.MANAGE_USERS, P.READ_REPORTS}
    record = await AuditLog.get(action="api_key.create", target_id=str(new.key.id))
    assert record.actor == reader.actor  # the creator, not "cli"

    platform_admin = Viewer(kind="PLATFORM", actor="user:PLATFORM:1", permissions=PLATFORM_PERMISSIONS)
    for_partner = await api_keys.create_key(partner_id=partner.id, creator=platform_admin)
    assert await held(for_partner) == PARTNER_PERMISSIONS  # not MANAGE_PARTNERS, MANAGE_CATALOG, REPORT_USAGE

    # A creator holding nothing the owner can hold would make an empty key: refused.
    partners_only = Viewer(kind="PLATFORM", actor="user:PLATFORM:2", permissions=frozenset({P.MANAGE_PARTNERS}))
    with pytest.raises(BillingError) as refused:
        await api_keys.create_key(partner_id=partner.id, creator=partners_only)
    assert (refused.value.code, refused.value.field) == (ErrorCode.INVALID_INPUT, "permissions")


def test_the_command_line_names_a_partner_by_its_global_id_and_refuses_a_bad_one_in_one_line(tmp_path: Path) -> None:
    database = tmp_path / "keys.sqlite3"
    env = {"DATABASE_URL": f"sqlite://{database}"}
    assert whitebill("migrate", env=env).returncode == 0
    demo = whitebill("demo", env=env)
    assert demo.returncode == 0, demo.stderr
    printed = re.search(r"\(id (\S+)\)", demo.stdout)
    assert printed is not None and printed.group(1) == to_global_id("Partner", 1) == "UGFydG5lcjox"

    for given in ("UGFydG5lcjox", "1"):
        made = whitebill("api-key", "create", "--partner", given, "--permissions", "READ_REPORTS", env=env)
        assert made.returncode == 0, made.stderr
        prefix = made.stdout.strip().split("_")[1]
        with sqlite3.connect(database) as db:
            row = db.execute("SELECT partner_id, is_platform, permissions FROM api_key WHERE prefix = ?", (prefix,))
            assert row.fetchone() == (1, 0, '["READ_REPORTS"]')

    for bad in ("not-an-id", to_global_id("Workspace", 1), "0", "UGFydG5lcjo=", "é"):
        refused = whitebill("api-key", "create", "--partner", bad, env=env)
        assert refused.returncode == 2, (bad, refused.stdout)
        assert refused.stdout == "" and "Traceback" not in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert "not a partner id" in refused.stderr and repr(bad) in refused.stderr
    unknown = whitebill("api-key", "create", "--partner", to_global_id("Partner", 999), env=env)
    assert unknown.returncode == 2 and unknown.stderr.strip() == "whitebill: partner not found"
