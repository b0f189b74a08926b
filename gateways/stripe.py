"""Stripe, through the official SDK's async client (``stripe.StripeClient`` over HTTPX).

Cards only: a card reaches whitebill as a PaymentMethod id (``pm_...``) made by Stripe.js in the
payer's browser, or as a PaymentMethod saved by an earlier charge; card numbers never pass
through here.

- A charge is one PaymentIntent, created and confirmed in one call whose Stripe idempotency key is
  our payment reference; the reference is also in the metadata (``whitebill_reference``), which is
  how :meth:`StripeGateway.find_payment` finds it again.
- The SDK never retries (``max_network_retries=0``): a call that got no answer is UNKNOWN and the
  caller reconciles it with ``find_payment`` / ``get_payment`` (retrying with the same key would
  be safe too, since Stripe replays an idempotent answer for 24 hours).
- Some Stripe-compatible servers (localstripe, used in the tests) reject parameters real Stripe
  needs: ``allowed_payment_method_types=["card"]`` (the SDK's API version, 2026-10-28.endive, no
  longer takes ``payment_method_types``, and without a restriction to cards, or a ``return_url``,
  Stripe refuses to confirm an intent that could use redirect-based methods),
  ``setup_future_usage``, ``description``, and the ``customer`` filter of the PaymentIntent list.
  When the server answers that such a parameter is unknown (nothing is created then), the adapter
  remembers it and does without: it attaches a card to be saved explicitly, and lists all
  PaymentIntents instead of the customer's. Against real Stripe this never happens.
- Logging: the SDK logs request bodies ("Post details") and response bodies at DEBUG on the
  ``stripe`` logger, and prints them to stderr when ``stripe.log``/``STRIPE_LOG`` is "debug". This
  module drops every DEBUG record of that logger and turns that printing down to "info" (method,
  URL, status, error codes), and never puts credentials or card data in a result or an exception.
"""

from __future__ import annotations

import hashlib
import logging
import re
from typing import TYPE_CHECKING, Any, Final

import stripe
import stripe._util as _stripe_util

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

if TYPE_CHECKING:
    from stripe.params import (
        CustomerCreateParams,
        PaymentIntentCreateParams,
        PaymentIntentListParams,
        RefundCreateParams,
        RefundListParams,
    )

REFERENCE_KEY: Final = "whitebill_reference"
PAYMENT_ID_KEY: Final = "whitebill_payment_id"
PAYER_KEY: Final = "whitebill_payer"
REFUND_KEY: Final = "whitebill_refund"
DEFAULT_TIMEOUT_SECONDS: Final = 30.0
LIST_PAGE_SIZE: Final = 100
LIST_MAX_PAGES: Final = 20  # find_payment gives up (raises) rather than answer "never received" unsure
WEBHOOK_TOLERANCE_SECONDS: Final = 300

# Parameters whose absence a Stripe-compatible server can be forgiven (see the module docstring).
_ALLOWED_TYPES: Final = "allowed_payment_method_types"
_SETUP_FUTURE_USAGE: Final = "setup_future_usage"
_DESCRIPTION: Final = "description"
_OPTIONAL_PARAMS: Final = frozenset({_ALLOWED_TYPES, _SETUP_FUTURE_USAGE, _DESCRIPTION})

_PENDING_STATUSES: Final = frozenset({"processing", "requires_action", "requires_capture"})
log = logging.getLogger("whitebill.gateways.stripe")


# --- logging: no bodies, no secrets ------------------------------------------------------------


