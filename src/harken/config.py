"""Server configuration: one frozen :class:`ServerConfig`, built from four layers.

Precedence, lowest to highest: built-in defaults, a TOML file (``--config FILE``), ``HARKEN_*``
environment variables, command-line flags. Every value is validated once, here; a bad value raises
:class:`harken.errors.ConfigError` whose message names the key and where it came from.

TOML file (every key optional; the names are the ``ServerConfig`` field names)::

    host = "0.0.0.0"
    port = 8765
    api_keys = ["secret-1", "secret-2"]
    providers = "embedded"          # or "testing" (deterministic fakes, never for real use)
    strict = false
    idle_timeout = 30.0
    max_sessions = 1000

    [models.think]                  # Settings {type, model} pattern -> engine name
    "open_ai/gpt-4o-mini" = "llm-default"
    "my_vendor/*" = "llm-default"

Environment: ``HARKEN_<FIELD>`` in upper case, e.g. ``HARKEN_PORT=9000``,
``HARKEN_API_KEYS=k1,k2`` (comma separated), ``HARKEN_STRICT=true``. A model-map entry in the
file or environment is added in front of the defaults (``HARKEN_MODELS_THINK="x/*=llm-default"``,
several separated by commas); ``replace_default_models = true`` drops the defaults.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from harken.endpoints import EndpointConfig, check_routes, parse_endpoints
from harken.errors import ConfigError
from harken.phone import DEFAULT_DTMF, PhoneProfile, parse_profiles

ProviderSet = Literal["embedded", "testing"]
ModelKind = Literal["listen", "think", "speak"]
MODEL_KINDS: tuple[ModelKind, ...] = ("listen", "think", "speak")
LOG_LEVELS = ("debug", "info", "warning", "error")

# (pattern, engine) pairs; patterns are ``type/model`` with ``*`` wildcards (fnmatch).
ModelRoutes = tuple[tuple[str, str], ...]

DEFAULT_LISTEN: ModelRoutes = (
    ("deepgram/nova-3", "stt-default"),
    ("deepgram/nova-3-*", "stt-default"),
    ("deepgram/nova-2", "stt-default"),
    ("deepgram/nova-2-*", "stt-default"),
    ("deepgram/nova", "stt-default"),
    ("deepgram/*", "stt-default"),
)
DEFAULT_THINK: ModelRoutes = (
    ("open_ai/gpt-4o-mini", "llm-default"),
    ("open_ai/gpt-4o", "llm-default"),
    ("open_ai/gpt-4", "llm-default"),
    ("open_ai/gpt-4.1*", "llm-default"),
    ("open_ai/gpt-4o*", "llm-default"),
    ("open_ai/gpt-5*", "llm-default"),
    ("open_ai/gpt-3.5*", "llm-default"),
    ("anthropic/*", "llm-default"),
    ("google/*", "llm-default"),
    ("groq/*", "llm-default"),
    ("aws_bedrock/*", "llm-default"),
    ("deepgram/*", "llm-default"),  # Deepgram's own LLMs (think-fast, ...), December 2026
)
DEFAULT_SPEAK: ModelRoutes = (
    ("deepgram/aura-2-thalia-en", "tts-default"),
    ("deepgram/aura-asteria-en", "tts-default"),
    ("deepgram/aura-luna-en", "tts-default"),
    ("deepgram/aura-*", "tts-default"),
    ("harken/piper*", "tts-default"),
    ("harken/espeak*", "tts-espeak"),
)


@dataclass(frozen=True, slots=True)
class ModelMap:
    """Routes from Settings provider names to engine names, most specific first."""

    listen: ModelRoutes = DEFAULT_LISTEN
    think: ModelRoutes = DEFAULT_THINK
    speak: ModelRoutes = DEFAULT_SPEAK

    def routes(self, kind: ModelKind) -> ModelRoutes:
        routes: ModelRoutes = getattr(self, kind)
        return routes


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    api_keys: tuple[str, ...] = ()
    providers: ProviderSet = "embedded"
    strict: bool = False
    log_level: str = "info"
    # session timeouts, seconds
    idle_timeout: float = 30.0
    function_call_timeout: float = 60.0
    max_duration: float = 7200.0
    duration_warning: float = 6900.0
    # limits
    max_sessions: int = 1000
    max_frame_bytes: int = 1 << 20
    hard_frame_bytes: int = 16 << 20  # websockets max_size: above this the library closes 1009
    text_rate: float = 50.0  # text messages per second, sustained
    text_burst: int = 200
    audio_rate_factor: float = 16.0  # x real time of the declared input format ...
    audio_window: float = 5.0  # ... sustained over this many seconds
    # sizes of what a client asks the models to read or say (harken.session.bounds): prompts cut
    # with Warning PROMPT_TOO_LONG (Deepgram's limit for its managed LLMs), contexts keep their
    # newest messages, longer injections are refused, greetings and function results cut
    max_prompt_chars: int = 25_000
    max_context_messages: int = 1_000
    max_context_chars: int = 200_000
    max_message_chars: int = 20_000
    # /metrics names traffic volumes: with api_keys set, true asks it for a key too
    metrics_require_key: bool = False
    shutdown_grace: float = 3.0  # seconds sessions get to flush SERVER_GOING_AWAY
    # SIGTERM drains first: no new sessions (/healthz and handshakes 503); each session is told
    # SERVER_GOING_AWAY (close 1001) once it is at rest, at the latest after drain_timeout s
    drain_timeout: float = 30.0
    # a session whose socket drops without a close waits this long for a reconnect with the
    # same x-deepgram-session-id and credential (harken.server.resume); 0: never
    resume_window: float = 30.0
    # a send to a client that makes no progress for this long (it stopped reading) closes the
    # session and frees its slot and buffers
    write_timeout: float = 10.0
    # functions
    allow_loopback_functions: bool = False
    function_timeout: float = 10.0
    # provider names -> engines, and the operator's OpenAI-compatible model servers
    models: ModelMap = field(default_factory=ModelMap)
    endpoints: tuple[EndpointConfig, ...] = ()
    allow_loopback_endpoints: bool = False  # Settings endpoints may target loopback/private
    endpoint_timeout: float = 10.0  # seconds to a model server's first byte, and between bytes
    endpoint_connect_timeout: float = 3.0
    # the embedded stack (providers = "embedded"): catalog ids of src/harken/engines/catalog.py
    stt_model: str = "whisper-base"  # 0.14 s per turn, 4.2 % WER on real speech (BENCHMARKS.md)
    stt_multilingual_model: str = "whisper-base"  # other languages when stt_model is English-only
    llm_model: str = "qwen2.5-coder-1.5b"
    tts_model: str = "piper-joe"
    fallback_voice: str = "espeak-ng"  # "" disables the espeak-ng fallback voice
    model_dir: str = ""  # "" = $HARKEN_MODEL_DIR, else ./models
    model_threads: int = 2  # threads each model call may use (the machine's cores)
    # turn-taking
    end_of_turn_ms: int = 544  # silence that ends the user's turn
    speculate: bool = True  # start STT and the LLM at the first short pause
    speculate_after_ms: int = 128  # the short pause
    # end of turn: "silence" (end_of_turn_ms of it), or "semantic": at the short pause the
    # end-of-turn model (Smart Turn) and the held reply's LLM are asked whether the user's turn
    # is complete; it ends there when the first says >= eot_threshold and the second
    # >= eot_text_threshold (0: the first alone), else eot_timeout_ms of silence ends it.
    # eager_eot_threshold: speculate only from that Smart Turn score (unset: at every pause).
    # Flux listen settings ask for "semantic" per session and may set the three eot_* values.
    # "auto" (the default): "semantic" when an end-of-turn model is loaded and the default LLM
    # can score (the embedded stack), else "silence" (e.g. the testing providers).
    turn_detection: str = "auto"
    eot_threshold: float = 0.7
    eot_text_threshold: float = 0.3
    eager_eot_threshold: float | None = None
    eot_timeout_ms: int = 1500
    eot_floor_ms: int = 192  # the silence at which the end-of-turn model is asked
    turn_model: str = "smart-turn-v3.2"  # the end-of-turn model (catalog id); "" loads none
    # phone calls (harken.phone): carriers' media streams, and the agent profiles that answer
    twilio_path: str = "/twilio"
    telnyx_path: str = "/telnyx"
    phone_profiles: tuple[PhoneProfile, ...] = ()  # none: one built-in "default" profile
    phone_default_profile: str = "default"
    phone_dtmf_message: str = DEFAULT_DTMF  # the user message keys pressed become ({digit})
    phone_dtmf_timeout_ms: int = 1000  # keys pressed within this of each other are one entry
    # Twilio's voice webhook (POST {twilio_path}/voice, harken.server.twilio_voice): the
    # server's address as callers' carriers reach it, "https://agent.example.com" ("": from the
    # request's Host and X-Forwarded-Proto; set it behind a proxy), and the account's auth token
    # that signs the webhook's requests ("": the webhook is open)
    public_url: str = ""
    twilio_auth_token: str = ""

    @property
    def open_mode(self) -> bool:
        """True when no API keys are configured: every client is accepted."""
        return not self.api_keys


# ------------------------------------------------------------------------------- coercion


def _as_str(key: str, value: object) -> str:
    if isinstance(value, str):
        return value
    raise ConfigError(f"{key}: expected a string, got {value!r}")


def _as_bool(key: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off", ""):
            return False
    raise ConfigError(f"{key}: expected true or false, got {value!r}")


def _as_int(key: str, value: object) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ConfigError(f"{key}: expected an integer, got {value!r}")


def _as_float(key: str, value: object) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if isinstance(value, int | float):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value.strip())
        except ValueError:
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    else:
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if not math.isfinite(result):
        raise ConfigError(f"{key}: expected a finite number, got {value!r}")
    return result


def _as_keys(key: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",")]
    elif isinstance(value, list | tuple):
        items = [_as_str(f"{key}[{i}]", item).strip() for i, item in enumerate(value)]
    else:
        raise ConfigError(f"{key}: expected a list of strings, got {value!r}")
    return tuple(item for item in items if item)


_COERCE: dict[str, Callable[[str, object], object]] = {
    "host": _as_str,
    "port": _as_int,
    "api_keys": _as_keys,
    "providers": _as_str,
    "strict": _as_bool,
    "log_level": _as_str,
    "idle_timeout": _as_float,
    "function_call_timeout": _as_float,
    "max_duration": _as_float,
    "duration_warning": _as_float,
    "max_sessions": _as_int,
    "max_frame_bytes": _as_int,
    "hard_frame_bytes": _as_int,
    "text_rate": _as_float,
    "text_burst": _as_int,
    "audio_rate_factor": _as_float,
    "audio_window": _as_float,
    "shutdown_grace": _as_float,
    "max_prompt_chars": _as_int,
    "max_context_messages": _as_int,
    "max_context_chars": _as_int,
    "max_message_chars": _as_int,
    "metrics_require_key": _as_bool,
    "drain_timeout": _as_float,
    "resume_window": _as_float,
    "write_timeout": _as_float,
    "allow_loopback_functions": _as_bool,
    "function_timeout": _as_float,
    "allow_loopback_endpoints": _as_bool,
    "endpoint_timeout": _as_float,
    "endpoint_connect_timeout": _as_float,
    "stt_model": _as_str,
    "stt_multilingual_model": _as_str,
    "llm_model": _as_str,
    "tts_model": _as_str,
    "fallback_voice": _as_str,
    "model_dir": _as_str,
    "model_threads": _as_int,
    "end_of_turn_ms": _as_int,
    "speculate": _as_bool,
    "speculate_after_ms": _as_int,
    "turn_detection": _as_str,
    "eot_threshold": _as_float,
    "eot_text_threshold": _as_float,
    "eager_eot_threshold": _as_float,
    "eot_timeout_ms": _as_int,
    "eot_floor_ms": _as_int,
    "turn_model": _as_str,
    "twilio_path": _as_str,
    "telnyx_path": _as_str,
    "phone_profiles": parse_profiles,
    "phone_default_profile": _as_str,
    "phone_dtmf_message": _as_str,
    "phone_dtmf_timeout_ms": _as_int,
    "public_url": _as_str,
    "twilio_auth_token": _as_str,
}
_POSITIVE = (
    "idle_timeout",
    "function_call_timeout",
    "max_duration",
    "duration_warning",
    "max_sessions",
    "max_frame_bytes",
    "hard_frame_bytes",
    "text_rate",
    "text_burst",
    "audio_rate_factor",
    "audio_window",
    "function_timeout",
    "endpoint_timeout",
    "endpoint_connect_timeout",
    "model_threads",
    "end_of_turn_ms",
    "speculate_after_ms",
    "eot_timeout_ms",
    "eot_floor_ms",
    "phone_dtmf_timeout_ms",
    "write_timeout",
    "max_prompt_chars",
    "max_context_messages",
    "max_context_chars",
    "max_message_chars",
)


def _parse_routes(key: str, value: object) -> ModelRoutes:
    """A model-map layer: a TOML table ``{pattern: engine}`` or ``"pat=engine,pat=engine"``."""
    pairs: list[tuple[str, str]] = []
    if isinstance(value, Mapping):
        for pattern, engine in value.items():
            pairs.append((_as_str(key, pattern), _as_str(f"{key}.{pattern}", engine)))
    elif isinstance(value, str):
        for item in filter(None, (part.strip() for part in value.split(","))):
            pattern, sep, engine = item.partition("=")
            if not sep or not pattern.strip() or not engine.strip():
                raise ConfigError(f"{key}: expected 'pattern=engine' entries, got {item!r}")
            pairs.append((pattern.strip(), engine.strip()))
    else:
        raise ConfigError(f"{key}: expected a table of pattern = engine, got {value!r}")
    for pattern, engine in pairs:
        if "/" not in pattern and pattern != "*":
            raise ConfigError(f"{key}: pattern {pattern!r} must look like 'type/model'")
        if not engine:
            raise ConfigError(f"{key}.{pattern}: engine name is empty")
    return tuple(pairs)


# ------------------------------------------------------------------------------- layers


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file; a missing or malformed file is a ConfigError."""
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc


