"""Server messages of both generations: exact encodings (PROTOCOL.md 6.6) and parsing back."""

from __future__ import annotations

import json
from typing import Any, get_args

import pytest

from harken.errors import RemoteProtocolError
from harken.protocol import codes
from harken.protocol.codec import encode_server, parse_server
from harken.protocol.messages import (
    AgentAudioDone,
    AgentStartedSpeaking,
    AgentThinking,
    CancelledFunction,
    ConversationText,
    EndOfThought,
    Error,
    FunctionCall,
    FunctionCallCancelled,
    FunctionCalling,
    FunctionCallRequest,
    FunctionCallResponse,
    Generation,
    History,
    InjectionRefused,
    LatencyReport,
    ListenUpdated,
    PromptUpdated,
    ServerMessage,
    SettingsApplied,
    SpeakUpdated,
    ThinkUpdated,
    UserStartedSpeaking,
    Warning,
    Welcome,
)
from harken.protocol.settings import HistoryFunctionCall

GA, EA = Generation.GA, Generation.EA
CALL = FunctionCall(
    id="call_1", name="get_weather", arguments='{"location":"Paris"}', client_side=True
)
SERVER_CALL = FunctionCall(id="call_2", name="lookup", arguments="{}", client_side=False)
HISTORY_CALL = HistoryFunctionCall("call_1", "get_weather", True, "{}", "sunny")

# (message, GA frames, EA frames); None for EA means "the same as GA"
CASES: list[tuple[ServerMessage, list[dict[str, Any]], list[dict[str, Any]] | None]] = [
    (
        Welcome(request_id="r1"),
        [{"type": "Welcome", "request_id": "r1"}],
        [{"type": "Welcome", "session_id": "r1"}],
    ),
    (SettingsApplied(), [{"type": "SettingsApplied"}], None),
    (PromptUpdated(), [{"type": "PromptUpdated"}], [{"type": "InstructionsUpdated"}]),
    (SpeakUpdated(), [{"type": "SpeakUpdated"}], None),
    (ThinkUpdated(), [{"type": "ThinkUpdated"}], None),
    (ListenUpdated(), [{"type": "ListenUpdated"}], None),
    (
        ConversationText(role="assistant", content="Hi!"),
        [
            {
                "type": "ConversationText",
                "role": "assistant",
                "content": "Hi!",
                "conversational_behavior": "default",
            }
        ],
        [{"type": "ConversationText", "role": "assistant", "content": "Hi!"}],
    ),
    (UserStartedSpeaking(), [{"type": "UserStartedSpeaking"}], None),
    (AgentThinking(content="hmm"), [{"type": "AgentThinking", "content": "hmm"}], None),
    (
        FunctionCallRequest(functions=(CALL, SERVER_CALL)),
        [
            {
                "type": "FunctionCallRequest",
                "functions": [
                    {
                        "id": "call_1",
                        "name": "get_weather",
                        "arguments": '{"location":"Paris"}',
                        "client_side": True,
                    },
                    {"id": "call_2", "name": "lookup", "arguments": "{}", "client_side": False},
                ],
            }
        ],
        [
            {
                "type": "FunctionCallRequest",
                "function_name": "get_weather",
                "function_call_id": "call_1",
                "input": '{"location":"Paris"}',
            }
        ],
    ),
    (FunctionCalling(), [], [{"type": "FunctionCalling"}]),
    (
        FunctionCallResponse(id="call_2", name="lookup", content="42"),
        [{"type": "FunctionCallResponse", "id": "call_2", "name": "lookup", "content": "42"}],
        [],
    ),
    (
        FunctionCallCancelled(functions=(CancelledFunction(id="call_1", name="get_weather"),)),
        [{"type": "FunctionCallCancelled", "functions": [{"id": "call_1", "name": "get_weather"}]}],
        None,
    ),
    (
        AgentStartedSpeaking(total_latency=1.06, tts_latency=0.31, ttt_latency=0.75),
        [
            {
                "type": "AgentStartedSpeaking",
                "total_latency": 1.06,
                "tts_latency": 0.31,
                "ttt_latency": 0.75,
            }
        ],
        None,
    ),
    (AgentAudioDone(), [{"type": "AgentAudioDone"}], None),
    (InjectionRefused(message="busy"), [{"type": "InjectionRefused", "message": "busy"}], None),
    (
        History(role="user", content="hello"),
        [{"type": "History", "role": "user", "content": "hello"}],
        None,
    ),
    (
        History(function_calls=(HISTORY_CALL,)),
        [
            {
                "type": "History",
                "function_calls": [
                    {
                        "id": "call_1",
                        "name": "get_weather",
                        "client_side": True,
                        "arguments": "{}",
                        "response": "sunny",
                    }
                ],
            }
        ],
        None,
    ),
    (EndOfThought(), [{"type": "EndOfThought"}], None),
    (
        LatencyReport(total_latency=0.5, tts_latency=0.1),
        [{"type": "LatencyReport", "total_latency": 0.5, "tts_latency": 0.1}],
        None,
    ),
    (
        Warning(code="SLOW_THINK_REQUEST", description="We have now waited 5 seconds."),
        [
            {
                "type": "Warning",
                "code": "SLOW_THINK_REQUEST",
                "description": "We have now waited 5 seconds.",
            }
        ],
        None,
    ),
    (
        Error(code="INVALID_SETTINGS", description="bad"),
        [{"type": "Error", "code": "INVALID_SETTINGS", "description": "bad"}],
        [{"type": "Error", "message": "bad", "description": "bad", "code": "INVALID_SETTINGS"}],
    ),
]


