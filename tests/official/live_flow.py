"""Shared by the live official-SDK drivers that run Python (``dg7_flow.py``, under .venv-dg7).

:class:`Log` records every message the SDK hands over, with its arrival time, and the driver's
marks (where each part of the flow starts), so the pytest side can assert on one JSON report;
the JavaScript driver (``js/agent_flow.mjs``) prints a report of the same shape.
:class:`Microphone` streams linear16 audio in real time, 20 ms a frame, as a microphone does:
the queued speech when there is some, digital silence otherwise, or (with ``fill_silence``
off) nothing at all but a KeepAlive every few seconds.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

FRAME_SECONDS = 0.02
KEEP_ALIVE_SECONDS = 5.0


class Log:
    def __init__(self, sdk: str) -> None:
        self.sdk = sdk
        self.events: list[dict[str, Any]] = []
        self.marks: dict[str, int] = {}
        self.stamps: dict[str, float] = {}
        self.steps: dict[str, bool] = {}
        self._last_mark = 0
        self._closed = False
        self._start = time.monotonic()
        self._lock = threading.Lock()

    def now(self) -> float:
        return round(time.monotonic() - self._start, 4)

    def message(self, payload: dict[str, Any]) -> None:
        with self._lock:
            self.events.append({"t": self.now(), "type": str(payload.get("type")), "msg": payload})

    def audio(self, size: int) -> None:
        """Binary agent audio; consecutive frames are kept as one entry."""
        with self._lock:
            last = self.events[-1] if self.events else None
            if last is not None and last["type"] == "audio":
                last["bytes"] += size
                last["frames"] += 1
            else:
                self.events.append({"t": self.now(), "type": "audio", "bytes": size, "frames": 1})

    def closed(self) -> None:
        with self._lock:
            self._closed = True

    def is_closed(self) -> bool:
        with self._lock:
            return self._closed

    def mark(self, name: str) -> None:
        """Later waits look only at what arrives from here on."""
        with self._lock:
            self._last_mark = self.marks[name] = len(self.events)

    def stamp(self, name: str) -> None:
        with self._lock:
            self.stamps[name] = self.now()

    def find(self, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
        with self._lock:
            return next((e for e in self.events[self._last_mark :] if match(e)), None)

    def wait_for(
        self, match: Callable[[dict[str, Any]], bool], timeout: float
    ) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while True:
            found = self.find(match)
            if found is not None or time.monotonic() > deadline or self.is_closed():
                return found
            time.sleep(0.01)

    def wait(self, kind: str, timeout: float = 5.0) -> bool:
        return self.wait_for(lambda e: e["type"] == kind, timeout) is not None

    def wait_first(self, kinds: tuple[str, ...], timeout: float) -> bool:
        """Waits for any of ``kinds``; True if the first of them to come is ``kinds[0]``."""
        found = self.wait_for(lambda e: e["type"] in kinds, timeout)
        return found is not None and found["type"] == kinds[0]

    def wait_message(self, kind: str, timeout: float = 5.0) -> dict[str, Any] | None:
        found = self.wait_for(lambda e: e["type"] == kind, timeout)
        return None if found is None else found["msg"]

    def wait_user_text(self, timeout: float) -> bool:
        def user_text(event: dict[str, Any]) -> bool:
            return bool(event["type"] == "ConversationText" and event["msg"].get("role") == "user")

        return self.wait_for(user_text, timeout) is not None

    def report(self, **extra: Any) -> None:
        with self._lock:
            report = {
                "sdk": self.sdk,
                "steps": self.steps,
                "events": self.events,
                "marks": self.marks,
                "stamps": self.stamps,
                **extra,
            }
        print(json.dumps(report))


class Playback:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.sent = 0
        self.done = threading.Event()

    def wait(self, timeout: float) -> bool:
        return self.done.wait(timeout)


class Microphone:
    def __init__(
        self,
        send_audio: Callable[[bytes], None],
        send_keep_alive: Callable[[], None],
        rate: int = 16000,
    ) -> None:
        self.frame = int(rate * FRAME_SECONDS) * 2  # linear16 mono
        self._send_audio = send_audio
        self._send_keep_alive = send_keep_alive
        self._queue: list[Playback] = []
        self._silence = True
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.errors: list[str] = []

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def play(self, data: bytes) -> Playback:
        playback = Playback(data)
        with self._lock:
            self._queue.append(playback)
        return playback

    def fill_silence(self, on: bool) -> None:
        with self._lock:
            self._silence = on

    def _next_frame(self) -> tuple[bytes | None, Playback | None]:
        """The next frame to send, and the playback it finishes (if it is the last one)."""
        with self._lock:
            while self._queue:
                playback = self._queue[0]
                chunk = playback.data[playback.sent : playback.sent + self.frame]
                playback.sent += len(chunk)
                finished = playback.sent >= len(playback.data)
                if finished:
                    self._queue.pop(0)
                if chunk:
                    return chunk, playback if finished else None
                playback.done.set()
            return (b"\x00" * self.frame if self._silence else None), None

    def _run(self) -> None:
        start = time.monotonic()
        frames = 0
        last_keep_alive = start
        while not self._stop.is_set():
            frames += 1
            delay = start + frames * FRAME_SECONDS - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            frame, finished = self._next_frame()
            try:
                if frame is not None:
                    self._send_audio(frame)
                elif time.monotonic() - last_keep_alive > KEEP_ALIVE_SECONDS:
                    self._send_keep_alive()
                    last_keep_alive = time.monotonic()
            except Exception as exc:  # the socket closed under us: stop, and say so
                self.errors.append(f"{type(exc).__name__}: {exc}")
                return
            finally:
                if finished is not None:
                    finished.done.set()  # after the send: the caller acts on it at once
