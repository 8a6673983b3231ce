"""Client messages of both generations: the SDKs' exact frames, aliases, errors, encoding."""

from __future__ import annotations

import json
from typing import Any

import pytest

from harken.errors import LocalProtocolError, RemoteProtocolError
from harken.protocol import codes
from harken.protocol.codec import UNSUPPORTED_TYPES, Parsed, encode_client, parse_client
from harken.protocol.messages import (
    ClientMessage,
    ForceEndTurn,
    FunctionCallResponse,
    Generation,
    InjectAgentMessage,
    InjectUserMessage,
    KeepAlive,
    Settings,
    Unsupported,
    UpdateListen,
    UpdatePrompt,
    UpdateSpeak,
    UpdateThink,
)
from harken.protocol.settings import (
    Endpoint,
    ListenConfig,
    Provider,
    SpeakConfig,
    ThinkConfig,
)

GA, EA = Generation.GA, Generation.EA
UNPARSABLE = codes.UNPARSABLE_CLIENT_MESSAGE


def pretty(obj: dict[str, Any]) -> str:
    """What the 3.x/4.x SDKs send for ``str(options)``."""
    return json.dumps(obj, indent=4)


def error(
    text: str | bytes, generation: Generation = GA, strict: bool = False
) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as info:
        parse_client(text, generation, strict=strict)
    assert "Traceback" not in info.value.description
    return info.value


# deepgram-sdk 4.8.1 (PROTOCOL.md 7.3), as sent: pretty-printed unless noted
GA_FRAMES: list[tuple[str, ClientMessage]] = [
    (
        pretty({"type": "UpdatePrompt", "prompt": "You are now a pirate."}),
        UpdatePrompt(prompt="You are now a pirate."),
    ),
    (
        pretty(
            {
                "type": "UpdateSpeak",
                "speak": {"provider": {"type": "deepgram", "model": "aura-2-luna-en"}},
            }
        ),
        UpdateSpeak(speak=(SpeakConfig(Provider("deepgram", "aura-2-luna-en")),)),
    ),
    (
        pretty({"type": "InjectAgentMessage", "message": "Still there?"}),
        InjectAgentMessage(message="Still there?"),
    ),
    (
        pretty({"type": "InjectUserMessage", "content": "Hi there"}),
        InjectUserMessage(content="Hi there"),
    ),
    (
        '{"type": "FunctionCallResponse", "id": "call_abc123", "name": "get_weather", '
        '"content": "{\\"temp_c\\": 21}"}',
        FunctionCallResponse(id="call_abc123", name="get_weather", content='{"temp_c": 21}'),
    ),
    ('{"type": "KeepAlive"}', KeepAlive()),
    (pretty({"type": "KeepAlive"}), KeepAlive()),
    # deepgram-sdk 7.x / @deepgram/sdk 5.x (PROTOCOL.md 10)
    ('{"type":"ForceEndTurn"}', ForceEndTurn()),
]
# deepgram-sdk 3.10.1 (PROTOCOL.md 7.3)
EA_FRAMES: list[tuple[str, ClientMessage]] = [
    (
        pretty({"type": "UpdateInstructions", "instructions": "Talk like a pirate."}),
        UpdatePrompt(prompt="Talk like a pirate.", append=True),
    ),
    (
        pretty({"type": "UpdateSpeak", "model": "aura-luna-en"}),
        UpdateSpeak(speak=(SpeakConfig(Provider("deepgram", "aura-luna-en")),)),
    ),
    (
        pretty({"type": "InjectAgentMessage", "message": "Still there?"}),
        InjectAgentMessage(message="Still there?"),
    ),
    (
        '{"type": "FunctionCallResponse", "function_call_id": "fc_abc123", '
        '"output": "{\\"temp_c\\": 21}"}',
        FunctionCallResponse(id="fc_abc123", name="", content='{"temp_c": 21}'),
    ),
    (pretty({"type": "KeepAlive"}), KeepAlive()),
]


