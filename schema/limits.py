"""Query cost: a validation rule that refuses, before anything runs, queries whose worst case is too big.

Each field costs 1, times the page size of every list above it (its ``first`` argument when written
literally, the maximum page size when it comes from a variable or is absent on a connection).
"""

from __future__ import annotations

from typing import Any

from graphql import (
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
                        extensions={"code": "QUERY_TOO_COMPLEX"},
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
            self.report_error(GraphQLError("Strings must not contain NUL or unpaired surrogate characters.", node))
