"""Authentication of the upgrade request (DESIGN.md §4.13).

Accepted credentials, when API keys are configured:

* ``Authorization: Token <key>`` (API keys; what every Deepgram SDK sends),
* ``Authorization: Bearer <key>`` (short-lived tokens; here checked against the same keys),
* ``Sec-WebSocket-Protocol: token, <key>`` or ``bearer, <key>`` (browsers cannot set headers).

With no keys configured the server is open. Whatever the mode, when a client offers the ``token``
or ``bearer`` subprotocol the server echoes it, because browsers fail a handshake whose response
selects none of the offered subprotocols.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Sequence

from websockets.datastructures import Headers
from websockets.http11 import Response

SCHEMES = ("token", "bearer")


def offered_subprotocols(headers: Headers) -> list[str]:
    """Every ``Sec-WebSocket-Protocol`` entry, split on commas and stripped (raw, unvalidated)."""
    entries: list[str] = []
    for value in headers.get_all("Sec-WebSocket-Protocol"):
        entries.extend(part.strip() for part in value.split(",") if part.strip())
    return entries


def credential(headers: Headers) -> str | None:
    """The credential the client presents, from Authorization or the subprotocol list."""
    authorization = headers.get("Authorization")
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() in SCHEMES and value.strip():
            return value.strip()
    entries = offered_subprotocols(headers)
    for index, entry in enumerate(entries[:-1]):
        if entry.lower() in SCHEMES:
            return entries[index + 1]
    return None


def is_authorized(headers: Headers, keys: Sequence[str]) -> bool:
    """True when no keys are configured, or the presented credential equals one of them."""
    if not keys:
        return True
    presented = credential(headers)
    if presented is None:
        return False
    given = presented.encode()
    matched = False
    for key in keys:  # compare against every key, in constant time per key
        matched |= hmac.compare_digest(given, key.encode())
    return matched


def select_scheme(offered: Sequence[str]) -> str | None:
    """The subprotocol to echo: ``token`` or ``bearer`` if offered (as spelled), else None."""
    for entry in offered:
        if entry.lower() in SCHEMES:
            return entry
    return None


def unauthorized() -> Response:
    """HTTP 401 sent instead of the upgrade."""
    body = json.dumps(
        {
            "err_code": "INVALID_AUTH",
            "err_msg": "Invalid credentials. Send 'Authorization: Token <key>' or the "
            "'token' subprotocol followed by the key.",
        }
    ).encode()
    headers = Headers(
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("WWW-Authenticate", 'Token realm="harken"'),
            ("Connection", "close"),
        ]
    )
    return Response(401, "Unauthorized", headers, body)