@pytest.mark.parametrize(("text", "message"), GA_FRAMES)
def test_ga_sdk_frames(text: str, message: ClientMessage) -> None:
    assert parse_client(text, GA, strict=True) == Parsed(message)
    assert parse_client(text.encode(), GA) == Parsed(message)
    assert parse_client(encode_client(message, GA), GA).message == message


@pytest.mark.parametrize(("text", "message"), EA_FRAMES)
def test_ea_sdk_frames(text: str, message: ClientMessage) -> None:
    assert parse_client(text, EA, strict=True) == Parsed(message)
    assert parse_client(encode_client(message, EA), EA).message == message


def test_encode_client_is_compact_and_matches_the_sdk_shapes() -> None:
    assert encode_client(KeepAlive(), GA) == '{"type":"KeepAlive"}'
    assert (
        encode_client(InjectAgentMessage(message="é"), GA)
        == '{"type":"InjectAgentMessage","message":"é"}'
    )
    assert json.loads(encode_client(GA_FRAMES[4][1], GA)) == json.loads(GA_FRAMES[4][0])
    for text, message in EA_FRAMES:
        assert json.loads(encode_client(message, EA)) == json.loads(text)
    assert json.loads(encode_client(Settings(), EA))["type"] == "SettingsConfiguration"
    assert json.loads(encode_client(Settings(), GA))["type"] == "Settings"


def test_any_bytes_like_frame() -> None:
    frame = b'{"type":"KeepAlive"}'
    for data in (bytearray(frame), memoryview(frame)):
        assert parse_client(data, GA).message == KeepAlive()  # type: ignore[arg-type]


def test_key_order_and_whitespace_do_not_matter() -> None:
    text = '\n {\n\t"prompt" : "p" ,\r\n "type":"UpdatePrompt"}  \n'
    assert parse_client(text, GA).message == UpdatePrompt(prompt="p")


# ----------------------------------------------------------------------------------- aliases


def test_inject_agent_message_content_alias_and_behavior() -> None:
    parse = lambda obj: parse_client(json.dumps({"type": "InjectAgentMessage", **obj}), GA).message  # noqa: E731
    assert parse({"content": "c"}) == InjectAgentMessage(message="c")
    assert parse({"message": "m", "content": "c"}) == InjectAgentMessage(message="m")
    assert parse({"message": "m", "content": None}) == InjectAgentMessage(message="m")
    for behavior in ("default", "queue", "interrupt"):
        assert parse({"message": "m", "behavior": behavior}) == InjectAgentMessage(
            message="m", behavior=behavior
        )  # type: ignore[arg-type]
    for bad, needle in [
        (
            {"message": "m", "behavior": "now"},
            "behavior field against the API spec: expected one of default, queue, interrupt, "
            'got the string "now"',
        ),
        (
            {},
            "Check the message field against the API spec: expected a string, "
            "got nothing (the field is missing)",
        ),
        ({"message": None}, "message field against the API spec: expected a string, got null"),
        ({"message": 1}, "message field against the API spec: expected a string, got an integer"),
        ({"message": 1.5}, "message field against the API spec: expected a string, got a number"),
    ]:
        e = error(json.dumps({"type": "InjectAgentMessage", **bad}))
        assert e.code == UNPARSABLE and needle in e.description, e.description
    encoded = encode_client(InjectAgentMessage(message="m", behavior="queue"), EA)
    assert json.loads(encoded) == {
        "type": "InjectAgentMessage",
        "message": "m",
        "behavior": "queue",
    }


