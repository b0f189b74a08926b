"""Registered read operations compiled into one PostgreSQL statement that builds the response's JSON.

A frontend sends the same few queries over and over. For each registered query, the compiler walks the
operation over the schema and writes one statement in which PostgreSQL reads exactly the rows the
general executor would read, scoped to the caller's tenant the same way, and writes ``data`` the way
the API's Python code writes each value (:mod:`whitebill.compiled.values`, each checked against that code).
The server sends that JSON as it comes.

**What compiles.** The fields of :data:`CATALOGUE`, the root field ``workspaces`` (a connection) and
``__typename`` anywhere, with aliases, fragments and inline fragments on the type itself. Anything else
(a field outside the catalogue, a directive, an argument of its own, an abstract type) keeps the whole
operation on the general executor, and :func:`compile_operation` says which part and why:
``whitebill operations list`` shows it.

**Same answers, same errors.** An operation is compiled only if it passes every validation rule the
general executor applies (depth, aliases, cost, tokens). At run time, the compiled statement runs only
when nothing can go wrong before it: a caller (else UNAUTHENTICATED), variables of the right types,
a page size within bounds and a cursor that decodes. Anything else, and any failure of the statement
itself (a limit beyond GraphQL's Int), goes to the general executor, which answers with its own typed
error. A request runs the statement and no other, besides the caller's authentication.

The SQL text holds only what the compiler writes (column names, aliases it makes, the schema's type
names); every value from a request travels as a parameter.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    parse,
    specified_rules,
    validate,
)
from graphql.execution.values import get_argument_values, get_variable_values

from billing.core import sql
from billing.core.errors import BillingError
from billing.core.tenancy import Viewer
from models.enums import ViewerKind
from schema.ids import decode_cursor, from_global_id
from schema.relay import page_size
from whitebill.compiled import values

log = logging.getLogger("whitebill.compiled")
MAX_KEYS = 50  # json_build_object takes at most 100 arguments: 50 keys and their values


class NotCompiled(Exception):
    """Why an operation stays on the general executor."""


class Fallback(Exception):
    """This request goes to the general executor (it answers with its own error, or with data)."""


@dataclass
class Inputs:
    """What one request brings: the caller, and the operation's variables as the schema coerced them."""

    viewer: Viewer
    variables: dict[str, Any]
    _arguments: dict[int, dict[str, Any]] = field(default_factory=dict)


Source = Callable[[Inputs], object]


class Statement:
    """The statement being written for one kind of caller: its parameters, and its aliases."""

    def __init__(self, schema: GraphQLSchema, kind: ViewerKind, fragments: dict[str, FragmentDefinitionNode]) -> None:
        self.schema, self.kind, self.fragments = schema, kind, fragments
        self.sources: list[Source] = []
        self.uses_chain = False
        self._aliases = 0

    def parameter(self, source: Source, cast: str) -> str:
        self.sources.append(source)
        return f"${len(self.sources)}::{cast}"

    def alias(self) -> str:
        self._aliases += 1
        return f"wb{self._aliases}"

    def chain(self) -> str:
        """The caller's partner's chain of partner ids, the platform's direct partner first (a CTE of the statement)."""
        self.uses_chain = True
        return values.CHAIN

    def fields(self, type_name: str, selection: SelectionSetNode | None) -> list[tuple[str, str, list[FieldNode]]]:
        """The response keys of a selection on an object type, in the general executor's order: each with
        its field's name and every node that asks for it (fragments merged)."""
        if selection is None:
            raise NotCompiled(f"a selection on {type_name} is missing")
        found: dict[str, tuple[str, list[FieldNode]]] = {}
        for node in self._collect(type_name, selection):
            key = node.alias.value if node.alias else node.name.value
            name, nodes = found.setdefault(key, (node.name.value, []))
            if name != node.name.value:
                raise NotCompiled(f"{key} names two fields")  # validation refuses it first
            nodes.append(node)
        if len(found) > MAX_KEYS:
            raise NotCompiled(f"more than {MAX_KEYS} fields on one {type_name}")
        return [(key, name, nodes) for key, (name, nodes) in found.items()]

    def _collect(self, type_name: str, selection: SelectionSetNode) -> Iterator[FieldNode]:
        for node in selection.selections:
            if node.directives:
                raise NotCompiled("directives (@skip, @include) are not compiled")
            if isinstance(node, FieldNode):
                yield node
            elif isinstance(node, InlineFragmentNode):
                if self.applies(type_name, node.type_condition.name.value if node.type_condition else type_name):
                    yield from self._collect(type_name, node.selection_set)
            elif isinstance(node, FragmentSpreadNode):
                fragment = self.fragments[node.name.value]
                if fragment.directives:
                    raise NotCompiled("directives (@skip, @include) are not compiled")
                if self.applies(type_name, fragment.type_condition.name.value):
                    yield from self._collect(type_name, fragment.selection_set)

    def applies(self, type_name: str, condition: str) -> bool:
        """Whether a fragment on ``condition`` applies to an object of ``type_name`` (GraphQL's
        DoesFragmentTypeApply): the type itself or an interface it implements. Inside a field of an
        object type, validation admits no other; inside ``node(id:)``, the others are skipped."""
        if condition == type_name:
            return True
        found = self.schema.get_type(type_name)
        return isinstance(found, GraphQLObjectType) and any(i.name == condition for i in found.interfaces)


