"""The driver of the session table: every turn change goes through :meth:`Turns.fire`. Pure.

``fire(event, cause)`` looks the row up in :data:`harken.session.state.TRANSITIONS`, moves to
its next state and runs its actions in order. The actions are the only code that starts or
drops transcriptions, holds, promotes, says or cancels replies; nothing else in the session
looks at the state to decide what happens next.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from harken.protocol import codes
from harken.protocol import messages as m
from harken.protocol.settings import ListenConfig
from harken.session.effects import (
    ChatMessage,
    JobFailed,
    JobWarning,
    ProviderEvent,
    TextScore,
    TranscribeJob,
    Transcript,
    TurnJob,
    TurnScore,
)
from harken.session.eot import TurnPolicy, Verdict, listener_config, session_policy
from harken.session.history import Conversation
from harken.session.listener import Listener, ListenerConfig, ListenEvent
from harken.session.outbox import Outbox
from harken.session.replies import AgentState, Replies
from harken.session.reply import Timing
from harken.session.state import (
    Action,
    Event,
    State,
    Turn,
    transition,
    turn_of,
)

_HEARD = {"onset": Event.ONSET, "pause": Event.PAUSE, "resume": Event.RESUME, "end": Event.END}


@dataclass(frozen=True, slots=True)
class Cause:
    """What fired an event: the time, and whatever the event carries."""

    now: float
    message: m.ClientMessage | None = None
    heard: ListenEvent | None = None
    text: str = ""  # a transcript, or a failure's description
    code: str = ""  # FATAL: the Error code


@dataclass(slots=True)
class Guess:
    """Speech-to-text of the user's turn: speculative at the first pause, or final."""

    stt_job: int | None
    pcm: bytes  # the audio being transcribed
    text: str = ""
    ended_at: float = 0.0  # the end of the turn (once final)
    silence: float = 0.0  # the silence that ended it


class Host(Protocol):
    """What the session itself does for the table (configuration, closing)."""

    def apply_settings(self, message: m.ClientMessage, now: float) -> None: ...
    def apply_update(self, message: m.ClientMessage, now: float) -> None: ...
    def close_with_error(self, code: str, description: str) -> None: ...
    def shut(self) -> None: ...


