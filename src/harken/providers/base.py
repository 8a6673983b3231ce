"""Provider interfaces: small Protocols the runner drives, one per kind of job.

Each provider is one small class implementing one of these. Engines (the loaded models) are
shared by all sessions of a process; a provider instance is cheap and per-configuration.
Providers raise :class:`harken.errors.ProviderError` (``retryable`` says whether a fallback may
help); third-party exceptions are translated at this boundary with ``raise ... from exc``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from harken.protocol.settings import FunctionDef
from harken.session.effects import ChatMessage, ToolCall

SPECULATIVE: ContextVar[asyncio.Event | None] = ContextVar("harken_speculative", default=None)
"""Set (by the runner) for the task of a held reply's LLM: the event is set once the user's turn
is final. Until then the request is a guess, and a model server with few slots gives them to
committed turns first (:meth:`harken.providers.remote.HTTPEndpoint.slot`)."""

Int16Array = npt.NDArray[np.int16]


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a provider can do; the registry and runner read these."""

    streaming: bool = False  # yields output incrementally
    tools: bool = False  # LLM: can call functions
    sample_rate: int = 16000  # VAD/STT: input rate it wants; TTS: native output rate
    languages: tuple[str, ...] = ("en",)
    end_score: bool = False  # LLM: reads P(the user's message is complete) from its prefill


@runtime_checkable
class VADStream(Protocol):
    """Per-session voice activity state over a stream of 16 kHz int16 frames."""

    frame_samples: int

    def probability(self, frame: Int16Array) -> float:
        """Speech probability of exactly ``frame_samples`` samples."""
        ...


@runtime_checkable
class VAD(Protocol):
    capabilities: Capabilities

    def stream(self) -> VADStream: ...


@runtime_checkable
class STT(Protocol):
    capabilities: Capabilities

    async def transcribe(
        self, pcm16k: Int16Array, *, language: str | None = None, keyterms: Sequence[str] = ()
    ) -> str:
        """The text spoken in ``pcm16k``; ``keyterms`` are words to favour (names, jargon)."""
        ...


@dataclass(frozen=True, slots=True)
class LLMText:
    text: str


@dataclass(frozen=True, slots=True)
class LLMToolCalls:
    calls: tuple[ToolCall, ...]


@dataclass(frozen=True, slots=True)
class LLMEndScore:
    """P(the user's last message is complete), read from the reply's own prompt: the model's
    probability of ending the message (or of a full stop, question or exclamation mark) right
    after its text, trailing punctuation removed. Yielded before any text, when asked for."""

    probability: float | None  # None: this prompt cannot be scored (e.g. no user text)


LLMOutput = LLMText | LLMToolCalls | LLMEndScore


@runtime_checkable
class LLM(Protocol):
    capabilities: Capabilities

    def stream(
        self,
        messages: Sequence[ChatMessage],
        functions: Sequence[FunctionDef] = (),
        *,
        temperature: float | None = None,
        end_score: bool = False,
    ) -> AsyncIterator[LLMOutput]:
        """Stream text deltas, or one ``LLMToolCalls`` when the model asks for tools; with
        ``end_score`` (and ``capabilities.end_score``) first one ``LLMEndScore``."""
        ...

    async def prime(
        self, messages: Sequence[ChatMessage], functions: Sequence[FunctionDef] = ()
    ) -> None:
        """Warm caches for a prefix (system prompt and tools); a no-op where meaningless."""
        ...


@runtime_checkable
class TurnDetector(Protocol):
    """End of turn from the audio: how likely the user's turn (so far, at a pause) is complete."""

    async def probability(self, pcm16k: Int16Array) -> float:
        """P(complete) for mono int16 samples at 16 kHz of the turn, including the pause."""
        ...


@runtime_checkable
class TTS(Protocol):
    capabilities: Capabilities

    def synthesize(self, text: str) -> AsyncIterator[Int16Array]:
        """Stream mono int16 audio at ``capabilities.sample_rate``."""
        ...