def test_function_call_response_aliases_per_generation() -> None:
    both = {
        "type": "FunctionCallResponse",
        "id": "ga",
        "function_call_id": "ea",
        "content": "gc",
        "output": "eo",
        "name": "n",
    }
    assert parse_client(json.dumps(both), GA).message == FunctionCallResponse(
        id="ga", name="n", content="gc"
    )
    assert parse_client(json.dumps(both), EA).message == FunctionCallResponse(
        id="ea", name="n", content="eo"
    )
    ea_shape = {"type": "FunctionCallResponse", "function_call_id": "x", "output": "o"}
    assert parse_client(json.dumps(ea_shape), GA).message == FunctionCallResponse(
        id="x", name="", content="o"
    )
    for missing, field in [({"content": "c"}, "id"), ({"id": "i"}, "content")]:
        e = error(json.dumps({"type": "FunctionCallResponse", **missing}))
        assert f"Check the {field} field" in e.description
    e = error(json.dumps({"type": "FunctionCallResponse", "output": "c"}), EA)
    assert "function_call_id field" in e.description


def test_inject_user_message_on_both_generations() -> None:
    text = '{"type":"InjectUserMessage","content":"hi"}'
    assert parse_client(text, EA).message == parse_client(text, GA).message
    assert "content field" in error('{"type":"InjectUserMessage"}').description


# ----------------------------------------------------------------------------------- updates


def test_update_speak_object_or_array() -> None:
    speak = [
        {"provider": {"type": "deepgram", "model": "a"}},
        {"provider": {"type": "open_ai", "model": "tts-1"}, "endpoint": {"url": "https://x"}},
    ]
    message = parse_client(json.dumps({"type": "UpdateSpeak", "speak": speak}), GA).message
    assert message == UpdateSpeak(
        speak=(
            SpeakConfig(Provider("deepgram", "a")),
            SpeakConfig(Provider("open_ai", "tts-1"), Endpoint("https://x")),
        )
    )
    assert json.loads(encode_client(message, GA))["speak"][1]["endpoint"] == {
        "url": "https://x",
        "method": "post",
    }
    assert "speak field" in error('{"type":"UpdateSpeak"}').description
    assert (
        "expected an object or an array, got null"
        in error('{"type":"UpdateSpeak","speak":null}').description
    )
    assert error('{"type":"UpdateSpeak","speak":[]}').code == codes.INVALID_SETTINGS


def test_update_speak_ea() -> None:
    assert parse_client('{"type":"UpdateSpeak","model":""}', EA).message == UpdateSpeak(
        speak=(SpeakConfig(Provider("deepgram")),)
    )
    assert "model field" in error('{"type":"UpdateSpeak","speak":{}}', EA).description
    assert json.loads(encode_client(UpdateSpeak(speak=()), EA)) == {
        "type": "UpdateSpeak",
        "model": "",
    }


def test_update_think_and_listen() -> None:
    think = {
        "type": "UpdateThink",
        "think": {"provider": {"type": "open_ai", "model": "gpt-4o"}, "prompt": "p"},
    }
    message = parse_client(json.dumps(think), GA).message
    assert message == UpdateThink(think=(ThinkConfig(Provider("open_ai", "gpt-4o"), prompt="p"),))
    assert parse_client(encode_client(message, GA), GA).message == message
    assert "think field" in error('{"type":"UpdateThink"}').description
    assert (
        error('{"type":"UpdateThink","think":{"provider":{"temperature":9}}}').code
        == codes.INVALID_SETTINGS
    )

    listen = {
        "type": "UpdateListen",
        "listen": {"provider": {"type": "deepgram", "keyterms": ["a"]}},
    }
    message = parse_client(json.dumps(listen), GA).message
    assert message == UpdateListen(
        listen=ListenConfig(Provider("deepgram", None, {"keyterms": ["a"]}))
    )
    assert json.loads(encode_client(message, GA)) == listen
    e = error('{"type":"UpdateListen"}')
    assert (
        "Check the listen field against the API spec: expected an object, got nothing"
        in e.description
    )
    assert parse_client('{"type":"UpdateListen","listen":{"x":1}}', GA).ignored == ("listen.x",)


