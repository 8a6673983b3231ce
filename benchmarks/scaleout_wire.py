"""The client side of benchmarks/scaleout.py: a raw asyncio WebSocket client and a real-time
audio streamer, cheap enough that 50+ sessions at 20 ms frames cost the 2-core machine little
next to the servers they measure (``websockets`` clients would cost several times more CPU).

A :class:`Session` does the handshake itself (so a refusal's HTTP status and body are seen),
parses the server's frames, time-stamps every text message, counts audio bytes, answers pings
and close frames, and records the close code it got (1006 when the socket went without one).
Client frames are masked with one fixed key, pre-masked once for the frames that repeat.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ws_frames import client_frame as frame
from ws_frames import split_frames

GA = "/v1/agent/converse"
FRAME_SECONDS = 0.020
SLOTS = 20  # phases within one 20 ms period
ABNORMAL = 1006  # the socket went without a close frame
SETTINGS: dict[str, Any] = {
    "type": "Settings",
    "experimental": True,  # LatencyReport
    "audio": {
        "input": {"encoding": "linear16", "sample_rate": 16000},
        "output": {"encoding": "linear16", "sample_rate": 24000, "container": "none"},
    },
    "agent": {
        "listen": {"provider": {"type": "deepgram", "model": "nova-3"}},
        "think": {"provider": {"type": "open_ai", "model": "gpt-4o-mini"}, "prompt": "Bench."},
        "speak": {"provider": {"type": "deepgram", "model": "aura-2-thalia-en"}},
    },
}


# ------------------------------------------------------------------------------- frames


def text_frame(message: dict[str, Any]) -> bytes:
    return frame(0x1, json.dumps(message).encode())


SILENCE = frame(0x2, bytes(640))  # 20 ms of 16 kHz linear16
PROBE = text_frame({"type": "UpdatePrompt", "prompt": "Bench."})


class Refused(ConnectionError):
    """The handshake got an HTTP answer other than 101."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:120]}")
        self.status, self.body = status, body


def request_bytes(port: int, path: str, headers: dict[str, str]) -> bytes:
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Version: 13",
        f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# ------------------------------------------------------------------------------- session


@dataclass
class Probes:
    """UpdatePrompt -> PromptUpdated round trips: (sent at, seconds) per answered probe."""

    sent: deque[float] = field(default_factory=deque)
    rtts: list[tuple[float, float]] = field(default_factory=list)

    def answered(self, now: float) -> None:
        if self.sent:
            sent = self.sent.popleft()
            self.rtts.append((sent, now - sent))

    def oldest_unanswered(self, now: float) -> float:
        return now - self.sent[0] if self.sent else 0.0


