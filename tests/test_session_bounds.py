"""Size limits on prompts, contexts and injections (issue 15): each bounded, each with a code."""

from __future__ import annotations

import json
from typing import Any

from harken.protocol import codes
from harken.protocol import messages as m
from harken.session.bounds import SizeLimits
from harken.session.effects import JobDone, PrimeJob, SpeakJob, ThinkJob, ToolCall, ToolCalls
from harken.session.session import SessionLimits
from session_script import SETTINGS, Script, job, messages, one, types

SMALL = SizeLimits(prompt_chars=100, context_messages=5, context_chars=60, message_chars=50)


def script(sizes: SizeLimits = SMALL) -> Script:
    return Script(limits=SessionLimits(sizes=sizes))


def warnings(effects: list[Any]) -> list[m.Warning]:
    return [x for x in messages(effects) if isinstance(x, m.Warning)]


def settings_with(**agent: Any) -> dict[str, Any]:
    settings = json.loads(json.dumps(SETTINGS))
    settings["agent"].update(agent)
    return settings


def test_a_prompt_over_the_limit_is_cut_with_prompt_too_long() -> None:
    run = script()
    think = dict(SETTINGS["agent"]["think"], prompt="p" * 1000)
    effects = run.text(settings_with(think=think))
    assert "SettingsApplied" in types(effects)
    (warning,) = warnings(effects)
    assert warning.code == codes.PROMPT_TOO_LONG and "100 characters" in warning.description
    assert run.session.turns.agent.prompt == "p" * 100
    primed = job(effects, PrimeJob)
    assert primed.messages[0].content == "p" * 100


def test_settings_within_the_limits_are_untouched() -> None:
    run = script(SizeLimits())
    effects = run.settings()
    assert warnings(effects) == []
    assert run.session.turns.agent.prompt == SETTINGS["agent"]["think"]["prompt"]


def test_a_long_context_keeps_its_newest_messages() -> None:
    run = script()
    history = [{"role": "user", "content": f"m{i}"} for i in range(10_000)]
    effects = run.text(settings_with(context={"messages": history}))
    (warning,) = warnings(effects)
    assert warning.code == codes.PROMPT_TOO_LONG
    assert "kept the newest 5 of 10000" in warning.description
    kept = run.session.turns.replies.conversation.messages("", None)
    assert [x.content for x in kept if x.role == "user"] == [f"m{i}" for i in range(9995, 10_000)]


def test_a_context_is_cut_to_its_characters_too() -> None:
    run = script()
    history = [{"role": "assistant", "content": c * 25} for c in "abcd"]
    effects = run.text(settings_with(context={"messages": history}))
    assert "kept the newest 2 of 4" in warnings(effects)[0].description
    kept = run.session.turns.replies.conversation.messages("", None)
    assert [x.content[0] for x in kept if x.role == "assistant"] == ["c", "d"]


def test_update_prompt_grows_the_prompt_up_to_the_limit() -> None:
    run = script()
    run.settings()  # "You are terse." (14 characters)
    effects = run.text({"type": "UpdatePrompt", "prompt": "x" * 500})
    assert warnings(effects)[0].code == codes.PROMPT_TOO_LONG
    assert "PromptUpdated" in types(effects)
    assert len(run.session.turns.agent.prompt) == 100


def test_update_think_cuts_its_prompt() -> None:
    run = script()
    run.settings()
    think = dict(SETTINGS["agent"]["think"], prompt="q" * 300)
    effects = run.text({"type": "UpdateThink", "think": think})
    assert warnings(effects)[0].code == codes.PROMPT_TOO_LONG
    assert "ThinkUpdated" in types(effects)


def test_an_injection_over_the_limit_is_refused_and_nothing_is_said() -> None:
    run = script()
    run.settings()
    effects = run.text({"type": "InjectAgentMessage", "message": "word " * 1000})
    refused = one(effects, m.InjectionRefused)
    assert "5000 characters" in refused.message and "50" in refused.message
    assert types(effects) == ["InjectionRefused"]
    effects = run.text({"type": "InjectUserMessage", "content": "ask " * 1000})
    assert types(effects) == ["InjectionRefused"]
    effects = run.text({"type": "InjectAgentMessage", "message": "Short and fine."})
    assert job(effects, SpeakJob).text == "Short and fine."


def test_a_long_greeting_is_cut_with_message_too_long() -> None:
    run = script()
    effects = run.text(settings_with(greeting="Hello there. " * 100))
    assert warnings(effects)[0].code == codes.MESSAGE_TOO_LONG
    reply = run.session.turns.replies.reply
    assert reply is not None
    said = [job(effects, SpeakJob).text, *reply.voice.queue]
    assert " ".join(said) == ("Hello there. " * 100)[:50].strip()


def test_a_long_function_result_is_cut_and_the_round_goes_on() -> None:
    run = script()
    run.settings()
    effects = run.text({"type": "InjectUserMessage", "content": "weather?"})
    think = job(effects, ThinkJob)
    run.provider(ToolCalls(think.job_id, (ToolCall("c1", "get_weather", '{"location":"Oslo"}'),)))
    run.provider(JobDone(think.job_id))
    effects = run.text(
        {"type": "FunctionCallResponse", "id": "c1", "name": "get_weather", "content": "r" * 500}
    )
    assert warnings(effects)[0].code == codes.MESSAGE_TOO_LONG
    again = job(effects, ThinkJob)
    assert any(x.role == "tool" and x.content == "r" * 50 for x in again.messages)


def test_messages_before_settings_are_not_bounded_but_refused_by_the_table() -> None:
    run = script()
    effects = run.text({"type": "InjectAgentMessage", "message": "w" * 1000})
    assert [x.code for x in messages(effects) if isinstance(x, m.Error)] == [
        codes.NON_SETTINGS_MESSAGE_BEFORE_SETTINGS
    ]