def _no_arguments(type_name: str, name: str, nodes: list[FieldNode]) -> None:
    if any(node.arguments for node in nodes):
        raise NotCompiled(f"{type_name}.{name} with arguments is not compiled")


def _merged(nodes: list[FieldNode]) -> SelectionSetNode | None:
    selections = [s for node in nodes if node.selection_set for s in node.selection_set.selections]
    return SelectionSetNode(selections=tuple(selections)) if selections else None


# -- the catalogue: each object type's fields as SQL over a row alias `a` ---------------------------------

Build = Callable[[Statement, str, SelectionSetNode | None], str]


def column(name: str) -> Build:
    return lambda _s, a, _sel: f"{a}.{name}"


def time_column(name: str) -> Build:
    return lambda _s, a, _sel: values.date_time(f"{a}.{name}")


def own_id(type_name: str) -> Build:
    return lambda _s, a, _sel: values.global_id(type_name, f"{a}.id")


def id_column(type_name: str, name: str) -> Build:
    return lambda _s, a, _sel: values.global_id(type_name, f"{a}.{name}")


def amount_of(type_name: str, amount: str, unit: str, unit_key: str, *, nullable: bool = False) -> Build:
    """Money {amount currency} or Quantity {amount unit}: an exact amount written in its unit's places."""

    def build(s: Statement, a: str, selection: SelectionSetNode | None) -> str:
        columns = {"amount": values.amount(f"{a}.{amount}", f"{a}.{unit}"), unit_key: f"{a}.{unit}"}
        built = _object(s, type_name, selection, lambda key: columns.get(key))
        return f"(CASE WHEN {a}.{amount} IS NULL THEN NULL ELSE {built} END)" if nullable else built

    return build


def plan_price(s: Statement, a: str, selection: SelectionSetNode | None) -> str:
    price = values.plan_price(a, s.chain())
    columns = {"amount": values.amount(price, f"{a}.currency"), "currency": f"{a}.currency"}
    return _object(s, "Money", selection, lambda key: columns.get(key))


def related(type_name: str, rows: str) -> Build:
    """One row of another table (``{a}`` the row at hand, ``{b}`` the one read), or null."""

    def build(s: Statement, a: str, selection: SelectionSetNode | None) -> str:
        b = s.alias()
        return f"(SELECT {_row(s, type_name, b, selection)} {rows.format(a=a, b=b)})"

    return build


def listed(type_name: str, rows: str, order: str) -> Build:
    """Rows of another table as a list, ``order``-ed (``{a}``, ``{b}`` as in :func:`related`)."""

    def build(s: Statement, a: str, selection: SelectionSetNode | None) -> str:
        b = s.alias()
        return (
            f"(SELECT coalesce(json_agg({_row(s, type_name, b, selection)} ORDER BY {order.format(b=b)}),"
            f" '[]'::json) {rows.format(a=a, b=b)})"
        )

    return build


def limits(s: Statement, a: str, selection: SelectionSetNode | None) -> str:
    # Limit.value is a GraphQL Int: a sum beyond 32 bits fails the cast, and the general executor answers.
    columns = {"name": "l.name", "value": "(l.value)::int4"}
    return values.limits(a, _object(s, "Limit", selection, lambda key: columns.get(key)))