def test_every_server_message_has_a_case() -> None:
    assert {type(m) for m, _, _ in CASES} == set(get_args(ServerMessage))


@pytest.mark.parametrize(("message", "ga", "ea"), CASES)
def test_encode_server(
    message: ServerMessage, ga: list[dict[str, Any]], ea: list[dict[str, Any]] | None
) -> None:
    ga_frames = encode_server(message, GA)
    assert [json.loads(f) for f in ga_frames] == ga
    ea_frames = encode_server(message, EA)
    assert [json.loads(f) for f in ea_frames] == (ga if ea is None else ea)
    for frame in ga_frames + ea_frames:
        assert frame == json.dumps(json.loads(frame), separators=(",", ":"), ensure_ascii=False)
        assert next(iter(json.loads(frame))) == "type"


@pytest.mark.parametrize(("message", "ga", "ea"), CASES)
def test_parse_server_reads_back_what_encode_server_wrote(
    message: ServerMessage, ga: list[dict[str, Any]], ea: list[dict[str, Any]] | None
) -> None:
    for frame in encode_server(message, GA):
        assert parse_server(frame, GA) == message
    ea_messages = [parse_server(frame.encode(), EA) for frame in encode_server(message, EA)]
    if isinstance(message, FunctionCallRequest):
        assert ea_messages == [FunctionCallRequest(functions=(CALL,))]
    elif not isinstance(message, FunctionCallResponse):
        assert ea_messages == [message]


def test_ea_function_call_request_one_frame_per_client_side_function() -> None:
    other = FunctionCall(id="call_3", name="f", arguments="{}", client_side=True)
    frames = encode_server(FunctionCallRequest(functions=(CALL, SERVER_CALL, other)), EA)
    assert [json.loads(f)["function_call_id"] for f in frames] == ["call_1", "call_3"]
    assert encode_server(FunctionCallRequest(functions=(SERVER_CALL,)), EA) == ()


def test_non_ascii_stays_readable() -> None:
    assert encode_server(ConversationText(role="user", content="¿Qué tal? 👋"), GA) == (
        '{"type":"ConversationText","role":"user","content":"¿Qué tal? 👋",'
        '"conversational_behavior":"default"}',
    )


def test_conversation_text_conversational_behavior() -> None:
    """GA sends it (PROTOCOL.md 10); early access never had it; parsing defaults it."""
    filler = ConversationText(role="assistant", content="Hmm.", conversational_behavior="filler")
    (frame,) = encode_server(filler, GA)
    assert json.loads(frame)["conversational_behavior"] == "filler"
    assert parse_server(frame, GA) == filler
    assert "conversational_behavior" not in encode_server(filler, EA)[0]
    plain = '{"type":"ConversationText","role":"user","content":"hi"}'
    assert parse_server(plain, GA).conversational_behavior == "default"  # type: ignore[union-attr]
    nulled = (
        '{"type":"ConversationText","role":"user","content":"hi","conversational_behavior":null}'
    )
    assert parse_server(nulled, GA) == parse_server(plain, GA)


# ----------------------------------------------------------------------------------- parse_server