def test_update_prompt_append_has_one_form_per_generation() -> None:
    with pytest.raises(LocalProtocolError) as info:
        encode_client(UpdatePrompt(prompt="p", append=True), GA)
    assert info.value.code == UNPARSABLE and "/v1/agent/converse" in info.value.description
    with pytest.raises(LocalProtocolError) as info:
        encode_client(UpdatePrompt(prompt="p"), EA)
    assert "/agent" in info.value.description
    for message in (UpdateThink(think=()), UpdateListen(listen=ListenConfig(Provider("")))):
        with pytest.raises(LocalProtocolError) as info:
            encode_client(message, EA)
        assert f"{message.type} exists only on /v1/agent/converse" in info.value.description


# ----------------------------------------------------------------------------------- leniency


def test_unknown_keys_on_simple_messages() -> None:
    text = '{"type":"KeepAlive","ts":1,"extra":{"a":1}}'
    assert parse_client(text, GA) == Parsed(KeepAlive(), ("ts", "extra"))
    e = error(text, strict=True)
    assert e.code == UNPARSABLE and "Check the ts field" in e.description
    assert parse_client('{"type":"UpdatePrompt","prompt":"p","x":0}', GA).ignored == ("x",)


def test_unknown_keys_inside_settings_are_reported() -> None:
    text = json.dumps({"type": "Settings", "agent": {"tags": ["x"]}})
    assert parse_client(text, GA).ignored == ("agent.tags",)


# ----------------------------------------------------------------------------------- framing errors


