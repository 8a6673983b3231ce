"""Option (request) classes: what the SDK sends, in both styles users write them.

Two styles build the same GA ``Settings``:

* **4.8.1 style** (``deepgram-sdk`` 4.8.1): ``Listen(provider=Provider(type="deepgram",
  model="nova-3"))``, ``Think(provider=..., prompt=...)``, ``Speak(provider=...)``, audio formats
  under ``SettingsOptions.audio``; attribute mutation such as
  ``options.agent.think.provider.model = "gpt-4o-mini"`` works because every level has a default.
* **flat style** (the ``deepgram-sdk`` usage docs): ``Listen(model=, language=, encoding=,
  sample_rate=)``, ``Think(provider=Provider(type=...), model=, instructions=, functions=[...])``,
  ``Speak(model=, encoding=, sample_rate=, container=)``. Flat fields are mapped onto the GA wire:
  ``model``/``language``/``smart_format``/``keyterms`` go into ``provider`` (``type`` defaults to
  ``deepgram`` for listen/speak and ``open_ai`` for think), ``instructions`` becomes ``prompt``,
  and ``encoding``/``sample_rate``/``container``/``bitrate`` go to ``audio.input`` (listen) or
  ``audio.output`` (speak), overriding ``SettingsOptions.audio``. ``channels``,
  ``interim_results``, ``vad_events`` and ``endpointing`` are accepted but not sent: the agent API
  has no such settings. Where both a provider key and a flat field are given, the provider wins.

Serialisation rules (``to_dict``/``to_json``/``str``): ``None`` fields are left out; empty
``listen``/``think``/``speak`` are left out (4.8.1 sent ``"speak": {}``); ``Function`` does not
force ``url``/``method`` into the JSON (a top-level ``url`` becomes ``endpoint``); ``Endpoint``
sends ``method`` only when set. ``str(obj)`` is 4-space indented JSON, as in 4.8.1.
Keys that ``from_dict`` does not know are kept and sent back unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Self

JsonDict = dict[str, Any]

__all__ = [
    "Agent",
    "AgentForceEndTurn",
    "AgentKeepAlive",
    "Audio",
    "Endpoint",
    "Function",
    "FunctionCallResponse",
    "Header",
    "InjectAgentMessageOptions",
    "InjectUserMessageOptions",
    "Input",
    "Item",
    "Listen",
    "Output",
    "Parameters",
    "Properties",
    "Provider",
    "SettingsOptions",
    "Speak",
    "Think",
    "UpdatePromptOptions",
    "UpdateSpeakOptions",
    "UpdateThinkOptions",
]

_LOCAL = {"wire": False}  # field metadata: not serialised under its own name


def encode(value: Any) -> Any:
    """Turn option objects, dicts and lists into plain JSON values, dropping ``None``."""
    if isinstance(value, BaseOption):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {str(k): encode(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    return value


class AttrDict(dict[str, Any]):
    """A dict whose keys are also attributes (``p.model`` is ``p["model"]``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None


class Provider(AttrDict):
    """A provider selector with free-form keys: ``Provider(type="deepgram", model="nova-3")``."""


class Properties(AttrDict):
    """JSON Schema ``properties``: ``Properties(location=Item(type="string", description=...))``."""


@dataclass
class BaseOption:
    """Shared JSON behaviour: ``to_dict``, ``to_json``, ``str``, ``from_dict``, ``[key]``."""

    _extra: JsonDict = field(default_factory=dict, init=False, repr=False, compare=False)

    def to_dict(self) -> JsonDict:
        out: JsonDict = {}
        for f in fields(self):
            if f.name.startswith("_") or f.metadata.get("wire") is False:
                continue
            value = getattr(self, f.name)
            if value is not None:
                out[f.name] = encode(value)
        out.update(encode(self._extra))
        return out

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def __str__(self) -> str:
        return self.to_json(indent=4)

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Build from wire JSON (or flat-style keys); unknown keys are kept and re-sent."""
        known = {f.name for f in fields(cls) if f.init and not f.name.startswith("_")}
        obj = cls(**{k: v for k, v in data.items() if k in known})
        obj._extra = {k: v for k, v in data.items() if k not in known}
        return obj

    @classmethod
    def from_json(cls, text: str | bytes) -> Self:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        return cls.from_dict(data)


def _coerce(value: Any, cls: type[BaseOption]) -> Any:
    """A dict becomes ``cls``; a list is coerced item by item; anything else is kept."""
    if isinstance(value, list | tuple):
        return [_coerce(v, cls) for v in value]
    if isinstance(value, Mapping) and not isinstance(value, AttrDict):
        return cls.from_dict(value)
    return value


def _provider(value: Any) -> Provider:
    return value if isinstance(value, Provider) else Provider(value or {})


def _first(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return value[0] if value else None
    return value


def _set_fields(obj: Any, names: tuple[str, ...]) -> JsonDict:
    return {name: getattr(obj, name) for name in names if getattr(obj, name) is not None}


# ----------------------------------------------------------------------------- small pieces


@dataclass
class Header(BaseOption):
    """Legacy ``{key, value}`` header (early access); ``name`` is accepted for ``key``."""

    key: str = ""
    value: str = ""
    name: str | None = field(default=None, metadata=_LOCAL)

    def to_dict(self) -> JsonDict:
        return {"key": self.key or self.name or "", "value": self.value, **self._extra}


@dataclass
class Item(BaseOption):
    """One JSON Schema property: ``Item(type="string", description="City")``."""

    type: str = "string"
    description: str | None = None


@dataclass
class Parameters(BaseOption):
    """A function's JSON Schema: ``Parameters(properties={...}, required=[...])``."""

    type: str = "object"
    properties: Properties | dict[str, Any] = field(default_factory=Properties)
    required: list[str] | None = None


@dataclass
class Endpoint(BaseOption):
    """A custom endpoint: ``Endpoint(url=..., headers={...})``; ``method`` is sent only if set."""

    method: str | None = None
    url: str = ""
    headers: dict[str, str] | None = None


def _headers_dict(headers: Any) -> dict[str, str] | None:
    if headers is None or isinstance(headers, Mapping):
        return None if headers is None else {str(k): str(v) for k, v in headers.items()}
    out: dict[str, str] = {}
    for h in headers:
        h = h if isinstance(h, Header) else Header.from_dict(h)
        out[h.key or h.name or ""] = h.value
    return out


@dataclass
class Function(BaseOption):
    """A function the LLM may call. Without an endpoint it is client-side.

    4.8.1's positional order (``name, description, url, method, headers, parameters, endpoint``)
    is kept, but only ``name`` is needed. A top-level ``url`` (the early-access shape) is sent as
    ``endpoint{url, method, headers}``, since the GA server rejects top-level ``url``/``method``.
    """

    name: str = ""
    description: str | None = None
    url: str | None = field(default=None, metadata=_LOCAL)
    method: str | None = field(default=None, metadata=_LOCAL)
    headers: dict[str, str] | list[Header] | None = field(default=None, metadata=_LOCAL)
    parameters: Parameters | dict[str, Any] | None = None
    endpoint: Endpoint | None = None

    def __post_init__(self) -> None:
        self.parameters = _coerce(self.parameters, Parameters)
        self.endpoint = _coerce(self.endpoint, Endpoint)

    def to_dict(self) -> JsonDict:
        out = super().to_dict()
        headers = _headers_dict(self.headers)
        if "endpoint" not in out and self.url:
            ep = Endpoint(method=self.method or "post", url=self.url, headers=headers)
            out["endpoint"] = ep.to_dict()
        elif "endpoint" in out and headers and "headers" not in out["endpoint"]:
            out["endpoint"]["headers"] = headers
        return out


# ----------------------------------------------------------------------------- listen/think/speak


def _with_provider(
    out: JsonDict, provider: Mapping[str, Any], flat: JsonDict, kind: str
) -> JsonDict:
    """Put ``provider`` (plus the flat-style keys it lacks; ``type`` defaults to ``kind``) first."""
    out.pop("provider", None)
    merged = {**flat, **provider}
    if not merged:
        return out
    ptype = merged.pop("type", None) or kind
    return {"provider": encode({"type": ptype, **merged}), **out}


@dataclass
class Listen(BaseOption):
    """Speech-to-text: ``Listen(provider=Provider(...))`` or ``Listen(model=, encoding=, ...)``."""

    provider: Provider | dict[str, Any] = field(default_factory=Provider)
    model: str | None = field(default=None, metadata=_LOCAL)
    language: str | None = field(default=None, metadata=_LOCAL)
    smart_format: bool | None = field(default=None, metadata=_LOCAL)
    keyterms: list[str] | None = field(default=None, metadata=_LOCAL)
    encoding: str | None = field(default=None, metadata=_LOCAL)
    sample_rate: int | None = field(default=None, metadata=_LOCAL)
    channels: int | None = field(default=None, metadata=_LOCAL)
    interim_results: bool | None = field(default=None, metadata=_LOCAL)
    vad_events: bool | None = field(default=None, metadata=_LOCAL)
    endpointing: bool | int | None = field(default=None, metadata=_LOCAL)

    def __post_init__(self) -> None:
        self.provider = _provider(self.provider)

    def to_dict(self) -> JsonDict:
        flat = _set_fields(self, ("model", "language", "smart_format", "keyterms"))
        return _with_provider(super().to_dict(), self.provider, flat, "deepgram")

    def audio_input(self) -> JsonDict:
        """The ``audio.input`` keys this listen sets (flat style only)."""
        return _set_fields(self, ("encoding", "sample_rate"))


@dataclass
class Think(BaseOption):
    """The LLM: ``Think(provider=Provider(type="open_ai", model=...), prompt=...)``.

    Flat style: ``Think(provider=Provider(type="open_ai"), model="gpt-4o-mini",
    instructions="...")``; ``instructions`` is sent as ``prompt`` (``prompt`` wins if both).
    """

    provider: Provider | dict[str, Any] = field(default_factory=Provider)
    functions: list[Function] | None = None
    endpoint: Endpoint | None = None
    prompt: str | None = None
    context_length: int | str | None = None
    model: str | None = field(default=None, metadata=_LOCAL)
    instructions: str | None = field(default=None, metadata=_LOCAL)

    def __post_init__(self) -> None:
        self.provider = _provider(self.provider)
        self.functions = _coerce(self.functions, Function)
        self.endpoint = _coerce(self.endpoint, Endpoint)

    def to_dict(self) -> JsonDict:
        flat = _set_fields(self, ("model",))
        out = _with_provider(super().to_dict(), self.provider, flat, "open_ai")
        if self.prompt is None and self.instructions is not None:
            out["prompt"] = self.instructions
        return out


@dataclass
class Speak(BaseOption):
    """Text-to-speech: ``Speak(provider=Provider(...))`` or ``Speak(model=, encoding=, ...)``."""

    provider: Provider | dict[str, Any] = field(default_factory=Provider)
    endpoint: Endpoint | None = None
    model: str | None = field(default=None, metadata=_LOCAL)
    encoding: str | None = field(default=None, metadata=_LOCAL)
    sample_rate: int | None = field(default=None, metadata=_LOCAL)
    container: str | None = field(default=None, metadata=_LOCAL)
    bitrate: int | None = field(default=None, metadata=_LOCAL)

    def __post_init__(self) -> None:
        self.provider = _provider(self.provider)
        self.endpoint = _coerce(self.endpoint, Endpoint)

    def to_dict(self) -> JsonDict:
        flat = _set_fields(self, ("model",))
        return _with_provider(super().to_dict(), self.provider, flat, "deepgram")

    def audio_output(self) -> JsonDict:
        """The ``audio.output`` keys this speak sets (flat style only)."""
        return _set_fields(self, ("encoding", "sample_rate", "container", "bitrate"))


# ----------------------------------------------------------------------------- agent and audio


@dataclass
class Agent(BaseOption):
    """``agent``: listen, think (one or a fallback list), speak (one or a list), greeting."""

    language: str | None = "en"
    listen: Listen | None = field(default_factory=Listen)
    think: Think | list[Think] | None = field(default_factory=Think)
    speak: Speak | list[Speak] | None = field(default_factory=Speak)
    greeting: str | None = None
    context: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.listen = _coerce(self.listen, Listen)
        self.think = _coerce(self.think, Think)
        self.speak = _coerce(self.speak, Speak)

    def to_dict(self) -> JsonDict:
        out = super().to_dict()
        for key in ("listen", "think", "speak"):
            if out.get(key) in ({}, []):
                del out[key]
        return out


@dataclass
class Input(BaseOption):
    """``audio.input``: what the client sends."""

    encoding: str | None = "linear16"
    sample_rate: int | None = 16000


@dataclass
class Output(BaseOption):
    """``audio.output``: what the agent sends back."""

    encoding: str | None = "linear16"
    sample_rate: int | None = 16000
    bitrate: int | None = None
    container: str | None = "none"


@dataclass
class Audio(BaseOption):
    input: Input = field(default_factory=Input)
    output: Output = field(default_factory=Output)

    def __post_init__(self) -> None:
        self.input = _coerce(self.input, Input)
        self.output = _coerce(self.output, Output)


@dataclass
class SettingsOptions(BaseOption):
    """The ``Settings`` message. ``listen``/``think``/``speak`` given here override ``agent``'s."""

    experimental: bool | None = False
    type: str = "Settings"
    tags: list[str] | None = None
    audio: Audio = field(default_factory=Audio)
    agent: Agent = field(default_factory=Agent)
    mip_opt_out: bool | None = False
    flags: dict[str, Any] | None = None
    listen: Listen | None = field(default=None, metadata=_LOCAL)
    think: Think | list[Think] | None = field(default=None, metadata=_LOCAL)
    speak: Speak | list[Speak] | None = field(default=None, metadata=_LOCAL)

    def __post_init__(self) -> None:
        self.audio = _coerce(self.audio, Audio)
        self.agent = _coerce(self.agent, Agent)
        self.listen = _coerce(self.listen, Listen)
        self.think = _coerce(self.think, Think)
        self.speak = _coerce(self.speak, Speak)

    def to_dict(self) -> JsonDict:
        out = super().to_dict()
        out["type"] = "Settings"
        agent = out.setdefault("agent", {})
        for key in ("listen", "think", "speak"):
            value = encode(getattr(self, key))
            if value not in (None, {}, []):
                agent[key] = value
        listen = self.listen or self.agent.listen
        speak = _first(self.speak or self.agent.speak)
        audio = out.setdefault("audio", {})
        if isinstance(listen, Listen) and listen.audio_input():
            audio["input"] = {**audio.get("input", {}), **listen.audio_input()}
        if isinstance(speak, Speak) and speak.audio_output():
            audio["output"] = {**audio.get("output", {}), **speak.audio_output()}
        return out

    def check(self) -> bool:
        """4.8.1 compatibility; the options are checked when serialised."""
        return True


# ------------------------------------------------------------------------ other client messages


@dataclass
class UpdatePromptOptions(BaseOption):
    type: str = "UpdatePrompt"
    prompt: str = ""


@dataclass
class UpdateSpeakOptions(BaseOption):
    """``UpdateSpeak``; flat audio fields of the ``Speak`` cannot change mid-session and are
    not sent."""

    type: str = "UpdateSpeak"
    speak: Speak | list[Speak] = field(default_factory=Speak)

    def __post_init__(self) -> None:
        self.speak = _coerce(self.speak, Speak)


@dataclass
class UpdateThinkOptions(BaseOption):
    type: str = "UpdateThink"
    think: Think | list[Think] = field(default_factory=Think)

    def __post_init__(self) -> None:
        self.think = _coerce(self.think, Think)


@dataclass
class InjectAgentMessageOptions(BaseOption):
    """``InjectAgentMessage``; ``text`` is accepted for ``message``."""

    type: str = "InjectAgentMessage"
    message: str = ""
    text: str | None = field(default=None, metadata=_LOCAL)
    behavior: str | None = None

    def to_dict(self) -> JsonDict:
        out = super().to_dict()
        out["message"] = self.message or self.text or ""
        return out


@dataclass
class InjectUserMessageOptions(BaseOption):
    """``InjectUserMessage``; ``text`` is accepted for ``content``."""

    type: str = "InjectUserMessage"
    content: str = ""
    text: str | None = field(default=None, metadata=_LOCAL)

    def to_dict(self) -> JsonDict:
        out = super().to_dict()
        out["content"] = self.content or self.text or ""
        return out


@dataclass
class FunctionCallResponse(BaseOption):
    """The answer to a ``FunctionCallRequest``.

    ``FunctionCallResponse(id=, name=, content=)`` (4.8.1) or ``FunctionCallResponse(name=,
    result=)``: ``result`` becomes ``content`` (JSON-encoded unless it is a string) and
    ``send_function_call_response`` fills ``id`` from the oldest pending call with that name.
    """

    type: str = "FunctionCallResponse"
    id: str = ""
    name: str = ""
    content: str = ""
    result: Any = field(default=None, metadata=_LOCAL)

    def to_dict(self) -> JsonDict:
        out = super().to_dict()
        if not self.content and self.result is not None:
            result = self.result
            out["content"] = result if isinstance(result, str) else json.dumps(encode(result))
        return out


@dataclass
class AgentKeepAlive(BaseOption):
    type: str = "KeepAlive"


@dataclass
class AgentForceEndTurn(BaseOption):
    """``ForceEndTurn`` (GA, 2026): end the user's turn now; no fields."""

    type: str = "ForceEndTurn"
