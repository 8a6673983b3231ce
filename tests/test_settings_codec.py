"""Settings from and to the wire, both generations: SDK captures, defaults, aliases, validation."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from harken.errors import RemoteProtocolError
from harken.protocol import codes
from harken.protocol.codec import parse_client, settings_from_wire, settings_to_wire
from harken.protocol.messages import Generation, Settings
from harken.protocol.settings import (
    AgentConfig,
    AudioConfig,
    AudioInput,
    AudioOutput,
    ContextConfig,
    Endpoint,
    Flags,
    FunctionDef,
    HistoryFunctionCall,
    HistoryItem,
    ListenConfig,
    Provider,
    SpeakConfig,
    ThinkConfig,
)

GA, EA = Generation.GA, Generation.EA

# PROTOCOL.md section 7.3, verbatim: what deepgram-sdk 4.8.1 sent (content; the SDK itself
# pretty-printed it, see SDK_481_SETTINGS_PRETTY).
SDK_481_SETTINGS = """
{"experimental": true, "type": "Settings", "tags": ["capture", "local"],
 "audio": {"input": {"encoding": "linear16", "sample_rate": 24000},
           "output": {"encoding": "linear16", "sample_rate": 24000, "container": "none"}},
 "agent": {"language": "en",
   "listen": {"provider": {"type": "deepgram", "model": "nova-3", "keyterms": ["Deepgram"]}},
   "think": {"provider": {"type": "open_ai", "model": "gpt-4o-mini", "temperature": 0.7},
     "functions": [
       {"name": "get_weather", "description": "Get the weather for a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string", "description": "City"}}, "required": ["location"]}},
       {"name": "lookup_order", "description": "Look up an order", "url": "", "method": "",
        "parameters": {"type": "object", "properties": {"order_id": {"type": "string", "description": "Order id"}}, "required": ["order_id"]},
        "endpoint": {"method": "post", "url": "https://example.invalid/orders", "headers": {"authorization": "Bearer x"}}}],
     "prompt": "You are a friendly AI assistant."},
   "speak": [{"provider": {"type": "deepgram", "model": "aura-2-thalia-en"}},
             {"provider": {"type": "open_ai", "model": "tts-1", "voice": "shimmer"},
              "endpoint": {"method": "POST", "url": "https://api.openai.com/v1/audio/speech", "headers": {"authorization": "Bearer x"}}}],
   "greeting": "Hello! How can I help you today?"},
 "mip_opt_out": false}
"""  # noqa: E501
SDK_481_SETTINGS_PRETTY = json.dumps(json.loads(SDK_481_SETTINGS), indent=4)
SDK_481_BARE = """{
    "experimental": false,
    "type": "Settings",
    "audio": {
        "input": {
            "encoding": "linear16",
            "sample_rate": 16000
        },
        "output": {
            "encoding": "linear16",
            "sample_rate": 16000,
            "container": "none"
        }
    },
    "agent": {
        "language": "en",
        "speak": {}
    },
    "mip_opt_out": false
}"""
SDK_3101_BARE = """{
    "type": "SettingsConfiguration",
    "audio": {
        "input": {
            "encoding": "linear16",
            "sample_rate": 16000
        },
        "output": {
            "encoding": "linear16",
            "sample_rate": 16000,
            "container": "none"
        }
    },
    "agent": {
        "listen": {},
        "think": {
            "provider": {}
        },
        "speak": {
            "model": "aura-asteria-en"
        }
    }
}"""
# deepgram-sdk 3.10.1 SettingsConfigurationOptions with the EA equivalents of the 4.8.1 flow
SDK_3101_SETTINGS = """
{"type": "SettingsConfiguration",
 "audio": {"input": {"encoding": "linear16", "sample_rate": 24000},
           "output": {"encoding": "linear16", "sample_rate": 24000, "container": "none"}},
 "agent": {"listen": {"model": "nova-3", "keyterms": ["Deepgram"]},
   "think": {"provider": {"type": "open_ai"}, "model": "gpt-4o-mini",
     "instructions": "You are a friendly AI assistant.",
     "functions": [
       {"name": "get_weather", "description": "Get the weather for a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string", "description": "City"}}, "required": ["location"]}},
       {"name": "lookup_order", "description": "Look up an order",
        "url": "https://example.invalid/orders", "method": "post",
        "headers": [{"key": "authorization", "value": "Bearer x"}],
        "parameters": {"type": "object", "properties": {"order_id": {"type": "string", "description": "Order id"}}, "required": ["order_id"]}}]},
   "speak": {"model": "aura-asteria-en"}},
 "context": {"messages": [{"role": "user", "content": "Hi"},
                          {"role": "assistant", "content": "Hello!"}], "replay": true}}
