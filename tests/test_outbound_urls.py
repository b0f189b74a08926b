"""Where whitebill sends requests on a partner's behalf: public addresses only, checked when the URL is
saved and again at every connection. A partner cannot use its webhook endpoint to reach this machine,
the cloud's metadata service or the private network, nor to learn which of their ports are open."""

from __future__ import annotations

import asyncio
import socket

import pytest

from billing.core import clock, outbound
from billing.core.errors import BillingError, ErrorCode
from billing.outbox import partner_webhooks
from billing.tenants import api_keys
from models.operations import OutboxEvent, WebhookDelivery
from tests.conftest import as_production
from tests.factories import a_partner, partner_viewer
from tests.graphql import GraphQLClient
from tests.test_partner_webhooks import drain, receiving
from whitebill.settings import configure_domain, load_settings
from whitebill.worker import Worker

pytestmark = pytest.mark.usefixtures("database")

REFUSED_EVERYWHERE = [
    "https://169.254.169.254/latest/meta-data/",  # the cloud's metadata service
    "https://localhost:6379/",
    "https://127.0.0.1/hook",
    "https://127.1/hook",
    "https://2130706433/hook",  # 127.0.0.1 as one number
    "http://2130706433/",
    "https://0x7f.1/hook",
    "https://0177.0.0.1/hook",  # octal
    "https://[::ffff:127.0.0.1]/hook",  # IPv4-mapped IPv6
    "https://[::ffff:a9fe:a9fe]/hook",
    "https://[::127.0.0.1]/hook",  # IPv4-compatible
    "https://[2002:7f00:1::]/hook",  # 6to4 of 127.0.0.1
    "https://[64:ff9b::a9fe:a9fe]/hook",  # NAT64 of 169.254.169.254
    "https://[::1]/hook",
    "https://[::]/hook",
    "https://0.0.0.0/hook",
    "https://10.1.2.3/hook",
    "https://172.16.0.1/hook",
    "https://192.168.1.1/hook",
    "https://100.64.0.1/hook",  # carrier-grade NAT
    "https://192.0.2.1/hook",  # documentation
    "https://198.18.0.1/hook",  # benchmarking
    "https://224.0.0.1/hook",  # multicast
    "https://240.0.0.1/hook",  # reserved
    "https://255.255.255.255/hook",
    "https://[fe80::1]/hook",  # link-local
    "https://[fc00::1]/hook",  # unique local
    "https://[fec0::1]/hook",  # site-local
    "https://[ff02::1]/hook",  # multicast
]


@pytest.fixture
def production(monkeypatch) -> None:
    as_production(monkeypatch)
    configure_domain(load_settings())


@pytest.fixture
def nothing_allowed(monkeypatch) -> None:
    """Development without the loopback allowance: what production enforces, over a local receiver."""
    monkeypatch.setenv("WHITEBILL_OUTBOUND_ALLOW", "")
    configure_domain(load_settings())


