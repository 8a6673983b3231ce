"""The Settings tree from and to wire JSON, for both generations, with validation.

Parsing is lenient: unknown keys are collected as dotted paths (strict mode rejects them).
Keys the official SDKs always emit are known: function-level ``url``/``method``/``headers``
(blank in the 4.x ``Function``; the server-side endpoint in early access), ``endpoint.method``
under speak, ``experimental``, ``mip_opt_out``, ``tags`` and ``flags``.

Numbers: the provider options harken knows to be numbers (``temperature``, ``speed``,
``eot_threshold``, ``eager_eot_threshold``) must be JSON numbers and are kept as ``float``; an
integer is accepted wherever a float is expected (``deepgram-sdk`` 7.x sends ``1.0`` as ``1``).

Function-level ``url`` (the early-access shape): a non-blank one on a function without
``endpoint`` becomes its endpoint, with ``method`` and ``headers`` (``{name: value}`` or
``[{key, value}]``). On GA that is a generous reading of an EA habit; in strict mode it is an
unknown key, as on Deepgram's server. Next to an ``endpoint``, non-blank ``url``/``method``/
``headers`` have no effect and are reported in ``ignored``.

The early-access form carries less than GA: :func:`settings_to_wire` for EA writes only the
first think and speak entry and drops what EA cannot say (language, greeting, tags, flags,
experimental, endpoints of think/speak, function-call history, listen/speak provider type).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from harken.errors import RemoteProtocolError
from harken.protocol import codes
from harken.protocol._reader import Context, Node, invalid, json_kind, quote
from harken.protocol.messages import Generation, Settings
from harken.protocol.settings import (
    AgentConfig,
    AudioConfig,
    AudioInput,
    AudioOutput,
    ContextConfig,
    Endpoint,
    Flags,
    FunctionDef,
    HistoryFunctionCall,
    HistoryItem,
    ListenConfig,
    Provider,
    SpeakConfig,
    ThinkConfig,
)

ENCODINGS = ("linear16", "mulaw", "alaw")
CONTAINERS = ("none", "wav")
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8000, 48000
HTTP_METHODS = ("get", "post", "put", "patch", "delete")
ROLES = ("user", "assistant")
FUNCTION_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
AGENT_ID_DESCRIPTION = (
    "Stored agent configurations are not supported by this server; send the agent object inline."
)

_GA_TOP = ("type", "experimental", "tags", "audio", "agent", "mip_opt_out", "flags")
_EA_TOP = ("type", "audio", "agent", "context")
_GA_AGENT = ("language", "language_code", "listen", "think", "speak", "greeting", "context")
_THINK = ("provider", "endpoint", "functions", "prompt", "context_length")
_FUNCTION = ("name", "description", "parameters", "endpoint", "url", "method", "headers")
_ENDPOINT = ("url", "method", "headers")
_CONTEXT = ("messages", "replay")
_HISTORY = ("type", "role", "content", "function_calls")
_HISTORY_CALL = ("id", "name", "client_side", "arguments", "response")

FLOAT_OPTIONS = ("temperature", "speed", "eot_threshold", "eager_eot_threshold")

_T = TypeVar("_T")
_W = TypeVar("_W")


def settings_from_wire(
    obj: dict[str, Any], generation: Generation, *, strict: bool = False
) -> tuple[Settings, tuple[str, ...]]:
    """Parse and validate the JSON object of a Settings message (``type`` is not checked).

    Returns the settings and the dotted paths of the unknown keys that were ignored.
    """
    ctx = Context(strict=strict)
    return read_settings(ctx, obj, generation), tuple(ctx.ignored)


def read_settings(ctx: Context, obj: object, generation: Generation) -> Settings:
    if isinstance(obj, dict) and isinstance(obj.get("agent"), str):
        raise RemoteProtocolError(codes.AGENT_ID_NOT_SUPPORTED, AGENT_ID_DESCRIPTION)
    if generation is Generation.EA:
        node = ctx.node(obj, "", _EA_TOP)
        agent = node.opt_obj("agent", ("listen", "think", "speak"))
        context = _context(node.opt_obj("context", _CONTEXT))
        return Settings(audio=_audio(node), agent=_ea_agent(agent, context))
    node = ctx.node(obj, "", _GA_TOP)
    flags = node.opt_obj("flags", ("history",))
    return Settings(
        audio=_audio(node),
        agent=_ga_agent(node.opt_obj("agent", _GA_AGENT)),
        experimental=node.opt_bool("experimental", False),
        tags=node.opt_str_list("tags") or (),
        flags=Flags() if flags is None else Flags(history=flags.opt_bool("history", True)),
        mip_opt_out=node.opt_bool("mip_opt_out", False),
    )


# ----------------------------------------------------------------------------------- audio


def _audio(top: Node) -> AudioConfig:
    node = top.opt_obj("audio", ("input", "output"))
    if node is None:
        return AudioConfig()
    inp = node.opt_obj("input", ("encoding", "sample_rate"))
    out = node.opt_obj("output", ("encoding", "sample_rate", "bitrate", "container"))
    audio_in = AudioInput() if inp is None else AudioInput(*_format(inp))
    if out is None:
        return AudioConfig(input=audio_in)
    container = out.opt_str("container") or "none"
    if container not in CONTAINERS:
        invalid(out.at("container"), f"{quote(container)} is not supported; use none or wav")
    output = AudioOutput(*_format(out), bitrate=out.opt_int("bitrate"), container=container)
    return AudioConfig(input=audio_in, output=output)


def _format(node: Node) -> tuple[str, int]:
    """``(encoding, sample_rate)``; the rate defaults to 24000 (linear16) or 8000 (G.711)."""
    encoding = node.opt_str("encoding") or "linear16"
    if encoding not in ENCODINGS:
        invalid(
            node.at("encoding"), f"{quote(encoding)} is not supported; use linear16, mulaw or alaw"
        )
    rate = node.data.get("sample_rate")
    if rate is None:
        return encoding, 24000 if encoding == "linear16" else 8000
    if isinstance(rate, bool) or not isinstance(rate, int):
        invalid(node.at("sample_rate"), f"must be an integer number of Hz, got {json_kind(rate)}")
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        invalid(node.at("sample_rate"), f"{rate} is outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE}")
    return encoding, rate


# ----------------------------------------------------------------------------------- agent


def _ga_agent(node: Node | None) -> AgentConfig:
    if node is None:
        return AgentConfig()
    language = node.opt_alias_str("language", "language_code")
    listen = node.opt_obj("listen", ("provider",))
    return AgentConfig(
        language="en" if language is None else language,
        listen=None if listen is None else read_listen(listen),
        think=read_fallbacks(node, "think", read_think),
        speak=read_fallbacks(node, "speak", read_speak),
        greeting=node.opt_str("greeting"),
        context=_context(node.opt_obj("context", _CONTEXT)),
    )


def _ea_agent(node: Node | None, context: ContextConfig | None) -> AgentConfig:
    if node is None:
        return AgentConfig(context=context)
    listen = node.opt_obj("listen", ("model", "keyterms"))
    think = node.opt_obj("think", ("provider", "model", "instructions", "functions"))
    speak = node.opt_obj("speak", ("model", "provider", "voice_id"))
    return AgentConfig(
        listen=None if listen is None else _ea_listen(listen),
        think=() if think is None else (_ea_think(think),),
        speak=() if speak is None else (_ea_speak(speak),),
        context=context,
    )


def read_fallbacks(
    node: Node, key: str, read: Callable[[Context, object, str], _T]
) -> tuple[_T, ...]:
    """``think``/``speak``: one object or a non-empty array (primary, then fallbacks)."""
    items = node.one_or_many(key)
    if items == []:
        invalid(node.at(key), "must not be an empty array; give at least one entry")
    return tuple(read(node.ctx, value, path) for path, value in items or ())


def read_listen(node: Node) -> ListenConfig:
    return ListenConfig(_provider(node.opt_obj("provider", None)))


def read_think(ctx: Context, value: object, path: str) -> ThinkConfig:
    node = ctx.node(value, path, _THINK)
    endpoint = node.opt_obj("endpoint", _ENDPOINT)
    return ThinkConfig(
        provider=_think_provider(node.opt_obj("provider", None), None),
        prompt=node.opt_str("prompt") or "",
        functions=_functions(node, Generation.GA),
        endpoint=None if endpoint is None else _endpoint(endpoint),
        context_length=_context_length(node),
    )


def read_speak(ctx: Context, value: object, path: str) -> SpeakConfig:
    node = ctx.node(value, path, ("provider", "endpoint"))
    endpoint = node.opt_obj("endpoint", _ENDPOINT)
    return SpeakConfig(
        provider=_provider(node.opt_obj("provider", None)),
        endpoint=None if endpoint is None else _endpoint(endpoint),
    )


def _ea_listen(node: Node) -> ListenConfig:
    keyterms = node.opt_str_list("keyterms")
    options = {} if keyterms is None else {"keyterms": list(keyterms)}
    return ListenConfig(Provider("deepgram", node.opt_str("model") or None, options))


def _ea_think(node: Node) -> ThinkConfig:
    return ThinkConfig(
        provider=_think_provider(node.opt_obj("provider", None), node.opt_str("model")),
        prompt=node.opt_str("instructions") or "",
        functions=_functions(node, Generation.EA),
    )


def _ea_speak(node: Node) -> SpeakConfig:
    voice = node.opt_str("voice_id")
    options = {} if voice is None else {"voice_id": voice}
    provider = node.opt_str("provider") or "deepgram"
    return SpeakConfig(Provider(provider, node.opt_str("model") or None, options))


def _provider(node: Node | None, *, model: str | None = None) -> Provider:
    """A free-form provider object; ``model`` is the early-access model kept beside it."""
    if node is None:
        return Provider("", model or None)
    options = {k: v for k, v in node.data.items() if k not in ("type", "model", "language_code")}
    language = node.opt_alias_str("language", "language_code")
    if language is not None:
        options["language"] = language
    if node.has("keyterms"):
        options["keyterms"] = list(node.opt_str_list("keyterms") or ())
    numbers = {key: node.req_number(key) for key in FLOAT_OPTIONS if node.has(key)}
    _check_thresholds(node, numbers)
    options.update(numbers)
    return Provider(node.opt_str("type") or "", node.opt_str("model") or model or None, options)


def _check_thresholds(node: Node, numbers: dict[str, float]) -> None:
    """End-of-turn confidences (Flux): each in 0..1 (1.0 leaves the end of turn to the client's
    ``ForceEndTurn``), and eager end of turn no later than end of turn."""
    for key in ("eot_threshold", "eager_eot_threshold"):
        if not 0 <= numbers.get(key, 0) <= 1:
            invalid(node.at(key), f"{numbers[key]:g} is outside 0..1")
    eager, eot = numbers.get("eager_eot_threshold"), numbers.get("eot_threshold")
    if eager is not None and eot is not None and eager > eot:
        invalid(node.at("eager_eot_threshold"), f"{eager:g} is above eot_threshold {eot:g}")


def _think_provider(node: Node | None, model: str | None) -> Provider:
    provider = _provider(node, model=model)
    temperature = provider.options.get("temperature")
    if node is not None and temperature is not None and not 0 <= temperature <= 2:
        invalid(node.at("temperature"), f"{temperature:g} is outside 0..2")
    return provider


def _context_length(node: Node) -> int | Literal["max"] | None:
    value = node.data.get("context_length")
    if value is None or value == "max":
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 2:
        invalid(
            node.at("context_length"), f'must be "max" or an integer >= 2, got {json_kind(value)}'
        )
    return value


# ----------------------------------------------------------------------------------- endpoints


def _endpoint(node: Node) -> Endpoint:
    url, method = node.req_str("url"), node.opt_str("method") or ""
    return _make_endpoint(node, url, method, _headers(node))


def _make_endpoint(node: Node, url: str, method: str, headers: dict[str, str]) -> Endpoint:
    """Validate; ``node`` holds ``url``/``method`` (an endpoint, or an early-access function)."""
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        parts = urlsplit("")
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        invalid(node.at("url"), f"must be an http(s) URL, got {quote(url)}")
    method = method.strip().lower() or "post"
    if method not in HTTP_METHODS:
        invalid(node.at("method"), f"{quote(method)} is not one of {', '.join(HTTP_METHODS)}")
    return Endpoint(url, method, headers)


def _headers(node: Node) -> dict[str, str]:
    """``headers`` as ``{name: value}`` or the early-access ``[{key, value}]``."""
    value = node.data.get("headers")
    if isinstance(value, list):
        path = node.at("headers")
        items = [node.ctx.node(v, f"{path}[{i}]", ("key", "value")) for i, v in enumerate(value)]
        return {item.req_str("key"): item.req_str("value") for item in items}
    headers = node.opt_obj("headers", None)
    return {} if headers is None else {name: headers.req_str(name) for name in headers.data}


# ----------------------------------------------------------------------------------- functions


def _functions(node: Node, generation: Generation) -> tuple[FunctionDef, ...]:
    functions: list[FunctionDef] = []
    for path, value in node.opt_list("functions") or ():
        function = _function(node.ctx.node(value, path, _FUNCTION), generation)
        if any(f.name == function.name for f in functions):
            invalid(
                f"{path}.name", f"{quote(function.name)} is defined twice; names must be unique"
            )
        functions.append(function)
    return tuple(functions)


def _function(node: Node, generation: Generation) -> FunctionDef:
    name = node.req_str("name")
    if not FUNCTION_NAME.fullmatch(name):
        invalid(node.at("name"), f"{quote(name)} must match ^[a-zA-Z0-9_-]{{1,64}}$")
    return FunctionDef(
        name=name,
        description=node.opt_str("description") or "",
        parameters=_parameters(node),
        endpoint=_function_endpoint(node, generation),
    )


def _parameters(node: Node) -> dict[str, Any]:
    schema = node.opt_obj("parameters", None)
    if schema is None:
        return {}
    data = schema.data
    if data and data.get("type") != "object":
        invalid(schema.path, 'must be a JSON Schema with "type": "object"')
    if not isinstance(data.get("properties", {}), dict):
        invalid(schema.at("properties"), "must be an object mapping parameter names to schemas")
    required = data.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        invalid(schema.at("required"), "must be an array of parameter names")
    return data


def _function_endpoint(node: Node, generation: Generation) -> Endpoint | None:
    """``endpoint``, else a non-blank function-level ``url`` (see the module docstring)."""
    url = (node.opt_str("url") or "").strip()
    method = (node.opt_str("method") or "").strip()
    headers = _headers(node)
    explicit = node.opt_obj("endpoint", _ENDPOINT)
    if explicit is None and url and not (node.ctx.strict and generation is Generation.GA):
        return _make_endpoint(node, url, method, headers)
    for key, value in (("url", url), ("method", method), ("headers", headers)):
        if value:
            node.ctx.unknown(node.at(key))
    return None if explicit is None else _endpoint(explicit)


# ----------------------------------------------------------------------------------- context


def _context(node: Node | None) -> ContextConfig | None:
    if node is None:
        return None
    items = node.opt_list("messages") or ()
    return ContextConfig(
        messages=tuple(_history_item(node.ctx, value, path) for path, value in items),
        replay=node.opt_bool("replay", False),
    )


def _history_item(ctx: Context, value: object, path: str) -> HistoryItem:
    if isinstance(value, list) and len(value) == 2:  # 3.x Context(messages=[(role, content)])
        value = {"role": value[0], "content": value[1]}
    node = ctx.node(value, path, _HISTORY)
    node.opt_enum("type", ("History",))
    calls = node.opt_list("function_calls")
    if calls is None:
        return HistoryItem(role=node.req_enum("role", ROLES), content=node.req_str("content"))
    return HistoryItem(
        role=node.opt_enum("role", ROLES),
        content=node.opt_str("content"),
        function_calls=tuple(read_history_call(ctx.node(v, p, _HISTORY_CALL)) for p, v in calls),
    )


def read_history_call(node: Node) -> HistoryFunctionCall:
    return HistoryFunctionCall(
        id=node.req_str("id"),
        name=node.req_str("name"),
        client_side=node.req_bool("client_side"),
        arguments=node.req_str("arguments"),
        response=node.req_str("response"),
    )


# ----------------------------------------------------------------------------------- to wire


def settings_to_wire(settings: Settings, generation: Generation) -> dict[str, Any]:
    """The JSON object of a Settings message (``type`` included) for ``generation``."""
    if generation is Generation.EA:
        return _ea_settings_wire(settings)
    out: dict[str, Any] = {"type": "Settings", "experimental": settings.experimental}
    if settings.tags:
        out["tags"] = list(settings.tags)
    out["audio"] = _audio_wire(settings.audio)
    out["agent"] = _ga_agent_wire(settings.agent)
    if settings.flags != Flags():
        out["flags"] = {"history": settings.flags.history}
    out["mip_opt_out"] = settings.mip_opt_out
    return out


def _audio_wire(audio: AudioConfig) -> dict[str, Any]:
    inp, out = audio.input, audio.output
    output: dict[str, Any] = {"encoding": out.encoding, "sample_rate": out.sample_rate}
    if out.bitrate is not None:
        output["bitrate"] = out.bitrate
    output["container"] = out.container
    return {"input": {"encoding": inp.encoding, "sample_rate": inp.sample_rate}, "output": output}


def _ga_agent_wire(agent: AgentConfig) -> dict[str, Any]:
    out: dict[str, Any] = {"language": agent.language}
    if agent.listen is not None:
        out["listen"] = listen_to_wire(agent.listen)
    if agent.think:
        out["think"] = fallbacks_to_wire(agent.think, think_to_wire)
    if agent.speak:
        out["speak"] = fallbacks_to_wire(agent.speak, speak_to_wire)
    if agent.greeting is not None:
        out["greeting"] = agent.greeting
    if agent.context is not None:
        out["context"] = _context_wire(agent.context)
    return out


def fallbacks_to_wire(items: Sequence[_T], write: Callable[[_T], _W]) -> _W | list[_W]:
    """One entry as an object (what every server accepts), several as an array."""
    wire = [write(item) for item in items]
    return wire[0] if len(wire) == 1 else wire


def provider_to_wire(provider: Provider) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if provider.type:
        out["type"] = provider.type
    if provider.model is not None:
        out["model"] = provider.model
    out.update(provider.options)
    return out


def listen_to_wire(listen: ListenConfig) -> dict[str, Any]:
    return {"provider": provider_to_wire(listen.provider)}


def think_to_wire(think: ThinkConfig) -> dict[str, Any]:
    out: dict[str, Any] = {"provider": provider_to_wire(think.provider)}
    if think.endpoint is not None:
        out["endpoint"] = _endpoint_wire(think.endpoint)
    if think.functions:
        out["functions"] = [_function_wire(f) for f in think.functions]
    if think.prompt:
        out["prompt"] = think.prompt
    if think.context_length is not None:
        out["context_length"] = think.context_length
    return out


def speak_to_wire(speak: SpeakConfig) -> dict[str, Any]:
    out: dict[str, Any] = {"provider": provider_to_wire(speak.provider)}
    if speak.endpoint is not None:
        out["endpoint"] = _endpoint_wire(speak.endpoint)
    return out


def _endpoint_wire(endpoint: Endpoint) -> dict[str, Any]:
    out: dict[str, Any] = {"url": endpoint.url, "method": endpoint.method}
    if endpoint.headers:
        out["headers"] = dict(endpoint.headers)
    return out


def _function_wire(function: FunctionDef) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": function.name,
        "description": function.description,
        "parameters": function.parameters,
    }
    if function.endpoint is not None:
        out["endpoint"] = _endpoint_wire(function.endpoint)
    return out


def _context_wire(context: ContextConfig) -> dict[str, Any]:
    out: dict[str, Any] = {"messages": [history_item_to_wire(m) for m in context.messages]}
    if context.replay:
        out["replay"] = True
    return out


def history_item_to_wire(item: HistoryItem) -> dict[str, Any]:
    """A ``History`` object (``agent.context.messages`` entry); unset parts are left out."""
    out: dict[str, Any] = {"type": "History"}
    if item.role is not None:
        out["role"] = item.role
    if item.content is not None:
        out["content"] = item.content
    if item.function_calls:
        out["function_calls"] = [history_call_to_wire(call) for call in item.function_calls]
    return out


def history_call_to_wire(call: HistoryFunctionCall) -> dict[str, Any]:
    return {
        "id": call.id,
        "name": call.name,
        "client_side": call.client_side,
        "arguments": call.arguments,
        "response": call.response,
    }


def _ea_settings_wire(settings: Settings) -> dict[str, Any]:
    agent, out_agent = settings.agent, {}
    if agent.listen is not None:
        out_agent["listen"] = _ea_listen_wire(agent.listen.provider)
    if agent.think:
        out_agent["think"] = _ea_think_wire(agent.think[0])
    if agent.speak:
        out_agent["speak"] = _ea_speak_wire(agent.speak[0].provider)
    out: dict[str, Any] = {
        "type": "SettingsConfiguration",
        "audio": _audio_wire(settings.audio),
        "agent": out_agent,
    }
    if agent.context is not None:
        messages = [m for m in agent.context.messages if m.role and m.content is not None]
        out["context"] = {
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "replay": agent.context.replay,
        }
    return out


def _ea_listen_wire(provider: Provider) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if provider.model is not None:
        out["model"] = provider.model
    if "keyterms" in provider.options:
        out["keyterms"] = provider.options["keyterms"]
    return out


def _ea_think_wire(think: ThinkConfig) -> dict[str, Any]:
    provider = {"type": think.provider.type} if think.provider.type else {}
    out: dict[str, Any] = {"provider": provider | think.provider.options}
    if think.provider.model is not None:
        out["model"] = think.provider.model
    if think.prompt:
        out["instructions"] = think.prompt
    if think.functions:
        out["functions"] = [_ea_function_wire(f) for f in think.functions]
    return out


def _ea_function_wire(function: FunctionDef) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": function.name,
        "description": function.description,
        "parameters": function.parameters,
    }
    if function.endpoint is not None:
        out["url"] = function.endpoint.url
        out["method"] = function.endpoint.method
        out["headers"] = [{"key": k, "value": v} for k, v in function.endpoint.headers.items()]
    return out


def _ea_speak_wire(provider: Provider) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if provider.model is not None:
        out["model"] = provider.model
    if provider.type not in ("", "deepgram"):
        out["provider"] = provider.type
    if "voice_id" in provider.options:
        out["voice_id"] = provider.options["voice_id"]
    return out
