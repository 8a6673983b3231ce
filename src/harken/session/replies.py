"""Replies: LLM rounds cut into sentences, sentences spoken, latencies reported. Pure.

A reply reports what changes the turn (its first audio, its end, a failure) to the table's
driver through ``fire``; everything inside a reply (sentences, parked audio while held, think
rounds around function calls) is here. Function calls themselves are in
:mod:`harken.session.rounds`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from harken.protocol import codes
from harken.protocol import messages as m
from harken.protocol.audio import bytes_to_seconds, wav_header
from harken.protocol.settings import AudioOutput, FunctionDef, SpeakConfig, ThinkConfig
from harken.session.effects import (
    AudioChunk,
    ChatMessage,
    JobFailed,
    PrimeJob,
    ProviderEvent,
    SpeakJob,
    TextDelta,
    ThinkJob,
    ToolCalls,
)
from harken.session.history import Conversation, Spoken
from harken.session.outbox import Outbox
from harken.session.reply import Reply, Said, Timing, split_sentences
from harken.session.rounds import Rounds
from harken.session.state import Event

SLOW_THINK_EVERY = 5.0

Fire = Callable[[Event, float, str], None]
"""Feed a turn event to the table's driver: ``fire(event, now, detail)``."""


@dataclass(slots=True)
class AgentState:
    """The live configuration; updates replace parts of it and apply from the next reply."""

    prompt: str = ""
    think: tuple[ThinkConfig, ...] = ()
    speak: tuple[SpeakConfig, ...] = ()
    output: AudioOutput = field(default_factory=AudioOutput)
    history: bool = True
    function_call_timeout: float = 60.0

    @property
    def functions(self) -> tuple[FunctionDef, ...]:
        return self.think[0].functions if self.think else ()

    @property
    def context_length(self) -> int | Literal["max"] | None:
        return self.think[0].context_length if self.think else None