class _NoSdkPayloads(logging.Filter):
    """Drops the SDK's DEBUG records: they carry request and response bodies."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


def _guard_sdk_logging() -> None:
    sdk_logger = logging.getLogger("stripe")
    if not any(isinstance(f, _NoSdkPayloads) for f in sdk_logger.filters):
        sdk_logger.addFilter(_NoSdkPayloads())
    # stripe.log / STRIPE_LOG make the SDK print() the same lines to stderr, past any filter.
    if stripe.log == "debug":
        stripe.log = "info"
    if _stripe_util.STRIPE_LOG == "debug":
        _stripe_util.STRIPE_LOG = "info"


_guard_sdk_logging()

_SECRET_LIKE = re.compile(r"\b((?:sk|rk|pk|whsec)_(?:live|test)?_?)[A-Za-z0-9*_]+")
_DIGIT_RUNS = re.compile(r"\d[\d -]{11,}\d")


def _scrub(text: str, *secrets: str) -> str:
    """A provider message made safe to store: no credentials, nothing that looks like a card number."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<hidden>")
    text = _SECRET_LIKE.sub(r"\1<hidden>", text)
    text = _DIGIT_RUNS.sub("<digits>", text)
    return text[:300]


class StripeGatewayError(Exception):
    """Stripe could not answer a question (customer, lookup): the message carries no secrets."""


# --- helpers over Stripe's JSON ------------------------------------------------------------------


def _as_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, stripe.StripeObject):
        return value.to_dict()
    if isinstance(value, dict):
        return value
    return {}


# A refund's status (Stripe API reference, "The Refund object": pending, requires_action, succeeded,
# failed, canceled). A succeeded refund can still fail later (refund.failed): its money comes back.
_REFUND_OUTCOMES: Final = {
    "succeeded": Outcome.SUCCEEDED,
    "pending": Outcome.PENDING,
    "requires_action": Outcome.PENDING,
    "failed": Outcome.DECLINED,
    "canceled": Outcome.DECLINED,
}
# A dispute's status (Stripe API reference, "The Dispute object"); the warning_* ones are inquiries.
_DISPUTE_STATUSES: Final = {
    "won": DisputeStatus.WON,
    "warning_closed": DisputeStatus.WON,
    "lost": DisputeStatus.LOST,
    "needs_response": DisputeStatus.OPEN,
    "under_review": DisputeStatus.OPEN,
    "warning_needs_response": DisputeStatus.OPEN,
    "warning_under_review": DisputeStatus.OPEN,
}


def _refund_state(refund: dict[str, Any]) -> RefundState | None:
    amount, outcome = refund.get("amount"), _REFUND_OUTCOMES.get(str(refund.get("status")))
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0 or outcome is None:
        return None
    key = _as_dict(refund.get("metadata")).get(REFUND_KEY)
    reason = refund.get("failure_reason") if outcome is Outcome.DECLINED else None
    return RefundState(
        amount=amount,
        outcome=outcome,
        key=key if isinstance(key, str) else None,
        provider_ref=_ref(refund),
        reason=_scrub(str(reason or refund.get("status"))) if outcome is Outcome.DECLINED else None,
    )


def _ref(value: Any) -> str | None:
    """The id of an expandable field: a plain id, or an (expanded) object."""
    if isinstance(value, str):
        return value
    data = _as_dict(value)
    ident = data.get("id")
    return ident if isinstance(ident, str) else None


def _error_data(exc: stripe.StripeError) -> dict[str, Any]:
    body = exc.json_body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return dict(body["error"])
    return {}


def _decline_reason(error: dict[str, Any], fallback: str) -> str:
    parts = [str(error[key]) for key in ("code", "decline_code") if error.get(key)]
    parts = list(dict.fromkeys(parts))  # card_declined/card_declined -> card_declined
    message = error.get("message")
    text = "/".join(parts) or fallback
    if message:
        text = f"{text}: {message}"
    return _scrub(text)


def _describe(exc: BaseException) -> str:
    """A short, secret-free account of a failed call."""
    name = type(exc).__name__
    if isinstance(exc, stripe.APIConnectionError):
        cause = exc.__cause__
        return f"{name} ({type(cause).__name__})" if cause is not None else name
    if isinstance(exc, stripe.StripeError):
        error = _error_data(exc)
        bits = [name]
        if exc.http_status is not None:
            bits.append(str(exc.http_status))
        if error.get("code"):
            bits.append(str(error["code"]))
        if error.get("message"):
            bits.append(str(error["message"]))
        return _scrub(" ".join(bits))
    return name


