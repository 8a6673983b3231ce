"""The harken server: the websockets listener, provider loading, sessions, graceful shutdown.

:class:`HarkenServer` is usable from tests (``await server.start()`` on port 0, then
``await server.shutdown()``); :func:`serve` is what ``harken serve`` runs: it installs SIGTERM
and SIGINT handlers that drain (:meth:`HarkenServer.drain`: no new sessions, ``/healthz`` 503,
each session told ``Error{SERVER_GOING_AWAY}`` and closed with 1001 once its turn is over, at the
latest after ``drain_timeout``), then stop within ``shutdown_grace`` seconds (plus a short close
timeout) and return 0. A second signal skips the rest of the drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import logging
import signal
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import cast

from websockets.asyncio.server import Server, ServerConnection
from websockets.asyncio.server import serve as ws_serve

from harken.config import ServerConfig
from harken.engines.lane import STALL_SECONDS, shared_lane
from harken.errors import HarkenError
from harken.phone import check_servable
from harken.protocol import codes
from harken.protocol.carrier import Carrier
from harken.providers.compose import load_registry
from harken.providers.registry import Registry
from harken.server import auth
from harken.server.connection import Pump, Wire
from harken.server.http import Routes
from harken.server.metrics import Metrics
from harken.server.phone import CarrierLink
from harken.server.resume import Parking
from harken.server.runner import Runner
from harken.server.transport import HarkenConnection
from harken.server.twilio_voice import VoiceWebhook
from harken.session.bounds import SizeLimits
from harken.session.eot import TurnPolicy
from harken.session.listener import FRAME_SECONDS, ListenerConfig
from harken.session.session import Session, SessionLimits

log = logging.getLogger("harken.server")

CLOSE_TIMEOUT = 2.0
DRAIN_POLL = 0.05  # seconds between looks for sessions at rest while draining
TAKE_OVER_WAIT = 2.0  # seconds a reconnect waits for the old connection's session to suspend
TOO_MANY = (
    "This server already holds its maximum of {n} concurrent sessions; try again later or "
    "connect to another instance."
)


class HarkenServer:
    def __init__(self, config: ServerConfig, *, registry: Registry | None = None) -> None:
        self.config = config
        self.metrics = Metrics(config.max_sessions)
        self.registry = registry
        self.runner: Runner | None = None
        self.load_error: str | None = None
        self._pumps: set[Pump] = set()
        self._server: Server | None = None
        self._limits = SessionLimits(
            idle_timeout=config.idle_timeout,
            function_call_timeout=config.function_call_timeout,
            max_duration=config.max_duration,
            duration_warning=config.duration_warning,
            strict=config.strict,
            listener=ListenerConfig(
                eot_frames=max(2, round(config.end_of_turn_ms / 1000 / FRAME_SECONDS)),
                pause_frames=max(1, round(config.speculate_after_ms / 1000 / FRAME_SECONDS)),
            ),
            speculate=config.speculate,
            turn=TurnPolicy(
                semantic=config.turn_detection == "semantic",
                threshold=config.eot_threshold,
                timeout_ms=float(config.eot_timeout_ms),
                text_threshold=config.eot_text_threshold,
                eager=config.eager_eot_threshold,
                floor_ms=float(config.eot_floor_ms),
            ),
            sizes=SizeLimits(
                prompt_chars=config.max_prompt_chars,
                context_messages=config.max_context_messages,
                context_chars=config.max_context_chars,
                message_chars=config.max_message_chars,
            ),
        )
        carriers = {config.twilio_path: "twilio", config.telnyx_path: "telnyx"}
        voice = VoiceWebhook(config)
        self._routes = Routes(
            config.api_keys, self.metrics, self._health, carriers, voice, config.metrics_require_key
        )
        self._stopping = False
        self.draining = False
        self._parking = Parking(config.resume_window, self._expired)
        self.metrics.probes += [
            ("harken_sessions_suspended", "Sessions kept for a reconnect", self._suspended),
            ("harken_llm_kv_snapshots", "KV-cache snapshots the models keep", _kv(0)),
            ("harken_llm_kv_snapshot_bytes", "Bytes of those snapshots", _kv(1)),
            (
                "harken_lane_stalled_seconds",
                "How long the compute lane's running step has run, "
                "or its oldest queued step waited",
                shared_lane().stalled,
            ),
            (
                "harken_lane_busy_seconds",
                "Seconds the compute lane has run model steps",
                lambda: shared_lane().busy_seconds,
            ),
            (
                "harken_lane_held_back_steps",
                "Steps run before those of a session over its lane budget",
                lambda: float(shared_lane().held_back),
            ),
            (
                "harken_gc_frozen_objects",
                "Objects of start-up that the garbage collector no longer scans",
                lambda: float(gc.get_freeze_count()),
            ),
        ]

    # ---------------------------------------------------------------- lifecycle

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        port: int = next(iter(self._server.sockets)).getsockname()[1]
        return port

    @property
    def ready(self) -> bool:
        return self.runner is not None and not self._stopping and not self.draining

    async def drain(self) -> None:
        """Stop taking sessions (``/healthz`` and new handshakes answer 503, so a balancer
        sends them to another replica) and end each live one with ``SERVER_GOING_AWAY`` and a
        1001 close once it is at rest (no reply in progress, the user not speaking), at the
        latest after ``drain_timeout``; returns when no session is left (or at the timeout).
        A phone call is never at rest for this (closing the stream hangs up on the caller): it
        is given the whole ``drain_timeout`` to end."""
        if self.draining or self._server is None:
            return
        self.draining = True
        self.metrics.draining = 1
        log.info("draining: %d session(s) to finish their turn", len(self._pumps))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.drain_timeout
        while self._pumps and loop.time() < deadline:
            for pump in list(self._pumps):
                if pump.session.at_rest and not pump.carrier and not pump.going:
                    pump.go_away()
            await asyncio.sleep(DRAIN_POLL)
        for pump in list(self._pumps):  # the rest get shutdown_grace, in shutdown()
            if not pump.going:
                pump.go_away()
        log.info("drained (%d session(s) still closing)", len(self._pumps))

    async def start(self, *, load: bool = True) -> None:
        """Listen, then load the providers (``/healthz`` answers 503 until they are ready).

        Raises :class:`HarkenError` if the providers cannot be loaded (after closing again).
        """
        self._announce_auth()
        self._server = await ws_serve(
            self._handle,
            self.config.host,
            self.config.port,
            create_connection=HarkenConnection,
            process_request=self._routes.process_request,
            process_response=self._routes.process_response,
            select_subprotocol=self._routes.select_subprotocol,
            compression=None,  # audio does not compress; zlib state costs ~300 KB a session
            max_size=self.config.hard_frame_bytes,
            close_timeout=CLOSE_TIMEOUT,
            logger=logging.getLogger("harken.websockets"),
        )
        log.info("listening on %s:%d", self.config.host, self.port)
        if load:
            await self.load()

    async def load(self) -> None:
        try:
            registry = self.registry
            if registry is None:
                registry = await asyncio.to_thread(load_registry, self.config)
        except HarkenError as exc:
            self.load_error = str(exc)
            log.critical("cannot load providers: %s", exc)
            await self.shutdown()
            raise
        try:
            check_servable(self.config.phone_profiles, registry)
        except HarkenError as exc:
            self.load_error = str(exc)
            log.critical("%s", exc)
            await self.shutdown()
            raise
        self.registry = registry
        self._resolve_turn_detection(registry)
        self.runner = Runner(
            registry,
            allow_loopback_functions=self.config.allow_loopback_functions,
            function_timeout=self.config.function_timeout,
        )
        log.info("providers ready (%s)", registry.engines.label or self.config.providers)

    def _resolve_turn_detection(self, registry: Registry) -> None:
        """``turn_detection = "auto"``: semantic where the loaded stack can do it well (an
        end-of-turn model, and a default LLM that scores the end of the user's message)."""
        if self.config.turn_detection != "auto":
            return
        llm = registry.engines.llm.get("llm-default")
        scores = llm is not None and llm.capabilities.end_score
        semantic = registry.engines.turn is not None and scores
        self._limits = replace(self._limits, turn=replace(self._limits.turn, semantic=semantic))
        log.info(
            "end of turn: %s (turn_detection = auto)",
            "semantic (the end-of-turn model and the LLM's end-of-message probability)"
            if semantic
            else f"fixed silence of {self.config.end_of_turn_ms} ms (no end-of-turn model, or "
            "a default LLM that cannot score)",
        )

    async def shutdown(self) -> None:
        """Stop accepting; end every session with SERVER_GOING_AWAY; close everything."""
        if self._server is None:
            return
        self._stopping = True
        self._parking.clear()
        self._server.close(close_connections=False)
        pumps = list(self._pumps)
        if pumps:
            log.info("shutting down: telling %d session(s) the server is going away", len(pumps))
        for pump in pumps:
            pump.go_away()
        deadline = self.config.shutdown_grace + CLOSE_TIMEOUT
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(deadline):
                while self._pumps:
                    await asyncio.sleep(0.02)
        for connection in list(self._server.connections):
            connection.transport.abort()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), CLOSE_TIMEOUT)
        if self.runner is not None:
            await self.runner.aclose()
        if self.registry is not None:
            await self.registry.aclose()
        self._server = None
        log.info("server stopped")

    def _announce_auth(self) -> None:
        if self.config.open_mode:
            log.warning(
                "NO API KEYS CONFIGURED: this server is OPEN; anyone who can reach %s:%d can "
                "use it. Set api_keys (or HARKEN_API_KEYS) to require 'Authorization: Token'.",
                self.config.host,
                self.config.port,
            )
        else:
            log.info("authentication on: %d API key(s) configured", len(self.config.api_keys))
        config = self.config
        open_profiles = [p.name for p in config.phone_profiles if not p.token]
        if open_profiles or not config.phone_profiles:
            log.warning(
                "phone streams (%s, %s) are OPEN for profile(s) %s: any caller's stream that "
                "names them is answered; give each profile a token to require it",
                config.twilio_path,
                config.telnyx_path,
                ", ".join(open_profiles or ["default"]),
            )
        if not config.twilio_auth_token:
            log.warning(
                "Twilio's voice webhook (POST %s/voice) is OPEN: set twilio_auth_token (or "
                "HARKEN_TWILIO_AUTH_TOKEN) to require Twilio's X-Twilio-Signature",
                config.twilio_path.rstrip("/"),
            )

    def _health(self) -> tuple[bool, dict[str, object]]:
        sessions, capacity = len(self._pumps), self.config.max_sessions
        if self.ready and self.registry is not None:
            label = self.registry.engines.label or self.config.providers
            load: dict[str, object] = {"sessions": sessions, "capacity": capacity}
            if sessions >= capacity:  # full: a balancer sends new sessions elsewhere
                return False, {"status": "full", "providers": label, **load}
            stalled = shared_lane().stalled()
            if stalled >= STALL_SECONDS:  # model work is not being served: route elsewhere
                load["lane_stalled_seconds"] = round(stalled, 1)
                return False, {"status": "degraded", "providers": label, **load}
            return True, {"status": "ok", "providers": label, **load}
        if self._stopping:
            return False, {"status": "stopping"}
        if self.draining:
            return False, {"status": "draining", "sessions": sessions}
        if self.load_error is not None:
            return False, {"status": "error", "detail": self.load_error}
        return False, {"status": "loading"}

    # ---------------------------------------------------------------- sessions

    async def _handle(self, connection: ServerConnection) -> None:
        ws = cast(HarkenConnection, connection)
        runner = self.runner
        if runner is None:  # only if the server stopped between the handshake and now
            return
        loop = asyncio.get_running_loop()
        headers = ws.request.headers if ws.request is not None else None
        client_session = None if headers is None else auth.client_session_id(headers)
        credential = None if headers is None else auth.credential(headers)
        session = None
        if not ws.carrier and client_session:
            await self._take_over(client_session, credential)
            session = self._parking.take(client_session, credential)
        if session is not None:
            session.resume(loop.time())
            log.info("session %s resumed", session.request_id)
        else:
            session = Session(
                generation=ws.generation,
                request_id=ws.request_id,
                now=loop.time(),
                limits=self._limits,
                catalog=self.registry,
            )
        wire: Wire = ws
        link = None
        if ws.carrier:
            link = CarrierLink(ws, cast(Carrier, ws.carrier), self.config)
            link.on_heard = session.played
            wire = link
        pump = Pump(wire, session, runner, self.config, self.metrics, client_session=client_session)
        pump.carrier = link is not None
        pump.credential = credential
        pump.resumable = bool(client_session) and not ws.carrier and self.config.resume_window > 0
        if len(self._pumps) >= self.config.max_sessions or self._stopping or self.draining:
            if self._stopping or self.draining:
                log.info("shutting down: refusing a session that raced the drain")
                pump.go_away()
            else:
                log.warning(
                    "session cap of %d reached; refusing a session", self.config.max_sessions
                )
                pump.stop(codes.TOO_MANY_SESSIONS, TOO_MANY.format(n=self.config.max_sessions))
            await pump.run()
            return
        self._pumps.add(pump)
        self.metrics.sessions_active += 1
        self.metrics.sessions_total[ws.generation.value] += 1
        log.info("session %s opened (%s)", pump.label, ws.generation.name)
        try:
            await pump.run()
        except Exception:
            log.exception("session %s ended with an unexpected error", pump.label)
        finally:
            if link is not None:
                await link.stop()
            self._pumps.discard(pump)
            self.metrics.sessions_active -= 1
            if pump.suspended and client_session and not session.closed:
                self._suspend(client_session, credential, session)
            else:
                log.info("session %s closed", pump.label)

    def _suspended(self) -> float:
        return float(len(self._parking))

    async def _take_over(self, client_session: str, credential: str | None) -> None:
        """A reconnect while the old connection still looks alive (its drop not noticed yet,
        as after a network blip): the old socket is cut, so its session is suspended and can
        be taken over. Only by the same credential."""
        for pump in list(self._pumps):
            if (
                pump.client_session == client_session
                and pump.resumable
                and hmac.compare_digest(pump.credential or "", credential or "")
            ):
                log.info("session %s: a reconnect takes it over", pump.label)
                pump.ws.transport.abort()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(TAKE_OVER_WAIT):
                        while pump in self._pumps:
                            await asyncio.sleep(0.01)

    def _suspend(self, client_session: str, credential: str | None, session: Session) -> None:
        if self._stopping or self.draining:
            self._expired(session)  # nowhere to come back to
        else:
            self._parking.park(client_session, credential, session)

    def _expired(self, session: Session) -> None:
        """A suspended session that will not be resumed: close it, free its model state."""
        session.connection_lost(asyncio.get_running_loop().time())
        session.effects()  # nobody to send them to
        if self.runner is not None:
            self.runner.forget(session.request_id)