def from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """Pick the ``HARKEN_*`` variables that name config keys (others are ignored)."""
    layer: dict[str, Any] = {}
    for name in _COERCE:
        value = env.get(f"HARKEN_{name.upper()}")
        if value is not None:
            layer[name] = value
    models = {
        kind: env[f"HARKEN_MODELS_{kind.upper()}"]
        for kind in MODEL_KINDS
        if f"HARKEN_MODELS_{kind.upper()}" in env
    }
    if models:
        layer["models"] = models
    if "HARKEN_REPLACE_DEFAULT_MODELS" in env:
        layer["replace_default_models"] = env["HARKEN_REPLACE_DEFAULT_MODELS"]
    if "HARKEN_ENDPOINTS" in env:
        layer["endpoints"] = env["HARKEN_ENDPOINTS"]
    return layer


def _apply_layer(
    values: dict[str, Any],
    routes: dict[str, ModelRoutes],
    layer: Mapping[str, Any],
    source: str,
    variables: Mapping[str, str],
) -> None:
    try:
        for key, raw in layer.items():
            if key == "endpoints":  # each layer's tables join those of the layers below
                name = "HARKEN_ENDPOINTS" if source == "environment" else key
                added = parse_endpoints(name, raw, variables)
                kept = [
                    e for e in values.get("endpoints", ()) if e.name not in {a.name for a in added}
                ]
                values["endpoints"] = (*kept, *added)
                continue
            _apply_key(values, routes, key, raw, source == "environment")
    except ConfigError as exc:
        raise ConfigError(f"{exc} (from {source})") from None