class Resolver:
    """The names a test controls, answered by the event loop's resolver (what every lookup goes through)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.answers: dict[str, list[list[str]]] = {}
        self.asked: list[str] = []
        loop = asyncio.get_running_loop()
        real = loop.getaddrinfo

        async def getaddrinfo(host, port, *args, **kwargs):
            name = host.decode() if isinstance(host, bytes) else host
            if name in self.answers:
                self.asked.append(name)
                queue = self.answers[name]
                addresses = queue.pop(0) if len(queue) > 1 else queue[0]
                return [
                    (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                    for a in addresses
                ]
            return await real(host, port, *args, **kwargs)

        monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)

    def answer(self, name: str, *answers: list[str]) -> None:
        """``name`` resolves to each list in turn, the last one from then on."""
        self.answers[name] = list(answers)


@pytest.mark.parametrize("url", REFUSED_EVERYWHERE)
async def test_a_webhook_url_that_reaches_a_private_address_is_refused_in_production(production, url) -> None:
    partner = await a_partner()
    with pytest.raises(BillingError) as refused:
        await partner_webhooks.create_endpoint(partner_viewer(partner), partner_id=partner.id, url=url, events=[])
    assert (refused.value.code, refused.value.field) == (ErrorCode.URL_NOT_ALLOWED, "url")


async def test_production_takes_only_https_to_public_addresses(production, monkeypatch) -> None:
    resolver = Resolver(monkeypatch)
    resolver.answer("hooks.agency.example", ["93.184.216.34", "2606:2800:220:1::1"])
    resolver.answer("split.agency.example", ["93.184.216.34", "10.0.0.7"])  # one private answer is enough
    partner = await a_partner()
    viewer = partner_viewer(partner)
    for url in ("https://hooks.agency.example/in", "https://8.8.8.8/in", "https://[2606:4700:4700::1111]/in"):
        endpoint, _ = await partner_webhooks.create_endpoint(viewer, partner_id=partner.id, url=url, events=[])
        assert endpoint.url == url
    for url in ("http://hooks.agency.example/in", "https://split.agency.example/in"):
        with pytest.raises(BillingError) as refused:
            await partner_webhooks.create_endpoint(viewer, partner_id=partner.id, url=url, events=[])
        assert refused.value.code is ErrorCode.URL_NOT_ALLOWED, url


def test_the_loopback_allowance_is_not_a_production_setting(monkeypatch) -> None:
    as_production(monkeypatch)
    monkeypatch.setenv("WHITEBILL_OUTBOUND_ALLOW", "127.0.0.0/8")
    with pytest.raises(ValueError, match="WHITEBILL_OUTBOUND_ALLOW"):
        load_settings()
    monkeypatch.delenv("WHITEBILL_OUTBOUND_ALLOW")
    assert load_settings().domain_config().outbound_allowed_networks == ()


async def test_outside_production_only_the_allowed_networks_pass(monkeypatch) -> None:
    monkeypatch.setenv("WHITEBILL_OUTBOUND_ALLOW", "127.0.0.0/8")
    configure_domain(load_settings())
    assert await outbound.check_url("http://127.0.0.1:9/hook")
    assert await outbound.check_url("http://[::ffff:127.0.0.1]:9/hook")
    for url in ("https://169.254.169.254/", "http://10.0.0.1/", "https://[::1]/"):
        with pytest.raises(BillingError) as refused:
            await outbound.check_url(url)
        assert refused.value.code is ErrorCode.URL_NOT_ALLOWED, url


async def test_the_api_answers_url_not_allowed_naming_the_url_field(server) -> None:
    partner = await a_partner()
    client = GraphQLClient(server.url, (await api_keys.create_key(partner_id=partner.id)).secret)
    for url in ("https://169.254.169.254/latest/meta-data/", "https://10.0.0.1/", "https://[fe80::1]/"):
        answer = await client.data(
            "mutation($u: String!) { createWebhookEndpoint(input: {url: $u, events: []})"
            " { endpoint { id } errors { code field } } }",
            {"u": url},
        )
        assert answer["createWebhookEndpoint"] == {
            "endpoint": None,
            "errors": [{"code": "URL_NOT_ALLOWED", "field": "url"}],
        }, url


async def test_a_name_that_turns_private_after_it_was_saved_is_not_connected_to(nothing_allowed, monkeypatch) -> None:
    """DNS rebinding: public when saved, this machine when sent. Nothing is sent, and the partner reads
    the same error for an open port (a receiver listens) and a closed one."""
    resolver = Resolver(monkeypatch)
    with receiving() as (receiver, url):
        open_port = int(url.rsplit(":", 1)[1])
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            closed_port = probe.getsockname()[1]
        partner = await a_partner()
        endpoints = []
        for name, port in (("open.rebind.example", open_port), ("closed.rebind.example", closed_port)):
            resolver.answer(name, ["93.184.216.34"], ["127.0.0.1"])
            endpoint, _ = await partner_webhooks.create_endpoint(
                partner_viewer(partner), partner_id=partner.id, url=f"https://{name}:{port}/ok", events=[]
            )
            endpoints.append(endpoint)
        await OutboxEvent.create(partner_id=partner.id, event_type="plan.renewed", payload={}, run_at=clock.now())
        await drain(Worker(load_settings()))
        assert receiver.received == []
        errors = {
            d.endpoint_id: (d.last_error, d.last_status) for d in await WebhookDelivery.filter(partner_id=partner.id)
        }
        assert errors == {e.id: (outbound.REFUSED, None) for e in endpoints}


async def test_a_delivery_connects_to_the_address_it_checked(monkeypatch) -> None:
    """The name is resolved once per connection and the connection goes to that answer: a resolver that
    turns to the metadata service after the check is never asked again for it."""
    resolver = Resolver(monkeypatch)
    with receiving() as (receiver, url):
        port = url.rsplit(":", 1)[1]
        resolver.answer("hooks.agency.example", ["127.0.0.1"], ["127.0.0.1"], ["169.254.169.254"])
        partner = await a_partner()
        await partner_webhooks.create_endpoint(
            partner_viewer(partner), partner_id=partner.id, url=f"http://hooks.agency.example:{port}/ok", events=[]
        )
        event = await OutboxEvent.create(
            partner_id=partner.id, event_type="plan.renewed", payload={}, run_at=clock.now()
        )
        await drain(Worker(load_settings()))
        assert receiver.ids() == [f"evt_{event.id}"]
        assert resolver.asked == ["hooks.agency.example"] * 2  # saved, then connected
