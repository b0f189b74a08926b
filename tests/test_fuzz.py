"""Fuzzing the whole GraphQL schema with Schemathesis, as the platform operator and as a partner, and
the HTTP boundary with raw bodies that are not GraphQL-shaped at all.

The schema is read from the running server, so every query and mutation field is fuzzed, including
ones added later. Each gets a bounded, reproducible run of generated requests (Hypothesis with a
fixed seed per caller and operation, no example database). Refusals are fine: validation errors, errors with a domain
code, typed payload errors. What must never happen is an HTTP 5xx or a masked unexpected error (a
GraphQL error whose extensions.code is INTERNAL_ERROR); either fails the test with the query, the
response and the server's log lines for that request.

The raw HTTP fuzz sends random bytes, JSON scalars and arrays, huge and deeply nested bodies, NUL
bytes, invalid UTF-8 and wrong content types to /graphql, /usage, the report downloads and the
webhook route: never a 5xx, every 4xx is JSON with a code, and the connection is never dropped.

Schemathesis' own "GraphQL server error" check is not used: it fires on every intended domain error.
Most ids, amounts, units and e-mails are drawn from dictionaries of real ids and plausible values
(seeded below), so that requests get past "not found" and "not a decimal" into the code behind.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import uuid
import zlib
from dataclasses import dataclass, field

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis.config import SchemathesisConfig
from schemathesis.generation.case import Case
from schemathesis.schemas import APIOperation, BaseSchema

from billing.accounts import wallets
from billing.core.money import Money
from billing.sales import purchases
from billing.tenants import api_keys
from models.enums import Permission
from models.tenancy import Project
from models.wallets import LedgerEntry
from schema.ids import encode_cursor, to_global_id
from tests.factories import a_partner, a_workspace, partner_viewer

pytestmark = pytest.mark.usefixtures("database")

# Examples per operation and caller, at most MAX_EXAMPLES, fewer when the schema grows, so that
# the whole file (2 callers x 2 backends) stays well under a minute.
MAX_EXAMPLES = 10
REQUESTS_PER_CALLER = 200
MIN_EXAMPLES = 3
MAX_REPORTED = 3  # problems shown per operation and caller


@dataclass(frozen=True)
class Caller:
    name: str
    token: str


@dataclass(frozen=True)
class Problem:
    caller: str
    operation: str
    query: str
    status: int
    body: str
    request_id: str


@dataclass
class Outcome:
    requests: int = 0
    problems: list[Problem] = field(default_factory=list)


@dataclass(frozen=True)
class Seed:
    platform: Caller
    partner: Caller
    dictionaries: dict[str, list[str | int]]


async def seed() -> Seed:
    """Two partners, three workspaces, granted wallets, a manual purchase, and API keys."""
    partner = await a_partner("Fuzz Agency")
    other = await a_partner("Other Agency")
    viewer = partner_viewer(partner)
    first = await a_workspace(partner, "Padaria", "dono@padaria.example")
    second = await a_workspace(partner, "Loja", "contato@loja.example")
    foreign = await a_workspace(other, "Foreign", "x@foreign.example")
    grant = await wallets.adjust_workspace_balance(
        viewer, workspace_id=first.id, unit="POINTS", amount=500, note="welcome", idempotency_key="seed-grant"
    )
    foreign_grant = await wallets.adjust_workspace_balance(
        partner_viewer(other), workspace_id=foreign.id, unit="POINTS", amount=7, note="", idempotency_key="seed-other"
    )
    purchase = await purchases.record_manual_purchase(
        viewer,
        workspace_id=second.id,
        unit="BRL",
        quantity=4990,
        price=Money(4990, "BRL"),
        note="seed",
        idempotency_key="seed-purchase",
    )
    projects = await Project.filter(workspace_id__in=[first.id, second.id, foreign.id]).values_list("id", flat=True)
    entries = await LedgerEntry.filter(wallet_id=grant.wallet_id).values_list("id", flat=True)
    platform = await api_keys.create_key(partner_id=None, name="fuzz-platform")
    agency = await api_keys.create_key(partner_id=partner.id, name="fuzz-partner")
    # Keys the fuzzer may revoke: never the ones it calls with.
    spare = [await api_keys.create_key(partner_id=owner, name="spare") for owner in (None, partner.id, other.id)]
    partners = [to_global_id("Partner", p.id) for p in (partner, other)]
    workspaces = [to_global_id("Workspace", w.id) for w in (first, second, foreign)]
    wallet_ids = [to_global_id("Wallet", w) for w in (grant.wallet_id, purchase.wallet_id, foreign_grant.wallet_id)]
    keys = [to_global_id("ApiKey", k.key.id) for k in spare]
    others = [
        *(to_global_id("Project", p) for p in projects),
        to_global_id("Payment", purchase.payment_id),
        *(to_global_id("LedgerEntry", e) for e in entries),
    ]
    missing = [to_global_id("Workspace", 999_999), to_global_id("Wallet", 0), "not-an-id"]
    # NUL written as \u0000 in a string literal: PostgreSQL cannot store it, so the API must refuse it
    # (it does in JSON variables, with a 400) rather than fail with an unexpected error.
    dictionaries: dict[str, list[str | int]] = {
        "ids": [*partners, *workspaces, *wallet_ids, *keys, *others, *missing],
        "partners": [*partners, *missing],
        "workspaces": [*workspaces, *missing],
        "wallets": [*wallet_ids, *missing],
        "keys": [*keys, *missing],
        "page_sizes": [1, 2, 5, 20, 100, 0, -1, 101],
        "cursors": [encode_cursor(1), encode_cursor(3), encode_cursor(2**63 - 1), "bogus"],
        "amounts": ["1", "7", "500", "49.90", "0", " 7 ", "0.001", "-1", "1e3", "99999999999999999999999"],
        "units": ["POINTS", "POINTS", "MESSAGE_CREDITS", "SEATS", "BRL", "USD", "JPY", "points", "XYZ"],
        "currencies": ["BRL", "USD", "JPY", "brl", "XYZ"],
        "emails": ["dono@padaria.example", "DONO@PADARIA.EXAMPLE", "x@foreign.example", "no-at", "a\x00@b.example"],
        "brands": [partner.slug, other.slug, str(partner.id), "unknown.example", "nul\x00.example"],
        "actions": ["wallet.grant", "api_key.create", "wallet\x00grant"],
    }
    return Seed(Caller("platform", platform.secret), Caller("partner", agency.secret), dictionaries)


# Argument paths (Type.field.argument, `*` for any) -> the dictionary they draw from, and how often.
# Real ids most of the time, so that requests get past "not found" to the code behind.
BINDINGS = {
    "*.*.first": ("page_sizes", 0.8),
    "*.*.after": ("cursors", 0.5),
    "Query.node.id": ("ids", 0.8),
    "Query.workspaces.ownerEmail": ("emails", 0.6),
    "Query.workspaceUsers.workspaceId": ("workspaces", 0.8),
    "Query.auditLog.action": ("actions", 0.6),
    "Query.branding.domain": ("brands", 0.6),
    "*.*.input.workspaceId": ("workspaces", 0.8),
    "*.*.input.walletId": ("wallets", 0.8),
    "*.*.input.partnerId": ("partners", 0.8),
    "*.*.input.keyId": ("keys", 0.8),
    "*.*.input.userId": ("ids", 0.5),
    "*.*.input.amount": ("amounts", 0.8),
    "*.*.input.quantity": ("amounts", 0.8),
    "*.*.input.priceAmount": ("amounts", 0.8),
    "*.*.input.creditLimit": ("amounts", 0.8),
    "*.*.input.unit": ("units", 0.8),
    "*.*.input.priceCurrency": ("currencies", 0.8),
    "*.*.input.defaultCurrency": ("currencies", 0.6),
    "*.*.input.ownerEmail": ("emails", 0.6),
    "*.*.input.email": ("emails", 0.6),
    "*.*.input.brand": ("brands", 0.6),
}


def config_for(data: Seed) -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "dictionaries": {name: {"values": values} for name, values in data.dictionaries.items()},
            "parameters": {
                path: {"dictionary": name, "probability": probability} for path, (name, probability) in BINDINGS.items()
            },
        }
    )


def is_internal_error(body: object) -> bool:
    if not isinstance(body, dict):
        return False
    return any(
        isinstance(error, dict) and (error.get("extensions") or {}).get("code") == "INTERNAL_ERROR"
        for error in body.get("errors") or ()
    )


def fuzz_operation(
    operation: APIOperation, examples: int, caller: Caller, base_url: str, session: requests.Session, out: Outcome
) -> None:
    """A bounded, reproducible run of generated requests for one operation; blocking."""
    reported = 0

    # Reproducible: a fixed seed per caller and operation (it takes precedence over derandomize), so
    # that the two callers do not send the very same queries.
    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.generate],  # no shrinking: problems are recorded, not raised
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @hypothesis.seed(zlib.crc32(f"{caller.name} {operation.label}".encode()))
    @hypothesis.given(case=operation.as_strategy())
    def check(case: Case) -> None:
        nonlocal reported
        rid = uuid.uuid4().hex  # ties the response to the server's log lines
        response = case.call(
            base_url=base_url,
            session=session,
            headers={"Authorization": f"Bearer {caller.token}", "X-Request-ID": rid},
            timeout=30,
        )
        out.requests += 1
        try:
            body = response.json()
        except ValueError:
            body = None
        if (response.status_code >= 500 or is_internal_error(body)) and reported < MAX_REPORTED:
            reported += 1
            out.problems.append(
                Problem(caller.name, operation.label, str(case.body), response.status_code, response.text, rid)
            )

    check()


def fuzz(schema: BaseSchema, caller: Caller, base_url: str, out: Outcome) -> None:
    """Every query and mutation field in turn; blocking."""
    operations = [result.ok() for result in schema.get_all_operations()]
    examples = max(MIN_EXAMPLES, min(MAX_EXAMPLES, REQUESTS_PER_CALLER // len(operations)))
    with requests.Session() as session:
        for operation in operations:
            fuzz_operation(operation, examples, caller, base_url, session, out)


EXCEPTION_LINE = re.compile(r"[\w.]*(Error|Exception)\w*: ")


def log_lines(log: str, request_id: str) -> list[str]:
    """The server's log entries for one request: errors as their project frames and the exception."""
    shown = []
    for line in log.splitlines():
        if request_id not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            shown.append(line)
            continue
        if entry.get("message") == "request":
            continue
        shown.append(f"{entry.get('level')} {entry.get('message')}")
        trace = (entry.get("exception") or "").splitlines()
        shown += [f"  {frame.strip()}" for frame in trace if "/.venv/" not in frame and frame.startswith('  File "/')]
        raised = [i for i, text in enumerate(trace) if EXCEPTION_LINE.match(text)]
        shown += [f"  {text}" for text in trace[raised[-1] if raised else -1 :]]
    return shown