@pytest.mark.parametrize(
    ("frame", "needle"),
    [
        ("", "not valid JSON (Expecting value at line 1, column 1)"),
        ("{", "not valid JSON"),
        ('{"type":"KeepAlive"} x', "not valid JSON (Extra data"),
        (b"\xff\xfe{}", "not valid UTF-8 text"),
        ("[1]", 'expected a JSON object with a "type" field, got an array'),
        ('"KeepAlive"', 'expected a JSON object with a "type" field, got the string "KeepAlive"'),
        ("null", "got null"),
        (
            "{}",
            "Check the type field against the API spec: "
            "expected a string naming the message type, got nothing",
        ),
        ('{"type":1}', "got an integer"),
        ('{"type":"KeepAlive","n":NaN}', "NaN is not a JSON number"),
        ('{"type":"KeepAlive","n":-Infinity}', "-Infinity is not a JSON number"),
        ('{"type":"KeepAlive","n":' + "9" * 5000 + "}", "a number is too long"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("\ufeff{}", "not valid JSON"),
    ],
)
def test_framing_errors(frame: str | bytes, needle: str) -> None:
    e = error(frame)
    assert e.code == UNPARSABLE
    assert e.description.startswith("Error parsing client message")
    assert needle in e.description, e.description


def test_unknown_type_lists_what_is_expected() -> None:
    e = error('{"type":"Setings"}')
    assert e.description == (
        "Unknown message type 'Setings'. Expected one of: Settings, UpdatePrompt, UpdateSpeak, "
        "UpdateThink, UpdateListen, InjectUserMessage, InjectAgentMessage, FunctionCallResponse, "
        "KeepAlive, ForceEndTurn."
    )  # the documented types harken does not serve are not offered
    e = error('{"type":"Foo"}', EA)
    assert (
        "Expected one of: SettingsConfiguration, UpdateInstructions, UpdateSpeak" in e.description
    )
    assert len(error(json.dumps({"type": "x" * 1000})).description) < 400


@pytest.mark.parametrize(
    ("kind", "generation", "description"),
    [
        (
            "SettingsConfiguration",
            GA,
            "SettingsConfiguration is the early-access form; on /v1/agent/converse send Settings.",
        ),
        (
            "UpdateInstructions",
            GA,
            "UpdateInstructions is the early-access form; on /v1/agent/converse send UpdatePrompt.",
        ),
        (
            "Settings",
            EA,
            "Settings is the /v1/agent/converse form; on /agent send SettingsConfiguration.",
        ),
        (
            "UpdatePrompt",
            EA,
            "UpdatePrompt is the /v1/agent/converse form; "
            "on /agent send UpdateInstructions (it adds to the instructions).",
        ),
        ("UpdateThink", EA, "UpdateThink exists only on /v1/agent/converse."),
        ("UpdateListen", EA, "UpdateListen exists only on /v1/agent/converse."),
        ("ForceEndTurn", EA, "ForceEndTurn exists only on /v1/agent/converse."),
    ],
)
def test_other_generation_types_say_where_they_belong(
    kind: str, generation: Generation, description: str
) -> None:
    e = error(json.dumps({"type": kind}), generation)
    assert (e.code, e.description) == (UNPARSABLE, description)


def test_server_types_sent_by_a_client() -> None:
    e = error('{"type":"Welcome","request_id":"x"}')
    assert e.description.startswith(
        "Welcome is a server-to-client message; clients send one of: Settings,"
    )
    assert error('{"type":"InstructionsUpdated"}', EA).description.startswith(
        "InstructionsUpdated is a server"
    )


# ----------------------------------------------------------------------------------- 2026 messages


def test_force_end_turn() -> None:
    assert parse_client('{"type":"ForceEndTurn","extra":1}', GA) == Parsed(
        ForceEndTurn(), ("extra",)
    )
    assert "Check the x field" in error('{"type":"ForceEndTurn","x":1}', strict=True).description
    assert encode_client(ForceEndTurn(), GA) == '{"type":"ForceEndTurn"}'
    e = error('{"type":"ForceEndTurn"}', EA)  # early access has no such message
    assert (e.code, e.description) == (
        UNPARSABLE,
        "ForceEndTurn exists only on /v1/agent/converse.",
    )
    with pytest.raises(LocalProtocolError) as info:
        encode_client(ForceEndTurn(), EA)
    assert "ForceEndTurn exists only on /v1/agent/converse" in info.value.description


@pytest.mark.parametrize("kind", UNSUPPORTED_TYPES)
def test_unsupported_documented_types_parse_without_reading_their_fields(kind: str) -> None:
    frame = json.dumps({"type": kind, "think": {"provider": 1}, "anything": [None]})
    for strict in (False, True):  # fields are neither read, nor reported, nor refused
        assert parse_client(frame, GA, strict=strict) == Parsed(Unsupported(name=kind))
    e = error(frame, EA)
    assert e.code == UNPARSABLE and e.description.startswith(f"Unknown message type {kind!r}")
    assert kind not in e.description.split("Expected one of:")[1]
    assert set(UNSUPPORTED_TYPES) == {"UpdateThink_Live", "__customToThinkProvider"}


def test_integers_where_floats_are_expected_in_updates() -> None:
    """deepgram-sdk 7.x writes a whole-number float as an integer (``1.0`` -> ``1``)."""
    listen = {
        "type": "UpdateListen",
        "listen": {
            "provider": {
                "type": "deepgram",
                "version": "v2",
                "model": "flux-general-en",
                "eot_threshold": 1,
                "eager_eot_threshold": 0,
                "eot_timeout_ms": 5000,
            }
        },
    }
    message = parse_client(json.dumps(listen), GA, strict=True).message
    assert isinstance(message, UpdateListen)
    options = message.listen.provider.options
    assert options == {"version": "v2", "eot_threshold": 1.0, "eager_eot_threshold": 0.0,
                       "eot_timeout_ms": 5000}  # fmt: skip
    assert type(options["eot_threshold"]) is float and type(options["eager_eot_threshold"]) is float
    think = {"type": "UpdateThink", "think": {"provider": {"type": "open_ai", "temperature": 1}}}
    message = parse_client(json.dumps(think), GA).message
    assert isinstance(message, UpdateThink)
    assert type(message.think[0].provider.options["temperature"]) is float
    speak = {"type": "UpdateSpeak", "speak": {"provider": {"type": "deepgram", "speed": 1}}}
    message = parse_client(json.dumps(speak), GA).message
    assert isinstance(message, UpdateSpeak)
    assert message.speak[0].provider.options == {"speed": 1.0}
    assert json.loads(encode_client(message, GA))["speak"]["provider"]["speed"] == 1.0
