"""Tenant isolation, generated from the schema itself: a new field is probed without anyone remembering.

Design
------
* Two tenants, seeded through the API. A, the victim, writes a marker string into every text it owns
  (partner name and slug, workspace names, owner and user e-mails, grant and purchase notes, API key
  names, idempotency keys); its *public* branding carries a second, public marker. B is the attacker,
  probing as its partner API key, as its partner admin's session and as a workspace user's session.
  The workspace user has a second victim inside its own partner: the sibling workspace W2 and the
  agency's team, keys and audit log, marked with a sibling marker.
* The running server is introspected over HTTP. For every Query, Mutation and Subscription field a
  generator writes whole operations, driven only by types and names (subscriptions are sent over
  graphql-transport-ws, and their first answer is checked like a response):
    - argument values: an ID argument gets an id of the victim matched on its name (workspaceId -> a
      Workspace, keyId -> an ApiKey, userId -> a PartnerUser or WorkspaceUser, id -> any type);
      partnerDbId-style Ints a database id; lookup strings of queries (e-mail, domain, brand, slug)
      the victim's; idempotency keys the victim's own keys; everything else a valid value by name
      (amounts "1", unit POINTS, currency BRL, fresh e-mails, ...). Input objects get every required
      field and every optional ID field;
    - the selection set: every field of the return type, recursing through objects, interfaces and
      unions (inline fragments on every possible type) and connections (first: 5) down to MAX_DEPTH
      entities; a type already on the path only gives `__typename id`, so cycles stay small.
  Each field is probed in variants: with the victim's values (one probe per candidate id, so
  node(id:) gets every victim id), with the attacker's own values ("own": its own objects and their
  nested connections, which is how nested fields are reached), with its own ids but the victim's
  lookup strings ("mixed"), and without optional arguments ("bare").
* Every probe must answer HTTP 200 without INTERNAL_ERROR and without a validation error (it has to
  reach its resolver), and no victim marker or victim id may appear anywhere in the response: an id
  the probe itself sent may be echoed verbatim, but never as an object's `id`, and an error message
  may repeat what was sent. A victim's idempotency key used on the attacker's own objects must not
  collide ("mixed" probes): keys are per tenant.
* Coverage: every Query and Mutation field, and every field returning a connection, a list of objects
  or a Node on any type reachable from the roots, must have been executed (seen in a response).
* Nothing of the victim may change: its rows are read from the database before and after.
* Fields public by design are listed in PUBLIC with the reason; they are probed too, last, with the
  victim's data, and only what the reason states is exempt.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import websockets
from graphql import GraphQLObjectType, GraphQLSyntaxError, get_named_type, parse, validate
from tortoise import Tortoise
from websockets.frames import Close
from websockets.typing import Subprotocol

from billing.core import clock, sql
from billing.outbox import emails, partner_webhooks
from billing.sales import provider_webhooks
from billing.tenants import api_keys, identity
from gateways.base import WebhookNotice
from models.operations import OutboxEvent
from models.payments import GatewayConfig
from schema.ids import encode_cursor, from_global_id, to_global_id
from schema.limits import cost_rule
from schema.relay import DEFAULT_PAGE, MAX_PAGE
from whitebill import operations
from whitebill.compiled.compiler import CATALOGUE, NODE_SCOPES, ROOTS, Compiled
from whitebill.schema import MAX_COST, MAX_TOKENS, VALIDATION_RULES
from whitebill.schema import schema as graphql_schema

pytestmark = pytest.mark.usefixtures("database")

MAX_DEPTH = 4  # entities (object types with an id) expanded below a root field
PAGE = 5  # `first:` on every connection
PER_TYPE = 5  # victim ids tried per type on one id argument
QUERIES_AT_ONCE = 6  # query probes in flight together (mutations go one at a time)
MAX_REPORTED = 40  # problems spelled out in the failure message
GENERATED_PASSWORD = "correct horse battery"  # what the generator sends; nobody's password
VICTIM_PASSWORD = "the victim's own password"
ATTACKER_PASSWORD = "the attacker's own password"
PREFERRED_ENUM = {"Permission": "READ_REPORTS"}  # the first value (MANAGE_PARTNERS) is platform-only
TABLES = {"AuditEntry": "audit_log"}  # Node types whose table is not their snake_case name
# A partner's catalog: its clients (workspace users) see it, since they buy from it; other tenants do not.
CATALOG = {"Plan", "AddOn", "PlanFamily", "CreditPackage"}


@dataclass(frozen=True)
class Public:
    reason: str
    exempt_public_brand: bool = False  # the victim's public branding and its partner id may come back


# Fields anyone may call without signing in. They are not skipped: they are probed with the victim's
# data, after every other probe, and only what the reason says is allowed.
PUBLIC = {
    ("Query", "branding"): Public(
        "public by design: a white-label login page styles itself by its domain before anyone signs in, so"
        " branding(domain: A's domain) may return A's public branding and A's partner id (those are exempt"
        " from the check; A's private marker is still checked)",
        exempt_public_brand=True,
    ),
    ("Mutation", "login"): Public(
        "pre-authentication: probed with A's brand and user e-mails and a wrong password, and with the"
        " attacker's own credentials against A's brand"
    ),
    ("Mutation", "requestPasswordReset"): Public(
        "pre-authentication: probed with A's brand and user e-mails; it may mail A's user a reset link, so"
        " a new reset token and e-mail outbox row of A are the only changes allowed, and it reveals nothing"
    ),
    ("Mutation", "resetPassword"): Public("pre-authentication: probed with A's spent invite token and a made-up one"),
}

# ---------------------------------------------------------------------------------------- introspection

INTROSPECTION = """
query IsolationIntrospection {
  __schema {
    queryType { name }
    mutationType { name }
    subscriptionType { name }
    types {
      kind name
      interfaces { name }
      possibleTypes { name }
      enumValues(includeDeprecated: true) { name }
      fields(includeDeprecated: true) { name args { name defaultValue type { ...T } } type { ...T } }
      inputFields { name defaultValue type { ...T } }
    }
  }
}
fragment T on __Type { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } }
"""


class Schema:
    """The introspected schema, with the few questions the generator asks of it."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.types: dict[str, dict[str, Any]] = {t["name"]: t for t in raw["types"]}
        self.roots = [raw[k]["name"] for k in ("queryType", "mutationType") if raw.get(k)]
        # Subscriptions travel over graphql-transport-ws: Api.subscribe probes them.
        self.subscription = (raw.get("subscriptionType") or {}).get("name")
        self.node_types = sorted(self.possible("Node")) if "Node" in self.types else []

    @staticmethod
    def named(ref: dict[str, Any]) -> str:
        while ref.get("ofType"):
            ref = ref["ofType"]
        return ref["name"]

    @staticmethod
    def is_list(ref: dict[str, Any] | None) -> bool:
        while ref:
            if ref["kind"] == "LIST":
                return True
            ref = ref.get("ofType")
        return False

    def kind(self, name: str) -> str:
        return self.types[name]["kind"]

    def fields(self, name: str) -> list[dict[str, Any]]:
        return self.types[name].get("fields") or []

    def field_names(self, name: str) -> set[str]:
        return {f["name"] for f in self.fields(name)}

    def is_composite(self, name: str) -> bool:
        return self.kind(name) in {"OBJECT", "INTERFACE", "UNION"}

    def is_connection(self, name: str) -> bool:
        return self.kind(name) == "OBJECT" and {"edges", "pageInfo"} <= self.field_names(name)

    def is_edge(self, name: str) -> bool:
        return self.kind(name) == "OBJECT" and {"cursor", "node"} <= self.field_names(name)

    def is_entity(self, name: str) -> bool:
        return self.kind(name) in {"OBJECT", "INTERFACE"} and "id" in self.field_names(name)

    def is_node(self, name: str) -> bool:
        return name == "Node" or any(i["name"] == "Node" for i in self.types[name].get("interfaces") or [])

    def possible(self, name: str) -> list[str]:
        return [p["name"] for p in self.types[name].get("possibleTypes") or []]

    def must_probe(self) -> set[tuple[str, str]]:
        """Every root field, and every field returning a connection, a list of objects or a Node on a
        type reachable from the roots."""
        roots = [*self.roots, *([self.subscription] if self.subscription else [])]
        pairs = {(root, f["name"]) for root in roots for f in self.fields(root)}
        reachable, todo = set(self.roots), list(self.roots)
        while todo:
            name = todo.pop()
            nexts = self.possible(name) + [self.named(f["type"]) for f in self.fields(name)]
            for target in nexts:
                if self.is_composite(target) and target not in reachable:
                    reachable.add(target)
                    todo.append(target)
        for name in reachable - set(self.roots):
            if self.kind(name) != "OBJECT":
                continue  # interface fields are executed on, and counted for, their object types
            for f in self.fields(name):
                target = self.named(f["type"])
                if not self.is_composite(target):
                    continue
                if self.is_connection(target) or self.is_list(f["type"]) or self.is_node(target):
                    pairs.add((name, f["name"]))
        return pairs

    def executed(self, type_name: str, value: Any, seen: set[tuple[str, str]]) -> None:
        """Record the (type, field) pairs that appear in a response: those resolvers ran."""
        if isinstance(value, list):
            for item in value:
                self.executed(type_name, item, seen)
            return
        if not isinstance(value, dict):
            return
        concrete = value.get("__typename", type_name)
        fields = {f["name"]: f for f in self.fields(concrete)}
        for alias, sub in value.items():
            key = alias.split("__", 1)[1] if "__" in alias.lstrip("_") else alias  # "Type__field" aliases
            if key in fields:
                seen.add((concrete, key))
                target = self.named(fields[key]["type"])
                if self.is_composite(target):
                    self.executed(target, sub, seen)


