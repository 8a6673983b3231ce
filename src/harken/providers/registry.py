"""Provider registry: Settings provider names → loaded engines. The seam where models plug in.

A client names providers the way Deepgram does (``listen: deepgram/nova-3``, ``think:
open_ai/gpt-4o-mini``, ``speak: deepgram/aura-2-thalia-en``). The config's
:class:`~harken.config.ModelMap` routes each ``type/model`` (fnmatch patterns, first match wins)
to an *engine name* such as ``"llm-default"``; :class:`Engines` holds the loaded provider objects
by engine name. :class:`Registry` answers the session's ``Catalog.problem`` question (can this
``{type, model}`` be served?) and hands the runner the provider for a job.

Engine sets are built in one place, :mod:`harken.providers.compose` (embedded, testing and the
operator's remote endpoints side by side). An engine with a ``bind(provider)`` method (the remote
ones) is bound to each Settings provider, so the client's ``model`` reaches the server when the
operator set none. A Settings ``endpoint`` bypasses the model map: :class:`EndpointFactory`
builds a guarded provider for that URL.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Protocol, TypeVar, cast

from harken.config import ModelKind, ServerConfig
from harken.errors import ModelError
from harken.protocol.settings import ListenConfig, Provider, SpeakConfig, ThinkConfig
from harken.providers.base import LLM, STT, TTS, VAD, TurnDetector

log = logging.getLogger("harken.registry")

_PATH = {"listen": "agent.listen.provider", "think": "agent.think.provider"}
_PATH["speak"] = "agent.speak.provider"
E = TypeVar("E")


class EndpointFactory(Protocol):
    """Providers for the ``endpoint`` URLs of Settings (see ``compose.SettingsEndpoints``)."""

    def problem(self, part: ThinkConfig | SpeakConfig) -> str | None: ...

    def llm(self, think: ThinkConfig) -> LLM: ...

    def tts(self, speak: SpeakConfig) -> TTS: ...

    async def aclose(self) -> None: ...


@dataclass(slots=True)
class Engines:
    """Loaded providers by engine name, shared by every session of the process."""

    stt: dict[str, STT] = field(default_factory=dict)
    llm: dict[str, LLM] = field(default_factory=dict)
    tts: dict[str, TTS] = field(default_factory=dict)
    vad: VAD | None = None
    turn: TurnDetector | None = None  # the end-of-turn model (turn_detection = "semantic")
    label: str = ""  # what is loaded, for logs and /healthz

    def names(self, kind: ModelKind) -> tuple[str, ...]:
        if kind == "listen":
            return tuple(sorted(self.stt))
        if kind == "think":
            return tuple(sorted(self.llm))
        return tuple(sorted(self.tts))


def provider_key(provider: Provider) -> str:
    """``type/model`` as matched against the model map (``model_id`` counts as the model)."""
    model = provider.model or provider.options.get("model_id") or ""
    return f"{provider.type}/{model}"


def _kind_of(part: ListenConfig | ThinkConfig | SpeakConfig) -> ModelKind:
    if isinstance(part, ListenConfig):
        return "listen"
    if isinstance(part, ThinkConfig):
        return "think"
    return "speak"


class Registry:
    """Routes Settings providers to loaded engines. Implements the session's ``Catalog``."""

    def __init__(
        self, config: ServerConfig, engines: Engines, endpoints: EndpointFactory | None = None
    ) -> None:
        self._models = config.models
        self.engines = engines
        self.endpoints = endpoints

    async def aclose(self) -> None:
        """Close the connections of the remote providers (a later job opens new ones)."""
        if self.endpoints is not None:
            await self.endpoints.aclose()

    def route(self, kind: ModelKind, provider: Provider) -> str | None:
        """The engine name for ``provider`` (first matching pattern), or None.

        A provider without a ``type`` (the SDK's bare ``"speak": {}``) asks for the server's
        default: the engine of the first route whose engine is loaded.
        """
        if not provider.type:
            loaded = set(self.engines.names(kind))
            return next((e for _, e in self._models.routes(kind) if e in loaded), None)
        key = provider_key(provider)
        for pattern, engine in self._models.routes(kind):
            if fnmatchcase(key, pattern):
                return engine
        return None

    def available(self, kind: ModelKind) -> tuple[str, ...]:
        """Patterns of ``kind`` whose engine is loaded, in routing order."""
        loaded = set(self.engines.names(kind))
        return tuple(dict.fromkeys(p for p, e in self._models.routes(kind) if e in loaded))

    def problem(self, part: ListenConfig | ThinkConfig | SpeakConfig) -> str | None:
        """None if ``part`` can be served, else an INVALID_SETTINGS description."""
        kind = _kind_of(part)
        if isinstance(part, ThinkConfig | SpeakConfig) and part.endpoint is not None:
            if self.endpoints is None:
                return (
                    f"agent.{kind}.endpoint is not supported by this server; remove it to use a "
                    f"local model (available {kind} providers: {self._list(kind)})"
                )
            return self.endpoints.problem(part)
        name = provider_key(part.provider).rstrip("/")
        engine = self.route(kind, part.provider)
        if engine is None:
            return (
                f"{_PATH[kind]} {name!r} is not available on this server; "
                f"available: {self._list(kind)}"
            )
        if engine not in self.engines.names(kind):
            return (
                f"{_PATH[kind]} {name!r} maps to engine {engine!r}, which is not loaded "
                f"(loaded: {', '.join(self.engines.names(kind)) or 'none'})"
            )
        return None

    def _list(self, kind: ModelKind) -> str:
        return ", ".join(self.available(kind)) or "none"

    def _engine(self, kind: ModelKind, provider: Provider, table: dict[str, Any]) -> Any:
        engine = self.route(kind, provider)
        if engine is None or engine not in table:
            # The session checks problem() before starting jobs; reaching this is a bug there
            # or a config changed underneath; a clear ModelError beats a KeyError.
            raise ModelError(f"{_PATH[kind]} {provider_key(provider)!r} has no loaded engine")
        return _bound(table[engine], provider)

    def stt(self, listen: ListenConfig | None) -> STT:
        if listen is None:  # no listen block: the first loaded speech-to-text engine
            if not self.engines.stt:
                raise ModelError("no speech-to-text engine is loaded")
            return self.engines.stt.get("stt-default") or next(iter(self.engines.stt.values()))
        engine: STT = self._engine("listen", listen.provider, self.engines.stt)
        wanted = listen.provider.options.get("language")
        if not isinstance(wanted, str) or _speaks(engine, wanted):
            return engine
        # e.g. an English-only default model and a session in Spanish: the multilingual engine
        other = next((e for e in self.engines.stt.values() if _speaks(e, wanted)), engine)
        return _bound(other, listen.provider)

    def llm(self, think: ThinkConfig) -> LLM:
        if think.endpoint is not None and self.endpoints is not None:
            return self.endpoints.llm(think)
        return self._engine("think", think.provider, self.engines.llm)  # type: ignore[no-any-return]

    def tts(self, speak: SpeakConfig) -> TTS:
        if speak.endpoint is not None and self.endpoints is not None:
            return self.endpoints.tts(speak)
        return self._engine("speak", speak.provider, self.engines.tts)  # type: ignore[no-any-return]


def _bound(engine: E, provider: Provider) -> E:
    """A remote engine bound to ``provider`` (its model and voice); a local one as it is."""
    bind = getattr(engine, "bind", None)
    return cast(E, bind(provider)) if callable(bind) else engine


def _speaks(engine: STT, language: str) -> bool:
    """Whether ``engine`` transcribes ``language`` (a BCP-47 tag; "multi" means detect it)."""
    known = engine.capabilities.languages
    if "*" in known:  # a remote server: it says what it can do when it is asked
        return True
    code = language.split("-")[0].split("_")[0].lower()
    if code in ("multi", "auto", ""):
        return len(known) > 1
    return code in known
