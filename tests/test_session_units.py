"""Small pure pieces of the session: the turn table, sentence cutting, the context, timers."""

from __future__ import annotations

import pytest

from harken.protocol import messages as m
from harken.protocol.settings import HistoryItem
from harken.session.effects import (
    FunctionJob,
    JobDone,
    ThinkJob,
    ToolCall,
    ToolCalls,
)
from harken.session.history import Conversation
from harken.session.reply import Voice, split_first_clause, split_sentences
from session_script import Script, job, one, types


@pytest.mark.parametrize(
    ("text", "sentences", "rest"),
    [
        ("Hello there. How", ["Hello there."], "How"),
        ("Mr. Smith is here. Ok", ["Mr. Smith is here."], "Ok"),
        ("Pi is 3.14 exactly", [], "Pi is 3.14 exactly"),
        ('He said "go!" Then', ['He said "go!"'], "Then"),
        ("One!\n\nTwo? Three", ["One!", "Two?"], "Three"),
        ("\n\nNext", [], "\n\nNext"),
        ("line one\nline two", ["line one"], "line two"),
    ],
)
def test_split_sentences(text: str, sentences: list[str], rest: str) -> None:
    assert split_sentences(text) == (sentences, rest)


@pytest.mark.parametrize(
    ("text", "cut"),
    [
        ("Sure, I can help", None),  # one word before the comma
        ("If you like the weather, we can go", ("If you like the weather,", "we can go")),
        ("Sure, if you like the weather, we go", ("Sure, if you like the weather,", "we go")),
        ("The library opens at nine; it closes", ("The library opens at nine;", "it closes")),
        ("The one thing you need \u2014 a card", ("The one thing you need \u2014", "a card")),
        ("We have 10,000 books and more", None),
        ("Pick one of 1, 2, 3, 4, 5", None),
        ('It returned {"city": "Paris", "temp_c": 21}', None),
        ("The answer is this: forty two", None),
        ("Four words are here,", None),  # the clause is not over until whitespace follows
    ],
)
def test_split_first_clause(text: str, cut: tuple[str, str] | None) -> None:
    assert split_first_clause(text) == cut


def test_only_the_first_chunk_of_a_reply_may_be_a_clause() -> None:
    voice = Voice()
    for token in ["When the library opens", ", you can", " borrow books, films and", " music. "]:
        voice.feed(token)
    voice.feed("Later on, in the evening, it")
    assert list(voice.queue) == [
        "When the library opens,",
        "you can borrow books, films and music.",
    ]
    voice.flush()
    assert list(voice.queue)[-1] == "Later on, in the evening, it"
    assert voice.chunks == 3


def test_conversation_ignores_empty_items() -> None:
    conv = Conversation([HistoryItem(), HistoryItem(role="user", content="hi")])
    assert [x.content for x in conv.messages("")] == ["hi"]
    conv.add_assistant("")
    assert len(conv.messages("")) == 1


def test_context_length_keeps_at_least_the_newest_block() -> None:
    conv = Conversation()
    conv.add_user("x" * 100)
    assert [x.content for x in conv.messages("P", 10)] == ["P", "x" * 100]
    assert len(conv.messages("P", "max")) == 2


def test_tick_before_settings_does_nothing() -> None:
    s = Script()
    s.drain()
    s.session.tick(1.0)
    assert s.drain() == []


def test_tick_leaves_calls_that_have_time_left() -> None:
    s = Script()
    s.settings()
    think = job(s.text({"type": "InjectUserMessage", "content": "x"}), ThinkJob)
    calls = (ToolCall("a", "get_weather", "{}"), ToolCall("b", "lookup_order", "{}"))
    s.provider(ToolCalls(think.job_id, calls))
    effects = s.provider(JobDone(think.job_id))
    fn = job(effects, FunctionJob)
    s.session.tick(s.now + 1)
    assert s.drain() == []
    assert set(s.session.turns.replies.rounds.calls.open) == {"a", "b"}
    effects = s.provider(JobDone(fn.job_id))  # a function job ending without a result
    assert "no result" in one(effects, m.Warning).description


def test_update_think_with_unknown_model_is_refused() -> None:
    from session_script import DenyModel

    s = Script(catalog=DenyModel("gpt-bad"))
    s.settings()
    think = {"provider": {"type": "open_ai", "model": "gpt-bad"}}
    assert (
        one(s.text({"type": "UpdateThink", "think": think}), m.Warning).code == "INVALID_SETTINGS"
    )


def test_early_access_context_replay_speaks_the_last_assistant_message() -> None:
    s = Script(generation=m.Generation.EA)
    s.drain()
    settings = {
        "type": "SettingsConfiguration",
        "audio": {"input": {"encoding": "linear16", "sample_rate": 16000}},
        "agent": {"listen": {"model": "nova-2"}, "speak": {"model": "aura-asteria-en"}},
        "context": {
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "Welcome back."},
            ],
            "replay": True,
        },
    }
    effects = s.text(settings)
    assert types(effects)[-1] == "start:speak"
    replay_without_assistant = dict(settings, context={"messages": [], "replay": True})
    s2 = Script(generation=m.Generation.EA)
    s2.drain()
    assert types(s2.text(replay_without_assistant)) == ["SettingsApplied"]
