"""Twilio's voice webhook: ``POST {twilio_path}/voice`` answers a call with TwiML that connects
it to harken's media stream on ``twilio_path``. Pure: a request's parts in, an :class:`Answer`.

In the Twilio console, a phone number's "A call comes in" webhook (HTTP POST) is::

    https://agent.example.com/twilio/voice?agent=support

Twilio POSTs the call's form (``CallSid``, ``From``, ``To``, ``AccountSid``, ...) and gets::

    <?xml version="1.0" encoding="UTF-8"?>
    <Response><Connect><Stream url="wss://agent.example.com/twilio">
      <Parameter name="agent" value="support"/><Parameter name="token" value="..."/>
      <Parameter name="from" value="+1555..."/><Parameter name="to" value="+1555..."/>
      <Parameter name="call_sid" value="CA..."/>
    </Stream></Connect></Response>

The profile is the URL's ``agent`` query parameter, else the default one (as for a stream). Its
token rides in the TwiML: the webhook is authenticated. With ``twilio_auth_token`` set, the
request's ``X-Twilio-Signature`` must be what Twilio's ``RequestValidator`` computes: base64 of
the HMAC-SHA1, keyed with the auth token, of the URL Twilio requested followed by every POST
parameter's name and value, sorted by name (a repeated name: each distinct value, sorted); the
URL with or without its default port (:443, :80); HMAC-SHA256 when the request's
``X-Twilio-Webhooks-Signature-Settings`` says ``algorithm=HMAC_SHA256``. Without the token the
webhook is open (the server warns at start-up).

The URL is ``public_url`` followed by the request's path and query. Without ``public_url`` it
is rebuilt from the request's ``Host`` and ``X-Forwarded-Proto`` (``https``, else ``http``):
behind a proxy that changes either, set ``public_url``, since the signature covers the exact URL
Twilio was given. The stream's URL is the same origin in ``ws(s)://`` with ``twilio_path``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qs, parse_qsl, urlparse, urlsplit

from harken.config import ServerConfig
from harken.phone import PhoneProfile, named

log = logging.getLogger("harken.server")

SIGNATURE_HEADER: Final = "X-Twilio-Signature"
SETTINGS_HEADER: Final = "X-Twilio-Webhooks-Signature-Settings"
HASHES: Final = {"HMAC_SHA1": hashlib.sha1, "HMAC_SHA256": hashlib.sha256}
MAX_FIELDS: Final = 200  # a call's webhook has about 20
PASSED_ON: Final = (("from", "From"), ("to", "To"), ("call_sid", "CallSid"))  # stream <- form
TWIML: Final = "text/xml"
PLAIN: Final = "text/plain; charset=utf-8"

Form = Sequence[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    content_type: str = PLAIN
    headers: tuple[tuple[str, str], ...] = ()


def plain(status: int, text: str) -> Answer:
    return Answer(status, (text + "\n").encode())


# ------------------------------------------------------------------------------- signature


def signature(token: str, url: str, form: Form, algorithm: str = "HMAC_SHA1") -> str:
    """``X-Twilio-Signature`` for a request to ``url`` with POST parameters ``form``."""
    values: dict[str, set[str]] = {}
    for name, value in form:
        values.setdefault(name, set()).add(value)
    text = url + "".join(name + value for name in sorted(values) for value in sorted(values[name]))
    digest = hmac.new(token.encode(), text.encode(), HASHES[algorithm]).digest()
    return base64.b64encode(digest).decode()


def port_variants(url: str) -> tuple[str, str]:
    """``url`` with its default port (:443 for https, else :80) and without any port, as
    Twilio's validator writes them (its signatures have used either)."""
    parsed = urlparse(url)
    if parsed.port:
        return parsed.geturl(), parsed._replace(netloc=parsed.netloc.split(":")[0]).geturl()
    port = 443 if parsed.scheme == "https" else 80
    return parsed._replace(netloc=f"{parsed.netloc}:{port}").geturl(), parsed.geturl()


def algorithm_of(settings: str) -> str:
    """The algorithm ``X-Twilio-Webhooks-Signature-Settings`` names (none: HMAC_SHA1)."""
    for part in settings.split(","):
        name, sep, value = part.partition("=")
        if sep and name.strip() == "algorithm" and value.strip():
            return value.strip().upper()
    return "HMAC_SHA1"