# ---------------------------------------------------------------------------------------- who is who


@dataclass
class Side:
    """What one side of a probe owns: ids by type, lookup strings and, for a victim, its markers."""

    label: str
    ids: dict[str, list[str]]
    db_ids: dict[str, list[int]]
    emails: list[str] = field(default_factory=list)  # lookups: owners' and users' e-mails
    user_emails: list[str] = field(default_factory=list)  # people who can sign in
    brands: list[str] = field(default_factory=list)  # slug, domain: what login takes
    domains: list[str] = field(default_factory=list)
    idempotency_keys: list[str] = field(default_factory=list)
    spent_tokens: list[str] = field(default_factory=list)
    markers: tuple[str, ...] = ()
    public_markers: tuple[str, ...] = ()
    other_partner: bool = True  # its brand is not the attacker's
    snapshot: list[tuple[str, str, list[Any]]] = field(default_factory=list)  # (table, where, params)

    @property
    def id_set(self) -> set[str]:
        return {i for ids in self.ids.values() for i in ids}


@dataclass
class Attacker:
    label: str
    token: str
    own: Side
    victims: list[Side]
    credentials: dict[str, str] | None = None  # email, password, brand: a session signs in again with these


# ---------------------------------------------------------------------------------------- the generator


@dataclass
class Values:
    """Where one probe's argument values come from, and what it sent of the victim's."""

    ids: Side  # id and database-id arguments
    lookups: Side | None  # e-mail, domain, brand, slug and idempotency-key strings; None: fresh values
    optional: bool  # fill optional arguments too, when there is a value for them
    index: int = 0  # which candidate every slot takes (cycled)
    widest: int = 1  # most candidates a root argument had: the probe is repeated that many times
    nested: bool = False  # filling a nested field's arguments: they cycle along, but do not add probes
    widening: frozenset[str] = frozenset({"id", "lookup"})  # the kinds of slot that add probes
    kinds: set[str] = field(default_factory=set)  # "id", "lookup": slots this probe has
    sent: set[str] = field(default_factory=set)  # values of a victim written into the probe
    picked: list[Any] = field(default_factory=list)  # every value taken from a side, in order
    variables: dict[str, Any] = field(default_factory=dict)
    declarations: list[str] = field(default_factory=list)

    def pick(self, kind: str, side: Side, candidates: list[Any]) -> Any:
        self.kinds.add(kind)
        if not self.nested and kind in self.widening:
            self.widest = max(self.widest, len(candidates))
        chosen = candidates[self.index % len(candidates)]
        self.picked.append(chosen)
        if side.markers:
            self.sent.add(str(chosen))
        return chosen

    def var(self, type_name: str, value: Any) -> str:
        """Values travel as variables: the query text stays the same from probe to probe, so the
        server's parser and validation caches answer, and the probes stay fast."""
        name = f"v{len(self.variables) + 1}"
        self.variables[name] = value
        self.declarations.append(f"${name}: {type_name}!")
        return f"${name}"


_WITHIN_COST = cost_rule(MAX_COST, MAX_PAGE, DEFAULT_PAGE)


@functools.cache
def fits(text: str) -> bool:
    """Within the server's token limit and query cost (cached: values are variables, so the texts
    repeat): a probe the server refuses for its size never reaches the resolver it is for."""
    try:
        document = parse(text, max_tokens=MAX_TOKENS - 10)
    except GraphQLSyntaxError:
        return False
    return not validate(graphql_schema._schema, document, [_WITHIN_COST])


_fresh = itertools.count(1)
_LOOKUPS = ("email", "domain", "brand", "slug")


def _fresh_tag() -> str:
    return f"{secrets.token_hex(3)}{next(_fresh)}"


