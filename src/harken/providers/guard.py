"""The SSRF guard for URLs that clients put in Settings (function and model endpoints).

The host is resolved first; link-local targets (169.254.0.0/16, fe80::/10, which hold the cloud
metadata services), known metadata host names and addresses, unspecified and multicast
addresses are always refused, loopback unless the operator allows it, and (for model endpoints)
private networks too. The caller then connects to the vetted address (the Host header and the
TLS server name keep the original host name), so a DNS answer that changes between the check
and the connection cannot redirect the request.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import httpx

from harken.errors import ProviderError

METADATA_HOSTS = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.azure.com",
    }
)
METADATA_ADDRESSES = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),
        ipaddress.ip_address("fd00:ec2::254"),
        ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
    }
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def blocked_reason(
    address: IPAddress,
    allow_loopback: bool,
    *,
    allow_private: bool = True,
    flag: str = "allow_loopback_functions",
) -> str | None:
    """Why ``address`` may not be called, or None if it may. ``flag`` names the permission."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_unspecified or address.is_multicast:
        return "not a unicast address"
    if address.is_loopback and not allow_loopback:
        return f"a loopback address (set {flag} to permit it)"
    if address.is_private and not address.is_loopback and not allow_private:
        return f"a private address (set {flag} to permit it)"
    return None


def literal_problem(url: str, what: str, allow_local: bool, flag: str) -> str | None:
    """A Settings-time check without I/O: scheme, host, and a blocked literal IP address."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return f"{what} {redact(url)!r} is not a valid URL"
    if parsed.scheme not in ("http", "https"):
        return f"{what} {redact(url)} must use http or https"
    if not parsed.host:
        return f"{what} {redact(url)} has no host"
    if parsed.host.lower().rstrip(".") in METADATA_HOSTS:
        return f"{what} {redact(url)} is blocked: a cloud metadata host"
    try:
        address = ipaddress.ip_address(parsed.host)
    except ValueError:
        return None  # a name: resolved and vetted when it is called
    reason = blocked_reason(address, allow_local, allow_private=allow_local, flag=flag)
    return None if reason is None else f"{what} {redact(url)} is blocked: it is {reason}"


def redact(url: str | httpx.URL) -> str:
    """``url`` without credentials, query or fragment: safe for logs and client messages."""
    try:
        parsed = httpx.URL(str(url))
    except httpx.InvalidURL:
        return "<invalid URL>"
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.host}{port}{parsed.path}"


async def vet_target(
    url: httpx.URL,
    allow_loopback: bool,
    *,
    allow_private: bool = True,
    what: str = "function endpoint",
    flag: str = "allow_loopback_functions",
) -> str:
    """Resolve ``url``'s host and return the address to connect to; ProviderError if blocked."""
    shown = redact(url)
    if url.scheme not in ("http", "https"):
        raise ProviderError(f"{what} {shown} must use http or https")
    host = url.host
    if not host:
        raise ProviderError(f"{what} {shown} has no host")
    if host.lower().rstrip(".") in METADATA_HOSTS:
        raise ProviderError(f"{what} {shown} is blocked: a cloud metadata host")
    port = url.port or (443 if url.scheme == "https" else 80)
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ProviderError(f"Failed to resolve endpoint: {shown}", retryable=True) from exc
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    for address in addresses:
        reason = blocked_reason(address, allow_loopback, allow_private=allow_private, flag=flag)
        if reason is not None:
            raise ProviderError(f"{what} {shown} is blocked: {host} is {reason}")
    if not addresses:
        raise ProviderError(f"Failed to resolve endpoint: {shown}", retryable=True)
    return str(addresses[0])