def posting(expression: str) -> Build:
    """A value of the entry's posting (``{p}`` the posting row): every entry has one."""

    def build(s: Statement, a: str, _selection: SelectionSetNode | None) -> str:
        p = s.alias()
        return f"(SELECT {expression.format(p=p)} FROM posting {p} WHERE {p}.id = {a}.posting_id)"  # noqa: S608 (our SQL)

    return build


def refunded(s: Statement, a: str, selection: SelectionSetNode | None) -> str:
    # Payment.refunded: what its DONE refunds gave back, null while nothing (0) is.
    built = amount_of("Money", "refunded_amount", "currency", "currency")(s, a, selection)
    return f"(CASE WHEN coalesce({a}.refunded_amount, 0) = 0 THEN NULL ELSE {built} END)"


def _live(b: str) -> str:
    return f"{b}.status IN {values.LIVE_STATUSES}"


def _row(s: Statement, type_name: str, a: str, selection: SelectionSetNode | None) -> str:
    fields = CATALOGUE[type_name]

    def value(key_field: tuple[str, list[FieldNode]]) -> str:
        name, nodes = key_field
        build = fields.get(name)
        if build is None:
            raise NotCompiled(f"{type_name}.{name} is not compiled")
        if isinstance(build, Paged):
            return connection(s, type_name, name, build, a, nodes)
        _no_arguments(type_name, name, nodes)
        return build(s, a, _merged(nodes))

    return _json_object(
        type_name,
        [
            (key, value((name, nodes)) if name != "__typename" else "")
            for key, name, nodes in s.fields(type_name, selection)
        ],
    )


def _object(
    s: Statement, type_name: str, selection: SelectionSetNode | None, column_of: Callable[[str], str | None]
) -> str:
    """A value type (Money, Quantity, Limit) built from SQL expressions the caller has at hand."""
    pairs = []
    for key, name, nodes in s.fields(type_name, selection):
        if name == "__typename":
            pairs.append((key, ""))
            continue
        expression = column_of(name)
        if expression is None:
            raise NotCompiled(f"{type_name}.{name} is not compiled")
        _no_arguments(type_name, name, nodes)
        pairs.append((key, expression))
    return _json_object(type_name, pairs)


def _json_object(type_name: str, pairs: Sequence[tuple[str, str]]) -> str:
    """json_build_object of response keys (names the schema validated: letters, digits, _) and values;
    an empty value stands for ``__typename``."""
    arguments = ", ".join(f"'{key}', {value or repr(type_name)}" for key, value in pairs)
    return f"json_build_object({arguments})"


class Lazy:
    """SQL text made when first written into the statement (a parameter that is used only if asked for)."""

    def __init__(self, make: Callable[[], str]) -> None:
        self._make, self._text = make, ""

    def __str__(self) -> str:
        if not self._text:
            self._text = self._make()
        return self._text


# -- connections ------------------------------------------------------------------------------------------


def _arguments(s: Statement, type_name: str, name: str, node: FieldNode) -> Callable[[Inputs], dict[str, Any]]:
    definition = s.schema.get_type(type_name).fields[name]  # type: ignore[union-attr]

    def coerce(inputs: Inputs) -> dict[str, Any]:
        known = inputs._arguments.get(id(node))
        if known is None:
            try:
                known = get_argument_values(definition, node, inputs.variables)
            except GraphQLError:
                raise Fallback from None
            inputs._arguments[id(node)] = known
        return known

    return coerce


Arguments = Callable[[Inputs], dict[str, Any]]
Rows = Callable[[Statement, str, str, FieldNode, Arguments], tuple[str, list[str]]]


@dataclass(frozen=True)
class Paged:
    """A connection field (``schema.relay.paginate``): ``rows`` gives, for the parent row ``a`` (none at
    the root) and the row alias ``r``, the table and the conditions of the rows the resolver pages
    through, by id, oldest first or newest first; ``filters`` are its arguments besides first and after."""

    node: str
    rows: Rows
    newest_first: bool = False
    filters: tuple[str, ...] = ()


