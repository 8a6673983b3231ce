"""Server-side function calls over HTTP (DESIGN.md §4.12), behind an SSRF guard.

``POST`` (and ``PUT``/``PATCH``) send the arguments as a JSON body; ``GET`` (and ``DELETE``) send
them as a query string (non-string values JSON-encoded). The function's headers are sent as
given; the call times out after ``timeout`` seconds; redirects are not followed.

The guard (:mod:`harken.providers.guard`) resolves the host first and refuses link-local,
metadata, unspecified and multicast targets, and loopback unless ``allow_loopback`` is set. The
request then goes to the vetted address (the Host header and TLS server name keep the original
host name), so a DNS answer that changes between the check and the connection cannot redirect it.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from harken.errors import ProviderError
from harken.protocol.settings import FunctionDef
from harken.providers.guard import blocked_reason, vet_target

MAX_RESPONSE_BYTES = 64 * 1024
_BODY_METHODS = ("POST", "PUT", "PATCH")
_QUERY_METHODS = ("GET", "DELETE")
__all__ = ["blocked_reason", "call_function", "vet_target"]


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
