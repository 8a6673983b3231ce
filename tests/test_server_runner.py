"""The runner: jobs → provider events, fallbacks, audio framing, server-side function calls."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from harken.config import load_config
from harken.errors import ProviderError
from harken.protocol.settings import (
    AudioOutput,
    Endpoint,
    FunctionDef,
    Provider,
    SpeakConfig,
    ThinkConfig,
)
from harken.providers.base import Capabilities, LLMEndScore
from harken.providers.compose import load_registry
from harken.providers.registry import Engines, Registry
from harken.providers.testing import EchoLLM, ToneTTS
from harken.server.functions import blocked_reason, vet_target
from harken.server.runner import Runner
from harken.session.effects import (
    AudioChunk,
    ChatMessage,
    FunctionJob,
    FunctionResult,
    JobDone,
    JobFailed,
    JobWarning,
    PrimeJob,
    ProviderEvent,
    SpeakJob,
    TextDelta,
    TextScore,
    ThinkJob,
    ToolCalls,
    TranscribeJob,
    Transcript,
)

GOOD_THINK = ThinkConfig(Provider("open_ai", "gpt-4o-mini"))
GOOD_SPEAK = SpeakConfig(Provider("deepgram", "aura-2-thalia-en"))


class BrokenLLM(EchoLLM):
    """Fails before any output, retryably."""

    def stream(self, messages, functions=(), *, temperature=None):  # type: ignore[no-untyped-def]
        async def fail() -> AsyncIterator[Any]:
            raise ProviderError("backend down", retryable=True)
            yield  # pragma: no cover

        return fail()


class CrashingTTS(ToneTTS):
    def synthesize(self, text):  # type: ignore[no-untyped-def]
        raise RuntimeError("bug in a provider")


def make_runner(**kw: Any) -> Runner:
    config = load_config(
        None,
        {"HARKEN_MODELS_THINK": "broken/*=llm-broken", "HARKEN_MODELS_SPEAK": "crash/*=tts-crash"},
        {"providers": "testing"},
    )
    registry = load_registry(config)
    registry.engines.llm["llm-broken"] = BrokenLLM()
    registry.engines.tts["tts-crash"] = CrashingTTS()
    return Runner(registry, **kw)


async def run(runner: Runner, job: Any) -> list[ProviderEvent]:
    events: list[ProviderEvent] = []

    async def emit(event: ProviderEvent) -> None:
        events.append(event)

    await runner.run(job, emit)
    return events


async def test_think_streams_then_done() -> None:
    events = await run(make_runner(), ThinkJob(1, (GOOD_THINK,), (ChatMessage("user", "hi"),)))
    assert isinstance(events[-1], JobDone)
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text == 'You said: "hi".'


class ScoringLLM(EchoLLM):
    """Offers the end score: yields it first, then the echo."""

    capabilities = Capabilities(streaming=True, tools=True, end_score=True)

    def stream(self, messages, functions=(), *, temperature=None, end_score=False):  # type: ignore[no-untyped-def]
        async def outputs() -> AsyncIterator[Any]:
            if end_score:
                yield LLMEndScore(0.42)
            async for output in EchoLLM.stream(self, messages, functions):
                yield output

        return outputs()


async def test_a_provider_that_cannot_score_says_none(caplog: pytest.LogCaptureFixture) -> None:
    from harken.server import runner as module

    module._UNSCORED.discard("EchoLLM")  # logged once per process: forget earlier tests'
    runner = make_runner()
    job = ThinkJob(6, (GOOD_THINK,), (ChatMessage("user", "hi"),), end_score=True)
    events = await run(runner, job)  # EchoLLM cannot score: None first, logged once
    assert events[0] == TextScore(6, None) and isinstance(events[-1], JobDone)
    await run(runner, job)
    assert len([r for r in caplog.records if "cannot score" in r.getMessage()]) == 1


async def test_think_end_score_from_a_provider_that_offers_it() -> None:
    config = load_config(
        None, {"HARKEN_MODELS_THINK": "scoring/*=llm-scoring"}, {"providers": "testing"}
    )
    registry = load_registry(config)
    registry.engines.llm["llm-scoring"] = ScoringLLM()
    job = ThinkJob(
        7, (ThinkConfig(Provider("scoring", "x")),), (ChatMessage("user", "hi"),), end_score=True
    )
    events = await run(Runner(registry), job)
    assert events[0] == TextScore(7, 0.42)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == 'You said: "hi".'
    plain = await run(Runner(registry), ThinkJob(8, job.think, job.messages))
    assert not [e for e in plain if isinstance(e, TextScore)]


async def test_think_tool_calls() -> None:
    weather = FunctionDef(name="get_weather", parameters={"properties": {"city": {}}})
    job = ThinkJob(2, (GOOD_THINK,), (ChatMessage("user", "weather in Oslo"),), (weather,))
    events = await run(make_runner(), job)
    assert isinstance(events[0], ToolCalls) and events[0].calls[0].name == "get_weather"
    assert isinstance(events[-1], JobDone)


async def test_think_falls_back_on_retryable_failure() -> None:
    broken = ThinkConfig(Provider("broken", "x"))
    events = await run(
        make_runner(), ThinkJob(3, (broken, GOOD_THINK), (ChatMessage("user", "a"),))
    )
    assert isinstance(events[0], JobWarning) and events[0].code == "THINK_REQUEST_FAILED"
    assert isinstance(events[-1], JobDone)
    only_broken = await run(make_runner(), ThinkJob(4, (broken,), (ChatMessage("user", "a"),)))
    assert only_broken == [JobFailed(4, "backend down", True)]


async def test_think_non_retryable_failure_skips_fallback() -> None:
    job = ThinkJob(5, (GOOD_THINK, GOOD_THINK), (ChatMessage("user", "[fail]"),))
    events = await run(make_runner(), job)
    assert len(events) == 1 and isinstance(events[0], JobFailed) and not events[0].retryable


async def test_crash_becomes_job_failed(caplog: pytest.LogCaptureFixture) -> None:
    job = SpeakJob(6, "hello", (SpeakConfig(Provider("crash", "x")),), AudioOutput())
    events = await run(make_runner(), job)
    assert events == [JobFailed(6, "internal error in the speak provider")]
    assert "crashed" in caplog.text


@pytest.mark.parametrize(
    ("encoding", "rate", "frame"),
    [
        ("linear16", 24000, 1920),
        ("linear16", 16000, 1280),
        ("mulaw", 8000, 320),
        ("alaw", 16000, 640),
    ],
)
async def test_speak_frames(encoding: str, rate: int, frame: int) -> None:
    job = SpeakJob(7, "Hello there, friend.", (GOOD_SPEAK,), AudioOutput(encoding, rate))
    events = await run(make_runner(), job)
    assert isinstance(events[-1], JobDone)
    chunks = [e.data for e in events if isinstance(e, AudioChunk)]
    assert all(len(c) == frame for c in chunks[:-1]) and 0 < len(chunks[-1]) <= frame
    seconds = sum(map(len, chunks)) / (rate * (2 if encoding == "linear16" else 1))
    assert abs(seconds - 0.2) < 0.01  # 20 characters x 10 ms


async def test_transcribe_and_prime() -> None:
    runner = make_runner()
    events = await run(runner, TranscribeJob(8, b"\x00\x00" * 1600, None))
    assert events == [Transcript(8, ""), JobDone(8)]
    assert await run(runner, PrimeJob(9, (GOOD_THINK,), (ChatMessage("system", "x"),))) == [
        JobDone(9)
    ]


# ------------------------------------------------------------------------------- functions


class FakeHTTP:
    """A tiny HTTP/1.1 server on 127.0.0.1 recording requests."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.status = 200
        self.delay = 0.0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> FakeHTTP:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        line, *rest = head.split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in rest if h)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.requests.append((line, headers, body))
        await asyncio.sleep(self.delay)
        payload = json.dumps({"ok": True, "temp_c": 21}).encode()
        writer.write(
            f"HTTP/1.1 {self.status} X\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
            + payload
        )
        await writer.drain()
        writer.close()


