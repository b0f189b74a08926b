"""Mutations are declared once: ``@mutation(permission=...)`` on a resolver whose only argument is
``input`` and whose return type is a payload with an ``errors`` list.

The field extension checks the permission, runs the resolver, and turns an expected failure (a
``BillingError``, raised by the check or by the service) into a typed error in the payload: so a
resolver is only the call to its service and the mapping of the result. Anything unexpected still
reaches the error masking of ``schema.errors.ShapeErrors``.

A typed error's ``field`` is the path inside ``input`` as the client sent it (``priceAmount``,
``item.planId``, ``cells[3].rate``). Services name fields by what they check (``price``,
``creditPackageId``); where the input spells one differently, the mutation says so once with
``fields={"price": "priceAmount"}``, and every path is checked against the input type when the schema
is built (a target that does not exist) and when an error is answered (logged as a defect)."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import strawberry
from strawberry.extensions import FieldExtension
from strawberry.types import Info
from strawberry.types.base import StrawberryList, StrawberryOptional
from strawberry.types.field import StrawberryField
from strawberry.utils.str_converters import to_camel_case

from billing.core.errors import BillingError
from models.enums import Permission
from schema.auth import viewer_with
from schema.errors import UserError

log = logging.getLogger("whitebill.errors")

# An amount sent as priceAmount and priceCurrency, which services check as a price and its currency.
PRICE_FIELDS = {"price": "priceAmount", "currency": "priceCurrency"}

_SEGMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)((?:\[\d+\])*)")


def _unwrap(type_: Any) -> Any:
    while isinstance(type_, StrawberryOptional):
        type_ = type_.of_type
    return type_


def input_has_path(input_type: Any, path: str) -> bool:
    """Whether ``path`` (``item.planId``, ``events[3].occurredAt``) names a field inside ``input_type``."""
    type_ = input_type
    for part in path.split("."):
        match = _SEGMENT.fullmatch(part)
        definition = getattr(_unwrap(type_), "__strawberry_definition__", None)
        if match is None or definition is None:
            return False
        name, indexes = match.groups()
        found = [f for f in definition.fields if (f.graphql_name or to_camel_case(f.python_name)) == name]
        if not found:
            return False
        type_ = _unwrap(found[0].type)
        for _ in range(indexes.count("[")):
            if not isinstance(type_, StrawberryList):
                return False
            type_ = _unwrap(type_.of_type)
    return True


def _renamed(path: str, fields: Mapping[str, str]) -> str:
    head = re.match(r"[^.\[]*", path).group(0)  # type: ignore[union-attr]
    return fields[head] + path[len(head) :] if head in fields else path


class TypedErrors(FieldExtension):
    def __init__(self, permission: Permission | None, fields: Mapping[str, str] | None = None) -> None:
        self.permission = permission
        self.fields = dict(fields or {})
        self.payload: Callable[..., Any] | None = None
        self.input_type: Any = None
        self.name = ""

    def apply(self, field: StrawberryField) -> None:
        payload = field.type
        fields = getattr(payload, "__strawberry_definition__", None)
        if fields is None or "errors" not in {f.python_name for f in fields.fields}:
            raise TypeError(f"mutation {field.python_name} must return a payload with an errors list")
        self.payload = payload  # type: ignore[assignment]
        self.name = field.python_name
        inputs = [a for a in field.arguments if a.python_name == "input"]
        self.input_type = inputs[0].type if inputs else None
        for target in self.fields.values():
            if self.input_type is None or not input_has_path(self.input_type, target):
                raise TypeError(f"mutation {field.python_name}: {target} is not a field of its input")

    def _error(self, error: BillingError) -> UserError:
        field = _renamed(error.field, self.fields) if error.field else None
        if field and self.input_type is not None and not input_has_path(self.input_type, field):
            log.error("mutation %s answered an error about %s, which is not a field of its input", self.name, field)
        return UserError(code=error.code, message=error.message, field=field)

    async def resolve_async(self, next_: Callable[..., Awaitable[Any]], source: Any, info: Info, **kwargs: Any) -> Any:
        assert self.payload is not None
        try:
            if self.permission is not None:
                viewer_with(info, self.permission)
            return await next_(source, info, **kwargs)
        except BillingError as error:
            # A payload that says more about a refusal (a plan change's limit excesses) builds itself.
            refused = getattr(self.payload, "refused", None)
            return refused(error) if refused is not None else self.payload(errors=[self._error(error)])


def mutation(
    *, permission: Permission | None = None, description: str | None = None, fields: Mapping[str, str] | None = None
) -> Any:
    """Declare a mutation: the permission it needs (none: the resolver decides, e.g. login), its
    description, and where the input spells a checked field differently from the services
    (``fields={"price": "priceAmount"}``); expected failures become the payload's typed errors."""
    return strawberry.mutation(description=description, extensions=[TypedErrors(permission, fields)])
