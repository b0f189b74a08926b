"""Asaas (Brazil): boleto, Pix and card, in BRL, through the ``asaas`` SDK (API v3).

Configuration: ``credentials = {"api_key", "webhook_token"}``; ``settings`` may hold ``api_base``
(default https://api-sandbox.asaas.com in TEST mode, https://api.asaas.com in LIVE; paths are /v3/...),
``timeout_seconds`` (20), ``max_retries`` (2: the SDK retries GET/PUT/DELETE on 5xx, never POST),
``retry_backoff`` (0.5 s, urllib3's backoff factor) and ``due_days`` (3: the due date of a boleto,
Pix or card invoice when the request names none).

The SDK is synchronous (requests): every call runs in a worker thread, under this module's own
capacity limiter, so the event loop is never blocked.

Amounts are minor units (centavos) everywhere in whitebill and JSON numbers in reais at Asaas: they
are converted only here, exactly (:func:`minor_to_reais`, :func:`reais_to_minor`).

Outcomes of :meth:`AsaasGateway.charge`:

* BOLETO → PENDING, ``payer_action = {"kind": "BOLETO", "url": bankSlipUrl, "boleto_line", "barcode",
  "expires_at": dueDate}``; PIX → PENDING, ``{"kind": "PIX", "pix_payload", "pix_qr_png_base64",
  "expires_at", "url": invoiceUrl}``; CARD without a saved card → PENDING, ``{"kind": "URL", "url":
  invoiceUrl}``: the payer types the card on Asaas's page, card numbers never reach whitebill, and the
  card token comes back in the webhook (``WebhookNotice.saved_method``).
* CARD with ``saved_method_ref`` (an Asaas ``creditCardToken``) → SUCCEEDED, or DECLINED with Asaas's
  reason when the card is refused (Asaas keeps no payment then).
* NOT_ATTEMPTED: certainly nothing was created (a 4xx answer such as a validation error or a rejected API
  key, a 429, no connection could be opened, a payer without CPF/CNPJ, a currency other than BRL).
* UNKNOWN: the payment may exist (timeout, dropped connection, 5xx, an answer that is not a payment);
  :meth:`AsaasGateway.find_payment` tells, by our reference (sent as ``externalReference``).

Asaas has no idempotency keys, so :meth:`AsaasGateway.charge` first looks for a payment already made
with the same reference and returns it instead of creating a second one (if that look-up fails the
charge is NOT_ATTEMPTED). Refunds are made idempotent the same way: the refund's ``description``
carries the idempotency key and a refund already present is not made again.

Nothing here logs request bodies, the API key, the webhook token or card data: a filter on the SDK's
``asaas`` logger hides the JSON bodies it prints at DEBUG (they carry ``creditCardToken`` and the
payer's CPF) and scrubs the configured secrets from ``asaas``, ``urllib3`` and this module's records.
"""

from __future__ import annotations

import copy
import hmac
import json
import logging
import re
import threading
import weakref
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

import anyio
import anyio.to_thread
import requests
import urllib3.exceptions
from asaas import Asaas
from asaas.exceptions import (
    AsaasAPIError,
    AsaasAuthenticationError,
    AsaasConnectionError,
    AsaasNotFoundError,
    AsaasTimeoutError,
)

from gateways.base import (
    Capabilities,
    ChargeRequest,
    ChargeResult,
    DisputeStatus,
    GatewayConfig,
    Outcome,
    Payer,
    RefundResult,
    RefundState,
    SavedMethod,
    WebhookNotice,
    WebhookRejected,
)

log = logging.getLogger(__name__)

SANDBOX_API_BASE = "https://api-sandbox.asaas.com"
PRODUCTION_API_BASE = "https://api.asaas.com"
CURRENCY = "BRL"
BILLING_TYPES = {"BOLETO": "BOLETO", "PIX": "PIX", "CARD": "CREDIT_CARD"}
WEBHOOK_HEADER = "asaas-access-token"
REFUND_MARKER = "whitebill refund "
BRT = timezone(timedelta(hours=-3))  # Asaas's dates are Brasília dates; Brazil has no daylight saving time

# Every SDK call runs in a worker thread; this limiter is ours alone, not the default one of anyio.
_LIMITER = anyio.CapacityLimiter(8)

_MAX_MINOR = 10**15 - 1  # 15 significant digits: every such amount survives the trip through a float exactly
_CENT = Decimal("0.01")

