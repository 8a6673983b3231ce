"""A hypothesis state machine that tries to break a sans-I/O ``Session`` (issue 10).

It interleaves at random every client message (valid and malformed), binary audio, VAD frames,
output of live provider jobs (text, tool calls, audio, results, failures, warnings), late output
of cancelled jobs and clock ticks, and checks after every step:

* no exception escapes the session;
* a fatal ``Error`` (one followed by a close) is only ever one the protocol defines for the
  input that caused it;
* every ``FunctionCallRequest`` entry ends exactly once (cancelled, or answered: a History entry)
  and nothing ends a call twice; at the end every requested call has ended or is still open;
* after ``UserStartedSpeaking`` no audio goes out until a new sentence is announced (no audio of
  a cancelled reply);
* ``History`` repeats exactly the ``ConversationText`` that was sent, in order.

``tests/test_session_properties.py`` runs it briefly in ``make test``;
``benchmarks/session_fuzz.py`` runs it for 10^5 steps and more.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from harken.protocol import codes
from harken.protocol import messages as m
from harken.session.effects import (
    AudioChunk,
    CloseConnection,
    Effect,
    FunctionResult,
    JobDone,
    JobFailed,
    JobWarning,
    ProviderEvent,
    SendAudio,
    SendMessage,
    StartJob,
    TextDelta,
    TextScore,
    ToolCall,
    ToolCalls,
    Transcript,
    TurnScore,
)
from harken.session.listener import FRAME_SECONDS, ListenerConfig
from harken.session.session import Session, SessionLimits
from session_script import SETTINGS

FRAME = b"\x01\x00" * 512
LIMITS = SessionLimits(
    idle_timeout=30.0,
    function_call_timeout=4.0,
    max_duration=900.0,
    duration_warning=880.0,
    listener=ListenerConfig(),
)

TEXT_FATAL = {
    codes.UNPARSABLE_CLIENT_MESSAGE,
    codes.NON_SETTINGS_MESSAGE_BEFORE_SETTINGS,
    codes.SETTINGS_ALREADY_APPLIED,
    codes.INVALID_SETTINGS,
    codes.AGENT_ID_NOT_SUPPORTED,
}
FATAL_BY_INPUT: dict[str, set[str]] = {
    "text": TEXT_FATAL,
    "audio": {codes.NON_SETTINGS_MESSAGE_BEFORE_SETTINGS},
    "tick": {codes.CLIENT_MESSAGE_TIMEOUT, codes.MAXIMUM_SESSION_LENGTH_REACHED},
    "speech": set(),
    "provider": set(),
    "late": set(),
}


def _settings(greeting: bool, history: bool, container: str, flux: bool) -> dict[str, Any]:
    settings = json.loads(json.dumps(SETTINGS))
    if flux:  # semantic end of turn: the end-of-turn model is asked at each pause
        provider = {"type": "deepgram", "version": "v2", "model": "flux-general-en"}
        settings["agent"]["listen"] = {"provider": provider | {"eot_timeout_ms": 800}}
    if greeting:
        settings["agent"]["greeting"] = "Hello there. How can I help?"
    settings["flags"] = {"history": history}
    settings["audio"]["output"]["container"] = container
    return settings


words = st.sampled_from(["", " ", "Hi.", "What time is it?", "Sure, ", "the weather in Paris"])
texts = st.text(max_size=12)
behaviors = st.sampled_from([None, "default", "queue", "interrupt", "bogus"])

SETTINGS_MESSAGES = st.builds(
    _settings, st.booleans(), st.booleans(), st.sampled_from(["none", "wav"]), st.booleans()
)
CLIENT_MESSAGES = st.one_of(
    st.builds(lambda p: {"type": "UpdatePrompt", "prompt": p}, texts),
    st.just({"type": "UpdateSpeak", "speak": {"provider": {"type": "deepgram", "model": "x"}}}),
    st.just({"type": "UpdateThink", "think": {"provider": {"type": "open_ai", "model": "y"}}}),
    st.builds(lambda k: {"type": "UpdateListen", "listen": {"provider": {"keyterms": [k]}}}, texts),
    st.builds(lambda c: {"type": "InjectUserMessage", "content": c}, words),
    st.builds(
        lambda t, b: (
            {"type": "InjectAgentMessage", "message": t} | ({} if b is None else {"behavior": b})
        ),
        words,
        behaviors,
    ),
    st.just({"type": "ForceEndTurn"}),
    st.just({"type": "KeepAlive"}),
    st.just({"type": "UpdateThink_Live", "think_live": {}}),
    st.just({"type": "__customToThinkProvider", "payload": 1}),
)
# fatal on purpose: unknown or server-side types, bad fields, a second Settings, not JSON
MALFORMED = st.one_of(
    st.builds(lambda t: {"type": t}, st.sampled_from(["Nope", "Welcome", "", "SettingsApplied"])),
    st.builds(lambda c: {"type": "InjectUserMessage", "content": c}, st.integers()),
    st.just({"type": "InjectAgentMessage", "message": "x", "behavior": "bogus"}),
    SETTINGS_MESSAGES,
    st.binary(max_size=24),
    st.text(max_size=24),
)


class SessionMachine(RuleBasedStateMachine):
    steps_run = 0  # rules executed, over every run in this process (benchmarks/session_fuzz.py)
    states_seen: set[str] = set()

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.session = Session(
            generation=m.Generation.GA, request_id="fuzz", now=0.0, limits=LIMITS
        )
        self.jobs: dict[int, StartJob] = {}  # every job ever started
        self.requested: set[str] = set()
        self.ended: set[str] = set()
        self.said: list[tuple[str, str]] = []  # ConversationText (role, content)
        self.history: list[tuple[str, str]] = []
        self.history_on = True
        self.barged = False  # UserStartedSpeaking, and no sentence announced since
        self.closed = False
        self.steps = 0
        self._recorded: set[str] = set()  # call ids with a History entry
        self._check(self.session.effects(), "text")

    # ------------------------------------------------------------------ checking

    def _check(self, effects: list[Effect], cause: str) -> None:
        self.steps += 1
        closes = any(isinstance(e, CloseConnection) for e in effects)
        for effect in effects:
            if isinstance(effect, StartJob):
                self.jobs[effect.job.job_id] = effect
            elif isinstance(effect, SendAudio):
                assert not self.barged, "audio of a cancelled reply after UserStartedSpeaking"
            elif isinstance(effect, SendMessage):
                self._message(effect.message, cause, closes)
        if closes:
            assert not self.closed, "closed twice"
            self.closed = True

    def _message(self, msg: m.ServerMessage, cause: str, closes: bool) -> None:
        if isinstance(msg, m.Error):
            assert msg.code != codes.INTERNAL_SERVER_ERROR, msg.description
            if closes:
                assert msg.code in FATAL_BY_INPUT[cause], (cause, msg)
        elif isinstance(msg, m.LatencyReport | m.AgentStartedSpeaking):
            values = [getattr(msg, f) for f in msg.__slots__ if f.endswith("latency")]
            assert all(v is None or v >= 0 for v in values), msg
        elif isinstance(msg, m.SettingsApplied):
            settings = self.session.settings
            self.history_on = settings is not None and settings.flags.history
        elif isinstance(msg, m.UserStartedSpeaking):
            self.barged = True
        elif isinstance(msg, m.ConversationText):
            self.said.append((msg.role, msg.content))
            if msg.role == "assistant":
                self.barged = False
        elif isinstance(msg, m.History):
            self._history(msg)
        elif isinstance(msg, m.FunctionCallRequest):
            for call in msg.functions:
                assert call.id not in self.requested, "a call id requested twice"
                self.requested.add(call.id)
        elif isinstance(msg, m.FunctionCallCancelled):
            for call in msg.functions:
                self._end(call.id)
        elif isinstance(msg, m.FunctionCallResponse):  # a server-side call's result or failure
            self._end(msg.id)

    def _history(self, msg: m.History) -> None:
        assert self.history_on, "History sent with flags.history false"
        if msg.function_calls is not None:
            for call in msg.function_calls:  # a timed-out call is cancelled, then recorded
                assert call.id not in self._recorded, "a call recorded twice"
                self._recorded.add(call.id)
            return
        assert msg.role is not None and msg.content is not None
        self.history.append((msg.role, msg.content))

    def _end(self, call_id: str) -> None:
        assert call_id in self.requested, "cancelled a call that was never requested"
        assert call_id not in self.ended, "a call ended twice"
        self.ended.add(call_id)

    def _drain(self, cause: str) -> None:
        self._check(self.session.effects(), cause)

    # ------------------------------------------------------------------ client

    @initialize(first=st.integers(0, 9), message=SETTINGS_MESSAGES)
    def connect(self, first: int, message: dict[str, Any]) -> None:
        if first:  # most runs start as clients do; the rest try everything before Settings
            self.session.receive_text(json.dumps(message), self.now)
            self._drain("text")

    @rule(message=CLIENT_MESSAGES)
    def client_message(self, message: dict[str, Any]) -> None:
        self.session.receive_text(json.dumps(message), self.now)
        self._drain("text")

    @rule(rare=st.integers(0, 9), frame=MALFORMED)
    def malformed(self, rare: int, frame: dict[str, Any] | bytes | str) -> None:
        if rare:  # one step in ten: a malformed frame ends the session, so keep them rare
            return
        self.session.receive_text(
            frame if isinstance(frame, bytes | str) else json.dumps(frame), self.now
        )
        self._drain("text")

    @rule(loud=st.integers(1, 30), quiet=st.integers(1, 24))
    def utterance(self, loud: int, quiet: int) -> None:
        self.speech(True, loud)
        self.speech(False, quiet)

    @rule(size=st.integers(0, 2000))
    def audio(self, size: int) -> None:
        self.session.receive_audio(b"\0" * size, self.now)
        self._drain("audio")

    @rule(pick=st.integers(0, 1000), known=st.booleans(), content=texts)
    def function_response(self, pick: int, known: bool, content: str) -> None:
        ids = sorted(self.requested)
        call_id = ids[pick % len(ids)] if known and ids else f"call-{pick}"
        message = {"type": "FunctionCallResponse", "id": call_id, "name": "f", "content": content}
        self.session.receive_text(json.dumps(message), self.now)
        effects = self.session.effects()
        unknown = [
            e
            for e in effects
            if isinstance(e, SendMessage)
            and isinstance(e.message, m.Warning)
            and e.message.code == codes.UNKNOWN_FUNCTION_CALL_ID
        ]
        self._check(effects, "text")
        if not unknown and not self.closed:  # the client's answer ended its call
            self._end(call_id)

    # ------------------------------------------------------------------ voice

    @rule(loud=st.booleans(), n=st.integers(1, 25))
    def speech(self, loud: bool, n: int) -> None:
        for _ in range(n):
            self.now += FRAME_SECONDS
            self.session.receive_speech(0.9 if loud else 0.02, FRAME, self.now)
            self._drain("speech")

    # ------------------------------------------------------------------ providers

    @precondition(lambda self: bool(self.session.out.live))
    @rule(pick=st.integers(0, 1000), data=st.data())
    def provider_output(self, pick: int, data: st.DataObject) -> None:
        live = sorted(self.session.out.live)
        job_id = live[pick % len(live)]
        event = data.draw(_outputs(self.jobs[job_id].job.kind, job_id))
        self.session.receive_provider(event, self.now)
        self._drain("provider")

    @precondition(lambda self: len(self.jobs) > len(self.session.out.live))
    @rule(pick=st.integers(0, 1000), data=st.data())
    def late_output(self, pick: int, data: st.DataObject) -> None:
        dead = sorted(set(self.jobs) - set(self.session.out.live))
        job_id = dead[pick % len(dead)]
        event = data.draw(_outputs(self.jobs[job_id].job.kind, job_id))
        self.session.receive_provider(event, self.now)
        effects = self.session.effects()
        assert effects == [], f"output of a dead job did something: {effects}"
        self._check(effects, "late")

    # ------------------------------------------------------------------ time

    @rule(seconds=st.sampled_from([0.01, 0.1, 0.5, 2.0, 5.0, 31.0]))
    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while True:
            deadline = self.session.next_deadline()
            if deadline is None or deadline > end:
                break
            self.now = max(self.now, deadline)
            self.session.tick(self.now)
            self._drain("tick")
        self.now = end

    # ------------------------------------------------------------------ invariants

    @invariant()
    def count(self) -> None:
        SessionMachine.steps_run += 1
        SessionMachine.states_seen.add(self.session.state.value)

    @invariant()
    def history_repeats_the_conversation_text(self) -> None:
        if self.history_on:
            assert self.history == self.said

    @invariant()
    def every_requested_call_is_ended_or_open(self) -> None:
        if self.closed:
            return
        open_ids = set(self.session.turns.replies.rounds.calls.open)
        assert self.requested - self.ended <= open_ids, self.requested - self.ended - open_ids
        assert not (open_ids & self.ended)

    def teardown(self) -> None:
        self.session.connection_lost(self.now)
        self._drain("late")


@st.composite
def _outputs(draw: st.DrawFn, kind: str, job_id: int) -> ProviderEvent:
    end = st.sampled_from(
        [JobDone(job_id), JobFailed(job_id, "boom", True), JobWarning(job_id, "W", "slow")]
    )
    if kind == "transcribe":
        out: st.SearchStrategy[ProviderEvent] = st.builds(Transcript, st.just(job_id), words)
    elif kind == "think":
        calls = st.lists(
            st.builds(
                ToolCall,
                st.uuids().map(str),
                st.sampled_from(["get_weather", "lookup_order", "nope"]),
                st.just('{"location": "Paris"}'),
            ),
            min_size=1,
            max_size=2,
        ).map(lambda cs: ToolCalls(job_id, tuple(cs)))
        scores = st.builds(TextScore, st.just(job_id), st.sampled_from([None, 0.05, 0.5, 1.0]))
        out = st.builds(TextDelta, st.just(job_id), words) | calls | scores
    elif kind == "speak":
        out = st.builds(AudioChunk, st.just(job_id), st.sampled_from([b"", b"\x00\x01" * 480]))
    elif kind == "function":
        out = st.builds(FunctionResult, st.just(job_id), st.just('{"ok": true}'))
    elif kind == "turn":
        out = st.builds(TurnScore, st.just(job_id), st.sampled_from([0.0, 0.5, 0.7, 1.0]))
    else:
        out = st.nothing()
    return draw(out | end)
