"""The gateway contract. Adapters turn every provider answer into one of five outcomes.

Our payment exists before the provider is called, and its random reference is passed as the
provider's idempotency key (Stripe ``idempotency_key`` and metadata, Asaas ``externalReference``),
so retrying a charge after a timeout can never charge twice: before retrying an UNKNOWN outcome the
caller asks :meth:`Gateway.find_payment` whether the provider already has it.

A gateway is built by the factory registered under the ``whitebill.gateways`` entry point group,
called with one :class:`GatewayConfig`. Adapters never log request bodies, credentials or card data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable


class Outcome(StrEnum):
    SUCCEEDED = "SUCCEEDED"
    PENDING = "PENDING"  # the payer must act (boleto, pix, hosted invoice) or the provider is still working
    DECLINED = "DECLINED"
    NOT_ATTEMPTED = "NOT_ATTEMPTED"  # certainly not charged: safe to retry
    UNKNOWN = "UNKNOWN"  # may or may not have been charged: reconcile later
    # An off-session charge the card's bank wants the payer to authenticate (3-D Secure): nothing is
    # charged until the payer does, on-session; ``payer_action`` carries what that takes.
    REQUIRES_ACTION = "REQUIRES_ACTION"


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """What a factory is given: the decrypted secrets and the non-secret settings of one configuration.

    ``credentials`` by provider: stripe ``{"api_key", "webhook_secret"}``; asaas ``{"api_key",
    "webhook_token"}``. ``settings`` may hold ``api_base`` (a local server in tests) and
    ``timeout_seconds``. ``mode`` is TEST or LIVE (Asaas: sandbox or production address).
    """

    mode: str = "TEST"
    credentials: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    config_id: int | None = None

    def __repr__(self) -> str:  # never print secrets
        return f"GatewayConfig(mode={self.mode!r}, config_id={self.config_id!r}, credentials=<hidden>)"


@dataclass(frozen=True, slots=True)
class Capabilities:
    methods: frozenset[str]  # CARD, BOLETO, PIX, MANUAL
    currencies: frozenset[str] | None = None  # None: any
    supports_refunds: bool = False
    supports_saved_methods: bool = False
    # A card payment can be made without a card in hand: the provider's own page takes it (the pay-now link
    # a renewal falls back to when no card is kept).
    hosted_card_page: bool = False


@dataclass(frozen=True, slots=True)
class Payer:
    key: str  # "WORKSPACE:12"
    name: str
    email: str | None = None
    tax_id: str | None = None
    provider_customer_ref: str | None = None


@dataclass(frozen=True, slots=True)
class ChargeRequest:
    payment_id: int
    idempotency_key: str  # the payment's random reference: the provider must dedupe on it
    amount: int  # minor units
    currency: str
    method: str
    payer: Payer
    description: str = ""
    saved_method_ref: str | None = None  # a method kept from an earlier payment (off-session charges)
    method_token: str | None = None  # a new card made by the provider's frontend library (Stripe pm_...)
    save_method: bool = False  # keep the new card for later off-session charges
    off_session: bool = False
    due_date: str | None = None  # ISO date for boleto/pix expiry; the adapter picks a default
    remote_ip: str | None = None  # the payer's address (Asaas requires it with a kept card)


@dataclass(frozen=True, slots=True)
class SavedMethod:
    """A reusable payment method at the provider: never card numbers, only a reference and a hint."""

    provider_method_ref: str
    kind: str = "CARD"
    brand: str | None = None
    last4: str | None = None
    provider_customer_ref: str | None = None


@dataclass(frozen=True, slots=True)
class ChargeResult:
    outcome: Outcome
    provider_ref: str | None = None
    decline_reason: str | None = None
    # What the payer needs to pay (a PENDING payment): one shape for every provider,
    # {"kind": "URL" | "BOLETO" | "PIX" | "MANUAL", "url": ..., "boleto_line": ..., "pix_payload": ...,
    #  "pix_qr_png_base64": ..., "expires_at": ..., "client_secret": ...}
    payer_action: dict[str, Any] | None = None
    saved_method: SavedMethod | None = None  # the charge left a reusable method (card saved for later)


@dataclass(frozen=True, slots=True)
class RefundResult:
    """The provider's answer to a refund request: SUCCEEDED (done), PENDING (requested: the provider says
    later), DECLINED (refused: nothing refunded), NOT_ATTEMPTED or UNKNOWN (ask again with the same key)."""

    outcome: Outcome
    provider_ref: str | None = None
    reason: str | None = None
    # A boleto refund: where the payer gives the bank details the money goes back to.
    payer_action: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class RefundState:
    """One refund of a payment as the provider sees it now (in a webhook, or asked by the reconciler).

    ``key`` is the idempotency key whitebill sent with it, or None for a refund made at the provider
    itself; ``provider_ref`` then tells it apart. ``outcome``: SUCCEEDED when done, PENDING while the
    provider works on it, DECLINED when it was denied, cancelled or failed (even after it was done)."""

    amount: int  # minor units
    outcome: Outcome
    key: str | None = None
    provider_ref: str | None = None
    reason: str | None = None


class DisputeStatus(StrEnum):
    OPEN = "OPEN"  # opened or under review: the money is held
    WON = "WON"  # the money stays with the merchant
    LOST = "LOST"  # the money went back to the payer


@dataclass(frozen=True, slots=True)
class WebhookNotice:
    """A verified provider event, reduced to what changed about which payment."""

    event_id: str
    event_type: str
    provider_ref: str | None
    reference: str | None = None  # our payment reference, where the provider echoes it back
    outcome: Outcome | None = None
    refunded_amount: int | None = None  # the total refunded so far, in minor units
    disputed: bool = False  # a dispute or chargeback was opened (a won dispute reports outcome SUCCEEDED)
    charged_back: bool = False  # the dispute was lost: the money is gone
    saved_method: SavedMethod | None = None  # e.g. the card token Asaas returns after a hosted-page payment
    refunds: tuple[RefundState, ...] = ()  # refunds the event reports, each with its own state
    refunds_complete: bool = False  # ``refunds`` is every refund of the payment, not one refund's news
    # A payment recorded as paid by hand (Asaas: received in cash) is unpaid again: what it bought goes back.
    receipt_undone: bool = False
    raw: dict[str, Any] = field(default_factory=dict)


class WebhookRejected(Exception):
    """The webhook failed verification: it must change nothing."""


@runtime_checkable
class Gateway(Protocol):
    """What whitebill needs from a payment provider."""

    name: str

    def capabilities(self) -> Capabilities: ...

    async def ensure_customer(self, payer: Payer) -> str | None:
        """The provider's customer for this payer (created if needed), or None if it has none."""
        ...

    async def charge(self, request: ChargeRequest) -> ChargeResult: ...

    async def get_payment(self, provider_ref: str) -> ChargeResult: ...

    async def find_payment(self, reference: str, payer: Payer) -> ChargeResult | None:
        """The provider's payment made with our ``reference``, or None if it never received one."""
        ...

    async def refund(self, provider_ref: str, amount: int, currency: str, idempotency_key: str) -> RefundResult: ...

    async def parse_webhook(self, body: bytes, headers: dict[str, str]) -> WebhookNotice: ...


@runtime_checkable
class FollowsUp(Protocol):
    """What a gateway offers, optionally, for the reconciler to ask again about refunds still REQUESTED and
    disputes still open (a gateway without it is told by webhooks only)."""

    async def refunds_of(self, provider_ref: str) -> list[RefundState] | None:
        """Every refund of the payment as the provider sees it now, or None if the provider could not say."""
        ...

    async def dispute_of(self, provider_ref: str) -> DisputeStatus | None:
        """Where the payment's dispute (chargeback) stands, or None if it has none or the provider could
        not say."""
        ...


@runtime_checkable
class CompletesOnSession(Protocol):
    """What a gateway offers, optionally, for a REQUIRES_ACTION charge to be completed by its payer at
    whitebill's pay-now page (a gateway without it leaves that to the partner's own frontend)."""

    async def continue_on_session(self, provider_ref: str, return_url: str) -> ChargeResult:
        """Let the payer complete the charge now: REQUIRES_ACTION with ``payer_action = {"kind": "URL", "url"}``
        to send them to (the bank's page, which comes back to ``return_url``), or the charge's outcome if
        it settled without them."""
        ...


GatewayFactory = Any  # a callable (config: GatewayConfig) -> Gateway, registered under the entry point group
