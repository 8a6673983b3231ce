"""The pump: moves bytes and time between one WebSocket and one sans-I/O :class:`Session`.

One task group per connection holds three kinds of task:

* the **receiver** reads client frames, applies the frame limits and feeds each frame to the
  session at once (``receive_text`` / ``receive_audio`` with ``now``);
* **job tasks** run provider jobs and feed their events to the session (``receive_provider``);
* the **executor** (the body of :meth:`Pump.run`) executes the session's effects in order and,
  when there is nothing to do, sleeps until ``session.next_deadline()`` and ticks.

Session calls are synchronous and every call's effects are appended to one bounded queue right
away, so effects keep the order in which the session produced them whichever task fed it. When
the queue is long (a slow client), the receiver and the jobs wait for room: backpressure.

A session that raises never takes the server down: the traceback is logged, the client gets
``Error{INTERNAL_SERVER_ERROR}`` and a close with 1000, and only this connection ends.

Log lines name the session by :attr:`Pump.label`: harken's request id, and the client's own
``x-deepgram-session-id`` when it sent one (already sanitised by ``auth.client_session_id``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from websockets.exceptions import ConnectionClosed

from harken.config import ServerConfig
from harken.engines.lane import SESSION
from harken.protocol import codes
from harken.protocol import messages as m
from harken.protocol.codec import encode_server
from harken.server.ears import Ears
from harken.server.limits import FrameLimits, Violation
from harken.server.metrics import Metrics
from harken.server.runner import Runner
from harken.server.transport import INVALID_UTF8, BadFrame, HarkenConnection
from harken.session.effects import (
    CancelJob,
    CloseConnection,
    Effect,
    Job,
    JobFailed,
    ProviderEvent,
    ResumeJob,
    SendAudio,
    SendMessage,
    StartJob,
    ThinkJob,
)
from harken.session.session import Session

log = logging.getLogger("harken.connection")

HIGH_WATER, LOW_WATER = 128, 32  # queued effects
RECHECK = 0.05  # seconds: how stale an audio-driven deadline may get before a re-plan
STALLED = "CLIENT_NOT_READING"  # metrics label: a send made no progress for write_timeout
AT_ONCE = 16384  # bytes: a frame this small, sent with nothing queued, never waits for a drain
ABNORMAL_CLOSURE = 1006  # websockets' close code for a connection lost without a close frame
GOING_AWAY = "The server is shutting down; reconnect to another instance."
INTERNAL = "The server hit an internal error while handling this session; it has been logged."


class Wire(Protocol):
    """What the pump needs of its connection: the agent protocol's WebSocket, or a phone
    call's stream translated to it (:class:`harken.server.phone.CarrierLink`)."""

    @property
    def transport(self) -> asyncio.Transport: ...

    async def recv_frame(self) -> str | bytes | BadFrame: ...
    async def send(self, message: str | bytes, *, text: bool | None = None) -> None: ...
    async def close(self, code: int = 1000, reason: str = "") -> None: ...