def describe(problem: Problem, log: str) -> str:
    return (
        f"--- as {problem.caller}, {problem.operation}: HTTP {problem.status}\n"
        f"{problem.query}\n"
        f"response: {problem.body[:500]}\n"
        f"server log for request {problem.request_id}:\n" + ("\n".join(log_lines(log, problem.request_id)) or "(none)")
    )


async def test_fuzzing_the_schema_finds_no_server_errors(server) -> None:
    data = await seed()
    schema = await asyncio.to_thread(
        schemathesis.graphql.from_url, f"{server.url}/graphql", config=config_for(data), timeout=10
    )
    operations = sum(1 for _ in schema.get_all_operations())
    assert operations >= 10, "the schema was not introspected"

    outcome = Outcome()
    for caller in (data.platform, data.partner):
        await asyncio.to_thread(fuzz, schema, caller, server.url, outcome)

    assert outcome.requests >= 2 * operations, "some operations were never called"
    if outcome.problems:
        log = server.log()
        pytest.fail(
            f"{len(outcome.problems)} server errors in {outcome.requests} requests:\n\n"
            + "\n\n".join(describe(problem, log) for problem in outcome.problems),
            pytrace=False,
        )


# ------------------------------------------------------------------------------------ raw HTTP bodies

RAW_REQUESTS = 600
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/graphql-response+json",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "",
    "\u00e9/\u00e9",
]
HOSTILE_TEXT = [
    "",
    "\x00",
    "2026-12\n",
    "2026-12\u3000",
    "\u0662\u0660\u0662\u0666-12",
    '"\\',
    "%00",
    "\ud7ff",
    "a" * 300,
]
EVENT = {
    "projectId": "UHJvamVjdDox",
    "eventId": "e-1",
    "category": "MARKETING",
    "occurredAt": "2026-12-01T10:00:00Z",
    "recipient": "+55 11 900000000",
}


