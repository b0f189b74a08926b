"""The per-request context: who is calling, and the request's DataLoaders.

A websocket's context lives as long as its connection (every operation sent on it shares it)."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeVar

from strawberry.dataloader import DataLoader
from strawberry.types.nodes import SelectedField

from billing.core import sql
from billing.core.errors import BillingError, ErrorCode
from billing.core.tenancy import Viewer
from billing.subscriptions.current import LIVE
from billing.tenants import api_keys, hierarchy, identity
from models.catalog import AddOn, PartnerMargin, Plan
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


# The loaders of a page's rows read plain rows (sql.plain_rows): the ORM's query building and models cost
# more than their statements. Each reads what its ORM query read, in the same order.


async def _load_margins(keys: list[int]) -> list[list[PartnerMargin]]:
    query = f"SELECT * FROM partner_margin WHERE partner_id IN ({sql.placeholders(keys)}) ORDER BY id"  # noqa: S608
    rows = await sql.plain_rows(PartnerMargin, query, *keys)
    return _group(rows, "partner_id", keys)


async def _load_ancestry(keys: list[int]) -> list[list[int]]:
    return [await hierarchy.ancestry(key) for key in keys]  # one key in practice: the caller's partner


async def _load_live_subscriptions(keys: list[int]) -> list[Subscription | None]:
    live = [status.value for status in LIVE]
    rows = await sql.plain_rows(
        Subscription,
        f"SELECT * FROM subscription WHERE workspace_id IN ({sql.placeholders(keys)})"  # noqa: S608 ($n only)
        f" AND status IN ({sql.placeholders(live, len(keys) + 1)}) ORDER BY id",
        *keys,
        *live,
    )
    found: dict[int, Subscription] = {}
    for row in rows:
        found[row.workspace_id] = row  # the newest live one
    return [found.get(k) for k in keys]


async def _load_usage(keys: list[int]) -> list[list[UsageCounter]]:
    return _group(await UsageCounter.filter(workspace_id__in=keys).order_by("metric"), "workspace_id", keys)


async def _load_projects(keys: list[int]) -> list[list[Project]]:
    return _group(await Project.filter(workspace_id__in=keys).order_by("id"), "workspace_id", keys)


async def _load_wallets(keys: list[int]) -> list[list[Wallet]]:
    query = f"SELECT * FROM wallet WHERE workspace_id IN ({sql.placeholders(keys)}) ORDER BY id"  # noqa: S608
    return _group(await sql.plain_rows(Wallet, query, *keys), "workspace_id", keys)


async def _load_plans(keys: list[int]) -> list[Plan | None]:
    query = f"SELECT * FROM plan WHERE id IN ({sql.placeholders(keys)})"  # noqa: S608 ($n only)
    found = {p.id: p for p in await sql.plain_rows(Plan, query, *keys)}
    return [found.get(k) for k in keys]


async def _load_add_ons(keys: list[int]) -> list[list[WorkspaceAddOn]]:
    """Each workspace's active add-ons, each with its ``add_on`` (two statements, as prefetch_related)."""
    held = await sql.plain_rows(
        WorkspaceAddOn,
        f"SELECT * FROM workspace_add_on WHERE workspace_id IN ({sql.placeholders(keys)})"  # noqa: S608 ($n only)
        f" AND active = ${len(keys) + 1} ORDER BY id",
        *keys,
        True,
    )
    ids = sorted({h.add_on_id for h in held})
    if ids:
        query = f"SELECT * FROM add_on WHERE id IN ({sql.placeholders(ids)})"  # noqa: S608 ($n only)
        add_ons = {a.id: a for a in await sql.plain_rows(AddOn, query, *ids)}
        for h in held:
            h.add_on = add_ons[h.add_on_id]
    return _group(held, "workspace_id", keys)


T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger("whitebill.loaders")


