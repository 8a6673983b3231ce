"""Replies, injections, function calls and faults in the sans-I/O session (virtual time)."""

from __future__ import annotations

import json

import pytest

from harken.protocol import codes
from harken.protocol import messages as m
from harken.session.effects import (
    AudioChunk,
    FunctionJob,
    FunctionResult,
    JobDone,
    JobFailed,
    JobWarning,
    PrimeJob,
    SpeakJob,
    TextDelta,
    ThinkJob,
    ToolCall,
    ToolCalls,
)
from harken.session.listener import ListenEvent
from harken.session.session import SessionLimits
from harken.session.state import Turn
from session_script import SETTINGS, Script, job, jobs, messages, one, types

AUDIO = b"\x01\x00" * 480


def ready(**agent: object) -> Script:
    s = Script()
    s.settings(**agent)
    return s


def ask(s: Script, text: str = "What is up?") -> ThinkJob:
    return job(s.text({"type": "InjectUserMessage", "content": text}), ThinkJob)


def speak_all(s: Script, speak: SpeakJob, chunks: int = 2) -> list[object]:
    out: list[object] = []
    for _ in range(chunks):
        out += s.provider(AudioChunk(speak.job_id, AUDIO))
    out += s.provider(JobDone(speak.job_id))
    return out


def test_full_reply_order_and_latencies() -> None:
    s = ready()
    effects = s.text({"type": "InjectUserMessage", "content": "Hi there"})
    assert types(effects) == ["ConversationText", "History", "AgentThinking", "start:think"]
    think = job(effects, ThinkJob)
    assert [(x.role, x.content) for x in think.messages] == [
        ("system", "You are terse."),
        ("user", "Hi there"),
    ]
    assert [f.name for f in think.functions] == ["get_weather", "lookup_order"]
    s.now = 0.3
    effects = s.provider(TextDelta(think.job_id, "Hello there. How"))
    speak1 = job(effects, SpeakJob)
    assert speak1.text == "Hello there."
    s.now = 0.5
    effects = s.provider(AudioChunk(speak1.job_id, AUDIO))
    assert types(effects) == [
        "ConversationText",
        "History",
        "AgentStartedSpeaking",
        "LatencyReport",
        "audio",
    ]
    started = one(effects, m.AgentStartedSpeaking)
    assert (started.total_latency, started.ttt_latency, started.tts_latency) == (0.5, 0.3, 0.2)
    assert s.session.turns.turn is Turn.AGENT_SPEAKING
    assert types(s.provider(AudioChunk(speak1.job_id, AUDIO))) == ["audio"]
    assert s.provider(TextDelta(think.job_id, " are you?")) == []  # waits for the TTS job
    assert types(s.provider(JobDone(think.job_id))) == []
    effects = s.provider(JobDone(speak1.job_id))
    speak2 = job(effects, SpeakJob)
    assert speak2.text == "How are you?"
    effects = speak_all(s, speak2)
    assert types(effects) == ["ConversationText", "History", "audio", "audio", "AgentAudioDone"]
    assert s.session.turns.turn is Turn.LISTENING
    assert set(s.session.out.live.values()) == {"prime"}
    # the next turn sees the whole conversation
    think2 = ask(s, "And then?")
    assert [x.content for x in think2.messages][1:] == [
        "Hi there",
        "Hello there. How are you?",
        "And then?",
    ]


def test_latency_report_when_experimental() -> None:
    s = Script()
    s.text(dict(SETTINGS, experimental=True))
    think = ask(s)
    speak = job(s.provider(TextDelta(think.job_id, "Yes. ")), SpeakJob)
    effects = s.provider(AudioChunk(speak.job_id, AUDIO))
    assert types(effects)[2:4] == ["AgentStartedSpeaking", "LatencyReport"]


def test_history_can_be_turned_off() -> None:
    s = Script()
    s.text(dict(SETTINGS, flags={"history": False}))
    effects = s.text({"type": "InjectUserMessage", "content": "hi"})
    assert "History" not in types(effects)


