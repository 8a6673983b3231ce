"""The sans-I/O session: one connection's protocol state, fed inputs, returning effects.

Inputs are method calls with ``now`` (seconds on any monotonic clock the caller picks);
outputs are :mod:`harken.session.effects` drained with :meth:`Session.effects`. The session
never reads the clock, awaits or touches a socket; ``next_deadline()`` tells the pump when to
call :meth:`Session.tick`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from harken.errors import ProtocolError
from harken.protocol import codes
from harken.protocol import messages as m
from harken.protocol.codec import parse_client
from harken.protocol.settings import ListenConfig, Provider, SpeakConfig, ThinkConfig
from harken.session.effects import Effect, JobDone, JobFailed, ProviderEvent
from harken.session.engine import AgentState, Engine
from harken.session.history import Conversation
from harken.session.listener import Listener, ListenerConfig
from harken.session.outbox import Outbox
from harken.session.state import Phase

C = TypeVar("C", ThinkConfig, SpeakConfig)

IDLE_DESCRIPTION = (
    "We waited too long for a websocket message. Please ensure that you're sending binary "
    "messages containing user speech."
)


@dataclass(frozen=True, slots=True)
class SessionLimits:
    idle_timeout: float = 30.0
    function_call_timeout: float = 60.0
    max_duration: float = 7200.0
    duration_warning: float = 6900.0
    strict: bool = False
    listener: ListenerConfig = field(default_factory=ListenerConfig)
    speculate: bool = True  # start STT and the LLM at the first short pause


class Catalog(Protocol):
    """Which provider configurations this server can serve."""

    def problem(self, part: ListenConfig | ThinkConfig | SpeakConfig) -> str | None:
        """``None`` if servable, else an INVALID_SETTINGS description naming what is available."""
        ...


class Session:
    def __init__(
        self,
        *,
        generation: m.Generation,
        request_id: str,
        now: float,
        limits: SessionLimits | None = None,
        catalog: Catalog | None = None,
    ) -> None:
        self.generation = generation
        self.request_id = request_id
        self.limits = limits or SessionLimits()
        self.catalog = catalog
        self.phase = Phase.AWAITING_SETTINGS
        self.settings: m.Settings | None = None
        self.listen: ListenConfig | None = None
        self.started = now
        self.last_client_frame = now
        self.audio_bytes_in = 0
        self._warned_duration = False
        self.out = Outbox()
        self.engine = Engine(
            self.out,
            AgentState(function_call_timeout=self.limits.function_call_timeout),
            Conversation(),
        )
        self.engine.speculate = self.limits.speculate
        self.listener = Listener(self.limits.listener)
        self.out.send(m.Welcome(request_id=request_id))

    @property
    def closed(self) -> bool:
        return self.phase is Phase.CLOSED

    def effects(self) -> list[Effect]:
        return self.out.drain()

    # ------------------------------------------------------------------ inputs

    def receive_text(self, data: str | bytes, now: float) -> None:
        if self.closed:
            return
        self.last_client_frame = now
        try:
            parsed = parse_client(data, self.generation, strict=self.limits.strict)
        except ProtocolError as exc:
            self.fail(exc.code, exc.description, now)
            return
        message = parsed.message
        if self.phase is Phase.AWAITING_SETTINGS and not isinstance(
            message, m.Settings | m.KeepAlive
        ):
            self.fail(
                codes.NON_SETTINGS_MESSAGE_BEFORE_SETTINGS,
                f"Received {message.type} before Settings. The first message on a connection "
                "must be Settings.",
                now,
            )
            return
        if parsed.ignored:
            shown = ", ".join(parsed.ignored[:10]) + (" …" if len(parsed.ignored) > 10 else "")
            self.out.send(
                m.Warning(
                    code=codes.UNKNOWN_FIELDS_IGNORED,
                    description=f"Ignored unknown field(s) in {message.type}: {shown}",
                )
            )
        self._dispatch(message, now)

    def receive_audio(self, data: bytes, now: float) -> None:
        if self.closed:
            return
        self.last_client_frame = now
        if self.phase is Phase.AWAITING_SETTINGS:
            self.fail(
                codes.NON_SETTINGS_MESSAGE_BEFORE_SETTINGS,
                "Received binary audio before Settings. Send Settings first; audio may follow "
                "at once, without waiting for SettingsApplied.",
                now,
            )
            return
        self.audio_bytes_in += len(data)

    def receive_speech(self, probability: float, frame: bytes, now: float) -> None:
        """One 32 ms frame of the user's audio (16 kHz int16) and its VAD speech probability.

        The pump decodes and resamples the client's audio and runs the VAD; this turns frames
        into turns. Frames before Settings or after close are ignored.
        """
        if self.phase is not Phase.ACTIVE:
            return
        event = self.listener.feed(probability, frame)
        if event is not None:
            self.engine.hear(event, self.listen, now)

    def receive_provider(self, event: ProviderEvent, now: float) -> None:
        """Output of a provider job. Output of jobs that are not live is dropped here."""
        kind = self.out.live.get(event.job_id)
        if kind is None or self.closed:
            return
        self.engine.on_provider(event, kind, now)
        if isinstance(event, JobDone | JobFailed):
            self.out.done(event.job_id)

    def tick(self, now: float) -> None:
        if self.closed:
            return
        elapsed = now - self.started
        if elapsed >= self.limits.max_duration:
            self.fail(
                codes.MAXIMUM_SESSION_LENGTH_REACHED,
                f"The session reached the maximum length of {self.limits.max_duration:g} seconds.",
                now,
            )
            return
        if now - self.last_client_frame >= self.limits.idle_timeout:
            self.fail(codes.CLIENT_MESSAGE_TIMEOUT, IDLE_DESCRIPTION, now)
            return
        if elapsed >= self.limits.duration_warning and not self._warned_duration:
            self._warned_duration = True
            left = self.limits.max_duration - elapsed
            self.out.send(
                m.Warning(
                    code=codes.MAXIMUM_SESSION_LENGTH_APPROACHING,
                    description=f"The session will end in {left:.0f} seconds "
                    "(maximum session length).",
                )
            )
        if self.phase is Phase.ACTIVE:
            self.engine.tick(now)

    def fail(self, code: str, description: str, now: float) -> None:
        """A fatal error: send ``Error``, cancel every job, close with 1000."""
        if self.closed:
            return
        self.out.cancel_all()
        self.out.send(m.Error(code=code, description=description))
        self.out.close(1000, code)
        self.phase = Phase.CLOSED

    def connection_lost(self, now: float) -> None:
        self.out.cancel_all()
        self.phase = Phase.CLOSED

    def next_deadline(self) -> float | None:
        if self.closed:
            return None
        deadlines = [self.last_client_frame + self.limits.idle_timeout]
        if self._warned_duration:
            deadlines.append(self.started + self.limits.max_duration)
        else:
            deadlines.append(self.started + self.limits.duration_warning)
        if self.phase is Phase.ACTIVE:
            engine = self.engine.next_deadline()
            if engine is not None:
                deadlines.append(engine)
        return min(deadlines)

    # ------------------------------------------------------------------ messages

    def _dispatch(self, message: m.ClientMessage, now: float) -> None:
        match message:
            case m.Settings():
                self._settings(message, now)
            case m.KeepAlive():
                pass
            case m.UpdatePrompt():
                self._update_prompt(message)
            case m.UpdateSpeak():
                self._update_speak(message)
            case m.UpdateThink():
                self._update_think(message)
            case m.UpdateListen():
                self._update_listen(message, now)
            case m.InjectUserMessage():
                self.engine.user_text(message.content, now)
            case m.InjectAgentMessage():
                self.engine.inject_agent(message, now)
            case _:
                self.engine.function_response(message, now)

    def _settings(self, settings: m.Settings, now: float) -> None:
        if self.phase is not Phase.AWAITING_SETTINGS:
            self.fail(
                codes.SETTINGS_ALREADY_APPLIED,
                "Settings were already applied to this connection; use UpdatePrompt, "
                "UpdateSpeak, UpdateThink or UpdateListen to change them.",
                now,
            )
            return
        agent = settings.agent
        problem = self._problem(agent.listen) if agent.listen is not None else None
        think, think_problem = self._servable(agent.think, "think")
        speak, speak_problem = self._servable(agent.speak, "speak")
        problem = problem or think_problem or speak_problem
        if problem is not None:
            self.fail(codes.INVALID_SETTINGS, problem, now)
            return
        self.settings = settings
        self.listen = agent.listen
        self.phase = Phase.ACTIVE
        state = self.engine.agent
        # omitted think/speak: the server's default engines (a provider without a type)
        state.think = think or (ThinkConfig(provider=Provider(type="")),)
        state.speak = speak or (SpeakConfig(provider=Provider(type="")),)
        state.prompt = agent.think[0].prompt if agent.think else ""
        state.output = settings.audio.output
        state.history, state.experimental = settings.flags.history, settings.experimental
        if agent.context is not None:
            self.engine.conversation = Conversation(agent.context.messages)
        self.out.send(m.SettingsApplied())
        self.engine.prime()
        self._opening(settings, now)

    def _opening(self, settings: m.Settings, now: float) -> None:
        """The greeting, or (early-access ``context.replay``) the last assistant message."""
        agent = settings.agent
        text = agent.greeting
        if not text and agent.context is not None and agent.context.replay:
            said = [
                i.content for i in agent.context.messages if i.role == "assistant" and i.content
            ]
            text = said[-1] if said else None
        if text:
            self.engine.agent_text(text, "greeting", now)

    def _update_prompt(self, message: m.UpdatePrompt) -> None:
        state = self.engine.agent
        state.prompt = f"{state.prompt}\n{message.prompt}" if message.append else message.prompt
        self.out.send(m.PromptUpdated())
        self.engine.prime()

    def _update_listen(self, message: m.UpdateListen, now: float) -> None:
        current = self.listen.provider if self.listen else None
        new = message.listen.provider
        if current is None or (current.type, current.model) != (new.type, new.model):
            self.out.send(
                m.Warning(
                    code=codes.INVALID_SETTINGS,
                    description="UpdateListen may tune the current listen provider only; its type "
                    f"and model must stay {current.name if current else 'unset'}.",
                )
            )
            return
        self.listen = message.listen
        self.out.send(m.ListenUpdated())

    def _update_speak(self, message: m.UpdateSpeak) -> None:
        speak, problem = self._servable(message.speak, "speak")
        if problem is not None:  # refused with a Warning, not fatal
            self.out.send(m.Warning(code=codes.INVALID_SETTINGS, description=problem))
            return
        self.engine.agent.speak = speak
        self.out.send(m.SpeakUpdated())

    def _update_think(self, message: m.UpdateThink) -> None:
        think, problem = self._servable(message.think, "think")
        if problem is not None:
            self.out.send(m.Warning(code=codes.INVALID_SETTINGS, description=problem))
            return
        self.engine.agent.think = think
        self.engine.agent.prompt = think[0].prompt or self.engine.agent.prompt
        self.out.send(m.ThinkUpdated())
        self.engine.prime()

    def _problem(self, part: ListenConfig | ThinkConfig | SpeakConfig) -> str | None:
        return self.catalog.problem(part) if self.catalog else None

    def _servable(self, parts: tuple[C, ...], kind: str) -> tuple[tuple[C, ...], str | None]:
        """The servable entries of a primary + fallbacks list.

        The primary must be servable (else its problem is returned); a fallback that is not is
        dropped with a Warning, so one exotic fallback does not sink the whole session.
        """
        kept: list[C] = []
        for index, part in enumerate(parts):
            problem = self._problem(part)
            if problem is None:
                kept.append(part)
            elif index == 0:
                return (), problem
            else:
                self.out.send(
                    m.Warning(
                        code=codes.INVALID_SETTINGS,
                        description=f"Ignoring {kind} fallback {index + 1}: {problem}",
                    )
                )
        return tuple(kept), None
