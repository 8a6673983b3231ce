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

The carrier echoes each mark when the caller has heard the audio before it; the session is told
(``Session.played``), so that on a barge-in its history keeps exactly the sentences whose marks
came back (to the sentence: the embedded TTS gives no word timings).
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

from harken.config import ServerConfig
from harken.phone import choose
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
class Player:
    """Paces the agent's audio to the carrier; marks sentences; clears on barge-in.

    Sentences are numbered 1, 2, … in the order the session announces them (its
    ConversationText), as the session numbers them; sentence *n*'s mark is ``"sn"``.
    ``on_heard(n)`` is called when the carrier echoes it: the caller heard sentences up to *n*.
    """

    send: Callable[[str], Awaitable[None]]
    outbound: Outbound
    on_heard: Callable[[int], None] = lambda n: None
    queue: deque[bytes | str] = field(default_factory=deque)  # 20 ms frames, or mark names
    partial: bytearray = field(default_factory=bytearray)
    heard: list[str] = field(default_factory=list)  # sentences whose marks came back, in order
    announced: int = 0
    marks_sent: int = 0
    clears: int = 0
    _current: tuple[int, str] | None = None  # the sentence whose audio is arriving, unmarked
    _pending: dict[str, tuple[int, str]] = field(default_factory=dict)  # marks not echoed
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
        self.announced += 1
        self._current = (self.announced, text)

    def end_sentence(self) -> None:
        if self.partial:  # the last bytes of the sentence, padded with μ-law silence
            self.queue.append(bytes(self.partial) + b"\xff" * (FRAME_BYTES - len(self.partial)))
            self.partial.clear()
        if self._current is not None:
            name = f"s{self._current[0]}"
            self._pending[name], self._current = self._current, None
            self.queue.append(name)
            self._wake.set()

    def echoed(self, name: str) -> None:
        """The carrier played everything before mark ``name`` (a voided one is ignored)."""
        sentence = self._pending.pop(name, None)
        if sentence is not None:
            self.heard.append(sentence[1])
            self.on_heard(sentence[0])

    async def clear(self) -> None:
        """The caller speaks: drop what was not sent, and have the carrier drop what it holds.

        The carrier echoes the marks it held at once (Twilio does): they are voided here, since
        their audio was dropped, not played."""
        self.queue.clear()
        self.partial.clear()
        self._pending.clear()
        self._current = None
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
                clears = self.clears
                await asyncio.sleep(self._playhead - now - LEAD)
                if clears != self.clears:
                    continue  # the caller spoke meanwhile: this frame was cleared too
            self._playhead += FRAME_SECONDS
            await self.send(self.outbound.media(item))


@dataclass(slots=True)
class Keypad:
    """Keys pressed close together are one entry ("1234", not four messages that each cut the
    reply to the one before): it is complete at ``#`` or ``timeout`` seconds after the last key.
    """

    message: str  # the user message an entry becomes; "{digit}" is replaced by the keys
    timeout: float
    keys: str = ""
    due: float | None = None  # when the entry in progress is complete

    def press(self, key: str, now: float) -> str | None:
        """A key: the entry's message if this key completes it."""
        if key == "#":
            return self.complete(self.keys or "#")
        self.keys += key
        self.due = now + self.timeout
        return None

    def complete(self, keys: str | None = None) -> str:
        entry = self.keys if keys is None else keys
        self.keys, self.due = "", None
        return json.dumps(
            {"type": "InjectUserMessage", "content": self.message.format(digit=entry)}
        )


class CarrierLink:
    """The pump's connection for one call (see the module docstring)."""

    def __init__(self, ws: HarkenConnection, carrier: Carrier, config: ServerConfig) -> None:
        self.ws, self.carrier = ws, carrier
        self.transport = ws.transport
        self._profiles, self._default = config.phone_profiles, config.phone_default_profile
        self.keypad = Keypad(config.phone_dtmf_message, config.phone_dtmf_timeout_ms / 1000)
        self.player: Player | None = None
        self.on_heard: Callable[[int], None] = lambda n: None  # the session's ``played``
        self._playing: asyncio.Task[None] | None = None
        self.profile = ""

    async def recv_frame(self) -> str | bytes | BadFrame:
        """The next frame for the session: Settings, audio or an injected message."""
        loop = asyncio.get_running_loop()
        while True:
            due = self.keypad.due
            if due is None:
                data = await self.ws.recv_frame()
            else:  # a keypad entry in progress completes when no key follows in time
                try:
                    data = await asyncio.wait_for(self.ws.recv_frame(), max(due - loop.time(), 0))
                except TimeoutError:
                    return self.keypad.complete()
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
            return self.keypad.press(event.digit, asyncio.get_running_loop().time())
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
        self.player = Player(self._send, Outbound(self.carrier, start.stream_id), self.on_heard)
        self.on_heard(0)  # the session cuts history at what the caller heard, from now on
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