def test_wav_container_sends_one_header_per_response() -> None:
    s = Script()
    settings = json.loads(json.dumps(SETTINGS))
    settings["audio"]["output"]["container"] = "wav"
    s.text(settings)
    think = ask(s)
    speak = job(s.provider(TextDelta(think.job_id, "One. Two. ")), SpeakJob)
    effects = s.provider(AudioChunk(speak.job_id, AUDIO))
    audio = [e for e in effects if type(e).__name__ == "SendAudio"]
    assert audio[0].data[:4] == b"RIFF"  # type: ignore[attr-defined]
    assert len(audio) == 2
    effects = s.provider(JobDone(speak.job_id))
    speak2 = job(effects, SpeakJob)
    effects = s.provider(AudioChunk(speak2.job_id, AUDIO))
    assert types(effects).count("audio") == 1  # no second header within the response


def test_reply_without_text_ends_quietly() -> None:
    s = ready()
    think = ask(s)
    assert types(s.provider(JobDone(think.job_id))) == []
    assert s.session.turns.turn is Turn.LISTENING


def test_empty_audio_chunk_announces_text_without_audio() -> None:
    s = ready()
    think = ask(s)
    speak = job(s.provider(TextDelta(think.job_id, "Hm.\n")), SpeakJob)
    assert types(s.provider(AudioChunk(speak.job_id, b""))) == ["ConversationText", "History"]
    s.provider(JobDone(think.job_id))
    assert types(s.provider(JobDone(speak.job_id))) == []  # no audio, so no AgentAudioDone
    assert s.session.turns.turn is Turn.LISTENING


def test_sentence_without_any_audio_is_still_announced() -> None:
    s = ready()
    think = ask(s)
    speak = job(s.provider(TextDelta(think.job_id, "Hm. ")), SpeakJob)
    assert types(s.provider(JobDone(speak.job_id))) == ["ConversationText", "History"]


def test_late_output_of_cancelled_jobs_is_dropped() -> None:
    s = ready()
    think = ask(s, "first")
    speak = job(s.provider(TextDelta(think.job_id, "Old answer. More")), SpeakJob)
    s.provider(AudioChunk(speak.job_id, AUDIO))
    effects = s.text({"type": "InjectUserMessage", "content": "second"})
    assert types(effects) == [
        "cancel",
        "cancel",
        "AgentAudioDone",
        "ConversationText",
        "History",
        "AgentThinking",
        "start:think",
    ]
    for late in (
        AudioChunk(speak.job_id, AUDIO),
        TextDelta(think.job_id, "zombie."),
        JobDone(speak.job_id),
        JobFailed(think.job_id, "x"),
        AudioChunk(999, AUDIO),
    ):
        assert s.provider(late) == []


@pytest.mark.parametrize("state", ["thinking", "speaking"])
def test_barge_in_row_cancels_the_reply(state: str) -> None:
    s = ready()
    think = ask(s)
    if state == "speaking":
        speak = job(s.provider(TextDelta(think.job_id, "Sure thing. ")), SpeakJob)
        s.provider(AudioChunk(speak.job_id, AUDIO))
    turns = s.session.turns
    turns.hear(ListenEvent("onset"), s.now)
    effects = s.drain()
    assert types(effects)[0] == "UserStartedSpeaking"
    assert "cancel" in types(effects)
    assert ("AgentAudioDone" in types(effects)) == (state == "speaking")
    assert turns.turn is Turn.USER_SPEAKING


# ---------------------------------------------------------------------- injections
def test_inject_agent_message_when_idle() -> None:
    s = ready()
    effects = s.text({"type": "InjectAgentMessage", "message": "Still there? I can wait"})
    speak = job(effects, SpeakJob)
    assert speak.text == "Still there?"
    effects = speak_all(s, speak, 1)
    speak2 = job(effects, SpeakJob)
    assert speak2.text == "I can wait"
    effects = speak_all(s, speak2, 1)
    assert types(effects)[-1] == "AgentAudioDone"
    assert "AgentStartedSpeaking" not in types(s.log)  # not for injected agent messages
    think = ask(s)
    assert think.messages[-2].content == "Still there? I can wait"


