"""The composition root: every provider is assembled from the config here, and only here.

:func:`load_registry` builds the engine set ``ServerConfig.providers`` names (the deterministic
fakes of :mod:`~harken.providers.testing`, or the embedded offline stack of
:mod:`~harken.providers.embedded`), adds the operator's named ``[endpoints.NAME]`` as engines
beside them (trusted, as configured), and gives the registry a :class:`SettingsEndpoints` for
the ``think.endpoint`` / ``speak.endpoint`` URLs that clients send (guarded). Nothing below this
module imports upwards: ``engines/`` knows models and the lane, ``registry`` knows routing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx

from harken.config import ServerConfig
from harken.endpoints import EndpointConfig
from harken.errors import ModelError
from harken.protocol.settings import Endpoint, SpeakConfig, ThinkConfig
from harken.providers.base import LLM, TTS
from harken.providers.guard import literal_problem, redact
from harken.providers.llm.openai_http import OpenAILLM
from harken.providers.registry import Engines, Registry
from harken.providers.remote import LOCAL_FLAG, PRESETS, HTTPEndpoint, HTTPPool
from harken.providers.stt.openai_http import OpenAISTT
from harken.providers.tts.openai_http import OpenAITTS

log = logging.getLogger("harken.registry")

# Settings think providers whose own API is not OpenAI's: with an endpoint they are accepted only
# when the URL is that vendor's OpenAI-compatible one (``.../chat/completions``).
NATIVE_THINK = frozenset({"anthropic", "google", "aws_bedrock"})
# Speak providers harken cannot reach through an endpoint (another API, or a WebSocket one).
NATIVE_SPEAK = frozenset({"deepgram", "eleven_labs", "cartesia", "aws_polly"})


def testing_engines(config: ServerConfig) -> Engines:
    """The deterministic fakes; never used unless ``providers = "testing"``."""
    from harken.providers import testing

    log.warning(testing.TESTING_BANNER)
    return Engines(
        stt={"stt-default": testing.SilenceSTT()},
        llm={"llm-default": testing.EchoLLM()},
        tts={"tts-default": testing.ToneTTS()},
        vad=testing.EnergyVAD(),
        turn=testing.ConstantTurn(),
        label="testing",
    )


def embedded_engines(config: ServerConfig) -> Engines:
    """The local models (faster-whisper, llama.cpp, piper); fails loudly if they are missing."""
    try:
        from harken.providers import embedded
    except ModuleNotFoundError as exc:  # a runtime package is not installed
        raise ModelError(
            f"the embedded engines need the package {exc.name!r}, which is not installed; "
            "run `make install`"
        ) from exc
    return embedded.load_engines(config)


LOADERS: dict[str, Callable[[ServerConfig], Engines]] = {
    "testing": testing_engines,
    "embedded": embedded_engines,
}


def remote_engine(
    endpoint: EndpointConfig, pool: HTTPPool, config: ServerConfig
) -> OpenAILLM | OpenAISTT | OpenAITTS:
    """The provider for one operator endpoint (trusted: no guard, any address)."""
    http = HTTPEndpoint(
        pool,
        endpoint.url,
        endpoint.all_headers(),
        what=f"endpoint {endpoint.name!r}",
        trusted=True,
        timeout=endpoint.timeout or config.endpoint_timeout,
        connect_timeout=endpoint.connect_timeout or config.endpoint_connect_timeout,
        slots=endpoint.slots,
    )
    preset = PRESETS[endpoint.preset]
    if endpoint.kind == "llm":
        return OpenAILLM(
            http, preset, model=endpoint.model, max_tokens=endpoint.max_tokens, prime=endpoint.prime
        )
    if endpoint.kind == "stt":
        return OpenAISTT(
            http,
            preset,
            model=endpoint.model,
            response_format=endpoint.response_format,
            language=endpoint.language,
        )
    return OpenAITTS(
        http,
        preset,
        model=endpoint.model,
        voice=endpoint.voice,
        response_format=endpoint.response_format,
        sample_rate=endpoint.sample_rate,
    )


class SettingsEndpoints:
    """``think.endpoint`` and ``speak.endpoint`` from a client's Settings: guarded, per job.

    The URL passes the SSRF guard twice: its literal form when Settings arrive (no I/O, in
    :meth:`problem`), and the resolved address before every request, which then goes to that
    address. Loopback and private targets are refused unless ``allow_loopback_endpoints``.
    """

    def __init__(self, pool: HTTPPool, config: ServerConfig) -> None:
        self.pool = pool
        self.allow_local = config.allow_loopback_endpoints
        self.timeout = config.endpoint_timeout
        self.connect_timeout = config.endpoint_connect_timeout

    def problem(self, part: ThinkConfig | SpeakConfig) -> str | None:
        """None if the endpoint can be used, else an INVALID_SETTINGS description."""
        assert part.endpoint is not None
        kind = "think" if isinstance(part, ThinkConfig) else "speak"
        url, vendor = part.endpoint.url, part.provider.type
        where = f"agent.{kind}.endpoint.url"
        if kind == "think" and vendor in NATIVE_THINK and not _chat_url(url):
            return (
                f"agent.think.provider {vendor!r} with an endpoint: this server speaks the OpenAI "
                f"chat-completions API only; give the vendor's OpenAI-compatible URL (ending in "
                f"/chat/completions), not {redact(url)}"
            )
        if kind == "speak" and vendor in NATIVE_SPEAK:
            return (
                f"agent.speak.provider {vendor!r} with an endpoint is not supported: this server "
                "reaches text-to-speech servers through the OpenAI /v1/audio/speech API only "
                "(provider type 'open_ai')"
            )
        return literal_problem(url, where, self.allow_local, LOCAL_FLAG)

    def _http(self, endpoint: Endpoint, kind: str) -> HTTPEndpoint:
        return HTTPEndpoint(
            self.pool,
            endpoint.url,
            endpoint.headers,
            what=f"agent.{kind}.endpoint",
            trusted=False,
            allow_local=self.allow_local,
            timeout=self.timeout,
            connect_timeout=self.connect_timeout,
        )

    def llm(self, think: ThinkConfig) -> LLM:
        assert think.endpoint is not None
        preset = PRESETS.get(think.provider.type, PRESETS["openai"])
        return OpenAILLM(self._http(think.endpoint, "think"), preset).bind(think.provider)

    def tts(self, speak: SpeakConfig) -> TTS:
        assert speak.endpoint is not None
        return OpenAITTS(self._http(speak.endpoint, "speak"), PRESETS["openai"]).bind(
            speak.provider
        )

    async def aclose(self) -> None:
        await self.pool.aclose()


def _chat_url(url: str) -> bool:
    try:
        return httpx.URL(url).path.rstrip("/").endswith("/chat/completions")
    except httpx.InvalidURL:
        return False


def load_registry(config: ServerConfig) -> Registry:
    """Load the engines ``config`` names (blocking; may take long) → Registry."""
    engines = LOADERS[config.providers](config)
    pool = HTTPPool()
    for endpoint in config.endpoints:
        engine = remote_engine(endpoint, pool, config)
        if isinstance(engine, OpenAILLM):
            engines.llm[endpoint.name] = engine
        elif isinstance(engine, OpenAISTT):
            engines.stt[endpoint.name] = engine
        else:
            engines.tts[endpoint.name] = engine
        log.info("endpoint %r: %s %s", endpoint.name, endpoint.kind, redact(endpoint.url))
    names = [e.name for e in config.endpoints]
    if names:
        engines.label = f"{engines.label}; endpoints {', '.join(names)}"
    return Registry(config, engines, SettingsEndpoints(pool, config))