class Generator:
    """Writes a probe's operation from the introspected types: argument values, then the selection."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema

    # --- values

    def id_types(self, name: str) -> list[str]:
        """The Node types an id argument means, from its name; every type for a bare `id`."""
        stem = re.sub(r"(Db)?Ids?$", "", name)
        if not stem:
            return self.schema.node_types
        pascal = stem[0].upper() + stem[1:]
        if pascal in self.schema.node_types:
            return [pascal]
        return [t for t in self.schema.node_types if t.endswith(pascal)] or self.schema.node_types

    def candidates(self, side: Side, types: list[str], *, db: bool) -> list[Any]:
        source = side.db_ids if db else side.ids
        return [v for t in types for v in source.get(t, [])[:PER_TYPE]]

    def value(self, ref: dict[str, Any], name: str, v: Values, *, required: bool, lookup_ok: bool) -> str | None:
        """A GraphQL value (literal or variable) for an argument or input field, or None to leave it out."""
        if ref["kind"] == "NON_NULL":
            return self.value(ref["ofType"], name, v, required=True, lookup_ok=lookup_ok)
        if ref["kind"] == "LIST":
            if not (required or v.optional):  # decide before the inner value declares its variables
                return None
            inner = self.value(ref["ofType"], name, v, required=True, lookup_ok=lookup_ok)
            return None if inner is None else f"[{inner}]"
        type_name, kind = ref["name"], ref["kind"]
        lower = name.lower()
        if kind == "INPUT_OBJECT":
            return self.input_object(type_name, v, lookup_ok=lookup_ok)
        if kind == "ENUM":
            if not required:
                return None
            values = [e["name"] for e in self.schema.types[type_name]["enumValues"]]
            return PREFERRED_ENUM.get(type_name) if PREFERRED_ENUM.get(type_name) in values else values[0]
        if type_name == "ID" or (type_name == "Int" and lower.endswith("dbid")):
            db = type_name == "Int"
            if required or v.optional:
                found = self.candidates(v.ids, self.id_types(name), db=db)
                if found:
                    return v.var(type_name, v.pick("id", v.ids, found))
            if not required:
                return None
            return v.var(type_name, 2**31 - 1 if db else to_global_id(self.id_types(name)[0], 2**40))  # none such
        if type_name == "Int":
            return str(PAGE) if lower in {"first", "last"} else ("1" if required else None)
        if type_name == "String":
            side = v.lookups
            if lower == "idempotencykey":
                if side is not None and side.idempotency_keys:
                    return v.var(type_name, v.pick("lookup", side, side.idempotency_keys))
                return v.var(type_name, f"probe-{_fresh_tag()}")
            lookup = next((w for w in _LOOKUPS if w in lower), None)
            if lookup_ok and lookup and side is not None and (required or v.optional):
                found = {"email": side.emails, "domain": side.domains, "brand": side.brands, "slug": side.brands}
                if found[lookup]:
                    return v.var(type_name, v.pick("lookup", side, found[lookup]))
            return v.var(type_name, self.plain_string(lower)) if required else None
        if not required:
            return None
        if type_name == "Boolean":
            return "false"
        if type_name == "Float":
            return "1.0"
        if type_name == "DateTime":
            return json.dumps("2030-01-01T00:00:00+00:00")
        if type_name == "JSON":
            return "{}"
        return json.dumps("probe")

    @staticmethod
    def plain_string(lower: str) -> str:
        """A valid value for a required string, from its name."""
        tag = _fresh_tag()
        rules: list[tuple[str, str]] = [
            ("email", f"probe-{tag}@attacker.example"),
            ("password", GENERATED_PASSWORD),
            ("currency", "BRL"),
            ("unit", "POINTS"),
            ("amount", "1"),
            ("quantity", "1"),
            ("limit", "1"),
            ("price", "1"),
            ("slug", f"probe-{tag}"),
            ("domain", f"probe-{tag}.example"),
            ("url", f"https://probe-{tag}.example/logo.png"),
            ("color", "#123456"),
            ("token", f"not-a-token-{tag}"),
            ("month", datetime.now(UTC).strftime("%Y-%m")),
        ]
        return next((value for word, value in rules if word in lower), f"probe {tag}")

    def input_object(self, type_name: str, v: Values, *, lookup_ok: bool) -> str:
        parts = []
        for f in self.schema.types[type_name]["inputFields"]:
            required = f["type"]["kind"] == "NON_NULL" and f["defaultValue"] is None
            is_id = self.schema.named(f["type"]) == "ID"
            if not required and not is_id:
                continue  # of the optional fields, only ids: that is where a tenant is named
            literal = self.value(f["type"], f["name"], v, required=required, lookup_ok=lookup_ok)
            if literal is not None:
                parts.append(f"{f['name']}: {literal}")
        return "{" + ", ".join(parts) + "}"

    def arguments(self, args: list[dict[str, Any]], v: Values, *, lookup_ok: bool) -> str:
        parts = []
        for a in args:
            required = a["type"]["kind"] == "NON_NULL" and a["defaultValue"] is None
            literal = self.value(a["type"], a["name"], v, required=required, lookup_ok=lookup_ok)
            if literal is not None:
                parts.append(f"{a['name']}: {literal}")
        return f"({', '.join(parts)})" if parts else ""

    # --- selections

    def selection(
        self, type_name: str, v: Values, depth: int, path: frozenset[str], clash: frozenset[str] = frozenset()
    ) -> str:
        """Every field of ``type_name``; fields named in ``clash`` are aliased "Type__field" (sibling
        fragments give the same name another type, which GraphQL refuses to merge)."""
        schema = self.schema
        kind = schema.kind(type_name)
        if kind in {"INTERFACE", "UNION"}:
            possible = schema.possible(type_name)
            signatures: dict[str, set[str]] = {}
            for p in possible:
                for f in schema.fields(p):
                    signatures.setdefault(f["name"], set()).add(json.dumps(f["type"], sort_keys=True))
            clashing = frozenset(name for name, types in signatures.items() if len(types) > 1)
            fragments = " ".join(f"... on {p} {self.selection(p, v, depth, path, clashing)}" for p in possible)
            return f"{{ __typename {fragments} }}"
        entity = schema.is_entity(type_name)
        if type_name in path or (entity and depth <= 0):
            return "{ __typename" + (" id" if "id" in schema.field_names(type_name) else "") + " }"
        inner_depth, inner_path = (depth - 1 if entity else depth), path | {type_name}
        parts = ["__typename"]
        for f in schema.fields(type_name):
            target = schema.named(f["type"])
            name = f"{type_name}__{f['name']}: {f['name']}" if f["name"] in clash else f["name"]
            v.nested, outer = True, v.nested
            args = self.arguments(f["args"], v, lookup_ok=True)
            v.nested = outer
            if not schema.is_composite(target):
                parts.append(f"{name}{args}")
            elif schema.is_edge(type_name) and f["name"] == "node":
                # The full node comes through `nodes`; a computed row (a history entry) has no id.
                parts.append("node { __typename" + (" id" if schema.is_entity(target) else "") + " }")
            else:
                parts.append(f"{name}{args} {self.selection(target, v, inner_depth, inner_path)}")
        return "{ " + " ".join(parts) + " }"

    def operation(self, root: str, f: dict[str, Any], v: Values, given: dict[str, str] | None = None) -> str:
        """The whole operation (its variables are left in ``v``), shrunk until it fits the server's
        token and cost limits. ``given``: a hand-made input object instead of generated arguments."""
        target = self.schema.named(f["type"])
        keyword = {self.schema.roots[0]: "query", self.schema.subscription: "subscription"}.get(root, "mutation")
        for depth in range(MAX_DEPTH, -1, -1):
            v.variables, v.declarations, v.picked = {}, [], []
            if given is None:  # a mutation's e-mails are new people, not look-ups
                args = self.arguments(f["args"], v, lookup_ok=root != "Mutation")
            else:
                args = "(input: {" + ", ".join(f"{k}: {v.var('String', val)}" for k, val in given.items()) + "})"
            selection = self.selection(target, v, depth, frozenset()) if self.schema.is_composite(target) else ""
            declared = f"({', '.join(v.declarations)})" if v.declarations else ""
            text = f"{keyword}{declared} {{ {f['name']}{args} {selection} }}"
            if fits(text):
                return text
        raise AssertionError(f"no selection of {root}.{f['name']} fits in {MAX_TOKENS} tokens and cost {MAX_COST}")


# ---------------------------------------------------------------------------------------- probes


@dataclass
class Probe:
    attacker: Attacker
    root: str
    field: str
    variant: str
    query: str
    variables: dict[str, Any]
    sent: set[str]
    public: Public | None = None


def variants(gen: Generator, attacker: Attacker, root: str, f: dict[str, Any]) -> Iterator[tuple[str, str, Values]]:
    """(variant, query, values) for one field and attacker: bare, own, and per victim, victim and mixed."""
    own = attacker.own
    for variant, values in (("bare", Values(own, None, optional=False)), ("own", Values(own, own, optional=True))):
        yield variant, gen.operation(root, f, values), values
    for victim in attacker.victims:
        for variant, ids, widening in (("victim", victim, {"id", "lookup"}), ("mixed", own, {"lookup"})):
            first = Values(ids, victim, optional=True, widening=frozenset(widening))
            query = gen.operation(root, f, first)
            if variant == "mixed" and not {"id", "lookup"} <= first.kinds:
                break  # nothing to mix: the field takes no ids or no look-up strings
            yield f"{variant}:{victim.label}", query, first
            for index in range(1, first.widest):
                again = Values(ids, victim, optional=True, index=index, widening=frozenset(widening))
                yield f"{variant}:{victim.label}#{index}", gen.operation(root, f, again), again


def public_inputs(attacker: Attacker, name: str) -> Iterator[tuple[str, dict[str, Any], set[str]]]:
    """Hand-made inputs for the pre-authentication mutations: (variant, input, victim values sent)."""
    for victim in attacker.victims:
        for i, email in enumerate(victim.user_emails):
            brand = victim.brands[i % len(victim.brands)]
            if name == "login":
                wrong = {"email": email, "password": GENERATED_PASSWORD, "brand": brand}
                yield f"victim:{victim.label}", wrong, {email, brand}
            if name == "requestPasswordReset" and i == 0:
                yield f"victim:{victim.label}", {"email": email, "brand": brand}, {email, brand}
        if name == "login" and victim.other_partner and attacker.credentials:
            own = {**attacker.credentials, "brand": victim.brands[0]}
            yield f"victim:{victim.label}:own-credentials", own, {victim.brands[0]}
        if name == "resetPassword":
            for token in victim.spent_tokens[:1]:
                yield f"victim:{victim.label}", {"token": token, "newPassword": GENERATED_PASSWORD}, {token}
    if name == "resetPassword":
        yield "made-up", {"token": f"not-a-token-{_fresh_tag()}", "newPassword": GENERATED_PASSWORD}, set()
    if name == "login" and attacker.credentials:
        yield "own", dict(attacker.credentials), set()


def probes(gen: Generator, attacker: Attacker, *, public: bool) -> Iterator[Probe]:
    seen: set[str] = set()  # (query, values taken) already probed
    for root in [*gen.schema.roots, *([gen.schema.subscription] if gen.schema.subscription else [])]:
        for f in gen.schema.fields(root):
            rule = PUBLIC.get((root, f["name"]))
            if (rule is not None) != public:
                continue
            if rule is not None and root == "Mutation":
                for variant, given, sent in public_inputs(attacker, f["name"]):
                    values = Values(attacker.own, None, optional=False)
                    query = gen.operation(root, f, values, given)
                    yield Probe(attacker, root, f["name"], variant, query, values.variables, sent, rule)
                continue
            for variant, query, values in variants(gen, attacker, root, f):
                key = json.dumps([query, values.picked], default=str)
                if key not in seen:  # e.g. "bare" and "own" are the same probe for a field without options
                    seen.add(key)
                    yield Probe(attacker, root, f["name"], variant, query, values.variables, values.sent, rule)


def string_leaves(value: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for key, sub in value.items():
            yield from string_leaves(sub, f"{where}.{key}")
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            yield from string_leaves(sub, f"{where}[{i}]")


def leaks(body: dict[str, Any], probe: Probe) -> list[str]:
    """What of the victims came back. Markers: never, except an error message repeating a value the
    probe sent. Ids: never as an object's `id` (the victim's object itself came back); elsewhere only
    an id the probe sent, repeated exactly (an echo of the input)."""
    found = []
    for victim in probe.attacker.victims:
        markers, exempt = list(victim.markers), set()
        if probe.public and probe.public.exempt_public_brand and probe.sent & set(victim.domains):
            exempt = set(victim.ids.get("Partner", []))  # see PUBLIC: the brand's public look-up
        else:
            markers += victim.public_markers
        ids = victim.id_set - exempt
        for where, text in string_leaves(body, "response"):
            in_error = where.startswith("response.errors")
            own_id = where.endswith((".id", "__id"))
            if text in ids and (own_id or text not in probe.sent):
                found.append(f"{victim.label}'s id {text} at {where}")
            lower = text.lower()
            if in_error:
                for sent in probe.sent:
                    lower = lower.replace(sent.lower(), "")
                hidden_ids = (i for i in ids - probe.sent if i != text and _within(i, text))
                found += [f"{victim.label}'s id {i} inside {where}: {text!r}" for i in hidden_ids]
            found += [f"{victim.label}'s marker {m!r} at {where}: {text!r}" for m in markers if m in lower]
    return found


def _within(global_id: str, text: str) -> bool:
    """``global_id`` as a word of a longer message."""
    return global_id in text and re.search(rf"(?<![\w+/=]){re.escape(global_id)}(?![\w+/=])", text) is not None


def codes(value: Any) -> Iterator[str]:
    """Every error code in a response: payload `errors { code }` and `extensions.code`."""
    if isinstance(value, dict):
        if isinstance(value.get("code"), str):
            yield value["code"]
        for sub in value.values():
            yield from codes(sub)
    elif isinstance(value, list):
        for sub in value:
            yield from codes(sub)


def failure(probe: Probe, problem: str, response: str = "") -> str:
    return (
        f"[{probe.attacker.label}] {probe.root}.{probe.field} ({probe.variant}): {problem}\n"
        f"    query: {probe.query}\n    variables: {json.dumps(probe.variables)}\n"
        + (f"    response: {response[:1500]}\n" if response else "")
    )


# ---------------------------------------------------------------------------------------- the database


def _models() -> list[Any]:
    return list(Tortoise.apps["models"].values())


def columns(table: str) -> set[str]:
    for model in _models():
        if model._meta.db_table == table:
            return set(model._meta.fields_db_projection.values())
    return set()


def tables_with(column: str) -> list[str]:
    return sorted(m._meta.db_table for m in _models() if column in m._meta.fields_db_projection.values())


def table_of(type_name: str) -> str:
    table = TABLES.get(type_name) or re.sub(r"(?<!^)(?=[A-Z])", "_", type_name).lower()
    assert columns(table), f"Node type {type_name} has no table {table!r}: add it to TABLES in this test"
    return table


Where = Callable[[str, set[str]], tuple[str, list[Any]] | None]


async def ids_in(schema: Schema, where: Where) -> tuple[dict[str, list[str]], dict[str, list[int]]]:
    """Global and database ids of every Node type, of the rows matching ``where(type, columns)``."""
    ids: dict[str, list[str]] = {}
    db_ids: dict[str, list[int]] = {}
    for type_name in schema.node_types:
        table = table_of(type_name)
        condition = where(type_name, columns(table))
        if condition is None:
            continue
        rows = await sql.fetch(f'SELECT id FROM "{table}" WHERE {condition[0]} ORDER BY id', *condition[1])
        db_ids[type_name] = [r["id"] for r in rows]
        ids[type_name] = [to_global_id(type_name, r["id"]) for r in rows]
    return ids, db_ids


def of_partner(partner: int, *, with_partner: bool = True) -> Where:
    def where(type_name: str, cols: set[str]) -> tuple[str, list[Any]] | None:
        if type_name == "Partner":
            return ("id = $1", [partner]) if with_partner else None
        if type_name == "DocumentLine":  # a line is its document's issuer's
            return "document_id IN (SELECT id FROM document WHERE partner_id = $1)", [partner]
        return ("partner_id = $1", [partner]) if "partner_id" in cols else None

    return where


def of_workspace(workspace: int) -> Where:
    """Rows of one workspace; None for types that are not a workspace's (team, keys, audit log)."""

    def where(type_name: str, cols: set[str]) -> tuple[str, list[Any]] | None:
        if type_name == "Workspace":
            return "id = $1", [workspace]
        if "workspace_id" in cols:
            return "workspace_id = $1", [workspace]
        if "wallet_id" in cols:
            return "wallet_id IN (SELECT id FROM wallet WHERE workspace_id = $1)", [workspace]
        if "payer_key" in cols:
            return "payer_key = $1", [f"WORKSPACE:{workspace}"]
        if "buyer_key" in cols:  # documents issued to it
            return "buyer_key = $1", [f"WORKSPACE:{workspace}"]
        if type_name == "DocumentLine":
            return "document_id IN (SELECT id FROM document WHERE buyer_key = $1)", [f"WORKSPACE:{workspace}"]
        return None

    return where