class Replies:
    def __init__(self, out: Outbox, agent: AgentState, fire: Fire) -> None:
        self.out = out
        self.agent = agent
        self.fire = fire
        self.conversation = Conversation()
        self.reply: Reply | None = None
        self.rounds = Rounds(out, agent, self.history, self._next_round)
        self._next_reply = 1
        self.announced = 0  # sentences announced so far (each Said is numbered)
        self.heard_through: int | None = None  # reported playback (None: cut by the clock)
        self.score_held = False  # a held reply's LLM scores the end of the user's text

    # ------------------------------------------------------------------ starting

    def start(
        self,
        origin: Literal["llm", "inject", "greeting"],
        now: float,
        extra: tuple[ChatMessage, ...] = (),
        *,
        held: bool = False,
    ) -> Reply:
        reply = Reply(self._next_reply, origin, Timing(started=now), held=held)
        self._next_reply += 1
        self.reply = reply
        if origin == "llm":
            self._think(reply, now, extra)
        return reply

    def say(self, text: str, origin: Literal["inject", "greeting"], now: float) -> None:
        """Say ``text`` as the agent, without the LLM."""
        reply = self.start(origin, now)
        sentences, rest = split_sentences(text)
        reply.voice.queue.extend([*sentences, rest.strip()] if rest.strip() else sentences)
        self._speak_next(now)

    def _think(self, reply: Reply, now: float, extra: tuple[ChatMessage, ...] = ()) -> None:
        context = self.conversation.messages(self.agent.prompt, self.agent.context_length)
        job = ThinkJob(
            self.out.new_id(),
            self.agent.think,
            context + extra,
            self.agent.functions,
            end_score=reply.held and self.score_held,
            held=reply.held,
        )
        reply.thought.done = False
        if reply.timing.think_started is None:  # latencies count from the first round
            reply.timing.think_started = now
        reply.thought.job = self.out.start(job)

    def _next_round(self, reply: Reply, now: float) -> None:
        """Every function of the round has ended: think again with the results."""
        self.conversation.add_function_calls(c.history() for c in reply.thought.calls)
        reply.thought.calls = []
        self._think(reply, now)

    def prime(self) -> None:
        if self.agent.prompt:
            context = self.conversation.messages(self.agent.prompt, self.agent.context_length)
            self.out.start(PrimeJob(self.out.new_id(), self.agent.think, context[:1]))

    def unpark(self, now: float) -> None:
        """The turn is final: say what the held reply has already synthesised, then go on."""
        reply = self.reply
        assert reply is not None and reply.held  # the PROMOTE row comes from HELD only
        reply.held = False
        self.out.resume(reply.thought.job)  # the LLM paused after the first sentence
        parked, reply.parked = reply.parked, []
        for event in parked:  # chunks, then at most one JobDone or JobFailed: the last one
            self._speak_event(reply, event, now)
        if self.reply is not reply:  # the parked sentence failed, or was all there was to say
            return
        if reply.thought.done and reply.thought.tool_calls:
            self._end_round(reply, now)  # the guess asked for functions
        else:
            self._speak_next(now)

    # ------------------------------------------------------------------ provider output

    def on_think(self, event: ProviderEvent, now: float) -> None:
        reply = self.reply
        assert reply is not None and event.job_id == reply.thought.job  # live jobs only
        timing, thought = reply.timing, reply.thought
        if timing.first_token_at is None and isinstance(event, TextDelta | ToolCalls):
            timing.first_token_at = now
        if isinstance(event, TextDelta):
            if timing.first_text_at is None and event.text.strip():
                timing.first_text_at = now
            reply.voice.feed(event.text)
            thought.text += event.text
            self._speak_next(now)
        elif isinstance(event, ToolCalls):
            if timing.first_tool_at is None:
                timing.first_tool_at = now
            thought.tool_calls.extend(event.calls)
        else:  # JobDone or JobFailed: the LLM round is over
            self.out.done(event.job_id)
            thought.job, thought.done = None, True
            if isinstance(event, JobFailed):
                reply.failure = event.message
                self.fire(Event.THINK_FAILED, now, event.message)
                return
            reply.voice.flush()
            if thought.tool_calls and reply.held:  # a guess never calls functions: wait
                return
            self._end_round(reply, now)

    def _end_round(self, reply: Reply, now: float) -> None:
        thought = reply.thought
        if thought.tool_calls:  # the text before a tool call precedes it in the context
            reply.voice.round_ends.append(reply.voice.chunks)
            spoken = _spoken(reply.voice.said, thought.round)
            self.conversation.add_assistant(thought.text.strip(), spoken)
            thought.committed_round = thought.round
            thought.round += 1
            calls, thought.tool_calls = thought.tool_calls, []
            self.rounds.call(reply, calls, now)
        thought.text = ""
        self._speak_next(now)

    def on_speak(self, event: ProviderEvent, now: float) -> None:
        reply = self.reply
        assert reply is not None and event.job_id == reply.voice.job  # live jobs only
        if isinstance(event, AudioChunk) and event.data and reply.timing.first_chunk_at is None:
            reply.timing.first_chunk_at = now
        if reply.held:  # speculation: synthesise the first sentence, speak it once final
            reply.parked.append(event)
            return
        self._speak_event(reply, event, now)

    def _speak_event(self, reply: Reply, event: ProviderEvent, now: float) -> None:
        voice = reply.voice
        if isinstance(event, AudioChunk):
            self._announce_sentence(reply)
            if event.data:
                self._first_audio(reply, now)
                output = self.agent.output
                seconds = bytes_to_seconds(len(event.data), output.encoding, output.sample_rate)
                voice.said[-1].audio_seconds += seconds
                self.out.audio(event.data)
            return
        self.out.done(event.job_id)  # JobDone or JobFailed: this sentence is over
        voice.job = None
        if isinstance(event, JobFailed):
            self.fire(Event.SPEAK_FAILED, now, event.message)
            return
        self._announce_sentence(reply)
        self._speak_next(now)

    def on_function(self, event: ProviderEvent, now: float) -> None:
        self.rounds.on_job(event, now)

    # ------------------------------------------------------------------ speaking

    def _speak_next(self, now: float) -> None:
        reply = self.reply
        if reply is None or reply.voice.job is not None:
            return
        voice = reply.voice
        if voice.queue:
            text = voice.queue.popleft()
            voice.sentence, voice.announced = text, False
            if reply.timing.speak_started is None:
                reply.timing.speak_started = now
            job = SpeakJob(self.out.new_id(), text, self.agent.speak, self.agent.output)
            voice.job = self.out.start(job)
        elif reply.finished and not reply.held and not self.rounds.open_of(reply):
            self.fire(Event.REPLY_FINISHED, now, "")

    def _announce_sentence(self, reply: Reply) -> None:
        """ConversationText + History for the sentence, just before its first audio."""
        voice = reply.voice
        if voice.announced:
            return
        voice.announced = True
        self.announced += 1
        round_ = voice.round_of(len(voice.said))
        voice.said.append(Said(voice.sentence, round_, number=self.announced))
        self.out.send(m.ConversationText(role="assistant", content=voice.sentence))
        self.history(m.History(role="assistant", content=voice.sentence))

    def _first_audio(self, reply: Reply, now: float) -> None:
        if reply.timing.audio_started is not None:
            return
        reply.timing.audio_started = now
        if reply.origin == "llm":
            self._latency(reply.timing, now)
        output = self.agent.output
        if output.container == "wav":
            self.out.audio(wav_header(output.sample_rate, output.encoding))
        self.fire(Event.AUDIO_STARTED, now, "")

    def _latency(self, t: Timing, now: float) -> None:
        think_started = t.think_started if t.think_started is not None else t.started
        first_token = t.first_token_at if t.first_token_at is not None else now
        first_text = t.first_text_at if t.first_text_at is not None else now
        speak_started = t.speak_started if t.speak_started is not None else now
        first_chunk = t.first_chunk_at if t.first_chunk_at is not None else now
        total, tts = now - t.started, first_chunk - speak_started
        ttt = first_text - think_started
        self.out.send(
            m.AgentStartedSpeaking(
                total_latency=round(total, 4), tts_latency=round(tts, 4), ttt_latency=round(ttt, 4)
            )
        )
        tool = None if t.first_tool_at is None else t.first_tool_at - think_started
        self.out.send(
            m.LatencyReport(
                total_latency=_r(total),
                ttt_token_latency=_r(first_token - think_started),
                ttt_text_latency=_r(speak_started - think_started),
                ttt_tool_latency=_r(tool),
                tts_latency=_r(tts),
                stt_latency=_r(t.stt_latency),
                eou_latency=_r(t.eou_latency),
            )
        )

    # ------------------------------------------------------------------ ending

    def finish(self, now: float) -> None:
        """Every word said, every function answered: the reply joins the conversation."""
        reply = self.reply
        assert reply is not None  # REPLY_FINISHED comes from the reply in progress
        if reply.timing.audio_started is not None:
            self.out.send(m.AgentAudioDone())
        said = reply.uncommitted_said()
        self.conversation.add_assistant(" ".join(s.text for s in said), _numbered(said))
        self.reply = None

    def failed(self, code: str, message: str, now: float) -> None:
        """A provider failed after its fallbacks: say so (non-fatal) and end the reply."""
        what = "think" if code == codes.FAILED_TO_THINK else "speak"
        self.out.send(m.Error(code=code, description=f"Failed to {what}: {message}"))
        self.cancel(now)

    def cancel(self, now: float) -> None:
        """Stop the reply in progress: cancel its jobs, void its open calls exactly once."""
        reply = self.reply
        assert reply is not None  # CANCEL_REPLY comes from states that have a reply
        self.reply = None
        # keep only what the client played (reported), or can have played by now (DESIGN.md 4.10)
        started = reply.timing.audio_started
        if self.heard_through is None:
            text = reply.uncommitted(0.0 if started is None else now - started)
        else:
            text = " ".join(
                s.text for s in reply.uncommitted_said() if s.number <= self.heard_through
            )
        self.conversation.add_assistant(text)
        self.out.cancel(reply.thought.job)
        self.out.cancel(reply.voice.job)
        self.rounds.cancel(reply)
        if started is not None:
            self.out.send(m.AgentAudioDone())

    def audio_ahead(self, now: float) -> float | None:
        """Seconds of the reply's audio sent and not yet played by ``now`` (if played at real
        time from its first frame); ``None`` while no reply is being heard."""
        reply = self.reply
        if reply is None or reply.held or reply.timing.audio_started is None:
            return None
        sent = sum(s.audio_seconds for s in reply.voice.said)
        return reply.timing.audio_started + sent - now

    # ------------------------------------------------------------------ what was heard

    def played(self, through: int) -> None:
        """The client played the agent's sentences up to number ``through`` (a phone carrier
        echoes a mark after each): from now on, history is cut to what it reports."""
        self.heard_through = max(self.heard_through or 0, through)

    def keep_heard(self) -> None:
        """The user starts speaking: whatever the client has not played is cut from history
        (the client drops it); without playback reports the clock estimate stands."""
        if self.heard_through is not None:
            self.conversation.keep_heard(self.heard_through)

    # ------------------------------------------------------------------ time

    def next_deadline(self) -> float | None:
        deadlines = [d for d in (self.rounds.next_deadline(), self._slow_deadline()) if d]
        return min(deadlines) if deadlines else None

    def _slow_deadline(self) -> float | None:
        reply = self.reply
        if reply is None or reply.thought.job is None or reply.timing.first_token_at is not None:
            return None
        assert reply.timing.think_started is not None
        return reply.timing.think_started + SLOW_THINK_EVERY * (reply.timing.slow_warnings + 1)

    def tick(self, now: float) -> None:
        self.rounds.tick(now)
        deadline = self._slow_deadline()
        if deadline is None or now < deadline:
            return
        timing = self.reply.timing if self.reply is not None else None
        assert timing is not None and timing.think_started is not None
        waited = int((now - timing.think_started) // SLOW_THINK_EVERY)
        timing.slow_warnings = max(timing.slow_warnings + 1, waited)  # float-proof: it moves
        self.out.send(
            m.Warning(
                code=codes.SLOW_THINK_REQUEST,
                description=f"We have now waited {timing.slow_warnings * SLOW_THINK_EVERY:g} "
                "seconds for a think response.",
            )
        )

    def history(self, message: m.History) -> None:
        """Send a History message unless the client turned them off (flags.history)."""
        if self.agent.history:
            self.out.send(message)


def _r(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 4)


def _numbered(said: list[Said]) -> Spoken:
    pairs = [(s.number, s.text) for s in said]
    return lambda: pairs


def _spoken(said: list[Said], round_: int) -> Spoken:
    """A round's sentences, read when needed: they may be announced after the round ended."""
    return lambda: [(s.number, s.text) for s in said if s.round == round_]