PAID_STATUSES = frozenset({"CONFIRMED", "RECEIVED", "RECEIVED_IN_CASH", "DUNNING_RECEIVED"})
# After payment: refunds and chargebacks do not undo that the charge succeeded (the notices carry them).
AFTER_PAYMENT_STATUSES = frozenset(
    {
        "REFUNDED",
        "REFUND_REQUESTED",
        "REFUND_IN_PROGRESS",
        "CHARGEBACK_REQUESTED",
        "CHARGEBACK_DISPUTE",
        "AWAITING_CHARGEBACK_REVERSAL",
    }
)
WAITING_STATUSES = frozenset({"PENDING", "OVERDUE", "AWAITING_RISK_ANALYSIS", "AUTHORIZED", "DUNNING_REQUESTED"})
CHARGEBACK_LOST = frozenset({"DISPUTE_LOST", "DONE"})
CHARGEBACK_WON = frozenset({"REVERSED"})
# A refund's status in the payment's ``refunds`` list (docs.asaas.com, "Refunds": PENDING, CANCELLED, DONE;
# the official SDK's model adds AWAITING_CRITICAL_ACTION_AUTHORIZATION and
# AWAITING_CUSTOMER_EXTERNAL_AUTHORIZATION, both still on the way).
_REFUND_OUTCOMES = {"DONE": Outcome.SUCCEEDED, "CANCELLED": Outcome.DECLINED}

# Webhook event → outcome, for the events that say how the payment stands.
_EVENT_OUTCOMES: dict[str, Outcome] = {
    "PAYMENT_CONFIRMED": Outcome.SUCCEEDED,
    "PAYMENT_RECEIVED": Outcome.SUCCEEDED,  # also RECEIVED_IN_CASH
    "PAYMENT_DUNNING_RECEIVED": Outcome.SUCCEEDED,
    "PAYMENT_AWAITING_CHARGEBACK_REVERSAL": Outcome.SUCCEEDED,  # the dispute was won
    "PAYMENT_CREDIT_CARD_CAPTURE_REFUSED": Outcome.DECLINED,
    "PAYMENT_REPROVED_BY_RISK_ANALYSIS": Outcome.DECLINED,
    "PAYMENT_DELETED": Outcome.DECLINED,  # it can no longer be paid
    "PAYMENT_AWAITING_RISK_ANALYSIS": Outcome.PENDING,
    "PAYMENT_AUTHORIZED": Outcome.PENDING,
    "PAYMENT_RESTORED": Outcome.PENDING,
}
_DISPUTE_EVENTS = frozenset({"PAYMENT_CHARGEBACK_REQUESTED", "PAYMENT_CHARGEBACK_DISPUTE"})
_REFUND_EVENTS = frozenset({"PAYMENT_REFUNDED", "PAYMENT_PARTIALLY_REFUNDED"})
# Events whose payment lists its refunds, each with its state (PAYMENT_REFUND_DENIED: a refund was denied).
_REFUND_STATE_EVENTS = _REFUND_EVENTS | {"PAYMENT_REFUND_IN_PROGRESS", "PAYMENT_REFUND_DENIED"}


class AsaasCustomerError(ValueError):
    """The payer cannot be an Asaas customer as it stands (no CPF/CNPJ, a malformed one, no name, or Asaas
    refused the data). The message is safe to show to the payer or the partner."""


class AsaasGatewayError(RuntimeError):
    """Asaas could not be used for a call that has no outcome to fold the failure into (ensure_customer).
    The message never holds a secret."""


class AsaasAuthError(AsaasGatewayError):
    """Asaas refused the API key (HTTP 401): the gateway configuration is wrong."""


class _Malformed(Exception):
    """Asaas answered 2xx with something that is not what the endpoint returns."""


# -- amounts ---------------------------------------------------------------------------------------


def minor_to_reais(amount: int) -> float:
    """Centavos → the JSON number Asaas expects, exactly: 19990 → 199.9, 1 → 0.01."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise TypeError("amounts are integers in minor units")
    if not 0 <= amount <= _MAX_MINOR:
        raise ValueError("amount out of range")
    return float(Decimal(amount) / 100)


def reais_to_minor(value: object) -> int:
    """An Asaas JSON number in reais → centavos, exactly, through its shortest decimal form (so 0.29, which
    no float holds exactly, gives 29). Anything that is not a number with at most two decimals is refused."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ValueError("not an amount")
    try:
        reais = Decimal(str(value))
    except InvalidOperation:
        raise ValueError("not an amount") from None
    if not reais.is_finite():
        raise ValueError("not an amount")
    cents = reais * 100
    if cents != cents.to_integral_value():
        raise ValueError("an amount in reais has at most two decimals")
    return int(cents)


# -- logging: the SDK prints request bodies at DEBUG -------------------------------------------------

_SECRETS: weakref.WeakSet[_Secret] = weakref.WeakSet()
_SDK_BODY_MARKER = "json="


class _Secret:
    """A configured secret, registered for scrubbing from log records while its gateway lives."""

    __slots__ = ("__weakref__", "value")

    def __init__(self, value: str) -> None:
        self.value = value