def connection(s: Statement, parent: str, name: str, paged: Paged, a: str, nodes: list[FieldNode]) -> str:
    """One page of a connection as the general executor answers it: ``page_size`` and ``decode_cursor``
    on its arguments (a request they refuse goes to the general executor), size + 1 rows read to tell of
    a next page, one row of JSON whatever the selection aggregates."""
    node = nodes[0]  # validation made every node of one key alike in arguments
    for argument in node.arguments or ():
        if argument.name.value not in ("first", "after", *paged.filters):
            raise NotCompiled(f"{parent}.{name}({argument.name.value}:) is not compiled")
    arguments = _arguments(s, parent, name, node)

    def size(inputs: Inputs) -> int:
        try:
            return page_size(arguments(inputs).get("first"))
        except BillingError:
            raise Fallback from None

    def after(inputs: Inputs) -> int | None:
        cursor = arguments(inputs).get("after")
        try:
            return decode_cursor(cursor) if cursor is not None else None
        except BillingError:
            raise Fallback from None

    shown = Lazy(lambda: s.parameter(size, "int"))  # a parameter only if used: each must appear in the text
    read = s.parameter(lambda i: size(i) + 1 if size(i) else 0, "int")  # one more tells of a next page
    r, page_alias = s.alias(), s.alias()
    table, scope = paged.rows(s, a, r, node, arguments)
    if paged.newest_first:
        past = s.parameter(after, "bigint")
        scope.append(f"({past} IS NULL OR {r}.id < {past})")
    else:
        scope.append(f"{r}.id > {s.parameter(lambda i: after(i) or 0, 'bigint')}")  # ids start at 1
    order = "DESC" if paged.newest_first else "ASC"
    page = (
        f"(SELECT {r}.*, row_number() OVER (ORDER BY {r}.id {order}) AS wb_n FROM {table} {r}"  # noqa: S608 (our SQL, $n values)
        f" WHERE {' AND '.join(scope)}"
        f" ORDER BY {r}.id {order} LIMIT {read}) {page_alias}"
    )
    p = page_alias
    visible = Lazy(lambda: f"{p}.wb_n <= {shown}")
    type_name = s.schema.get_type(parent).fields[name].type.of_type.name  # type: ignore[union-attr]
    edge_type = type_name.removesuffix("Connection") + "Edge"
    first_id, last_id = ("max", "min") if paged.newest_first else ("min", "max")

    def listed_page(element: str) -> str:
        return f"coalesce(json_agg({element} ORDER BY {p}.id {order}) FILTER (WHERE {visible}), '[]'::json)"

    def edges_json(selection: SelectionSetNode | None) -> str:
        pairs = []
        for key, field_name, field_nodes in s.fields(edge_type, selection):
            if field_name == "cursor":
                pairs.append((key, values.global_id("cursor", f"{p}.id")))
            elif field_name == "node":
                pairs.append((key, _row(s, paged.node, p, _merged(field_nodes))))
            elif field_name == "__typename":
                pairs.append((key, ""))
            else:
                raise NotCompiled(f"{edge_type}.{field_name} is not compiled")
        return listed_page(_json_object(edge_type, pairs))

    def page_info(selection: SelectionSetNode | None) -> str:
        columns: dict[str, Callable[[], str]] = {
            "hasNextPage": lambda: f"(count(*) > {shown})",
            "hasPreviousPage": lambda: s.parameter(lambda i: after(i) is not None, "boolean"),
            "startCursor": lambda: values.global_id("cursor", f"{first_id}({p}.id) FILTER (WHERE {visible})"),
            "endCursor": lambda: values.global_id("cursor", f"{last_id}({p}.id) FILTER (WHERE {visible})"),
        }
        return _object(s, "PageInfo", selection, lambda key: columns[key]() if key in columns else None)

    pairs = []
    for key, field_name, field_nodes in s.fields(type_name, _merged(nodes)):
        selection = _merged(field_nodes)
        if field_name == "nodes":
            pairs.append((key, listed_page(_row(s, paged.node, p, selection))))
        elif field_name == "edges":
            pairs.append((key, edges_json(selection)))
        elif field_name == "pageInfo":
            pairs.append((key, page_info(selection)))
        elif field_name == "__typename":
            pairs.append((key, ""))
        else:
            raise NotCompiled(f"{type_name}.{field_name} is not compiled")
    # GROUP BY (): one row, page or no page, whatever the selection aggregates.
    return f"(SELECT {_json_object(type_name, pairs)} FROM {page} GROUP BY ())"  # noqa: S608 (our SQL, $n values)


