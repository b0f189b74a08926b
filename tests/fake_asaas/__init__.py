"""A fake Asaas API v3 server for tests (starlette + uvicorn), with test controls under ``/_fake/``.

In a test process::

    from tests.fake_asaas import running_fake_asaas

    with running_fake_asaas(token="my-key") as asaas:
        asaas.url            # "http://127.0.0.1:PORT": give it to the SDK as base_url
        asaas.pay(payment_id)                        # the payer pays a boleto / pix
        asaas.pay(payment_id, card_number="4444444444444444")   # or a card on the hosted page
        asaas.fault("slow", "POST", "/v3/payments", seconds=2, act_first=True)
        asaas.events()       # every webhook event built

Standalone, in its own process (bound to 127.0.0.1; ``--port 0`` picks a free port and prints the URL)::

    .venv/bin/python -m tests.fake_asaas --port 8089 --token my-key

then ``FakeAsaasController("http://127.0.0.1:8089", "my-key")`` drives it the same way. Pytest fixtures:
``tests/fake_asaas/fixtures.py`` (``fake_asaas`` per session, ``asaas`` reset for each test).
"""

from tests.fake_asaas.control import (
    APPROVED_CARD,
    DEFAULT_TOKEN,
    REFUSED_CARDS,
    FakeAsaasControlError,
    FakeAsaasController,
    ReceivedWebhook,
    ServerThread,
    WebhookSink,
    running_fake_asaas,
    running_webhook_sink,
)
from tests.fake_asaas.server import create_app

__all__ = [
    "APPROVED_CARD",
    "DEFAULT_TOKEN",
    "REFUSED_CARDS",
    "FakeAsaasControlError",
    "FakeAsaasController",
    "ReceivedWebhook",
    "ServerThread",
    "WebhookSink",
    "create_app",
    "running_fake_asaas",
    "running_webhook_sink",
]