"""  # noqa: E501
SDK_3101_SETTINGS_PRETTY = json.dumps(json.loads(SDK_3101_SETTINGS), indent=4)

WEATHER = FunctionDef(
    name="get_weather",
    description="Get the weather for a city",
    parameters={
        "type": "object",
        "properties": {"location": {"type": "string", "description": "City"}},
        "required": ["location"],
    },
)
ORDER = FunctionDef(
    name="lookup_order",
    description="Look up an order",
    parameters={
        "type": "object",
        "properties": {"order_id": {"type": "string", "description": "Order id"}},
        "required": ["order_id"],
    },
    endpoint=Endpoint("https://example.invalid/orders", "post", {"authorization": "Bearer x"}),
)
AUDIO_24K = AudioConfig(AudioInput("linear16", 24000), AudioOutput("linear16", 24000))
AUDIO_16K = AudioConfig(AudioInput("linear16", 16000), AudioOutput("linear16", 16000))


def ga(obj: dict[str, Any], strict: bool = False) -> Settings:
    settings, _ = settings_from_wire(obj, GA, strict=strict)
    return settings


def ea(obj: dict[str, Any], strict: bool = False) -> Settings:
    settings, _ = settings_from_wire(obj, EA, strict=strict)
    return settings


def fails(fn: Callable[[], object], code: str, *needles: str) -> str:
    with pytest.raises(RemoteProtocolError) as info:
        fn()
    assert info.value.code == code, info.value.description
    for needle in needles:
        assert needle in info.value.description
    assert "Traceback" not in info.value.description
    return info.value.description


def agent(**fields: Any) -> dict[str, Any]:
    return {"type": "Settings", "agent": fields}


def think(**fields: Any) -> dict[str, Any]:
    return agent(think={"provider": {"type": "open_ai"}, **fields})


def function(**fields: Any) -> dict[str, Any]:
    return think(functions=[{"name": "f", **fields}])


# ----------------------------------------------------------------------------------- SDK frames


@pytest.mark.parametrize("text", [SDK_481_SETTINGS, SDK_481_SETTINGS_PRETTY])
def test_sdk_481_settings(text: str) -> None:
    parsed = parse_client(text, GA, strict=True)
    assert parsed.ignored == ()
    assert parsed.message == Settings(
        experimental=True,
        tags=("capture", "local"),
        audio=AUDIO_24K,
        agent=AgentConfig(
            language="en",
            listen=ListenConfig(Provider("deepgram", "nova-3", {"keyterms": ["Deepgram"]})),
            think=(
                ThinkConfig(
                    provider=Provider("open_ai", "gpt-4o-mini", {"temperature": 0.7}),
                    prompt="You are a friendly AI assistant.",
                    functions=(WEATHER, ORDER),
                ),
            ),
            speak=(
                SpeakConfig(Provider("deepgram", "aura-2-thalia-en")),
                SpeakConfig(
                    Provider("open_ai", "tts-1", {"voice": "shimmer"}),
                    Endpoint(
                        "https://api.openai.com/v1/audio/speech",
                        "post",
                        {"authorization": "Bearer x"},
                    ),
                ),
            ),
            greeting="Hello! How can I help you today?",
        ),
    )


def test_sdk_481_bare_settings_options() -> None:
    parsed = parse_client(SDK_481_BARE, GA, strict=True)
    assert parsed.ignored == ()
    assert parsed.message == Settings(
        audio=AUDIO_16K, agent=AgentConfig(speak=(SpeakConfig(Provider("")),))
    )


def test_sdk_3101_bare_settings_configuration() -> None:
    parsed = parse_client(SDK_3101_BARE, EA, strict=True)
    assert parsed.ignored == ()
    assert parsed.message == Settings(
        audio=AUDIO_16K,
        agent=AgentConfig(
            listen=ListenConfig(Provider("deepgram")),
            think=(ThinkConfig(Provider("")),),
            speak=(SpeakConfig(Provider("deepgram", "aura-asteria-en")),),
        ),
    )


@pytest.mark.parametrize("text", [SDK_3101_SETTINGS, SDK_3101_SETTINGS_PRETTY])
def test_sdk_3101_settings(text: str) -> None:
    parsed = parse_client(text, EA, strict=True)
    assert parsed.ignored == ()
    assert parsed.message == Settings(
        audio=AUDIO_24K,
        agent=AgentConfig(
            listen=ListenConfig(Provider("deepgram", "nova-3", {"keyterms": ["Deepgram"]})),
            think=(
                ThinkConfig(
                    provider=Provider("open_ai", "gpt-4o-mini"),
                    prompt="You are a friendly AI assistant.",
                    functions=(WEATHER, ORDER),
                ),
            ),
            speak=(SpeakConfig(Provider("deepgram", "aura-asteria-en")),),
            context=ContextConfig(
                messages=(HistoryItem("user", "Hi"), HistoryItem("assistant", "Hello!")),
                replay=True,
            ),
        ),
    )


# ----------------------------------------------------------------------------------- audio


def test_defaults_when_audio_or_input_is_omitted() -> None:
    assert ga({"type": "Settings"}) == Settings()
    assert ga({"audio": None, "agent": None}) == Settings()
    assert ga({"audio": {}}).audio == AudioConfig()
    assert ga({"audio": {"input": {}}}).audio.input == AudioInput("linear16", 24000)
    out = ga({"audio": {"output": {"encoding": "mulaw"}}}).audio
    assert out == AudioConfig(output=AudioOutput("mulaw", 8000))
    assert ga({"audio": {"input": {"encoding": "alaw"}}}).audio.input == AudioInput("alaw", 8000)


def test_bitrate_is_kept_and_container_wav_accepted() -> None:
    out = {"encoding": "linear16", "sample_rate": 48000, "bitrate": 48000, "container": "wav"}
    assert ga({"audio": {"output": out}}).audio.output == AudioOutput(
        "linear16", 48000, 48000, "wav"
    )
    fails(
        lambda: ga({"audio": {"output": {"bitrate": "x"}}}),
        codes.UNPARSABLE_CLIENT_MESSAGE,
        "audio.output.bitrate",
        "expected an integer",
    )


@pytest.mark.parametrize(
    ("audio", "path"),
    [
        ({"input": {"encoding": "opus"}}, "audio.input.encoding"),
        ({"output": {"encoding": "mp3"}}, "audio.output.encoding"),
        ({"output": {"container": "ogg"}}, "audio.output.container"),
        ({"input": {"sample_rate": 7999}}, "audio.input.sample_rate"),
        ({"output": {"sample_rate": 48001}}, "audio.output.sample_rate"),
        ({"input": {"sample_rate": "16000"}}, "audio.input.sample_rate"),
        ({"input": {"sample_rate": 16000.5}}, "audio.input.sample_rate"),
        ({"input": {"sample_rate": True}}, "audio.input.sample_rate"),
    ],
)
def test_invalid_audio(audio: dict[str, Any], path: str) -> None:
    fails(lambda: ga({"audio": audio}), codes.INVALID_SETTINGS, path)


def test_audio_wrong_types() -> None:
    fails(lambda: ga({"audio": []}), codes.UNPARSABLE_CLIENT_MESSAGE, "audio", "got an array")
    fails(
        lambda: ga({"audio": {"input": {"encoding": 1}}}),
        codes.UNPARSABLE_CLIENT_MESSAGE,
        "audio.input.encoding",
        "expected a string, got an integer",
    )


# ----------------------------------------------------------------------------------- top level


def test_agent_id_is_not_supported_in_either_generation() -> None:
    for generation in (GA, EA):
        description = fails(
            lambda g=generation: settings_from_wire({"agent": "3f1e…"}, g),
            codes.AGENT_ID_NOT_SUPPORTED,
        )
        assert description == (
            "Stored agent configurations are not supported by this server; "
            "send the agent object inline."
        )


def test_settings_must_be_an_object() -> None:
    fails(lambda: settings_from_wire([], GA), codes.UNPARSABLE_CLIENT_MESSAGE, "expected an object")  # type: ignore[arg-type]
    fails(lambda: ga({"agent": 5}), codes.UNPARSABLE_CLIENT_MESSAGE, "agent", "got an integer")


def test_top_level_fields() -> None:
    s = ga(
        {"experimental": True, "tags": ["a", "b"], "flags": {"history": False}, "mip_opt_out": True}
    )
    assert (s.experimental, s.tags, s.flags, s.mip_opt_out) == (
        True,
        ("a", "b"),
        Flags(False),
        True,
    )
    assert ga({"flags": {}}).flags == Flags(True)
    fails(
        lambda: ga({"experimental": "yes"}),
        codes.UNPARSABLE_CLIENT_MESSAGE,
        "experimental",
        'expected a boolean, got the string "yes"',
    )
    fails(lambda: ga({"tags": "a"}), codes.UNPARSABLE_CLIENT_MESSAGE, "tags", "expected an array")
    fails(lambda: ga({"tags": ["a", 1]}), codes.UNPARSABLE_CLIENT_MESSAGE, "tags[1]")
    fails(lambda: ga({"flags": True}), codes.UNPARSABLE_CLIENT_MESSAGE, "flags", "got a boolean")


def test_language_and_alias() -> None:
    assert ga(agent()).agent.language == "en"
    assert ga(agent(language="es")).agent.language == "es"
    assert ga(agent(language_code="de")).agent.language == "de"
    assert ga(agent(language="es", language_code="de")).agent.language == "es"
    assert ga(agent(greeting="Hi")).agent.greeting == "Hi"
    assert ga(agent(greeting=None)).agent.greeting is None


# ----------------------------------------------------------------------------------- providers


def test_listen() -> None:
    assert ga(agent(listen={})).agent.listen == ListenConfig(Provider(""))
    provider = {
        "type": "deepgram",
        "model": "flux-general-en",
        "version": "v2",
        "eot_threshold": 0.7,
    }
    listen = ga(agent(listen={"provider": provider})).agent.listen
    assert listen == ListenConfig(
        Provider("deepgram", "flux-general-en", {"version": "v2", "eot_threshold": 0.7})
    )


def test_provider_aliases_and_normalisation() -> None:
    speak = ga(
        agent(speak={"provider": {"type": "aws_polly", "language_code": "en-US", "model": ""}})
    )
    assert speak.agent.speak == (SpeakConfig(Provider("aws_polly", None, {"language": "en-US"})),)
    both = {"type": "x", "language": "fr", "language_code": "de"}
    assert ga(agent(speak={"provider": both})).agent.speak[0].provider.options == {"language": "fr"}


def test_provider_wrong_types() -> None:
    bad = [
        ({"type": 1}, "agent.speak.provider.type"),
        ({"model": 1}, "agent.speak.provider.model"),
        ({"keyterms": "x"}, "agent.speak.provider.keyterms"),
        ({"keyterms": [1]}, "agent.speak.provider.keyterms[0]"),
        ({"language": 1}, "agent.speak.provider.language"),
        ("deepgram", "agent.speak.provider"),
    ]
    for provider, path in bad:
        fails(
            lambda p=provider: ga(agent(speak={"provider": p})),
            codes.UNPARSABLE_CLIENT_MESSAGE,
            f"Check the {path} field",
        )


def test_temperature() -> None:
    assert ga(think(provider={"temperature": 2})).agent.think[0].provider.options == {
        "temperature": 2
    }
    for value in (2.5, -0.1):
        fails(
            lambda v=value: ga(think(provider={"temperature": v})),
            codes.INVALID_SETTINGS,
            "agent.think.provider.temperature",
            "outside 0..2",
        )
    fails(
        lambda: ga(think(provider={"temperature": 10**400})),
        codes.UNPARSABLE_CLIENT_MESSAGE,
        "temperature field against the API spec: expected a number in the float range",
    )
    for value in ("hot", True):
        fails(
            lambda v=value: ga(think(provider={"temperature": v})),
            codes.UNPARSABLE_CLIENT_MESSAGE,
            "expected a number",
        )


def test_integers_where_floats_are_expected() -> None:
    """deepgram-sdk 7.x writes ``1.0`` as ``1``: every number option takes an int, kept as float."""
    flux = {
        "type": "deepgram",
        "version": "v2",
        "model": "flux-general-en",
        "eot_threshold": 1,
        "eager_eot_threshold": 0,
    }
    settings = ga(
        agent(
            listen={"provider": flux},
            think={"provider": {"type": "open_ai", "temperature": 0}},
            speak={"provider": {"type": "deepgram", "speed": 2}},
        ),
        strict=True,
    )
    assert settings.agent.listen is not None
    listen = settings.agent.listen.provider.options
    numbers = [
        listen["eot_threshold"],
        listen["eager_eot_threshold"],
        settings.agent.think[0].provider.options["temperature"],
        settings.agent.speak[0].provider.options["speed"],
    ]
    assert numbers == [1.0, 0.0, 0.0, 2.0] and all(type(n) is float for n in numbers)
    ea_think = ea({"agent": {"think": {"provider": {"type": "open_ai", "temperature": 1}}}})
    assert type(ea_think.agent.think[0].provider.options["temperature"]) is float
    null = ga(agent(speak={"provider": {"speed": None}})).agent.speak[0].provider.options
    assert null == {"speed": None}  # null stays "not given", as for every provider key


def test_end_of_turn_thresholds() -> None:
    def listen(**provider: Any) -> Settings:
        return ga(agent(listen={"provider": {"type": "deepgram", **provider}}))

    assert listen(eot_threshold=0.7, eager_eot_threshold=0.7).agent.listen is not None
    for key in ("eot_threshold", "eager_eot_threshold"):
        for value in (1.5, -0.1):
            fails(
                lambda k=key, v=value: listen(**{k: v}),
                codes.INVALID_SETTINGS,
                f"agent.listen.provider.{key} {value:g} is outside 0..1",
            )
        fails(
            lambda k=key: listen(**{k: "high"}),
            codes.UNPARSABLE_CLIENT_MESSAGE,
            f"Check the agent.listen.provider.{key} field",
            "expected a number",
        )
    fails(
        lambda: listen(eot_threshold=0.6, eager_eot_threshold=0.8),
        codes.INVALID_SETTINGS,
        "agent.listen.provider.eager_eot_threshold 0.8 is above eot_threshold 0.6",
    )
    fails(
        lambda: ga(agent(speak={"provider": {"speed": True}})),
        codes.UNPARSABLE_CLIENT_MESSAGE,
        "agent.speak.provider.speed",
    )


def test_think_and_speak_object_or_array() -> None:
    one = ga(think(prompt="p")).agent.think
    assert one == (ThinkConfig(Provider("open_ai"), prompt="p"),)
    many = ga(agent(think=[{"provider": {"type": "a"}}, {"provider": {"type": "b"}}])).agent.think
    assert [t.provider.type for t in many] == ["a", "b"]
    assert ga(agent(think={})).agent.think == (ThinkConfig(Provider("")),)
    for key in ("think", "speak"):
        fails(lambda k=key: ga(agent(**{k: []})), codes.INVALID_SETTINGS, f"agent.{key}", "empty")
        fails(
            lambda k=key: ga(agent(**{k: "x"})),
            codes.UNPARSABLE_CLIENT_MESSAGE,
            f"agent.{key} field",
            "expected an object or an array",
        )
    fails(lambda: ga(agent(speak=[{}, 3])), codes.UNPARSABLE_CLIENT_MESSAGE, "agent.speak[1]")


def test_context_length() -> None:
    assert ga(think(context_length="max")).agent.think[0].context_length == "max"
    assert ga(think(context_length=2)).agent.think[0].context_length == 2
    for value in (1, "min", True, 2.5):
        fails(
            lambda v=value: ga(think(context_length=v)),
            codes.INVALID_SETTINGS,
            "agent.think.context_length",
        )


# ----------------------------------------------------------------------------------- endpoints


def test_think_and_speak_endpoints() -> None:
    endpoint = {"url": " https://llm.local/v1 ", "headers": {"authorization": "Bearer k"}}
    assert ga(think(endpoint=endpoint)).agent.think[0].endpoint == Endpoint(
        "https://llm.local/v1", "post", {"authorization": "Bearer k"}
    )
    speak = {"provider": {}, "endpoint": {"url": "http://tts", "method": "GET", "headers": None}}
    assert ga(agent(speak=speak)).agent.speak[0].endpoint == Endpoint("http://tts", "get")


@pytest.mark.parametrize(
    ("endpoint", "code", "needle"),
    [
        ({"url": "ftp://x"}, codes.INVALID_SETTINGS, "agent.think.endpoint.url"),
        ({"url": "wss://x"}, codes.INVALID_SETTINGS, "http(s)"),
        ({"url": "https://"}, codes.INVALID_SETTINGS, "agent.think.endpoint.url"),
        ({"url": "http://[::1"}, codes.INVALID_SETTINGS, 'got "http://[::1"'),
        ({"url": "https://x", "method": "fetch"}, codes.INVALID_SETTINGS, "endpoint.method"),
        ({}, codes.UNPARSABLE_CLIENT_MESSAGE, "agent.think.endpoint.url field"),
        ({"url": "https://x", "headers": {"a": 1}}, codes.UNPARSABLE_CLIENT_MESSAGE, "headers.a"),
        ({"url": "https://x", "headers": "a"}, codes.UNPARSABLE_CLIENT_MESSAGE, "headers"),
        (
            {"url": "https://x", "headers": [{"key": "a"}]},
            codes.UNPARSABLE_CLIENT_MESSAGE,
            "endpoint.headers[0].value",
        ),
        (
            {"url": "https://x", "headers": ["a"]},
            codes.UNPARSABLE_CLIENT_MESSAGE,
            "endpoint.headers[0]",
        ),
    ],
)
def test_bad_endpoints(endpoint: dict[str, Any], code: str, needle: str) -> None:
    fails(lambda: ga(think(endpoint=endpoint)), code, needle)


def test_endpoint_headers_list_form() -> None:
    endpoint = {"url": "https://x", "headers": [{"key": "a", "value": "1"}]}
    assert ga(think(endpoint=endpoint)).agent.think[0].endpoint == Endpoint(
        "https://x", "post", {"a": "1"}
    )


# ----------------------------------------------------------------------------------- functions


def test_function_defaults() -> None:
    assert ga(function()).agent.think[0].functions == (FunctionDef("f"),)
    params = {"type": "object", "properties": {}, "required": []}
    assert ga(function(parameters=params)).agent.think[0].functions[0].parameters == params


@pytest.mark.parametrize(
    ("fields", "code", "needle"),
    [
        ({"name": "get weather"}, codes.INVALID_SETTINGS, "agent.think.functions[0].name"),
        ({"name": "x" * 65}, codes.INVALID_SETTINGS, "functions[0].name"),
        ({"name": ""}, codes.INVALID_SETTINGS, "functions[0].name"),
        ({"name": 3}, codes.UNPARSABLE_CLIENT_MESSAGE, "functions[0].name"),
        ({"description": 3}, codes.UNPARSABLE_CLIENT_MESSAGE, "functions[0].description"),
        ({"parameters": {"type": "string"}}, codes.INVALID_SETTINGS, "functions[0].parameters"),
        (
            {"parameters": {"type": "object", "properties": []}},
            codes.INVALID_SETTINGS,
            "functions[0].parameters.properties",
        ),
        (
            {"parameters": {"type": "object", "required": "a"}},
            codes.INVALID_SETTINGS,
            "functions[0].parameters.required",
        ),
        (
            {"parameters": {"type": "object", "required": [1]}},
            codes.INVALID_SETTINGS,
            "functions[0].parameters.required",
        ),
        ({"url": 5}, codes.UNPARSABLE_CLIENT_MESSAGE, "functions[0].url"),
        ({"url": "file:///etc/passwd"}, codes.INVALID_SETTINGS, "functions[0].url"),
        ({"url": "https://x", "method": "TRACE"}, codes.INVALID_SETTINGS, "functions[0].method"),
    ],
)
def test_bad_functions(fields: dict[str, Any], code: str, needle: str) -> None:
    obj = think(functions=[{"name": "f", **fields}])
    fails(lambda: ga(obj), code, needle)


def test_function_parameters_must_be_an_object() -> None:
    description = fails(lambda: ga(function(parameters="{}")), codes.UNPARSABLE_CLIENT_MESSAGE)
    assert description == (
        "Error parsing client message. Check the agent.think.functions[0].parameters field "
        'against the API spec: expected an object, got the string "{}".'
    )


def test_duplicate_function_names() -> None:
    obj = think(functions=[{"name": "a"}, {"name": "b"}, {"name": "a"}])
    fails(lambda: ga(obj), codes.INVALID_SETTINGS, "agent.think.functions[2].name", "twice")
    fails(lambda: ga(think(functions={})), codes.UNPARSABLE_CLIENT_MESSAGE, "expected an array")
    fails(lambda: ga(think(functions=[1])), codes.UNPARSABLE_CLIENT_MESSAGE, "functions[0] field")


def test_function_level_url_on_ga() -> None:
    # the 4.8.1 SDK's Function: blank url/method never count as unknown
    blank = function(url="", method=" ", headers={})
    assert settings_from_wire(blank, GA, strict=True) == (ga(function()), ())
    # a non-blank url without endpoint is read as the endpoint (EA habit), unless strict
    legacy = function(url="https://x/f", method="GET", headers={"k": "v"})
    settings, ignored = settings_from_wire(legacy, GA)
    assert settings.agent.think[0].functions[0].endpoint == Endpoint(
        "https://x/f", "get", {"k": "v"}
    )
    assert ignored == ()
    fails(
        lambda: ga(legacy, strict=True),
        codes.UNPARSABLE_CLIENT_MESSAGE,
        "agent.think.functions[0].url field",
        "strict",
    )


def test_function_level_fields_next_to_endpoint_are_ignored() -> None:
    obj = function(
        url="https://old", method="post", headers={"a": "b"}, endpoint={"url": "https://new"}
    )
    settings, ignored = settings_from_wire(obj, GA)
    assert settings.agent.think[0].functions[0].endpoint == Endpoint("https://new")
    prefix = "agent.think.functions[0]."
    assert ignored == (prefix + "url", prefix + "method", prefix + "headers")
    _, ignored = settings_from_wire(function(method="post"), GA)
    assert ignored == (prefix + "method",)


# ----------------------------------------------------------------------------------- context


def test_context_messages() -> None:
    calls = [{"id": "c1", "name": "f", "client_side": True, "arguments": "{}", "response": "ok"}]
    messages = [
        {"type": "History", "role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"type": "History", "function_calls": calls},
        ["user", "pair form"],
    ]
    context = ga(agent(context={"messages": messages})).agent.context
    assert context == ContextConfig(
        messages=(
            HistoryItem("user", "hi"),
            HistoryItem("assistant", "hello"),
            HistoryItem(function_calls=(HistoryFunctionCall("c1", "f", True, "{}", "ok"),)),
            HistoryItem("user", "pair form"),
        )
    )
    assert ga(agent(context={})).agent.context == ContextConfig()
    assert ga(agent(context={"replay": True})).agent.context == ContextConfig(replay=True)


@pytest.mark.parametrize(
    ("message", "needle"),
    [
        ({"type": "Foo", "role": "user", "content": "x"}, "messages[0].type"),
        (
            {"role": "system", "content": "x"},
            "messages[0].role field against the API spec: "
            'expected one of user, assistant, got the string "system"',
        ),
        ({"role": "user"}, "messages[0].content field"),
        ({"content": "x"}, "messages[0].role field"),
        ({"function_calls": {}}, "messages[0].function_calls"),
        (
            {"function_calls": [{"id": "1", "name": "f", "arguments": "", "response": ""}]},
            "messages[0].function_calls[0].client_side",
        ),
        (["user", "x", "y"], "messages[0] field against the API spec: expected an object"),
        ([1, "x"], "messages[0].role"),
    ],
)
def test_bad_context_messages(message: Any, needle: str) -> None:
    fails(
        lambda: ga(agent(context={"messages": [message]})), codes.UNPARSABLE_CLIENT_MESSAGE, needle
    )


# ----------------------------------------------------------------------------------- leniency


def test_unknown_keys_are_ignored_in_order_and_rejected_when_strict() -> None:
    obj = json.loads(SDK_481_SETTINGS)
    obj["zeta"] = 1
    obj["audio"]["input"]["channels"] = 1
    obj["agent"]["tags"] = ["x"]
    obj["agent"]["think"]["functions"][0]["client_side"] = True
    obj["agent"]["context"] = {"messages": [{"role": "user", "content": "x", "at": 1}]}
    obj["agent"]["context"]["messages"].append(
        {
            "function_calls": [
                {
                    "id": "1",
                    "name": "f",
                    "client_side": True,
                    "arguments": "",
                    "response": "",
                    "thought_signature": "s",
                }
            ]
        }
    )
    settings, ignored = settings_from_wire(obj, GA)
    assert settings.agent.think[0].functions[0] == WEATHER
    assert ignored == (
        "zeta",
        "audio.input.channels",
        "agent.tags",
        "agent.think.functions[0].client_side",
        "agent.context.messages[0].at",
        "agent.context.messages[1].function_calls[0].thought_signature",
    )
    fails(
        lambda: ga(obj, strict=True),
        codes.UNPARSABLE_CLIENT_MESSAGE,
        "Check the zeta field against the API spec: it is not a known field",
    )


def test_strict_names_the_path_lenient_mode_lists_first() -> None:
    obj = {"agent": {"listen": {"provider": {}, "x": 1}}, "type": "Settings", "y": 2}
    assert settings_from_wire(obj, GA)[1] == ("y", "agent.listen.x")
    fails(lambda: ga(obj, strict=True), codes.UNPARSABLE_CLIENT_MESSAGE, "Check the y field")
    del obj["y"]
    fails(lambda: ga(obj, strict=True), codes.UNPARSABLE_CLIENT_MESSAGE, "agent.listen.x")


def test_provider_objects_and_schemas_are_free_form() -> None:
    obj = function(parameters={"type": "object", "anything": {"deep": [1]}})
    obj["agent"]["think"]["provider"]["reasoning_mode"] = "low"
    assert settings_from_wire(obj, GA, strict=True)[1] == ()


# ----------------------------------------------------------------------------------- early access


def test_ea_speak_provider_and_voice() -> None:
    speak = {"model": "eleven_turbo_v2_5", "provider": "eleven_labs", "voice_id": "v1"}
    s = ea({"agent": {"speak": speak}})
    assert s.agent.speak == (
        SpeakConfig(Provider("eleven_labs", "eleven_turbo_v2_5", {"voice_id": "v1"})),
    )
    assert ea({"agent": {"speak": {}}}).agent.speak == (SpeakConfig(Provider("deepgram")),)


def test_ea_think_custom_provider_and_functions() -> None:
    think_ = {
        "provider": {"type": "custom", "url": "https://llm", "key": "k", "temperature": 1},
        "model": "m",
        "instructions": "be brief",
        "functions": [{"name": "f", "url": "", "method": "post"}],
    }
    settings, ignored = settings_from_wire({"agent": {"think": think_}}, EA)
    assert settings.agent.think == (
        ThinkConfig(
            Provider("custom", "m", {"url": "https://llm", "key": "k", "temperature": 1}),
            prompt="be brief",
            functions=(FunctionDef("f"),),
        ),
    )
    assert ignored == ("agent.think.functions[0].method",)
    fails(
        lambda: ea({"agent": {"think": {"provider": {"temperature": 3}}}}),
        codes.INVALID_SETTINGS,
        "agent.think.provider.temperature",
    )


def test_ea_function_url_is_the_endpoint_even_when_strict() -> None:
    fn = {"name": "f", "url": "https://x", "headers": [{"key": "authorization", "value": "k"}]}
    s = ea({"agent": {"think": {"functions": [fn]}}}, strict=True)
    assert s.agent.think[0].functions[0].endpoint == Endpoint(
        "https://x", "post", {"authorization": "k"}
    )


def test_ea_top_level_and_unknown_keys() -> None:
    settings, ignored = settings_from_wire(
        {
            "type": "SettingsConfiguration",
            "context": {"messages": [["assistant", "hey"]]},
            "agent": {"greeting": "hi", "listen": {"provider": {}}},
        },
        EA,
    )
    assert settings == Settings(
        agent=AgentConfig(
            listen=ListenConfig(Provider("deepgram")),
            context=ContextConfig(messages=(HistoryItem("assistant", "hey"),)),
        )
    )
    assert ignored == ("agent.greeting", "agent.listen.provider")
    assert ea({"context": {"replay": True}}) == Settings(
        agent=AgentConfig(context=ContextConfig(replay=True))
    )
    fails(
        lambda: ea({"experimental": True}, strict=True),
        codes.UNPARSABLE_CLIENT_MESSAGE,
        "experimental field",
    )


# ----------------------------------------------------------------------------------- to wire


def test_ga_to_wire_round_trips_the_sdk_settings() -> None:
    settings = parse_client(SDK_481_SETTINGS, GA).message
    assert isinstance(settings, Settings)
    wire = settings_to_wire(settings, GA)
    assert list(wire) == ["type", "experimental", "tags", "audio", "agent", "mip_opt_out"]
    assert wire["agent"]["think"]["functions"][1] == {
        "name": "lookup_order",
        "description": "Look up an order",
        "parameters": ORDER.parameters,
        "endpoint": {
            "url": "https://example.invalid/orders",
            "method": "post",
            "headers": {"authorization": "Bearer x"},
        },
    }
    assert isinstance(wire["agent"]["speak"], list)
    assert settings_from_wire(wire, GA, strict=True) == (settings, ())


def test_ga_to_wire_minimal_and_optional_parts() -> None:
    assert settings_to_wire(Settings(), GA) == {
        "type": "Settings",
        "experimental": False,
        "audio": {
            "input": {"encoding": "linear16", "sample_rate": 24000},
            "output": {"encoding": "linear16", "sample_rate": 24000, "container": "none"},
        },
        "agent": {"language": "en"},
        "mip_opt_out": False,
    }
    settings = Settings(
        audio=AudioConfig(output=AudioOutput(bitrate=1000)),
        flags=Flags(history=False),
        agent=AgentConfig(
            listen=ListenConfig(Provider("")),
            think=(
                ThinkConfig(Provider("x"), endpoint=Endpoint("https://l"), context_length="max"),
            ),
            speak=(SpeakConfig(Provider("", "m")),),
            context=ContextConfig(
                messages=(
                    HistoryItem(function_calls=(HistoryFunctionCall("1", "f", False, "{}", "r"),)),
                ),
                replay=True,
            ),
        ),
    )
    wire = settings_to_wire(settings, GA)
    assert wire["flags"] == {"history": False}
    assert wire["audio"]["output"]["bitrate"] == 1000
    assert wire["agent"]["listen"] == {"provider": {}}
    assert wire["agent"]["think"] == {
        "provider": {"type": "x"},
        "endpoint": {"url": "https://l", "method": "post"},
        "context_length": "max",
    }
    assert wire["agent"]["speak"] == {"provider": {"model": "m"}}
    assert wire["agent"]["context"] == {
        "messages": [
            {
                "type": "History",
                "function_calls": [
                    {
                        "id": "1",
                        "name": "f",
                        "client_side": False,
                        "arguments": "{}",
                        "response": "r",
                    }
                ],
            }
        ],
        "replay": True,
    }
    assert settings_from_wire(wire, GA) == (settings, ())
    context = ContextConfig(messages=(HistoryItem("user", "q"),))
    wire = settings_to_wire(Settings(agent=AgentConfig(context=context)), GA)
    assert wire["agent"]["context"] == {
        "messages": [{"type": "History", "role": "user", "content": "q"}]
    }


def test_ea_to_wire_round_trips_the_sdk_settings() -> None:
    settings = parse_client(SDK_3101_SETTINGS, EA).message
    assert isinstance(settings, Settings)
    wire = settings_to_wire(settings, EA)
    assert wire == json.loads(SDK_3101_SETTINGS)
    assert settings_from_wire(wire, EA, strict=True) == (settings, ())


def test_ea_to_wire_is_lossy_where_ea_cannot_say_it() -> None:
    settings = Settings(
        experimental=True,
        tags=("t",),
        agent=AgentConfig(
            language="es",
            greeting="hi",
            listen=ListenConfig(Provider("deepgram", None, {"smart_format": True})),
            think=(
                ThinkConfig(Provider("", None, {"temperature": 1}), endpoint=Endpoint("https://x")),
                ThinkConfig(Provider("b")),
            ),
            speak=(SpeakConfig(Provider("cartesia", None, {"voice_id": "v", "x": 1})),),
            context=ContextConfig(
                messages=(
                    HistoryItem("user", "q"),
                    HistoryItem(function_calls=(HistoryFunctionCall("1", "f", True, "", ""),)),
                )
            ),
        ),
    )
    assert settings_to_wire(settings, EA) == {
        "type": "SettingsConfiguration",
        "audio": settings_to_wire(Settings(), GA)["audio"],
        "agent": {
            "listen": {},
            "think": {"provider": {"temperature": 1}},
            "speak": {"provider": "cartesia", "voice_id": "v"},
        },
        "context": {"messages": [{"role": "user", "content": "q"}], "replay": False},
    }
    assert settings_to_wire(Settings(), EA)["agent"] == {}


def test_settings_from_wire_does_not_mutate_its_input() -> None:
    obj = json.loads(SDK_481_SETTINGS)
    before = copy.deepcopy(obj)
    settings_from_wire(obj, GA)
    assert obj == before


def test_settings_properties() -> None:
    assert Provider("deepgram", "nova-3").name == "deepgram/nova-3"
    assert Provider("deepgram").name == "deepgram"
    assert WEATHER.client_side and not ORDER.client_side


def test_invalid_settings_descriptions_are_short_and_readable() -> None:
    description = fails(
        lambda: ga({"audio": {"input": {"encoding": "opus"}}}), codes.INVALID_SETTINGS
    )
    assert description == (
        'Invalid settings: audio.input.encoding "opus" is not supported; '
        "use linear16, mulaw or alaw."
    )
    description = fails(
        lambda: ga(function(url="https://x", method="x" * 5000)), codes.INVALID_SETTINGS
    )
    assert "…" in description and len(description) < 200
    description = fails(
        lambda: ga({"audio": {"input": {"sample_rate": [1] * 1000}}}), codes.INVALID_SETTINGS
    )
    assert description == (
        "Invalid settings: audio.input.sample_rate must be an integer number of Hz, got an array."
    )