def _kv(field: int) -> Callable[[], float]:
    """A probe of the embedded LLM's KV snapshots (0 when it is not loaded)."""

    def probe() -> float:
        llama = sys.modules.get("harken.providers.llm.llama")
        return float(llama.cache_usage()[field]) if llama is not None else 0.0

    return probe


async def serve(config: ServerConfig) -> int:
    """Run until SIGTERM/SIGINT; returns the process exit code (0 after a clean shutdown)."""
    server = HarkenServer(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    starting = asyncio.create_task(server.start())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():  # a signal while the providers were still loading
        log.info("signal received during start-up; stopping")
        starting.cancel()
        with contextlib.suppress(BaseException):
            await starting
        await server.shutdown()
        return 0
    failure = starting.exception()
    if failure is not None:
        if isinstance(failure, OSError):
            log.critical("cannot listen on %s:%d: %s", config.host, config.port, failure)
        elif not isinstance(failure, HarkenError):  # HarkenError was logged where raised
            log.critical("start-up failed", exc_info=failure)
        stopping.cancel()
        return 1
    # what start-up made (modules, models, the registry) lives as long as the process: out of
    # the collector's sight, so that a full collection scans only the sessions' objects (at 400
    # streaming sessions its pauses went from 86 ms to 25 ms: BENCHMARKS.md, issue 15)
    gc.freeze()
    await stopping
    log.info("signal received; draining (a second signal stops at once)")
    stop.clear()
    draining = asyncio.create_task(server.drain())
    again = asyncio.create_task(stop.wait())
    await asyncio.wait({draining, again}, return_when=asyncio.FIRST_COMPLETED)
    for task in (draining, again):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await server.shutdown()
    return 0
