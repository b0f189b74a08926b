"""MkDocs hook: the API reference page, generated from the committed SDL (schema.graphql) at every build.

The page (api/reference.md) is never written to the source tree, so it cannot go stale: `make schema`
regenerates schema.graphql, and the next `make docs` describes what it says. Every type gets an anchor
named after it (``#Wallet``), every type reference links to its anchor, and the build's anchor validation
(mkdocs.yml) fails on a link to a type the page does not describe.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from graphql import (
    GraphQLArgument,
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLUnionType,
    NullValueNode,
    build_schema,
    print_ast,
)

PAGE = "api/reference.md"
SDL = "schema.graphql"


def _text(description: str | None) -> str:
    """A description on one line, safe inside a list item (no raw HTML, no table breaks)."""
    if not description:
        return ""
    return " ".join(description.split()).replace("<", "&lt;").replace(">", "&gt;")


def _ref(type_: Any) -> str:
    """A type reference with its named type linked: ``\\[[Wallet](#Wallet)!\\]!``."""
    if isinstance(type_, GraphQLNonNull):
        return _ref(type_.of_type) + "!"
    if isinstance(type_, GraphQLList):
        return "\\[" + _ref(type_.of_type) + "\\]"
    return f"[{type_.name}](#{type_.name})"


def _default(argument: GraphQLArgument | GraphQLInputField) -> str:
    """`` = `20` `` for a default other than null (a null default is the same as none)."""
    node = argument.ast_node.default_value if argument.ast_node is not None else None
    if node is None or isinstance(node, NullValueNode):
        return ""
    return f" = `{print_ast(node)}`"


def _deprecation(reason: str | None) -> str:
    return f" *Deprecated: {_text(reason)}*" if reason else ""


def _argument_lines(name: str, argument: GraphQLArgument | GraphQLInputField, indent: str) -> list[str]:
    description = _text(argument.description)
    line = f"{indent}- `{name}`: {_ref(argument.type)}{_default(argument)}"
    line += f" — {description}" if description else ""
    return [line + _deprecation(argument.deprecation_reason)]


def _field_lines(name: str, field: GraphQLField) -> list[str]:
    description = _text(field.description)
    line = f"- **`{name}`**: {_ref(field.type)}"
    line += f" — {description}" if description else ""
    lines = [line + _deprecation(field.deprecation_reason)]
    for argument_name, argument in field.args.items():
        lines += _argument_lines(argument_name, argument, "    ")
    return lines


def _heading(type_: GraphQLNamedType, kind: str) -> list[str]:
    lines = [f"### {type_.name} {{#{type_.name}}}", "", f"*{kind}*"]
    if type_.description:
        lines += ["", _text(type_.description)]
    return lines


def _type_section(type_: GraphQLNamedType) -> list[str]:
    if isinstance(type_, GraphQLObjectType | GraphQLInterfaceType):
        kind = "interface" if isinstance(type_, GraphQLInterfaceType) else "object"
        lines = _heading(type_, kind)
        if type_.interfaces:
            lines += ["", "Implements " + ", ".join(_ref(i) for i in type_.interfaces) + "."]
        lines.append("")
        for name, field in type_.fields.items():
            lines += _field_lines(name, field)
        return lines
    if isinstance(type_, GraphQLInputObjectType):
        lines = [*_heading(type_, "input"), ""]
        for name, field in type_.fields.items():
            lines += _argument_lines(name, field, "")
        return lines
    if isinstance(type_, GraphQLEnumType):
        lines = [*_heading(type_, "enum"), ""]
        for name, value in type_.values.items():
            description = _text(value.description)
            line = f"- `{name}`" + (f" — {description}" if description else "")
            lines.append(line + _deprecation(value.deprecation_reason))
        return lines
    if isinstance(type_, GraphQLUnionType):
        return [*_heading(type_, "union"), "", "One of " + ", ".join(_ref(t) for t in type_.types) + "."]
    if isinstance(type_, GraphQLScalarType):
        return _heading(type_, "scalar")
    raise TypeError(type_)


def _root_section(title: str, root: GraphQLObjectType | None) -> list[str]:
    if root is None:
        return []
    lines = [f"## {title}", "", f"The fields of [{root.name}](#{root.name}).", ""]
    for name, field in root.fields.items():
        lines += _field_lines(name, field)
    return [*lines, ""]


GROUPS: tuple[tuple[str, type | tuple[type, ...]], ...] = (
    ("Objects", GraphQLObjectType),
    ("Interfaces", GraphQLInterfaceType),
    ("Unions", GraphQLUnionType),
    ("Input types", GraphQLInputObjectType),
    ("Enums", GraphQLEnumType),
    ("Scalars", GraphQLScalarType),
)


def named_types(schema: GraphQLSchema) -> list[GraphQLNamedType]:
    """Every type the SDL defines or uses, by name, without the introspection types."""
    return sorted((t for name, t in schema.type_map.items() if not name.startswith("__")), key=lambda t: t.name)


def render(sdl: str) -> str:
    """The reference page's Markdown for an SDL."""
    schema = build_schema(sdl)
    types = named_types(schema)
    lines = [
        "# API reference",
        "",
        "Generated from [`schema.graphql`](index.md) (the committed SDL, `make schema` regenerates it) each",
        "time the site is built. Every argument and input field shows its type and its default, if any.",
        "",
    ]
    lines += _root_section("Queries", schema.query_type)
    lines += _root_section("Mutations", schema.mutation_type)
    lines += _root_section("Subscriptions", schema.subscription_type)
    for title, kind in GROUPS:
        group = [t for t in types if isinstance(t, kind)]
        if not group:
            continue
        lines += [f"## {title}", ""]
        for type_ in group:
            lines += [*_type_section(type_), ""]
    return "\n".join(lines) + "\n"


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    root = Path(config["config_file_path"]).parent
    content = render((root / SDL).read_text(encoding="utf-8"))
    files.append(File.generated(config, PAGE, content=content))
    return files
