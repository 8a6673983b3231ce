"""A phone carrier's side of a media stream, for the tests (issue 12): what Twilio (or Telnyx)
does with a bidirectional stream, following their documented messages.

It sends ``connected`` and ``start`` (with custom parameters), then, like a carrier, a 20 ms
``media`` frame (base64 μ-law at 8 kHz) every 20 ms for as long as the call lasts: the caller's
words when :meth:`CarrierClient.stream` says some, silence otherwise. It plays the agent's
``media`` at real time (a playhead: each 160-byte frame is 20 ms, after whatever is still
playing), echoes each ``mark`` when the audio sent before it has been played, and on ``clear``
drops what it had not played yet and echoes the marks still pending at once (as Twilio
does). ``dtmf`` and ``stop`` are sent on request.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from harken.protocol.audio import mulaw_encode
from harken.providers.base import Int16Array

FRAME = 160  # bytes: 20 ms of μ-law at 8 kHz
SILENT = b"\xff" * FRAME  # μ-law silence


@dataclass
class Heard:
    t: float  # when it arrived (time.monotonic)
    event: str
    data: dict[str, Any] = field(default_factory=dict)


class CarrierClient:
    def __init__(
        self,
        url: str,
        parameters: dict[str, str] | None = None,
        *,
        carrier: str = "twilio",
        stream_id: str = "MZ0123456789abcdef0123456789abcdef",
    ) -> None:
        self.url, self.carrier, self.stream_id = url, carrier, stream_id
        self.parameters = parameters or {}
        self.ws: ClientConnection | None = None
        self.received: list[Heard] = []
        self.echoed: list[str] = []
        self.closed_code: int | None = None
        self.started_at = 0.0
        self._lock = threading.Lock()
        self._playhead = 0.0
        self._pending: list[tuple[float, str]] = []  # (play time, mark name)
        self._threads: list[threading.Thread] = []
        self._done = threading.Event()
        self._outgoing: deque[tuple[bytes, list[float] | None]] = deque()

    # ---------------------------------------------------------------- the carrier's messages

    def _id(self) -> dict[str, str]:
        return (
            {"streamSid": self.stream_id}
            if self.carrier == "twilio"
            else {"stream_id": self.stream_id}
        )

    def _send(self, message: dict[str, Any]) -> None:
        assert self.ws is not None
        with contextlib.suppress(ConnectionClosed):
            self.ws.send(json.dumps(message))

    def start(self) -> CarrierClient:
        self.ws = connect(self.url, max_size=None, close_timeout=2, legacy=True)
        self._send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        if self.carrier == "twilio":
            start = {
                "accountSid": "AC0123",
                "streamSid": self.stream_id,
                "callSid": "CA0123",
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                "customParameters": self.parameters,
            }
        else:
            start = {
                "call_control_id": "v3:0123",
                "media_format": {"encoding": "PCMU", "sample_rate": 8000, "channels": 1},
                "custom_parameters": [{"name": k, "value": v} for k, v in self.parameters.items()],
            }
        self.started_at = time.monotonic()
        self._send({"event": "start", "sequenceNumber": "1", "start": start, **self._id()})
        for target in (self._receive, self._play, self._line):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stream(self, samples8k: Int16Array) -> float:
        """Say this (8 kHz int16) on the line, at real time; returns when its first frame went
        out, once its last one has."""
        data = mulaw_encode(samples8k).tobytes()
        frames = [data[i : i + FRAME] for i in range(0, len(data), FRAME)]
        if not frames:
            return time.monotonic()
        first: list[float] = []
        last: list[float] = []
        with self._lock:
            for i, frame in enumerate(frames):
                mark = first if i == 0 else last if i == len(frames) - 1 else None
                self._outgoing.append((frame, mark))
        while not (last or (len(frames) == 1 and first)):
            if self._done.is_set():
                break
            time.sleep(0.005)
        return first[0] if first else time.monotonic()

    def silence(self, seconds: float) -> None:
        """The caller says nothing for a while (the line carries silence meanwhile)."""
        time.sleep(seconds)

    def _line(self) -> None:
        """The line: a 20 ms media frame every 20 ms, the caller's words or silence, as a
        carrier sends for as long as the call lasts."""
        due = time.monotonic()
        chunk = 0
        while not self._done.is_set():
            with self._lock:
                frame, mark = self._outgoing.popleft() if self._outgoing else (SILENT, None)
            chunk += 1
            payload = base64.b64encode(frame).decode()
            media = {"track": "inbound", "chunk": str(chunk), "timestamp": str(chunk * 20)}
            self._send({"event": "media", "media": {**media, "payload": payload}, **self._id()})
            if mark is not None:
                mark.append(time.monotonic())
            due += 0.02
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                due = time.monotonic()  # fell behind (a loaded machine): no burst to catch up

    def dtmf(self, digit: str) -> None:
        self._send(
            {"event": "dtmf", "dtmf": {"track": "inbound_track", "digit": digit}, **self._id()}
        )

    def stop(self) -> None:
        self._send(
            {"event": "stop", "stop": {"accountSid": "AC0123", "callSid": "CA0123"}, **self._id()}
        )

    def close(self) -> None:
        self._done.set()
        if self.ws is not None:
            self.ws.close()
        for thread in self._threads:
            thread.join(5)

    def __enter__(self) -> CarrierClient:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- playing what comes back

    def _receive(self) -> None:
        assert self.ws is not None
        try:
            for text in self.ws:
                now = time.monotonic()
                message = json.loads(text)
                event = message.get("event", "?")
                with self._lock:
                    self.received.append(Heard(now, event, message))
                    if event == "media":
                        self._playhead = (
                            max(self._playhead, now)
                            + len(base64.b64decode(message["media"]["payload"])) / 8000
                        )
                    elif event == "mark":
                        self._pending.append((max(self._playhead, now), message["mark"]["name"]))
                    elif event == "clear":
                        self._playhead = now
                        marks, self._pending = self._pending, []
                        for _, name in marks:  # Twilio returns the marks it held at once
                            self._echo(name)
        except ConnectionClosed:
            pass
        self.closed_code = self.ws.close_code or 1006
        self._done.set()

    def _echo(self, name: str) -> None:
        self.echoed.append(name)
        self._send({"event": "mark", "mark": {"name": name}, **self._id()})

    def _play(self) -> None:
        while not self._done.wait(0.005):
            now = time.monotonic()
            with self._lock:
                due = [m for m in self._pending if m[0] <= now]
                self._pending = [m for m in self._pending if m[0] > now]
                for _, name in due:
                    self._echo(name)

    # ---------------------------------------------------------------- looking

    def events(self, kind: str) -> list[Heard]:
        with self._lock:
            return [h for h in self.received if h.event == kind]

    def wait_for(self, kind: str, after: float = 0.0, timeout: float = 20.0) -> Heard:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [h for h in self.events(kind) if h.t >= after]
            if found:
                return found[0]
            if self._done.is_set() and self.closed_code is not None:
                break
            time.sleep(0.005)
        raise AssertionError(
            f"no {kind} after {after:.2f}: {[h.event for h in self.received][-20:]}"
        )

    def wait_quiet(self, seconds: float = 1.0, timeout: float = 30.0) -> None:
        """Until no media arrived for ``seconds``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            media = self.events("media")
            if media and time.monotonic() - media[-1].t >= seconds:
                return
            time.sleep(0.05)