# -- tenant scopes (billing.core.tenancy) as conditions on a row alias ------------------------------------


def _partner(s: Statement) -> str:
    return s.parameter(lambda i: i.viewer.partner_id, "bigint")


def _workspace(s: Statement) -> str:
    return s.parameter(lambda i: i.viewer.workspace_id, "bigint")


def scoped(
    s: Statement, r: str, *, workspace_column: str | None = "workspace_id", descendants: bool = False
) -> list[str]:
    """``tenancy._scoped``: everything for the platform; with ``descendants``, a partner's and those of the
    partners below it (at most two levels down); else the caller's partner's, and a client's own."""
    if s.kind is ViewerKind.PLATFORM:
        return []
    if descendants and s.kind is ViewerKind.PARTNER:
        p = _partner(s)
        below = (
            f"(SELECT x.id FROM partner x LEFT JOIN partner y ON y.id = x.parent_id"  # noqa: S608 (our SQL, $n values)
            f" WHERE x.id = {p} OR x.parent_id = {p} OR y.parent_id = {p})"
        )
        return [f"{r}.partner_id IN {below}"]
    conditions = [f"{r}.partner_id = {_partner(s)}"]
    if s.kind is ViewerKind.WORKSPACE and workspace_column:
        conditions.append(f"{r}.{workspace_column} = {_workspace(s)}")
    return conditions


def visible_workspaces(s: Statement, r: str, *, descendants: bool = False) -> list[str]:
    """``tenancy.workspaces``."""
    return [f"{r}.deleted_at IS NULL", *scoped(s, r, workspace_column="id", descendants=descendants)]


def visible_plans(s: Statement, r: str) -> list[str]:
    """``billing.catalog.plans.visible_plans``."""
    if s.kind is ViewerKind.PLATFORM:
        return []
    return [f"(({r}.partner_id IS NULL AND {r}.for_partners = false) OR {r}.partner_id = {_partner(s)})"]


def visible_payments(s: Statement, r: str) -> list[str]:
    """``tenancy.payments(with_descendants=True)``."""
    if s.kind is ViewerKind.WORKSPACE:
        payer = s.parameter(lambda i: f"WORKSPACE:{i.viewer.workspace_id}", "text")
        return [f"{r}.partner_id = {_partner(s)}", f"{r}.payer_key = {payer}"]
    return scoped(s, r, workspace_column=None, descendants=True)


def visible_entries(s: Statement, r: str) -> list[str]:
    """``tenancy.ledger_entries(with_descendants=True)``."""
    if s.kind is ViewerKind.WORKSPACE:
        return [
            f"{r}.partner_id = {_partner(s)}",
            f"{r}.wallet_id IN (SELECT id FROM wallet WHERE workspace_id = {_workspace(s)})",  # noqa: S608 (our SQL)
        ]
    return scoped(s, r, workspace_column=None, descendants=True)


# -- the connections of the catalogue ---------------------------------------------------------------------


def _root_workspaces(s: Statement, _a: str, r: str, _node: FieldNode, _arguments: Arguments) -> tuple[str, list[str]]:
    return "workspace", visible_workspaces(s, r)  # Query.workspaces: the caller's own


def _root_plans(s: Statement, _a: str, r: str, _node: FieldNode, _arguments: Arguments) -> tuple[str, list[str]]:
    return "plan", visible_plans(s, r)


def _payments_of_workspace(
    _s: Statement, a: str, r: str, _n: FieldNode, _arguments: Arguments
) -> tuple[str, list[str]]:
    # Workspace.payments: what the workspace paid its partner.
    return "payment", [f"{r}.partner_id = {a}.partner_id", f"{r}.payer_key = 'WORKSPACE:' || {a}.id"]


def _history_of_workspace(_s: Statement, a: str, r: str, _n: FieldNode, _arguments: Arguments) -> tuple[str, list[str]]:
    # lifecycle.history_of(workspace_id=)
    return "subscription_history", [
        f"{r}.subscription_id IN (SELECT x.id FROM subscription x WHERE x.workspace_id = {a}.id)"  # noqa: S608 (our SQL)
    ]