def partner_snapshot(partner: int) -> list[tuple[str, str, list[Any]]]:
    return [
        ("partner", "id = $1", [partner]),
        *[(t, "partner_id = $1", [partner]) for t in tables_with("partner_id")],
        ("idempotency_record", "scope = $1", [f"PARTNER:{partner}"]),
        ("payment_transition", "payment_id IN (SELECT id FROM payment WHERE partner_id = $1)", [partner]),
    ]


def workspace_snapshot(partner: int, workspace: int) -> list[tuple[str, str, list[Any]]]:
    return [
        ("workspace", "id = $1", [workspace]),
        *[(t, "workspace_id = $1", [workspace]) for t in tables_with("workspace_id")],
        ("ledger_entry", "wallet_id IN (SELECT id FROM wallet WHERE workspace_id = $1)", [workspace]),
        ("payment", "payer_key = $1", [f"WORKSPACE:{workspace}"]),
        ("partner_user", "partner_id = $1", [partner]),
        ("api_key", "partner_id = $1", [partner]),
    ]


Snapshot = dict[tuple[str, str], dict[Any, dict[str, str]]]


async def snapshot(side: Side) -> Snapshot:
    taken: Snapshot = {}
    for table, where, params in side.snapshot:
        rows = await sql.fetch(f'SELECT * FROM "{table}" WHERE {where}', *params)
        taken[(table, where)] = {r["id"]: {k: str(val) for k, val in r.items()} for r in rows}
    return taken


def allowed_after_reset_request(table: str, row: dict[str, str]) -> bool:
    """What requestPasswordReset may add to the victim (see PUBLIC)."""
    return table == "password_reset_token" or (table == "outbox_event" and row["event_type"] == "email.password_reset")


def changes(
    before: Snapshot, after: Snapshot, may_add: Callable[[str, dict[str, str]], bool] | None = None
) -> list[str]:
    found = []
    for key, rows in before.items():
        table = key[0]
        for row_id, row in rows.items():
            now = after[key].get(row_id)
            if now != row:
                diff = {k: (row[k], (now or {}).get(k)) for k in row if now is None or now.get(k) != row[k]}
                found.append(f"{table} #{row_id} changed: {diff}")
        for row_id in after[key].keys() - rows.keys():
            if may_add is None or not may_add(table, after[key][row_id]):
                found.append(f"{table} #{row_id} added: {after[key][row_id]}")
    return found


# ---------------------------------------------------------------------------------------- seeding


