"""A phone call's media stream as the pump's connection: carrier frames in, agent output out.

A carrier (Twilio, Telnyx) opens a WebSocket per call and speaks its own JSON
(:mod:`harken.protocol.carrier`). :class:`CarrierLink` stands where the agent protocol's
connection stands for :class:`~harken.server.connection.Pump`, so a call is an ordinary session
underneath (same engine, models, limits, metrics):

* in: ``start`` becomes the Settings of the profile the stream asks for
  (:func:`harken.phone.choose`; refused without its token), ``media`` the μ-law audio, ``dtmf``
  an ``InjectUserMessage`` ("The caller pressed 3 …", ``phone_dtmf_message``), ``stop`` the end;
* out: the agent's audio goes to a :class:`Player` that sends it in 20 ms ``media`` frames paced
  at real time with a small lead (the carrier buffers what it is sent; pacing keeps ``clear``
  cheap), a ``mark`` after every sentence, and ``clear`` the moment the caller starts speaking.
  The agent protocol's other messages have no place on a phone line and are dropped.

The carrier echoes each mark when the caller has heard the audio before it: :attr:`Player.heard`
keeps the sentences the caller heard in full.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

from harken.phone import PhoneProfile, choose
from harken.protocol.carrier import (
    Carrier,
    CarrierMessageError,
    Dtmf,
    Mark,
    Media,
    Outbound,
    Start,
    Stop,
    parse,
)
from harken.server.transport import BadFrame, HarkenConnection

log = logging.getLogger("harken.phone")

FRAME_BYTES: Final = 160  # 20 ms of μ-law at 8 kHz
FRAME_SECONDS: Final = 0.02
LEAD: Final = 0.1  # seconds of audio sent ahead of real time


@dataclass(slots=True)
class _Sentence:
    text: str
    mark: str = ""


@dataclass(slots=True)
class Player:
    """Paces the agent's audio to the carrier; marks sentences; clears on barge-in."""

    send: Callable[[str], Awaitable[None]]
    outbound: Outbound
    queue: deque[bytes | str] = field(default_factory=deque)  # 20 ms frames, or mark names
    partial: bytearray = field(default_factory=bytearray)
    sentences: list[_Sentence] = field(default_factory=list)
    heard: list[str] = field(default_factory=list)  # sentences whose marks came back, in order
    marks_sent: int = 0
    clears: int = 0
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _playhead: float = 0.0

    def audio(self, data: bytes) -> None:
        self.partial += data
        while len(self.partial) >= FRAME_BYTES:
            self.queue.append(bytes(self.partial[:FRAME_BYTES]))
            del self.partial[:FRAME_BYTES]
        self._wake.set()

    def sentence(self, text: str) -> None:
        """A new sentence starts: mark the end of the one before it."""
        self.end_sentence()
        self.sentences.append(_Sentence(text))

    def end_sentence(self) -> None:
        if self.partial:  # the last bytes of the sentence, padded with μ-law silence
            self.queue.append(bytes(self.partial) + b"\xff" * (FRAME_BYTES - len(self.partial)))
            self.partial.clear()
        if self.sentences and not self.sentences[-1].mark:
            name = f"s{len(self.sentences)}"
            self.sentences[-1].mark = name
            self.queue.append(name)
            self._wake.set()

    def echoed(self, name: str) -> None:
        for sentence in self.sentences:
            if sentence.mark == name and sentence.text not in self.heard[-1:]:
                self.heard.append(sentence.text)

    async def clear(self) -> None:
        """The caller speaks: drop what was not sent, and have the carrier drop what it holds."""
        self.queue.clear()
        self.partial.clear()
        self.sentences = [s for s in self.sentences if s.text in self.heard]
        self.clears += 1
        self._playhead = 0.0
        await self.send(self.outbound.clear())

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            item = self.queue.popleft()
            if isinstance(item, str):
                self.marks_sent += 1
                await self.send(self.outbound.mark(item))
                continue
            now = loop.time()
            self._playhead = max(self._playhead, now)
            if self._playhead - now > LEAD:
                await asyncio.sleep(self._playhead - now - LEAD)
            self._playhead += FRAME_SECONDS
            await self.send(self.outbound.media(item))


class CarrierLink:
    """The pump's connection for one call (see the module docstring)."""

    def __init__(
        self,
        ws: HarkenConnection,
        carrier: Carrier,
        profiles: tuple[PhoneProfile, ...],
        default: str,
        dtmf: str,
    ) -> None:
        self.ws, self.carrier = ws, carrier
        self.transport = ws.transport
        self._profiles, self._default, self._dtmf = profiles, default, dtmf
        self.player: Player | None = None
        self._playing: asyncio.Task[None] | None = None
        self.profile = ""

    async def recv_frame(self) -> str | bytes | BadFrame:
        """The next frame for the session: Settings, audio or an injected message."""
        while True:
            data = await self.ws.recv_frame()
            if not isinstance(data, str):
                continue  # carriers send text; anything else is not theirs to send
            try:
                event = parse(self.carrier, data)
            except CarrierMessageError as exc:
                log.warning("%s stream: %s", self.carrier, exc)
                continue
            frame = await self._frame(event)
            if frame is not None:
                return frame

    async def _frame(self, event: Any) -> str | bytes | None:
        if isinstance(event, Start):
            return await self._start(event)
        if self.player is None:
            return None  # nothing before start means anything
        if isinstance(event, Media):
            return event.audio if event.track in ("inbound", "inbound_track") else None
        if isinstance(event, Dtmf):
            content = self._dtmf.format(digit=event.digit)
            return json.dumps({"type": "InjectUserMessage", "content": content})
        if isinstance(event, Mark):
            self.player.echoed(event.name)
        elif isinstance(event, Stop):
            await self.ws.close(1000, "call ended")
        return None

    async def _start(self, start: Start) -> str | None:
        if self.player is not None:
            return None  # one call per stream
        chosen, why = choose(self._profiles, self._default, start.parameters)
        if chosen is None or not start.mulaw_8k:
            why = why or f"unsupported media format {start.encoding} at {start.sample_rate} Hz"
            log.warning("%s stream %s refused: %s", self.carrier, start.stream_id[:40], why)
            await self.ws.close(1008, why[:120])
            return None
        self.profile = chosen.name
        self.player = Player(self._send, Outbound(self.carrier, start.stream_id))
        self._playing = asyncio.create_task(self.player.run())
        log.info("%s call %s: profile %s", self.carrier, start.call_id[:40], chosen.name)
        return chosen.settings

    async def _send(self, text: str) -> None:
        await self.ws.send(text, text=True)

    async def send(self, payload: str | bytes, *, text: bool | None = None) -> None:
        """The session's output: audio to the player; a few messages steer it; none is sent."""
        player = self.player
        if player is None:
            return
        if not text:
            player.audio(payload if isinstance(payload, bytes) else payload.encode())
            return
        message = json.loads(payload)
        kind = message.get("type")
        if kind == "UserStartedSpeaking":
            await player.clear()
        elif kind == "ConversationText" and message.get("role") == "assistant":
            player.sentence(str(message.get("content", "")))
        elif kind == "AgentAudioDone":
            player.end_sentence()
        elif kind in ("Error", "Warning"):
            log.warning("%s call: %s %s", self.carrier, kind, message.get("description"))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.stop()
        await self.ws.close(code, reason)

    async def stop(self) -> None:
        """The session is over: stop playing (the server calls it however the call ended)."""
        if self._playing is not None:
            self._playing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._playing
            self._playing = None
