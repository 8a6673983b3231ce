"""Phone carriers' media-stream WebSocket messages (Twilio, Telnyx), parsed and built. Pure.

A carrier opens a WebSocket to harken for each call and streams the caller's audio as base64
μ-law at 8 kHz; with a bidirectional stream, harken sends the agent's audio back the same way.
The two carriers speak nearly the same JSON with different key spellings:

============  =====================================  ======================================
message       Twilio                                 Telnyx
============  =====================================  ======================================
in            ``connected``, ``start``, ``media``,   the same, plus ``error``
              ``dtmf``, ``mark``, ``stop``
stream id     ``streamSid``                          ``stream_id``
start         ``start.callSid``, ``mediaFormat``     ``start.call_control_id``,
              ``{encoding, sampleRate}``,            ``media_format {encoding,
              ``customParameters`` (object)          sample_rate}``, ``custom_parameters``
                                                     (object, or a list of {name, value})
out           ``media`` / ``mark`` / ``clear``,      the same without the stream id
              each with ``streamSid``
============  =====================================  ======================================

:func:`parse` turns one text frame into one flat frozen event (or raises
:class:`CarrierMessageError`); :class:`Outbound` builds the frames harken sends. Unknown
events parse to :class:`Ignored`: carriers add events, and a call must not end over one.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any, Literal

Carrier = Literal["twilio", "telnyx"]
MULAW = ("audio/x-mulaw", "PCMU")  # the two carriers' names for G.711 μ-law


class CarrierMessageError(ValueError):
    """A frame that is not a carrier message harken can act on."""


@dataclass(frozen=True, slots=True)
class Connected:
    pass


@dataclass(frozen=True, slots=True)
class Start:
    stream_id: str
    call_id: str
    encoding: str  # as the carrier names it: "audio/x-mulaw", "PCMU", ...
    sample_rate: int
    parameters: dict[str, str] = field(default_factory=dict)  # the stream's custom parameters

    @property
    def mulaw_8k(self) -> bool:
        return self.encoding in MULAW and self.sample_rate == 8000


@dataclass(frozen=True, slots=True)
class Media:
    audio: bytes  # μ-law bytes, decoded from base64
    track: str = "inbound"


@dataclass(frozen=True, slots=True)
class Dtmf:
    digit: str


@dataclass(frozen=True, slots=True)
class Mark:
    name: str  # a mark harken sent, echoed when the caller has heard the audio before it


@dataclass(frozen=True, slots=True)
class Stop:
    pass


@dataclass(frozen=True, slots=True)
class CarrierError:
    """Telnyx's ``error`` event (the call may go on)."""

    description: str


@dataclass(frozen=True, slots=True)
class Ignored:
    event: str


CarrierEvent = Connected | Start | Media | Dtmf | Mark | Stop | CarrierError | Ignored


def parse(carrier: Carrier, text: str) -> CarrierEvent:
    """One text frame from ``carrier``. Raises :class:`CarrierMessageError`."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise CarrierMessageError(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise CarrierMessageError("not a JSON object")
    event = data.get("event")
    if not isinstance(event, str):
        raise CarrierMessageError("no event")
    if event == "connected":
        return Connected()
    if event == "start":
        return _start(carrier, data)
    if event == "media":
        media = _object(data, "media")
        track = media.get("track", "inbound")
        return Media(_base64(media.get("payload")), track if isinstance(track, str) else "inbound")
    if event == "dtmf":
        digit = _object(data, "dtmf").get("digit")
        if not isinstance(digit, str) or len(digit) != 1 or digit not in "0123456789*#ABCD":
            raise CarrierMessageError(f"dtmf: not a key: {digit!r}")
        return Dtmf(digit)
    if event == "mark":
        name = _object(data, "mark").get("name")
        if not isinstance(name, str):
            raise CarrierMessageError("mark: no name")
        return Mark(name)
    if event == "stop":
        return Stop()
    if event == "error":
        return CarrierError(json.dumps(data.get("payload", data))[:200])
    return Ignored(event[:40])


def _start(carrier: Carrier, data: dict[str, Any]) -> Start:
    start = _object(data, "start")
    if carrier == "twilio":
        stream = data.get("streamSid", start.get("streamSid"))
        call, fmt = start.get("callSid"), start.get("mediaFormat")
        params = start.get("customParameters")
        rate_key = "sampleRate"
    else:
        stream = data.get("stream_id", start.get("stream_id"))
        call, fmt = start.get("call_control_id"), start.get("media_format")
        params = start.get("custom_parameters")
        rate_key = "sample_rate"
    if not isinstance(stream, str) or not stream:
        raise CarrierMessageError("start: no stream id")
    fmt = fmt if isinstance(fmt, dict) else {}
    encoding = fmt.get("encoding", MULAW[0] if carrier == "twilio" else MULAW[1])
    rate = fmt.get(rate_key, 8000)
    try:
        sample_rate = int(rate)
    except (TypeError, ValueError):
        raise CarrierMessageError(f"start: bad sample rate {rate!r}") from None
    return Start(
        stream_id=stream,
        call_id=call if isinstance(call, str) else "",
        encoding=encoding if isinstance(encoding, str) else "",
        sample_rate=sample_rate,
        parameters=_parameters(params),
    )


def _parameters(raw: object) -> dict[str, str]:
    """Custom parameters: an object (Twilio, Telnyx) or a list of {name, value} (Telnyx)."""
    if isinstance(raw, dict):
        pairs = list(raw.items())
    elif isinstance(raw, list):
        pairs = [(p.get("name"), p.get("value")) for p in raw if isinstance(p, dict)]
    else:
        return {}
    return {k: v for k, v in pairs if isinstance(k, str) and isinstance(v, str)}


def _object(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise CarrierMessageError(f"{data['event']}: no {key} object")
    return value


def _base64(payload: object) -> bytes:
    if not isinstance(payload, str):
        raise CarrierMessageError("media: no payload")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CarrierMessageError(f"media: payload is not base64: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Outbound:
    """The frames harken sends on one call's stream."""

    carrier: Carrier
    stream_id: str

    def _frame(self, event: str, **body: Any) -> str:
        frame: dict[str, Any] = {"event": event}
        if self.carrier == "twilio":
            frame["streamSid"] = self.stream_id
        frame.update(body)
        return json.dumps(frame, separators=(",", ":"))

    def media(self, mulaw: bytes) -> str:
        return self._frame("media", media={"payload": base64.b64encode(mulaw).decode()})

    def mark(self, name: str) -> str:
        return self._frame("mark", mark={"name": name})

    def clear(self) -> str:
        return self._frame("clear")