def test_inject_agent_message_refused_while_busy() -> None:
    s = ready()
    ask(s)
    refused = one(s.text({"type": "InjectAgentMessage", "message": "x"}), m.InjectionRefused)
    assert "agent is replying" in refused.message
    s2 = ready()
    s2.session.turns.hear(ListenEvent("onset"), s2.now)
    s2.drain()
    refused = one(s2.text({"type": "InjectAgentMessage", "message": "x"}), m.InjectionRefused)
    assert "user is speaking" in refused.message


def test_inject_agent_message_queue_and_interrupt() -> None:
    s = ready()
    think = ask(s)
    assert s.text({"type": "InjectAgentMessage", "message": "Later.", "behavior": "queue"}) == []
    speak = job(s.provider(TextDelta(think.job_id, "Now. ")), SpeakJob)
    s.provider(JobDone(think.job_id))
    effects = speak_all(s, speak, 1)
    assert types(effects)[-2:] == ["AgentAudioDone", "start:speak"]
    assert job(effects, SpeakJob).text == "Later."
    effects = s.text({"type": "InjectAgentMessage", "message": "Stop!", "behavior": "interrupt"})
    assert types(effects) == ["cancel", "start:speak"]
    assert job(effects, SpeakJob).text == "Stop!"


def test_greeting_is_spoken_after_settings_applied() -> None:
    s = Script()
    s.drain()
    effects = s.settings(greeting="Hello! How can I help?")
    # the greeting's speech first: priming the prompt must not delay it on the compute lane
    assert types(effects) == ["SettingsApplied", "start:speak", "start:prime"]
    assert job(effects, SpeakJob).text == "Hello!"


def test_context_restores_the_conversation() -> None:
    context = {
        "messages": [
            {"type": "History", "role": "user", "content": "My name is Ada."},
            {"type": "History", "role": "assistant", "content": "Hi Ada."},
            {
                "type": "History",
                "function_calls": [
                    {
                        "id": "c1",
                        "name": "get_weather",
                        "client_side": True,
                        "arguments": "{}",
                        "response": "sunny",
                    }
                ],
            },
        ]
    }
    s = ready(context=context)
    think = ask(s, "Who am I?")
    roles = [x.role for x in think.messages]
    assert roles == ["system", "user", "assistant", "assistant", "tool", "user"]
    assert think.messages[3].tool_calls[0].name == "get_weather"


def test_context_length_bounds_the_context() -> None:
    think_cfg = {
        "provider": {"type": "open_ai", "model": "gpt-4o-mini"},
        "prompt": "P",
        "context_length": 12,
    }
    s = ready(think=think_cfg)
    for text in ("aaaaaaaaaa", "bbbbbbbbbb"):
        t = ask(s, text)
        s.provider(JobDone(t.job_id))
    think = ask(s, "cccccccccc")
    assert [x.content for x in think.messages] == ["P", "cccccccccc"]


# ---------------------------------------------------------------------- functions
def call_weather(s: Script, think: ThinkJob, call_id: str = "call_1") -> list[object]:
    s.provider(ToolCalls(think.job_id, (ToolCall(call_id, "get_weather", '{"location":"Paris"}'),)))
    return s.provider(JobDone(think.job_id))


def test_client_side_function_round_trip() -> None:
    s = ready()
    think = ask(s, "Weather in Paris?")
    effects = call_weather(s, think)
    request = one(effects, m.FunctionCallRequest)
    assert request.functions == (
        m.FunctionCall(
            id="call_1", name="get_weather", arguments='{"location":"Paris"}', client_side=True
        ),
    )
    effects = s.text(
        {"type": "FunctionCallResponse", "id": "call_1", "name": "get_weather", "content": "21C"}
    )
    assert types(effects) == ["History", "start:think"]
    history = one(effects, m.History)
    assert history.function_calls is not None
    assert history.function_calls[0].response == "21C"
    think2 = job(effects, ThinkJob)
    assert [x.role for x in think2.messages][-2:] == ["assistant", "tool"]
    assert think2.messages[-1].content == "21C"
    # answering twice is a Warning: the call already ended
    effects = s.text(
        {"type": "FunctionCallResponse", "id": "call_1", "name": "get_weather", "content": "x"}
    )
    assert one(effects, m.Warning).code == codes.UNKNOWN_FUNCTION_CALL_ID