class _RedactingFilter(logging.Filter):
    """Hides the SDK's request bodies and query parameters and removes configured secrets from records."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "asaas" and isinstance(record.msg, str) and _SDK_BODY_MARKER in record.msg:
            args = record.args if isinstance(record.args, tuple) else ()
            record.msg = "%s %s (parameters and body hidden)"
            record.args = tuple(str(a) for a in args[:2]) if len(args) >= 2 else ()
        secrets = [s.value for s in list(_SECRETS) if len(s.value) >= 6]
        if secrets:
            try:
                message = record.getMessage()
            except Exception:  # a record that cannot be formatted: let logging report it as usual
                return True
            if any(s in message for s in secrets):
                for s in secrets:
                    message = message.replace(s, "<hidden>")
                record.msg, record.args = message, ()
        return True


_FILTER = _RedactingFilter()
for _name in ("asaas", "urllib3.connectionpool", "urllib3.util.retry", "urllib3.connection", __name__):
    logging.getLogger(_name).addFilter(_FILTER)


# -- failures ----------------------------------------------------------------------------------------

_AUTH_REASON = "Asaas refused the API key (HTTP 401): check the credentials of this gateway configuration"


def _never_connected(exc: BaseException) -> bool:
    """True when no TCP connection was opened, so no request reached Asaas (refused, DNS, connect timeout)."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ConnectTimeoutError):
            return True
        if isinstance(current, requests.exceptions.ConnectTimeout):
            return True
        if isinstance(current, urllib3.exceptions.MaxRetryError) and current.reason is not None:
            stack.append(current.reason)
        stack.extend(a for a in getattr(current, "args", ()) if isinstance(a, BaseException))
        if current.__cause__ is not None:  # only explicit causes: a mere __context__ may be an earlier attempt
            stack.append(current.__cause__)
    return False


def _api_errors(exc: AsaasAPIError) -> list[dict[str, Any]]:
    return [e for e in (exc.errors or []) if isinstance(e, dict)]


def _describe(exc: AsaasAPIError) -> str:
    parts = [str(e.get("description") or e.get("code") or "") for e in _api_errors(exc)]
    text = "; ".join(p for p in parts if p)
    return text or f"HTTP {exc.status_code}"


def _card_refused(exc: AsaasAPIError) -> bool:
    return exc.status_code == 400 and any(
        str(e.get("code", "")).lower() == "invalid_creditcard" for e in _api_errors(exc)
    )


def _failure(exc: BaseException) -> tuple[Outcome, str]:
    """Any failure of a call that may have created something → NOT_ATTEMPTED, DECLINED or UNKNOWN, with a
    reason that holds no secret."""
    if isinstance(exc, AsaasAuthenticationError):
        return Outcome.NOT_ATTEMPTED, _AUTH_REASON
    if isinstance(exc, AsaasAPIError):
        status = exc.status_code or 0
        if _card_refused(exc):
            return Outcome.DECLINED, _describe(exc)
        if 400 <= status < 500:
            return Outcome.NOT_ATTEMPTED, f"Asaas refused the request (HTTP {status}): {_describe(exc)}"
        return Outcome.UNKNOWN, f"Asaas answered HTTP {status or '?'}"
    if isinstance(exc, _Malformed):
        return Outcome.UNKNOWN, f"Asaas answered something unexpected ({exc})"
    if isinstance(exc, AsaasTimeoutError | AsaasConnectionError | requests.RequestException):
        if _never_connected(exc):
            return Outcome.NOT_ATTEMPTED, "Asaas could not be reached (no connection was opened)"
        if isinstance(exc, AsaasTimeoutError):
            return Outcome.UNKNOWN, "Asaas did not answer in time"
        if isinstance(exc, requests.exceptions.RetryError):
            return Outcome.UNKNOWN, "Asaas kept answering with server errors"
        return Outcome.UNKNOWN, "the connection to Asaas failed before an answer arrived"
    raise exc


_EXPECTED = (AsaasAPIError, AsaasTimeoutError, AsaasConnectionError, requests.RequestException, _Malformed)


# -- Asaas objects ---------------------------------------------------------------------------------------