def test_parse_server_aliases_and_generous_defaults() -> None:
    assert parse_server('{"type":"Welcome","session_id":"s"}', GA) == Welcome(request_id="s")
    assert parse_server('{"type":"InjectionRefused"}', GA) == InjectionRefused(message="")
    assert parse_server('{"type":"Error","message":"m"}', EA) == Error(code="", description="m")
    assert parse_server('{"type":"Error"}', GA) == Error(code="", description="")
    assert parse_server(
        '{"type":"FunctionCallResponse","function_call_id":"i","output":"o"}', EA
    ) == (FunctionCallResponse(id="i", name="", content="o"))
    assert parse_server('{"type":"FunctionCallResponse","name":"n","content":"c"}', GA) == (
        FunctionCallResponse(id="", name="n", content="c")
    )
    assert parse_server(
        '{"type":"AgentStartedSpeaking","total_latency":1,"tts_latency":0,'
        '"ttt_latency":1,"extra":true}',
        GA,
    ) == (AgentStartedSpeaking(total_latency=1.0, tts_latency=0.0, ttt_latency=1.0))
    assert parse_server('{"type":"LatencyReport","total_latency":1,"stt_latency":0}', GA) == (
        LatencyReport(total_latency=1.0, stt_latency=0.0)
    )  # integers wherever a float is expected
    assert parse_server('{"type":"History"}', GA) == History()


def test_parse_server_ea_function_call_input_object() -> None:
    frame = (
        '{"type":"FunctionCallRequest","function_name":"f","function_call_id":"1",'
        '"input":{"a":"é"}}'
    )
    assert parse_server(frame, EA) == FunctionCallRequest(
        functions=(FunctionCall(id="1", name="f", arguments='{"a":"é"}', client_side=True),)
    )


@pytest.mark.parametrize(
    ("frame", "generation", "needle"),
    [
        ('{"type":"Welcome"}', GA, "Check the request_id field"),
        ('{"type":"ConversationText","role":"system","content":"x"}', GA, "role field"),
        ('{"type":"ConversationText","role":"user"}', GA, "content field"),
        (
            '{"type":"ConversationText","role":"user","content":"x",'
            '"conversational_behavior":"shout"}',
            GA,
            "conversational_behavior field against the API spec: expected one of default, "
            "backchannel, presence_check, filler",
        ),
        ('{"type":"AgentStartedSpeaking","total_latency":"1"}', GA, "total_latency field"),
        (
            '{"type":"AgentStartedSpeaking","total_latency":true}',
            GA,
            "expected a number, got a boolean",
        ),
        (
            '{"type":"AgentStartedSpeaking","total_latency":1' + "0" * 400 + "}",
            GA,
            "total_latency field against the API spec: expected a number in the float range",
        ),
        (
            '{"type":"FunctionCallRequest"}',
            GA,
            "Check the functions field against the API spec: expected an array",
        ),
        (
            '{"type":"FunctionCallRequest","functions":[{"id":"1","name":"f","arguments":"{}"}]}',
            GA,
            "functions[0].client_side",
        ),
        ('{"type":"FunctionCallRequest","functions":[1]}', GA, "functions[0] field"),
        (
            '{"type":"FunctionCallRequest","function_name":"f","function_call_id":"1"}',
            EA,
            "Check the input field against the API spec: "
            "expected a JSON string or object, got nothing",
        ),
        (
            '{"type":"FunctionCallRequest","function_name":"f","function_call_id":"1","input":null}',
            EA,
            "got null",
        ),
        ('{"type":"FunctionCallCancelled","functions":[{"id":"1"}]}', GA, "functions[0].name"),
        ('{"type":"History","function_calls":[{}]}', GA, "function_calls[0].id"),
        ('{"type":"LatencyReport","tts_latency":"fast"}', GA, "tts_latency"),
        ('{"type":"Warning","code":"X"}', GA, "description field"),
        ('{"type":"FunctionCallResponse","id":"1"}', GA, "content field"),
        (
            '{"type":"PromptUpdated"}',
            EA,
            "Unknown message type 'PromptUpdated'. Expected one of: Welcome,",
        ),
        ('{"type":"FunctionCalling"}', GA, "Unknown message type 'FunctionCalling'"),
        ("nope", GA, "Error parsing server message: not valid JSON"),
        (b"\xc3", EA, "not valid UTF-8"),
    ],
)
def test_parse_server_errors(frame: str | bytes, generation: Generation, needle: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_server(frame, generation)
    assert info.value.code == codes.UNPARSABLE_SERVER_MESSAGE
    assert needle in info.value.description, info.value.description