def test_unknown_function_call_id_is_a_warning() -> None:
    s = ready()
    effects = s.text({"type": "FunctionCallResponse", "id": "nope", "name": "x", "content": "y"})
    warning = one(effects, m.Warning)
    assert warning.code == codes.UNKNOWN_FUNCTION_CALL_ID
    assert "nope" in warning.description
    assert not s.session.closed


def test_server_side_function_runs_as_a_job_and_is_reported() -> None:
    s = ready()
    think = ask(s, "Order 7?")
    s.provider(ToolCalls(think.job_id, (ToolCall("c9", "lookup_order", '{"id":7}'),)))
    effects = s.provider(JobDone(think.job_id))
    request = one(effects, m.FunctionCallRequest)
    assert request.functions[0].client_side is False
    fn = job(effects, FunctionJob)
    assert fn.function.endpoint is not None
    # a client may not answer a server-side call
    warn = s.text(
        {"type": "FunctionCallResponse", "id": "c9", "name": "lookup_order", "content": "x"}
    )
    assert one(warn, m.Warning).code == codes.UNKNOWN_FUNCTION_CALL_ID
    effects = s.provider(FunctionResult(fn.job_id, '{"status":"shipped"}'))
    assert types(effects) == ["FunctionCallResponse", "History", "start:think"]
    assert s.provider(JobDone(fn.job_id)) == []  # already finished: dropped


def test_server_side_function_failure_feeds_an_error_back() -> None:
    s = ready()
    think = ask(s)
    s.provider(ToolCalls(think.job_id, (ToolCall("c9", "lookup_order", "{}"),)))
    fn = job(s.provider(JobDone(think.job_id)), FunctionJob)
    effects = s.provider(JobFailed(fn.job_id, "HTTP 500"))
    assert one(effects, m.Warning).code == codes.FUNCTION_CALL_FAILED
    think2 = job(effects, ThinkJob)
    assert "HTTP 500" in think2.messages[-1].content


def test_unknown_function_name_from_the_model() -> None:
    s = ready()
    think = ask(s)
    s.provider(ToolCalls(think.job_id, (ToolCall("c1", "launch_rocket", "{}"),)))
    effects = s.provider(JobDone(think.job_id))
    assert "FunctionCallRequest" not in types(effects)
    assert one(effects, m.Warning).code == codes.FUNCTION_CALL_FAILED
    assert job(effects, ThinkJob).messages[-1].role == "tool"


def test_several_calls_in_one_request_continue_after_the_last_answer() -> None:
    s = ready()
    think = ask(s)
    calls = (ToolCall("a", "get_weather", "{}"), ToolCall("b", "get_weather", "{}"))
    s.provider(ToolCalls(think.job_id, calls))
    effects = s.provider(JobDone(think.job_id))
    assert len(one(effects, m.FunctionCallRequest).functions) == 2
    first = s.text(
        {"type": "FunctionCallResponse", "id": "b", "name": "get_weather", "content": "1"}
    )
    assert types(first) == ["History"]
    second = s.text(
        {"type": "FunctionCallResponse", "id": "a", "name": "get_weather", "content": "2"}
    )
    assert types(second) == ["History", "start:think"]


def test_unanswered_call_times_out_exactly_once() -> None:
    s = Script(limits=SessionLimits(idle_timeout=1000.0))
    s.settings()
    think = ask(s)
    call_weather(s, think)
    assert s.session.next_deadline() == 60.0  # the function-call timeout
    effects = s.advance(62)
    assert types(effects) == ["FunctionCallCancelled", "Warning", "History", "start:think"]
    assert "within 60 s" in one(effects, m.Warning).description
    effects = s.text(
        {"type": "FunctionCallResponse", "id": "call_1", "name": "get_weather", "content": "x"}
    )
    assert one(effects, m.Warning).code == codes.UNKNOWN_FUNCTION_CALL_ID


