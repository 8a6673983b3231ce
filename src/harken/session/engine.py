"""The conversation engine: replies, sentences, speech, function calls, history.

Pure: it reacts to calls from :class:`harken.session.session.Session` and queues effects in the
shared :class:`Outbox`. Turn changes go through :func:`harken.session.state.transition` only.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from harken.protocol import codes
from harken.protocol import messages as m
from harken.protocol.audio import bytes_to_seconds, wav_header
from harken.protocol.settings import (
    AudioOutput,
    FunctionDef,
    ListenConfig,
    SpeakConfig,
    ThinkConfig,
)
from harken.session.effects import (
    AudioChunk,
    ChatMessage,
    FunctionJob,
    FunctionResult,
    JobFailed,
    JobWarning,
    PrimeJob,
    ProviderEvent,
    SpeakJob,
    TextDelta,
    ThinkJob,
    ToolCall,
    ToolCalls,
    TranscribeJob,
    Transcript,
)
from harken.session.functions import Call, CallTable, Outcome
from harken.session.history import Conversation
from harken.session.listener import ListenEvent
from harken.session.outbox import Outbox
from harken.session.reply import Reply, Said, split_sentences
from harken.session.state import Turn, TurnEvent, transition

SLOW_THINK_EVERY = 5.0


@dataclass(slots=True)
class AgentState:
    """The live configuration; updates replace parts of it and apply from the next reply."""

    prompt: str = ""
    think: tuple[ThinkConfig, ...] = ()
    speak: tuple[SpeakConfig, ...] = ()
    output: AudioOutput = field(default_factory=AudioOutput)
    history: bool = True
    experimental: bool = False
    function_call_timeout: float = 60.0

    @property
    def functions(self) -> tuple[FunctionDef, ...]:
        return self.think[0].functions if self.think else ()

    @property
    def context_length(self) -> int | Literal["max"] | None:
        return self.think[0].context_length if self.think else None


@dataclass(slots=True)
class Guess:
    """Speech-to-text of the user's turn: speculative at the first pause, or final."""

    stt_job: int | None
    text: str | None = None
    final: bool = False  # the turn has ended: this transcript is the user's turn
    ended_at: float = 0.0
    pcm: bytes = b""  # the audio being transcribed
    silence: float = 0.0  # the silence that ended the turn


