"""The address of the client behind a request: the peer, or what a trusted proxy forwarded."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from fastapi import Request

from app.config import Settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _networks(spec: str) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(p.strip(), strict=False) for p in spec.split(",") if p.strip())


def _trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def client_address(request: Request, settings: Settings) -> str:
    """The peer address; when the peer is a trusted proxy, the nearest untrusted X-Forwarded-For hop.

    Walking from the right skips our own proxy chain; anything a client wrote further left is
    never believed, so nobody picks their own throttling bucket.
    """
    peer = request.client.host if request.client else "unknown"
    networks = _networks(settings.trusted_proxies)
    if not networks or not _trusted(peer, networks):
        return peer
    hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, networks):
            return hop[:64]
    return hops[0][:64] if hops else peer
