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
from schema.ids import decode_cursor
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
                self._same_type(type_name, node.type_condition.name.value if node.type_condition else type_name)
                yield from self._collect(type_name, node.selection_set)
            elif isinstance(node, FragmentSpreadNode):
                fragment = self.fragments[node.name.value]
                if fragment.directives:
                    raise NotCompiled("directives (@skip, @include) are not compiled")
                self._same_type(type_name, fragment.type_condition.name.value)
                yield from self._collect(type_name, fragment.selection_set)

    @staticmethod
    def _same_type(type_name: str, condition: str) -> None:
        if condition != type_name:
            raise NotCompiled(f"a fragment on {condition} inside {type_name} is not compiled")


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


def _live(b: str) -> str:
    return f"{b}.status IN {values.LIVE_STATUSES}"


CATALOGUE: dict[str, dict[str, Build]] = {
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
    },
}


def _row(s: Statement, type_name: str, a: str, selection: SelectionSetNode | None) -> str:
    fields = CATALOGUE[type_name]

    def value(key_field: tuple[str, list[FieldNode]]) -> str:
        name, nodes = key_field
        build = fields.get(name)
        if build is None:
            raise NotCompiled(f"{type_name}.{name} is not compiled")
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


# -- root fields ------------------------------------------------------------------------------------------


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


def workspaces(s: Statement, nodes: list[FieldNode]) -> str:
    """Query.workspaces(first, after): the caller's workspaces, oldest first (tenancy.workspaces, paginate)."""
    node = nodes[0]  # validation made every node of one key alike in arguments
    if any(argument.name.value not in ("first", "after") for argument in node.arguments or ()):
        raise NotCompiled("Query.workspaces(ownerEmail:) is not compiled")
    arguments = _arguments(s, "Query", "workspaces", node)

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
    past = s.parameter(lambda i: after(i) or 0, "bigint")  # ids start at 1
    scope = ["w.deleted_at IS NULL", f"w.id > {past}"]
    if s.kind is not ViewerKind.PLATFORM:
        scope.append(f"w.partner_id = {s.parameter(lambda i: i.viewer.partner_id, 'bigint')}")
    if s.kind is ViewerKind.WORKSPACE:
        scope.append(f"w.id = {s.parameter(lambda i: i.viewer.workspace_id, 'bigint')}")
    a = s.alias()
    page = (
        "(SELECT w.*, row_number() OVER (ORDER BY w.id) AS wb_n FROM workspace w"  # noqa: S608 (our SQL, $n values)
        f" WHERE {' AND '.join(scope)}"
        f" ORDER BY w.id LIMIT {read}) {a}"
    )
    visible = Lazy(lambda: f"{a}.wb_n <= {shown}")
    connection = s.schema.get_type("Query").fields["workspaces"].type.of_type.name  # type: ignore[union-attr]
    edge_type = connection.removesuffix("Connection") + "Edge"
    cursor = "cursor"

    def cursor_of(expression: str) -> str:
        return values.global_id(cursor, expression)

    def listed_page(element: str) -> str:
        return f"coalesce(json_agg({element} ORDER BY {a}.id) FILTER (WHERE {visible}), '[]'::json)"

    def nodes_json(selection: SelectionSetNode | None) -> str:
        return listed_page(_row(s, "Workspace", a, selection))

    def edges_json(selection: SelectionSetNode | None) -> str:
        pairs = []
        for key, name, field_nodes in s.fields(edge_type, selection):
            if name == "cursor":
                pairs.append((key, cursor_of(f"{a}.id")))
            elif name == "node":
                pairs.append((key, _row(s, "Workspace", a, _merged(field_nodes))))
            elif name == "__typename":
                pairs.append((key, ""))
            else:
                raise NotCompiled(f"{edge_type}.{name} is not compiled")
        return (
            f"coalesce(json_agg({_json_object(edge_type, pairs)} ORDER BY {a}.id) FILTER (WHERE {visible}), '[]'::json)"
        )

    def page_info(selection: SelectionSetNode | None) -> str:
        columns: dict[str, Callable[[], str]] = {
            "hasNextPage": lambda: f"(count(*) > {shown})",
            "hasPreviousPage": lambda: s.parameter(lambda i: after(i) is not None, "boolean"),
            "startCursor": lambda: cursor_of(f"min({a}.id) FILTER (WHERE {visible})"),
            "endCursor": lambda: cursor_of(f"max({a}.id) FILTER (WHERE {visible})"),
        }
        return _object(s, "PageInfo", selection, lambda key: columns[key]() if key in columns else None)

    pairs = []
    for key, name, field_nodes in s.fields(connection, _merged(nodes)):
        selection = _merged(field_nodes)
        if name == "nodes":
            pairs.append((key, nodes_json(selection)))
        elif name == "edges":
            pairs.append((key, edges_json(selection)))
        elif name == "pageInfo":
            pairs.append((key, page_info(selection)))
        elif name == "__typename":
            pairs.append((key, ""))
        else:
            raise NotCompiled(f"{connection}.{name} is not compiled")
    # GROUP BY (): one row, page or no page, whatever the selection aggregates.
    return f"(SELECT {_json_object(connection, pairs)} FROM {page} GROUP BY ())"  # noqa: S608 (our SQL, $n values)


ROOTS: dict[str, Callable[[Statement, list[FieldNode]], str]] = {"workspaces": workspaces}


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
            pairs.append((key, root(s, nodes)))
        body = f"SELECT {_json_object('Query', pairs)}::text"
        if s.uses_chain:
            partner = s.parameter(lambda i: i.viewer.partner_id, "bigint")
            body = values.with_chain(partner, body)
        statements[kind] = (body, tuple(s.sources))
    return Compiled(operation, statements)
