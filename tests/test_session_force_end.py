"""ForceEndTurn (PROTOCOL.md §10): the user's turn ends at once, in every state that has one;
with no utterance in progress it changes nothing. Also: history off, several tool-call events."""

from __future__ import annotations

import json

from harken.protocol import messages as m
from harken.session.effects import (
    AudioChunk,
    JobDone,
    JobFailed,
    SpeakJob,
    TextDelta,
    ThinkJob,
    ToolCall,
    ToolCalls,
    TranscribeJob,
    Transcript,
)
from harken.session.state import State
from session_script import SETTINGS, Script, job, jobs, messages, one, types
from test_session_listening import EOT, FRAME, PAUSE, ready, silence, speech

FORCE = {"type": "ForceEndTurn"}


def test_force_end_turn_while_the_user_speaks_transcribes_what_was_said() -> None:
    s = ready()
    speech(s, 10)
    effects = s.text(FORCE)
    stt = job(effects, TranscribeJob)
    assert stt.pcm16k == FRAME * 10  # every frame so far, no waiting for silence
    assert s.session.state is State.TRANSCRIBING
    assert silence(s, EOT) == []  # the listener starts afresh: no second turn from the silence
    effects = s.provider(Transcript(stt.job_id, "Go forward ten meters"))
    assert types(effects) == ["ConversationText", "History", "AgentThinking", "start:think"]


def test_force_end_turn_in_a_pause_makes_the_guess_final() -> None:
    s = ready()
    speech(s)
    stt = job(silence(s, PAUSE), TranscribeJob)
    assert s.text(FORCE) == []  # the running transcription is now the turn's
    assert s.session.state is State.TRANSCRIBING
    effects = s.provider(Transcript(stt.job_id, "What time is it?"))
    assert types(effects) == ["ConversationText", "History", "AgentThinking", "start:think"]


def test_force_end_turn_with_a_held_reply_speaks_it() -> None:
    s = ready()
    speech(s)
    stt = job(silence(s, PAUSE), TranscribeJob)
    think = job(s.provider(Transcript(stt.job_id, "Hi")), ThinkJob)
    speak = job(s.provider(TextDelta(think.job_id, "Hello there. ")), SpeakJob)
    effects = s.text(FORCE)
    assert types(effects) == ["ConversationText", "History", "AgentThinking"]
    assert s.session.state is State.THINKING
    assert types(s.provider(m_audio(speak)))[-1] == "audio"
    assert silence(s, EOT) == []  # no end of turn after the forced one


def test_force_end_turn_after_a_failed_guess_reports_it() -> None:
    s = ready()
    speech(s)
    stt = job(silence(s, PAUSE), TranscribeJob)
    think = job(s.provider(Transcript(stt.job_id, "Hi")), ThinkJob)
    s.provider(JobFailed(think.job_id, "down"))
    effects = s.text(FORCE)
    assert types(effects) == ["ConversationText", "History", "Error"]
    assert s.session.state is State.LISTENING


def test_force_end_turn_while_the_user_goes_on_merges_both_parts() -> None:
    s = ready(speculate=False)
    speech(s)
    first = job(silence(s, EOT), TranscribeJob)
    speech(s, 5)
    assert s.session.state is State.CONTINUING
    effects = s.text(FORCE)
    merged = job(effects, TranscribeJob)
    assert merged.pcm16k.startswith(first.pcm16k) and len(merged.pcm16k) > len(first.pcm16k)
    assert "cancel" in types(effects)
    assert s.session.state is State.TRANSCRIBING


def test_force_end_turn_without_an_utterance_changes_nothing() -> None:
    s = ready()
    assert s.text(FORCE) == []  # listening
    think = job(s.text({"type": "InjectUserMessage", "content": "x"}), ThinkJob)
    assert s.text(FORCE) == []  # the agent's turn
    assert s.session.state is State.THINKING
    s.provider(JobDone(think.job_id))
    speech(s)
    silence(s, EOT)
    assert s.session.state is State.TRANSCRIBING
    assert s.text(FORCE) == []  # already ended


def test_force_end_turn_is_refused_before_settings() -> None:
    s = Script()
    s.drain()
    effects = s.text(FORCE)
    assert one(effects, m.Error).code == "NON_SETTINGS_MESSAGE_BEFORE_SETTINGS"


def test_no_history_messages_when_history_is_off() -> None:
    s = Script()
    s.text(dict(SETTINGS, flags={"history": False}))
    think = job(s.text({"type": "InjectUserMessage", "content": "Hi"}), ThinkJob)
    speak = job(s.provider(TextDelta(think.job_id, "Hello. ")), SpeakJob)
    s.provider(m_audio(speak))
    s.provider(JobDone(speak.job_id))
    s.provider(JobDone(think.job_id))
    assert "History" not in types(s.log)
    assert "ConversationText" in types(s.log)


def test_tool_calls_in_several_events_are_one_round() -> None:
    s = ready()
    think = job(s.text({"type": "InjectUserMessage", "content": "x"}), ThinkJob)
    s.provider(ToolCalls(think.job_id, (ToolCall("a", "get_weather", '{"location": "Rome"}'),)))
    s.provider(ToolCalls(think.job_id, (ToolCall("b", "get_weather", '{"location": "Oslo"}'),)))
    effects = s.provider(JobDone(think.job_id))
    request = one(effects, m.FunctionCallRequest)
    assert [f.id for f in request.functions] == ["a", "b"]
    s.text({"type": "FunctionCallResponse", "id": "a", "content": json.dumps({"t": 1})})
    effects = s.text({"type": "FunctionCallResponse", "id": "b", "content": "{}"})
    assert len(jobs(effects, ThinkJob)) == 1  # one next round, with both results
    report_free = [x for x in messages(s.log) if isinstance(x, m.LatencyReport)]
    assert report_free == []  # no audio yet: no report


def m_audio(speak: SpeakJob) -> AudioChunk:
    return AudioChunk(speak.job_id, b"\x00\x01" * 480)