def _entries_of_wallet(s: Statement, a: str, r: str, node: FieldNode, arguments: Arguments) -> tuple[str, list[str]]:
    """Wallet.entries: the caller's entries of the wallet, of a cause, created in [since, until)."""
    conditions = [*visible_entries(s, r), f"{r}.wallet_id = {a}.id"]
    asked = {argument.name.value for argument in node.arguments or ()}
    if "cause" in asked:
        cause = s.parameter(lambda i: _text(arguments(i).get("cause")), "text")
        conditions.append(f"({cause} IS NULL OR {r}.cause = {cause})")
    for name, test in (("since", ">="), ("until", "<")):
        if name in asked:
            moment = s.parameter(lambda i, name=name: _aware(arguments(i).get(name)), "timestamptz")
            conditions.append(f"({moment} IS NULL OR {r}.created_at {test} {moment})")
    return "ledger_entry", conditions


def _text(value: object) -> str | None:
    return None if value is None else str(getattr(value, "value", value))


def _aware(value: object) -> object:
    """A time the general executor compares as given; a time without an offset, it reads in its own way:
    the general executor answers."""
    if value is not None and getattr(value, "tzinfo", None) is None:
        raise Fallback
    return value


CATALOGUE: dict[str, dict[str, Build | Paged]] = {
    "Workspace": {
        "id": own_id("Workspace"),
        "name": column("name"),
        "ownerEmail": column("owner_email"),
        "status": column("status"),
        "autoRenew": column("auto_renew"),
        "createdAt": time_column("created_at"),
        "subscription": related(
            "Subscription",
            "FROM subscription {b} WHERE {b}.workspace_id = {a}.id AND "
            + _live("{b}")
            + " ORDER BY {b}.id DESC LIMIT 1",
        ),
        "limits": limits,
        "wallets": listed("Wallet", "FROM wallet {b} WHERE {b}.workspace_id = {a}.id", "{b}.id"),
        "payments": Paged("Payment", _payments_of_workspace, newest_first=True),
        "planHistory": Paged("SubscriptionHistoryEntry", _history_of_workspace),
    },
    "Subscription": {
        "id": own_id("Subscription"),
        "status": column("status"),
        "price": amount_of("Money", "price_amount", "currency", "currency"),
        "currentPeriodStart": time_column("current_period_start"),
        "currentPeriodEnd": time_column("current_period_end"),
        "planId": id_column("Plan", "plan_id"),
        "paymentMode": column("payment_mode"),
        "trialEnd": time_column("trial_end"),
        "cancelAtPeriodEnd": column("cancel_at_period_end"),
        "renewals": column("renewals"),
        "failedRenewals": column("failed_renewals"),
        "nextRetryAt": time_column("next_retry_at"),
        "endedAt": time_column("ended_at"),
        "scheduledPlanId": id_column("Plan", "scheduled_plan_id"),
        "plan": related("Plan", "FROM plan {b} WHERE {b}.id = {a}.plan_id"),
    },
    "Plan": {
        "id": own_id("Plan"),
        "name": column("name"),
        "interval": column("interval"),
        "status": column("status"),
        "isPlatformPlan": lambda _s, a, _sel: f"({a}.partner_id IS NULL)",
        "validityPeriods": column("validity_periods"),
        "maxRenewals": column("max_renewals"),
        "graceDays": column("grace_days"),
        "trialDays": column("trial_days"),
        "trialRequiresPaymentMethod": column("trial_requires_payment_method"),
        "familyId": id_column("PlanFamily", "family_id"),
        "price": plan_price,
    },
    "Wallet": {
        "id": own_id("Wallet"),
        "ownerKind": column("owner_kind"),
        "unit": column("unit"),
        "balance": amount_of("Quantity", "balance", "unit", "unit"),
        "creditLimit": amount_of("Quantity", "credit_limit", "unit", "unit"),
        "updatedAt": time_column("updated_at"),
        "lowBalanceThreshold": amount_of("Quantity", "low_balance_threshold", "unit", "unit", nullable=True),
        "entries": Paged("LedgerEntry", _entries_of_wallet, filters=("cause", "since", "until")),
    },
    "LedgerEntry": {
        "id": own_id("LedgerEntry"),
        "amount": amount_of("Quantity", "amount", "unit", "unit"),
        "balanceAfter": amount_of("Quantity", "balance_after", "unit", "unit"),
        "cause": column("cause"),
        "note": posting("{p}.note"),
        "actor": posting("{p}.actor"),
        # Both set, neither empty: the global id of what caused it.
        "causedBy": posting(
            "CASE WHEN {p}.caused_by_type <> '' AND {p}.caused_by_id <> '' THEN "
            + values.global_id_of("{p}.caused_by_type", "{p}.caused_by_id")
            + " END"
        ),
        "counterAccount": lambda _s, a, _sel: f"nullif({a}.counter_account, '')",
        "postingId": id_column("Posting", "posting_id"),
        "createdAt": time_column("created_at"),
    },
    "Payment": {
        "id": own_id("Payment"),
        "amount": amount_of("Money", "amount", "currency", "currency"),
        "status": column("status"),
        "method": column("method"),
        "provider": column("provider"),
        "providerReference": column("provider_ref"),
        "purpose": column("purpose_kind"),
        "note": column("note"),
        "createdAt": time_column("created_at"),
        "refunded": refunded,
        "declineReason": column("decline_reason"),
        # payerAction stays on the general executor: free JSON whose numbers PostgreSQL keeps as written,
        # while the general executor reads them back as Python floats past 64 bits (or fails past a float).
    },
    "SubscriptionHistoryEntry": {
        "planId": id_column("Plan", "plan_id"),
        "status": column("status"),
        "startedAt": time_column("started_at"),
        "endedAt": time_column("ended_at"),
        "note": column("note"),
        "planName": lambda _s, a, _sel: f"(SELECT x.name FROM plan x WHERE x.id = {a}.plan_id)",  # noqa: S608 (our SQL)
    },
}


