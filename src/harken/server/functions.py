"""Server-side function calls over HTTP (DESIGN.md §4.12), behind an SSRF guard.

``POST`` (and ``PUT``/``PATCH``) send the arguments as a JSON body; ``GET`` (and ``DELETE``) send
them as a query string (non-string values JSON-encoded). The function's headers are sent as
given; the call times out after ``timeout`` seconds; redirects are not followed.

The guard resolves the host first and refuses link-local targets (169.254.0.0/16, fe80::/10,
which hold the cloud metadata services), known metadata host names and addresses, unspecified
and multicast addresses, and loopback unless ``allow_loopback`` is set. The request then goes to
the vetted address (the Host header and TLS server name keep the original host name), so a DNS
answer that changes between the check and the connection cannot redirect it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
from typing import Any

import httpx

from harken.errors import ProviderError
from harken.protocol.settings import FunctionDef

MAX_RESPONSE_BYTES = 64 * 1024
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
_BODY_METHODS = ("POST", "PUT", "PATCH")
_QUERY_METHODS = ("GET", "DELETE")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def blocked_reason(address: IPAddress, allow_loopback: bool) -> str | None:
    """Why ``address`` may not be called, or None if it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_unspecified or address.is_multicast:
        return "not a unicast address"
    if address.is_loopback and not allow_loopback:
        return "a loopback address (set allow_loopback_functions to permit it)"
    return None


async def vet_target(url: httpx.URL, allow_loopback: bool) -> str:
    """Resolve ``url``'s host and return the address to connect to; ProviderError if blocked."""
    if url.scheme not in ("http", "https"):
        raise ProviderError(f"function endpoint {url} must use http or https")
    host = url.host
    if not host:
        raise ProviderError(f"function endpoint {url} has no host")
    if host.lower().rstrip(".") in METADATA_HOSTS:
        raise ProviderError(f"function endpoint {url} is blocked: a cloud metadata host")
    port = url.port or (443 if url.scheme == "https" else 80)
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ProviderError(f"Failed to resolve endpoint: {url}", retryable=True) from exc
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    for address in addresses:
        reason = blocked_reason(address, allow_loopback)
        if reason is not None:
            raise ProviderError(f"function endpoint {url} is blocked: {host} is {reason}")
    if not addresses:
        raise ProviderError(f"Failed to resolve endpoint: {url}", retryable=True)
    return str(addresses[0])


def _query(args: Any) -> dict[str, str]:
    if not isinstance(args, dict):
        raise ProviderError("function arguments must be a JSON object for a GET endpoint")
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in args.items()}


async def call_function(
    client: httpx.AsyncClient,
    function: FunctionDef,
    arguments: str,
    *,
    allow_loopback: bool,
    timeout: float,
) -> str:
    """Call ``function.endpoint`` with ``arguments`` (JSON text); return the response text."""
    endpoint = function.endpoint
    if endpoint is None:
        raise ProviderError(f"function {function.name!r} has no endpoint (it is client-side)")
    try:
        args = json.loads(arguments) if arguments.strip() else {}
    except ValueError as exc:
        raise ProviderError(f"arguments for {function.name!r} are not valid JSON") from exc
    try:
        url = httpx.URL(endpoint.url)
    except httpx.InvalidURL as exc:
        raise ProviderError(f"function endpoint {endpoint.url!r} is not a valid URL") from exc
    method = (endpoint.method or "post").upper()
    if method not in _BODY_METHODS + _QUERY_METHODS:
        raise ProviderError(f"function {function.name!r}: unsupported method {method}")
    address = await vet_target(url, allow_loopback)
    request = client.build_request(
        method,
        url.copy_with(host=address),
        headers={**endpoint.headers, "Host": url.netloc.decode("ascii")},
        json=args if method in _BODY_METHODS else None,
        params=_query(args) if method in _QUERY_METHODS else None,
        timeout=timeout,
        extensions={"sni_hostname": url.host},
    )
    return await _send(client, request, function.name)


async def _send(client: httpx.AsyncClient, request: httpx.Request, name: str) -> str:
    try:
        response = await client.send(request, stream=True, follow_redirects=False)
        try:
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body.extend(chunk)
                if len(body) > MAX_RESPONSE_BYTES:
                    break
        finally:
            await response.aclose()
    except httpx.TimeoutException as exc:
        raise ProviderError(f"function {name!r} timed out", retryable=True) from exc
    except httpx.HTTPError as exc:
        raise ProviderError(f"function {name!r} failed: {exc}", retryable=True) from exc
    if response.status_code >= 400:
        raise ProviderError(f"function {name!r} answered HTTP {response.status_code}")
    return bytes(body[:MAX_RESPONSE_BYTES]).decode(response.encoding or "utf-8", "replace")
