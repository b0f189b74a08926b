"""Mutations are declared once: ``@mutation(permission=...)`` on a resolver whose only argument is
``input`` and whose return type is a payload with an ``errors`` list.

The field extension checks the permission, runs the resolver, and turns an expected failure (a
``BillingError``, raised by the check or by the service) into a typed error in the payload: so a
resolver is only the call to its service and the mapping of the result. Anything unexpected still
reaches the error masking of ``schema.errors.ShapeErrors``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import strawberry
from strawberry.extensions import FieldExtension
from strawberry.types import Info
from strawberry.types.field import StrawberryField

from billing.core.errors import BillingError
from models.enums import Permission
from schema.auth import viewer_with
from schema.errors import UserError


class TypedErrors(FieldExtension):
    def __init__(self, permission: Permission | None) -> None:
        self.permission = permission
        self.payload: Callable[..., Any] | None = None

    def apply(self, field: StrawberryField) -> None:
        payload = field.type
        fields = getattr(payload, "__strawberry_definition__", None)
        if fields is None or "errors" not in {f.python_name for f in fields.fields}:
            raise TypeError(f"mutation {field.python_name} must return a payload with an errors list")
        self.payload = payload  # type: ignore[assignment]

    async def resolve_async(self, next_: Callable[..., Awaitable[Any]], source: Any, info: Info, **kwargs: Any) -> Any:
        assert self.payload is not None
        try:
            if self.permission is not None:
                viewer_with(info, self.permission)
            return await next_(source, info, **kwargs)
        except BillingError as error:
            # A payload that says more about a refusal (a plan change's limit excesses) builds itself.
            refused = getattr(self.payload, "refused", None)
            return refused(error) if refused is not None else self.payload(errors=[UserError.of(error)])


def mutation(*, permission: Permission | None = None, description: str | None = None) -> Any:
    """Declare a mutation: the permission it needs (none: the resolver decides, e.g. login) and its
    description; expected failures become the payload's typed errors."""
    return strawberry.mutation(description=description, extensions=[TypedErrors(permission)])