class Api:
    """Seeding through the API; every call must succeed."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def post(self, token: str | None, query: str, variables: dict[str, Any] | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return await self.http.post("/graphql", json={"query": query, "variables": variables or {}}, headers=headers)

    async def subscribe(self, token: str | None, query: str, variables: dict[str, Any]) -> httpx.Response:
        """A subscription's first answer over graphql-transport-ws (the credentials in connection_init),
        as the response a query would have had; a closed socket as its close code and reason."""
        url = str(self.http.base_url.copy_with(scheme="ws", path="/graphql"))
        init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"} if token else {}}
        subscribe = {"id": "1", "type": "subscribe", "payload": {"query": query, "variables": variables}}
        try:
            async with websockets.connect(url, subprotocols=[Subprotocol("graphql-transport-ws")]) as ws:
                await ws.send(json.dumps(init))
                assert json.loads(await asyncio.wait_for(ws.recv(), 30))["type"] == "connection_ack"
                await ws.send(json.dumps(subscribe))
                answer = json.loads(await asyncio.wait_for(ws.recv(), 30))
        except websockets.ConnectionClosed as error:
            closed = error.rcvd or Close(1006, "")
            return httpx.Response(closed.code, text=closed.reason)
        body = answer["payload"] if answer["type"] == "next" else {"data": None, "errors": answer.get("payload")}
        return httpx.Response(200, json=body)

    async def run(
        self, token: str | None, mutation: str, input_type: str, selects: str, /, **input: Any
    ) -> dict[str, Any]:
        text = (
            f"mutation($input: {input_type}!) {{ {mutation}(input: $input) {{ {selects} errors {{ code message }} }} }}"
        )
        response = await self.post(token, text, {"input": input})
        body = response.json()
        assert response.status_code == 200 and not body.get("errors"), body
        payload = body["data"][mutation]
        assert payload["errors"] == [], (mutation, input, payload)
        return payload


async def mailed_token(email: str) -> str:
    """The token in the newest password e-mail to ``email``, made as the e-mail sender makes it."""
    rows = await sql.fetch(
        "SELECT id, event_type, partner_id, payload FROM outbox_event WHERE event_type = $1 ORDER BY id DESC",
        identity.LINK_EVENT,
    )
    for row in rows:
        payload = row["payload"] if isinstance(row["payload"], dict) else json.loads(row["payload"])
        if payload["to"] == email:
            letter = await emails.letter_for({**row, "payload": payload})
            assert letter is not None and letter.secret, f"the e-mail to {email} has no link"
            return letter.secret
    raise AssertionError(f"no password e-mail to {email}")


@dataclass
class Tenant:
    partner: int
    key: str
    slug: str
    domain: str
    workspaces: list[int]
    owner_emails: list[str]
    users: dict[str, str]  # role -> e-mail
    spent_tokens: list[str]
    idempotency_keys: list[str]
    keys: dict[str, int]  # role -> API key database id


async def seed(
    api: Api,
    platform: str,
    *,
    slug: str,
    name: str,
    domain: str,
    texts: list[str],
    team: dict[str, str],
    clients: dict[str, tuple[int, str]],
    key_names: dict[str, str],
    password: str,
    parent: str | None = None,
    resells: bool = True,
) -> Tenant:
    """A partner with branding, API keys and a (manual) gateway; a workspace per entry of ``texts`` (the
    text goes into its name, owner e-mail, notes and idempotency keys) with two grants, a debit and a manual
    purchase; team members (the first is the admin) and workspace users, who set ``password`` by the
    e-mailed link. ``parent``: the key of the partner it resells below, which makes it, its keys and its
    balance (otherwise the platform does)."""
    creator = parent or platform
    if parent is None:
        made = await api.run(platform, "createPartner", "CreatePartnerInput", "partner { id }", name=name, slug=slug)
    else:
        made = await api.run(
            parent, "createSubPartner", "CreateSubPartnerInput", "partner { id }", name=name, slug=slug
        )
    partner_id = made["partner"]["id"]
    keys, secrets_by_role = {}, {}
    for role, key_name in key_names.items():
        made = await api.run(
            creator, "createApiKey", "CreateApiKeyInput", "keyId secret", name=key_name, partnerId=partner_id
        )
        keys[role], secrets_by_role[role] = from_global_id(made["keyId"])[1], made["secret"]
    key = secrets_by_role["main"]
    if resells:  # a partner reselling through it (Partner.subPartners), named with the tenant's text
        await api.run(
            key,
            "createSubPartner",
            "CreateSubPartnerInput",
            "partner { id }",
            name=f"{texts[0]} reseller",
            slug=f"{slug}-sub",
        )
    await api.run(
        key,
        "updateBranding",
        "UpdateBrandingInput",
        "branding { displayName }",
        displayName=f"{domain.removesuffix('.example')} portal",
        supportEmail=f"help@{domain}",
        customDomain=domain,
        logoUrl=f"https://{domain}/logo.png",
    )
    gateway = await api.run(
        key, "configureGateway", "ConfigureGatewayInput", "gatewayConfig { id }", provider="manual", methods=["MANUAL"]
    )
    # A verified provider event about nothing of the tenant's, kept as ignored (GatewayConfig.ignoredProviderEvents),
    # handed to the service the webhook route calls (the manual gateway takes no webhooks of its own).
    await provider_webhooks.process_notice(
        await GatewayConfig.get(id=from_global_id(gateway["gatewayConfig"]["id"])[1]),
        WebhookNotice(event_id=f"evt_{texts[0]}", event_type="TRANSFER_DONE", provider_ref=f"pay_{texts[0]}"),
    )
    workspaces, owners, idempotency, points_wallets = [], [], [], []
    for i, text in enumerate(texts):
        owner = f"{text}-owner{i}@client.example"
        made = await api.run(
            key,
            "createWorkspace",
            "CreateWorkspaceInput",
            "workspace { id }",
            name=f"{text} workspace {i}",
            ownerEmail=owner,
        )
        workspace = made["workspace"]["id"]
        workspaces.append(from_global_id(workspace)[1])
        owners.append(owner)
        adjustments = [("grantUnits", "POINTS", "100"), ("grantUnits", "BRL", "49.90"), ("debitUnits", "POINTS", "3")]
        for mutation, unit, amount in adjustments:
            idempotency.append(f"{text}-{mutation}-{unit}-{i}")
            adjusted = await api.run(
                key,
                mutation,
                "AdjustWorkspaceBalanceInput",
                "wallet { id }",
                workspaceId=workspace,
                unit=unit,
                amount=amount,
                note=f"{text} {mutation} note {i}",
                idempotencyKey=idempotency[-1],
            )
            if unit == "POINTS":
                points_wallets.append(adjusted["wallet"]["id"])
        idempotency.append(f"{text}-purchase-{i}")
        await api.run(
            key,
            "recordManualPurchase",
            "RecordManualPurchaseInput",
            "payment { id }",
            workspaceId=workspace,
            unit="POINTS",
            quantity="10",
            priceAmount="10",
            priceCurrency="BRL",
            note=f"{text} purchase note {i}",
            idempotencyKey=idempotency[-1],
        )
    # The tenant's own catalog: a plan and an add-on, assigned to every workspace.
    plan = await api.run(
        key,
        "createPlan",
        "CreatePlanInput",
        "plan { id }",
        name=f"{texts[0]} plan",
        interval="MONTHLY",
        priceAmount="49.90",
        priceCurrency="BRL",
        limits=[{"name": "members", "value": 5}],
    )
    add_on = await api.run(
        key,
        "createAddOn",
        "CreateAddOnInput",
        "addOn { id }",
        name=f"{texts[0]} add-on",
        limitDeltas=[{"name": "members", "value": 3}],
        priceAmount="10",
        priceCurrency="BRL",
    )
    for i, workspace_db_id in enumerate(workspaces):
        workspace = to_global_id("Workspace", workspace_db_id)
        idempotency.append(f"{texts[i]}-plan-{i}")
        await api.run(
            key,
            "assignPlan",
            "AssignPlanInput",
            "subscription { id }",
            workspaceId=workspace,
            planId=plan["plan"]["id"],
            note=f"{texts[i]} plan note {i}",
            idempotencyKey=idempotency[-1],
        )
        await api.run(
            key,
            "setWorkspaceAddOn",
            "SetWorkspaceAddOnInput",
            "limits { name }",
            workspaceId=workspace,
            addOnId=add_on["addOn"]["id"],
            quantity=1,
        )
    # Points for sale, and an auto top-up on each workspace's points (never due: threshold 0).
    package = await api.run(
        key,
        "createCreditPackage",
        "CreateCreditPackageInput",
        "creditPackage { id }",
        name=f"{texts[0]} points",
        unit="POINTS",
        quantity=500,
        priceAmount="50",
        priceCurrency="BRL",
    )
    # Its centralised balance funded by its parent or the platform (a line on this month's statement).
    await api.run(
        creator, "grantPartnerBalance", "GrantPartnerBalanceInput", "errors { code }", partnerId=partner_id,
        amount="100.00", currency="USD", note=f"{texts[0]} balance", idempotencyKey=f"{texts[0]}-balance",
    )  # fmt: skip
    # A tax on its documents (included in its prices) and a coupon, both named with the tenant's text.
    await api.run(
        key, "createTaxRate", "CreateTaxRateInput", "taxRate { id }", name=f"{texts[0]} tax", percentage="5",
        inclusive=True,
    )  # fmt: skip
    await api.run(
        key, "createCoupon", "CreateCouponInput", "coupon { id }", code=re.sub(r"[^A-Z0-9]", "", texts[0].upper()),
        name=f"{texts[0]} coupon", kind="PERCENTAGE", duration="ONCE", percentage="10",
    )  # fmt: skip
    for wallet in dict.fromkeys(points_wallets):
        await api.run(
            key,
            "setAutoTopUp",
            "SetAutoTopUpInput",
            "wallet { id }",
            walletId=wallet,
            packageId=package["creditPackage"]["id"],
            threshold="0",
        )
    # A webhook endpoint with one delivery queued (the event carries the tenant's text).
    endpoint = await api.run(
        key, "createWebhookEndpoint", "CreateWebhookEndpointInput", "endpoint { id }", url=f"https://{domain}/hooks"
    )
    event = await OutboxEvent.create(
        partner_id=from_global_id(partner_id)[1],
        event_type="plan.renewed",
        payload={"note": f"{texts[0]} event"},
        run_at=clock.now(),
    )
    assert endpoint["endpoint"]["id"]
    await partner_webhooks.fan_out(
        {"id": event.id, "event_type": event.event_type, "partner_id": event.partner_id, "payload": event.payload}
    )
    users: dict[str, str] = {}
    for role, email in team.items():
        await api.run(
            key,
            "invitePartnerUser",
            "InvitePartnerUserInput",
            "user { id }",
            email=email,
            name=f"{email} name",
            permissions=["READ_REPORTS"] if users else [],
        )
        users[role] = email
    for role, (index, email) in clients.items():
        await api.run(
            key,
            "createWorkspaceUser",
            "CreateWorkspaceUserInput",
            "user { id }",
            workspaceId=to_global_id("Workspace", workspaces[index]),
            email=email,
            name=f"{email} name",
        )
        users[role] = email
    spent = []
    for email in users.values():
        spent.append(await mailed_token(email))
        await api.run(None, "resetPassword", "ResetPasswordInput", "ok", token=spent[-1], newPassword=password)
    return Tenant(from_global_id(partner_id)[1], key, slug, domain, workspaces, owners, users, spent, idempotency, keys)


async def sign_in(api: Api, credentials: dict[str, str]) -> str:
    return (await api.run(None, "login", "LoginInput", "token", **credentials))["token"]


def without(ids: dict[str, list[str]], db_ids: dict[str, list[int]], drop: set[str]) -> None:
    """Remove global ids ``drop`` (and their database ids) in place."""
    for type_name in ids:
        kept = [(g, d) for g, d in zip(ids[type_name], db_ids[type_name], strict=True) if g not in drop]
        ids[type_name], db_ids[type_name] = [g for g, _ in kept], [d for _, d in kept]


async def sides(schema: Schema, a: Tenant, b: Tenant, marks: dict[str, str]) -> tuple[Side, Side, Side, Side]:
    """The victim A; B's sibling workspace and team (hidden from B's workspace user); what B's partner
    attackers and B's workspace user own. Ids the attackers stand on (their key, the admin, the client)
    are never offered to their own mutations, so no probe can revoke or lock out a later attacker."""
    victim = Side(
        "A",
        *await ids_in(schema, of_partner(a.partner)),
        emails=[*a.owner_emails, *a.users.values()],
        user_emails=list(a.users.values()),
        brands=[a.slug, a.domain],
        domains=[a.domain],
        idempotency_keys=a.idempotency_keys,
        spent_tokens=a.spent_tokens,
        markers=(marks["victim"],),
        public_markers=(marks["public"],),
        snapshot=partner_snapshot(a.partner),
    )
    ids, db_ids = await ids_in(schema, of_workspace(b.workspaces[1]))
    team_ids, team_db_ids = await ids_in(schema, of_partner(b.partner, with_partner=False))
    for type_name in schema.node_types:
        if type_name in CATALOG:  # what the partner sells is visible to its clients
            continue
        if type_name not in ids and type_name in team_ids:  # not a workspace's: the agency's team, keys, log
            ids[type_name], db_ids[type_name] = team_ids[type_name], team_db_ids[type_name]
    hidden = Side(
        "B's sibling workspace and team",
        ids,
        db_ids,
        emails=[b.owner_emails[1], b.users["sibling"], b.users["ops"]],
        user_emails=[b.users["sibling"], b.users["ops"]],
        brands=[b.slug],
        markers=(marks["sibling"],),
        other_partner=False,
        snapshot=workspace_snapshot(b.partner, b.workspaces[1]),
    )
    ids, db_ids = await ids_in(schema, of_workspace(b.workspaces[0]))
    client_user = ids.pop("WorkspaceUser")
    db_ids.pop("WorkspaceUser")
    ids["Partner"], db_ids["Partner"] = [to_global_id("Partner", b.partner)], [b.partner]
    client_own = Side(
        "B's client",
        ids,
        db_ids,
        emails=[b.owner_emails[0], b.users["client"]],
        brands=[b.slug, b.domain],
        domains=[b.domain],
    )
    ids, db_ids = await ids_in(schema, of_partner(b.partner))
    admin = ids["PartnerUser"][:1]  # invited first
    without(ids, db_ids, {to_global_id("ApiKey", b.keys["main"]), *admin, *client_user})
    partner_own = Side(
        "B", ids, db_ids, emails=[*b.owner_emails, *b.users.values()], brands=[b.slug, b.domain], domains=[b.domain]
    )
    return victim, hidden, partner_own, client_own


async def below(schema: Schema, side: Side, child: Tenant) -> None:
    """Add what ``child``, a partner reselling below ``side``'s, holds to ``side`` (in place)."""
    ids, db_ids = await ids_in(schema, of_partner(child.partner))
    for type_name in ids:
        side.ids.setdefault(type_name, []).extend(ids[type_name])
        side.db_ids.setdefault(type_name, []).extend(db_ids[type_name])
    side.emails += [*child.owner_emails, *child.users.values()]
    side.user_emails += list(child.users.values())
    side.brands += [child.slug, child.domain]
    side.domains.append(child.domain)
    side.idempotency_keys += child.idempotency_keys
    side.spent_tokens += child.spent_tokens
    side.snapshot += partner_snapshot(child.partner)


