"""Response classes: what handlers receive.

The 4.8.1 classes keep their 4.8.1 fields and constructor order (``WelcomeResponse(type,
request_id)``, ...). Aliases make the flat-style usage docs and 3.x (early-access) code run
unchanged:

* ``WelcomeResponse.message`` and ``WelcomeResponse.session_id`` (3.x) are the ``request_id``;
  an early-access ``Welcome{session_id}`` parses into it;
* ``ConversationTextResponse.text`` is ``content``;
* ``FunctionCallRequest.function_call`` is the first function as a ``FunctionCallDetails`` whose
  ``arguments`` is a ``dict`` (the wire sends a JSON string; ``functions[i].arguments`` keeps it),
  and ``FunctionCallRequest.call_id`` is its ``id``;
* an early-access ``FunctionCallRequest{function_name, function_call_id, input}`` parses into
  one client-side entry of ``functions`` (an object ``input`` is kept as its JSON text), and
  ``function_name``, ``function_call_id`` and ``input`` read the first function (3.x names);
* ``InjectionRefusedResponse.message`` is the wire field (4.8.1 dropped it);
* ``ErrorResponse.code`` keeps the wire ``code`` (4.8.1 dropped it).

Fields the wire does not carry, filled by the SDK (``AgentCore.receive_text``):

* ``timestamp`` of ``UserStartedSpeakingResponse`` and ``AgentStartedSpeakingResponse``: when the
  client received the message (ISO 8601, UTC, milliseconds), unless the server sent one;
* ``SettingsAppliedResponse.settings``: the Settings this connection sent (a dict), unless the
  server sent them back.

Parsing (``from_dict``) ignores unknown keys and raises ``MalformedMessage`` when a field the
class requires is missing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Self

JsonDict = dict[str, Any]

__all__ = [
    "AgentAudioDoneResponse",
    "AgentStartedSpeakingResponse",
    "AgentThinkingResponse",
    "CancelledFunction",
    "CloseResponse",
    "ConversationTextResponse",
    "ErrorResponse",
    "FunctionCall",
    "FunctionCallCancelledResponse",
    "FunctionCallDetails",
    "FunctionCallRequest",
    "FunctionCalling",
    "HistoryFunctionCall",
    "HistoryResponse",
    "InjectionRefusedResponse",
    "LatencyReportResponse",
    "ListenUpdatedResponse",
    "MalformedMessage",
    "OpenResponse",
    "PromptUpdatedResponse",
    "ServerFunctionCallResponse",
    "SettingsAppliedResponse",
    "SpeakUpdatedResponse",
    "ThinkUpdatedResponse",
    "UnhandledResponse",
    "UserStartedSpeakingResponse",
    "WarningResponse",
    "WelcomeResponse",
]


class MalformedMessage(ValueError):
    """A server message of a known type lacks a required field or has the wrong shape."""


def _plain(value: Any) -> Any:
    if isinstance(value, BaseResponse):
        return value.to_dict()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@dataclass
class BaseResponse:
    """``to_dict``, ``to_json``, ``str`` (indented JSON, as 4.8.1), ``[key]`` and ``from_dict``."""

    def to_dict(self) -> JsonDict:
        return {
            f.name: _plain(getattr(self, f.name))
            for f in fields(self)
            if getattr(self, f.name) is not None
        }

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def __str__(self) -> str:
        return self.to_json(indent=4)

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        if not isinstance(data, Mapping):
            raise MalformedMessage(f"{cls.__name__}: expected an object, got {data!r}")
        kwargs: JsonDict = {}
        for f in fields(cls):
            if f.name in data:
                kwargs[f.name] = data[f.name]
            elif f.default is MISSING and f.default_factory is MISSING:
                raise MalformedMessage(f"missing required field '{f.name}'")
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str | bytes) -> Self:
        return cls.from_dict(json.loads(text))


# ----------------------------------------------------------------------------- connection-level


@dataclass
class OpenResponse(BaseResponse):
    type: str = ""


@dataclass
class CloseResponse(BaseResponse):
    """``Close``; harken adds the WebSocket close ``code`` and ``reason`` when known."""

    type: str = ""
    code: int | None = None
    reason: str | None = None


@dataclass
class ErrorResponse(BaseResponse):
    """An ``Error`` from the server (``type="Error"``, with its ``code``) or from the SDK itself
    (``type`` names the failure: ``AuthenticationError``, ``ConnectionError``,
    ``ConnectionClosed``, ``HandlerError``, ``ProtocolError``, ``SendError``)."""

    description: str = ""
    message: str = ""
    type: str = ""
    variant: str | None = None
    code: str = ""


@dataclass
class UnhandledResponse(BaseResponse):
    type: str = ""
    raw: str = ""


# ----------------------------------------------------------------------------- 4.8.1 agent messages


@dataclass
class WelcomeResponse(BaseResponse):
    type: str
    request_id: str

    @property
    def message(self) -> str:
        """Alias (flat-style docs): the wire has no message, so this is the request id."""
        return self.request_id

    @property
    def session_id(self) -> str:
        """Alias (3.x, early access): the request id."""
        return self.request_id

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        if isinstance(data, Mapping) and "request_id" not in data and "session_id" in data:
            data = {**data, "request_id": data["session_id"]}  # early-access Welcome
        return super().from_dict(data)


@dataclass
class SettingsAppliedResponse(BaseResponse):
    type: str
    settings: dict[str, Any] | None = None


@dataclass
class ConversationTextResponse(BaseResponse):
    type: str
    role: str
    content: str
    languages: list[str] | None = None
    conversational_behavior: str = "default"  # GA since 2026; the SDKs' default when absent
    languages_hinted: list[str] | None = None

    @property
    def text(self) -> str:
        """Alias of ``content``."""
        return self.content


@dataclass
class UserStartedSpeakingResponse(BaseResponse):
    type: str
    timestamp: str | None = None


@dataclass
class AgentThinkingResponse(BaseResponse):
    type: str
    content: str


@dataclass
class FunctionCall(BaseResponse):
    """One entry of ``FunctionCallRequest.functions``; ``arguments`` is the JSON text."""

    id: str
    name: str
    arguments: str
    client_side: bool
    thought_signature: str | None = None

    @property
    def parsed_arguments(self) -> dict[str, Any]:
        """``arguments`` decoded (``{}`` if it is not a JSON object)."""
        return _decode_arguments(self.arguments)


def _decode_arguments(arguments: Any) -> dict[str, Any]:
    if isinstance(arguments, Mapping):
        return dict(arguments)
    try:
        value = json.loads(arguments)
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class FunctionCallDetails:
    """The flat-style view of one call: ``name``, ``arguments`` as a dict, ``id``."""

    id: str
    name: str
    arguments: dict[str, Any]
    client_side: bool = True


def _items(cls: type[BaseResponse], value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise MalformedMessage(f"'{what}' must be a list, got {value!r}")
    return [v if isinstance(v, cls) else cls.from_dict(v) for v in value]


@dataclass
class FunctionCallRequest(BaseResponse):
    type: str
    functions: list[FunctionCall]

    def __post_init__(self) -> None:
        self.functions = _items(FunctionCall, self.functions, "functions")

    @property
    def function_call(self) -> FunctionCallDetails | None:
        """Alias (flat-style docs): the first function, with ``arguments`` as a dict."""
        if not self.functions:
            return None
        first = self.functions[0]
        return FunctionCallDetails(
            id=first.id,
            name=first.name,
            arguments=first.parsed_arguments,
            client_side=first.client_side,
        )

    @property
    def call_id(self) -> str:
        """Alias: the id of the first function."""
        return self.functions[0].id if self.functions else ""

    @property
    def function_call_id(self) -> str:
        """Alias (3.x, early access): the id of the first function."""
        return self.call_id

    @property
    def function_name(self) -> str:
        """Alias (3.x, early access): the name of the first function."""
        return self.functions[0].name if self.functions else ""

    @property
    def input(self) -> str:
        """Alias (3.x, early access): the arguments (JSON text) of the first function."""
        return self.functions[0].arguments if self.functions else ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        if isinstance(data, Mapping) and "functions" not in data and "function_call_id" in data:
            data = {**data, "functions": [_early_access_call(data)]}
        return super().from_dict(data)


def _early_access_call(data: Mapping[str, Any]) -> JsonDict:
    """``{function_name, function_call_id, input}`` as one ``functions`` entry."""
    for key in ("function_name", "input"):
        if data.get(key) is None:
            raise MalformedMessage(f"missing required field '{key}'")
    arguments = data["input"]
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments, separators=(",", ":"), ensure_ascii=False)
    return {
        "id": data["function_call_id"],
        "name": data["function_name"],
        "arguments": arguments,
        "client_side": True,
    }


@dataclass
class FunctionCalling(BaseResponse):
    """Early access (3.x): a debug notice that the agent is calling a function."""

    type: str = "FunctionCalling"


@dataclass
class AgentStartedSpeakingResponse(BaseResponse):
    total_latency: float
    tts_latency: float
    ttt_latency: float
    type: str = "AgentStartedSpeaking"
    timestamp: str | None = None


@dataclass
class AgentAudioDoneResponse(BaseResponse):
    type: str


@dataclass
class InjectionRefusedResponse(BaseResponse):
    type: str
    message: str = ""


# ----------------------------------------------------------------------------- harken additions


@dataclass
class PromptUpdatedResponse(BaseResponse):
    type: str = "PromptUpdated"


@dataclass
class SpeakUpdatedResponse(BaseResponse):
    type: str = "SpeakUpdated"


@dataclass
class ThinkUpdatedResponse(BaseResponse):
    type: str = "ThinkUpdated"


@dataclass
class ListenUpdatedResponse(BaseResponse):
    type: str = "ListenUpdated"


@dataclass
class HistoryFunctionCall(BaseResponse):
    id: str = ""
    name: str = ""
    client_side: bool = True
    arguments: str = ""
    response: str = ""


@dataclass
class HistoryResponse(BaseResponse):
    """Either ``role`` + ``content`` (an utterance) or ``function_calls`` (completed calls)."""

    type: str = "History"
    role: str | None = None
    content: str | None = None
    function_calls: list[HistoryFunctionCall] | None = None

    def __post_init__(self) -> None:
        if self.function_calls is not None:
            self.function_calls = _items(HistoryFunctionCall, self.function_calls, "function_calls")


@dataclass
class WarningResponse(BaseResponse):
    type: str = "Warning"
    description: str = ""
    code: str = ""


@dataclass
class LatencyReportResponse(BaseResponse):
    """Latencies in seconds; a server may send one field per message."""

    type: str = "LatencyReport"
    total_latency: float | None = None
    ttt_token_latency: float | None = None
    ttt_text_latency: float | None = None
    ttt_tool_latency: float | None = None
    ttt_thinking_latency: float | None = None
    tts_latency: float | None = None
    stt_latency: float | None = None
    eou_latency: float | None = None


@dataclass
class CancelledFunction(BaseResponse):
    id: str
    name: str = ""


@dataclass
class FunctionCallCancelledResponse(BaseResponse):
    """The server abandoned these calls; do not answer them."""

    type: str = "FunctionCallCancelled"
    functions: list[CancelledFunction] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.functions = _items(CancelledFunction, self.functions, "functions")


@dataclass
class ServerFunctionCallResponse(BaseResponse):
    """The server ran a server-side function and reports its result."""

    type: str = "FunctionCallResponse"
    name: str = ""
    content: str = ""
    id: str | None = None
