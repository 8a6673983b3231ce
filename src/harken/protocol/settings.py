"""The Settings tree: what a client configures for one session.

Pure data. The codec (``codec.py`` / ``settings_codec.py``) builds these from the wire JSON of
either generation and validates them; the session and the providers read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Encoding = Literal["linear16", "mulaw", "alaw"]
Container = Literal["none", "wav"]


@dataclass(frozen=True, slots=True)
class AudioInput:
    """Client audio. On the wire an omitted ``audio``/``audio.input`` means linear16 at 24000 Hz;
    an omitted ``sample_rate`` means 8000 for mulaw/alaw and 24000 for linear16."""

    encoding: str = "linear16"
    sample_rate: int = 24000


@dataclass(frozen=True, slots=True)
class AudioOutput:
    """Agent audio; wire defaults as for :class:`AudioInput`. ``bitrate`` is kept but unused
    (every supported encoding is uncompressed)."""

    encoding: str = "linear16"
    sample_rate: int = 24000
    bitrate: int | None = None
    container: str = "none"


@dataclass(frozen=True, slots=True)
class AudioConfig:
    input: AudioInput = field(default_factory=AudioInput)
    output: AudioOutput = field(default_factory=AudioOutput)


@dataclass(frozen=True, slots=True)
class Provider:
    """A provider selector, e.g. ``{type: "deepgram", model: "nova-3", keyterms: [...]}``.

    ``options`` keeps every other key the client sent (temperature, voice, keyterms, ...);
    ``language_code`` arrives renamed to ``language``.

    Server defaults: ``type == ""`` means the client named no provider (``"speak": {}``,
    ``"provider": {}``, early access ``"think": {"provider": {}}``): the server picks its default
    one. ``model is None`` means the provider's default model (the codec turns ``""`` into
    ``None``).
    """

    type: str
    model: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """``type/model`` as used by the model map (``deepgram/nova-3``)."""
        return f"{self.type}/{self.model}" if self.model else self.type


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An http(s) URL to call; the codec lower-cases ``method`` (blank means ``post``)."""

    url: str
    method: str = "post"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FunctionDef:
    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    endpoint: Endpoint | None = None

    @property
    def client_side(self) -> bool:
        return self.endpoint is None


@dataclass(frozen=True, slots=True)
class ListenConfig:
    provider: Provider


@dataclass(frozen=True, slots=True)
class ThinkConfig:
    provider: Provider
    prompt: str = ""
    functions: tuple[FunctionDef, ...] = ()
    endpoint: Endpoint | None = None
    context_length: int | Literal["max"] | None = None


@dataclass(frozen=True, slots=True)
class SpeakConfig:
    provider: Provider
    endpoint: Endpoint | None = None


@dataclass(frozen=True, slots=True)
class HistoryFunctionCall:
    id: str
    name: str
    client_side: bool
    arguments: str
    response: str


@dataclass(frozen=True, slots=True)
class HistoryItem:
    """One entry of ``agent.context.messages`` / one ``History`` message.

    Either ``role`` + ``content`` (an utterance) or ``function_calls`` (completed calls).
    """

    role: str | None = None
    content: str | None = None
    function_calls: tuple[HistoryFunctionCall, ...] = ()


@dataclass(frozen=True, slots=True)
class ContextConfig:
    messages: tuple[HistoryItem, ...] = ()
    replay: bool = False


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """``agent``. ``listen is None``: the client sent no ``listen``. ``think``/``speak`` are a
    primary plus fallbacks; ``()`` means the client left the key out, which, like an entry whose
    provider type is ``""``, asks for the server default. An explicit ``[]`` is rejected."""

    language: str = "en"
    listen: ListenConfig | None = None
    think: tuple[ThinkConfig, ...] = ()
    speak: tuple[SpeakConfig, ...] = ()
    greeting: str | None = None
    context: ContextConfig | None = None


@dataclass(frozen=True, slots=True)
class Flags:
    history: bool = True
