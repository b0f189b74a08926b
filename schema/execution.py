"""graphql-core's executor with a shorter path for the commonest field of a page: a scalar or enum read off
its object.

Most of a page's fields (a workspace's ``name``, a wallet's ``unit``, an amount's ``amount``) are strawberry
fields with no resolver of their own and no arguments: their value is an attribute of the object. For
each, graphql-core builds a ``GraphQLResolveInfo``, reads the field's arguments, calls the resolver (which
ignores both), checks for an awaitable and walks ``complete_value`` down to the leaf. This executor reads the
attribute and serialises it as ``complete_leaf_value`` does; anything else (a null where the schema says
non-null, a value the scalar refuses, an exception) goes through graphql-core's own ``execute_field``,
which reads the attribute again (reading it does nothing else) and answers with its own error.
"""

from __future__ import annotations

from typing import Any
from weakref import WeakKeyDictionary

import strawberry
from graphql import (
    GraphQLField,
    GraphQLLeafType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    Undefined,
    is_leaf_type,
)
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types import Info
from strawberry.types.field import StrawberryField

_NOT_PLAIN = (None, False, "")


def _plain_leaf(field: GraphQLField) -> tuple[GraphQLLeafType | None, bool, str]:
    """(the leaf type, whether it is non-null, the attribute) of a field read off its object with ``getattr``
    (strawberry's default resolver, which its basic fields call); (None, False, "") for others."""
    definition = (field.extensions or {}).get("strawberry-definition")
    if (
        field.args
        or not getattr(field.resolve, "_is_default", False)
        or not isinstance(definition, StrawberryField)
        or definition.base_resolver is not None
        or definition.extensions
        or definition.default_resolver is not getattr
        or not definition.python_name
    ):
        return _NOT_PLAIN
    non_null = isinstance(field.type, GraphQLNonNull)
    named = field.type.of_type if non_null else field.type  # type: ignore[union-attr]
    return (named, non_null, definition.python_name) if is_leaf_type(named) else _NOT_PLAIN


# Per schema (gone with it), per field: the field itself (kept, so that its id stays its own), its leaf type
# if it is read off its object, whether it is non-null, and its attribute.
_PLAIN: WeakKeyDictionary[GraphQLSchema, dict[int, tuple[GraphQLField, GraphQLLeafType | None, bool, str]]] = (
    WeakKeyDictionary()
)


class PlainLeaves(StrawberryGraphQLCoreExecutionContext):
    def execute_field(
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: Any,
        path: Any,
        position_context: Any,
    ) -> Any:
        node = field_details_list[0].node
        field = self.schema.get_field(parent_type, node.name.value)
        middleware = self.middleware_manager  # strawberry passes one always: empty unless an extension resolves
        if field is None or node.arguments or (middleware is not None and middleware.middlewares):
            return super().execute_field(parent_type, source, field_details_list, path, position_context)
        plain = _PLAIN.get(self.schema)
        if plain is None:
            plain = _PLAIN[self.schema] = {}
        known = plain.get(id(field))
        if known is None or known[0] is not field:
            known = plain[id(field)] = (field, *_plain_leaf(field))
        _, leaf, non_null, attribute = known
        if leaf is not None:
            try:
                value = getattr(source, attribute)
                if value is None or value is Undefined:
                    if not non_null:
                        return None
                else:
                    serialized = leaf.serialize(value)
                    if serialized is not None and serialized is not Undefined:
                        return serialized
            except Exception:  # noqa: S110 (graphql-core's own path answers with the error)
                pass
        return super().execute_field(parent_type, source, field_details_list, path, position_context)


def lean_resolvers(schema: strawberry.Schema) -> int:
    """Has graphql-core call, directly, each resolver of an object type's field that takes only ``self``
    (and ``info``): no arguments, no field extensions. For such a field, strawberry's wrapper converts no
    argument and chains no extension; it only passes the object and an ``Info``, which this does too.
    Root types keep strawberry's wrapper, and so does every field if the schema has exception handlers.
    Returns how many fields it changed."""
    if getattr(schema.schema_converter, "_exception_handler_specs", None):
        return 0
    roots = {schema._schema.query_type, schema._schema.mutation_type, schema._schema.subscription_type}
    info_class = schema.config.info_class
    changed = 0
    for graphql_type in schema._schema.type_map.values():
        if not isinstance(graphql_type, GraphQLObjectType) or graphql_type in roots:
            continue
        for field in graphql_type.fields.values():
            definition = (field.extensions or {}).get("strawberry-definition")
            if not isinstance(definition, StrawberryField) or field.args or definition.extensions:
                continue
            resolver = definition.base_resolver
            if resolver is None or definition.is_subscription or resolver.self_parameter is None:
                continue
            info = resolver.info_parameter
            if resolver.parent_parameter or resolver.root_parameter or definition.arguments:
                continue
            if len(resolver.signature.parameters) != 1 + (info is not None):
                continue
            field.resolve = _direct(resolver.wrapped_func, info.name if info else None, info_class, definition)
            changed += 1
    return changed


def _direct(function: Any, info_name: str | None, info_class: type[Info], definition: StrawberryField) -> Any:
    if info_name is None:
        return lambda source, _info: function(source)
    return lambda source, info: function(source, **{info_name: info_class(_raw_info=info, _field=definition)})