def is_valid(token: str, url: str, form: Form, given: str, algorithm: str = "HMAC_SHA1") -> bool:
    """True when ``given`` is Twilio's signature of the request (constant-time comparison)."""
    if algorithm not in HASHES or not given:
        return False
    try:
        variants = port_variants(url)
    except ValueError:  # a port that is not a number (from the Host header)
        variants = (url, url)
    expected = given.encode()
    return any(
        hmac.compare_digest(signature(token, u, form, algorithm).encode(), expected)
        for u in variants
    )


# ------------------------------------------------------------------------------- URLs, TwiML


def origin_of(public_url: str, headers: Mapping[str, str]) -> str:
    """``scheme://host[:port]`` Twilio reached: ``public_url``, else the request's ``Host`` and
    ``X-Forwarded-Proto``; "" without either."""
    if public_url:
        return public_url.rstrip("/")
    host = header(headers, "Host")
    if not host:
        return ""
    proto = header(headers, "X-Forwarded-Proto").split(",")[0].strip().lower()
    return f"{'https' if proto == 'https' else 'http'}://{host}"


def stream_url(origin: str, path: str) -> str:
    """The media stream's URL on the same origin: ``https`` → ``wss``, ``http`` → ``ws``."""
    scheme, _, rest = origin.partition("://")
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}{path}"


def twiml(url: str, parameters: Sequence[tuple[str, str]]) -> bytes:
    """``<Response><Connect><Stream url=...>`` with a ``<Parameter>`` for each pair."""
    response = ET.Element("Response")
    stream = ET.SubElement(ET.SubElement(response, "Connect"), "Stream", url=url)
    for name, value in parameters:
        ET.SubElement(stream, "Parameter", name=name, value=value)
    body = ET.tostring(response, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>{body}'.encode()


def header(headers: Mapping[str, str], name: str) -> str:
    """A header's value; "" when absent or repeated."""
    try:
        return headers.get(name) or ""
    except LookupError:  # repeated: websockets' MultipleValuesError
        return ""


# ------------------------------------------------------------------------------- the route


class VoiceWebhook:
    """Answers ``POST {twilio_path}/voice`` from the server config."""

    def __init__(self, config: ServerConfig) -> None:
        self.stream_path = config.twilio_path.rstrip("/")
        self.path = self.stream_path + "/voice"
        self._public_url = config.public_url
        self._token = config.twilio_auth_token
        self._profiles = config.phone_profiles
        self._default = config.phone_default_profile

    def answer(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Answer:
        """The response to ``method target`` (path and query as sent) with its form ``body``."""
        if method != "POST":
            return Answer(405, b"Method Not Allowed: POST only\n", PLAIN, (("Allow", "POST"),))
        origin = origin_of(self._public_url, headers)
        if not origin:
            return plain(400, "Bad Request: no Host header (or set public_url)")
        try:
            form = parse_qsl(
                body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=MAX_FIELDS
            )
        except ValueError:
            return plain(400, "Bad Request: too many form fields")
        refused = self._refused(origin + target, form, headers)
        if refused:
            log.warning("twilio voice webhook refused (403): %s", refused)
            return plain(403, "Forbidden: the request is not signed by Twilio")
        agent = parse_qs(urlsplit(target).query).get("agent", [None])[0]
        chosen, name = named(self._profiles, self._default, agent)
        if chosen is None:
            return plain(404, f"Not Found: no phone profile named {name[:40]!r}")
        fields = dict(form)
        log.info("twilio call %s: profile %s", fields.get("CallSid", "?")[:64], chosen.name)
        parameters = _parameters(chosen, fields)
        return Answer(200, twiml(stream_url(origin, self.stream_path), parameters), TWIML)

    def _refused(self, url: str, form: Form, headers: Mapping[str, str]) -> str:
        """Why the request's signature is refused ("" when it is valid, or no token is set)."""
        if not self._token:
            return ""
        given = header(headers, SIGNATURE_HEADER)
        if not given:
            return f"no (single) {SIGNATURE_HEADER} header for {url}"
        algorithm = algorithm_of(header(headers, SETTINGS_HEADER))
        if is_valid(self._token, url, form, given, algorithm):
            return ""
        return (
            f"{SIGNATURE_HEADER} does not match {url} ({algorithm}); is twilio_auth_token the "
            "account's auth token, and public_url the origin Twilio's webhook URL names?"
        )


def _parameters(chosen: PhoneProfile, fields: Mapping[str, str]) -> list[tuple[str, str]]:
    """The stream's custom parameters: the profile, its token, and who calls whom."""
    parameters = [("agent", chosen.name)]
    if chosen.token:
        parameters.append(("token", chosen.token))
    parameters.extend((key, fields[field]) for key, field in PASSED_ON if fields.get(field))
    return parameters