def _as_dict(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Malformed(f"{what} is not a JSON object")
    return value


def _payment(value: object) -> dict[str, Any]:
    data = _as_dict(value, "the payment")
    if not isinstance(data.get("id"), str) or not data["id"] or not isinstance(data.get("status"), str):
        raise _Malformed("the payment has no id or status")
    return data


def _raw_list(resource: Any, params: dict[str, Any]) -> Any:
    """GET a list endpoint and return Asaas's raw answer. The SDK's public ``list`` wraps the answer in a
    PaginatedResponse that turns an answer without ``data`` into an empty page (and fails on a JSON list),
    which would make a garbled answer look like "no such payment": the raw answer is checked here instead."""
    return resource._get(resource.BASE_PATH, params=params)


def _list_data(value: object, what: str) -> list[dict[str, Any]]:
    data = _as_dict(value, what).get("data")
    if not isinstance(data, list):
        raise _Malformed(f"{what} has no data list")
    return [item for item in data if isinstance(item, dict)]


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _saved_card(payment: dict[str, Any]) -> SavedMethod | None:
    card = payment.get("creditCard")
    if not isinstance(card, dict):
        return None
    token = _str_or_none(card.get("creditCardToken"))
    if token is None:
        return None
    last4 = _str_or_none(card.get("creditCardNumber"))
    return SavedMethod(
        provider_method_ref=token,
        kind="CARD",
        brand=_str_or_none(card.get("creditCardBrand")),
        last4=last4[-4:] if last4 else None,
        provider_customer_ref=_str_or_none(payment.get("customer")),
    )


def _status_outcome(payment: dict[str, Any]) -> tuple[Outcome, str | None]:
    status = payment["status"]
    if status in PAID_STATUSES or status in AFTER_PAYMENT_STATUSES:
        return Outcome.SUCCEEDED, None
    if payment.get("deleted") is True:
        return Outcome.NOT_ATTEMPTED, "the payment was deleted at Asaas and can no longer be paid"
    if status in WAITING_STATUSES:
        return Outcome.PENDING, None
    return Outcome.UNKNOWN, f"unknown Asaas payment status {status!r}"


def _refunded_minor(payment: dict[str, Any], event: str) -> int | None:
    refunds = payment.get("refunds")
    if isinstance(refunds, list) and refunds:
        total = 0
        for refund in refunds:
            if isinstance(refund, dict) and refund.get("status") != "CANCELLED":
                total += reais_to_minor(refund.get("value"))
        return total
    if event == "PAYMENT_REFUNDED":
        return reais_to_minor(payment.get("value"))
    return None


def _refund_states(payment: dict[str, Any]) -> tuple[RefundState, ...] | None:
    """The payment's refunds, each with its state; None when the payment does not list them. Asaas refunds
    have no id: ours carry the key in their description, one made at Asaas is told apart by its date."""
    refunds = payment.get("refunds")
    if not isinstance(refunds, list):
        return None
    states = []
    for refund in refunds:
        if not isinstance(refund, dict):
            continue
        try:
            amount = reais_to_minor(refund.get("value"))
        except ValueError:
            continue
        description = refund.get("description")
        key = (
            description[len(REFUND_MARKER) :]
            if isinstance(description, str) and description.startswith(REFUND_MARKER)
            else None
        )
        outcome = _REFUND_OUTCOMES.get(str(refund.get("status")), Outcome.PENDING)
        made_at = f"{refund.get('dateCreated')}:{amount}"  # one made at Asaas: when, and how much
        if amount <= 0:
            continue
        states.append(
            RefundState(
                amount=amount,
                outcome=outcome,
                key=key,
                provider_ref=f"{payment.get('id')}/refunds/{key or made_at}",
                reason="Asaas cancelled or denied the refund" if outcome is Outcome.DECLINED else None,
            )
        )
    return tuple(states)


def _refund_failed(exc: Exception) -> RefundResult:
    """A refund request that raised: a rejected key was not attempted, a 4xx refused it (nothing was
    refunded), anything else may or may not have reached Asaas."""
    if isinstance(exc, AsaasAuthenticationError):
        return RefundResult(Outcome.NOT_ATTEMPTED, reason=_AUTH_REASON)
    if isinstance(exc, AsaasAPIError):
        if exc.status_code and 400 <= exc.status_code < 500:
            return RefundResult(Outcome.DECLINED, reason=f"Asaas refused the refund: {_describe(exc)}")
        return RefundResult(Outcome.UNKNOWN, reason=_failure(exc)[1])
    failed, reason = _failure(exc)
    return RefundResult(failed, reason=reason)


def _without_card_token(body: dict[str, Any]) -> dict[str, Any]:
    raw = copy.deepcopy(body)
    payment = raw.get("payment")
    if isinstance(payment, dict) and isinstance(payment.get("creditCard"), dict):
        if payment["creditCard"].get("creditCardToken"):
            payment["creditCard"]["creditCardToken"] = "<hidden>"
    return raw


def _header(headers: dict[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _tax_id_digits(payer: Payer) -> str:
    if not payer.tax_id or not payer.tax_id.strip():
        raise AsaasCustomerError("Asaas needs the payer's CPF or CNPJ (tax id) to bill them; none is on record")
    raw = payer.tax_id.strip()
    if re.fullmatch(r"[\d.\-/ ]+", raw) is None:
        raise AsaasCustomerError("the payer's CPF/CNPJ may hold only digits (and . - / separators)")
    digits = re.sub(r"\D", "", raw)
    if len(digits) not in (11, 14):
        raise AsaasCustomerError("the payer's CPF/CNPJ must have 11 (CPF) or 14 (CNPJ) digits")
    return digits


class AsaasGateway:
    """The Asaas adapter. One instance per gateway configuration; safe to share between tasks."""

    name = "asaas"

    def __init__(self, config: GatewayConfig | None = None) -> None:
        self.config = config or GatewayConfig()
        credentials = self.config.credentials
        settings = self.config.settings
        self._api_key = _Secret(str(credentials.get("api_key") or ""))
        self._webhook_token = _Secret(str(credentials.get("webhook_token") or ""))
        _SECRETS.add(self._api_key)
        _SECRETS.add(self._webhook_token)
        default_base = PRODUCTION_API_BASE if self.config.mode.upper() == "LIVE" else SANDBOX_API_BASE
        base = str(settings.get("api_base") or default_base).rstrip("/")
        self.api_base = base.removesuffix("/v3")  # the SDK puts /v3 in every path
        self.timeout = float(settings.get("timeout_seconds", 20))
        self.max_retries = int(settings.get("max_retries", 2))
        self.retry_backoff = float(settings.get("retry_backoff", 0.5))
        self.due_days = int(settings.get("due_days", 3))
        self._local = threading.local()

    def __repr__(self) -> str:  # never print secrets
        return (
            f"AsaasGateway(mode={self.config.mode!r}, api_base={self.api_base!r}, config_id={self.config.config_id!r})"
        )

    def capabilities(self) -> Capabilities:
        return Capabilities(
            methods=frozenset({"CARD", "BOLETO", "PIX"}),
            currencies=frozenset({CURRENCY}),
            supports_refunds=True,
            supports_saved_methods=True,
            hosted_card_page=True,
        )

    # -- the SDK, off the event loop ------------------------------------------------------------------

    def _client(self) -> Any:
        """This worker thread's SDK client (a requests Session is not shared between threads)."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = Asaas(
                self._api_key.value,
                base_url=self.api_base,
                timeout=self.timeout,  # the SDK says int; requests takes a float
                max_retries=self.max_retries,
                backoff_factor=self.retry_backoff,
            )
            self._local.client = client
        return client

    async def _call(self, operation: Callable[[Any], Any]) -> Any:
        if not self._api_key.value:
            raise AsaasAuthenticationError("no API key is configured", status_code=401)

        def run() -> Any:
            return operation(self._client())

        return await anyio.to_thread.run_sync(run, limiter=_LIMITER)

    # -- customers ------------------------------------------------------------------------------------

    async def ensure_customer(self, payer: Payer) -> str | None:
        """The Asaas customer of this payer: the one already known, the one whose ``externalReference`` is
        the payer's key, or a new one. Raises :class:`AsaasCustomerError` when the payer lacks what Asaas
        needs (a CPF/CNPJ), :class:`AsaasAuthError` on a rejected key, :class:`AsaasGatewayError` otherwise."""
        if payer.provider_customer_ref:
            return payer.provider_customer_ref
        if not payer.name or not payer.name.strip():
            raise AsaasCustomerError("Asaas needs the payer's name")
        tax_id = _tax_id_digits(payer)
        try:
            found = _list_data(
                await self._call(lambda c: _raw_list(c.customers, {"externalReference": payer.key, "limit": 10})),
                "the customer list",
            )
            for customer in found:
                if customer.get("externalReference") == payer.key and not customer.get("deleted"):
                    customer_id = _str_or_none(customer.get("id"))
                    if customer_id:
                        return customer_id
            created = _as_dict(
                await self._call(
                    lambda c: c.customers.create(
                        name=payer.name.strip()[:100],
                        cpf_cnpj=tax_id,
                        email=payer.email or None,
                        external_reference=payer.key,
                        notification_disabled=True,  # whitebill tells its payers itself
                    )
                ),
                "the customer",
            )
        except AsaasAuthenticationError:
            raise AsaasAuthError(_AUTH_REASON) from None
        except AsaasAPIError as exc:
            if exc.status_code == 400:
                raise AsaasCustomerError(f"Asaas refused the payer's data: {_describe(exc)}") from None
            raise AsaasGatewayError(_failure(exc)[1]) from None
        except _EXPECTED as exc:
            raise AsaasGatewayError(_failure(exc)[1]) from None
        customer_id = _str_or_none(created.get("id"))
        if customer_id is None:
            raise AsaasGatewayError("Asaas answered something unexpected (the customer has no id)")
        return customer_id

    # -- charges --------------------------------------------------------------------------------------

    def _due_date(self, request: ChargeRequest) -> str:
        if request.due_date:
            return date.fromisoformat(request.due_date[:10]).isoformat()
        return (datetime.now(BRT).date() + timedelta(days=self.due_days)).isoformat()

    async def charge(self, request: ChargeRequest) -> ChargeResult:
        billing_type = BILLING_TYPES.get(request.method)
        if billing_type is None:
            return ChargeResult(Outcome.NOT_ATTEMPTED, decline_reason=f"Asaas does not take {request.method} here")
        if request.currency.upper() != CURRENCY:
            return ChargeResult(Outcome.NOT_ATTEMPTED, decline_reason="Asaas charges only in BRL")
        try:
            value = minor_to_reais(request.amount)
            due_date = self._due_date(request)
        except (TypeError, ValueError) as exc:
            return ChargeResult(Outcome.NOT_ATTEMPTED, decline_reason=f"invalid charge: {exc}")
        if value <= 0:
            return ChargeResult(Outcome.NOT_ATTEMPTED, decline_reason="invalid charge: the amount must be positive")

        try:
            customer = await self.ensure_customer(request.payer)
        except AsaasCustomerError as exc:
            return ChargeResult(Outcome.NOT_ATTEMPTED, decline_reason=str(exc))
        except AsaasGatewayError as exc:
            return ChargeResult(Outcome.NOT_ATTEMPTED, decline_reason=str(exc))

        # Asaas has no idempotency key: never create a second payment for the same reference.
        try:
            existing = await self._find(request.idempotency_key)
        except _EXPECTED as exc:
            reason = _failure(exc)[1]
            return ChargeResult(
                Outcome.NOT_ATTEMPTED, decline_reason=f"could not check for an earlier attempt: {reason}"
            )
        if existing is not None:
            return await self._result(existing)

        token = (request.saved_method_ref or request.method_token) if billing_type == "CREDIT_CARD" else None
        description = (request.description or f"whitebill payment {request.payment_id}")[:500]
        try:
            created = _payment(
                await self._call(
                    lambda c: c.payments.create(
                        customer=customer,
                        billing_type=billing_type,
                        value=value,
                        due_date=due_date,
                        description=description,
                        external_reference=request.idempotency_key,
                        credit_card_token=token,
                        # API reference, "Create new charge" with a credit card token: remoteIp is required.
                        remote_ip=request.remote_ip if token else None,
                    )
                )
            )
        except _EXPECTED as exc:
            outcome, reason = _failure(exc)
            log.info("asaas charge %s: %s (%s)", request.idempotency_key, outcome, reason)
            return ChargeResult(outcome, decline_reason=reason)
        result = await self._result(created)
        log.info("asaas charge %s: %s %s", request.idempotency_key, result.outcome, result.provider_ref)
        return result

    async def _result(self, payment: dict[str, Any]) -> ChargeResult:
        """A payment as whitebill sees it: outcome, and what the payer must do while it is pending."""
        outcome, reason = _status_outcome(payment)
        provider_ref = payment["id"]
        if outcome is Outcome.PENDING:
            return ChargeResult(outcome, provider_ref=provider_ref, payer_action=await self._payer_action(payment))
        saved = _saved_card(payment) if outcome is Outcome.SUCCEEDED else None
        return ChargeResult(outcome, provider_ref=provider_ref, decline_reason=reason, saved_method=saved)

    async def _payer_action(self, payment: dict[str, Any]) -> dict[str, Any]:
        """Boleto line and barcode, or Pix code and QR image; the hosted invoice otherwise. If fetching them
        fails the payment is still pending: the invoice page lets the payer pay anyway."""
        payment_id = payment["id"]
        billing_type = payment.get("billingType")
        invoice_url = _str_or_none(payment.get("invoiceUrl"))
        try:
            if billing_type == "BOLETO":
                field = _as_dict(
                    await self._call(lambda c: c.payments.get_identification_field(payment_id)), "the boleto"
                )
                return {
                    "kind": "BOLETO",
                    "url": _str_or_none(payment.get("bankSlipUrl")) or invoice_url,
                    "boleto_line": _str_or_none(field.get("identificationField")),
                    "barcode": _str_or_none(field.get("barCode")),
                    "expires_at": _str_or_none(payment.get("dueDate")),
                }
            if billing_type == "PIX":
                qr = _as_dict(await self._call(lambda c: c.payments.get_pix_qr_code(payment_id)), "the Pix code")
                return {
                    "kind": "PIX",
                    "url": invoice_url,
                    "pix_payload": _str_or_none(qr.get("payload")),
                    "pix_qr_png_base64": _str_or_none(qr.get("encodedImage")),
                    "expires_at": _str_or_none(qr.get("expirationDate")) or _str_or_none(payment.get("dueDate")),
                }
        except _EXPECTED as exc:
            log.warning("asaas %s: payment instructions unavailable (%s)", payment_id, _failure(exc)[1])
            action: dict[str, Any] = {"kind": "URL", "url": invoice_url}
            if billing_type == "BOLETO" and payment.get("bankSlipUrl"):
                action = {"kind": "BOLETO", "url": payment["bankSlipUrl"], "expires_at": payment.get("dueDate")}
            return action
        return {"kind": "URL", "url": invoice_url}

    async def get_payment(self, provider_ref: str) -> ChargeResult:
        try:
            payment = _payment(await self._call(lambda c: c.payments.get(provider_ref)))
        except AsaasNotFoundError:
            return ChargeResult(
                Outcome.UNKNOWN, provider_ref=provider_ref, decline_reason="Asaas knows no such payment"
            )
        except _EXPECTED as exc:
            return ChargeResult(Outcome.UNKNOWN, provider_ref=provider_ref, decline_reason=_failure(exc)[1])
        return await self._result(payment)

    async def _find(self, reference: str) -> dict[str, Any] | None:
        found = _list_data(
            await self._call(lambda c: _raw_list(c.payments, {"externalReference": reference, "limit": 100})),
            "the payment list",
        )
        live = [_payment(p) for p in found if p.get("externalReference") == reference and not p.get("deleted")]
        if not live:
            return None
        for payment in live:  # there should be one; if not, the one that took the money matters most
            if _status_outcome(payment)[0] is Outcome.SUCCEEDED:
                return payment
        return live[0]

    async def find_payment(self, reference: str, payer: Payer) -> ChargeResult | None:
        """The payment made with our reference (its ``externalReference``), None if Asaas has none (deleted
        payments do not count). If Asaas cannot be asked, the answer is an UNKNOWN result, never None."""
        try:
            payment = await self._find(reference)
        except _EXPECTED as exc:
            return ChargeResult(Outcome.UNKNOWN, decline_reason=f"could not look the payment up: {_failure(exc)[1]}")
        if payment is None:
            return None
        return await self._result(payment)

    # -- refunds --------------------------------------------------------------------------------------

    async def refund(self, provider_ref: str, amount: int, currency: str, idempotency_key: str) -> RefundResult:
        """Refund ``amount`` (minor units) of a paid payment. Asaas refunds have no id of their own: the
        result's provider_ref is ``"<payment id>/refunds/<idempotency key>"``."""
        refund_ref = f"{provider_ref}/refunds/{idempotency_key}"
        if currency.upper() != CURRENCY:
            return RefundResult(Outcome.NOT_ATTEMPTED, reason="Asaas refunds only in BRL")
        try:
            value = minor_to_reais(amount)
        except (TypeError, ValueError) as exc:
            return RefundResult(Outcome.NOT_ATTEMPTED, reason=f"invalid refund: {exc}")
        if value <= 0:
            return RefundResult(Outcome.NOT_ATTEMPTED, reason="invalid refund: the amount must be positive")
        marker = f"{REFUND_MARKER}{idempotency_key}"
        try:  # nothing is asked of Asaas before this read succeeds: its failures are NOT_ATTEMPTED
            before = _payment(await self._call(lambda c: c.payments.get(provider_ref)))
        except AsaasAuthenticationError:
            return RefundResult(Outcome.NOT_ATTEMPTED, reason=_AUTH_REASON)
        except AsaasAPIError as exc:
            if exc.status_code and 400 <= exc.status_code < 500:
                return RefundResult(Outcome.DECLINED, reason=f"Asaas refused the refund: {_describe(exc)}")
            return RefundResult(Outcome.NOT_ATTEMPTED, reason=f"could not read the payment: {_failure(exc)[1]}")
        except _EXPECTED as exc:
            return RefundResult(Outcome.NOT_ATTEMPTED, reason=f"could not read the payment: {_failure(exc)[1]}")
        done = self._refund_outcome(before, marker)
        if done is not None:
            return RefundResult(done, provider_ref=refund_ref)
        if before.get("billingType") == "BOLETO" and (before.get("status") in PAID_STATUSES or _refund_states(before)):
            return await self._refund_boleto(provider_ref, before, amount, refund_ref)
        try:
            after = _payment(
                await self._call(lambda c: c.payments.refund(provider_ref, value=value, description=marker))
            )
        except _EXPECTED as exc:
            return _refund_failed(exc)
        outcome = self._refund_outcome(after, marker)
        if outcome is None:  # the answer does not list refunds: go by the payment's status
            status = after["status"]
            outcome = Outcome.PENDING if status in {"REFUND_REQUESTED", "REFUND_IN_PROGRESS"} else Outcome.SUCCEEDED
        log.info("asaas refund %s: %s", refund_ref, outcome)
        return RefundResult(outcome, provider_ref=refund_ref)

    async def _refund_boleto(
        self, provider_ref: str, payment: dict[str, Any], amount: int, refund_ref: str
    ) -> RefundResult:
        """A paid boleto is refunded through its own flow (API reference, "Refund bank slip",
        ``POST /v3/payments/{id}/bankSlip/refund``): the whole amount, to the bank account the payer gives
        at the link Asaas answers with. Asaas takes no description here, so a retry is recognised by the
        refund already listed on the payment."""
        if amount != reais_to_minor(payment.get("value")):
            return RefundResult(Outcome.DECLINED, reason="a boleto is refunded in full only")
        if _refund_states(payment):
            return RefundResult(Outcome.PENDING, provider_ref=refund_ref)
        try:
            answer = await self._call(lambda c: c.payments.refund_bank_slip(provider_ref))
        except _EXPECTED as exc:
            return _refund_failed(exc)
        link = answer.get("requestUrl") if isinstance(answer, dict) else None
        action = (
            {"kind": "URL", "url": link} if isinstance(link, str) and link.startswith(("https://", "http://")) else None
        )
        return RefundResult(Outcome.PENDING, provider_ref=refund_ref, payer_action=action)

    async def refunds_of(self, provider_ref: str) -> list[RefundState] | None:
        try:
            payment = _payment(await self._call(lambda c: c.payments.get(provider_ref)))
        except _EXPECTED as exc:
            log.warning("asaas: could not read a payment's refunds: %s", _failure(exc)[1])
            return None
        states = _refund_states(payment)
        return list(states) if states is not None else []

    async def dispute_of(self, provider_ref: str) -> DisputeStatus | None:
        """API reference, "Retrieve a single chargeback" (``GET /v3/payments/{id}/chargeback``): REQUESTED
        and IN_DISPUTE are open, REVERSED won, DISPUTE_LOST and DONE lost."""
        try:
            chargeback = await self._call(lambda c: c.payments.get_chargeback(provider_ref))
        except AsaasNotFoundError:
            return None
        except _EXPECTED as exc:
            log.warning("asaas: could not read a payment's chargeback: %s", _failure(exc)[1])
            return None
        status = chargeback.get("status") if isinstance(chargeback, dict) else None
        if status in CHARGEBACK_LOST:
            return DisputeStatus.LOST
        if status in CHARGEBACK_WON:
            return DisputeStatus.WON
        return DisputeStatus.OPEN if isinstance(status, str) else None

    @staticmethod
    def _refund_outcome(payment: dict[str, Any], marker: str) -> Outcome | None:
        refunds = payment.get("refunds")
        if not isinstance(refunds, list):
            return None
        for refund in refunds:
            if isinstance(refund, dict) and refund.get("description") == marker:
                status = refund.get("status")
                if status == "DONE":
                    return Outcome.SUCCEEDED
                if status == "CANCELLED":
                    return Outcome.DECLINED
                return Outcome.PENDING
        return None

    # -- webhooks -------------------------------------------------------------------------------------

    async def parse_webhook(self, body: bytes, headers: dict[str, str]) -> WebhookNotice:
        """Verify the ``asaas-access-token`` header (the only authentication Asaas gives a webhook) in
        constant time before reading the body, then reduce the event to a notice. Asaas delivers at least
        once: dedupe on ``event_id``."""
        expected = self._webhook_token.value
        if not expected:
            raise WebhookRejected("no webhook token is configured for this Asaas gateway")
        provided = _header(headers, WEBHOOK_HEADER)
        if provided is None:
            raise WebhookRejected("the asaas-access-token header is missing")
        if not hmac.compare_digest(provided.encode("utf-8"), expected.encode("utf-8")):
            raise WebhookRejected("the asaas-access-token header does not match")
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise WebhookRejected("the webhook body is not JSON") from None
        if not isinstance(data, dict):
            raise WebhookRejected("the webhook body is not a JSON object")
        event_id, event = data.get("id"), data.get("event")
        if not isinstance(event_id, str) or not event_id or not isinstance(event, str) or not event:
            raise WebhookRejected("the webhook body has no event id or type")
        payment = data.get("payment")
        if payment is None:  # an event about something else than a payment (transfers, invoices...)
            return WebhookNotice(event_id=event_id, event_type=event, provider_ref=None, raw=data)
        if not isinstance(payment, dict) or not isinstance(payment.get("id"), str):
            raise WebhookRejected("the webhook's payment has no id")
        return self._notice(event_id, event, payment, data)

    @staticmethod
    def _notice(event_id: str, event: str, payment: dict[str, Any], data: dict[str, Any]) -> WebhookNotice:
        outcome = _EVENT_OUTCOMES.get(event)
        if event == "PAYMENT_APPROVED_BY_RISK_ANALYSIS":
            outcome = Outcome.SUCCEEDED if payment.get("status") in PAID_STATUSES else None
        if event == "PAYMENT_DELETED" and payment.get("status") in PAID_STATUSES:
            outcome = None
        disputed = event in _DISPUTE_EVENTS
        # Webhook events for payments: "PAYMENT_RECEIVED_IN_CASH_UNDONE - Cash receipt undone". The partner
        # recorded the charge as paid outside Asaas, then took that back: the charge is open again.
        receipt_undone = event == "PAYMENT_RECEIVED_IN_CASH_UNDONE"
        charged_back = False
        chargeback = payment.get("chargeback")
        chargeback_status = chargeback.get("status") if isinstance(chargeback, dict) else None
        if chargeback_status in CHARGEBACK_LOST:
            charged_back, disputed = True, True
        elif chargeback_status in CHARGEBACK_WON:
            outcome, disputed = Outcome.SUCCEEDED, False
        refunded = None
        states = _refund_states(payment) if event in _REFUND_STATE_EVENTS else None
        if event in _REFUND_EVENTS and not states:
            try:
                refunded = _refunded_minor(payment, event)
            except ValueError:  # authentic but odd: keep the notice, without an amount
                log.warning("asaas event %s: the refunded amount is not an amount", event_id)
        saved = _saved_card(payment) if outcome is Outcome.SUCCEEDED else None
        return WebhookNotice(
            event_id=event_id,
            event_type=event,
            provider_ref=payment["id"],
            reference=_str_or_none(payment.get("externalReference")),
            outcome=outcome,
            refunded_amount=refunded,
            refunds=states or (),
            refunds_complete=states is not None,
            receipt_undone=receipt_undone,
            disputed=disputed,
            charged_back=charged_back,
            saved_method=saved,
            raw=_without_card_token(data),
        )
