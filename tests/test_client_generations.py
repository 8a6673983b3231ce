"""Our SDK reads both generations (issue 10, item 6): seed 000's early-access responses parse
into their classes, and seed 003's documented fields exist where the wire can fill them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from harken import (
    AgentStartedSpeakingResponse,
    AgentWebSocketEvents,
    ConversationTextResponse,
    DeepgramClientOptions,
    FunctionCalling,
    FunctionCallRequest,
    PromptUpdatedResponse,
    SettingsAppliedResponse,
    SettingsOptions,
    UnhandledResponse,
    UserStartedSpeakingResponse,
    WelcomeResponse,
)
from harken.client.core import AgentCore, Event, timestamp

E = AgentWebSocketEvents


def core() -> AgentCore:
    return AgentCore(DeepgramClientOptions())


def one(c: AgentCore, message: dict[str, Any], received_at: float | None = None) -> Event:
    [event] = c.receive_text(json.dumps(message), received_at)
    return event


# ----------------------------------------------------------------------------- early access (000)


def test_ea_welcome_has_session_id() -> None:
    event = one(core(), {"type": "Welcome", "session_id": "s-1"})
    welcome = event.payload
    assert event.name is E.Welcome and isinstance(welcome, WelcomeResponse)
    assert welcome.session_id == welcome.request_id == welcome.message == "s-1"
    ga = one(core(), {"type": "Welcome", "request_id": "r-1"}).payload
    assert ga.session_id == "r-1"  # the 3.x name works on GA too
    assert WelcomeResponse("Welcome", "x").session_id == "x"  # seed 000's constructor order


def test_ea_function_call_request_parses_with_the_3x_names() -> None:
    c = core()
    frame = {
        "type": "FunctionCallRequest",
        "function_name": "get_weather",
        "function_call_id": "fc_1",
        "input": '{"location":"Paris"}',
    }
    event = one(c, frame)
    request = event.payload
    assert event.name is E.FunctionCallRequest and isinstance(request, FunctionCallRequest)
    assert (request.function_name, request.function_call_id, request.input) == (
        "get_weather",
        "fc_1",
        '{"location":"Paris"}',
    )
    assert request.call_id == "fc_1" and request.function_call is not None
    assert request.function_call.arguments == {"location": "Paris"}
    [call] = request.functions
    assert (call.id, call.name, call.client_side) == ("fc_1", "get_weather", True)
    assert [p.id for p in c.pending] == ["fc_1"]  # answerable by name, like a GA call
    answer = json.loads(c.encode_function_call_response({"name": "get_weather", "content": "21"}))
    assert answer["id"] == "fc_1" and c.pending == []


def test_ea_function_call_object_input_is_kept_as_json_text() -> None:
    frame = {
        "type": "FunctionCallRequest",
        "function_name": "f",
        "function_call_id": "1",
        "input": {"city": "Zürich"},
    }
    request = one(core(), frame).payload
    assert request.input == '{"city":"Zürich"}'
    assert request.functions[0].parsed_arguments == {"city": "Zürich"}


@pytest.mark.parametrize("missing", ["function_name", "input"])
def test_ea_function_call_missing_field_is_a_protocol_error(missing: str) -> None:
    frame = {"type": "FunctionCallRequest", "function_name": "f", "function_call_id": "1"}
    frame["input"] = "{}"
    del frame[missing]
    event = one(core(), frame)
    assert event.name is E.Error and event.payload.type == "ProtocolError"
    assert f"missing required field '{missing}'" in event.payload.description


def test_ga_function_call_request_has_the_3x_names_too() -> None:
    call = {"id": "c", "name": "n", "arguments": "{}", "client_side": True}
    request = one(core(), {"type": "FunctionCallRequest", "functions": [call]}).payload
    assert (request.function_name, request.function_call_id, request.input) == ("n", "c", "{}")
    empty = FunctionCallRequest(type="FunctionCallRequest", functions=[])
    assert (empty.function_name, empty.function_call_id, empty.input) == ("", "", "")


def test_function_calling_has_its_own_event_and_falls_back_to_unhandled() -> None:
    c = core()
    event = one(c, {"type": "FunctionCalling"})
    assert event.name is E.FunctionCalling and isinstance(event.payload, FunctionCalling)
    assert event.payload.type == "FunctionCalling"
    seen: list[Any] = []
    c.on(E.Unhandled, lambda client, unhandled, **kw: seen.append(unhandled))
    [call] = c.invocations(event, object())
    call()
    assert seen == [UnhandledResponse(type="Unhandled", raw='{"type": "FunctionCalling"}')]
    c.on(E.FunctionCalling, lambda client, function_calling, **kw: seen.append(function_calling))
    [call] = c.invocations(event, object())
    call()
    assert seen[-1] == FunctionCalling()


def test_ea_instructions_updated_is_prompt_updated() -> None:
    event = one(core(), {"type": "InstructionsUpdated"})
    assert event.name is E.PromptUpdated and isinstance(event.payload, PromptUpdatedResponse)
    assert event.payload.type == "InstructionsUpdated"


def test_ea_error_keeps_message_description_and_code() -> None:
    frame = {"type": "Error", "message": "bad", "description": "bad", "code": "X"}
    error = one(core(), frame).payload
    assert (error.message, error.description, error.code) == ("bad", "bad", "X")


# ----------------------------------------------------------------------------- seed 003 fields


def test_speaking_events_carry_the_receive_time() -> None:
    c = core()
    started = one(c, {"type": "UserStartedSpeaking"}, 1_700_000_000.25)
    assert isinstance(started.payload, UserStartedSpeakingResponse)
    assert started.payload.timestamp == "2023-11-14T22:13:20.250Z"
    agent = one(
        c,
        {"type": "AgentStartedSpeaking", "total_latency": 1, "tts_latency": 0, "ttt_latency": 1},
        0.0,
    ).payload
    assert isinstance(agent, AgentStartedSpeakingResponse)
    assert agent.timestamp == "1970-01-01T00:00:00.000Z"
    assert agent["timestamp"] == agent.timestamp  # in to_dict, so in str() too
    assert one(c, {"type": "UserStartedSpeaking"}).payload.timestamp is None  # no time given
    sent = {"type": "UserStartedSpeaking", "timestamp": "server"}
    assert one(c, sent, 5.0).payload.timestamp == "server"  # the wire's own value wins
    assert timestamp(0.0005) == "1970-01-01T00:00:00.000Z"


def test_settings_applied_carries_the_settings_that_were_sent() -> None:
    c = core()
    assert one(c, {"type": "SettingsApplied"}).payload.settings is None  # nothing sent yet
    _, text = c.begin_start(SettingsOptions())
    assert text is not None
    c.note_outgoing(text)
    applied = one(c, {"type": "SettingsApplied"}).payload
    assert isinstance(applied, SettingsAppliedResponse)
    assert applied.settings == SettingsOptions().to_dict() == json.loads(text)
    applied.settings["agent"] = "changed by a handler"
    assert one(c, {"type": "SettingsApplied"}).payload.settings == json.loads(text)  # a copy
    c.note_outgoing(json.dumps({"type": "Settings", "experimental": True}))  # refused anyway
    assert one(c, {"type": "SettingsApplied"}).payload.settings == json.loads(text)
    echoed = one(c, {"type": "SettingsApplied", "settings": {"x": 1}}).payload
    assert echoed.settings == {"x": 1}
    c.connected()
    c.connection_lost(1000, None)
    c.begin_start(None)  # a new connection forgets the old settings
    assert one(c, {"type": "SettingsApplied"}).payload.settings is None


def test_conversation_text_conversational_behavior() -> None:
    c = core()
    frame = {"type": "ConversationText", "role": "user", "content": "hi"}
    text = one(c, frame).payload
    assert isinstance(text, ConversationTextResponse)
    assert text.conversational_behavior == "default"  # what the SDKs default it to
    assert text.languages is None and text.languages_hinted is None
    full = {
        **frame,
        "conversational_behavior": "backchannel",
        "languages": ["en"],
        "languages_hinted": ["en", "de"],
    }
    text = one(c, full).payload
    assert text.conversational_behavior == "backchannel"
    assert (text.languages, text.languages_hinted) == (["en"], ["en", "de"])
    assert text.to_dict() == full


def test_force_end_turn_encodes_the_ga_message() -> None:
    assert json.loads(core().encode_force_end_turn()) == {"type": "ForceEndTurn"}