# -- root fields ------------------------------------------------------------------------------------------


def root_connection(paged: Paged) -> Callable[[Statement, str, list[FieldNode]], str]:
    def build(s: Statement, name: str, nodes: list[FieldNode]) -> str:
        return connection(s, "Query", name, paged, "", nodes)

    return build


NODE_SCOPES: dict[str, tuple[str, Callable[[Statement, str], list[str]]]] = {
    # Query.node's _RESOLVABLE for the types it compiles: none needs a permission to read (_READING_NEEDS).
    "Workspace": ("workspace", lambda s, r: visible_workspaces(s, r, descendants=True)),
    "Wallet": ("wallet", lambda s, r: scoped(s, r, descendants=True)),
    "Payment": ("payment", visible_payments),
    "LedgerEntry": ("ledger_entry", visible_entries),
    "Plan": ("plan", visible_plans),
}


def node(s: Statement, name: str, nodes: list[FieldNode]) -> str:
    """Query.node(id:) for ids of the types in :data:`NODE_SCOPES`: the row if the caller's scope holds it,
    else null, with the selection's fragments that apply to its type. A fragment on another type keeps the
    operation on the general executor; at run time, an id of another type, or one that is not an id, goes
    to the general executor."""
    field_node = nodes[0]
    selection = _merged(nodes)
    named = {
        condition
        for condition in _conditions(s, selection)
        if isinstance(s.schema.get_type(condition), GraphQLObjectType)
    }
    for type_name in named - NODE_SCOPES.keys():
        raise NotCompiled(f"Query.node for a {type_name} is not compiled")
    arguments = _arguments(s, "Query", name, field_node)
    types = sorted(NODE_SCOPES)  # a type the fragments do not name answers its Node fields (id), or {}

    def decoded(inputs: Inputs) -> tuple[str, int]:
        try:
            type_name, db_id = from_global_id(arguments(inputs)["id"])
        except BillingError:
            raise Fallback from None
        if type_name not in types:
            raise Fallback
        return type_name, db_id

    kind = s.parameter(lambda i: decoded(i)[0], "text")
    db_id = s.parameter(lambda i: decoded(i)[1], "bigint")
    cases = []
    for type_name in types:
        table, scope = NODE_SCOPES[type_name]
        r = s.alias()
        found = " AND ".join([f"{r}.id = {db_id}", *scope(s, r)])
        cases.append(
            f"WHEN '{type_name}' THEN (SELECT {_row(s, type_name, r, selection)} FROM {table} {r} WHERE {found})"  # noqa: S608 (our SQL)
        )
    return f"(CASE {kind} {' '.join(cases)} END)"


