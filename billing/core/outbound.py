"""Requests whitebill sends to an address a tenant chose (a partner's webhook endpoints): to the public
internet only, never to this machine, its cloud's metadata service or the private network behind it.

Two checks, one rule (``permitted``):

- when the URL is saved (``check_url``): https in production, and every address its host resolves to
  (or its host itself, in any spelling an HTTP client accepts: ``2130706433``, ``0x7f.1``,
  ``[::ffff:127.0.0.1]``) must be public. A name that does not resolve yet is accepted: it is
  checked at every connection anyway;
- at every connection (``client``): the host is resolved once, every address is checked, and the
  connection goes to a checked address, so a name that changes its answer after the first check (DNS
  rebinding) reaches nothing it should not. TLS is still verified against the URL's host name.

A refused address is never connected to, so what the partner reads back (``URL_NOT_ALLOWED``) is the
same whether a port there is open, closed or filtered.

Outside production, ``outbound_allowed_networks`` (WHITEBILL_OUTBOUND_ALLOW; loopback by default, so a
receiver on the developer's machine or a test's works, over http too) lets chosen networks through.
Production ignores nothing: the setting is refused there (``whitebill.settings``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

import httpcore
import httpx

from billing.core import config
from billing.core.errors import BillingError, ErrorCode

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
REFUSED = "URL_NOT_ALLOWED: the address is not a public one"
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class AddressNotAllowed(httpcore.ConnectError):
    """The destination is, or resolves to, an address whitebill does not send to."""


def literal_address(host: str) -> IPAddress | None:
    """The address ``host`` spells, if it spells one: also the forms C's inet_aton accepts, which
    resolvers and HTTP clients take as IPv4 (``2130706433``, ``0x7f.1``, ``0177.0.0.1``, ``127.1``)."""
    text = host.strip().strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(text))
    except OSError:
        return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries and reaches (mapped, 6to4, Teredo, NAT64, compatible)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64 or int(address) >> 32 == 0:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _public(address: IPAddress) -> bool:
    return address.is_global and not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or (isinstance(address, ipaddress.IPv6Address) and address.is_site_local)
    )


def _allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    configured = config.current()
    if configured.production:
        return []
    return [ipaddress.ip_network(n, strict=False) for n in configured.outbound_allowed_networks]


def _unmapped(address: IPAddress) -> IPAddress:
    """::ffff:a.b.c.d is a.b.c.d on the wire."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _in_allowed_network(address: IPAddress) -> bool:
    address = _unmapped(address)
    return any(address.version == net.version and address in net for net in _allowed_networks())


def permitted(address: IPAddress) -> bool:
    """Whether whitebill may connect to ``address`` for a tenant: a public address (and, for an IPv6
    one carrying an IPv4 address, that one public too), or one in the allowed networks (not in
    production)."""
    address = _unmapped(address)
    embedded = _embedded_ipv4(address) if isinstance(address, ipaddress.IPv6Address) else None
    if _in_allowed_network(address):
        return True
    return _public(address) and (embedded is None or _public(embedded))


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` stands for (raises socket.gaierror when it stands for none)."""
    literal = literal_address(host)
    if literal is not None:
        return [literal]
    answers = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[IPAddress] = []
    for *_, sockaddr in answers:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    return found


def _refused(field: str) -> BillingError:
    return BillingError(ErrorCode.URL_NOT_ALLOWED, "whitebill sends only to public https addresses", field=field)


async def check_url(url: str, field: str = "url") -> str:
    """A URL whitebill may send to for a tenant, as given; URL_NOT_ALLOWED naming ``field`` if not."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise BillingError(ErrorCode.INVALID_INPUT, "not an URL", field=field) from None
    if len(url) > 500 or not parts.hostname or parts.scheme not in {"http", "https"}:
        raise BillingError(ErrorCode.INVALID_INPUT, "not an URL", field=field)
    if parts.username is not None or parts.password is not None:
        raise BillingError(ErrorCode.INVALID_INPUT, "an URL with a user name or password", field=field)
    try:
        addresses = await resolve(parts.hostname, port)
    except (socket.gaierror, UnicodeError):
        addresses = []  # not resolvable today: every connection checks it again
    if not all(permitted(a) for a in addresses):
        raise _refused(field)
    # Plain http only to a receiver in the allowed networks (a developer's machine, a test).
    if parts.scheme == "http" and not (addresses and all(_in_allowed_network(a) for a in addresses)):
        raise _refused(field)
    return url


class _CheckedConnections(httpcore.AsyncNetworkBackend):
    """Opens connections only to checked addresses: resolves the host itself, refuses the whole name
    when any address is not permitted, and connects to the addresses it checked."""

    def __init__(self) -> None:
        self._network = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await resolve(host, port)
        except (socket.gaierror, UnicodeError) as exc:
            raise httpcore.ConnectError(f"{host} does not resolve") from exc
        if not addresses or not all(permitted(a) for a in addresses):
            raise AddressNotAllowed(REFUSED)
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._network.connect_tcp(
                    str(address), port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise AddressNotAllowed(REFUSED)

    async def sleep(self, seconds: float) -> None:
        await self._network.sleep(seconds)


class _CheckedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, *, limits: httpx.Limits) -> None:
        super().__init__(limits=limits, trust_env=False)
        # httpx has no parameter for the network backend: its pool is rebuilt with ours, with the
        # same TLS context (certificates verified, against the URL's host name).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_CheckedConnections(),
        )


def client(*, timeout: httpx.Timeout, limits: httpx.Limits) -> httpx.AsyncClient:
    """An HTTP client for tenant-chosen URLs: no redirects, no proxy from the environment, every
    connection to a checked address."""
    return httpx.AsyncClient(
        transport=_CheckedTransport(limits=limits), timeout=timeout, follow_redirects=False, trust_env=False
    )


def was_refused(error: BaseException) -> bool:
    """Whether a request failed because its destination is not permitted (the cause httpx wraps)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, AddressNotAllowed):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
