"""HTTP to addresses that someone other than the operator chose (an owner's webhook URL): never to this machine,
its private networks or a cloud's metadata endpoint. Anyone may register as an owner, so without this guard an
owner could make the server call its own admin ports or the 169.254.169.254 metadata service (SSRF).

The check runs at connection time, on every address the name resolves to (a name that resolves to a public address
when the owner saves it and to 127.0.0.1 later gains nothing), and on literal IP addresses, which aiohttp does not
resolve. Redirects are not followed. The operator may allow networks explicitly (``webhook_allowed_networks``: an
agency's own receiver on its intranet, or a test's receiver on loopback).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import ThreadedResolver
from yarl import URL

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class RefusedDestination(OSError):
    """The destination is not a public address and no allowed network holds it."""


def networks(text: str) -> list[Network]:
    return [ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip()]


def allowed(address: str, extra: Iterable[Network] = ()) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in net for net in extra):
        return True
    return ip.is_global and not ip.is_multicast


class PublicResolver(AbstractResolver):
    """Resolves as usual, then keeps only addresses a webhook may reach."""

    def __init__(self, extra: Iterable[Network] = ()) -> None:
        self.inner = ThreadedResolver()
        self.extra = list(extra)

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[dict[str, Any]]:
        found = await self.inner.resolve(host, port, family)
        kept = [entry for entry in found if allowed(entry["host"], self.extra)]
        if not kept:
            raise RefusedDestination(f"{host} resolves only to private, loopback or reserved addresses; "
                                     "webhooks go to public addresses only")
        return kept

    async def close(self) -> None:
        await self.inner.close()


async def check_host(host: str, port: int | None = None, extra: Iterable[Network] = ()) -> list[str]:
    """Every address ``host`` resolves to (a literal address is its own), refused unless each one is allowed.

    For a connection made elsewhere, by code that resolves the name again itself (a plugin probing a camera): any of
    the addresses could be the one it uses, so all must pass, where ``PublicResolver`` keeps the good ones because
    its connection uses only those. A name that does not resolve raises the resolver's ``OSError``."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = sorted({info[4][0] for info in infos})
    if not addresses or not all(allowed(a, extra) for a in addresses):
        raise RefusedDestination(f"{host} is, or resolves to, a private, loopback or reserved address")
    return addresses


def check_url(url: str, extra: Iterable[Network] = ()) -> None:
    """Refuse a URL whose host is a literal non-public IP address (names are checked when resolved)."""
    host = URL(url).host or ""
    try:
        ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        if host.lower() in {"localhost", "localhost.localdomain"} or host.lower().endswith(".localhost"):
            if not allowed("127.0.0.1", extra):
                raise RefusedDestination(f"{host} is this machine; webhooks go to public addresses only") from None
        return
    if not allowed(host.strip("[]"), extra):
        raise RefusedDestination(f"{host} is a private, loopback or reserved address; webhooks go to public addresses only")


def session(extra: Iterable[Network] = (), *, timeout: float = 15.0) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(resolver=PublicResolver(extra), limit=20)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout))


def refused(exc: BaseException) -> RefusedDestination | None:
    """The guard's refusal inside whatever aiohttp wrapped it in, if that is what failed."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return None
        if isinstance(seen, RefusedDestination):
            return seen
        seen = getattr(seen, "os_error", None) or seen.__cause__ or seen.__context__
    return None
