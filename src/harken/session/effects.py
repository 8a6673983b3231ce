"""What the session asks its pump to do (outputs), and what providers report back (inputs).

The session never performs I/O. It returns effects as data; the server executes them and feeds
provider output back in through ``Session.receive_provider``. Every provider job carries a
``job_id``; output of a cancelled or unknown job is dropped by the session in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from harken.protocol.messages import ServerMessage
from harken.protocol.settings import (
    AudioOutput,
    FunctionDef,
    ListenConfig,
    SpeakConfig,
    ThinkConfig,
)

# ------------------------------------------------------------------------------- jobs


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of the LLM context, OpenAI-shaped."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str
    tool_call_id: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text


@dataclass(frozen=True, slots=True)
class TranscribeJob:
    """Speech to text over one finished (or speculative) user turn, 16 kHz mono int16 PCM."""

    job_id: int
    pcm16k: bytes
    listen: ListenConfig | None
    kind: Literal["transcribe"] = "transcribe"


@dataclass(frozen=True, slots=True)
class ThinkJob:
    """Run the LLM over ``messages``; ``think`` is the primary config plus fallbacks."""

    job_id: int
    think: tuple[ThinkConfig, ...]
    messages: tuple[ChatMessage, ...]
    functions: tuple[FunctionDef, ...] = ()
    end_score: bool = False  # first answer with a ``TextScore`` (a held reply at a pause)
    held: bool = False  # speculative: pause after the first sentence until ``ResumeJob``
    kind: Literal["think"] = "think"


@dataclass(frozen=True, slots=True)
class TurnJob:
    """Is the user's turn complete? Scored on its audio so far (16 kHz mono int16 PCM), at a
    pause, by the end-of-turn model; answered with one ``TurnScore``."""

    job_id: int
    pcm16k: bytes
    kind: Literal["turn"] = "turn"


@dataclass(frozen=True, slots=True)
class PrimeJob:
    """Warm the LLM with the system prompt (KV cache) when Settings or the prompt change."""

    job_id: int
    think: tuple[ThinkConfig, ...]
    messages: tuple[ChatMessage, ...]
    kind: Literal["prime"] = "prime"


@dataclass(frozen=True, slots=True)
class SpeakJob:
    """Synthesise ``text`` (one sentence) in the session's output format."""

    job_id: int
    text: str
    speak: tuple[SpeakConfig, ...]
    output: AudioOutput
    kind: Literal["speak"] = "speak"


@dataclass(frozen=True, slots=True)
class FunctionJob:
    """Call a server-side function (one with an ``endpoint``)."""

    job_id: int
    call_id: str
    function: FunctionDef
    arguments: str
    kind: Literal["function"] = "function"


Job = TranscribeJob | TurnJob | ThinkJob | PrimeJob | SpeakJob | FunctionJob

# ------------------------------------------------------------------------------- effects


@dataclass(frozen=True, slots=True)
class SendMessage:
    message: ServerMessage


@dataclass(frozen=True, slots=True)
class SendAudio:
    data: bytes


@dataclass(frozen=True, slots=True)
class StartJob:
    job: Job


@dataclass(frozen=True, slots=True)
class CancelJob:
    job_id: int


@dataclass(frozen=True, slots=True)
class ResumeJob:
    """A held ``ThinkJob`` may go on past its first sentence: the turn it guessed is final."""

    job_id: int


@dataclass(frozen=True, slots=True)
class CloseConnection:
    code: int = 1000
    reason: str = ""


Effect = SendMessage | SendAudio | StartJob | CancelJob | ResumeJob | CloseConnection

# ------------------------------------------------------------------------------- provider events


@dataclass(frozen=True, slots=True)
class Transcript:
    job_id: int
    text: str


@dataclass(frozen=True, slots=True)
class TurnScore:
    """The probability that the user's turn is complete (a ``TurnJob``'s answer)."""

    job_id: int
    probability: float


@dataclass(frozen=True, slots=True)
class TextScore:
    """The LLM's probability that the user's message is complete, read from a held reply's
    prompt (a ``ThinkJob`` with ``end_score``); None when its provider cannot tell."""

    job_id: int
    probability: float | None


@dataclass(frozen=True, slots=True)
class TextDelta:
    """Streamed LLM text."""

    job_id: int
    text: str


@dataclass(frozen=True, slots=True)
class ToolCalls:
    """The LLM asks for one or more tools."""

    job_id: int
    calls: tuple[ToolCall, ...]


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """Synthesised audio already in the session's output encoding and rate (no container)."""

    job_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class FunctionResult:
    job_id: int
    content: str


@dataclass(frozen=True, slots=True)
class JobDone:
    job_id: int


@dataclass(frozen=True, slots=True)
class JobFailed:
    """The job failed for good (after any fallbacks); it produces nothing more."""

    job_id: int
    message: str
    retryable: bool = False


@dataclass(frozen=True, slots=True)
class JobWarning:
    """Something the client should hear about, job still running (e.g. a fallback took over)."""

    job_id: int
    code: str
    description: str


ProviderEvent = (
    Transcript
    | TurnScore
    | TextScore
    | TextDelta
    | ToolCalls
    | AudioChunk
    | FunctionResult
    | JobDone
    | JobFailed
    | JobWarning
)
