"""The sans-I/O session: one connection's protocol state, fed inputs, returning effects.

Inputs are method calls with ``now`` (seconds on any monotonic clock the caller picks);
outputs are :mod:`harken.session.effects` drained with :meth:`Session.effects`. The session
never reads the clock, awaits or touches a socket; ``next_deadline()`` tells the pump when to
call :meth:`Session.tick`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from harken.errors import ProtocolError
from harken.protocol import codes
from harken.protocol import messages as m
from harken.protocol.codec import parse_client
from harken.protocol.settings import ListenConfig, Provider, SpeakConfig, ThinkConfig
from harken.session.bounds import SizeLimits, bound
from harken.session.effects import Effect, JobDone, JobFailed, ProviderEvent
from harken.session.eot import TurnPolicy
from harken.session.history import Conversation
from harken.session.listener import Listener, ListenerConfig
from harken.session.outbox import Outbox
from harken.session.replies import AgentState
from harken.session.state import Event, Phase, State, phase_of
from harken.session.turns import Cause, Turns

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
    turn: TurnPolicy = field(default_factory=TurnPolicy)  # fixed silence, or a semantic signal
    sizes: SizeLimits = field(default_factory=SizeLimits)  # prompts, contexts, injections


class Catalog(Protocol):
    """Which provider configurations this server can serve."""

    def problem(self, part: ListenConfig | ThinkConfig | SpeakConfig) -> str | None:
        """``None`` if servable, else an INVALID_SETTINGS description naming what is available."""
        ...


STARVING_SECONDS = 1.5
"""A reply whose listener has less audio than this left to hear is starving: its LLM's next
sentence must be ready before it runs out (the LLM needs ~0.5-1 s for one on 2 cores)."""


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
        self.settings: m.Settings | None = None
        self.started = now
        self.last_client_frame = now
        self.audio_bytes_in = 0
        self._warned_duration = False
        self._warned_unheard = False
        self.out = Outbox()
        self.listener = Listener(self.limits.listener)
        agent = AgentState(function_call_timeout=self.limits.function_call_timeout)
        self.turns = Turns(self.out, agent, self.listener, self)
        self.turns.speculate = self.limits.speculate
        self.out.send(m.Welcome(request_id=request_id))

    @property
    def state(self) -> State:
        return self.turns.state

    @property
    def phase(self) -> Phase:
        return phase_of(self.turns.state)

    @property
    def closed(self) -> bool:
        return self.turns.state is State.CLOSED

    @property
    def listen(self) -> ListenConfig | None:
        return self.turns.listen

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
        early = self.phase is Phase.AWAITING_SETTINGS
        if parsed.ignored and not (early and not isinstance(message, m.Settings | m.KeepAlive)):
            shown = ", ".join(parsed.ignored[:10]) + (" …" if len(parsed.ignored) > 10 else "")
            self.out.send(
                m.Warning(
                    code=codes.UNKNOWN_FIELDS_IGNORED,
                    description=f"Ignored unknown field(s) in {message.type}: {shown}",
                )
            )
        if early == isinstance(message, m.Settings):  # what the table would act on
            bounded = bound(message, self.limits.sizes, self.turns.agent.prompt)
            for note in bounded.notes:
                self.out.send(note)
            if bounded.message is None:
                return
            message = bounded.message
        self.turns.fire(_event_of(message), Cause(now, message))

    def receive_audio(self, data: bytes, now: float) -> None:
        if self.closed:
            return
        self.last_client_frame = now
        self.audio_bytes_in += len(data)
        self.turns.fire_at(Event.AUDIO, now)
        if not self._warned_unheard and self.listen is None and self.phase is Phase.ACTIVE:
            self._warned_unheard = True  # once: a text-only agent does not listen
            self.out.send(
                m.Warning(
                    code=codes.AUDIO_IGNORED,
                    description="Audio received, but Settings have no agent.listen: this agent "
                    "is text-only and ignores audio. Add a listen provider to talk to it.",
                )
            )

    def receive_heard(self, data: bytes, frames: Sequence[tuple[float, bytes]], now: float) -> None:
        """:meth:`receive_audio` of ``data``, then :meth:`receive_speech` of each of the
        ``frames`` the pump's VAD made of it: one input per client frame on the hot path."""
        self.receive_audio(data, now)
        for probability, frame in frames:
            self.receive_speech(probability, frame, now)

    def receive_speech(self, probability: float, frame: bytes, now: float) -> None:
        """One 32 ms frame of the user's audio (16 kHz int16) and its VAD speech probability.

        The pump decodes and resamples the client's audio and runs the VAD; this turns frames
        into turns. Frames before Settings, after close or without a listen provider (a
        text-only agent) are ignored.
        """
        if self.listen is None or self.phase is not Phase.ACTIVE:
            return
        event = self.listener.feed(probability, frame)
        if event is not None:
            self.turns.hear(event, now)
        else:  # the signals may have said complete while a sound (not speech) was heard
            self.turns.settle(now)

    def receive_provider(self, event: ProviderEvent, now: float) -> None:
        """Output of a provider job. Output of jobs that are not live is dropped here."""
        kind = self.out.live.get(event.job_id)
        if kind is None or self.closed:
            return
        self.turns.on_provider(event, kind, now)
        if isinstance(event, JobDone | JobFailed):
            self.out.done(event.job_id)

    @property
    def at_rest(self) -> bool:
        """Nobody is in the middle of a turn: no reply in progress, the user not speaking (a
        draining server closes a session at such a moment, not mid-sentence)."""
        return self.state in (State.AWAITING_SETTINGS, State.LISTENING)

    def starving(self, now: float) -> bool:
        """The listener hears the agent and will run out of its audio within
        ``STARVING_SECONDS``: the reply's LLM should go before work that can wait."""
        ahead = self.turns.replies.audio_ahead(now)
        return ahead is not None and ahead < STARVING_SECONDS

    def played(self, through: int) -> None:
        """The client reports that it played the agent's sentences up to number ``through``
        (numbered 1, 2, … in the order of their ConversationText; 0 before any). From the first
        report on, a barge-in keeps in history exactly the sentences played, not the clock's
        estimate. Not a turn event: it changes no state and sends nothing."""
        if not self.closed:
            self.turns.replies.played(through)

    def tick(self, now: float) -> None:
        if self.closed:
            return
        # compared with the very sums next_deadline() returns: a tick at a deadline always fires
        # it, whatever the float rounding of now - started
        if now >= self.started + self.limits.max_duration:
            self.fail(
                codes.MAXIMUM_SESSION_LENGTH_REACHED,
                f"The session reached the maximum length of {self.limits.max_duration:g} seconds.",
                now,
            )
            return
        if now >= self.last_client_frame + self.limits.idle_timeout:
            self.fail(codes.CLIENT_MESSAGE_TIMEOUT, IDLE_DESCRIPTION, now)
            return
        warn_at = self.started + self.limits.duration_warning
        if now >= warn_at and not self._warned_duration:
            self._warned_duration = True
            left = self.limits.max_duration - (now - self.started)
            self.out.send(
                m.Warning(
                    code=codes.MAXIMUM_SESSION_LENGTH_APPROACHING,
                    description=f"The session will end in {left:.0f} seconds "
                    "(maximum session length).",
                )
            )
        if self.phase is Phase.ACTIVE:
            self.turns.replies.tick(now)

    def fail(self, code: str, description: str, now: float) -> None:
        """A fatal error: send ``Error``, cancel every job, close with 1000."""
        if not self.closed:
            self.turns.fire(Event.FATAL, Cause(now, code=code, text=description))

    def connection_lost(self, now: float) -> None:
        if not self.closed:
            self.turns.fire(Event.CONNECTION_LOST, Cause(now))

    def client_active(self, at: float) -> None:
        """The client sent something at ``at`` that has not been read yet (a starved event loop
        reads late): the idle timeout counts from what the client sent, not from what was read."""
        self.last_client_frame = max(self.last_client_frame, at)

    def suspend(self, now: float) -> None:
        """The connection dropped (no close): end every turn in progress (a reply is cut to
        what the client can have played), keep the conversation, wait for :meth:`resume`.
        A session without Settings has nothing to resume and closes."""
        if not self.closed:
            self.turns.fire(Event.SUSPEND, Cause(now))

    def resume(self, now: float) -> None:
        """A new connection takes the suspended session over: Welcome again (same request
        id); the Settings stay, so the client goes on without sending them."""
        if not self.closed:
            self.last_client_frame = now
            self.out.send(m.Welcome(request_id=self.request_id))

    def next_deadline(self) -> float | None:
        if self.closed:
            return None
        deadlines = [self.last_client_frame + self.limits.idle_timeout]
        if self._warned_duration:
            deadlines.append(self.started + self.limits.max_duration)
        else:
            deadlines.append(self.started + self.limits.duration_warning)
        if self.phase is Phase.ACTIVE:
            replies = self.turns.replies.next_deadline()
            if replies is not None:
                deadlines.append(replies)
        return min(deadlines)

    # ------------------------------------------------------------------ the table's host

    def close_with_error(self, code: str, description: str) -> None:
        self.out.cancel_all()
        self.listener.reset()
        self.out.send(m.Error(code=code, description=description))
        # 1001 "going away": a client (the JavaScript SDK does) reconnects, to another replica
        self.out.close(1001 if code == codes.SERVER_GOING_AWAY else 1000, code)

    def shut(self) -> None:
        self.out.cancel_all()
        self.listener.reset()

    def apply_settings(self, message: m.ClientMessage, now: float) -> None:
        assert isinstance(message, m.Settings)
        agent = message.agent
        problem = self._problem(agent.listen) if agent.listen is not None else None
        think, think_problem = self._servable(agent.think, "think")
        speak, speak_problem = self._servable(agent.speak, "speak")
        problem = problem or think_problem or speak_problem
        if problem is not None:
            self.turns.fire(Event.FATAL, Cause(now, code=codes.INVALID_SETTINGS, text=problem))
            return
        self.settings = message
        self.turns.set_listen(agent.listen, self.limits.turn, self.limits.listener)
        state = self.turns.agent
        # omitted think/speak: the server's default engines (a provider without a type)
        state.think = think or (ThinkConfig(provider=Provider(type="")),)
        state.speak = speak or (SpeakConfig(provider=Provider(type="")),)
        state.prompt = agent.think[0].prompt if agent.think else ""
        state.output = message.audio.output
        state.history = message.flags.history
        if agent.context is not None:
            self.turns.replies.conversation = Conversation(agent.context.messages)
        self.out.send(m.SettingsApplied())
        self._opening(message, now)  # first: the greeting's speech is not queued behind priming
        self.turns.replies.prime()

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
            greeting = m.InjectAgentMessage(message=text)
            self.turns.fire(Event.INJECT_AGENT, Cause(now, greeting))

    def apply_update(self, message: m.ClientMessage, now: float) -> None:
        match message:
            case m.UpdatePrompt():
                self._update_prompt(message)
            case m.UpdateSpeak():
                self._update_speak(message)
            case m.UpdateThink():
                self._update_think(message)
            case _:
                assert isinstance(message, m.UpdateListen)  # the UPDATE event's fourth kind
                self._update_listen(message)

    def _update_prompt(self, message: m.UpdatePrompt) -> None:
        """Deepgram (December 2026): UpdatePrompt adds to the prompt, it does not replace it."""
        state = self.turns.agent
        state.prompt = f"{state.prompt}\n{message.prompt}" if state.prompt else message.prompt
        self.out.send(m.PromptUpdated())
        self.turns.replies.prime()

    def _update_listen(self, message: m.UpdateListen) -> None:
        """Tune the listen provider: keyterms, language, thresholds (merged into the current
        options). Its type and model cannot change mid-session."""
        current = self.listen.provider if self.listen else None
        new = message.listen.provider
        same = current is not None and new.type in ("", current.type)
        same = same and current is not None and new.model in (None, current.model)
        if current is None or not same:
            self.out.send(
                m.Warning(
                    code=codes.INVALID_SETTINGS,
                    description="UpdateListen may tune the current listen provider only; its type "
                    f"and model must stay {current.name if current else 'unset'}.",
                )
            )
            return
        merged = Provider(current.type, current.model, {**current.options, **new.options})
        self.turns.set_listen(ListenConfig(merged), self.limits.turn, self.limits.listener)
        self.out.send(m.ListenUpdated())

    def _update_speak(self, message: m.UpdateSpeak) -> None:
        speak, problem = self._servable(message.speak, "speak")
        if problem is not None:  # refused with a Warning, not fatal
            self.out.send(m.Warning(code=codes.INVALID_SETTINGS, description=problem))
            return
        self.turns.agent.speak = speak
        self.out.send(m.SpeakUpdated())

    def _update_think(self, message: m.UpdateThink) -> None:
        think, problem = self._servable(message.think, "think")
        if problem is not None:
            self.out.send(m.Warning(code=codes.INVALID_SETTINGS, description=problem))
            return
        self.turns.agent.think = think
        self.turns.agent.prompt = think[0].prompt or self.turns.agent.prompt
        self.out.send(m.ThinkUpdated())
        self.turns.replies.prime()

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


_EVENTS: dict[type, Event] = {
    m.Settings: Event.SETTINGS,
    m.UpdatePrompt: Event.UPDATE,
    m.UpdateSpeak: Event.UPDATE,
    m.UpdateThink: Event.UPDATE,
    m.UpdateListen: Event.UPDATE,
    m.InjectUserMessage: Event.INJECT_USER,
    m.FunctionCallResponse: Event.FUNCTION_RESPONSE,
    m.KeepAlive: Event.KEEPALIVE,
    m.ForceEndTurn: Event.FORCE_END_TURN,
    m.Unsupported: Event.UNSUPPORTED,
}
_BEHAVIORS = {
    "default": Event.INJECT_AGENT,
    "queue": Event.QUEUE_AGENT,
    "interrupt": Event.INTERRUPT_AGENT,
}


def _event_of(message: m.ClientMessage) -> Event:
    if isinstance(message, m.InjectAgentMessage):
        return _BEHAVIORS[message.behavior]
    return _EVENTS[type(message)]
