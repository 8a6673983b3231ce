"""Playback reports (``Session.played``): a phone carrier echoes a mark after each sentence it
played, and a barge-in keeps in history exactly the sentences whose marks came back, instead of
the clock's estimate (virtual time, no sockets)."""

from __future__ import annotations

from harken.session.effects import (
    AudioChunk,
    JobDone,
    SpeakJob,
    StartJob,
    TextDelta,
    ThinkJob,
    ToolCall,
    ToolCalls,
)
from harken.session.listener import ListenEvent
from session_script import Script, job
from test_session_replies import AUDIO
from test_session_replies import ready as settled


def ready() -> Script:
    s = settled()
    s.session.played(0)  # a carrier stream reports playback from its start
    return s


def history(s: Script) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in s.session.turns.conversation.messages("", None)]


def reply(s: Script, text: str, user: str = "Tell me.") -> list[SpeakJob]:
    """The user asks; the LLM says ``text``; every sentence is spoken in full."""
    effects = s.text({"type": "InjectUserMessage", "content": user})
    think = job(effects, ThinkJob)
    spoken: list[SpeakJob] = []
    effects = s.provider(TextDelta(think.job_id, text))
    effects += s.provider(JobDone(think.job_id))
    while True:
        found = [e.job for e in effects if isinstance(e, StartJob) and isinstance(e.job, SpeakJob)]
        if not found:
            return spoken
        speak = found[0]
        spoken.append(speak)
        effects = s.provider(AudioChunk(speak.job_id, AUDIO))
        effects += s.provider(JobDone(speak.job_id))


def check_the_weather(s: Script) -> ThinkJob:
    """ "Let me check." (spoken after its round ended), a function call and its result; returns
    the next round's think job."""
    think = job(s.text({"type": "InjectUserMessage", "content": "Weather?"}), ThinkJob)
    speak = job(s.provider(TextDelta(think.job_id, "Let me check. ")), SpeakJob)
    s.provider(ToolCalls(think.job_id, (ToolCall("c1", "get_weather", '{"location":"Oslo"}'),)))
    s.provider(JobDone(think.job_id))
    s.provider(AudioChunk(speak.job_id, AUDIO))
    s.provider(JobDone(speak.job_id))
    answer = {"type": "FunctionCallResponse", "id": "c1", "name": "get_weather", "content": "Sun"}
    return job(s.text(answer), ThinkJob)


def barge_in(s: Script) -> None:
    s.session.turns.hear(ListenEvent("onset"), s.now)
    s.drain()


def test_a_finished_reply_is_cut_to_the_sentences_the_caller_heard() -> None:
    s = ready()
    assert len(reply(s, "One is first. Two comes next. Three is last.")) == 3
    assert history(s)[-1] == ("assistant", "One is first. Two comes next. Three is last.")
    s.session.played(2)
    barge_in(s)  # the carrier still held sentence 3: it is dropped, never heard
    assert history(s)[-1] == ("assistant", "One is first. Two comes next.")
    s.session.played(3)  # a late echo (the carrier returns voided marks) changes nothing
    assert history(s)[-1] == ("assistant", "One is first. Two comes next.")


def test_a_reply_not_heard_at_all_leaves_no_trace() -> None:
    s = ready()
    reply(s, "Nothing of this. Was heard.")
    barge_in(s)
    assert history(s) == [("user", "Tell me.")]


def test_a_reply_heard_in_full_stays_and_the_next_is_cut() -> None:
    s = ready()
    reply(s, "Heard in full.", user="First?")
    s.session.played(1)
    reply(s, "Heard too. Not this.", user="Second?")
    s.session.played(2)
    barge_in(s)
    assert history(s) == [
        ("user", "First?"),
        ("assistant", "Heard in full."),
        ("user", "Second?"),
        ("assistant", "Heard too."),
    ]


def test_a_reply_in_progress_keeps_what_was_played_not_the_clock() -> None:
    s = ready()
    effects = s.text({"type": "InjectUserMessage", "content": "Go on."})
    think = job(effects, ThinkJob)
    first = job(s.provider(TextDelta(think.job_id, "Played in full. And this one too. ")), SpeakJob)
    s.provider(AudioChunk(first.job_id, AUDIO))
    second = job(s.provider(JobDone(first.job_id)), SpeakJob)
    s.advance(5.0)  # by the clock, everything could have been played
    s.provider(AudioChunk(second.job_id, AUDIO))
    s.session.played(1)
    barge_in(s)
    assert history(s)[-1] == ("assistant", "Played in full.")


def test_a_function_round_keeps_its_call_and_what_was_heard_before_it() -> None:
    s = ready()
    check_the_weather(s)
    s.session.played(1)
    barge_in(s)
    roles = [role for role, _ in history(s)]
    assert roles == ["user", "assistant", "assistant", "tool"]
    assert history(s)[1] == ("assistant", "Let me check.")


def test_the_greeting_is_cut_too() -> None:
    s = Script()
    effects = s.settings(greeting="Hello there. How can I help?")
    s.session.played(0)
    speak = job(effects, SpeakJob)
    s.provider(AudioChunk(speak.job_id, AUDIO))
    following = job(s.provider(JobDone(speak.job_id)), SpeakJob)
    s.provider(AudioChunk(following.job_id, AUDIO))
    s.provider(JobDone(following.job_id))
    s.session.played(1)
    barge_in(s)
    assert history(s) == [("assistant", "Hello there.")]


def test_without_reports_a_finished_reply_stays_whole() -> None:
    s = Script()
    s.settings()
    reply(s, "One. Two.")
    barge_in(s)  # the agent API's client played it (the estimate applies only mid-reply)
    assert history(s)[-1] == ("assistant", "One. Two.")


def test_reports_after_the_session_closed_are_ignored() -> None:
    s = ready()
    s.session.connection_lost(s.now)
    s.session.played(5)
    assert s.session.turns.replies.heard_through == 0


def test_a_sentence_spoken_after_its_round_ended_belongs_to_that_round() -> None:
    """The agent API path too: "Let me check." is announced after the round that called the
    function ended; it goes into history once, before the call (it was counted twice)."""
    s = Script()
    s.settings()
    second = check_the_weather(s)
    speak = job(s.provider(TextDelta(second.job_id, "It is sunny. ")), SpeakJob)
    s.provider(JobDone(second.job_id))
    s.provider(AudioChunk(speak.job_id, AUDIO))
    s.provider(JobDone(speak.job_id))
    assert [text for role, text in history(s) if role == "assistant"] == [
        "Let me check.",
        "",  # the function call
        "It is sunny.",
    ]
