"""Option classes: both styles serialise to a valid GA Settings; 4.8.1 parity where they overlap."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from harken import (
    Agent,
    AgentKeepAlive,
    Audio,
    DeepgramApiError,
    DeepgramClientOptions,
    Endpoint,
    Function,
    FunctionCallResponse,
    Header,
    InjectAgentMessageOptions,
    InjectUserMessageOptions,
    Input,
    Item,
    Listen,
    Output,
    Parameters,
    Properties,
    Provider,
    SettingsOptions,
    Speak,
    Think,
    UpdatePromptOptions,
    UpdateSpeakOptions,
    UpdateThinkOptions,
)
from harken.client.core import AgentCore

ROOT = Path(__file__).resolve().parents[1]
DG4_PYTHON = ROOT / ".venv-dg4" / "bin" / "python"

# The same program runs under deepgram-sdk 4.8.1 and under harken; only the import differs.
PARITY_SCRIPT = """
import json
from harken import (
    AgentKeepAlive, Endpoint, FunctionCallResponse, InjectAgentMessageOptions,
    InjectUserMessageOptions, Provider, SettingsOptions, Speak, UpdatePromptOptions,
    UpdateSpeakOptions,
)

o = SettingsOptions()
o.experimental = True
o.tags = ["capture", "local"]
o.audio.input.sample_rate = 24000
o.audio.output.sample_rate = 24000
o.agent.listen.provider.type = "deepgram"
o.agent.listen.provider.model = "nova-3"
o.agent.listen.provider.keyterms = ["Deepgram"]
o.agent.think.provider.type = "open_ai"
o.agent.think.provider.model = "gpt-4o-mini"
o.agent.think.provider.temperature = 0.7
o.agent.think.prompt = "You are a friendly AI assistant."
o.agent.think.functions = [{
    "name": "get_weather", "description": "Get the weather for a city",
    "parameters": {"type": "object",
                   "properties": {"location": {"type": "string", "description": "City"}},
                   "required": ["location"]},
}]
o.agent.speak = [
    Speak(provider=Provider(type="deepgram", model="aura-2-thalia-en")),
    Speak(provider={"type": "open_ai", "model": "tts-1", "voice": "shimmer"},
          endpoint=Endpoint(method="POST", url="https://api.openai.com/v1/audio/speech",
                            headers={"authorization": "Bearer x"})),
]
o.agent.greeting = "Hello! How can I help you today?"
print(json.dumps({
    "settings": json.loads(str(o)),
    "update_prompt": json.loads(str(UpdatePromptOptions(prompt="You are now a pirate."))),
    "update_speak": json.loads(str(UpdateSpeakOptions(
        speak=Speak(provider=Provider(type="deepgram", model="aura-2-luna-en"))))),
    "inject_agent": json.loads(str(InjectAgentMessageOptions(message="Still there?"))),
    "inject_user": json.loads(str(InjectUserMessageOptions(content="Hi there"))),
    "function_call_response": FunctionCallResponse(
        id="call_abc123", name="get_weather", content='{"temp_c": 21}').to_dict(),
    "keep_alive": AgentKeepAlive().to_dict(),
    "bare": SettingsOptions().to_dict(),
}))
"""


def run_ours(script: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    output: list[str] = []
    namespace["print"] = output.append
    exec(compile(script, "<parity>", "exec"), namespace)
    result: dict[str, Any] = json.loads(output[0])
    return result


def run_481(script: str) -> dict[str, Any]:
    if not DG4_PYTHON.exists():
        pytest.skip("the deepgram-sdk 4.8.1 virtualenv (.venv-dg4) is not installed")
    code = script.replace("from harken import", "from deepgram import")
    proc = subprocess.run(
        [str(DG4_PYTHON), "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_481_style_matches_the_481_sdk_output() -> None:
    ours, theirs = run_ours(PARITY_SCRIPT), run_481(PARITY_SCRIPT)
    # the one deliberate difference: an empty Speak is left out instead of sent as {}
    assert theirs["bare"]["agent"].pop("speak") == {}
    assert ours == theirs


SEED_STYLE = SettingsOptions(
    agent=Agent(
        listen=Listen(
            model="nova-2",
            language="en-US",
            smart_format=True,
            encoding="linear16",
            sample_rate=16000,
            interim_results=True,
            vad_events=True,
        ),
        think=Think(
            provider=Provider(type="open_ai"),
            model="gpt-4",
            instructions="You are a helpful AI assistant.",
            functions=[
                Function(
                    name="get_weather",
                    description="Get current weather",
                    parameters=Parameters(
                        type="object",
                        properties={"location": {"type": "string", "description": "City"}},
                        required=["location"],
                    ),
                )
            ],
        ),
        speak=Speak(model="aura-asteria-en", encoding="linear16", sample_rate=24000),
    )
)


def test_flat_style_maps_onto_ga_settings() -> None:
    assert SEED_STYLE.to_dict() == {
        "type": "Settings",
        "experimental": False,
        "mip_opt_out": False,
        "audio": {
            "input": {"encoding": "linear16", "sample_rate": 16000},
            "output": {"encoding": "linear16", "sample_rate": 24000, "container": "none"},
        },
        "agent": {
            "language": "en",
            "listen": {
                "provider": {
                    "type": "deepgram",
                    "model": "nova-2",
                    "language": "en-US",
                    "smart_format": True,
                }
            },
            "think": {
                "provider": {"type": "open_ai", "model": "gpt-4"},
                "prompt": "You are a helpful AI assistant.",
                "functions": [
                    {
                        "name": "get_weather",
                        "description": "Get current weather",
                        "parameters": {
                            "type": "object",
                            "properties": {"location": {"type": "string", "description": "City"}},
                            "required": ["location"],
                        },
                    }
                ],
            },
            "speak": {"provider": {"type": "deepgram", "model": "aura-asteria-en"}},
        },
    }


def test_flat_style_accepts_the_481_provider_form_too() -> None:
    a = Listen(provider=Provider(type="deepgram", model="nova-3")).to_dict()
    b = Listen(model="nova-3").to_dict()
    assert a == b == {"provider": {"type": "deepgram", "model": "nova-3"}}
    assert Think(model="gpt-4o-mini").to_dict() == {
        "provider": {"type": "open_ai", "model": "gpt-4o-mini"}
    }
    assert Speak(provider={"type": "deepgram", "model": "aura-2-thalia-en"}).to_dict() == {
        "provider": {"type": "deepgram", "model": "aura-2-thalia-en"}
    }


def test_provider_keys_win_over_flat_fields_and_prompt_over_instructions() -> None:
    think = Think(
        provider=Provider(type="anthropic", model="claude"),
        model="ignored",
        prompt="p",
        instructions="i",
    )
    assert think.to_dict() == {"provider": {"type": "anthropic", "model": "claude"}, "prompt": "p"}


def test_settings_level_listen_think_speak_override_the_agent() -> None:
    options = SettingsOptions(
        listen=Listen(model="nova-3", sample_rate=8000), speak=Speak(model="x")
    )
    data = options.to_dict()
    assert data["agent"]["listen"] == {"provider": {"type": "deepgram", "model": "nova-3"}}
    assert data["agent"]["speak"] == {"provider": {"type": "deepgram", "model": "x"}}
    assert data["audio"]["input"] == {"encoding": "linear16", "sample_rate": 8000}


def test_speak_fallback_list_uses_the_first_for_audio_output() -> None:
    options = SettingsOptions(
        agent=Agent(speak=[Speak(model="a", encoding="mulaw", sample_rate=8000), Speak(model="b")])
    )
    data = options.to_dict()
    assert data["audio"]["output"] == {
        "encoding": "mulaw",
        "sample_rate": 8000,
        "container": "none",
    }
    assert [s["provider"]["model"] for s in data["agent"]["speak"]] == ["a", "b"]


def test_function_does_not_force_url_or_method() -> None:
    assert Function(name="f", description="d").to_dict() == {"name": "f", "description": "d"}
    assert Function("f", "d", "", "").to_dict() == {"name": "f", "description": "d"}
    legacy = Function("f", "d", "https://example.com/x", "post", [Header("authorization", "t")])
    assert legacy.to_dict() == {
        "name": "f",
        "description": "d",
        "endpoint": {
            "method": "post",
            "url": "https://example.com/x",
            "headers": {"authorization": "t"},
        },
    }
    explicit = Function(name="f", endpoint=Endpoint(url="https://e"), headers={"k": "v"})
    assert explicit.to_dict()["endpoint"] == {"url": "https://e", "headers": {"k": "v"}}


def test_properties_item_and_parameters() -> None:
    props = Properties(location=Item(type="string", description="City"))
    assert props.location.description == "City"
    params = Parameters(properties=props, required=["location"])
    assert params.to_dict() == {
        "type": "object",
        "properties": {"location": {"type": "string", "description": "City"}},
        "required": ["location"],
    }
    assert params["required"] == ["location"]
    assert Header(name="a", value="b").to_dict() == {"key": "a", "value": "b"}


def test_provider_is_a_dict_with_attribute_access() -> None:
    p = Provider(type="deepgram")
    p.model = "nova-3"
    assert p == {"type": "deepgram", "model": "nova-3"} and p.model == "nova-3"
    del p.model
    with pytest.raises(AttributeError):
        _ = p.model
    with pytest.raises(AttributeError):
        del p.model
    assert isinstance(p, dict)


def test_message_option_aliases() -> None:
    assert InjectAgentMessageOptions(text="hi").to_dict() == {
        "type": "InjectAgentMessage",
        "message": "hi",
    }
    assert InjectUserMessageOptions(text="yo").to_dict() == {
        "type": "InjectUserMessage",
        "content": "yo",
    }
    assert FunctionCallResponse(name="f", result={"ok": True}).to_dict() == {
        "type": "FunctionCallResponse",
        "id": "",
        "name": "f",
        "content": '{"ok": true}',
    }
    assert FunctionCallResponse(name="f", result="plain")["content"] == "plain"
    assert UpdatePromptOptions(prompt="p").to_dict() == {"type": "UpdatePrompt", "prompt": "p"}
    assert AgentKeepAlive().to_json() == '{"type": "KeepAlive"}'


def test_update_speak_with_flat_speak_sends_only_the_provider() -> None:
    opts = UpdateSpeakOptions(
        speak=Speak(model="aura-luna-en", encoding="linear16", sample_rate=24000)
    )
    assert opts.to_dict() == {
        "type": "UpdateSpeak",
        "speak": {"provider": {"type": "deepgram", "model": "aura-luna-en"}},
    }
    think = UpdateThinkOptions(think={"provider": {"type": "open_ai", "model": "m"}})
    assert think.to_dict() == {
        "type": "UpdateThink",
        "think": {"provider": {"type": "open_ai", "model": "m"}},
    }


def test_from_dict_round_trips_and_keeps_unknown_keys() -> None:
    wire = {
        "type": "Settings",
        "experimental": True,
        "flags": {"history": False},
        "future_top_level": 1,
        "audio": {
            "input": {"encoding": "mulaw", "sample_rate": 8000},
            "output": {"encoding": "mulaw"},
        },
        "agent": {
            "language": "en",
            "context": {"messages": []},
            "think": [
                {
                    "provider": {"type": "open_ai", "model": "a"},
                    "prompt": "x",
                    "functions": [{"name": "f", "defer_until_eot": True}],
                },
                {"provider": {"type": "groq", "model": "b"}},
            ],
            "speak": {"provider": {"type": "deepgram", "model": "aura-2-thalia-en"}},
        },
    }
    options = SettingsOptions.from_dict(wire)
    assert isinstance(options.agent.think, list) and isinstance(options.agent.think[0], Think)
    assert isinstance(options.audio.input, Input) and isinstance(options.audio.output, Output)
    assert isinstance(options.agent.think[0].functions[0], Function)  # type: ignore[index]
    back = options.to_dict()
    assert back["future_top_level"] == 1 and back["flags"] == {"history": False}
    assert back["agent"]["think"] == wire["agent"]["think"]  # type: ignore[index]
    assert back["agent"]["context"] == {"messages": []}
    assert back["audio"]["output"] == {
        "encoding": "mulaw",
        "sample_rate": 16000,
        "container": "none",
    }
    assert SettingsOptions.from_json(json.dumps(wire)).to_dict() == back
    with pytest.raises(ValueError):
        SettingsOptions.from_json("[1]")


def test_settings_type_is_always_settings_and_check_passes() -> None:
    options = SettingsOptions(type="SettingsConfiguration", audio=Audio(), agent=Agent())
    assert options.to_dict()["type"] == "Settings"
    assert options.check() is True
    assert str(options).startswith("{\n    ")


def test_start_accepts_settings_options_dict_or_json() -> None:
    core = AgentCore(DeepgramClientOptions())
    as_obj = json.loads(core.encode_settings(SEED_STYLE))
    assert json.loads(core.encode_settings(SEED_STYLE.to_dict())) == as_obj
    assert json.loads(core.encode_settings(SEED_STYLE.to_json())) == as_obj
    assert json.loads(core.encode_settings(SEED_STYLE.to_json().encode())) == as_obj
    with pytest.raises(DeepgramApiError, match="Invalid options"):
        core.encode_settings("not json")
    with pytest.raises(DeepgramApiError, match="Invalid options type"):
        core.encode_settings(42)


@pytest.mark.parametrize(
    ("value", "enabled"),
    [
        ("true", True),
        ("True", True),
        (True, True),
        ("1", True),
        ("false", False),
        (False, False),
        ("no", False),
        (None, False),
    ],
)
def test_keepalive_option_parsing(value: object, enabled: bool) -> None:
    assert DeepgramClientOptions(options={"keepalive": value}).is_keep_alive_enabled() is enabled
    assert DeepgramClientOptions(options={"keep_alive": value}).is_keep_alive_enabled() is enabled


def _parse_client() -> Any:
    codec = pytest.importorskip("harken.protocol.codec")
    if not hasattr(codec, "parse_client"):
        pytest.skip("harken.protocol.codec.parse_client does not exist yet")
    return codec.parse_client


@pytest.mark.parametrize(
    "options",
    [
        SEED_STYLE,
        SettingsOptions(),
        SettingsOptions(
            agent=Agent(
                listen=Listen(provider=Provider(type="deepgram", model="nova-3")),
                think=Think(provider=Provider(type="open_ai", model="gpt-4o-mini"), prompt="Hi"),
                speak=Speak(provider=Provider(type="deepgram", model="aura-2-thalia-en")),
                greeting="Hello",
            )
        ),
    ],
    ids=["flat-style", "bare", "481-style"],
)
def test_settings_are_accepted_by_the_harken_codec(options: SettingsOptions) -> None:
    parse_client = _parse_client()
    from harken.protocol.messages import Generation, Settings

    text = AgentCore(DeepgramClientOptions()).encode_settings(options)
    parsed = parse_client(text, Generation.GA, strict=True)
    assert isinstance(parsed.message, Settings)
    assert parsed.ignored == ()