async def above(schema: Schema, label: str, parent: Tenant, markers: tuple[str, ...], *, below: Tenant) -> Side:
    """A level as the partners below it see it: a victim, with the other partners it made (``below``'s
    siblings) and never what it reads of them."""
    ids, db_ids = await ids_in(schema, of_partner(parent.partner))
    siblings = await sql.fetch(
        "SELECT id FROM partner WHERE parent_id = $1 AND id <> $2 ORDER BY id", parent.partner, below.partner
    )
    ids["Partner"] += [to_global_id("Partner", r["id"]) for r in siblings]
    db_ids["Partner"] += [r["id"] for r in siblings]
    return Side(
        label,
        ids,
        db_ids,
        emails=[*parent.owner_emails, *parent.users.values()],
        user_emails=list(parent.users.values()),
        brands=[parent.slug, parent.domain],
        domains=[parent.domain],
        idempotency_keys=parent.idempotency_keys,
        spent_tokens=parent.spent_tokens,
        markers=markers,
        snapshot=partner_snapshot(parent.partner),
    )


def merged(label: str, first: Side, second: Side) -> Side:
    """Two victims as one: each type's ids interleaved (``first``'s first), everything else joined."""
    ids: dict[str, list[str]] = {}
    db_ids: dict[str, list[int]] = {}
    for type_name in dict.fromkeys([*first.ids, *second.ids]):
        pairs = [
            *itertools.chain.from_iterable(
                itertools.zip_longest(
                    zip(first.ids.get(type_name, []), first.db_ids.get(type_name, []), strict=True),
                    zip(second.ids.get(type_name, []), second.db_ids.get(type_name, []), strict=True),
                )
            )
        ]
        kept = [pair for pair in pairs if pair is not None]
        ids[type_name], db_ids[type_name] = [g for g, _ in kept], [d for _, d in kept]
    return Side(
        label,
        ids,
        db_ids,
        emails=first.emails + second.emails,
        user_emails=first.user_emails + second.user_emails,
        brands=first.brands + second.brands,
        domains=first.domains + second.domains,
        idempotency_keys=first.idempotency_keys + second.idempotency_keys,
        spent_tokens=first.spent_tokens + second.spent_tokens,
        markers=first.markers + second.markers,
        snapshot=first.snapshot + second.snapshot,
    )


