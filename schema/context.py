"""The per-request context: who is calling, and the request's DataLoaders.

A websocket's context lives as long as its connection (every operation sent on it shares it)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from strawberry.dataloader import DataLoader

from billing.core.errors import BillingError, ErrorCode
from billing.core.tenancy import Viewer
from billing.subscriptions.current import LIVE
from billing.tenants import api_keys, hierarchy, identity
from models.catalog import PartnerMargin, Plan
from models.subscriptions import Subscription, UsageCounter, WorkspaceAddOn
from models.tenancy import Branding, Partner, Project
from models.wallets import Wallet


def _group(rows: Iterable[Any], key: str, keys: list[int]) -> list[list[Any]]:
    grouped: dict[int, list[Any]] = defaultdict(list)
    for row in rows:
        grouped[getattr(row, key)].append(row)
    return [grouped.get(k, []) for k in keys]


async def _load_partners(keys: list[int]) -> list[Partner | None]:
    found = {p.id: p for p in await Partner.filter(id__in=keys)}
    return [found.get(k) for k in keys]


async def _load_brandings(keys: list[int]) -> list[Branding | None]:
    found = {b.partner_id: b for b in await Branding.filter(partner_id__in=keys)}
    return [found.get(k) for k in keys]


async def _load_margins(keys: list[int]) -> list[list[PartnerMargin]]:
    return _group(await PartnerMargin.filter(partner_id__in=keys), "partner_id", keys)


async def _load_ancestry(keys: list[int]) -> list[list[int]]:
    return [await hierarchy.ancestry(key) for key in keys]  # one key in practice: the caller's partner


async def _load_live_subscriptions(keys: list[int]) -> list[Subscription | None]:
    found: dict[int, Subscription] = {}
    for row in await Subscription.filter(workspace_id__in=keys, status__in=LIVE).order_by("id"):
        found[row.workspace_id] = row  # the newest live one
    return [found.get(k) for k in keys]


async def _load_usage(keys: list[int]) -> list[list[UsageCounter]]:
    return _group(await UsageCounter.filter(workspace_id__in=keys).order_by("metric"), "workspace_id", keys)


async def _load_projects(keys: list[int]) -> list[list[Project]]:
    return _group(await Project.filter(workspace_id__in=keys).order_by("id"), "workspace_id", keys)


async def _load_wallets(keys: list[int]) -> list[list[Wallet]]:
    return _group(await Wallet.filter(workspace_id__in=keys).order_by("id"), "workspace_id", keys)


async def _load_plans(keys: list[int]) -> list[Plan | None]:
    found = {p.id: p for p in await Plan.filter(id__in=keys)}
    return [found.get(k) for k in keys]


async def _load_add_ons(keys: list[int]) -> list[list[WorkspaceAddOn]]:
    rows = await WorkspaceAddOn.filter(workspace_id__in=keys, active=True).prefetch_related("add_on")
    return _group(rows, "workspace_id", keys)


class Loaders:
    """The request's DataLoaders, each made when first used: most requests use none or one."""

    @cached_property
    def partner(self) -> DataLoader[int, Partner | None]:
        return DataLoader(_load_partners)

    @cached_property
    def branding_of_partner(self) -> DataLoader[int, Branding | None]:
        return DataLoader(_load_brandings)

    @cached_property
    def projects_of_workspace(self) -> DataLoader[int, list[Project]]:
        return DataLoader(_load_projects)

    @cached_property
    def wallets_of_workspace(self) -> DataLoader[int, list[Wallet]]:
        return DataLoader(_load_wallets)

    @cached_property
    def margins_of_partner(self) -> DataLoader[int, list[PartnerMargin]]:
        return DataLoader(_load_margins)

    @cached_property
    def ancestry(self) -> DataLoader[int, list[int]]:
        """Each partner's chain from the platform's direct partner down to itself."""
        return DataLoader(_load_ancestry)

    @cached_property
    def live_subscription(self) -> DataLoader[int, Subscription | None]:
        return DataLoader(_load_live_subscriptions)

    @cached_property
    def usage_of_workspace(self) -> DataLoader[int, list[UsageCounter]]:
        return DataLoader(_load_usage)

    @cached_property
    def plan(self) -> DataLoader[int, Plan | None]:
        return DataLoader(_load_plans)

    @cached_property
    def add_ons_of_workspace(self) -> DataLoader[int, list[WorkspaceAddOn]]:
        return DataLoader(_load_add_ons)


def bearer_token(authorization: str) -> str:
    """The token of an ``Authorization: Bearer <token>`` value ("" for anything else)."""
    return authorization[7:].strip() if authorization[:7].lower() == "bearer " else ""


async def authenticate(token: str) -> Viewer | None:
    """Who a bearer token stands for: a session of a person, or an API key; None if neither."""
    if token.startswith(f"{identity.SESSION_PREFIX}_"):
        return await identity.authenticate_session(token)
    return await api_keys.authenticate(token) if token else None


@dataclass
class Context:
    viewer: Viewer | None
    request_id: str
    loaders: Loaders = field(default_factory=Loaders)
    request: Any = None
    response: Any = None
    token: str | None = None  # the bearer token, for logout
    client_address: str | None = None
    connection_params: dict[str, Any] | None = None  # a websocket's connection_init payload
    origin: str | None = None  # the browser page's Origin header; None from callers that are not browsers

    def require_viewer(self) -> Viewer:
        if self.viewer is None:
            raise BillingError(ErrorCode.UNAUTHENTICATED, "send Authorization: Bearer <api key or session token>")
        return self.viewer

    async def reauthenticate(self) -> Viewer:
        """Check the token again (a subscription does, before each event it sends): a key revoked or a
        session ended since the connection opened stops it with UNAUTHENTICATED."""
        self.viewer = await authenticate(self.token) if self.token else None
        return self.require_viewer()