class Session(asyncio.Protocol):
    """One agent WebSocket session; every text message is kept as (monotonic time, message)."""

    def __init__(self, port: int, path: str, headers: dict[str, str]) -> None:
        loop = asyncio.get_running_loop()
        self.request = request_bytes(port, path, headers)
        self.opened: asyncio.Future[None] = loop.create_future()
        self.lost = asyncio.Event()
        self.ended = asyncio.Event()  # a close frame came, or the socket went
        self.changed = asyncio.Event()
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded = False
        self.messages: list[tuple[float, dict[str, Any]]] = []
        self.probes = Probes()
        self.audio_bytes = 0
        self.frames_sent = 0
        self.close_code: int | None = None
        self.close_reason = ""
        self.closed_at: float | None = None
        self.closing = False  # a close frame was sent (ours, or the answer to the server's)
        self.we_closed = False  # the benchmark ended the session itself
        self.request_id = ""
        self.tag = ""  # the benchmark's own label, and its own time marks
        self.marks: dict[str, float] = {}

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.close_code is None:
            self.close_code, self.closed_at = ABNORMAL, time.monotonic()
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed during the handshake ({exc})"))
        self.lost.set()
        self.ended.set()
        self.changed.set()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded and not self._handshake():
            return
        self._frames()

    # -- parsing

    def _handshake(self) -> bool:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self.buffer[:end]).decode(errors="replace")
        status = int(head.split(" ", 2)[1]) if head.startswith("HTTP/") else 0
        if status != 101:
            if not self.opened.done():
                body = bytes(self.buffer[end + 4 :]).decode(errors="replace")
                self.opened.set_exception(Refused(status, body))
            assert self.transport is not None
            self.transport.close()
            return False
        del self.buffer[: end + 4]
        self.upgraded = True
        self.opened.set_result(None)
        return True

    def _frames(self) -> None:
        for opcode, payload in split_frames(self.buffer):
            self._frame(opcode, payload)

    def _frame(self, opcode: int, payload: bytes) -> None:
        if opcode == 0x2 or opcode == 0x0:
            self.audio_bytes += len(payload)
        elif opcode == 0x1:
            self._text(json.loads(payload))
        elif opcode == 0x8:
            self._closed_by_server(payload)
        elif opcode == 0x9:
            self._write(frame(0xA, payload))

    def _text(self, message: dict[str, Any]) -> None:
        now = time.monotonic()
        kind = message.get("type")
        if kind == "PromptUpdated":
            self.probes.answered(now)
            return
        if kind == "Welcome":
            self.request_id = str(message.get("request_id") or message.get("session_id") or "")
        self.messages.append((now, message))
        self.changed.set()

    def _closed_by_server(self, payload: bytes) -> None:
        code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
        self.close_code, self.closed_at = code, time.monotonic()
        self.close_reason = payload[2:].decode(errors="replace")
        if not self.closing:
            self.closing = True
            self._write(frame(0x8, payload[:2]))
        loop = asyncio.get_running_loop()
        loop.call_later(2.0, self.abort)  # the server closes the TCP connection first
        self.ended.set()
        self.changed.set()

    # -- sending

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    @property
    def live(self) -> bool:
        return self.upgraded and not self.closing and self.close_code is None

    def send(self, message: dict[str, Any]) -> None:
        self._write(text_frame(message))

    def audio(self, probe_every: int) -> None:
        """One 20 ms frame; then, every ``probe_every`` frames, a probe (0: none)."""
        self._write(SILENCE)
        self.frames_sent += 1
        if probe_every and self.frames_sent % probe_every == 0:
            self.probes.sent.append(time.monotonic())
            self._write(PROBE)

    async def close(self, timeout: float = 2.0) -> None:
        """A normal close (1000), waiting a bounded time for the server's answer."""
        if self.close_code is None:
            self.we_closed = True
        if self.live:
            self.closing = True
            self._write(frame(0x8, (1000).to_bytes(2, "big")))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.lost.wait()
        self.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- reading what came

    def types(self) -> list[str]:
        return [m.get("type", "") for _, m in self.messages]

    def first(self, kind: str, since: float = 0.0) -> tuple[float, dict[str, Any]] | None:
        for at, message in self.messages:
            if at >= since and message.get("type") == kind:
                return at, message
        return None

    def error_codes(self) -> list[str]:
        return [str(m.get("code")) for _, m in self.messages if m.get("type") == "Error"]

    @property
    def ended_by_server(self) -> bool:
        """Closed (or cut) without the benchmark asking for it."""
        return self.close_code is not None and not self.we_closed

    @property
    def going_away(self) -> bool:
        """Told SERVER_GOING_AWAY and closed with 1001: the graceful end of a drain."""
        return "SERVER_GOING_AWAY" in self.error_codes() and self.close_code == 1001

    async def wait_for(self, kind: str, timeout: float, since: float = 0.0) -> dict[str, Any]:
        """The first ``kind`` message at or after ``since``; TimeoutError if none comes, or
        ConnectionError if the session ends first."""
        async with asyncio.timeout(timeout):
            while True:
                self.changed.clear()
                found = self.first(kind, since)
                if found is not None:
                    return found[1]
                if self.lost.is_set() or self.close_code is not None:
                    raise ConnectionError(f"closed ({self.close_code}) before {kind}")
                await self.changed.wait()


async def connect(
    port: int,
    *,
    path: str = GA,
    headers: dict[str, str] | None = None,
    rcvbuf: int = 0,
    timeout: float = 5.0,
) -> Session:
    """The handshake only (Refused on a non-101 answer)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    session: Session | None = None
    try:
        async with asyncio.timeout(timeout):
            await loop.sock_connect(sock, ("127.0.0.1", port))
            _, session = await loop.create_connection(
                lambda: Session(port, path, headers or {}), sock=sock
            )
            await session.opened
    except BaseException:
        if session is not None:
            session.abort()
        else:
            sock.close()
        raise
    return session


async def start(
    port: int,
    settings: dict[str, Any] | None = None,
    *,
    timeout: float = 5.0,
    **options: Any,
) -> Session:
    """Handshake, Settings, SettingsApplied; the session is aborted if any step fails."""
    session = await connect(port, timeout=timeout, **options)
    try:
        session.send(settings or SETTINGS)
        await session.wait_for("SettingsApplied", timeout)
    except BaseException:
        session.abort()
        raise
    return session


# ------------------------------------------------------------------------------- streamer


class Streamer:
    """Sends each member a 20 ms frame of silence at real time (phases spread over SLOTS per
    period) and, every ``probe_every`` frames, an UpdatePrompt probe. Members that closed are
    skipped; ``late`` holds how late each slot's sends were."""

    def __init__(self, probe_every: int = 10) -> None:
        self.probe_every = probe_every
        self.slots: list[list[Session]] = [[] for _ in range(SLOTS)]
        self.late: list[float] = []
        self._added = 0

    def add(self, session: Session) -> None:
        self.slots[self._added % SLOTS].append(session)
        self._added += 1

    def remove(self, session: Session) -> None:
        for slot in self.slots:
            if session in slot:
                slot.remove(session)

    async def run(self, stop: asyncio.Event, limit: float) -> None:
        """Until ``stop`` is set, at most ``limit`` seconds."""
        t0 = time.monotonic()
        k = 0
        while not stop.is_set() and time.monotonic() - t0 < limit:
            for index, slot in enumerate(self.slots):
                due = t0 + k * FRAME_SECONDS + index * FRAME_SECONDS / SLOTS
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                self.late.append(time.monotonic() - due)
                for session in slot:
                    if session.live:
                        session.audio(self.probe_every)
            k += 1