def raw_body(rng: random.Random) -> bytes:
    """One request body of some shape GraphQL and /usage never asked for (or almost)."""
    shape = rng.randrange(12)
    if shape == 0:
        return rng.randbytes(rng.randrange(0, 2000))
    if shape == 1:
        return rng.choice([b"null", b"true", b"false", b"12345", b'"x"', b"-0", b"1e400", b"NaN", b""])
    if shape == 2:
        return rng.choice([b"[]", b"[1]", b'[{"query": "{ __typename }"}]', b'[{"events": []}]'])
    if shape == 3:  # over every route's limit, declared
        return b" " * rng.choice([1024 * 1024 + 1, 5 * 1024 * 1024])
    if shape == 4:
        depth = rng.choice([100, 700, 1024, 5000, 100_000])
        nested = b"[" * depth + b"]" * depth
        return rng.choice([nested, b'{"query": "{ __typename }", "variables": {"a": ' + nested + b"}}"])
    if shape == 5:
        return rng.choice([b"\x00", b'{"query": "{ __typename }\x00"}', b'{"query": "\\u0000"}', b"{\x00}"])
    if shape == 6:  # invalid UTF-8 and lone surrogates
        return rng.choice([b'{"query": "\xff"}', b'{"query": "\\ud800"}', b'{"events": [{"eventId": "\xc3"}]}'])
    if shape == 7:
        value = rng.choice([5, None, [], {}, "x" * 70_000, "{ __typename }"])
        return json.dumps({"query": value, "variables": rng.choice([None, [], 5, "x", {"a": "\x00"}])}).encode()
    if shape == 8:
        events = rng.choice([None, "x", [None], [5], [{}], [dict(EVENT, eventId="\x00")], [dict(EVENT, count=-1)]])
        return json.dumps({"events": events}).encode()
    if shape == 9:
        event = dict(EVENT, **{rng.choice(list(EVENT)): rng.choice([*HOSTILE_TEXT, 5, None, [], 1.5])})
        return json.dumps({"events": [event] * rng.randint(1, 3)}).encode()
    if shape == 10:
        return json.dumps(rng.choice(HOSTILE_TEXT)).encode()
    return json.dumps({"query": "{ viewer { kind } }", "extra": rng.choice(HOSTILE_TEXT)}).encode()