def now_or_later(pending: Awaitable[T], then: Callable[[T], R]) -> Any:
    """``then`` of a DataLoader's value: at once if the loader has it already (a page its connection
    primed), else an awaitable of it, which graphql-core awaits as it would an async resolver's. A field
    that resolves at once costs no coroutine and no task: over a page of 50 workspaces, that is most of
    what the general executor spends beyond the fields themselves."""
    if isinstance(pending, asyncio.Future) and pending.done():
        return then(pending.result())

    async def later() -> R:
        return then(await pending)

    return later()


def ready(*pending: Awaitable[Any]) -> list[Any] | None:
    """The values of DataLoader futures that are all settled already; None if any is still to come. A
    settled future's exception is raised, as awaiting it would."""
    if all(isinstance(p, asyncio.Future) and p.done() for p in pending):
        return [p.result() for p in pending]  # type: ignore[attr-defined]
    return None


def _fields(selections: Iterable[Any]) -> Iterator[SelectedField]:
    """The fields of one level of a strawberry selection (``info.selected_fields``), fragments flattened.
    A field or fragment under @skip or @include is left out: whether it runs is not known here."""
    for selection in selections:
        if selection.directives.keys() & {"skip", "include"}:
            continue
        if isinstance(selection, SelectedField):
            yield selection
        else:
            yield from _fields(selection.selections)


def page_asks(selected_fields: Iterable[Any]) -> set[str]:
    """What a connection's page asks of each of its objects: the fields under its ``nodes`` and its
    ``edges { node }``, and ``subscription.plan`` and ``plan.price`` below them."""
    asked: set[str] = set()
    for connection in _fields(selected_fields):
        for part in _fields(connection.selections):
            if part.name == "nodes":
                objects = list(_fields(part.selections))
            elif part.name == "edges":
                objects = [
                    f for edge in _fields(part.selections) if edge.name == "node" for f in _fields(edge.selections)
                ]
            else:
                continue
            for field_ in objects:
                asked.add(field_.name)
                for plan in (p for p in _fields(field_.selections) if p.name == "plan"):
                    asked.add(f"{field_.name}.plan")
                    asked |= {f"plan.{price.name}" for price in _fields(plan.selections) if price.name == "price"}
    return asked


async def _prime(loader: DataLoader[int, T], keys: list[int]) -> dict[int, T]:
    """Asks ``loader`` for every key of a page at once and waits: one batch (keys it holds, or has asked
    for already, are not read again), settled before the page's fields run. Returns each key's value; on
    a failed statement, nothing: each field then answers with the loader's error, as it would have."""
    try:
        return dict(zip(keys, await loader.load_many(keys), strict=True))
    except Exception:
        log.debug("priming a page failed: its fields answer with the error one by one", exc_info=True)
        return {}


class Loaders:
    """The request's DataLoaders, each made when first used: most requests use none or one."""

    async def prime_workspaces(self, ids: list[int], asked: set[str]) -> bool:
        """For a page of workspaces, loads what its selection asks of each (:func:`page_asks`), one statement
        per kind as the DataLoaders would, before any of its fields runs: they then resolve at once
        (:func:`now_or_later`). Keys a loader holds already are not read again. Returns whether a
        workspace of the page has a live subscription."""
        subscribed = False
        if asked & {"subscription", "limits"}:
            found = await _prime(self.live_subscription, ids)
            subscribed = any(s is not None for s in found.values())
            plan_ids = sorted({s.plan_id for s in found.values() if s is not None})
            if plan_ids and asked & {"subscription.plan", "limits"}:
                await _prime(self.plan, plan_ids)
        if "limits" in asked:
            await _prime(self.add_ons_of_workspace, ids)
        if "wallets" in asked:
            await _prime(self.wallets_of_workspace, ids)
        return subscribed

    async def prime_margins(self, partner_id: int | None) -> None:
        """The caller's chain and each level's margins (what every price on a page is made from)."""
        if partner_id is None:
            return
        chain = (await _prime(self.ancestry, [partner_id])).get(partner_id)
        if chain:
            await _prime(self.margins_of_partner, chain)

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
