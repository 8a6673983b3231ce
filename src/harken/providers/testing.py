"""TESTING PROVIDERS: deterministic fakes for protocol, server and capacity tests. Not models.

``harken serve --providers testing`` uses these so the whole protocol can be exercised in
seconds without any model installed. They understand nothing: ``EchoLLM`` quotes the user,
``ToneTTS`` plays a beep whose length follows the text, ``SilenceSTT`` reports whether it heard
anything. They are never a fallback for a missing or broken model; the registry only builds them
when the configuration asks for ``providers = "testing"`` explicitly.

Triggers for tests (anywhere in the text given to the provider):

* ``[fail]``: raise ``ProviderError(retryable=False)``;
* ``[fail-retryable]``: raise ``ProviderError(retryable=True)`` (so the runner tries a fallback);
* ``[slow]``: wait ``slow_delay`` seconds before each word or chunk (to test barge-in and timeouts).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

import numpy as np

from harken.errors import ProviderError
from harken.protocol.settings import FunctionDef
from harken.providers.base import (
    Capabilities,
    Int16Array,
    LLMOutput,
    LLMText,
    LLMToolCalls,
)
from harken.session.effects import ChatMessage, ToolCall

TESTING_BANNER = (
    "TESTING PROVIDERS ACTIVE: replies are canned echoes and beeps, not models "
    "(providers=testing). Never use this for real conversations."
)
_WORD = re.compile(r"\S+\s*")


def _check_triggers(text: str, what: str) -> None:
    if "[fail-retryable]" in text:
        raise ProviderError(f"testing {what} asked to fail (retryable)", retryable=True)
    if "[fail]" in text:
        raise ProviderError(f"testing {what} asked to fail")


class EchoLLM:
    """TESTING ONLY. Streams a deterministic reply quoting the last user message, word by word.

    * With functions offered, when the user text names one of them (or says "weather" and a
      function name contains "weather", else the first function), it asks for that tool once,
      with JSON arguments guessed from the function's parameter schema.
    * After a tool result it replies quoting the result.
    """

    capabilities = Capabilities(streaming=True, tools=True)

    def __init__(self, *, slow_delay: float = 0.5) -> None:
        self.slow_delay = slow_delay
        self.primed = 0

    async def prime(
        self, messages: Sequence[ChatMessage], functions: Sequence[FunctionDef] = ()
    ) -> None:
        self.primed += 1

    def stream(
        self,
        messages: Sequence[ChatMessage],
        functions: Sequence[FunctionDef] = (),
        *,
        temperature: float | None = None,
        end_score: bool = False,  # not offered (capabilities.end_score is False)
    ) -> AsyncIterator[LLMOutput]:
        return self._stream(tuple(messages), tuple(functions))

    async def _stream(
        self, messages: tuple[ChatMessage, ...], functions: tuple[FunctionDef, ...]
    ) -> AsyncIterator[LLMOutput]:
        last_user = next((m.content for m in reversed(messages) if m.role == "user"), None)
        text = last_user or ""
        _check_triggers(text, "LLM")
        slow = "[slow]" in text
        if messages and messages[-1].role == "tool":
            reply = f"The function returned: {messages[-1].content}"
        elif last_user is None:
            reply = "Hello! How can I help you today?"
        else:
            tool = _pick_tool(text, functions)
            if tool is not None:
                yield LLMToolCalls((_tool_call(tool, text, len(messages)),))
                return
            reply = f'You said: "{text}".'
        for match in _WORD.finditer(reply):
            if slow:
                await asyncio.sleep(self.slow_delay)
            else:
                await asyncio.sleep(0)
            yield LLMText(match.group(0))


def _pick_tool(text: str, functions: tuple[FunctionDef, ...]) -> FunctionDef | None:
    if not functions:
        return None
    lowered = text.lower()
    for function in functions:
        if function.name.lower() in lowered:
            return function
    if "weather" in lowered:
        weather = [f for f in functions if "weather" in f.name.lower()]
        return weather[0] if weather else functions[0]
    return None


def _tool_call(function: FunctionDef, text: str, position: int) -> ToolCall:
    digest = hashlib.sha1(f"{position}:{function.name}:{text}".encode()).hexdigest()[:12]
    return ToolCall(
        id=f"call_{digest}", name=function.name, arguments=_guess_arguments(function, text)
    )


def _guess_arguments(function: FunctionDef, text: str) -> str:
    """Fill each declared property: strings from the text (a word after "in"/"for"), else 1."""
    properties = function.parameters.get("properties", {})
    args: dict[str, Any] = {}
    if not isinstance(properties, dict):
        return "{}"
    match = re.search(r"\b(?:in|for|of)\s+([A-Za-z][\w-]*(?:\s+[A-Z][\w-]*)*)", text)
    guess = match.group(1) if match else "unknown"
    for name, schema in properties.items():
        kind = schema.get("type") if isinstance(schema, dict) else None
        if kind in ("integer", "number"):
            args[name] = 1
        elif kind == "boolean":
            args[name] = True
        else:
            args[name] = guess
    return json.dumps(args)


class ToneTTS:
    """TESTING ONLY. A 440 Hz tone, ``ms_per_char`` per character of text, at 16 kHz.

    Yields ``chunk_ms`` chunks of mono int16 so the runner's resampling and framing are
    exercised like a real streaming TTS.
    """

    capabilities = Capabilities(streaming=True, sample_rate=16000)

    def __init__(
        self, *, ms_per_char: float = 10.0, chunk_ms: int = 100, slow_delay: float = 0.5
    ) -> None:
        self.ms_per_char = ms_per_char
        self.chunk_ms = chunk_ms
        self.slow_delay = slow_delay

    def synthesize(self, text: str) -> AsyncIterator[Int16Array]:
        return self._synthesize(text)

    async def _synthesize(self, text: str) -> AsyncIterator[Int16Array]:
        _check_triggers(text, "TTS")
        rate = self.capabilities.sample_rate
        total = max(int(rate * self.ms_per_char * max(len(text.strip()), 1) / 1000), rate // 50)
        chunk = rate * self.chunk_ms // 1000
        for start in range(0, total, chunk):
            n = min(chunk, total - start)
            t = (np.arange(start, start + n, dtype=np.float64)) / rate
            samples = (0.3 * 32767 * np.sin(2 * np.pi * 440.0 * t)).astype(np.int16)
            await asyncio.sleep(self.slow_delay if "[slow]" in text else 0)
            yield samples


class SilenceSTT:
    """TESTING ONLY. Returns "" for silence, else a fixed sentence naming how much it heard."""

    capabilities = Capabilities(sample_rate=16000)

    def __init__(self, *, threshold: int = 500) -> None:
        self.threshold = threshold

    async def transcribe(
        self, pcm16k: Int16Array, *, language: str | None = None, keyterms: Sequence[str] = ()
    ) -> str:
        await asyncio.sleep(0)
        if pcm16k.size == 0 or int(np.abs(pcm16k.astype(np.int32)).max()) < self.threshold:
            return ""
        loud = int(np.count_nonzero(np.abs(pcm16k.astype(np.int32)) >= self.threshold))
        return f"I heard {loud * 1000 // 16000} milliseconds of sound."


class _EnergyStream:
    frame_samples = 320  # 20 ms at 16 kHz

    def __init__(self, threshold: float) -> None:
        self._threshold = threshold

    def probability(self, frame: Int16Array) -> float:
        if frame.size == 0:
            return 0.0
        samples = frame.astype(np.float32)  # one dot product: this runs for every frame
        rms = math.sqrt(float(np.dot(samples, samples)) / samples.size)
        return min(1.0, rms / self._threshold)


class EnergyVAD:
    """TESTING ONLY. Speech probability = frame RMS relative to ``threshold`` (capped at 1)."""

    capabilities = Capabilities(sample_rate=16000)

    def __init__(self, *, threshold: float = 1000.0) -> None:
        self.threshold = threshold

    def stream(self) -> _EnergyStream:
        return _EnergyStream(self.threshold)


class ConstantTurn:
    """TESTING ONLY. Every turn is this likely to be complete (1.0: every pause ends the turn)."""

    def __init__(self, probability: float = 1.0) -> None:
        self.value = probability

    async def probability(self, pcm16k: Int16Array) -> float:
        return self.value