def function(url: str, method: str = "post") -> FunctionDef:
    return FunctionDef(name="lookup", endpoint=Endpoint(url, method, {"X-Key": "abc"}))


async def test_function_post_json() -> None:
    async with FakeHTTP() as fake:
        runner = make_runner(allow_loopback_functions=True)
        job = FunctionJob(10, "call_1", function(fake.url + "/orders"), '{"order_id": "42"}')
        events = await run(runner, job)
        await runner.aclose()
    assert events == [FunctionResult(10, '{"ok": true, "temp_c": 21}')]
    line, headers, body = fake.requests[0]
    assert line.startswith("POST /orders ") and headers["x-key"] == "abc"
    assert json.loads(body) == {"order_id": "42"} and headers["host"].startswith("127.0.0.1:")


async def test_function_get_query() -> None:
    async with FakeHTTP() as fake:
        runner = make_runner(allow_loopback_functions=True)
        job = FunctionJob(11, "c", function(fake.url + "/w", "GET"), '{"city": "Oslo", "n": 2}')
        events = await run(runner, job)
    assert isinstance(events[0], FunctionResult)
    assert fake.requests[0][0].startswith("GET /w?city=Oslo&n=2 ")


async def test_function_http_error_and_timeout() -> None:
    async with FakeHTTP() as fake:
        runner = make_runner(allow_loopback_functions=True, function_timeout=0.2)
        fake.status = 500
        events = await run(runner, FunctionJob(12, "c", function(fake.url), "{}"))
        assert isinstance(events[0], JobFailed) and "HTTP 500" in events[0].message
        fake.status, fake.delay = 200, 1.0
        events = await run(runner, FunctionJob(13, "c", function(fake.url), "{}"))
        assert isinstance(events[0], JobFailed) and "timed out" in events[0].message


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://127.0.0.1:9/x",
        "http://localhost:9/x",
        "http://[::1]:9/x",
        "http://0.0.0.0:9/x",
        "http://[fe80::1]/x",
        "http://[::ffff:169.254.169.254]/",
        "file:///etc/passwd",
    ],
)
async def test_ssrf_guard_blocks(url: str) -> None:
    events = await run(make_runner(), FunctionJob(14, "c", function(url), "{}"))
    assert len(events) == 1 and isinstance(events[0], JobFailed)
    assert "blocked" in events[0].message or "http or https" in events[0].message


