"""Authentication of the upgrade request (DESIGN.md §4.13).

Accepted credentials, when API keys are configured:

* ``Authorization: Token <key>`` (API keys; what every Deepgram SDK sends),
* ``Authorization: Bearer <key>`` (short-lived tokens; here checked against the same keys),
* ``Sec-WebSocket-Protocol: token, <key>`` or ``bearer, <key>`` (browsers cannot set headers).

The scheme word is read in any case (``Token``, ``token``, ``BEARER``: deepgram-sdk 7.x sends
``bearer`` in lower case). The subprotocol list is read as name/value pairs, so the browser form
of ``@deepgram/sdk`` 5.x, ``token, <key>, x-deepgram-session-id, <uuid>``, gives both the key and
the client's session id (PROTOCOL.md §10).

With no keys configured the server is open. Whatever the mode, when a client offers the ``token``
or ``bearer`` subprotocol the server echoes it (as offered), because browsers fail a handshake
whose response selects none of the offered subprotocols.

:func:`client_session_id` is the ``x-deepgram-session-id`` the 7.x/5.x SDKs send (header or
subprotocol pair), made safe to log: printable ASCII without spaces, at most
``SESSION_ID_LIMIT`` characters.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Sequence

from websockets.datastructures import Headers
from websockets.http11 import Response

SCHEMES = ("token", "bearer")
SESSION_ID = "x-deepgram-session-id"
SESSION_ID_LIMIT = 64


def offered_subprotocols(headers: Headers) -> list[str]:
    """Every ``Sec-WebSocket-Protocol`` entry, split on commas and stripped (raw, unvalidated)."""
    entries: list[str] = []
    for value in headers.get_all("Sec-WebSocket-Protocol"):
        entries.extend(part.strip() for part in value.split(",") if part.strip())
    return entries


def subprotocol_pairs(entries: Sequence[str]) -> list[tuple[str, str]]:
    """``(name as offered, value)`` for each known name followed by a value, in order.

    A known name (``token``, ``bearer``, the session-id name, in any case) takes the entry after
    it as its value; any other entry stands alone. So a key that happens to read ``token`` is
    never taken for a name.
    """
    found: list[tuple[str, str]] = []
    index = 0
    while index < len(entries) - 1:
        name = entries[index]
        if name.lower() in (*SCHEMES, SESSION_ID):
            found.append((name, entries[index + 1]))
            index += 2
        else:
            index += 1
    return found


def _first(entries: Sequence[str], names: Sequence[str]) -> tuple[str, str] | None:
    """The first ``(name, value)`` pair whose name is one of ``names`` (lower case)."""
    pairs = subprotocol_pairs(entries)
    return next(((n, v) for n, v in pairs if n.lower() in names), None)


def credential(headers: Headers) -> str | None:
    """The credential the client presents, from Authorization or the subprotocol list."""
    for authorization in headers.get_all("Authorization"):
        parts = authorization.split(None, 1)
        if len(parts) == 2 and parts[0].lower() in SCHEMES:
            return parts[1].strip()
    pair = _first(offered_subprotocols(headers), SCHEMES)
    return None if pair is None else pair[1]


def client_session_id(headers: Headers) -> str | None:
    """The client's ``x-deepgram-session-id`` (header first, else the subprotocol pair), kept to
    printable ASCII without spaces and ``SESSION_ID_LIMIT`` characters; None when absent or
    nothing is left."""
    given = headers.get_all(SESSION_ID)
    if given:
        raw = given[0]
    else:
        pair = _first(offered_subprotocols(headers), (SESSION_ID,))
        raw = "" if pair is None else pair[1]
    kept = "".join(c for c in raw if "!" <= c <= "~")[:SESSION_ID_LIMIT]
    return kept or None


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
    """The subprotocol to echo, as offered: the scheme that carried the credential, else any
    ``token``/``bearer`` entry (a browser fails the handshake unless one is echoed), else None."""
    pair = _first(offered, SCHEMES)
    if pair is not None:
        return pair[0]
    return next((entry for entry in offered if entry.lower() in SCHEMES), None)


def refusal(headers: Headers, keys: Sequence[str]) -> Response | None:
    """The answer to a request whose credentials do not pass, else None: 400 for more than one
    ``Authorization`` header (which one counts would be a guess, and proxies disagree), 401
    for a missing or wrong credential when ``keys`` are configured."""
    if len(headers.get_all("Authorization")) > 1:
        return _auth_error(400, "Bad Request", "Send one Authorization header, not several.")
    if not is_authorized(headers, keys):
        return unauthorized()
    return None


def _auth_error(status: int, reason: str, message: str) -> Response:
    body = json.dumps({"err_code": "INVALID_AUTH", "err_msg": message}).encode()
    headers = Headers(
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
        ]
    )
    return Response(status, reason, headers, body)


def unauthorized() -> Response:
    """HTTP 401 sent instead of the upgrade."""
    response = _auth_error(
        401,
        "Unauthorized",
        "Invalid credentials. Send 'Authorization: Token <key>' or the 'token' subprotocol "
        "followed by the key.",
    )
    response.headers["WWW-Authenticate"] = 'Token realm="harken"'
    return response
