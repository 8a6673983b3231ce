"""The provider registry (Catalog) and the deterministic testing providers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harken.config import ServerConfig, load_config
from harken.errors import ModelError, ProviderError
from harken.protocol.settings import (
    Endpoint,
    FunctionDef,
    ListenConfig,
    Provider,
    SpeakConfig,
    ThinkConfig,
)
from harken.providers import registry as reg
from harken.providers.base import LLM, STT, TTS, VAD, Capabilities, LLMText, LLMToolCalls
from harken.providers.compose import load_registry
from harken.providers.llm.openai_http import OpenAILLM
from harken.providers.testing import EchoLLM, EnergyVAD, SilenceSTT, ToneTTS
from harken.providers.tts.openai_http import OpenAITTS
from harken.session.effects import ChatMessage

WEATHER = FunctionDef(
    name="get_weather",
    parameters={"type": "object", "properties": {"location": {"type": "string"}}},
)


@pytest.fixture
def registry() -> reg.Registry:
    return load_registry(load_config(None, {}, {"providers": "testing"}))


def think(type_: str, model: str | None, **kw: object) -> ThinkConfig:
    return ThinkConfig(provider=Provider(type_, model), **kw)  # type: ignore[arg-type]


def test_known_names_are_servable(registry: reg.Registry) -> None:
    assert registry.problem(ListenConfig(Provider("deepgram", "nova-3"))) is None
    assert registry.problem(ListenConfig(Provider("deepgram", None))) is None
    assert registry.problem(think("open_ai", "gpt-4o-mini")) is None
    assert registry.problem(think("open_ai", "gpt-4.1-nano")) is None
    assert registry.problem(think("anthropic", "claude-3-5-haiku-latest")) is None
    assert registry.problem(think("deepgram", "think-fast")) is None  # PROTOCOL.md §10
    assert registry.problem(think("aws_bedrock", "anthropic/claude-3-haiku")) is None
    assert registry.problem(SpeakConfig(Provider("deepgram", "aura-2-thalia-en"))) is None
    assert registry.problem(SpeakConfig(Provider("deepgram", "aura-luna-en"))) is None


def test_unknown_names_list_what_is_available(registry: reg.Registry) -> None:
    problem = registry.problem(SpeakConfig(Provider("eleven_labs", None, {"model_id": "x"})))
    assert problem is not None
    assert "eleven_labs/x" in problem and "deepgram/aura-*" in problem
    problem = registry.problem(think("open_ai", "davinci"))
    assert problem is not None and "gpt-4o-mini" in problem
    problem = registry.problem(ListenConfig(Provider("whisper", "large")))
    assert problem is not None and "agent.listen.provider" in problem


def test_settings_endpoints_are_served_by_the_http_providers(registry: reg.Registry) -> None:
    url = "https://llm.example.com/v1/chat/completions"
    config = think("open_ai", "gpt-4o", endpoint=Endpoint(url, headers={"authorization": "k"}))
    assert registry.problem(config) is None
    llm = registry.llm(config)
    assert isinstance(llm, OpenAILLM) and llm.model == "gpt-4o"
    assert llm.endpoint.headers == {"authorization": "k"} and not llm.endpoint.trusted
    assert "authorization" not in repr(llm.endpoint) and "k" not in repr(llm.endpoint)
    speak = SpeakConfig(
        Provider("open_ai", "tts-1", {"voice": "nova"}), Endpoint("https://tts.example.com/s")
    )
    assert registry.problem(speak) is None
    tts = registry.tts(speak)
    assert isinstance(tts, OpenAITTS) and (tts.model, tts.voice) == ("tts-1", "nova")


def test_settings_endpoints_that_are_refused(registry: reg.Registry) -> None:
    def problem(part: ThinkConfig | SpeakConfig) -> str:
        return registry.problem(part) or ""

    native = think(
        "anthropic", "claude", endpoint=Endpoint("https://api.anthropic.com/v1/messages")
    )
    assert "OpenAI chat-completions API only" in problem(native)
    compatible = "https://generativelanguage.googleapis.com/v1beta/openai/chat/completions"
    assert problem(think("google", "gemini-2.0-flash", endpoint=Endpoint(compatible))) == ""
    eleven = SpeakConfig(Provider("eleven_labs", None), Endpoint("wss://api.elevenlabs.io/x"))
    assert "not supported" in problem(eleven)
    for url, why in [
        ("http://127.0.0.1:8080/v1/chat/completions", "loopback"),
        ("http://10.0.0.5/v1/chat/completions", "private"),
        ("http://169.254.169.254/latest", "metadata"),
        ("http://169.254.1.1/latest", "link-local"),
        ("http://metadata.google.internal/x", "metadata"),
        ("ftp://x/y", "http or https"),
    ]:
        text = problem(think("open_ai", "m", endpoint=Endpoint(url)))
        assert text.startswith("agent.think.endpoint.url") and why in text, (url, text)
    secret = problem(think("open_ai", "m", endpoint=Endpoint("http://127.0.0.1/x?key=s3cret")))
    assert "s3cret" not in secret and "allow_loopback_endpoints" in secret


def test_loopback_endpoints_when_the_operator_allows_them() -> None:
    config = load_config(
        None, {"HARKEN_ALLOW_LOOPBACK_ENDPOINTS": "true"}, {"providers": "testing"}
    )
    registry = load_registry(config)
    local = think("open_ai", "m", endpoint=Endpoint("http://127.0.0.1:8080/v1/chat/completions"))
    assert registry.problem(local) is None
    metadata = think("open_ai", "m", endpoint=Endpoint("http://169.254.1.1/v1"))
    assert "link-local" in (registry.problem(metadata) or "")


def test_a_registry_without_an_endpoint_factory_refuses_endpoints() -> None:
    bare = reg.Registry(
        ServerConfig(providers="testing"), reg.Engines(llm={"llm-default": EchoLLM()})
    )
    problem = bare.problem(think("open_ai", "gpt-4o", endpoint=Endpoint("https://x/v1")))
    assert problem is not None and "agent.think.endpoint is not supported" in problem


def test_operator_endpoints_are_engines_bound_to_the_client_model() -> None:
    endpoints = json.dumps(
        {
            "gpu-llm": {
                "kind": "llm",
                "url": "http://10.0.0.5:8000/v1/chat/completions",
                "slots": 4,
            },
            "gpu-stt": {
                "kind": "stt",
                "url": "http://10.0.0.5:9000/v1/audio/transcriptions",
                "model": "Systran/faster-whisper-small",
            },
            "gpu-tts": {
                "kind": "tts",
                "url": "http://10.0.0.5:9100/v1/audio/speech",
                "voice": "af_sky",
                "sample_rate": 22050,
            },
        }
    )
    env = {
        "HARKEN_ENDPOINTS": endpoints,
        "HARKEN_MODELS_THINK": "open_ai/*=gpu-llm,*=llm-default",
        "HARKEN_MODELS_LISTEN": "*=gpu-stt",
        "HARKEN_MODELS_SPEAK": "open_ai/*=gpu-tts,*=tts-default",
    }
    registry = load_registry(load_config(None, env, {"providers": "testing"}))
    assert "gpu-llm" in registry.engines.label
    llm = registry.llm(think("open_ai", "gpt-4o-mini"))
    assert isinstance(llm, OpenAILLM) and llm.model == "gpt-4o-mini" and llm.endpoint.trusted
    assert llm.endpoint.slots == 4
    assert isinstance(registry.llm(think("anthropic", "claude")), EchoLLM)
    stt = registry.stt(ListenConfig(Provider("deepgram", "nova-3", {"language": "de"})))
    assert getattr(stt, "model", None) == "Systran/faster-whisper-small"
    tts = registry.tts(SpeakConfig(Provider("open_ai", "tts-1", {"voice": "nova"})))
    assert isinstance(tts, OpenAITTS) and tts.voice == "af_sky"
    assert tts.capabilities.sample_rate == 22050


def test_route_to_unloaded_engine() -> None:
    config = load_config(None, {"HARKEN_MODELS_THINK": "big/*=llm-big"}, {"providers": "testing"})
    registry = load_registry(config)
    problem = registry.problem(think("big", "one"))
    assert problem is not None and "llm-big" in problem and "not loaded" in problem
    with pytest.raises(ModelError):
        registry.llm(think("big", "one"))


def test_providers_for_jobs(registry: reg.Registry) -> None:
    assert isinstance(registry.llm(think("open_ai", "gpt-4o")), LLM)
    assert isinstance(registry.tts(SpeakConfig(Provider("deepgram", "aura-x"))), TTS)
    assert isinstance(registry.stt(None), STT)
    assert isinstance(registry.stt(ListenConfig(Provider("deepgram", "nova-2"))), STT)
    assert isinstance(registry.engines.vad, VAD)
    assert registry.engines.label == "testing"


def test_embedded_fails_loudly(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="is not assembled"):
        load_registry(ServerConfig(providers="embedded", model_dir=str(tmp_path)))


async def collect(llm: EchoLLM, messages: list[ChatMessage], functions=()) -> list[object]:  # type: ignore[no-untyped-def]
    return [out async for out in llm.stream(messages, functions)]


async def test_echo_llm_quotes_the_user() -> None:
    llm = EchoLLM()
    out = await collect(llm, [ChatMessage("system", "x"), ChatMessage("user", "hello there")])
    assert all(isinstance(o, LLMText) for o in out) and len(out) > 2
    assert "".join(o.text for o in out if isinstance(o, LLMText)) == 'You said: "hello there".'
    again = await collect(llm, [ChatMessage("user", "hello there")])
    assert again == out  # deterministic


async def test_echo_llm_greets_without_user_text() -> None:
    out = await collect(EchoLLM(), [ChatMessage("system", "x")])
    assert "".join(o.text for o in out if isinstance(o, LLMText)).startswith("Hello!")


async def test_echo_llm_tool_call_and_result() -> None:
    llm = EchoLLM()
    messages = [ChatMessage("user", "What is the weather in Paris?")]
    out = await collect(llm, messages, [WEATHER])
    assert len(out) == 1 and isinstance(out[0], LLMToolCalls)
    call = out[0].calls[0]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"location": "Paris"}
    messages += [
        ChatMessage("assistant", "", tool_calls=(call,)),
        ChatMessage("tool", '{"temp_c": 21}', tool_call_id=call.id),
    ]
    text = "".join(
        o.text for o in await collect(llm, messages, [WEATHER]) if isinstance(o, LLMText)
    )
    assert text == 'The function returned: {"temp_c": 21}'
    plain = await collect(llm, [ChatMessage("user", "hello")], [WEATHER])
    assert all(isinstance(o, LLMText) for o in plain)


async def test_echo_llm_failure_triggers() -> None:
    with pytest.raises(ProviderError) as exc:
        await collect(EchoLLM(), [ChatMessage("user", "please [fail]")])
    assert not exc.value.retryable
    with pytest.raises(ProviderError) as exc:
        await collect(EchoLLM(), [ChatMessage("user", "[fail-retryable]")])
    assert exc.value.retryable


async def test_tone_tts_length_follows_text() -> None:
    tts = ToneTTS()
    short = np.concatenate([c async for c in tts.synthesize("Hi.")])
    long = np.concatenate([c async for c in tts.synthesize("Hello, this is a longer sentence.")])
    assert short.dtype == np.int16 and tts.capabilities.sample_rate == 16000
    assert len(long) == 16000 * 10 * 33 // 1000 and len(short) == 16000 * 10 * 3 // 1000
    assert int(np.abs(long).max()) > 5000


async def test_silence_stt_and_energy_vad() -> None:
    stt = SilenceSTT()
    assert await stt.transcribe(np.zeros(16000, dtype=np.int16)) == ""
    tone = (np.sin(np.arange(16000) / 5) * 8000).astype(np.int16)
    assert "milliseconds" in await stt.transcribe(tone)
    stream = EnergyVAD().stream()
    assert stream.probability(np.zeros(320, dtype=np.int16)) == 0.0
    assert stream.probability(tone[:320]) == 1.0


def test_stt_follows_the_session_language(registry: reg.Registry) -> None:
    english = registry.engines.stt["stt-default"]
    many = SilenceSTT()
    many.capabilities = Capabilities(sample_rate=16000, languages=("en", "es", "de"))
    registry.engines.stt["stt-multilingual"] = many

    def listen(**options: object) -> ListenConfig:
        return ListenConfig(Provider("deepgram", "nova-3", options=options))

    assert registry.stt(listen()) is english
    assert registry.stt(listen(language="en-US")) is english
    assert registry.stt(listen(language="es")) is many
    assert registry.stt(listen(language="de_DE")) is many
    assert registry.stt(listen(language="multi")) is many
    # nobody speaks it: the routed engine answers (and its calls say which languages it knows)
    assert registry.stt(listen(language="xx")) is english
    assert registry.stt(listen(language=7)) is english