def refusal_code(response: requests.Response) -> str | None:
    """The code of a 4xx answer, in either shape (``errors[].code`` or ``errors[].extensions.code``)."""
    if not response.headers.get("content-type", "").startswith("application/json"):
        return None
    try:
        error = response.json()["errors"][0]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    if not isinstance(error, dict):
        return None
    code = error.get("code") or (error.get("extensions") or {}).get("code")
    return code if isinstance(code, str) and code else None


def send_raw(base_url: str, tokens: dict[str, str], seed: int, count: int) -> list[str]:
    """``count`` raw requests, reproducible from ``seed``; blocking. Returns what went wrong."""
    rng = random.Random(seed)
    problems: list[str] = []
    with requests.Session() as session:
        for _ in range(count):
            target = rng.choice(["graphql", "graphql-get", "usage", "report", "webhook"])
            token = tokens["product"] if target == "usage" else rng.choice(list(tokens.values()))
            headers = {"authorization": f"Bearer {token}"}
            if target == "graphql-get":
                method, url = "GET", "/graphql"
                params = {rng.choice(["query", "variables", "extensions", "operationName"]): rng.choice(HOSTILE_TEXT)}
                body = None
            elif target == "report":
                method = "GET"
                url = f"/reports/{rng.choice(['wcc-deductions', 'plan-deductions', 'x%22y', '%E3%80%80'])}.csv"
                params = {"month": rng.choice([*HOSTILE_TEXT, "2026-12"]), "partnerId": rng.choice(HOSTILE_TEXT)}
                body = None
            else:
                method, params = "POST", None
                url = {"graphql": "/graphql", "usage": "/usage", "webhook": "/webhooks/manual/1"}[target]
                body = raw_body(rng)
                headers["content-type"] = rng.choice(CONTENT_TYPES).encode("utf-8").decode("latin-1")
            shown = f"{method} {url} {params or ''} {headers.get('content-type', '')!r} {(body or b'')[:120]!r}"
            try:
                response = session.request(
                    method, base_url + url, params=params, data=body, headers=headers, timeout=30
                )
            except requests.RequestException as error:
                problems.append(f"{shown}: connection lost ({type(error).__name__}: {error})")
                continue
            if response.status_code >= 500:
                problems.append(f"{shown}: HTTP {response.status_code} {response.text[:300]}")
            elif response.status_code >= 400 and refusal_code(response) is None:
                problems.append(f"{shown}: HTTP {response.status_code} without a JSON code: {response.text[:300]}")
    return problems


async def test_raw_http_bodies_get_no_server_error_and_every_refusal_a_code(server) -> None:
    partner = await a_partner("Raw Agency")
    await a_workspace(partner, "Raw", "raw@raw.example")
    tokens = {
        "platform": (await api_keys.create_key(partner_id=None, name="raw-platform")).secret,
        "partner": (await api_keys.create_key(partner_id=partner.id, name="raw-partner")).secret,
        "product": (
            await api_keys.create_key(
                partner_id=None, name="raw-product", permissions=frozenset({Permission.REPORT_USAGE})
            )
        ).secret,
    }
    problems = await asyncio.to_thread(send_raw, server.url, tokens, 16, RAW_REQUESTS)
    assert problems == [], f"{len(problems)} of {RAW_REQUESTS} raw requests went wrong:\n" + "\n".join(problems[:20])
