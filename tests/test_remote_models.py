"""The OpenAI-compatible providers against real model servers started on loopback.

* think: llama.cpp's ``llama-server`` serving the installed Qwen2.5-Coder-1.5B GGUF: streamed
  text, a tool call, a tool result answered in words, and a barge-in that closes the stream so
  the server stops generating (its ``/slots`` says so);
* listen: ``faster-whisper-server`` serving the installed whisper-base, on real recordings;
* speak: the suite's Piper speech server (``tests/speech_server.py``), pcm and wav;
* a spoken turn (a real recording) end to end through all three, behind harken's own VAD, with
  the operator's named endpoints routed from the model map (the client asks for Deepgram and
  OpenAI names and changes nothing), and once more with ``think.endpoint`` in Settings.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from conftest import GA, ServerThread, closing_error, harken_config, open_ws, recv_json
from harken.protocol.settings import FunctionDef
from harken.providers.base import SPECULATIVE, LLMText, LLMToolCalls
from harken.providers.llm.openai_http import OpenAILLM
from harken.providers.remote import PRESETS, HTTPEndpoint, HTTPPool
from harken.providers.stt.openai_http import OpenAISTT
from harken.providers.tts.openai_http import OpenAITTS
from harken.session.effects import ChatMessage, ToolCall
from model_servers import Running, llama_server, speech_server, whisper_server
from speech import RATE, Utterance, librivox, need, wer
from test_e2e_voice import compact, no_errors, padded, texts, wait_reply_done
from test_official_sdk import failed_steps, run_driver
from voice_client import VoiceClient

pytestmark = [pytest.mark.models, pytest.mark.loopback, pytest.mark.timeout(180)]

LLM_MODEL = "qwen2.5-coder-1.5b"
SYSTEM = ChatMessage("system", "You are a friendly voice assistant. Answer in one short sentence.")
WEATHER = FunctionDef(
    name="get_weather",
    description="Get the current weather for a city.",
    parameters={
        "type": "object",
        "properties": {"location": {"type": "string", "description": "The city"}},
        "required": ["location"],
    },
)


@pytest.fixture(scope="module")
def llama() -> Iterator[Running]:
    with llama_server(LLM_MODEL) as server:
        yield server


@pytest.fixture(scope="module")
def whisper() -> Iterator[Running]:
    with whisper_server("whisper-base") as server:
        yield server


@pytest.fixture(scope="module")
def voice() -> Iterator[Running]:
    with speech_server() as server:
        yield server


@pytest.fixture
async def pool() -> AsyncIterator[HTTPPool]:
    shared = HTTPPool()
    try:
        yield shared
    finally:
        await shared.aclose()


def endpoint(pool: HTTPPool, url: str) -> HTTPEndpoint:
    return HTTPEndpoint(pool, url, {}, what="endpoint 'test'", trusted=True, timeout=60)


def llm(pool: HTTPPool, server: Running) -> OpenAILLM:
    http = endpoint(pool, server.url("/v1/chat/completions"))
    return OpenAILLM(http, PRESETS["llama.cpp"], model=LLM_MODEL, max_tokens=200)


# ----------------------------------------------------------------------------- think


async def test_llama_server_streams_a_spoken_answer(llama: Running, pool: HTTPPool) -> None:
    model = llm(pool, llama)
    await model.prime([SYSTEM])
    question = ChatMessage("user", "What is the capital of France?")
    outputs = [o async for o in model.stream([SYSTEM, question], temperature=0.0)]
    assert all(isinstance(o, LLMText) for o in outputs) and len(outputs) > 1  # streamed
    text = "".join(o.text for o in outputs if isinstance(o, LLMText))
    assert "paris" in text.lower() and text == text.lstrip(), text


async def test_llama_server_calls_a_tool_then_answers_its_result(
    llama: Running, pool: HTTPPool
) -> None:
    model = llm(pool, llama)
    question = ChatMessage("user", "What is the weather in Paris right now?")
    outputs = [o async for o in model.stream([SYSTEM, question], [WEATHER], temperature=0.0)]
    calls = [c for o in outputs if isinstance(o, LLMToolCalls) for c in o.calls]
    spoken = "".join(o.text for o in outputs if isinstance(o, LLMText))
    assert [c.name for c in calls] == ["get_weather"] and spoken == "", outputs
    assert "paris" in json.loads(calls[0].arguments)["location"].lower()
    result = json.dumps({"location": "Paris", "conditions": "sunny", "temperature_c": 18})
    history = [
        SYSTEM,
        question,
        ChatMessage(
            "assistant", "", tool_calls=(ToolCall(calls[0].id, "get_weather", calls[0].arguments),)
        ),
        ChatMessage("tool", result, tool_call_id=calls[0].id),
    ]
    answer = [o async for o in model.stream(history, [WEATHER], temperature=0.0)]
    text = "".join(o.text for o in answer if isinstance(o, LLMText))
    assert not any(isinstance(o, LLMToolCalls) for o in answer), answer
    assert "18" in text or "sunny" in text.lower(), text


async def test_a_chat_question_with_tools_offered_is_answered_in_words(
    llama: Running, pool: HTTPPool
) -> None:
    model = llm(pool, llama)
    question = ChatMessage("user", "How many legs does a spider have?")
    outputs = [o async for o in model.stream([SYSTEM, question], [WEATHER], temperature=0.0)]
    assert not any(isinstance(o, LLMToolCalls) for o in outputs), outputs
    assert "8" in "".join(o.text for o in outputs if isinstance(o, LLMText)).replace("eight", "8")


def busy_slots(server: Running) -> int:
    slots = httpx.get(server.url("/slots"), timeout=5).json()
    return sum(1 for slot in slots if slot.get("is_processing"))


async def test_barge_in_closes_the_stream_and_the_server_stops(
    llama: Running, pool: HTTPPool
) -> None:
    model = llm(pool, llama)
    model.max_tokens = 0  # no limit: only closing the stream can stop it
    ask = ChatMessage("user", "Count from one to five hundred in words, one number per line.")
    stream = model.stream([SYSTEM, ask], temperature=0.0)
    words = [await anext(stream) for _ in range(3)]
    assert all(isinstance(w, LLMText) for w in words)
    assert await asyncio.to_thread(busy_slots, llama) == 1  # still generating
    closed = time.monotonic()
    await stream.aclose()  # what cancelling the think job does
    while await asyncio.to_thread(busy_slots, llama):
        assert time.monotonic() - closed < 5, "llama-server went on generating"
        await asyncio.sleep(0.05)


async def test_a_committed_turn_never_waits_behind_other_sessions_guesses(
    llama: Running, pool: HTTPPool
) -> None:
    """The shared model tier: llama-server with 2 slots (--parallel 2). Two sessions' held
    replies guess at once; the second guess waits for a slot, so a third session's committed
    turn finds the last slot free and streams at once. Its turn final, the guess goes on."""
    model = llm(pool, llama)
    model.endpoint.slots = 2
    model.max_tokens = 0
    ask = [SYSTEM, ChatMessage("user", "Count from one to two hundred in words.")]
    gates = [asyncio.Event(), asyncio.Event()]
    firsts: dict[str, float] = {}

    async def think(name: str, gate: asyncio.Event | None, tokens: int) -> None:
        SPECULATIVE.set(gate)
        stream = model.stream(ask, temperature=0.0)
        try:
            for _ in range(tokens):
                await anext(stream)
                firsts.setdefault(name, time.monotonic())
            if gate is not None:
                await gate.wait()  # a held reply pauses after its first words
        finally:
            await stream.aclose()

    guess_a = asyncio.create_task(think("a", gates[0], 3))
    while "a" not in firsts:
        await asyncio.sleep(0.01)
    guess_b = asyncio.create_task(think("b", gates[1], 3))
    await asyncio.sleep(0.5)
    assert "b" not in firsts and model.endpoint.busy == 1  # the last slot is kept
    asked = time.monotonic()
    await asyncio.wait_for(think("committed", None, 3), 30)
    assert firsts["committed"] - asked < 5.0 and "b" not in firsts
    gates[1].set()  # b's turn is final: it is committed now, and goes
    await asyncio.wait_for(guess_b, 30)
    assert "b" in firsts
    gates[0].set()
    await asyncio.wait_for(guess_a, 30)
    assert model.endpoint.busy == 0


# ----------------------------------------------------------------------------- listen


async def test_faster_whisper_server_transcribes_real_speech(
    whisper: Running, pool: HTTPPool
) -> None:
    http = endpoint(pool, whisper.url("/v1/audio/transcriptions"))
    stt = OpenAISTT(http, PRESETS["openai"], model="whisper-1")
    for utterance in need(librivox)[:2]:
        text = await stt.transcribe(utterance.samples, language="en-US")
        assert wer(utterance.text, text) <= 0.2, (utterance.text, text)
    verbose = OpenAISTT(http, PRESETS["openai"], response_format="verbose_json")
    sample = need(librivox)[0]
    terms = ("Marianne", "Elinor")
    assert wer(sample.text, await verbose.transcribe(sample.samples, keyterms=terms)) <= 0.2


# ----------------------------------------------------------------------------- speak


@pytest.mark.parametrize(("fmt", "rate"), [("pcm", 24000), ("wav", 24000), ("wav", 16000)])
async def test_speech_server_audio_streams_in_at_the_declared_rate(
    voice: Running, whisper: Running, pool: HTTPPool, fmt: str, rate: int
) -> None:
    http = endpoint(pool, voice.url("/v1/audio/speech"))
    tts = OpenAITTS(
        http, PRESETS["openai"], model="tts-1", voice="alloy", response_format=fmt, sample_rate=rate
    )
    chunks = [c async for c in tts.synthesize("The weather in Paris is sunny. Enjoy your day.")]
    assert len(chunks) >= 2  # sentence by sentence, as it streamed in
    audio = np.concatenate(chunks)
    seconds = audio.size / tts.capabilities.sample_rate
    assert 1.5 < seconds < 8 and float(np.abs(audio).max()) > 3000, seconds
    # what it said, transcribed back by the real transcription server
    at16k = audio if rate == RATE else _resample(audio, rate)
    stt = OpenAISTT(endpoint(pool, whisper.url("/v1/audio/transcriptions")), PRESETS["openai"])
    heard = await stt.transcribe(at16k, language="en")
    assert wer("the weather in paris is sunny enjoy your day", heard) <= 0.25, heard


def _resample(audio: Any, rate: int) -> Any:
    from harken.protocol.audio import resample

    return resample(audio, rate, RATE)


# ----------------------------------------------------------------------------- end to end


def remote_endpoints(llama: Running, whisper: Running, voice: Running) -> dict[str, Any]:
    return {
        "gpu-llm": {
            "kind": "llm",
            "url": llama.url("/v1/chat/completions"),
            "preset": "llama.cpp",
            "model": LLM_MODEL,
            "timeout": 60,
        },
        "gpu-stt": {"kind": "stt", "url": whisper.url("/v1/audio/transcriptions"), "timeout": 60},
        "gpu-tts": {
            "kind": "tts",
            "url": voice.url("/v1/audio/speech"),
            "voice": "alloy",
            "timeout": 60,
        },
    }


def spoken_settings(think: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": "Settings",
        "audio": {
            "input": {"encoding": "linear16", "sample_rate": 24000},
            "output": {"encoding": "linear16", "sample_rate": 24000, "container": "none"},
        },
        "agent": {
            "listen": {"provider": {"type": "deepgram", "model": "nova-3"}},
            "think": think
            or {
                "provider": {"type": "open_ai", "model": "gpt-4o-mini"},
                "prompt": SYSTEM.content,
            },
            "speak": {"provider": {"type": "open_ai", "model": "tts-1", "voice": "nova"}},
        },
    }


@pytest.fixture(scope="module")
def remote_harken(llama: Running, whisper: Running, voice: Running) -> Iterator[ServerThread]:
    """harken with its own VAD and turn detection, every model behind HTTP."""
    config = harken_config(
        providers="embedded",
        endpoints=json.dumps(remote_endpoints(llama, whisper, voice)),
        models={
            "listen": {"*": "gpu-stt"},
            "think": {"open_ai/*": "gpu-llm", "*": "llm-default"},
            "speak": {"open_ai/*": "gpu-tts", "*": "tts-default"},
        },
        allow_loopback_endpoints=True,
    )
    running = ServerThread(config).start()
    try:
        yield running
    finally:
        running.stop()


def one_spoken_turn(
    server: ServerThread, settings: dict[str, Any], utterance: Utterance
) -> list[Any]:
    with VoiceClient(server.url(), settings) as client:
        mark = client.mark()
        client.play(padded(utterance.samples, 24000))
        return wait_reply_done(client, mark)


THINK_LINE = "processing task"  # llama-server's log line for each request
LISTEN_LINE = "POST /v1/audio/transcriptions"  # uvicorn's access log
SPEAK_LINE = "POST /v1/audio/speech"


def test_a_spoken_turn_through_remote_listen_think_and_speak(
    remote_harken: ServerThread, llama: Running, whisper: Running, voice: Running
) -> None:
    utterance = need(librivox)[1]
    before = llama.count(THINK_LINE), whisper.count(LISTEN_LINE), voice.count(SPEAK_LINE)
    seen = one_spoken_turn(remote_harken, spoken_settings(), utterance)
    after = llama.count(THINK_LINE), whisper.count(LISTEN_LINE), voice.count(SPEAK_LINE)
    assert all(b < a for b, a in zip(before, after, strict=True)), (before, after)
    shown = compact(seen)
    no_errors(seen)
    user = texts(seen, "user")
    assert len(user) == 1 and wer(utterance.text, user[0]) <= 0.2, (utterance.text, user)
    assert texts(seen, "assistant"), shown
    assert sum(1 for item in seen if item.audio) >= 10, shown  # the remote voice, streamed


def test_think_endpoint_in_settings_reaches_the_server(
    remote_harken: ServerThread, llama: Running
) -> None:
    think = {
        "provider": {"type": "open_ai", "model": LLM_MODEL, "temperature": 0},
        "endpoint": {
            "url": llama.url("/v1/chat/completions"),
            "headers": {"authorization": "Bearer local"},
        },
        "prompt": SYSTEM.content,
    }
    utterance = need(librivox)[2]
    before = llama.count(THINK_LINE)
    seen = one_spoken_turn(remote_harken, spoken_settings(think), utterance)
    no_errors(seen)
    assert texts(seen, "assistant"), compact(seen)
    assert llama.count(THINK_LINE) > before


def test_a_client_endpoint_on_loopback_is_refused_unless_the_operator_allows_it(
    llama: Running, make_server: Any
) -> None:
    closed = make_server()  # the default: allow_loopback_endpoints = false
    think = {
        "provider": {"type": "open_ai", "model": LLM_MODEL},
        "endpoint": {"url": llama.url("/v1/chat/completions")},
    }
    ws = open_ws(closed)
    assert recv_json(ws)["type"] == "Welcome"
    ws.send(json.dumps(spoken_settings(think)))
    error, _ = closing_error(ws)
    assert error.get("code") == "INVALID_SETTINGS", error
    description = error.get("description", "")
    assert "loopback" in description and "allow_loopback_endpoints" in description, description


def test_the_official_sdk_thinks_on_the_server_its_settings_name(
    llama: Running, make_server: Any
) -> None:
    # the testing providers: the only model that can say "Paris" is the one behind the endpoint
    server = make_server(allow_loopback_endpoints=True)
    before = llama.count(THINK_LINE)
    report = run_driver(
        ".venv-dg4",
        "ga_endpoint_flow.py",
        server.url(GA),
        llama.url("/v1/chat/completions"),
        LLM_MODEL,
    )
    assert failed_steps(report) == [] and report["errors"] == [], report
    assert any("paris" in said.lower() for said in report["said"]), report["said"]
    assert llama.count(THINK_LINE) > before
    assert "sk-local-test" not in report["stderr"]
