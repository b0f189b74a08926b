"""Which payment provider a partner (or the platform, which charges partners) uses, and with what keys.

Each configuration is a row; switching provider adds a new active row and leaves the old one in
place, inactive: its open payments still settle through its webhook URL (which carries the row's
id), and methods saved with it keep serving off-session charges through it until replaced.
"""

from __future__ import annotations

from typing import Any

from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from billing.core import audit, credentials, tenancy
from billing.core import config as domain_config
from billing.core.errors import BillingError, ErrorCode
from billing.core.tenancy import Viewer
from gateways import registry
from gateways.base import Gateway, Payer
from gateways.base import GatewayConfig as AdapterConfig
from models.enums import GatewayMode, PaymentMethodKind, Permission, ViewerKind
from models.payments import GatewayConfig, GatewayCustomer

MANUAL = "manual"
MAX_SECRET_LENGTH = 500


def webhook_url(config: GatewayConfig) -> str:
    base = domain_config.current().public_url.rstrip("/")
    return f"{base}/webhooks/{config.provider}/{config.id}"


def _with_aliases(secrets: dict[str, str]) -> dict[str, str]:
    if "webhook_secret" in secrets:
        return {**secrets, "webhook_token": secrets["webhook_secret"]}  # what Asaas calls its secret
    return secrets


def _provider_settings(provider: str) -> dict[str, Any]:
    # Where a provider's API is reached is not the partner's to choose (it would let a partner make the
    # server call any address); an operator may point a provider at a local server for tests.
    configured = domain_config.current()
    settings: dict[str, Any] = {}
    api_base = configured.gateway_api_bases.get(provider.upper())
    if api_base:
        settings["api_base"] = api_base
    if configured.gateway_timeout_seconds is not None:
        settings["timeout_seconds"] = configured.gateway_timeout_seconds
    return settings


_ADAPTERS: dict[tuple[int, str, bytes], Gateway] = {}
MAX_CACHED_ADAPTERS = 256


def gateway_for(config: GatewayConfig) -> Gateway:
    """The adapter for one stored configuration, with its secrets opened. A configuration never
    changes once made (switching adds a new one), so its adapter and connection pool are kept."""
    # The encrypted blob (random per encryption) tells apart rows that reuse an id, as in tests.
    key = (config.id, config.provider, bytes(config.credentials_encrypted or b""))
    cached = _ADAPTERS.get(key)
    if cached is not None:
        return cached
    if len(_ADAPTERS) >= MAX_CACHED_ADAPTERS:
        _ADAPTERS.pop(next(iter(_ADAPTERS)))
    _ADAPTERS[key] = adapter = _build(config)
    return adapter


def _build(config: GatewayConfig) -> Gateway:
    adapter_config = AdapterConfig(
        mode=config.mode.value,
        credentials=_with_aliases(credentials.decrypt(config.credentials_encrypted)),
        settings={**dict(config.settings or {}), **_provider_settings(config.provider)},
        config_id=config.id,
    )
    return registry.create(config.provider, adapter_config)


async def active_config(partner_id: int | None) -> GatewayConfig | None:
    """Where new checkouts of this partner's clients (or, with None, of partners) go."""
    return await GatewayConfig.filter(partner_id=partner_id, is_active=True).order_by("-id").first()


def configs_of(viewer: Viewer, partner_id: int | None) -> QuerySet[GatewayConfig]:
    """A partner's configurations (None: the platform's), for who may configure them; its clients see none."""
    if viewer.kind is ViewerKind.WORKSPACE:
        return GatewayConfig.filter(id=-1)
    viewer.require(Permission.CONFIGURE_GATEWAY)
    return GatewayConfig.filter(partner_id=partner_id)


def _check_secret(value: str | None, field: str) -> str | None:
    if value is None or value == "":
        return None
    # Sent in HTTP headers (API keys, webhook tokens): printable ASCII only, which headers carry as is.
    if len(value) > MAX_SECRET_LENGTH or not (value.isascii() and value.isprintable()) or " " in value:
        raise BillingError(ErrorCode.INVALID_INPUT, "not a valid credential", field=field)
    return value