def _apply_key(
    values: dict[str, Any], routes: dict[str, ModelRoutes], key: str, raw: object, env: bool
) -> None:
    name = f"HARKEN_{key.upper()}" if env else key
    if key == "models":
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{name}: expected a table with listen/think/speak")
        for kind, table in raw.items():
            where = f"HARKEN_MODELS_{kind.upper()}" if env else f"models.{kind}"
            if kind not in MODEL_KINDS:
                raise ConfigError(f"{where}: unknown model kind (use listen, think or speak)")
            routes[kind] = _parse_routes(where, table) + routes[kind]
    elif key == "replace_default_models":
        if _as_bool(name, raw):
            for kind in MODEL_KINDS:
                routes[kind] = tuple(r for r in routes[kind] if r not in _defaults(kind))
    elif key in _COERCE:
        values[key] = _COERCE[key](name, raw)
    else:
        raise ConfigError(f"{name}: unknown config key")


def _defaults(kind: ModelKind) -> ModelRoutes:
    return ModelMap().routes(kind)


def _validate(config: ServerConfig) -> ServerConfig:
    if config.providers not in ("embedded", "testing"):
        raise ConfigError(f"providers: expected 'embedded' or 'testing', got {config.providers!r}")
    if not 0 <= config.port <= 65535:
        raise ConfigError(f"port: expected 0-65535, got {config.port}")
    if config.log_level.lower() not in LOG_LEVELS:
        raise ConfigError(f"log_level: expected one of {', '.join(LOG_LEVELS)}")
    for key in _POSITIVE:
        if getattr(config, key) <= 0:
            raise ConfigError(f"{key}: must be greater than 0, got {getattr(config, key)}")
    if config.duration_warning >= config.max_duration:
        raise ConfigError("duration_warning: must be smaller than max_duration")
    if config.hard_frame_bytes < config.max_frame_bytes:
        raise ConfigError("hard_frame_bytes: must be at least max_frame_bytes")
    if config.text_burst < 1:
        raise ConfigError("text_burst: must be at least 1")
    _validate_models(config)
    check_routes({k: config.models.routes(k) for k in MODEL_KINDS}, config.endpoints)
    if config.speculate_after_ms >= config.end_of_turn_ms:
        raise ConfigError("speculate_after_ms: must be shorter than end_of_turn_ms")
    if config.shutdown_grace < 0:
        raise ConfigError("shutdown_grace: must not be negative")
    if config.drain_timeout < 0:
        raise ConfigError("drain_timeout: must not be negative")
    if config.resume_window < 0:
        raise ConfigError("resume_window: must not be negative")
    if config.turn_detection == "semantic" and not config.turn_model:
        raise ConfigError("turn_detection: 'semantic' needs a turn_model")
    if config.turn_detection not in ("auto", "silence", "semantic"):
        raise ConfigError(
            f"turn_detection: 'auto', 'silence' or 'semantic', got {config.turn_detection!r}"
        )
    for name in ("eot_threshold", "eot_text_threshold", "eager_eot_threshold"):
        value = getattr(config, name)
        if value is not None and not 0 <= value <= 1:
            raise ConfigError(f"{name}: must be in 0..1, got {value}")
    if config.speculate_after_ms >= config.eot_timeout_ms:
        raise ConfigError("speculate_after_ms: must be shorter than eot_timeout_ms")
    if config.eot_floor_ms >= config.eot_timeout_ms:
        raise ConfigError("eot_floor_ms: must be shorter than eot_timeout_ms")
    for key in ("twilio_path", "telnyx_path"):
        path = getattr(config, key)
        if not path.startswith("/") or path in ("/", "/healthz", "/metrics", "/agent"):
            raise ConfigError(f"{key}: expected a free path such as /twilio, got {path!r}")
    if "{digit}" not in config.phone_dtmf_message:
        raise ConfigError("phone_dtmf_message: must contain {digit}")
    _validate_public_url(config.public_url)
    return config