async def own_level(schema: Schema, tenant: Tenant) -> Side:
    """What a partner below another owns, less the key it probes with and its admin."""
    ids, db_ids = await ids_in(schema, of_partner(tenant.partner))
    without(ids, db_ids, {to_global_id("ApiKey", tenant.keys["main"]), *ids["PartnerUser"][:1]})
    emails = [*tenant.owner_emails, *tenant.users.values()]
    return Side(tenant.slug, ids, db_ids, emails=emails, brands=[tenant.slug, tenant.domain], domains=[tenant.domain])


# ---------------------------------------------------------------------------------------- the run


class Prober:
    """Sends the probes and keeps what they found."""

    def __init__(self, api: Api, schema: Schema) -> None:
        self.api, self.schema = api, schema
        self.executed: set[tuple[str, str]] = set()  # (type, field) pairs some response showed
        self.problems: list[tuple[str, str]] = []  # (kind, description)
        self.count = self.relogins = 0
        self.signing_in = asyncio.Lock()

    def problem(self, kind: str, text: str) -> None:
        self.problems.append((kind, text))

    async def phase(self, gen: Generator, attacker: Attacker, *, public: bool) -> None:
        """All of one attacker's probes of one phase, bracketed by snapshots of its victims. Queries
        change nothing, so a few run at a time; mutations run one by one, in schema order."""
        before = [await snapshot(v) for v in attacker.victims]
        batch = list(probes(gen, attacker, public=public))
        self.count += len(batch)
        limit = asyncio.Semaphore(QUERIES_AT_ONCE)

        async def limited(probe: Probe) -> None:
            async with limit:
                await self.run(probe)

        await asyncio.gather(*(limited(p) for p in batch if p.root != "Mutation"))
        for probe in batch:
            if probe.root == "Mutation":
                await self.run(probe)
        may_add = allowed_after_reset_request if public else None
        for side, taken in zip(attacker.victims, before, strict=True):
            for change in changes(taken, await snapshot(side), may_add):
                phase = "public" if public else "authenticated"
                self.problem("CHANGED", f"[{attacker.label}] {side.label} CHANGED by the {phase} probes: {change}\n")

    async def send(self, probe: Probe) -> httpx.Response:
        """Post the probe; a session that an earlier probe ended (logout and the like) signs in again."""
        token = probe.attacker.token
        send = self.api.subscribe if probe.root == self.schema.subscription else self.api.post
        response = await send(token, probe.query, probe.variables)
        credentials = probe.attacker.credentials
        if credentials and response.status_code == 200 and "UNAUTHENTICATED" in codes(response.json()):
            async with self.signing_in:
                if probe.attacker.token == token:
                    self.relogins += 1
                    probe.attacker.token = await sign_in(self.api, credentials)
            response = await send(probe.attacker.token, probe.query, probe.variables)
        return response

    async def run(self, probe: Probe) -> None:
        response = await self.send(probe)
        if response.status_code != 200:
            self.problem("HTTP", failure(probe, f"HTTP {response.status_code}", response.text))
            return
        body = response.json()
        errors = body.get("errors") or []
        if "data" not in body or any(not e.get("path") or "GRAPHQL_VALIDATION" in json.dumps(e) for e in errors):
            self.problem(
                "UNREACHED", failure(probe, "never reached its resolver (parse or validation error)", response.text)
            )
            return
        self.executed.add((probe.root, probe.field))
        self.schema.executed(probe.root, body["data"], self.executed)
        if "INTERNAL_ERROR" in codes(errors):
            self.problem("INTERNAL_ERROR", failure(probe, "INTERNAL_ERROR", response.text))
        found = leaks(body, probe)
        if found:
            more = f" (and {len(found) - 5} more)" if len(found) > 5 else ""
            self.problem("LEAK", failure(probe, "LEAK: " + "; ".join(found[:5]) + more, response.text))
        if probe.variant.startswith("mixed") and any(c.startswith("IDEMPOTENCY_KEY") for c in codes(body)):
            # Its own objects with the victim's idempotency key: keys are per tenant, so a collision
            # tells the attacker which keys the victim used (and lets it block them).
            self.problem("CROSS-TENANT", failure(probe, "the victim's idempotency key collided", response.text))

    async def compiled_phase(self, attackers: list[Attacker], url: str) -> int:
        """Every compiled root field (whitebill.compiled.compiler.ROOTS), with every field the compiler's
        catalogue answers, registered so that the server runs it compiled; each attacker sends it with
        no cursor, its own workspaces' cursors and its victims'. The same checks as the other probes,
        and the server's count of compiled answers shows they took the compiled path."""
        sent = []
        for root in ROOTS:
            if root == "node":
                sent += await _compiled_nodes(attackers)
                continue
            connection = get_named_type(graphql_schema._schema.query_type.fields[root].type)  # type: ignore[union-attr]
            document = (
                f"query($after: String) {{ {root}(first: 5, after: $after) {compiled_selection(connection.name)} }}"
            )
            registered = await _register_compiled(document)
            for attacker in attackers:
                own = attacker.own.db_ids.get("Workspace", [])[:2]
                cursors: list[tuple[str, str | None, set[str]]] = [("bare", None, set())]
                cursors += [("own", encode_cursor(i), set()) for i in own]
                for victim in attacker.victims:
                    for i in victim.db_ids.get("Workspace", []):
                        cursors.append((f"victim:{victim.label}", encode_cursor(i - 1), set()))
                for variant, cursor, taken in cursors:
                    variables = {"after": cursor}
                    sent.append(Probe(attacker, "Query", root, f"compiled:{variant}", registered, variables, taken))
        await asyncio.sleep(operations.RELOAD_EVERY + 0.5)  # every server reads the registry again by then
        before = await compiled_answers(url)
        for probe in sent:
            await self.run(probe)
        self.count += len(sent)
        answered = await compiled_answers(url) - before
        if answered < len(sent):
            self.problem("NOT COMPILED", f"NOT COMPILED: {len(sent) - answered} of {len(sent)} compiled probes\n")
        return len(sent)


async def _register_compiled(document: str) -> str:
    """Registers an operation the server compiles (with its own limits), and returns its text."""
    [registered] = operations.split(document, graphql_schema._schema)
    compiled = operations.compiled_or_why_not(registered.document, graphql_schema._schema, VALIDATION_RULES, MAX_TOKENS)
    assert isinstance(compiled, Compiled), compiled
    await operations.register([registered])
    return registered.document


async def _compiled_nodes(attackers: list[Attacker]) -> list[Probe]:
    """node(id:) with every compiled field of each type it compiles (NODE_SCOPES), one operation per type,
    asked for each attacker's own ids of that type and its victims'."""
    sent = []
    for type_name in NODE_SCOPES:
        document = (
            f"query($id: ID!) {{ node(id: $id) {{ __typename ... on {type_name} {compiled_selection(type_name)} }} }}"
        )
        registered = await _register_compiled(document)
        for attacker in attackers:
            ids = [("own", i) for i in attacker.own.db_ids.get(type_name, [])[:2]]
            ids += [(f"victim:{v.label}", i) for v in attacker.victims for i in v.db_ids.get(type_name, [])[:3]]
            for variant, db_id in ids:
                variables = {"id": to_global_id(type_name, db_id)}
                probe = Probe(
                    attacker, "Query", "node", f"compiled:{type_name}:{variant}", registered, variables, set()
                )
                sent.append(probe)
    return sent