class Turns:
    def __init__(self, out: Outbox, agent: AgentState, listener: Listener, host: Host) -> None:
        self.out = out
        self.state = State.AWAITING_SETTINGS
        self.listener = listener
        self.host = host
        self.listen: ListenConfig | None = None
        self.guess: Guess | None = None
        self.queued: deque[str] = deque()  # InjectAgentMessage{behavior: queue}
        self.replies = Replies(out, agent, self._fire_from_reply)
        self.speculate = True
        self.policy = TurnPolicy()
        self.check_job: int | None = None  # the end-of-turn model, asked at the pause
        self.verdict = Verdict()  # the end-of-turn signals at the current pause
        self.deferred: ListenEvent | None = None  # a pause whose speculation waits (eager)
        self._warned_check = False
        self._actions: dict[Action, Callable[[Cause], None]] = {
            action: getattr(self, f"_{action.value}") for action in Action
        }

    @property
    def turn(self) -> Turn:
        return turn_of(self.state)

    def fire(self, event: Event, cause: Cause) -> None:
        row = transition(self.state, event)
        self.state = row.next
        for action in row.actions:
            self._actions[action](cause)

    def fire_at(self, event: Event, now: float) -> None:
        """:meth:`fire` with a bare :class:`Cause` made only if the row has actions (the
        audio of every frame: its rows but one have none)."""
        row = transition(self.state, event)
        self.state = row.next
        if row.actions:
            cause = Cause(now)
            for action in row.actions:
                self._actions[action](cause)

    def _fire_from_reply(self, event: Event, now: float, detail: str) -> None:
        self.fire(event, Cause(now, text=detail))

    @property
    def agent(self) -> AgentState:
        return self.replies.agent

    @property
    def conversation(self) -> Conversation:
        return self.replies.conversation

    # ------------------------------------------------------------------ inputs

    def set_listen(
        self, listen: ListenConfig | None, server: TurnPolicy, base: ListenerConfig
    ) -> None:
        """Settings or UpdateListen: the listen provider, and the end-of-turn policy it asks for."""
        self.listen = listen
        self.policy = session_policy(listen, server)
        self.listener.config = listener_config(self.policy, base)
        self.replies.score_held = self.policy.scores_text

    def hear(self, heard: ListenEvent, now: float) -> None:
        """What the listener made of the user's audio (onset, pause, resume, end of turn)."""
        self.verdict = Verdict()
        if heard.kind == "pause":
            self._ask_at_floor()
            if not self.speculate:
                return
            if self.policy.semantic and self.policy.eager is not None:
                self.deferred = heard  # speculate once the acoustic score says so
                return
        elif heard.kind != "onset":
            self._drop_check()
        self.fire(_HEARD[heard.kind], Cause(now, heard=heard))

    def _ask_at_floor(self) -> None:
        """Ask the end-of-turn model once per pause, when the silence reaches the floor (the
        audio so far, the pause included: the model hears the silence too)."""
        verdict, listener = self.verdict, self.listener
        if not self.policy.semantic or verdict.asked or not listener.paused:
            return
        if listener.silent_frames >= self.policy.floor_frames:
            verdict.asked = True
            self.out.cancel(self.check_job)
            self.check_job = self.out.start(TurnJob(self.out.new_id(), listener.pcm()))

    def _drop_check(self) -> None:
        self.out.cancel(self.check_job)
        self.check_job, self.deferred = None, None

    def settle(self, now: float) -> None:
        """A frame that changed nothing: ask at the floor; end the paused turn if the signals'
        answers so far say complete (a sound, not speech, may have delayed it)."""
        self._ask_at_floor()
        if self.verdict.acoustic is not None:
            self._judge(now)

    def _judge(self, now: float) -> None:
        """End the paused turn now if the signals' answers so far say it is complete."""
        coming = self.state in (State.GUESSING, State.HELD)  # a held reply may still score
        if self.listener.paused and self.verdict.complete(self.policy, coming):
            heard = self.listener.complete()
            assert heard is not None  # paused
            self.hear(heard, now)

    def _text_scored(self, event: TextScore, now: float) -> None:
        """The held reply's LLM read the end of the user's text (the reply goes on)."""
        if self.state is not State.HELD or not self.listener.paused:
            return  # the turn already ended (or the user went on): too late to matter
        if event.probability is None:  # the server logs why (a provider without the score)
            self.verdict.no_text = True
        else:
            self.verdict.text = event.probability
        self._judge(now)

    def _scored(self, event: ProviderEvent, now: float) -> None:
        """The end-of-turn model's answer at a pause: complete enough ends the turn now."""
        self.out.done(event.job_id)  # its JobDone after the score is dropped
        self.check_job = None
        if isinstance(event, JobFailed) and not self._warned_check:
            self._warned_check = True  # once: every turn then ends on the timeout
            self.out.send(
                m.Warning(
                    code=codes.END_OF_TURN_FAILED,
                    description=f"The end-of-turn model failed ({event.message}); turns end "
                    f"after {self.policy.timeout_ms:g} ms of silence.",
                )
            )
        elif isinstance(event, TurnScore):
            self.verdict.acoustic = event.probability
            deferred = self.deferred
            eager = self.policy.eager
            if deferred is not None and eager is not None and event.probability >= eager:
                self.deferred = None
                if self.listener.paused:
                    self.fire(Event.PAUSE, Cause(now, heard=deferred))
            self._judge(now)

    def on_provider(self, event: ProviderEvent, kind: str, now: float) -> None:
        """Output of a live job (the session already dropped dead jobs)."""
        if isinstance(event, JobWarning):
            self.out.send(m.Warning(code=event.code, description=event.description))
        elif kind == "transcribe":
            self._transcribed(event, now)
        elif kind == "turn":
            self._scored(event, now)
        elif kind == "think" and isinstance(event, TextScore):
            self._text_scored(event, now)
        elif kind == "think":
            self.replies.on_think(event, now)
            self._judge(now)
        elif kind == "speak":
            self.replies.on_speak(event, now)
        elif kind == "function":
            self.replies.on_function(event, now)
        # "prime": nothing to do

    def _transcribed(self, event: ProviderEvent, now: float) -> None:
        guess = self.guess
        assert guess is not None and guess.stt_job == event.job_id  # live jobs only
        self.out.done(event.job_id)  # its JobDone after the Transcript is dropped
        guess.stt_job = None
        if isinstance(event, JobFailed):
            self.fire(Event.STT_FAILED, Cause(now, text=event.message))
            self._judge(now)  # no text score will come
            return
        guess.text = event.text.strip() if isinstance(event, Transcript) else ""
        event_kind = Event.TRANSCRIPT if guess.text else Event.TRANSCRIPT_EMPTY
        self.fire(event_kind, Cause(now, text=guess.text))
        self._judge(now)  # an empty transcript: no text score will come

    # ------------------------------------------------------------------ session actions

    def _fail(self, cause: Cause) -> None:
        self.host.close_with_error(cause.code, cause.text)

    def _fail_before_settings(self, cause: Cause) -> None:
        if cause.message is None:
            description = (
                "Received binary audio before Settings. Send Settings first; audio may follow "
                "at once, without waiting for SettingsApplied."
            )
        else:
            name = cause.message.name if isinstance(cause.message, m.Unsupported) else None
            description = (
                f"Received {name or cause.message.type} before Settings. The first message on "
                "a connection must be Settings."
            )
        self.host.close_with_error(codes.NON_SETTINGS_MESSAGE_BEFORE_SETTINGS, description)

    def _fail_settings_again(self, cause: Cause) -> None:
        self.host.close_with_error(
            codes.SETTINGS_ALREADY_APPLIED,
            "Settings were already applied to this connection; use UpdatePrompt, "
            "UpdateSpeak, UpdateThink or UpdateListen to change them.",
        )

    def _apply_settings(self, cause: Cause) -> None:
        assert cause.message is not None
        self.host.apply_settings(cause.message, cause.now)

    def _apply_update(self, cause: Cause) -> None:
        assert cause.message is not None
        self.host.apply_update(cause.message, cause.now)

    def _warn_unsupported(self, cause: Cause) -> None:
        name = cause.message.name if isinstance(cause.message, m.Unsupported) else "?"
        self.out.send(
            m.Warning(
                code=codes.UNSUPPORTED_MESSAGE,
                description=f"{name[:64]} is not supported by this server (Think Live and the "
                "custom think-provider pass-through are Deepgram-only); the message was ignored.",
            )
        )

    def _answer_function(self, cause: Cause) -> None:
        assert isinstance(cause.message, m.FunctionCallResponse)
        self.replies.rounds.answer(cause.message, cause.now)

    def _shut(self, cause: Cause) -> None:
        self.host.shut()

    # ------------------------------------------------------------------ the user's turn

    def _user_started(self, cause: Cause) -> None:
        self.out.send(m.UserStartedSpeaking())
        self.replies.keep_heard()  # the client drops what it has not played

    def _cancel_reply(self, cause: Cause) -> None:
        self.replies.cancel(cause.now)

    def _drop_guess(self, cause: Cause) -> None:
        guess, self.guess = self.guess, None
        assert guess is not None  # DROP_GUESS comes from states that have one
        self.out.cancel(guess.stt_job)

    def _reset_listener(self, cause: Cause) -> None:
        self.listener.reset()
        self._drop_check()

    def _transcribe_job(self, pcm: bytes) -> int:
        return self.out.start(TranscribeJob(self.out.new_id(), pcm, self.listen))

    def _guess(self, cause: Cause) -> None:
        assert cause.heard is not None
        self.guess = Guess(self._transcribe_job(cause.heard.pcm), cause.heard.pcm)

    def _final(self, pcm: bytes, cause: Cause, silence: float) -> None:
        self.guess = Guess(self._transcribe_job(pcm), pcm, ended_at=cause.now, silence=silence)

    def _transcribe(self, cause: Cause) -> None:
        assert cause.heard is not None
        self._final(cause.heard.pcm, cause, cause.heard.silence)

    def _transcribe_so_far(self, cause: Cause) -> None:
        pcm = self.listener.pcm()
        self.listener.reset()
        self._final(pcm, cause, 0.0)

    def _finalize_guess(self, cause: Cause) -> None:
        assert self.guess is not None
        self.guess.ended_at = cause.now
        self.guess.silence = cause.heard.silence if cause.heard is not None else 0.0

    def _merge(self, cause: Cause) -> None:
        assert self.guess is not None
        self.out.cancel(self.guess.stt_job)
        new = cause.heard.pcm if cause.heard is not None else self.listener.pcm()
        silence = cause.heard.silence if cause.heard is not None else 0.0
        self._final(self.guess.pcm + new, cause, silence)

    def _hold(self, cause: Cause) -> None:
        user = ChatMessage("user", cause.text)
        self.replies.start("llm", cause.now, (user,), held=True)

    def _announce_user(self, text: str) -> None:
        self.out.send(m.ConversationText(role="user", content=text))
        self.replies.history(m.History(role="user", content=text))
        self.replies.conversation.add_user(text)

    def _user_turn(self, cause: Cause) -> None:
        if isinstance(cause.message, m.InjectUserMessage):
            text, guess = cause.message.content, None
        else:
            text, guess, self.guess = cause.text, self.guess, None
        self._announce_user(text)
        self.out.send(m.AgentThinking(content=""))
        reply = self.replies.start("llm", cause.now)
        if guess is not None:
            self._time_turn(reply.timing, guess, cause.now)

    def _time_turn(self, timing: Timing, guess: Guess, now: float) -> None:
        timing.started, timing.eou_latency = guess.ended_at, guess.silence
        timing.stt_latency = now - guess.ended_at

    def _promote(self, cause: Cause) -> None:
        guess, self.guess = self.guess, None
        reply = self.replies.reply
        assert guess is not None and reply is not None
        if cause.heard is not None:
            guess.ended_at, guess.silence = cause.now, cause.heard.silence
        else:  # ForceEndTurn
            guess.ended_at, guess.silence = cause.now, 0.0
        self._announce_user(guess.text)
        self.out.send(m.AgentThinking(content=""))
        self._time_turn(reply.timing, guess, cause.now)
        self.replies.unpark(cause.now)

    def _held_failure(self, cause: Cause) -> None:
        guess, self.guess = self.guess, None
        reply = self.replies.reply
        assert guess is not None and reply is not None and reply.failure is not None
        self._announce_user(guess.text)
        self.replies.failed(codes.FAILED_TO_THINK, reply.failure, cause.now)

    def _warn_listen_failed(self, cause: Cause) -> None:
        self.out.send(m.Warning(code=codes.FAILED_TO_LISTEN, description=cause.text))

    # ------------------------------------------------------------------ the agent's turn

    def _say(self, cause: Cause) -> None:
        assert isinstance(cause.message, m.InjectAgentMessage)
        self.replies.say(cause.message.message, "inject", cause.now)

    def _refuse(self, cause: Cause) -> None:
        who = "the user is speaking" if self.turn is Turn.USER_SPEAKING else "the agent is replying"
        self.out.send(
            m.InjectionRefused(
                message=f"InjectAgentMessage refused because {who}; send it with behavior "
                "'queue' or 'interrupt', or retry when the agent is idle."
            )
        )

    def _queue(self, cause: Cause) -> None:
        assert isinstance(cause.message, m.InjectAgentMessage)
        self.queued.append(cause.message.message)

    def _think_error(self, cause: Cause) -> None:
        self.replies.failed(codes.FAILED_TO_THINK, cause.text, cause.now)

    def _speak_error(self, cause: Cause) -> None:
        self.replies.failed(codes.FAILED_TO_SPEAK, cause.text, cause.now)

    def _finish_reply(self, cause: Cause) -> None:
        self.replies.finish(cause.now)

    def _drain_queue(self, cause: Cause) -> None:
        if self.queued:
            text = self.queued.popleft()
            self.fire(Event.INJECT_AGENT, Cause(cause.now, m.InjectAgentMessage(message=text)))
