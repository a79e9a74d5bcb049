"""Where a webhook may go: never to this host's or its network's own services (SSRF).

A URL is checked when it is registered, and again at every delivery after DNS
resolution: ``GuardedResolver`` is the aiohttp resolver of the delivery session, so
the addresses it checked are the very addresses the connector connects to (a name
that resolved to a public address at registration and to 127.0.0.1 later is refused
then). Loopback, private, link-local, multicast, reserved and unspecified addresses
are refused unless ``DROPGATE_WEBHOOK_ALLOW_PRIVATE=true``; ``https`` is required
unless private targets are allowed or ``DROPGATE_WEBHOOK_ALLOW_HTTP=true``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult

from dropgate.errors import ValidationError

HostResolver = Callable[[str, int], Awaitable[list[str]]]
"""(host, port) -> the addresses it resolves to; tests swap in their own DNS."""


class UnsafeTarget(Exception):
    """A URL or an address dropgate will not send to; ``str`` says why."""


async def system_resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def address_refusal(address: str) -> str | None:
    """Why ``address`` is not a public one, or None when it is."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"{address!r} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for flag, name in ((ip.is_loopback, "loopback"), (ip.is_private, "private"),
                       (ip.is_link_local, "link-local"), (ip.is_multicast, "multicast"),
                       (ip.is_reserved, "reserved"), (ip.is_unspecified, "unspecified")):
        if flag:
            return f"{address} is a {name} address"
    if not ip.is_global:
        return f"{address} is not a public address"
    return None


def split_target(url: str, *, allow_private: bool, allow_http: bool) -> tuple[str, int]:
    """The URL's host and port, or ``UnsafeTarget`` for a scheme or form it may not have."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeTarget(f"the URL is malformed ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeTarget("the URL must be absolute http(s) with a host")
    if parts.scheme == "http" and not (allow_private or allow_http):
        raise UnsafeTarget("the URL must use https")
    if parts.username or parts.password:
        raise UnsafeTarget("the URL may not carry credentials")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


async def check_target(url: str, *, allow_private: bool, allow_http: bool,
                       resolve: HostResolver | None) -> None:
    """Refuse a URL whose host is, or resolves to, an address that is not public
    (``resolve=None``: a host name is left to ``GuardedResolver``)."""
    host, port = split_target(url, allow_private=allow_private, allow_http=allow_http)
    if allow_private:
        return
    try:
        ipaddress.ip_address(host)
        addresses = [host]
    except ValueError:
        if resolve is None:
            return
        try:
            addresses = await resolve(host, port)
        except OSError as exc:
            raise UnsafeTarget(f"{host} does not resolve ({exc})") from None
    if not addresses:
        raise UnsafeTarget(f"{host} does not resolve")
    for address in addresses:
        reason = address_refusal(address)
        if reason is not None:
            raise UnsafeTarget(f"{host}: {reason}")


async def check_registration(url: str, *, allow_private: bool, allow_http: bool,
                             resolve: HostResolver) -> None:
    """``check_target`` as the API answers it: 400 naming the field."""
    try:
        await check_target(url, allow_private=allow_private, allow_http=allow_http, resolve=resolve)
    except UnsafeTarget as exc:
        raise ValidationError(f"url refused: {exc}.", details={"field": "url"}) from None


class GuardedResolver(AbstractResolver):
    """The delivery session's resolver: answers only addresses it checked (or every
    address when private targets are allowed)."""

    def __init__(self, resolve: HostResolver, *, allow_private: bool) -> None:
        self._resolve = resolve
        self._allow_private = allow_private

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        try:
            addresses = await self._resolve(host, port)
        except OSError as exc:
            raise OSError(f"{host} does not resolve ({exc})") from None
        results: list[ResolveResult] = []
        for address in addresses:
            if not self._allow_private:
                reason = address_refusal(address)
                if reason is not None:
                    raise UnsafeTarget(f"{host}: {reason}")
            fam = socket.AF_INET6 if ":" in address else socket.AF_INET
            results.append(ResolveResult(hostname=host, host=address, port=port, family=fam,
                                         proto=0, flags=socket.AI_NUMERICHOST))
        if not results:
            raise OSError(f"{host} does not resolve")
        return results

    async def close(self) -> None:
        return None