async def test_loopback_allowed_when_configured() -> None:
    assert await vet_target(httpx.URL("http://127.0.0.1:9/"), allow_loopback=True) == "127.0.0.1"
    import ipaddress

    assert blocked_reason(ipaddress.ip_address("10.0.0.1"), False) is None
    assert blocked_reason(ipaddress.ip_address("169.254.1.1"), True) == "a link-local address"


async def test_bad_arguments() -> None:
    events = await run(make_runner(), FunctionJob(15, "c", function("http://x.invalid"), "{nope"))
    assert isinstance(events[0], JobFailed) and "not valid JSON" in events[0].message


def test_engines_names() -> None:
    assert Engines().names("think") == ()
    assert isinstance(make_runner().registry, Registry)


class ForgetfulLLM(EchoLLM):
    """An LLM that keeps per-session state, as the embedded llama.cpp one does."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.forgotten: list[str] = []
        self.fail = fail

    async def forget(self, session: str) -> None:
        if self.fail:
            raise RuntimeError("cache is gone")
        self.forgotten.append(session)


def test_an_ended_session_is_forgotten_by_every_llm_that_keeps_state() -> None:
    async def main() -> tuple[list[str], list[str]]:
        runner = make_runner()
        keeps, broken = ForgetfulLLM(), ForgetfulLLM(fail=True)
        runner.registry.engines.llm["keeps"] = keeps
        runner.registry.engines.llm["broken"] = broken
        runner.forget("req-9")  # returns at once: the work is queued in the background
        for _ in range(5):
            await asyncio.sleep(0)
        return keeps.forgotten, broken.forgotten

    keeps, broken = asyncio.run(main())
    assert keeps == ["req-9"]
    assert broken == []  # its failure was logged, nothing raised


async def test_a_held_reply_pauses_after_its_first_sentence_until_resumed() -> None:
    """A speculative reply's LLM stops being asked for text once its first sentence is out,
    and goes on only when the gate opens (the turn it guessed is final)."""
    runner, gate, events = make_runner(), asyncio.Event(), []

    async def emit(event: ProviderEvent) -> None:
        events.append(event)

    messages = (ChatMessage("user", "Hello there. How are you today?"),)
    job = ThinkJob(9, (GOOD_THINK,), messages, held=True)
    task = asyncio.create_task(runner.run(job, emit, gate=gate))
    for _ in range(50):
        await asyncio.sleep(0)
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text == 'You said: "Hello there. ', text  # one sentence, then nothing
    assert not task.done()
    gate.set()
    await asyncio.wait_for(task, 5)
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text == 'You said: "Hello there. How are you today?".'
    assert isinstance(events[-1], JobDone)