def _rejected_params(exc: stripe.InvalidRequestError, candidates: set[str]) -> set[str]:
    """The ``candidates`` a server said it does not know: Stripe answers ``parameter_unknown``
    ("Received unknown parameter: x"), localstripe "Unexpected x, y"."""
    error = _error_data(exc)
    code = error.get("code")
    if code not in (None, "parameter_unknown"):
        return set()
    message = str(error.get("message") or "")
    param = str(error.get("param") or "")
    if not (message.startswith(("Unexpected ", "Received unknown parameter")) or code == "parameter_unknown"):
        return set()
    named = set(re.findall(r"[a-z_]+", message)) | {param.split("[", 1)[0]}
    return candidates & named


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _saved_method(intent: dict[str, Any]) -> SavedMethod | None:
    method = intent.get("payment_method")
    method_id = _ref(method)
    if method_id is None:
        return None
    card = _as_dict(_as_dict(method).get("card"))
    customer = _ref(intent.get("customer")) or _ref(_as_dict(method).get("customer"))
    return SavedMethod(
        provider_method_ref=method_id,
        kind="CARD",
        brand=card.get("brand"),
        last4=card.get("last4"),
        provider_customer_ref=customer,
    )


def _authentication(intent: dict[str, Any], method: str | None = None) -> ChargeResult:
    """An off-session charge the bank wants authenticated: the payer completes it on-session, with the
    intent's client secret (Stripe.js) or at the page whitebill's pay-now link opens."""
    action = {
        "kind": "AUTHENTICATE",
        "provider": "stripe",
        "client_secret": intent.get("client_secret"),
        "payment_method": method or _ref(intent.get("payment_method")),
    }
    return ChargeResult(
        Outcome.REQUIRES_ACTION,
        provider_ref=_ref(intent),
        decline_reason="authentication_required: the payer must confirm this payment with the bank",
        payer_action=action,
    )


def _intent_result(intent: dict[str, Any], *, saving: bool = False) -> ChargeResult:
    """A PaymentIntent reduced to the outcomes."""
    status = intent.get("status")
    ref = _ref(intent)
    if status == "succeeded":
        keeps = saving or intent.get("setup_future_usage") in ("off_session", "on_session")
        return ChargeResult(Outcome.SUCCEEDED, provider_ref=ref, saved_method=_saved_method(intent) if keeps else None)
    if status == "requires_action":
        next_action = _as_dict(intent.get("next_action"))
        redirect = _as_dict(next_action.get("redirect_to_url"))
        action = {"kind": "URL", "url": redirect.get("url"), "client_secret": intent.get("client_secret")}
        return ChargeResult(Outcome.PENDING, provider_ref=ref, payer_action=action)
    if status in _PENDING_STATUSES:
        return ChargeResult(Outcome.PENDING, provider_ref=ref)
    if status == "requires_payment_method":
        error = _as_dict(intent.get("last_payment_error"))
        if error.get("code") == "authentication_required":  # an off-session charge waiting for its payer
            return _authentication(intent, _ref(error.get("payment_method")))
        return ChargeResult(Outcome.DECLINED, provider_ref=ref, decline_reason=_decline_reason(error, "declined"))
    if status == "canceled":
        reason = intent.get("cancellation_reason") or "canceled"
        return ChargeResult(Outcome.DECLINED, provider_ref=ref, decline_reason=f"canceled: {reason}")
    # requires_confirmation (never left so by a charge that confirms) or something new
    return ChargeResult(Outcome.UNKNOWN, provider_ref=ref, decline_reason=_scrub(f"unexpected status {status!r}"))