async def configure(
    viewer: Viewer,
    *,
    partner_id: int | None,
    provider: str,
    methods: list[PaymentMethodKind],
    mode: GatewayMode,
    api_key: str | None,
    webhook_secret: str | None,
) -> GatewayConfig:
    """Point a partner's new checkouts (``partner_id`` None: the platform's, charging partners) at a
    provider. One call switches provider; earlier configurations stay for what they still serve."""
    viewer.require(Permission.CONFIGURE_GATEWAY)
    if partner_id is None:
        if not viewer.is_platform:
            raise BillingError(ErrorCode.FORBIDDEN, "only the platform configures its own gateway")
    else:
        await tenancy.get_scoped(tenancy.partners(viewer), partner_id, "partner")
    if provider not in registry.available():
        raise BillingError(ErrorCode.INVALID_INPUT, f"no gateway named {provider!r} is installed", field="provider")
    secrets = {
        name: value
        for name, value in (
            ("api_key", _check_secret(api_key, "apiKey")),
            ("webhook_secret", _check_secret(webhook_secret, "webhookSecret")),
        )
        if value is not None
    }
    if provider != MANUAL and "api_key" not in secrets:
        raise BillingError(ErrorCode.INVALID_INPUT, f"{provider} needs an API key", field="apiKey")
    if provider != MANUAL and "webhook_secret" not in secrets:
        raise BillingError(
            ErrorCode.INVALID_INPUT, f"{provider} needs a webhook secret to verify its events", field="webhookSecret"
        )
    try:  # built with the credentials being configured: an adapter may refuse ones of the wrong shape
        probe = registry.create(
            provider, AdapterConfig(mode=mode.value, credentials=_with_aliases(secrets), settings={})
        )
    except (ValueError, TypeError) as exc:
        raise BillingError(ErrorCode.INVALID_INPUT, f"{provider} refused these credentials", field="apiKey") from exc
    offered = probe.capabilities().methods
    close = getattr(probe, "aclose", None)
    if close is not None:
        await close()
    chosen = sorted({m.value for m in methods})
    if not chosen:
        raise BillingError(ErrorCode.INVALID_INPUT, "choose at least one payment method", field="methods")
    refused = [m for m in chosen if m not in offered]
    if refused:
        raise BillingError(
            ErrorCode.METHOD_NOT_ALLOWED,
            f"{provider} does not offer {', '.join(refused)} (it offers {', '.join(sorted(offered))})",
            field="methods",
        )
    async with in_transaction("default"):
        previous = await active_config(partner_id)
        await GatewayConfig.filter(partner_id=partner_id, is_active=True).update(is_active=False)
        config = await GatewayConfig.create(
            partner_id=partner_id,
            provider=provider,
            mode=mode,
            methods=chosen,
            credentials_encrypted=credentials.encrypt(secrets) if secrets else None,
            credentials_hint=credentials.hint(secrets),
            is_active=True,
        )
        await audit.record(
            actor=viewer.actor,
            action="gateway.configure",
            target_type="GatewayConfig",
            target_id=config.id,
            partner_id=partner_id,
            before=(
                {"provider": previous.provider, "config_id": audit.global_id("GatewayConfig", previous.id)}
                if previous
                else None
            ),
            after={"provider": provider, "methods": chosen, "mode": mode.value, "hint": config.credentials_hint},
        )
    return config


async def customer_ref(config: GatewayConfig, gateway: Gateway, payer: Payer) -> str | None:
    """The payer's customer at this configuration's provider, created once and remembered."""
    known = await GatewayCustomer.get_or_none(gateway_config_id=config.id, payer_key=payer.key)
    if known is not None:
        return known.provider_customer_ref
    ref = await gateway.ensure_customer(payer)
    if ref is None:
        return None
    row, _ = await GatewayCustomer.get_or_create(
        gateway_config_id=config.id, payer_key=payer.key, defaults={"provider_customer_ref": ref}
    )
    return row.provider_customer_ref
