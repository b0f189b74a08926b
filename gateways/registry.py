"""Gateways are plugins: every provider, ours included, registers under the entry point group
``whitebill.gateways`` and is found here by name."""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points
from typing import Any

from gateways.base import Gateway, GatewayConfig

GROUP = "whitebill.gateways"


class UnknownGateway(LookupError):
    pass


@cache
def _factories() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def available() -> list[str]:
    return sorted(_factories())


def refresh() -> None:
    """Forget what was discovered (after installing a plugin at run time)."""
    _factories.cache_clear()


def create(name: str, config: GatewayConfig | None = None) -> Gateway:
    entry = _factories().get(name)
    if entry is None:
        raise UnknownGateway(name)
    gateway = entry.load()(config or GatewayConfig())
    if not isinstance(gateway, Gateway):
        raise TypeError(f"gateway plugin {name!r} does not implement the Gateway protocol")
    return gateway