def compiled_selection(type_name: str, alias: str = "") -> str:
    """Every field the compiler answers on ``type_name``, recursively (all of a type outside its catalogue:
    a connection, an edge, page info, an amount); ``alias`` prefixes the top level's keys (fragments on
    several types side by side)."""
    graphql_type = graphql_schema._schema.get_type(type_name)
    assert isinstance(graphql_type, GraphQLObjectType)
    parts = ["__typename"]
    for name, definition in graphql_type.fields.items():
        if type_name in CATALOGUE and name not in CATALOGUE[type_name]:
            continue
        target = get_named_type(definition.type)
        key = f"{alias}{name}: {name}" if alias else name
        parts.append(f"{key} {compiled_selection(target.name)}" if isinstance(target, GraphQLObjectType) else key)
    return "{ " + " ".join(parts) + " }"


async def compiled_answers(url: str) -> float:
    """How many queries the server has answered by their compiled statement (its /metrics)."""
    async with httpx.AsyncClient(base_url=url) as http:
        text = (await http.get("/metrics")).text
    found = re.search(r'^whitebill_compiled_queries_total\{result="compiled"\} (\S+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


# ---------------------------------------------------------------------------------------- the test


async def test_no_query_or_mutation_crosses_a_tenant(server, database, capsys) -> None:
    if not database.is_postgres:
        # Scoping is built into the queries, the same on both backends; probing both doubled the
        # suite's longest test. It runs against PostgreSQL, the production database.
        pytest.skip("tenant isolation is probed on PostgreSQL")
    started = time.monotonic()
    tag = secrets.token_hex(4)
    mark, public_mark, sibling = f"zzvictim-marker-{tag}", f"zzpublic-brand-{tag}", f"zzsibling-marker-{tag}"
    # What the partners reselling below B must never read of the levels above them (B's public branding
    # carries none of these).
    upper, second = f"zzupper-{tag}", f"zzsecond-level-{tag}"
    platform = (await api_keys.create_key(partner_id=None, name="platform")).secret

    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        api = Api(http)
        # The platform's catalog, which every partner may see and sell: it carries no tenant's marker.
        family = await api.run(platform, "createPlanFamily", "CreatePlanFamilyInput", "family { id }", name="Chatbot")
        await api.run(
            platform,
            "createPlan",
            "CreatePlanInput",
            "plan { id }",
            name="Basic Monthly",
            interval="MONTHLY",
            priceAmount="29.00",
            priceCurrency="USD",
            familyId=family["family"]["id"],
            limits=[{"name": "members", "value": 3}],
        )
        for currency in ("USD", "BRL"):  # WhatsApp prices, with volume tiers, whatever a partner's currency
            await api.run(
                platform,
                "setPlatformRates",
                "SetPlatformRatesInput",
                "rateCard { currency }",
                currency=currency,
                cells=[
                    {
                        "country": "BR",
                        "category": "MARKETING",
                        "price": "0.0625",
                        "tiers": [{"fromMessage": 1001, "price": "0.05"}],
                    }
                ],
            )
        a = await seed(
            api,
            platform,
            slug=mark,
            name=f"{mark} agency",
            domain=f"{public_mark}.example",
            texts=[f"{mark}-a", f"{mark}-b"],
            team={"admin": f"{mark}-admin@agency.example", "ops": f"{mark}-ops@agency.example"},
            clients={"client": (0, f"{mark}-client@client.example")},
            key_names={"main": f"{mark} key"},
            password=VICTIM_PASSWORD,
        )
        b = await seed(
            api,
            platform,
            slug=f"attacker-{tag}",
            name="Attacker agency",
            domain=f"attacker-{tag}.example",
            texts=[f"attacker-{tag}-{upper}", sibling],  # W1, the workspace user's; W2, its sibling
            team={"admin": f"{upper}-admin@agency.example", "ops": f"{sibling}-ops@agency.example"},
            clients={
                "client": (0, f"attacker-{tag}-client@client.example"),
                "sibling": (1, f"{sibling}@client.example"),
            },
            key_names={"main": "attacker key", "spare": f"{sibling} spare key"},
            password=ATTACKER_PASSWORD,
        )
        # Resellers of resellers. A's chain: a partner below A, its data marked as A's. B's chain: B2 below B
        # and B3 below B2, each attacking every level above it and its siblings; B reads down (allowed).
        a2 = await seed(
            api,
            platform,
            parent=a.key,
            slug=f"{mark}-l2",
            name=f"{mark} second level",
            domain=f"{public_mark}-l2.example",
            texts=[f"{mark}-l2"],
            team={"admin": f"{mark}-l2-admin@agency.example"},
            clients={"client": (0, f"{mark}-l2-client@client.example")},
            key_names={"main": f"{mark} l2 key"},
            password=VICTIM_PASSWORD,
        )
        b2 = await seed(
            api,
            platform,
            parent=b.key,
            slug=f"level2-{tag}",
            name="Second level",
            domain=f"level2-{tag}.example",
            texts=[second],
            team={"admin": f"{second}-admin@agency.example"},
            clients={"client": (0, f"{second}-client@client.example")},
            key_names={"main": "second level key"},
            password=ATTACKER_PASSWORD,
        )
        b3 = await seed(
            api,
            platform,
            parent=b2.key,
            slug=f"level3-{tag}",
            name="Third level",
            domain=f"level3-{tag}.example",
            texts=[f"third-level-{tag}"],
            team={"admin": f"third-level-{tag}-admin@agency.example"},
            clients={"client": (0, f"third-level-{tag}-client@client.example")},
            key_names={"main": "third level key"},
            password=ATTACKER_PASSWORD,
            resells=False,  # the deepest level
        )
        introspected = await api.post(b.key, INTROSPECTION)
        assert introspected.status_code == 200 and not introspected.json().get("errors"), introspected.text
        schema = Schema(introspected.json()["data"]["__schema"])
        gen = Generator(schema)
        marks = {"victim": mark, "public": public_mark, "sibling": sibling}
        victim, hidden, partner_own, client_own = await sides(schema, a, b, marks)
        await below(schema, victim, a2)
        above_b2 = await above(schema, "B, the parent", b, (upper, sibling), below=b2)
        above_b3 = await above(schema, "B2, the parent", b2, (second,), below=b3)

        client = {"email": b.users["client"], "password": ATTACKER_PASSWORD, "brand": b.slug}
        admin = {"email": b.users["admin"], "password": ATTACKER_PASSWORD, "brand": b.slug}
        attackers = [
            Attacker("B workspace user (session)", await sign_in(api, client), client_own, [victim, hidden], client),
            Attacker("B partner admin (session)", await sign_in(api, admin), partner_own, [victim], admin),
            Attacker("B partner API key", b.key, partner_own, [victim]),
            # Up the chain and across it (another tree is B's attackers' to probe: B2 and B3 go through the
            # same scopes with a partner's key).
            Attacker("B2 partner API key (level 2)", b2.key, await own_level(schema, b2), [above_b2]),
            # Its parent and grandparent as one victim: half the probes of two, each id argument still tried
            # with both levels' objects (interleaved within PER_TYPE).
            Attacker(
                "B3 partner API key (level 3)",
                b3.key,
                await own_level(schema, b3),
                [merged("B2 and B, the parents", above_b3, above_b2)],
            ),
        ]

        # Phase 1: every authenticated field. Phase 2: the public ones (PUBLIC), with the victims' data.
        prober = Prober(api, schema)
        for public in (False, True):
            for attacker in attackers:
                await prober.phase(gen, attacker, public=public)

        # Phase 3: the compiled path (registered queries run as one statement on PostgreSQL), probed the same way.
        compiled_probes = await prober.compiled_phase(attackers, server.url)

    must = schema.must_probe()
    for parent, name in sorted(must - prober.executed):
        hint = "seed B so that one of its own objects reaches it, or teach the generator its arguments"
        if parent == schema.subscription:
            hint = "a subscription: add a graphql-ws probe to this test"
        prober.problem("NOT PROBED", f"NOT PROBED: {parent}.{name}: no probe executed it ({hint})\n")
    roots = sum(1 for pair in must if pair[0] in (*schema.roots, schema.subscription))
    summary = (
        f"isolation: probed {prober.count} cases ({compiled_probes} of them compiled) over {len(must)} fields"
        f" ({roots} root fields,"
        f" {len(must) - roots} nested connection/list/Node fields) as {len(attackers)} attackers"
        f" on {database.name} in {time.monotonic() - started:.1f}s; sessions re-opened {prober.relogins}x"
    )
    with capsys.disabled():
        print("\n" + summary)
    tally = dict(Counter(kind for kind, _ in prober.problems))
    details = "".join(text for _, text in prober.problems[:MAX_REPORTED])
    assert not prober.problems, f"{summary}\n{len(prober.problems)} problem(s): {tally}\n{details}"
