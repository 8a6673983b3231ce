"""Operator-named model endpoints: ``[endpoints.NAME]`` tables of the server config.

Each names an OpenAI-compatible server that an engine name of the model map can route to::

    [endpoints.gpu-llm]
    kind = "llm"                       # llm (chat completions), stt (transcriptions), tts (speech)
    url = "http://10.0.0.5:8000/v1/chat/completions"   # the full URL, as Deepgram documents it
    model = "Qwen/Qwen2.5-7B-Instruct" # sent as `model`; empty: the model the client asked for
    preset = "vllm"                    # vendor differences (harken.providers.remote.PRESETS)
    api_key_env = "GPU_LLM_KEY"        # `Authorization: Bearer $GPU_LLM_KEY`; or api_key = "..."
    headers = { "X-Team" = "voice" }
    timeout = 10                       # seconds to the first byte, and between bytes
    connect_timeout = 3
    slots = 4                          # llm: the server's parallel slots (llama-server
                                       # --parallel 4): a held reply's guess never takes the
                                       # last free one, which waits for a committed turn

    [models.think]
    "open_ai/*" = "gpu-llm"

``HARKEN_ENDPOINTS`` may hold the same tables as JSON (``{"gpu-llm": {"kind": "llm", ...}}``).
Operator endpoints are trusted as configured (no SSRF guard: they may be on loopback or a private
network); endpoints that *clients* name in Settings are not (``allow_loopback_endpoints``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import httpx

from harken.errors import ConfigError

EndpointKind = Literal["llm", "stt", "tts"]
KIND_OF_MODELS: dict[str, EndpointKind] = {"think": "llm", "listen": "stt", "speak": "tts"}
BUILT_IN_ENGINES = frozenset(
    {"stt-default", "stt-multilingual", "llm-default", "tts-default", "tts-espeak"}
)
_STRINGS = ("url", "model", "preset", "voice", "response_format", "api_key", "api_key_env")
_NUMBERS = ("timeout", "connect_timeout")
_INTEGERS = ("sample_rate", "max_tokens", "slots")
_KNOWN = frozenset({"kind", "headers", "prime", "language", *_STRINGS, *_NUMBERS, *_INTEGERS})


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    """One OpenAI-compatible model server. ``0``/``""`` fields take the preset's default."""

    name: str
    kind: EndpointKind
    url: str
    model: str = ""
    preset: str = "openai"
    headers: tuple[tuple[str, str], ...] = ()
    api_key: str = ""
    voice: str = ""  # tts
    response_format: str = ""  # tts: pcm | wav; stt: json | verbose_json
    sample_rate: int = 0  # tts: the rate of its raw pcm
    language: str = ""  # stt: sent when the client names none
    max_tokens: int = 0  # llm: 0 sends none
    prime: bool | None = None  # llm: warm the server's prompt cache; None: the preset's default
    slots: int = 0  # llm: the server's parallel slots (llama-server --parallel); 0: unknown
    timeout: float = 0.0  # 0: the server's endpoint_timeout
    connect_timeout: float = 0.0  # 0: the server's endpoint_connect_timeout

    def all_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.api_key and not any(k.lower() == "authorization" for k in headers):
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers


def parse_endpoints(key: str, value: object, env: Mapping[str, str]) -> tuple[EndpointConfig, ...]:
    """The ``endpoints`` layer: a TOML table of tables, or JSON text of the same shape."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ConfigError(f"{key}: expected a JSON object of endpoint tables ({exc})") from None
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key}: expected a table of [endpoints.NAME] tables")
    return tuple(_endpoint(f"{key}.{name}", str(name), raw, env) for name, raw in value.items())


def _endpoint(where: str, name: str, raw: object, env: Mapping[str, str]) -> EndpointConfig:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a table")
    if not name or name in BUILT_IN_ENGINES:
        raise ConfigError(f"{where}: the name {name!r} is taken by a built-in engine")
    unknown = sorted(set(raw) - _KNOWN)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}")
    kind = raw.get("kind")
    if kind not in ("llm", "stt", "tts"):
        raise ConfigError(f"{where}.kind: expected 'llm', 'stt' or 'tts', got {kind!r}")
    values: dict[str, object] = {"name": name, "kind": kind}
    for field in _STRINGS:
        if field in raw:
            if not isinstance(raw[field], str):
                raise ConfigError(f"{where}.{field}: expected a string, got {raw[field]!r}")
            values[field] = raw[field]
    for field in (*_NUMBERS, *_INTEGERS):
        if field in raw:
            values[field] = _positive(f"{where}.{field}", raw[field], field in _INTEGERS)
    if "prime" in raw:
        if not isinstance(raw["prime"], bool):
            raise ConfigError(f"{where}.prime: expected true or false")
        values["prime"] = raw["prime"]
    values["headers"] = _headers(f"{where}.headers", raw.get("headers", {}))
    secret_env = values.pop("api_key_env", "")
    if secret_env:
        if not isinstance(secret_env, str) or secret_env not in env:
            raise ConfigError(f"{where}.api_key_env: the variable {secret_env} is not set")
        values["api_key"] = env[secret_env]
    config = EndpointConfig(**values)  # type: ignore[arg-type]
    _check_url(f"{where}.url", config.url)
    _check_preset(f"{where}.preset", config)
    return config


def _positive(where: str, value: object, integer: bool) -> float | int:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(float(value)) or float(value) <= 0:  # type: ignore[arg-type]
        raise ConfigError(f"{where}: expected a number greater than 0, got {value!r}")
    if integer:
        if not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    return float(value)  # type: ignore[arg-type]


def _headers(where: str, raw: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
    ):
        raise ConfigError(f"{where}: expected a table of string values")
    return tuple(raw.items())


def _check_url(where: str, url: str) -> None:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(f"{where}: expected an http(s) URL, got {url!r}")


def _check_preset(where: str, config: EndpointConfig) -> None:
    from harken.providers.remote import PRESETS

    if config.preset not in PRESETS:
        raise ConfigError(
            f"{where}: unknown preset {config.preset!r}; choose one of: {', '.join(PRESETS)}"
        )
    if config.response_format:
        allowed = ("pcm", "wav") if config.kind == "tts" else ("json", "verbose_json", "text")
        if config.kind == "llm" or config.response_format not in allowed:
            raise ConfigError(
                f"{where.rsplit('.', 1)[0]}.response_format: {config.response_format!r} "
                f"does not fit kind {config.kind!r}"
            )


def check_routes(
    routes: Mapping[str, tuple[tuple[str, str], ...]], endpoints: tuple[EndpointConfig, ...]
) -> None:
    """Every route to a named endpoint must be of the matching kind."""
    by_name = {e.name: e for e in endpoints}
    if len(by_name) != len(endpoints):
        raise ConfigError("endpoints: two endpoints share a name")
    for models, table in routes.items():
        for pattern, engine in table:
            endpoint = by_name.get(engine)
            if endpoint is not None and endpoint.kind != KIND_OF_MODELS[models]:
                raise ConfigError(
                    f"models.{models}.{pattern}: endpoint {engine!r} is of kind "
                    f"{endpoint.kind!r}, not {KIND_OF_MODELS[models]!r}"
                )
