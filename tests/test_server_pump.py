"""The pump against a fake websocket and a fake session: deadlines, ticks, backpressure."""

from __future__ import annotations

import asyncio
from typing import Any

from websockets.exceptions import ConnectionClosedOK
from websockets.frames import Close

from harken.config import load_config
from harken.protocol import messages as m
from harken.providers.compose import load_registry
from harken.server.connection import HIGH_WATER, Pump
from harken.server.metrics import Metrics
from harken.server.runner import Runner
from harken.session.effects import CloseConnection, Effect, SendAudio, SendMessage

CONFIG = load_config(None, {}, {"providers": "testing"})


class FakeWS:
    def __init__(self, frames: list[Any] | None = None, send_delay: float = 0.0) -> None:
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()
        for frame in frames or []:
            self.inbox.put_nowait(frame)
        self.sent: list[Any] = []
        self.closed: tuple[int, str] | None = None
        self.send_delay = send_delay
        self.reads = 0

    async def recv_frame(self) -> Any:
        frame = await self.inbox.get()
        if frame is None:
            raise ConnectionClosedOK(Close(1000, ""), Close(1000, ""), True)
        self.reads += 1
        return frame

    async def send(self, data: Any, text: bool = False) -> None:
        await asyncio.sleep(self.send_delay)
        self.sent.append(data)

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


class FakeSession:
    """Duck-typed Session: scripted deadlines and effects."""

    generation = m.Generation.GA
    request_id = "fake"
    settings = None

    def __init__(self) -> None:
        self.deadline: float | None = None
        self.ticks: list[float] = []
        self.queued: list[Effect] = []
        self.closed = False
        self.out = type("Out", (), {"live": {}})()
        self.on_text: Any = None

    def effects(self) -> list[Effect]:
        queued, self.queued = self.queued, []
        return queued

    def next_deadline(self) -> float | None:
        return None if self.closed else self.deadline

    def receive_text(self, data: str, now: float) -> None:
        if self.on_text:
            self.on_text(self, data, now)

    def receive_audio(self, data: bytes, now: float) -> None:
        self.queued.append(SendAudio(data))

    def receive_heard(self, data: bytes, frames: object, now: float) -> None:
        self.receive_audio(data, now)

    def tick(self, now: float) -> None:
        self.ticks.append(now)

    def fail(self, code: str, description: str, now: float) -> None:
        if not self.closed:
            self.closed = True
            self.queued += [SendMessage(m.Error(code=code, description=description))]
            self.queued.append(CloseConnection(1000, code))

    def connection_lost(self, now: float) -> None:
        self.closed = True


def make_pump(ws: FakeWS, session: FakeSession) -> Pump:
    runner = Runner(load_registry(CONFIG))
    return Pump(ws, session, runner, CONFIG, Metrics())  # type: ignore[arg-type]


async def test_earlier_deadline_wakes_the_executor() -> None:
    loop = asyncio.get_running_loop()
    session = FakeSession()
    session.deadline = loop.time() + 60

    def earlier(s: FakeSession, data: str, now: float) -> None:
        s.deadline = now + 0.05

    session.on_text = earlier
    ws = FakeWS(['{"type":"KeepAlive"}'])
    pump = make_pump(ws, session)
    task = asyncio.create_task(pump.run())
    await asyncio.sleep(0.2)
    assert session.ticks, "the executor slept through the earlier deadline"
    ws.inbox.put_nowait(None)
    await asyncio.wait_for(task, 2)


async def test_stuck_deadline_does_not_spin() -> None:
    loop = asyncio.get_running_loop()
    session = FakeSession()
    session.deadline = loop.time() - 1  # tick never moves it
    ws = FakeWS()
    task = asyncio.create_task(make_pump(ws, session).run())
    await asyncio.sleep(0.2)
    ws.inbox.put_nowait(None)
    await asyncio.wait_for(task, 2)
    assert 5 < len(session.ticks) < 80


async def test_slow_client_applies_backpressure() -> None:
    session = FakeSession()
    frames = [b"\x00\x00" * 10] * (HIGH_WATER * 3)
    ws = FakeWS(frames, send_delay=0.001)
    task = asyncio.create_task(make_pump(ws, session).run())
    await asyncio.sleep(0.02)
    assert ws.reads <= HIGH_WATER + 2  # stopped reading while the queue was full
    await asyncio.sleep(1.5)
    assert ws.reads == len(frames) and len(ws.sent) == len(frames)
    ws.inbox.put_nowait(None)
    await asyncio.wait_for(task, 2)


async def test_stop_sends_error_and_closes() -> None:
    session = FakeSession()
    ws = FakeWS()
    pump = make_pump(ws, session)
    pump.go_away()
    await asyncio.wait_for(pump.run(), 2)
    assert ws.closed == (1000, "SERVER_GOING_AWAY")  # as the fake session closes
    assert '"SERVER_GOING_AWAY"' in ws.sent[0].decode()