def test_interrupting_a_reply_cancels_its_open_calls_once() -> None:
    s = ready()
    think = ask(s)
    call_weather(s, think)
    effects = s.text({"type": "InjectUserMessage", "content": "never mind"})
    cancelled = one(effects, m.FunctionCallCancelled)
    assert cancelled.functions == (m.CancelledFunction(id="call_1", name="get_weather"),)
    effects = s.text(
        {"type": "FunctionCallResponse", "id": "call_1", "name": "get_weather", "content": "x"}
    )
    assert types(effects) == ["Warning"]


def test_interrupting_cancels_a_running_server_side_function() -> None:
    s = ready()
    think = ask(s)
    s.provider(ToolCalls(think.job_id, (ToolCall("c9", "lookup_order", "{}"),)))
    fn = job(s.provider(JobDone(think.job_id)), FunctionJob)
    effects = s.text({"type": "InjectUserMessage", "content": "stop"})
    assert "cancel" in types(effects)
    assert s.provider(FunctionResult(fn.job_id, "late")) == []


# ---------------------------------------------------------------------- faults
def test_think_failure_is_reported_and_the_session_survives() -> None:
    s = ready()
    think = ask(s)
    effects = s.provider(JobFailed(think.job_id, "model crashed"))
    error = one(effects, m.Error)
    assert error.code == codes.FAILED_TO_THINK
    assert "model crashed" in error.description
    assert "close" not in types(effects)
    assert s.session.turns.turn is Turn.LISTENING
    assert job(s.text({"type": "InjectUserMessage", "content": "again"}), ThinkJob)


def test_speak_failure_is_reported_and_the_session_survives() -> None:
    s = ready()
    think = ask(s)
    speak = job(s.provider(TextDelta(think.job_id, "Hi. ")), SpeakJob)
    s.provider(AudioChunk(speak.job_id, AUDIO))
    effects = s.provider(JobFailed(speak.job_id, "voice missing"))
    assert one(effects, m.Error).code == codes.FAILED_TO_SPEAK
    assert "AgentAudioDone" in types(effects)
    assert s.session.turns.turn is Turn.LISTENING


def test_provider_warnings_are_forwarded() -> None:
    s = ready()
    think = ask(s)
    effects = s.provider(JobWarning(think.job_id, codes.THINK_REQUEST_FAILED, "primary failed"))
    assert one(effects, m.Warning).code == codes.THINK_REQUEST_FAILED


def test_slow_think_warnings_every_five_seconds() -> None:
    s = ready()
    think = ask(s)
    effects = s.advance(11)
    warnings = [x for x in messages(effects) if isinstance(x, m.Warning)]
    assert [w.description for w in warnings] == [
        "We have now waited 5 seconds for a think response.",
        "We have now waited 10 seconds for a think response.",
    ]
    s.provider(TextDelta(think.job_id, "ok"))
    assert s.advance(10) == []


def test_prime_job_output_is_ignored() -> None:
    s = Script()
    s.drain()
    prime = jobs(s.settings(), PrimeJob)[0]
    assert s.provider(JobFailed(prime.job_id, "cold")) == []
    assert s.session.out.live == {}


def test_a_reply_starves_when_its_audio_runs_out_soon() -> None:
    """Session.starving: the reply's LLM should go first on the compute lane (BOOST) when the
    listener will have heard all the audio sent so far within STARVING_SECONDS."""
    s = ready()
    assert not s.session.starving(s.now)  # no reply
    think = ask(s)
    assert not s.session.starving(s.now)  # thinking: nothing is being heard yet
    speak = job(s.provider(TextDelta(think.job_id, "Sure thing. ")), SpeakJob)
    seconds = 0.0
    for _ in range(60):  # 60 x 20 ms at 24 kHz: 1.2 s of audio sent
        s.provider(AudioChunk(speak.job_id, AUDIO))
        seconds += len(AUDIO) / 2 / 24000
    assert s.session.turns.replies.audio_ahead(s.now) == pytest.approx(seconds)
    assert s.session.starving(s.now)  # 1.2 s < STARVING_SECONDS
    for _ in range(60):
        s.provider(AudioChunk(speak.job_id, AUDIO))
    assert not s.session.starving(s.now)  # 2.4 s ahead
    s.advance(1.0)
    assert s.session.starving(s.now)  # 1.4 s left