class Engine:
    def __init__(self, outbox: Outbox, agent: AgentState, conversation: Conversation) -> None:
        self.out = outbox
        self.agent = agent
        self.conversation = conversation
        self.turn = Turn.LISTENING
        self.reply: Reply | None = None
        self.calls = CallTable()
        self.queued_agent_messages: deque[str] = deque()
        self.guess: Guess | None = None  # speech-to-text of the turn in progress
        self.speculate = True
        self._next_reply = 1

    # ------------------------------------------------------------------ turn table

    def _event(self, event: TurnEvent, now: float) -> None:
        row = transition(self.turn, event)
        if row.cancel_reply:
            self.cancel_reply(now)
        self.turn = row.next

    # ------------------------------------------------------------------ listening

    def hear(self, event: ListenEvent, listen: ListenConfig | None, now: float) -> None:
        """What the listener made of the user's audio (onset, pause, resume, end of turn)."""
        if event.kind == "onset":
            self._drop_guess(now, keep_final=True)
            self.speech_started(now)
        elif event.kind == "resume":
            self._drop_guess(now)
        elif listen is None:  # a text-only agent: audio turns are not transcribed
            if event.kind == "end":
                self._discard(now)
        elif event.kind == "pause":
            if self.speculate and self.guess is None:
                job = TranscribeJob(self.out.new_id(), event.pcm, listen)
                self.guess = Guess(self.out.start(job), pcm=event.pcm)
        elif self.guess is None:
            job = TranscribeJob(self.out.new_id(), event.pcm, listen)
            self.guess = self._final_guess(job, now, event.silence)
        elif self.guess.final:  # the previous turn is still being transcribed: one turn of both
            pcm = self.guess.pcm + event.pcm
            self.out.cancel(self.guess.stt_job)
            job = TranscribeJob(self.out.new_id(), pcm, listen)
            self.guess = self._final_guess(job, now, event.silence)
        else:
            self.guess.final, self.guess.ended_at, self.guess.silence = True, now, event.silence
            if self.guess.text is not None:
                self._promote(self.guess, now)

    def _final_guess(self, job: TranscribeJob, now: float, silence: float) -> Guess:
        stt_job = self.out.start(job)
        return Guess(stt_job, final=True, ended_at=now, pcm=job.pcm16k, silence=silence)

    def _transcript(self, event: Transcript, now: float) -> None:
        guess = self.guess
        assert guess is not None and guess.stt_job == event.job_id  # live jobs only
        guess.stt_job, guess.text = None, event.text.strip()
        if guess.final:
            self._promote(guess, now)
        elif guess.text and self.reply is None:  # speculate: think now, speak once final
            user = ChatMessage("user", guess.text)
            reply = self._start_reply("llm", now, extra=(user,))
            reply.held = True

    def _promote(self, guess: Guess, now: float) -> None:
        """The turn is final: the guessed reply (if any) becomes the reply."""
        self.guess = None
        if not guess.text:
            self._discard(now)
            return
        held = self.reply if self.reply is not None and self.reply.held else None
        self.user_text(guess.text, now, held=held, turn=guess)

    def _discard(self, now: float) -> None:
        if self.turn is Turn.USER_SPEAKING:
            self._event(TurnEvent.SPEECH_DISCARDED, now)

    def _drop_guess(self, now: float, *, keep_final: bool = False) -> None:
        guess = self.guess
        if guess is None or (keep_final and guess.final):
            return
        self.guess = None
        self.out.cancel(guess.stt_job)
        if self.reply is not None and self.reply.held:
            self.cancel_reply(now)

    # ------------------------------------------------------------------ inputs

    def speech_started(self, now: float) -> None:
        """VAD onset. While the agent replies this is barge-in (a row of the table)."""
        if self.turn is not Turn.USER_SPEAKING:
            self.out.send(m.UserStartedSpeaking())
        self._event(TurnEvent.SPEECH_STARTED, now)

    def user_text(
        self, text: str, now: float, *, held: Reply | None = None, turn: Guess | None = None
    ) -> None:
        """A final user turn (end of turn after STT, or InjectUserMessage).

        ``held`` is the reply speculation already prepared for this text; ``turn`` is the spoken
        turn it came from (latencies count from its end).
        """
        if held is None:
            self._drop_guess(now)
        self._event(TurnEvent.USER_TURN_ENDED, now)
        self.out.send(m.ConversationText(role="user", content=text))
        self._history(m.History(role="user", content=text))
        self.conversation.add_user(text)
        reply = self._start_reply("llm", now) if held is None else held
        if turn is not None:
            reply.started, reply.eou_latency = turn.ended_at, turn.silence
            reply.stt_latency = now - turn.ended_at
        if held is not None:
            self._unpark(held, now)

    def _unpark(self, reply: Reply, now: float) -> None:
        """The turn is final: say what the held reply has already synthesised, then go on."""
        reply.held = False
        if reply.held_failure is not None:
            self._reply_failed(reply, codes.FAILED_TO_THINK, reply.held_failure, now)
            return
        parked, reply.parked = reply.parked, []
        for event in parked:  # chunks, then at most one JobDone or JobFailed: the last one
            self._speak_event(event, now)
        if reply.tool_calls and self.reply is reply:  # the guess asked for functions
            self._end_round(reply, now)
        else:
            self._speak_next(now)

    def agent_text(self, text: str, origin: Literal["inject", "greeting"], now: float) -> None:
        """Say ``text`` as the agent, without the LLM."""
        self._event(TurnEvent.AGENT_MESSAGE, now)
        reply = self._start_reply(origin, now)
        sentences, rest = split_sentences(text)
        reply.queue.extend([*sentences, rest.strip()] if rest.strip() else sentences)
        self._speak_next(now)

    def inject_agent(self, msg: m.InjectAgentMessage, now: float) -> None:
        busy = self.turn is not Turn.LISTENING
        if not busy or msg.behavior == "interrupt":
            self.agent_text(msg.message, "inject", now)
        elif msg.behavior == "queue":
            self.queued_agent_messages.append(msg.message)
        else:
            who = "the user is speaking" if self.turn is Turn.USER_SPEAKING else "the agent is"
            who += "" if self.turn is Turn.USER_SPEAKING else " replying"
            self.out.send(
                m.InjectionRefused(
                    message=f"InjectAgentMessage refused because {who}; "
                    "send it with behavior 'queue' or 'interrupt', or retry when the agent is idle."
                )
            )

    def function_response(self, msg: m.FunctionCallResponse, now: float) -> None:
        call = self.calls.open.get(msg.id)
        if call is None or not call.client_side:
            self.out.send(
                m.Warning(
                    code=codes.UNKNOWN_FUNCTION_CALL_ID,
                    description=f"No client-side function call with id '{msg.id}' is waiting for "
                    "an answer; it may have been answered already, cancelled or timed out.",
                )
            )
            return
        self._finish_call(call, "result", msg.content, now)

    # ------------------------------------------------------------------ provider output

    def on_provider(self, event: ProviderEvent, kind: str, now: float) -> None:
        """Output of a live job (the session already dropped dead jobs)."""
        if isinstance(event, JobWarning):
            self.out.send(m.Warning(code=event.code, description=event.description))
            return
        if kind == "prime":
            return
        if kind == "transcribe":
            if isinstance(event, Transcript):
                self._transcript(event, now)
            elif isinstance(event, JobFailed):
                self.out.send(m.Warning(code=codes.FAILED_TO_LISTEN, description=event.message))
                self.guess = None
                self._discard(now)
        elif kind == "function":
            self._function_event(event, now)
        elif kind == "think":
            self._think_event(event, now)
        else:
            self._speak_event(event, now)

    def _think_event(self, event: ProviderEvent, now: float) -> None:
        reply = self.reply
        assert reply is not None and event.job_id == reply.think_job  # live jobs only
        if isinstance(event, TextDelta):
            reply.feed(event.text, now)
            reply.round_text += event.text
            self._speak_next(now)
        elif isinstance(event, ToolCalls):
            reply.tool_calls.extend(event.calls)
        else:  # JobDone or JobFailed: the LLM round is over
            self.out.done(event.job_id)
            reply.think_job = None
            reply.think_done = True
            if isinstance(event, JobFailed):
                if reply.held:  # a guess: the user may still go on; say it once the turn is final
                    reply.held_failure = event.message
                    return
                self._reply_failed(reply, codes.FAILED_TO_THINK, event.message, now)
                return
            reply.flush()
            if reply.tool_calls and reply.held:  # a guess never calls functions: wait for the turn
                return
            self._end_round(reply, now)

    def _end_round(self, reply: Reply, now: float) -> None:
        if reply.tool_calls:  # the text before a tool call precedes it in the context
            self.conversation.add_assistant(reply.round_text.strip())
            reply.committed_round = reply.round
            reply.round += 1
            self._call_functions(reply, now)
        reply.round_text = ""
        self._speak_next(now)

    def _speak_event(self, event: ProviderEvent, now: float) -> None:
        reply = self.reply
        assert reply is not None and event.job_id == reply.speak_job  # live jobs only
        if isinstance(event, AudioChunk) and event.data and reply.first_chunk_at is None:
            reply.first_chunk_at = now
        if reply.held:  # speculation: synthesise the first sentence, speak it once final
            reply.parked.append(event)
            return
        if isinstance(event, AudioChunk):
            self._announce_sentence(reply, now)
            if event.data:
                self._first_audio(reply, now)
                output = self.agent.output
                seconds = bytes_to_seconds(len(event.data), output.encoding, output.sample_rate)
                reply.said[-1].audio_seconds += seconds
                self.out.audio(event.data)
        else:  # JobDone or JobFailed: this sentence is over
            self.out.done(event.job_id)
            reply.speak_job = None
            if isinstance(event, JobFailed):
                self._reply_failed(reply, codes.FAILED_TO_SPEAK, event.message, now)
                return
            self._announce_sentence(reply, now)
            self._speak_next(now)

    def _function_event(self, event: ProviderEvent, now: float) -> None:
        call = self.calls.by_job(event.job_id)
        assert call is not None  # a live function job always has its open call
        self.out.done(event.job_id)
        if isinstance(event, FunctionResult):
            self._finish_call(call, "result", event.content, now)
        else:
            reason = event.message if isinstance(event, JobFailed) else "it returned no result"
            self._function_failed(call, reason, now)

    # ------------------------------------------------------------------ replies

    def _start_reply(
        self,
        origin: Literal["llm", "inject", "greeting"],
        now: float,
        extra: tuple[ChatMessage, ...] = (),
    ) -> Reply:
        reply = Reply(reply_id=self._next_reply, origin=origin, started=now)
        self._next_reply += 1
        self.reply = reply
        if origin == "llm":
            self._think(reply, now, extra)
        return reply

    def _think(self, reply: Reply, now: float, extra: tuple[ChatMessage, ...] = ()) -> None:
        context = self.conversation.messages(self.agent.prompt, self.agent.context_length)
        context += extra
        think, functions = self.agent.think, self.agent.functions
        reply.think_done = False
        reply.think_started = now
        reply.think_job = self.out.start(ThinkJob(self.out.new_id(), think, context, functions))

    def prime(self) -> None:
        if self.agent.prompt:
            context = self.conversation.messages(self.agent.prompt, self.agent.context_length)
            think = self.agent.think
            self.out.start(PrimeJob(self.out.new_id(), think, context[:1]))

    def _speak_next(self, now: float) -> None:
        reply = self.reply
        if reply is None or reply.speak_job is not None:
            return
        if reply.queue:
            text = reply.queue.popleft()
            speak, output = self.agent.speak, self.agent.output
            reply.speak_sentence = text
            reply.sentence_announced = False
            reply.speak_started = now
            reply.speak_job = self.out.start(SpeakJob(self.out.new_id(), text, speak, output))
        elif reply.finished and not reply.held and not self.calls.of_reply(reply.reply_id):
            self._finish_reply(reply, now)

    def _announce_sentence(self, reply: Reply, now: float) -> None:
        """ConversationText + History for the sentence, just before its first audio."""
        if reply.sentence_announced:
            return
        reply.sentence_announced = True
        text = reply.speak_sentence
        reply.said.append(Said(text, reply.round))
        self.out.send(m.ConversationText(role="assistant", content=text))
        self._history(m.History(role="assistant", content=text))

    def _first_audio(self, reply: Reply, now: float) -> None:
        if reply.audio_started is not None:
            return
        reply.audio_started = now
        if reply.origin == "llm":
            self._latency(reply, now)
        if self.agent.output.container == "wav":
            self.out.audio(wav_header(self.agent.output.sample_rate, self.agent.output.encoding))
        self._event(TurnEvent.AUDIO_STARTED, now)

    def _latency(self, reply: Reply, now: float) -> None:
        think_started = reply.think_started if reply.think_started is not None else reply.started
        first_text = reply.first_text_at if reply.first_text_at is not None else now
        speak_started = reply.speak_started if reply.speak_started is not None else now
        first_chunk = reply.first_chunk_at if reply.first_chunk_at is not None else now
        total, ttt = now - reply.started, first_text - think_started
        tts = first_chunk - speak_started
        self.out.send(
            m.AgentStartedSpeaking(
                total_latency=round(total, 4), tts_latency=round(tts, 4), ttt_latency=round(ttt, 4)
            )
        )
        if self.agent.experimental:
            self.out.send(
                m.LatencyReport(
                    total_latency=round(total, 4),
                    ttt_token_latency=round(ttt, 4),
                    ttt_text_latency=round(speak_started - think_started, 4),
                    tts_latency=round(tts, 4),
                    stt_latency=_rounded(reply.stt_latency),
                    eou_latency=_rounded(reply.eou_latency),
                )
            )

    def _finish_reply(self, reply: Reply, now: float) -> None:
        if reply.audio_started is not None:
            self.out.send(m.AgentAudioDone())
        self.conversation.add_assistant(reply.uncommitted())
        self.reply = None
        self._event(TurnEvent.REPLY_FINISHED, now)
        if self.queued_agent_messages:
            self.agent_text(self.queued_agent_messages.popleft(), "inject", now)

    def _reply_failed(self, reply: Reply, code: str, message: str, now: float) -> None:
        """A provider failed after its fallbacks: say so (non-fatal) and end the reply."""
        what = "think" if code == codes.FAILED_TO_THINK else "speak"
        self.out.send(m.Error(code=code, description=f"Failed to {what}: {message}"))
        self.cancel_reply(now)
        self._event(TurnEvent.REPLY_FINISHED, now)

    def cancel_reply(self, now: float) -> None:
        """Stop the reply in progress: cancel its jobs, void its open calls exactly once."""
        reply = self.reply
        assert reply is not None  # THINKING and AGENT_SPEAKING always have a reply
        self.reply = None
        # keep only what the client can have played by now (DESIGN.md 4.10)
        played = now - reply.audio_started if reply.audio_started is not None else 0.0
        self.conversation.add_assistant(reply.uncommitted(played))
        self.out.cancel(reply.think_job)
        self.out.cancel(reply.speak_job)
        cancelled = []
        for call in self.calls.of_reply(reply.reply_id):
            self.out.cancel(call.job_id)
            self.calls.finish(call, "cancelled", "")
            cancelled.append(m.CancelledFunction(id=call.id, name=call.name))
        if cancelled:
            self.out.send(m.FunctionCallCancelled(functions=tuple(cancelled)))
        if reply.audio_started is not None:
            self.out.send(m.AgentAudioDone())

    # ------------------------------------------------------------------ function calls

    def _call_functions(self, reply: Reply, now: float) -> None:
        defined = {f.name: f for f in self.agent.functions}
        requested: list[m.FunctionCall] = []
        calls = [self._open_call(tc, defined.get(tc.name), reply, now) for tc in reply.tool_calls]
        reply.tool_calls = []
        for call in calls:
            if call.function is None:
                self._function_failed(call, f"the model called unknown function {call.name!r}", now)
                continue
            requested.append(
                m.FunctionCall(
                    id=call.id,
                    name=call.name,
                    arguments=call.arguments,
                    client_side=call.client_side,
                )
            )
        if requested:
            self.out.send(m.FunctionCallRequest(functions=tuple(requested)))
        for call in calls:
            if call.function is not None and not call.client_side:
                fn_job = FunctionJob(self.out.new_id(), call.id, call.function, call.arguments)
                call.job_id = self.out.start(fn_job)

    def _open_call(
        self, tc: ToolCall, function: FunctionDef | None, reply: Reply, now: float
    ) -> Call:
        call = Call(tc.id, tc.name, tc.arguments, function, reply.reply_id, started=now)
        self.calls.add(call)
        reply.round_calls.append(call)
        return call

    def _function_failed(self, call: Call, message: str, now: float) -> None:
        self.out.send(
            m.Warning(
                code=codes.FUNCTION_CALL_FAILED, description=f"Function {call.name}: {message}"
            )
        )
        self._finish_call(call, "failed", json.dumps({"error": message}), now)

    def _finish_call(self, call: Call, outcome: Outcome, response: str, now: float) -> None:
        self.calls.finish(call, outcome, response)
        if not call.client_side and outcome == "result":
            self.out.send(m.FunctionCallResponse(id=call.id, name=call.name, content=response))
        self._history(m.History(function_calls=(call.history(),)))
        reply = self.reply
        assert reply is not None and reply.reply_id == call.reply_id  # others were cancelled
        if self.calls.of_reply(reply.reply_id):
            return  # wait for the other calls of this round
        self.conversation.add_function_calls(c.history() for c in reply.round_calls)
        reply.round_calls = []
        self._think(reply, now)

    # ------------------------------------------------------------------ time

    def next_deadline(self) -> float | None:
        deadlines = []
        calls = self.calls.oldest_deadline(self.agent.function_call_timeout)
        if calls is not None:
            deadlines.append(calls)
        reply = self.reply
        if reply is not None and reply.think_job is not None and reply.first_text_at is None:
            assert reply.think_started is not None
            deadlines.append(reply.think_started + SLOW_THINK_EVERY * (reply.slow_warnings + 1))
        return min(deadlines) if deadlines else None

    def tick(self, now: float) -> None:
        timeout = self.agent.function_call_timeout
        for call in list(self.calls.open.values()):
            if call.client_side and call.job_id is None and now >= call.started + timeout:
                cancelled = m.CancelledFunction(id=call.id, name=call.name)
                self.out.send(m.FunctionCallCancelled(functions=(cancelled,)))
                self._function_failed(call, f"no FunctionCallResponse within {timeout:g} s", now)
        reply = self.reply
        if reply is None or reply.think_job is None or reply.first_text_at is not None:
            return
        assert reply.think_started is not None
        waited = now - reply.think_started
        if waited >= SLOW_THINK_EVERY * (reply.slow_warnings + 1):
            reply.slow_warnings = int(waited // SLOW_THINK_EVERY)
            self.out.send(
                m.Warning(
                    code=codes.SLOW_THINK_REQUEST,
                    description=f"We have now waited {reply.slow_warnings * SLOW_THINK_EVERY:g} "
                    "seconds for a think response.",
                )
            )

    def _history(self, message: m.History) -> None:
        if self.agent.history:
            self.out.send(message)


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 4)
