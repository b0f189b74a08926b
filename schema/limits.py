"""Request limits as validation rules: each refusal carries ``extensions.code``.

Query cost: a validation rule that refuses, before anything runs, queries whose worst case is too big.
Each field costs 1, times the page size of every list above it (its ``first`` argument when written
literally, the maximum page size when it comes from a variable or is absent on a connection).

Depth, aliases and introspection depth are strawberry's and graphql-core's rules, given a code by
:func:`coded`; the token limit is the parser's, coded where errors are shaped (schema.errors).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from graphql import (
    ASTValidationRule,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    StringValueNode,
    ValidationContext,
    ValidationRule,
)
from graphql.validation import ASTValidationContext, MaxIntrospectionDepthRule
from strawberry.extensions import SchemaExtension

from billing.core.errors import ErrorCode


class _Coding:
    """A validation context whose reported errors gain ``extensions.code``: rules report through
    their context, not through a method a subclass could override."""

    def __init__(self, context: ASTValidationContext, code: ErrorCode) -> None:
        self._context = context
        self._code = code

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    def report_error(self, error: GraphQLError) -> None:
        extensions = {**(error.extensions or {}), "code": self._code.value}
        self._context.report_error(GraphQLError(error.message, error.nodes, extensions=extensions))


def coded(rule: type[ASTValidationRule], code: ErrorCode) -> type[ASTValidationRule]:
    """``rule``, its refusals carrying ``extensions.code``."""

    class Coded(rule):  # type: ignore[valid-type,misc]
        def __init__(self, context: ASTValidationContext) -> None:
            super().__init__(_Coding(context, code))

    Coded.__name__ = Coded.__qualname__ = f"Coded{rule.__name__}"
    return Coded


# graphql-core's own rules that a request limit stands behind, as they run with a code.
_CODED_SPECIFIED = {MaxIntrospectionDepthRule: coded(MaxIntrospectionDepthRule, ErrorCode.QUERY_TOO_COMPLEX)}


class LimitRules(SchemaExtension):
    """Adds our rules to the specified ones, swapping the specified rules that limit a request for
    their coded versions. The same classes for every request: ValidationCache keys on them."""

    def __init__(self, rules: list[type[ASTValidationRule]]) -> None:
        self.rules = tuple(rules)

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context
        context.validation_rules = (*(_CODED_SPECIFIED.get(r, r) for r in context.validation_rules), *self.rules)
        yield


def cost_rule(max_cost: int, max_page: int, default_page: int = 20) -> type[ValidationRule]:
    class QueryCost(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            self.fragments: dict[str, FragmentDefinitionNode] = {
                d.name.value: d for d in context.document.definitions if isinstance(d, FragmentDefinitionNode)
            }

        def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
            cost = self._cost(node.selection_set, set())
            if cost > max_cost:
                self.report_error(
                    GraphQLError(
                        f"Query cost {cost} exceeds the maximum of {max_cost}: ask for smaller pages or fewer fields.",
                        node,
                        extensions={"code": ErrorCode.QUERY_TOO_COMPLEX.value},
                    )
                )

        def _cost(self, selection_set: SelectionSetNode | None, seen: set[str]) -> int:
            if selection_set is None:
                return 0
            total = 0
            for selection in selection_set.selections:
                if isinstance(selection, FieldNode):
                    children = self._cost(selection.selection_set, seen)
                    total += 1 + self._multiplier(selection) * children
                elif isinstance(selection, InlineFragmentNode):
                    total += self._cost(selection.selection_set, seen)
                elif isinstance(selection, FragmentSpreadNode):
                    name = selection.name.value
                    fragment = self.fragments.get(name)
                    if fragment is not None and name not in seen:  # cycles are another rule's error
                        total += self._cost(fragment.selection_set, seen | {name})
            return total

        @staticmethod
        def _multiplier(field: FieldNode) -> int:
            for argument in field.arguments or ():
                if argument.name.value == "first":
                    if isinstance(argument.value, IntValueNode):
                        return max(1, min(int(argument.value.value), max_page))
                    return max_page
            selected = (
                {s.name.value for s in field.selection_set.selections if isinstance(s, FieldNode)}
                if field.selection_set
                else set()
            )
            if selected & {"edges", "nodes", "pageInfo"}:
                return default_page  # a connection asked for without "first"
            return 1

    return QueryCost


def _unstorable(text: str) -> bool:
    return "\x00" in text or any(0xD800 <= ord(c) <= 0xDFFF for c in text)


class StorableStrings(ValidationRule):
    """String literals in the document may not hold NUL or lone surrogates: no database stores
    them. (JSON variables are checked when the request body is decoded.)"""

    def enter_string_value(self, node: StringValueNode, *_: Any) -> None:
        if _unstorable(node.value):
            self.report_error(
                GraphQLError(
                    "Strings must not contain NUL or unpaired surrogate characters.",
                    node,
                    extensions={"code": ErrorCode.INVALID_INPUT.value},
                )
            )