def _conditions(s: Statement, selection: SelectionSetNode | None) -> Iterator[str]:
    """The type conditions of a selection's fragments, at every depth of fragments within fragments."""
    for item in selection.selections if selection else ():
        if isinstance(item, InlineFragmentNode):
            if item.type_condition:
                yield item.type_condition.name.value
            yield from _conditions(s, item.selection_set)
        elif isinstance(item, FragmentSpreadNode):
            fragment = s.fragments[item.name.value]
            yield fragment.type_condition.name.value
            yield from _conditions(s, fragment.selection_set)


ROOTS: dict[str, Callable[[Statement, str, list[FieldNode]], str]] = {
    "workspaces": root_connection(Paged("Workspace", _root_workspaces)),
    "plans": root_connection(Paged("Plan", _root_plans)),
    "node": node,
}


# -- operations -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Compiled:
    """One registered query as a statement per kind of caller."""

    operation: OperationDefinitionNode
    statements: dict[ViewerKind, tuple[str, tuple[Source, ...]]]

    @property
    def name(self) -> str | None:
        return self.operation.name.value if self.operation.name else None

    async def run(self, text: str, parameters: list[object]) -> str:
        """The response's ``data`` as JSON text; Fallback if the statement fails (a limit beyond Int...)."""
        client = sql.connection()
        try:
            async with client.acquire_connection() as connection:
                answer = await connection.fetchval(text, *parameters)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
            log.debug("a compiled statement failed: the general executor answers", exc_info=True)
            raise Fallback from None
        return str(answer)

    def prepare(self, schema: GraphQLSchema, viewer: Viewer | None, raw_variables: object) -> tuple[str, list[object]]:
        """The statement and its parameters for this request; Fallback if the general executor must answer."""
        if viewer is None:
            raise Fallback
        if raw_variables is not None and not isinstance(raw_variables, dict):
            raise Fallback
        coerced = get_variable_values(schema, self.operation.variable_definitions or (), raw_variables or {})
        if isinstance(coerced, list):
            raise Fallback
        inputs = Inputs(viewer, coerced)
        text, sources = self.statements[viewer.kind]  # a source that cannot be had raises Fallback
        return text, [source(inputs) for source in sources]


def compile_operation(
    document: str, schema: GraphQLSchema, rules: Sequence[Any] = (), max_tokens: int | None = None
) -> Compiled:
    """The compiled form of a registered query's document; NotCompiled says why it cannot be. ``rules`` and
    ``max_tokens`` are the general executor's limits: an operation it refuses is not compiled."""
    try:
        parsed = parse(document, max_tokens=max_tokens)
    except GraphQLError as error:
        raise NotCompiled(f"it does not parse: {error.message}") from None
    if validate(schema, parsed, (*specified_rules, *rules)):
        raise NotCompiled("it does not pass validation (the general executor answers with the problems)")
    operations = [d for d in parsed.definitions if isinstance(d, OperationDefinitionNode)]
    if len(operations) != 1:
        raise NotCompiled("a document of several operations is not compiled")
    [operation] = operations
    if operation.operation is not OperationType.QUERY:
        raise NotCompiled(f"only queries are compiled, not a {operation.operation.value}")
    if operation.directives:
        raise NotCompiled("directives (@skip, @include) are not compiled")
    fragments = {d.name.value: d for d in parsed.definitions if isinstance(d, FragmentDefinitionNode)}
    statements = {}
    for kind in ViewerKind:
        s = Statement(schema, kind, fragments)
        pairs = []
        for key, name, nodes in s.fields("Query", operation.selection_set):
            if name == "__typename":
                pairs.append((key, ""))
                continue
            root = ROOTS.get(name)
            if root is None:
                raise NotCompiled(f"Query.{name} is not compiled")
            pairs.append((key, root(s, name, nodes)))
        body = f"SELECT {_json_object('Query', pairs)}::text"
        if s.uses_chain:
            partner = s.parameter(lambda i: i.viewer.partner_id, "bigint")
            body = values.with_chain(partner, body)
        statements[kind] = (body, tuple(s.sources))
    return Compiled(operation, statements)