def _validate_public_url(url: str) -> None:
    """``public_url``: empty, or ``http(s)://host[:port]`` with no path, query or fragment."""
    if not url:
        return
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise ConfigError(f"public_url: {exc}: {url!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"public_url: expected http(s)://host[:port], got {url!r}")
    if url.rstrip("/") != f"{parts.scheme}://{parts.netloc}" or "@" in parts.netloc:
        raise ConfigError(
            f"public_url: expected only a scheme and a host (no path, query or user), got {url!r}"
        )


_MODEL_KINDS = {
    "stt_model": "stt",
    "stt_multilingual_model": "stt",
    "llm_model": "llm",
    "tts_model": "tts",
    "fallback_voice": "tts",
    "turn_model": "turn",
}
_OPTIONAL_MODELS = frozenset({"fallback_voice", "stt_multilingual_model", "turn_model"})


def _validate_models(config: ServerConfig) -> None:
    from harken.engines.catalog import CATALOG

    for key, kind in _MODEL_KINDS.items():
        value = getattr(config, key)
        if key in _OPTIONAL_MODELS and not value:
            continue
        spec = CATALOG.get(value)
        if spec is None or spec.kind != kind:
            choices = ", ".join(sorted(i for i, s in CATALOG.items() if s.kind == kind))
            raise ConfigError(f"{key}: unknown {kind} model {value!r}; choose one of: {choices}")


def load_config(
    file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ServerConfig:
    """Build the configuration: defaults < TOML ``file`` < ``HARKEN_*`` in ``env`` < overrides.

    ``overrides`` holds command-line values (``None`` values are skipped). Raises ConfigError.
    """
    values: dict[str, Any] = {}
    routes: dict[str, ModelRoutes] = {kind: _defaults(kind) for kind in MODEL_KINDS}
    variables = env or {}
    if file is not None:
        _apply_layer(values, routes, read_toml(file), str(file), variables)
    if env is not None:
        _apply_layer(values, routes, from_env(env), "environment", variables)
    if overrides:
        cli = {k: v for k, v in overrides.items() if v is not None}
        _apply_layer(values, routes, cli, "command line", variables)
    values["models"] = ModelMap(**routes)
    if "log_level" in values:
        values["log_level"] = values["log_level"].lower()
    return _validate(ServerConfig(**values))


def replace(config: ServerConfig, **changes: Any) -> ServerConfig:
    """A validated copy of ``config`` with ``changes`` (handy in tests)."""
    return _validate(dataclasses.replace(config, **changes))
