"""A voice client for end-to-end tests and benchmarks: it talks like a microphone and listens.

:class:`VoiceClient` connects to a harken server, sends ``Settings`` and then streams audio at
real time in 20 ms frames, forever: the queued speech (:meth:`VoiceClient.play`) when there is
some, digital silence otherwise, as a real client does. Every frame's send time is recorded, so
``sample_time(i)`` says when sample ``i`` of the outgoing stream went on the wire (the
"mouth" time of that sample). A receiver thread records every server message with its arrival
time (``time.perf_counter()``), JSON and binary alike, in :attr:`VoiceClient.received`.

Audio is given as int16 samples at the session's input rate; the client encodes each frame as
declared in ``Settings`` (``linear16``, ``mulaw`` or ``alaw``).

:func:`acoustic_span` finds where the sound of speech starts and ends inside a recording (by
its level), so latencies count from the real onset and the last speech sample rather than from
the edges of the file; :func:`speech_span` does the same with the Silero VAD (to trim recordings
before splicing them).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from harken.protocol.audio import alaw_encode, mulaw_encode
from harken.providers.base import Int16Array

FRAME_MS = 20


LONG_PARAGRAPH = (
    "Thank you for calling the city library, where we are always happy to help you find a "
    "good book. Our main building is open from nine in the morning until eight in the "
    "evening on weekdays, and from ten until five on Saturdays. On Sundays the main building "
    "is closed, but the branch by the river keeps its doors open from noon until four. You "
    "can borrow up to twenty items at a time, including books, films, music and magazines. "
    "Most items can be kept for three weeks, and you can renew them twice online or by phone. "
    "If you would like to reserve a meeting room, please ask at the front desk or use our "
    "website. Children's story time takes place every Wednesday morning at half past ten. "
    "We also run free computer classes for beginners on the first Monday of every month. "
    "Remember that your library card also gives you access to our digital collection of "
    "newspapers and audiobooks. Our reading room on the second floor is a quiet space, so "
    "please keep your phone on silent while you are there. Lost cards can be replaced at any "
    "desk for a small fee, and your loans stay safe on your account in the meantime. Our "
    "volunteers can help you search the catalogue, print documents or scan old photographs. "
    "Every summer we hold a reading challenge for children, with small prizes for every five "
    "books they finish. Please stay on the line if you would like to hear these details "
    "again, or simply tell me what you are looking for today."
)
"""An agent reply long enough (about a minute of speech) to be interrupted by a barge-in."""


@dataclass(frozen=True, slots=True)
class Received:
    """One server message: JSON (``message``) or binary agent audio (``audio``)."""

    t: float  # time.perf_counter() when it arrived
    message: dict[str, Any] | None = None
    audio: bytes | None = None

    @property
    def type(self) -> str:
        return "audio" if self.message is None else str(self.message.get("type"))


@dataclass(slots=True)
class Playback:
    """Audio queued with :meth:`VoiceClient.play`: where it sits in the outgoing stream."""

    start: int  # index of its first sample in the outgoing stream
    length: int
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def end(self) -> int:
        return self.start + self.length


class VoiceClient:
    """One conversation over one WebSocket, streamed at real time. Use as a context manager."""

    def __init__(
        self,
        url: str,
        settings: dict[str, Any],
        *,
        frame_ms: int = FRAME_MS,
        open_timeout: float = 10.0,
    ) -> None:
        given = settings.get("audio", {}).get("input", {})
        self.encoding: str = given.get("encoding", "linear16")
        self.rate: int = int(given.get("sample_rate", 24000))
        self.frame = self.rate * frame_ms // 1000
        self.frame_seconds = frame_ms / 1000
        self.settings = settings
        self.received: list[Received] = []
        self.request_id = ""
        self._cond = threading.Condition()
        self._tape: deque[Int16Array] = deque()
        self._tape_len = 0
        self._next_frame = 0
        self._sent_at: list[float] = []  # send time of each frame of the outgoing stream
        self._playbacks: list[Playback] = []
        self._stop = threading.Event()
        self._sending = True  # False once the streamer has stopped (closed, or failed)
        self._errors: list[BaseException] = []
        self.ws: ClientConnection = connect(
            url, open_timeout=open_timeout, close_timeout=2, legacy=True, max_size=None
        )
        self._receiver = threading.Thread(target=self._receive, daemon=True, name="voice-recv")
        self._streamer = threading.Thread(target=self._stream, daemon=True, name="voice-send")

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 10.0) -> VoiceClient:
        """Receive Welcome, send Settings, wait for SettingsApplied, start streaming."""
        self._receiver.start()
        welcome = self.wait_for("Welcome", timeout=timeout)
        self.request_id = str(welcome.message["request_id"] if welcome.message else "")
        self.send_json(self.settings)
        self.wait_for("SettingsApplied", timeout=timeout)
        self._streamer.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._streamer.is_alive():
            self._streamer.join(2)
        self.ws.close()
        if self._receiver.is_alive():
            self._receiver.join(2)

    def __enter__(self) -> VoiceClient:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ sending

    def send_json(self, message: dict[str, Any]) -> float:
        """Send a JSON message; return its send time."""
        sent = time.perf_counter()
        self.ws.send(json.dumps(message))
        return sent

    def play(self, samples: Int16Array) -> Playback:
        """Queue ``samples`` (int16 at the input rate) right after whatever is queued."""
        samples = np.asarray(samples, dtype=np.int16)
        with self._cond:
            start = self._next_frame * self.frame + self._tape_len
            playback = Playback(start, int(samples.size))
            self._tape.append(samples)
            self._tape_len += samples.size
            self._playbacks.append(playback)
        return playback

    def sample_time(self, index: int, timeout: float = 30.0) -> float:
        """When the frame holding sample ``index`` of the outgoing stream was sent."""
        frame = max(0, index) // self.frame
        with self._cond:
            sent = self._cond.wait_for(
                lambda: len(self._sent_at) > frame or not self._sending, timeout
            )
            if not sent or len(self._sent_at) <= frame:
                raise TimeoutError(f"sample {index} was not sent within {timeout} s")
            return self._sent_at[frame]

    def wait_played(self, playback: Playback, timeout: float = 60.0) -> float:
        """Block until all of ``playback`` is sent; return the send time of its last frame."""
        deadline = time.monotonic() + timeout
        while not playback.done.wait(0.1):
            if not self._sending:
                raise ConnectionError("the connection closed before the audio was sent")
            if time.monotonic() > deadline:
                raise TimeoutError("the audio was not sent in time")
        return self.sample_time(playback.end - 1)

    def _next_chunk(self) -> Int16Array:
        """The next frame of the outgoing stream: queued audio, padded with silence."""
        out = np.zeros(self.frame, dtype=np.int16)
        filled = 0
        while self._tape and filled < self.frame:
            head = self._tape[0]
            take = min(self.frame - filled, head.size)
            out[filled : filled + take] = head[:take]
            filled += take
            if take == head.size:
                self._tape.popleft()
            else:
                self._tape[0] = head[take:]
        self._tape_len -= filled
        return out

    def _encode(self, samples: Int16Array) -> bytes:
        if self.encoding == "linear16":
            return samples.astype("<i2").tobytes()
        if self.encoding == "mulaw":
            return mulaw_encode(samples).tobytes()
        if self.encoding == "alaw":
            return alaw_encode(samples).tobytes()
        raise ValueError(f"cannot stream {self.encoding}")

    def _stream(self) -> None:
        started = time.perf_counter()
        try:
            while not self._stop.is_set():
                with self._cond:  # frame k is taken: play() queues after it from now on
                    k = self._next_frame
                    chunk = self._next_chunk()
                    self._next_frame = k + 1
                delay = started + k * self.frame_seconds - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                sent = time.perf_counter()
                self.ws.send(self._encode(chunk))
                with self._cond:
                    self._sent_at.append(sent)
                    end = (k + 1) * self.frame
                    for playback in self._playbacks:
                        if playback.end <= end:
                            playback.done.set()
                    self._playbacks = [p for p in self._playbacks if not p.done.is_set()]
                    self._cond.notify_all()
        except ConnectionClosed:
            pass
        except BaseException as exc:  # surfaced by wait_for()
            self._errors.append(exc)
        finally:
            with self._cond:
                self._sending = False
                self._cond.notify_all()

    # ------------------------------------------------------------------ receiving

    def _receive(self) -> None:
        try:
            while True:
                frame = self.ws.recv()
                now = time.perf_counter()
                if isinstance(frame, str):
                    item = Received(now, message=json.loads(frame))
                else:
                    item = Received(now, audio=bytes(frame))
                with self._cond:
                    self.received.append(item)
                    self._cond.notify_all()
        except ConnectionClosed:
            pass
        except BaseException as exc:
            self._errors.append(exc)
        finally:
            with self._cond:
                self._stop.set()
                self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return not self._receiver.is_alive()

    def mark(self) -> int:
        """The index the next received message will have (for ``wait_for(after=...)``)."""
        with self._cond:
            return len(self.received)

    def wait_for(
        self,
        kind: str | Callable[[Received], bool],
        *,
        after: int = 0,
        timeout: float = 30.0,
    ) -> Received:
        """The first message at index ≥ ``after`` of type ``kind`` (or matching it)."""
        match = kind if callable(kind) else (lambda r: r.type == kind)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for item in self.received[after:]:
                    if match(item):
                        return item
                after = max(after, len(self.received))
                if self._errors:
                    raise RuntimeError("the voice client failed") from self._errors[0]
                left = deadline - time.monotonic()
                if left <= 0 or (self._stop.is_set() and self.closed):
                    seen = [r.type for r in self.received[-30:]]
                    raise TimeoutError(f"no {kind!r} within {timeout} s; last seen: {seen}")
                self._cond.wait(min(left, 0.25))

    def messages(self, after: int = 0) -> list[Received]:
        with self._cond:
            return list(self.received[after:])

    def transcript(self, after: int = 0) -> Iterator[tuple[str, str]]:
        """(role, content) of every ConversationText at index ≥ ``after``."""
        for item in self.messages(after):
            if item.type == "ConversationText" and item.message is not None:
                yield item.message["role"], item.message["content"]


# ----------------------------------------------------------------------------- speech spans


@dataclass(frozen=True, slots=True)
class Span:
    """Where speech is inside a 16 kHz recording, in samples (VAD frames of 32 ms)."""

    start: int  # first sample of the first speech frame
    end: int  # one past the last sample of the last speech frame


def acoustic_span(samples: Int16Array, rate: int = 16000, window_ms: int = 10) -> Span:
    """Where the sound of speech starts and ends: the first and last ``window_ms`` windows whose
    level is at least 15 dB above the recording's floor (its 10th percentile) and no more than
    40 dB below its loudest window.

    This is what a listener would mark as the first and last speech sample; it is independent of
    the VAD under test (whose speech probability rises late and decays late).
    """
    size = rate * window_ms // 1000
    count = samples.size // size
    windows = samples[: count * size].astype(np.float64).reshape(count, size)
    level = 20 * np.log10(np.maximum(np.sqrt((windows**2).mean(axis=1)), 1.0) / 32768)
    threshold = max(float(np.percentile(level, 10)) + 15, float(level.max()) - 40)
    loud = np.flatnonzero(level >= threshold)
    if not loud.size:
        raise ValueError("no speech in the recording")
    return Span(int(loud[0]) * size, (int(loud[-1]) + 1) * size)


def speech_span(samples: Int16Array, vad: Any, threshold: float = 0.5) -> Span:
    """The first and last 32 ms frames of a 16 kHz recording that ``vad`` scores as speech.

    ``vad`` is a :class:`harken.providers.vad.SileroVAD` (or anything with ``stream()``
    returning an object with ``probability(frame)``, ``frame_samples`` and ``close()``).
    """
    stream = vad.stream()
    try:
        size = stream.frame_samples
        count = samples.size // size
        loud = [
            i
            for i in range(count)
            if stream.probability(samples[i * size : (i + 1) * size]) >= threshold
        ]
    finally:
        stream.close()
    if not loud:
        raise ValueError("no speech in the recording")
    return Span(loud[0] * size, (loud[-1] + 1) * size)