class Pump:
    """Runs one agent session over one connection until either side closes it."""

    def __init__(
        self,
        ws: Wire,
        session: Session,
        runner: Runner,
        config: ServerConfig,
        metrics: Metrics,
        *,
        client_session: str | None = None,
    ) -> None:
        self.ws = ws
        self.session = session
        self.label = session.request_id
        self.client_session = client_session
        self.credential: str | None = None  # what the client authenticated with
        if client_session is not None:
            self.label += f" (client session {client_session})"
        self._runner = runner
        self._metrics = metrics
        self._write_timeout = config.write_timeout
        self._transport: asyncio.WriteTransport | None = getattr(ws, "transport", None)
        self._loop = asyncio.get_running_loop()
        self._limits = FrameLimits(config, self._loop.time())
        self._pending: deque[Effect] = deque()
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._jobs: dict[int, asyncio.Task[None]] = {}
        self._gates: dict[int, asyncio.Event] = {}  # held replies' LLMs, paused until resumed
        self._tg: asyncio.TaskGroup | None = None
        self._sleeping_until: float | None = None
        self._recheck_at = 0.0
        self._ticked: float | None = None
        self._format_known = False
        self._ears: Ears | None = None  # VAD over the client's audio, once Settings are known
        self._broken = False  # the session raised and could not even fail cleanly
        self._receiver: asyncio.Task[None] | None = None
        self.going = False  # told SERVER_GOING_AWAY (drain or shutdown)
        self.carrier = False  # a phone call (a carrier's stream): a drain waits for its end
        self.resumable = False  # a dropped socket suspends the session instead of ending it
        self.suspended = False
        self._lost = False
        self._closed = False

    # ---------------------------------------------------------------- inputs (synchronous)

    def stop(self, code: str, description: str) -> None:
        """End the session with ``Error{code}`` and a close (e.g. session cap, shutdown)."""
        self._call(self.session.fail, code, description)

    def go_away(self) -> None:
        self.going = True
        self.stop(codes.SERVER_GOING_AWAY, GOING_AWAY)

    def _call(
        self,
        method: Callable[..., None],
        *args: Any,
        throttle: bool = False,
        at: float | None = None,
    ) -> None:
        """Feed one input to the session and queue its effects. Never raises.

        If the input produced no effect but moved the session's next deadline earlier, the
        executor is woken to re-plan its sleep; with ``throttle`` (audio frames, the hot path)
        that check runs at most every ``RECHECK`` seconds. ``at``: the time, if the caller has
        just read the clock.
        """
        if self._broken:
            return
        now = self._loop.time() if at is None else at
        try:
            method(*args, now)
            effects = self.session.effects()
        except Exception:
            log.exception("session %s failed in %s", self.label, method.__name__)
            effects = self._crash(now)
        if effects:
            self._pending.extend(effects)
            if len(self._pending) > HIGH_WATER:
                self._room.clear()
            self._wake.set()
        elif self._sleeping_until is not None and (not throttle or now >= self._recheck_at):
            self._recheck_at = now + RECHECK
            deadline = self.session.next_deadline()
            if deadline is not None and deadline < self._sleeping_until:
                self._wake.set()

    def _crash(self, now: float) -> list[Effect]:
        """The session raised: end it the normal way if it still can, else by hand."""
        effects: list[Effect] = []
        try:
            self.session.fail(codes.INTERNAL_SERVER_ERROR, INTERNAL, now)
            effects = self.session.effects()
        except Exception:
            log.exception("session %s could not fail cleanly", self.label)
        if any(isinstance(effect, CloseConnection) for effect in effects):
            return effects
        self._broken = True
        error = m.Error(code=codes.INTERNAL_SERVER_ERROR, description=INTERNAL)
        cancels: list[Effect] = [CancelJob(job_id) for job_id in self._jobs]
        return [*cancels, SendMessage(error), CloseConnection(1000, codes.INTERNAL_SERVER_ERROR)]

    # ---------------------------------------------------------------- executor

    async def run(self) -> None:
        SESSION.set(self.session.request_id)  # model work of this connection queues fairly
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            receiver = self._receiver = tg.create_task(self._receive())
            if self.session.settings is not None:  # resumed: the client sends no Settings
                self._declared_format(self._loop.time())
            self._pending.extend(self.session.effects())  # Welcome
            try:
                while not (self._closed or (self._lost and not self._pending)):
                    if self._pending:
                        effect = self._pending.popleft()
                        if len(self._pending) <= LOW_WATER:
                            self._room.set()
                        await self._apply_safely(effect)
                    else:
                        await self._idle()
            finally:
                receiver.cancel()
                for task in self._jobs.values():
                    task.cancel()
                if self._ears is not None:
                    self._ears.close()
        if not self.suspended or self.session.closed:
            self._runner.forget(self.session.request_id)  # its KV cache, if the LLM keeps one

    async def _idle(self) -> None:
        """Nothing to execute: sleep until woken or until the session's next deadline."""
        self._wake.clear()
        deadline = None if self._broken else self.session.next_deadline()
        if deadline is None:
            await self._wake.wait()
            return
        if deadline <= self._loop.time():
            if deadline == self._ticked:  # the tick did not move the deadline: do not spin
                await asyncio.sleep(0.005)
            self._ticked = deadline
            self._note_unread()
            self._call(self.session.tick)
            return
        self._sleeping_until = deadline
        try:
            async with asyncio.timeout_at(deadline):
                await self._wake.wait()
        except TimeoutError:
            pass
        finally:
            self._sleeping_until = None

    def _note_unread(self) -> None:
        """Before a deadline fires: what the client sent and the server has not read yet
        counts as activity; the idle timeout must not close a client that streams. While the
        pump does not read (its queue is full: a starved loop, a slow send), nothing the client
        does can be seen, so the client counts as active."""
        if not self._room.is_set():
            self.session.client_active(self._loop.time())
            return
        arrived = getattr(self.ws, "last_data_at", 0.0)
        if arrived:
            self.session.client_active(arrived)

    async def _apply_safely(self, effect: Effect) -> None:
        try:
            await self._apply(effect)
        except Exception:
            name = type(effect).__name__
            log.exception("session %s: executing %s failed", self.label, name)
            if self._broken:  # failing to fail: drop the connection
                self._closed = True
                self.ws.transport.abort()
                return
            self._pending.clear()
            self._pending.extend(self._crash(self._loop.time()))

    async def _apply(self, effect: Effect) -> None:
        if isinstance(effect, SendAudio):
            if not self._lost:
                self._metrics.audio_out_bytes += len(effect.data)
                await self._send(effect.data)
        elif isinstance(effect, SendMessage):
            if not self._lost:
                self._count(effect.message)
                for text in encode_server(effect.message, self.session.generation):
                    await self._send(text)
        elif isinstance(effect, StartJob):
            self._start(effect.job)
        elif isinstance(effect, CancelJob):
            task = self._jobs.pop(effect.job_id, None)
            self._gates.pop(effect.job_id, None)
            if task is not None:
                task.cancel()
        elif isinstance(effect, ResumeJob):
            gate = self._gates.pop(effect.job_id, None)
            if gate is not None:
                gate.set()
        elif isinstance(effect, CloseConnection):
            self._closed = True
            if not self._lost:
                await self.ws.close(effect.code, effect.reason[:120])

    async def _send(self, data: str | bytes) -> None:
        text = isinstance(data, str)
        if isinstance(data, str):
            try:
                payload = data.encode()
            except UnicodeEncodeError:  # a lone surrogate the client sent, echoed back
                log.warning("session %s: unencodable text replaced", self.label)
                payload = data.encode("utf-8", "replace")
        else:
            payload = data
        try:
            if self._sends_at_once(len(payload)):
                await self.ws.send(payload, text=text)  # no timer (5 µs) per frame
            else:
                async with asyncio.timeout(self._write_timeout):
                    await self.ws.send(payload, text=text)
        except ConnectionClosed:
            self._connection_lost()
        except TimeoutError:  # the client stopped reading: free its slot and its buffers
            log.warning(
                "session %s: the client read nothing for %.0f s; closing",
                self.label,
                self._write_timeout,
            )
            self._metrics.errors[STALLED] += 1
            self._closed = True
            self._pending.clear()
            self.ws.transport.abort()  # a close frame would wait behind the unread data
            self._connection_lost()

    def _sends_at_once(self, size: int) -> bool:
        """Nothing is queued for the client and the frame is small: the send cannot wait for
        the client to read (websockets waits only above its 32 KiB write limit)."""
        transport = self._transport
        return transport is not None and size < AT_ONCE and not transport.get_write_buffer_size()

    def _connection_lost(self) -> None:
        if not self._lost:
            self._lost = True
            if self.resumable and not self._closed and self._dropped():
                self.suspended = True  # the server keeps it for a reconnect
                self._call(self.session.suspend)
            else:
                self._call(self.session.connection_lost)
            self._wake.set()

    def _dropped(self) -> bool:
        """The socket went without a close frame (a network blip, not a goodbye)."""
        code = getattr(self.ws, "close_code", None)
        return code is None or code == ABNORMAL_CLOSURE

    def _count(self, message: m.ServerMessage) -> None:
        if isinstance(message, m.Error):
            self._metrics.errors[message.code] += 1
        elif isinstance(message, m.Warning):
            self._metrics.warnings[message.code] += 1
        elif isinstance(message, m.LatencyReport):
            self._metrics.observe_latency(message)

    # ---------------------------------------------------------------- jobs

    def _start(self, job: Job) -> None:
        assert self._tg is not None
        gate = None
        if isinstance(job, ThinkJob) and job.held:
            gate = self._gates[job.job_id] = asyncio.Event()
        starving = None
        if isinstance(job, ThinkJob):
            session, loop = self.session, self._loop
            starving = lambda: session.starving(loop.time())  # noqa: E731
        run = self._runner.run(job, self._emit, gate=gate, starving=starving)
        task = self._tg.create_task(run)
        self._jobs[job.job_id] = task
        task.add_done_callback(lambda done: self._forget(job.job_id, done))

    def _forget(self, job_id: int, task: asyncio.Task[None]) -> None:
        if self._jobs.get(job_id) is task:
            del self._jobs[job_id]
            self._gates.pop(job_id, None)

    async def _emit(self, event: ProviderEvent) -> None:
        if isinstance(event, JobFailed):
            self._metrics.job_failures[self.session.out.live.get(event.job_id, "unknown")] += 1
        self._call(self.session.receive_provider, event)
        if not self._room.is_set():
            await self._room.wait()

    # ---------------------------------------------------------------- receiver

    async def _receive(self) -> None:
        """Feed client frames to the session until the connection closes or a limit trips.

        Audio frames may skip this task: the connection hands them to :meth:`_audio` from its
        protocol callback while this task waits with nothing queued ahead of them."""
        direct = self.ws if isinstance(self.ws, HarkenConnection) else None
        if direct is not None:
            direct.on_binary = self._audio
        try:
            while True:
                if not self._room.is_set():
                    await self._room.wait()
                if not self._handle(await self.ws.recv_frame()):
                    return
        except ConnectionClosed:
            self._connection_lost()
        except Exception:
            log.exception("receiver of session %s failed", self.label)
            self.stop(codes.INTERNAL_SERVER_ERROR, INTERNAL)
        finally:
            if direct is not None:
                direct.on_binary = None

    def _audio(self, data: bytes) -> bool:
        """A binary message straight from the connection: handled (True), or declined while
        the effects queue is full (the receiver then takes it, after waiting for room)."""
        if not self._room.is_set():
            return False
        try:
            going = self._handle(data)
        except Exception:
            log.exception("receiver of session %s failed", self.label)
            self.stop(codes.INTERNAL_SERVER_ERROR, INTERNAL)
            going = False
        if not going and self._receiver is not None:  # a limit tripped: read nothing more
            self._receiver.cancel()  # its wait ends at once, so the connection hands over
            # nothing more, not even the rest of this read; its finally takes this path away
        return True

    def _handle(self, data: str | bytes | BadFrame) -> bool:
        """One client frame; False once a limit tripped (the session is stopped)."""
        session, loop = self.session, self._loop
        now = loop.time()
        violation = self._check(data, now)
        if violation is not None:
            self.stop(violation.code, violation.description)
            return False
        if isinstance(data, str):
            self._call(session.receive_text, data)
            if not self._format_known and session.settings is not None:
                self._declared_format(now)
        elif isinstance(data, bytes):  # one call per frame: audio and what VAD heard
            heard = () if self._ears is None else self._hear(data)
            if heard is not None:
                self._call(session.receive_heard, data, heard, throttle=True, at=now)
        self._metrics.frame_seconds.observe(loop.time() - now)
        return True

    def _hear(self, data: bytes) -> list[tuple[float, bytes]] | None:
        """The VAD frames ``data`` completes; None (and the session stopped) if it does not
        decode in the declared format."""
        assert self._ears is not None
        try:
            return self._ears.feed(data)
        except ValueError as exc:
            self.stop(codes.USER_AUDIO_FORMAT, f"Could not decode the audio: {exc}")
            return None

    def _declared_format(self, now: float) -> None:
        assert self.session.settings is not None
        self._format_known = True
        given = self.session.settings.audio.input
        vad = self._runner.registry.engines.vad
        if vad is not None and self.session.listen is not None:
            self._ears = Ears(given, vad)
        self._limits.set_audio_format(given.encoding, given.sample_rate, now)

    def _check(self, data: str | bytes | BadFrame, now: float) -> Violation | None:
        limits = self._limits
        if isinstance(data, bytes):
            self._metrics.client_messages["audio"] += 1
            self._metrics.audio_in_bytes += len(data)
            return limits.check_audio(len(data), now)
        if isinstance(data, str):
            self._metrics.count_text(data)
            size = len(data) if len(data) * 4 <= limits.max_frame else len(data.encode())
            return limits.check_text(size, now)
        if data is INVALID_UTF8:
            return Violation(
                codes.UNPARSABLE_CLIENT_MESSAGE,
                "Text message received from client is not valid UTF-8.",
            )
        return Violation(codes.MESSAGE_TOO_LARGE, "A message arrived in too many fragments.")
