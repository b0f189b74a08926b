"""The executor's short path for fields read off their object (schema/execution.py) answers as graphql-core
does: the value serialised, or graphql-core's own error where the value is null for a non-null field or one
the scalar refuses."""

from __future__ import annotations

from enum import Enum
from typing import Any

import strawberry

from schema.execution import PlainLeaves


@strawberry.enum
class Colour(Enum):
    RED = "red"


@strawberry.type
class Thing:
    name: str
    count: int
    colour: Colour
    maybe: str | None


@strawberry.type
class Query:
    @strawberry.field
    def things(self) -> list[Thing | None]:
        return [
            Thing(name="a", count=1, colour=Colour.RED, maybe=None),
            Thing(name=None, count=2, colour=Colour.RED, maybe="x"),  # type: ignore[arg-type]
            Thing(name="c", count="three", colour=Colour.RED, maybe="y"),  # type: ignore[arg-type]
            Thing(name="d", count=2**40, colour=Colour.RED, maybe="z"),
        ]


QUERY = "{ things { name count colour maybe } }"


def run(execution_context_class: Any) -> Any:
    schema = strawberry.Schema(query=Query, execution_context_class=execution_context_class)
    result = schema.execute_sync(QUERY)
    return result.data, sorted((tuple(e.path or ()), e.message) for e in result.errors or [])


def test_the_short_path_answers_what_graphql_core_answers() -> None:
    data, errors = run(PlainLeaves)
    assert (data, errors) == run(PlainLeaves.__mro__[1])
    assert data == {"things": [{"name": "a", "count": 1, "colour": "RED", "maybe": None}, None, None, None]}
    assert errors == [
        (("things", 1, "name"), "Cannot return null for non-nullable field Thing.name."),
        (("things", 2, "count"), "Int cannot represent non-integer value: 'three'"),
        (("things", 3, "count"), "Int cannot represent non 32-bit signed integer value: 1099511627776"),
    ]