def _rank(intent: dict[str, Any]) -> tuple[int, int]:
    """The PaymentIntent to report when several carry one reference (a server without idempotency)."""
    order = {"succeeded": 3, "processing": 2, "requires_action": 2, "requires_capture": 2}
    created = intent.get("created")
    return order.get(str(intent.get("status")), 0), created if isinstance(created, int) else 0


def _header(headers: dict[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


# --- the gateway ---------------------------------------------------------------------------------


class StripeGateway:
    """The ``stripe`` gateway. Settings: ``api_base`` (default Stripe's), ``timeout_seconds``."""

    name = "stripe"

    def __init__(self, config: GatewayConfig) -> None:
        api_key = config.credentials.get("api_key")
        if not api_key:
            raise ValueError("the stripe gateway needs credentials['api_key']")
        self._secrets = (api_key, config.credentials.get("webhook_secret") or "")
        self._webhook_secret = config.credentials.get("webhook_secret") or ""
        api_base = str(config.settings.get("api_base") or stripe.DEFAULT_API_BASE).rstrip("/")
        timeout = float(config.settings.get("timeout_seconds") or DEFAULT_TIMEOUT_SECONDS)
        _guard_sdk_logging()
        self._http = stripe.HTTPXClient(timeout=timeout)
        self._client = stripe.StripeClient(
            api_key,
            http_client=self._http,
            base_addresses={"api": api_base},
            max_network_retries=0,
        )
        self._unsupported: set[str] = set()  # optional parameters this server rejects
        self._customer_filter = True  # the PaymentIntent list takes ``customer``
        self._search = True  # the PaymentIntent search exists

    def __repr__(self) -> str:
        return "StripeGateway(credentials=<hidden>)"

    async def aclose(self) -> None:
        """Close the HTTP connection pool (not part of the Gateway protocol)."""
        await self._http.close_async()  # type: ignore[no-untyped-call]

    def capabilities(self) -> Capabilities:
        return Capabilities(
            methods=frozenset({"CARD"}), currencies=None, supports_refunds=True, supports_saved_methods=True
        )

    # --- customers -------------------------------------------------------------------------------

    async def ensure_customer(self, payer: Payer) -> str | None:
        if payer.provider_customer_ref:
            return payer.provider_customer_ref
        params: CustomerCreateParams = {"name": payer.name, "metadata": {PAYER_KEY: payer.key}}
        if payer.email:
            params["email"] = payer.email
        # A retry of the same request (same payer, same details) within 24 h gets the same customer.
        digest = hashlib.sha256("\0".join((payer.key, payer.name, payer.email or "")).encode()).hexdigest()
        try:
            customer = await self._client.v1.customers.create_async(
                params, {"idempotency_key": f"whitebill-customer-{digest[:40]}"}
            )
        except Exception as exc:
            raise StripeGatewayError(f"stripe: could not create the customer ({self._safe(exc)})") from None
        return customer.id

    # --- charges ---------------------------------------------------------------------------------

    async def charge(self, request: ChargeRequest) -> ChargeResult:
        if request.method != "CARD":
            return ChargeResult(Outcome.NOT_ATTEMPTED, decline_reason=f"stripe takes cards, not {request.method}")
        method = request.method_token or request.saved_method_ref
        if not method:
            return ChargeResult(Outcome.NOT_ATTEMPTED, decline_reason="no card: a method_token or saved_method_ref")
        if request.amount <= 0:
            return ChargeResult(Outcome.NOT_ATTEMPTED, decline_reason="the amount must be positive")
        saving = request.save_method and request.method_token is not None
        off_session = request.off_session or request.method_token is None
        customer = request.payer.provider_customer_ref
        if customer is None and saving:
            try:
                customer = await self.ensure_customer(request.payer)
            except StripeGatewayError as exc:
                return ChargeResult(Outcome.NOT_ATTEMPTED, decline_reason=str(exc))

        sent = False  # has a PaymentIntent create left for Stripe (so a PaymentIntent may exist)?
        try:
            for _ in range(len(_OPTIONAL_PARAMS) + 1):
                params = self._intent_params(request, method, customer, off_session=off_session, saving=saving)
                if saving and customer and _SETUP_FUTURE_USAGE in self._unsupported:
                    sent = False
                    await self._client.v1.payment_methods.attach_async(method, {"customer": customer})
                sent = True
                try:
                    intent = await self._client.v1.payment_intents.create_async(
                        params, {"idempotency_key": request.idempotency_key}
                    )
                except stripe.InvalidRequestError as exc:
                    rejected = _rejected_params(exc, set(params) & _OPTIONAL_PARAMS)
                    if not rejected:
                        raise
                    self._unsupported |= rejected  # nothing was created: ask again without them
                    continue
                data = intent.to_dict()
                if off_session and data.get("status") == "requires_action":  # localstripe's shape
                    return _authentication(data, method)
                return _intent_result(data, saving=saving)
            return ChargeResult(Outcome.NOT_ATTEMPTED, decline_reason="stripe rejected every form of the request")
        except stripe.CardError as exc:
            error = _error_data(exc)
            intent_data = _as_dict(error.get("payment_intent"))
            if error.get("code") == "authentication_required" and intent_data:  # Stripe's 402 off-session
                return _authentication(intent_data, method)
            return ChargeResult(
                Outcome.DECLINED,
                provider_ref=_ref(error.get("payment_intent")),
                decline_reason=_decline_reason(error, "card_declined"),
            )
        except stripe.InvalidRequestError as exc:
            error = _error_data(exc)
            intent_data = _as_dict(error.get("payment_intent"))
            if sent and intent_data:  # created, then refused at confirmation
                result = _intent_result(intent_data)
                if result.outcome is Outcome.DECLINED:
                    return ChargeResult(
                        Outcome.DECLINED,
                        provider_ref=result.provider_ref,
                        decline_reason=_decline_reason(error, "invalid_request"),
                    )
                return result
            return ChargeResult(Outcome.NOT_ATTEMPTED, decline_reason=self._safe(exc))
        except (stripe.AuthenticationError, stripe.PermissionError, stripe.RateLimitError) as exc:
            return ChargeResult(Outcome.NOT_ATTEMPTED, decline_reason=self._safe(exc))
        except Exception as exc:  # no answer, a 5xx, an idempotency clash, an answer we cannot read
            if not sent:
                return ChargeResult(Outcome.NOT_ATTEMPTED, decline_reason=self._safe(exc))
            return ChargeResult(Outcome.UNKNOWN, decline_reason=self._safe(exc))

    def _intent_params(
        self, request: ChargeRequest, method: str, customer: str | None, *, off_session: bool, saving: bool
    ) -> PaymentIntentCreateParams:
        params: PaymentIntentCreateParams = {
            "amount": request.amount,
            "currency": request.currency.lower(),
            "payment_method": method,
            "confirm": True,
            "metadata": {REFERENCE_KEY: request.idempotency_key, PAYMENT_ID_KEY: str(request.payment_id)},
            "expand": ["payment_method"],
        }
        if _ALLOWED_TYPES not in self._unsupported:
            params["allowed_payment_method_types"] = ["card"]
        if customer:
            params["customer"] = customer
        if off_session:
            params["off_session"] = True
        if saving and customer and _SETUP_FUTURE_USAGE not in self._unsupported:
            params["setup_future_usage"] = "off_session"
        if request.description and _DESCRIPTION not in self._unsupported:
            params["description"] = request.description[:1000]
        return params

    async def get_payment(self, provider_ref: str) -> ChargeResult:
        try:
            intent = await self._client.v1.payment_intents.retrieve_async(provider_ref, {"expand": ["payment_method"]})
            return _intent_result(intent.to_dict())
        except Exception as exc:
            return ChargeResult(Outcome.UNKNOWN, provider_ref=provider_ref, decline_reason=self._safe(exc))

    async def continue_on_session(self, provider_ref: str, return_url: str) -> ChargeResult:
        """Confirm an intent that waits for its payer again, on-session, with a ``return_url`` (Stripe API
        reference, "Confirm a PaymentIntent"): Stripe answers ``requires_action`` with
        ``next_action.redirect_to_url``, its page where the payer authenticates, then comes back."""
        try:
            intent = (await self._client.v1.payment_intents.retrieve_async(provider_ref)).to_dict()
            if intent.get("status") in ("requires_payment_method", "requires_confirmation"):
                error = _as_dict(intent.get("last_payment_error"))
                method = _ref(error.get("payment_method")) or _ref(intent.get("payment_method"))
                if method is None:
                    return ChargeResult(
                        Outcome.DECLINED, provider_ref=provider_ref, decline_reason="no card to confirm"
                    )
                confirmed = await self._client.v1.payment_intents.confirm_async(
                    provider_ref, {"payment_method": method, "return_url": return_url}
                )
                intent = confirmed.to_dict()
        except stripe.CardError as exc:
            error = _error_data(exc)
            return ChargeResult(
                Outcome.DECLINED, provider_ref=provider_ref, decline_reason=_decline_reason(error, "declined")
            )
        except Exception as exc:
            return ChargeResult(Outcome.UNKNOWN, provider_ref=provider_ref, decline_reason=self._safe(exc))
        if intent.get("status") == "requires_action":
            redirect = _as_dict(_as_dict(intent.get("next_action")).get("redirect_to_url")).get("url")
            action = {"kind": "URL", "url": redirect} if isinstance(redirect, str) and redirect else None
            return ChargeResult(Outcome.REQUIRES_ACTION, provider_ref=provider_ref, payer_action=action)
        return _intent_result(intent)

    async def find_payment(self, reference: str, payer: Payer) -> ChargeResult | None:
        """The PaymentIntent carrying ``metadata.whitebill_reference == reference``, or None when
        Stripe certainly has none. Raises :class:`StripeGatewayError` when it cannot tell.

        With a customer, its PaymentIntents are listed (the list is read-after-write consistent);
        without one, Stripe's search is used (it can lag behind by up to a minute, which a retry
        with the same idempotency key covers). localstripe has neither the ``customer`` filter nor
        search: there every PaymentIntent is listed and matched here."""
        try:
            found = await self._intents_with_reference(reference, payer.provider_customer_ref)
            if not found:
                return None
            best = max(found, key=_rank)
            intent = await self._client.v1.payment_intents.retrieve_async(
                str(best["id"]), {"expand": ["payment_method"]}
            )
            return _intent_result(intent.to_dict())
        except StripeGatewayError:
            raise
        except Exception as exc:
            raise StripeGatewayError(f"stripe: could not look the payment up ({self._safe(exc)})") from None

    async def _intents_with_reference(self, reference: str, customer: str | None) -> list[dict[str, Any]]:
        if customer and self._customer_filter:
            try:
                return await self._scan(reference, {"customer": customer})
            except stripe.InvalidRequestError as exc:
                if not _rejected_params(exc, {"customer"}):
                    raise
                self._customer_filter = False
        if not customer and self._search:
            try:
                query = f"metadata[{_quote(REFERENCE_KEY)}]:{_quote(reference)}"
                results = await self._client.v1.payment_intents.search_async({"query": query, "limit": 100})
                return [i for i in (x.to_dict() for x in results.data) if _matches(i, reference)]
            except stripe.InvalidRequestError as exc:
                if exc.http_status not in (400, 404):
                    raise
                self._search = False  # no search here (localstripe; accounts in India)
        return await self._scan(reference, {})

    async def _scan(self, reference: str, filters: PaymentIntentListParams) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        params: PaymentIntentListParams = {**filters, "limit": LIST_PAGE_SIZE}
        for _ in range(LIST_MAX_PAGES):
            page = await self._client.v1.payment_intents.list_async(params)
            items = [item.to_dict() for item in page.data]
            found += [i for i in items if _matches(i, reference)]
            if not page.has_more or not items:
                return found
            params["starting_after"] = str(items[-1]["id"])
        if found:
            return found
        raise StripeGatewayError(f"stripe: more than {LIST_PAGE_SIZE * LIST_MAX_PAGES} payments to look through")

    # --- refunds ---------------------------------------------------------------------------------

    async def refund(self, provider_ref: str, amount: int, currency: str, idempotency_key: str) -> RefundResult:
        if amount <= 0:
            return RefundResult(Outcome.NOT_ATTEMPTED, reason="the amount must be positive")
        try:
            intent = await self._client.v1.payment_intents.retrieve_async(provider_ref)
        except (stripe.InvalidRequestError, stripe.CardError) as exc:
            return RefundResult(Outcome.DECLINED, reason=self._safe(exc))
        except Exception as exc:  # nothing was asked yet
            return RefundResult(Outcome.NOT_ATTEMPTED, reason=self._safe(exc))
        if str(intent.to_dict().get("currency", "")).lower() != currency.lower():
            return RefundResult(Outcome.NOT_ATTEMPTED, reason=f"the payment is not in {currency.upper()}")
        params: RefundCreateParams = {
            "payment_intent": provider_ref,
            "amount": amount,
            "metadata": {REFUND_KEY: idempotency_key},
        }
        try:
            refund = await self._client.v1.refunds.create_async(params, {"idempotency_key": idempotency_key})
        except (stripe.InvalidRequestError, stripe.CardError) as exc:  # refused: nothing refunded
            return RefundResult(Outcome.DECLINED, reason=self._safe(exc))
        except (stripe.AuthenticationError, stripe.PermissionError, stripe.RateLimitError) as exc:
            return RefundResult(Outcome.NOT_ATTEMPTED, reason=self._safe(exc))
        except Exception as exc:
            return RefundResult(Outcome.UNKNOWN, reason=self._safe(exc))
        data = refund.to_dict()
        status = data.get("status")
        if status == "succeeded":
            return RefundResult(Outcome.SUCCEEDED, provider_ref=_ref(data))
        if status in ("pending", "requires_action"):
            return RefundResult(Outcome.PENDING, provider_ref=_ref(data))
        if status in ("failed", "canceled"):
            reason = data.get("failure_reason") or status
            return RefundResult(Outcome.DECLINED, provider_ref=_ref(data), reason=_scrub(str(reason)))
        return RefundResult(Outcome.UNKNOWN, provider_ref=_ref(data), reason=_scrub(f"unexpected status {status!r}"))

    async def refunds_of(self, provider_ref: str) -> list[RefundState] | None:
        states: list[RefundState] = []
        params: RefundListParams = {"payment_intent": provider_ref, "limit": LIST_PAGE_SIZE}
        try:
            for _ in range(LIST_MAX_PAGES):
                page = await self._client.v1.refunds.list_async(params)
                items = [item.to_dict() for item in page.data]
                states += [state for item in items if (state := _refund_state(item)) is not None]
                if not page.has_more or not items:
                    return states
                params["starting_after"] = str(items[-1]["id"])
        except Exception as exc:  # asked again on the reconciler's next round
            log.warning("stripe: could not list the refunds of a payment: %s", self._safe(exc))
        return None

    async def dispute_of(self, provider_ref: str) -> DisputeStatus | None:
        try:
            page = await self._client.v1.disputes.list_async({"payment_intent": provider_ref, "limit": 10})
        except Exception as exc:
            log.warning("stripe: could not list the disputes of a payment: %s", self._safe(exc))
            return None
        disputes = sorted((item.to_dict() for item in page.data), key=lambda d: int(d.get("created") or 0))
        return _DISPUTE_STATUSES.get(str(disputes[-1].get("status"))) if disputes else None

    # --- webhooks --------------------------------------------------------------------------------

    async def parse_webhook(self, body: bytes, headers: dict[str, str]) -> WebhookNotice:
        if not self._webhook_secret:
            raise WebhookRejected("stripe: no webhook secret is configured")
        signature = _header(headers, "stripe-signature")
        try:
            event = self._client.construct_event(body, signature, self._webhook_secret, WEBHOOK_TOLERANCE_SECONDS)
            data = event.to_dict()
        except Exception:  # bad or missing signature, stale timestamp, not JSON, not an event
            raise WebhookRejected("stripe: the webhook signature does not verify") from None
        event_id, event_type = data.get("id"), data.get("type")
        obj = _as_dict(_as_dict(data.get("data")).get("object"))
        if not isinstance(event_id, str) or not isinstance(event_type, str):
            raise WebhookRejected("stripe: a signed body that is not an event")
        return await self._notice(event_id, event_type, obj, data)

    async def _notice(self, event_id: str, event_type: str, obj: dict[str, Any], raw: dict[str, Any]) -> WebhookNotice:
        def notice(provider_ref: str | None, **fields: Any) -> WebhookNotice:
            return WebhookNotice(event_id=event_id, event_type=event_type, provider_ref=provider_ref, raw=raw, **fields)

        metadata = _as_dict(obj.get("metadata"))
        reference = metadata.get(REFERENCE_KEY) if isinstance(metadata.get(REFERENCE_KEY), str) else None
        if event_type.startswith("payment_intent."):
            outcome = {
                "payment_intent.succeeded": Outcome.SUCCEEDED,
                "payment_intent.payment_failed": Outcome.DECLINED,
                "payment_intent.canceled": Outcome.DECLINED,
                "payment_intent.processing": Outcome.PENDING,
                "payment_intent.requires_action": Outcome.PENDING,
            }.get(event_type)
            saved = None
            if outcome is Outcome.SUCCEEDED and obj.get("setup_future_usage") and obj.get("customer"):
                saved = _saved_method(obj)
            return notice(_ref(obj), reference=reference, outcome=outcome, saved_method=saved)
        if event_type in ("refund.created", "refund.updated", "refund.failed", "charge.refund.updated"):
            # The object is the Refund: its own state, failures after success included.
            state = _refund_state(obj)
            return notice(_ref(obj.get("payment_intent")), refunds=(state,) if state else ())
        if event_type == "charge.refunded":
            intent = _ref(obj.get("payment_intent"))
            states = await self.refunds_of(intent) if intent else None
            if states is not None:
                return notice(intent, reference=reference, refunds=tuple(states), refunds_complete=True)
            refunded = obj.get("amount_refunded")  # the refunds could not be listed: the total, at least
            return notice(intent, reference=reference, refunded_amount=refunded if isinstance(refunded, int) else None)
        if event_type.startswith("charge.dispute."):
            provider_ref = _ref(obj.get("payment_intent")) or await self._intent_of_charge(_ref(obj.get("charge")))
            if event_type == "charge.dispute.created":
                return notice(provider_ref, disputed=True)
            if event_type == "charge.dispute.closed":
                status = obj.get("status")
                if status in ("won", "warning_closed"):  # the money stays with us
                    return notice(provider_ref, outcome=Outcome.SUCCEEDED)
                if status == "lost":
                    return notice(provider_ref, charged_back=True)
            return notice(provider_ref)
        if event_type.startswith("charge."):
            return notice(_ref(obj.get("payment_intent")), reference=reference)
        return notice(None)

    async def _intent_of_charge(self, charge_id: str | None) -> str | None:
        if not charge_id:
            return None
        try:
            charge = await self._client.v1.charges.retrieve_async(charge_id)
        except Exception:  # the notice goes on unmatched; Stripe delivers it again later
            return None
        return _ref(charge.to_dict().get("payment_intent"))

    def _safe(self, exc: BaseException) -> str:
        return _scrub(f"stripe: {_describe(exc)}", *self._secrets)


def _matches(intent: dict[str, Any], reference: str) -> bool:
    return _as_dict(intent.get("metadata")).get(REFERENCE_KEY) == reference
