"""Which URLs webhooks may go to: public addresses only, unless a network is explicitly allowed."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

ALLOW_SETTING = "MONITOR_WEBHOOK_ALLOWED_NETWORKS"

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class RefusedTarget(ValueError):
    """A URL webhooks may not be sent to (says why, and how to allow it when that is possible)."""


@dataclass(frozen=True)
class Target:
    """A checked URL: its parts and the addresses its host resolved to (all of them allowed)."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]


def parse_networks(networks: Sequence[str]) -> list[Network]:
    """The allowed CIDRs, parsed (a bad one raises ValueError naming it)."""
    parsed: list[Network] = []
    for text in networks:
        try:
            parsed.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"{text!r} is not a network (CIDR such as 127.0.0.1/32)") from exc
    return parsed


def _kind(address: Address) -> str | None:
    """Why ``address`` is not public (loopback, private...), or None when it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return _kind(address.ipv4_mapped)
    # Order matters: 169.254.169.254 is link-local (and private); name the sharper reason.
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
    )
    for name, hit in checks:
        if hit:
            return name
    if not address.is_global:
        return "non-public"
    return None


def check_address(address: str, allowed: Sequence[Network]) -> None:
    """Raise RefusedTarget when ``address`` is not public and lies in no allowed network."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    kind = _kind(ip)
    if kind is None:
        return
    candidates: list[Address] = [ip]
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        candidates.append(ip.ipv4_mapped)
    for net in allowed:
        if any(c.version == net.version and c in net for c in candidates):
            return
    article = "an" if kind[0] in "aeiou" else "a"
    shown = str(ip)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        shown = f"{ip} (IPv4-mapped {ip.ipv4_mapped})"
    raise RefusedTarget(f"{shown} is {article} {kind} address; allow it with {ALLOW_SETTING}")


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (a literal address resolves to itself)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise RefusedTarget(f"cannot resolve {host}: {exc}") from exc
    seen: dict[str, None] = {}
    for info in infos:
        seen.setdefault(str(info[4][0]), None)
    return list(seen)


def split_url(url: str) -> tuple[str, str, int]:
    """Scheme, host and port of an http(s) URL; RefusedTarget for anything else."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise RefusedTarget(f"{url!r} is not a URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise RefusedTarget(f"only http and https URLs are allowed, not {scheme or 'none'!r}")
    host = parts.hostname
    if not host:
        raise RefusedTarget(f"{url!r} has no host")
    if parts.username is not None or parts.password is not None:
        raise RefusedTarget("a webhook URL may not carry a user name or password")
    return scheme, host, port if port is not None else (443 if scheme == "https" else 80)


def check_target(url: str, allowed_networks: Sequence[str]) -> Target:
    """Check ``url`` for sending: http(s), and every address of its host public or allowed.

    Raises RefusedTarget with a one-line reason. Every address counts, not only the first: a
    name resolving to a public and a private address could be steered to either.
    """
    scheme, host, port = split_url(url)
    allowed = parse_networks(allowed_networks)
    addresses = resolve(host, port)
    if not addresses:
        raise RefusedTarget(f"{host} resolves to no address")
    for address in addresses:
        check_address(address, allowed)
    return Target(url=url, scheme=scheme, host=host, port=port, addresses=tuple(addresses))


def refusal(url: str, allowed_networks: Sequence[str]) -> str | None:
    """Why webhooks may not go to ``url`` now, or None. A host that does not resolve now is let
    through (an endpoint may be set up before its DNS): each delivery checks its addresses
    again with ``check_target``."""
    try:
        _scheme, host, port = split_url(url)
        allowed = parse_networks(allowed_networks)
    except (RefusedTarget, ValueError) as exc:
        return str(exc)
    try:
        addresses = resolve(host, port)
    except RefusedTarget:
        return None
    for address in addresses:
        try:
            check_address(address, allowed)
        except RefusedTarget as exc:
            return str(exc)
    return None
