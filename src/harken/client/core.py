"""The sans-I/O core of the agent SDK: no sockets, no threads, no asyncio, no clock.

``AgentCore`` holds everything the two shells (``sync.py``, ``asyncio.py``) share:

* **connection parameters**: URL (``config.url`` / ``$HARKEN_URL`` / ``ws://127.0.0.1:8765`` plus
  ``/v1/agent/converse``), handshake headers (``Authorization: Token <key>`` or
  ``Bearer <token>``), keepalive and failure options;
* **outgoing messages**: each ``encode_*`` method checks its argument and returns the JSON text
  (``DeepgramApiError`` for a wrong type or an unanswerable function call);
* **incoming frames**: ``receive_text``/``receive_bytes`` turn frames into ``Event`` values, of
  either generation (``/v1/agent/converse`` or early access's ``/agent``); the shell passes the
  receive time (``time.time()``), which becomes the ``timestamp`` of the speaking events, and
  ``SettingsApplied`` carries the Settings this connection sent;
* **state**: the connection state, the pending client-side function calls (oldest first) and
  whether ``Close`` has been emitted (it is emitted exactly once per connection);
* **handlers**: ``on`` inspects a handler's signature once and ``invocations`` says how to call
  it: the payload goes by the 4.8.1 keyword (``welcome=``, ``conversation_text=``, ``data=``...) if
  the handler has a parameter of that name, otherwise positionally as the second argument; the
  ``start(**kwargs)`` extras go to every handler that accepts them.

The shells move bytes, run handlers and own the timers.
"""

from __future__ import annotations

import enum
import inspect
import json
import logging
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit, urlunsplit

from harken.client.config import DeepgramClientOptions, truthy
from harken.client.events import FALLBACK_TO_UNHANDLED, AgentWebSocketEvents, payload_keyword
from harken.client.options import (
    AgentForceEndTurn,
    AgentKeepAlive,
    BaseOption,
    FunctionCallResponse,
    InjectAgentMessageOptions,
    InjectUserMessageOptions,
    SettingsOptions,
    UpdatePromptOptions,
    UpdateSpeakOptions,
    UpdateThinkOptions,
)
from harken.client.responses import (
    AgentAudioDoneResponse,
    AgentStartedSpeakingResponse,
    AgentThinkingResponse,
    BaseResponse,
    CloseResponse,
    ConversationTextResponse,
    ErrorResponse,
    FunctionCall,
    FunctionCallCancelledResponse,
    FunctionCalling,
    FunctionCallRequest,
    HistoryResponse,
    InjectionRefusedResponse,
    LatencyReportResponse,
    ListenUpdatedResponse,
    MalformedMessage,
    OpenResponse,
    PromptUpdatedResponse,
    ServerFunctionCallResponse,
    SettingsAppliedResponse,
    SpeakUpdatedResponse,
    ThinkUpdatedResponse,
    UnhandledResponse,
    UserStartedSpeakingResponse,
    WarningResponse,
    WelcomeResponse,
)
from harken.errors import DeepgramApiError

logger = logging.getLogger("harken.client")

E = AgentWebSocketEvents
_O = TypeVar("_O", bound=BaseOption)
DEFAULT_URL = "ws://127.0.0.1:8765"
AGENT_PATH = "/v1/agent/converse"
KEEPALIVE_INTERVAL = 5.0
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]", "0.0.0.0"}

_ROUTES: dict[str, tuple[AgentWebSocketEvents, type[BaseResponse]]] = {
    "Welcome": (E.Welcome, WelcomeResponse),
    "SettingsApplied": (E.SettingsApplied, SettingsAppliedResponse),
    "ConversationText": (E.ConversationText, ConversationTextResponse),
    "UserStartedSpeaking": (E.UserStartedSpeaking, UserStartedSpeakingResponse),
    "AgentThinking": (E.AgentThinking, AgentThinkingResponse),
    "FunctionCallRequest": (E.FunctionCallRequest, FunctionCallRequest),
    "AgentStartedSpeaking": (E.AgentStartedSpeaking, AgentStartedSpeakingResponse),
    "AgentAudioDone": (E.AgentAudioDone, AgentAudioDoneResponse),
    "InjectionRefused": (E.InjectionRefused, InjectionRefusedResponse),
    "Error": (E.Error, ErrorResponse),
    "PromptUpdated": (E.PromptUpdated, PromptUpdatedResponse),
    "SpeakUpdated": (E.SpeakUpdated, SpeakUpdatedResponse),
    "ThinkUpdated": (E.ThinkUpdated, ThinkUpdatedResponse),
    "ListenUpdated": (E.ListenUpdated, ListenUpdatedResponse),
    "History": (E.History, HistoryResponse),
    "Warning": (E.Warning, WarningResponse),
    "LatencyReport": (E.LatencyReport, LatencyReportResponse),
    "FunctionCallCancelled": (E.FunctionCallCancelled, FunctionCallCancelledResponse),
    "FunctionCallResponse": (E.FunctionCallResponse, ServerFunctionCallResponse),
    # early access (/agent)
    "FunctionCalling": (E.FunctionCalling, FunctionCalling),
    "InstructionsUpdated": (E.PromptUpdated, PromptUpdatedResponse),
}


class ConnectionState(enum.Enum):
    IDLE = "idle"
    CONNECTING = "connecting"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


@dataclass(frozen=True)
class Event:
    """Something to emit: the event name, its payload and (for text frames) the raw JSON."""

    name: AgentWebSocketEvents
    payload: Any
    raw: str | None = None


@dataclass(frozen=True)
class HandlerSpec:
    """How to call one handler, decided once at ``on()`` time."""

    handler: Callable[..., Any]
    keyword: str | None  # pass the payload under this keyword; None: second positional argument
    accepts: frozenset[str] | None  # start() kwargs it can take; None: all (it has **kwargs)


@dataclass(frozen=True)
class Invocation:
    """One handler call, ready to run: ``invocation()`` calls the handler."""

    event: AgentWebSocketEvents
    handler: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __call__(self) -> Any:
        return self.handler(*self.args, **self.kwargs)


@dataclass(frozen=True)
class ConnectRequest:
    """What the shell needs to open the WebSocket."""

    url: str
    headers: dict[str, str]
    user_agent: str
    open_timeout: float


def sdk_version() -> str:
    try:
        return metadata.version("harken")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0.0.0"


def resolve_url(url: str) -> str:
    """``ws[s]://host[:port]/v1/agent/converse`` from a host, an ``http(s)``/``ws(s)`` URL or
    nothing (``ws://127.0.0.1:8765``). An explicit path is kept."""
    url = (url or DEFAULT_URL).strip()
    if "://" not in url:
        host = url.split("/", 1)[0].rsplit(":", 1)[0]
        url = ("ws://" if host in _LOCAL_HOSTS else "wss://") + url
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    scheme = {"http": "ws", "https": "wss"}.get(scheme, scheme)
    path = parts.path if parts.path not in ("", "/") else AGENT_PATH
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


def inspect_handler(handler: Callable[..., Any], keyword: str) -> HandlerSpec:
    """Decide, from the signature, whether the payload goes by keyword or by position."""
    try:
        params = list(inspect.signature(handler).parameters.values())
    except (TypeError, ValueError):
        return HandlerSpec(handler, keyword, None)  # uninspectable: do what 4.8.1 does
    kinds = {p.kind for p in params}
    has_var_kw = inspect.Parameter.VAR_KEYWORD in kinds
    named = frozenset(
        p.name
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    )
    positional = sum(
        p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        for p in params
    )
    if keyword in named:
        by_keyword = True
    elif positional >= 2 or inspect.Parameter.VAR_POSITIONAL in kinds:
        by_keyword = False
    else:
        by_keyword = has_var_kw
    return HandlerSpec(handler, keyword if by_keyword else None, None if has_var_kw else named)


def _coerce_option(value: Any, cls: type[_O], text_field: str | None) -> _O:
    if isinstance(value, cls):
        return value
    if isinstance(value, Mapping):
        return cls.from_dict(value)
    if isinstance(value, str) and text_field is not None:
        return cls.from_dict({text_field: value})
    raise DeepgramApiError(f"Invalid options type: expected {cls.__name__}, got {type(value)!r}")


def timestamp(seconds: float) -> str:
    """``seconds`` since the epoch as ISO 8601 UTC with milliseconds (``...T12:00:00.250Z``)."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _error(description: str, kind: str, message: str = "", code: str = "") -> Event:
    payload = ErrorResponse(description=description, message=message, type=kind, code=code)
    return Event(E.Error, payload)


class AgentCore:
    """State and encoding shared by ``AgentWebSocketClient`` and ``AsyncAgentWebSocketClient``."""

    def __init__(self, config: DeepgramClientOptions) -> None:
        self.config = config
        self.url = resolve_url(config.resolved_url())
        opts = config.options
        self.keepalive_enabled = config.is_keep_alive_enabled()
        self.keepalive_interval = float(opts.get("keepalive_interval", KEEPALIVE_INTERVAL))
        self.open_timeout = float(opts.get("open_timeout", 10.0))
        self.close_on_handler_error = truthy(opts.get("termination_exception"))
        self.raise_on_connect_error = truthy(opts.get("termination_exception_connect"))
        self.raise_on_send_error = truthy(opts.get("termination_exception_send"))
        self.state = ConnectionState.IDLE
        self.pending: list[FunctionCall] = []
        self.settings_sent = False
        self.sent_settings: str | None = None  # the JSON text of the Settings sent, if any
        self._handlers: dict[AgentWebSocketEvents, list[HandlerSpec]] = {}
        self._start_kwargs: dict[str, Any] = {}
        self._opened = False
        self._close_emitted = False

    # ------------------------------------------------------------------------- handlers

    def on(self, event: AgentWebSocketEvents | str, handler: Callable[..., Any]) -> None:
        try:
            name = AgentWebSocketEvents(event)
        except ValueError:
            raise DeepgramApiError(f"Unknown event {event!r}") from None
        if not callable(handler):
            raise DeepgramApiError(f"The handler for {name} is not callable: {handler!r}")
        spec = inspect_handler(handler, payload_keyword(name))
        self._handlers.setdefault(name, []).append(spec)

    def invocations(self, event: Event, client: Any) -> list[Invocation]:
        """The handler calls for ``event`` (newer events fall back to ``Unhandled``)."""
        name, payload = event.name, event.payload
        specs = self._handlers.get(name, [])
        if not specs and name in FALLBACK_TO_UNHANDLED and event.raw is not None:
            name, payload = E.Unhandled, UnhandledResponse(type="Unhandled", raw=event.raw)
            specs = self._handlers.get(name, [])
        return [self._invocation(spec, name, client, payload) for spec in list(specs)]

    def _invocation(
        self, spec: HandlerSpec, name: AgentWebSocketEvents, client: Any, payload: Any
    ) -> Invocation:
        extras = {
            k: v
            for k, v in self._start_kwargs.items()
            if (spec.accepts is None or k in spec.accepts) and k != spec.keyword
        }
        if spec.keyword is None:
            return Invocation(name, spec.handler, (client, payload), extras)
        return Invocation(name, spec.handler, (client,), {spec.keyword: payload, **extras})

    def handler_failed(self, invocation: Invocation, exc: BaseException) -> Event:
        handler = getattr(invocation.handler, "__qualname__", repr(invocation.handler))
        description = f"The {invocation.event} handler {handler} raised {type(exc).__name__}: {exc}"
        return _error(description, "HandlerError", message=str(exc))

    # ------------------------------------------------------------------------- lifecycle

    def begin_start(
        self,
        options: Any,
        addons: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        kwargs: Mapping[str, Any] | None = None,
    ) -> tuple[ConnectRequest, str | None]:
        """Validate ``start()``'s arguments; returns how to connect and the Settings text."""
        if self.state in (ConnectionState.CONNECTING, ConnectionState.OPEN):
            raise DeepgramApiError("The connection is already started; call finish() first")
        settings = None if options is None else self.encode_settings(options)
        self._start_kwargs = dict(kwargs or {})
        self.state = ConnectionState.CONNECTING
        self.pending.clear()
        self.settings_sent = False
        self.sent_settings = None
        self._opened = self._close_emitted = False
        return self._connect_request(addons, headers), settings

    def _connect_request(
        self, addons: Mapping[str, Any] | None, headers: Mapping[str, str] | None
    ) -> ConnectRequest:
        url = self.url
        if addons:
            url += ("&" if "?" in url else "?") + urlencode(dict(addons), doseq=True)
        merged = {"Accept": "application/json"}
        scheme, credential = self.config.resolved_credentials()
        if credential:
            merged["Authorization"] = f"{scheme} {credential}"
        merged.update(self.config.headers)
        merged.update(headers or {})
        default_agent = (
            f"harken-sdk/{sdk_version()} python/{sys.version_info[0]}.{sys.version_info[1]}"
        )
        user_agent = merged.pop("User-Agent", default_agent)
        return ConnectRequest(url, merged, user_agent, self.open_timeout)

    def connect_failed(
        self, status: int | None, detail: str
    ) -> tuple[Event, DeepgramApiError | None]:
        """The handshake failed: the Error to emit, and the exception to raise if configured."""
        self.state = ConnectionState.CLOSED
        if status in (401, 403):
            description = (
                f"Authentication failed: the server rejected the credentials (HTTP {status}). "
                "Check the API key or access token."
            )
            event = _error(description, "AuthenticationError", f"HTTP {status}")
        elif status is not None:
            description = f"The server refused the WebSocket upgrade at {self.url} (HTTP {status})"
            event = _error(description, "ConnectionError", f"HTTP {status}")
        else:
            description = f"Connection failed: could not connect to {self.url}: {detail}"
            event = _error(description, "ConnectionError", detail)
        if not self.raise_on_connect_error:
            return event, None
        return event, DeepgramApiError(description, str(status or ""), detail)

    def connected(self) -> Event:
        self.state = ConnectionState.OPEN
        self._opened = True
        return Event(E.Open, OpenResponse(type="Open"))

    def begin_close(self) -> bool:
        """The user closes. True if there is an open socket the shell must close now."""
        if self.state is ConnectionState.OPEN:
            self.state = ConnectionState.CLOSING
            return True
        return False

    def connection_lost(self, code: int | None, reason: str | None) -> list[Event]:
        """The socket is gone: an Error if it ended abnormally, then Close (once)."""
        events: list[Event] = []
        if self.state is ConnectionState.OPEN and code not in (1000, 1001):
            description = f"The connection closed unexpectedly (code {code}"
            description += f", reason {reason!r})" if reason else ")"
            events.append(_error(description, "ConnectionClosed", str(code)))
        self.state = ConnectionState.CLOSED
        self.pending.clear()
        if self._opened and not self._close_emitted:
            self._close_emitted = True
            events.append(Event(E.Close, CloseResponse(type="Close", code=code, reason=reason)))
        return events

    def send_failed(self, what: str, detail: str) -> Event:
        return _error(f"Could not send {what}: {detail}", "SendError", detail)

    @property
    def is_open(self) -> bool:
        return self.state is ConnectionState.OPEN

    # ------------------------------------------------------------------------- outgoing

    def encode_settings(self, options: Any) -> str:
        """``SettingsOptions``, a dict or a JSON string → the Settings text."""
        if isinstance(options, str | bytes):
            try:
                options = SettingsOptions.from_json(options)
            except ValueError as exc:
                raise DeepgramApiError(f"Invalid options: not a JSON object ({exc})") from exc
        return _coerce_option(options, SettingsOptions, None).to_json()

    def encode_update_prompt(self, options: Any) -> str:
        return _coerce_option(options, UpdatePromptOptions, "prompt").to_json()

    def encode_update_speak(self, options: Any) -> str:
        return _coerce_option(options, UpdateSpeakOptions, None).to_json()

    def encode_update_think(self, options: Any) -> str:
        return _coerce_option(options, UpdateThinkOptions, None).to_json()

    def encode_inject_agent_message(self, options: Any) -> str:
        return _coerce_option(options, InjectAgentMessageOptions, "message").to_json()

    def encode_inject_user_message(self, options: Any) -> str:
        return _coerce_option(options, InjectUserMessageOptions, "content").to_json()

    def encode_keep_alive(self) -> str:
        return AgentKeepAlive().to_json()

    def encode_force_end_turn(self) -> str:
        return AgentForceEndTurn().to_json()

    def encode_function_call_response(self, response: Any) -> str:
        """Fill ``id`` from the oldest pending call with the same name when it is empty.

        Raises ``DeepgramApiError`` when neither an id nor a matching pending call exists.
        """
        data = _coerce_option(response, FunctionCallResponse, None).to_dict()
        call_id, name = data.get("id") or "", data.get("name") or ""
        if call_id:
            call = self._take_pending(lambda c: c.id == call_id)
        elif not name:
            raise DeepgramApiError("A FunctionCallResponse needs an id or a function name")
        else:
            call = self._take_pending(lambda c: c.name == name)
            if call is None:
                pending = ", ".join(f"{c.name} ({c.id})" for c in self.pending) or "none"
                raise DeepgramApiError(
                    f"No pending FunctionCallRequest for function {name!r} "
                    f"(pending: {pending}); pass id= to answer a specific call"
                )
        if call is not None:
            data["id"], data["name"] = call.id, name or call.name
        return json.dumps(data)

    def _take_pending(self, match: Callable[[FunctionCall], bool]) -> FunctionCall | None:
        for i, call in enumerate(self.pending):
            if match(call):
                return self.pending.pop(i)
        return None

    def note_outgoing(self, text: str) -> None:
        """Keep state right when raw text goes out through ``send()``."""
        if '"FunctionCallResponse"' in text or '"Settings"' in text:
            try:
                data = json.loads(text)
            except ValueError:
                return
            if not isinstance(data, dict):
                return
            if data.get("type") == "FunctionCallResponse" and data.get("id"):
                self._take_pending(lambda c: c.id == data["id"])
            elif data.get("type") == "Settings":
                if self.settings_sent:
                    logger.warning("Settings sent twice; the server accepts one per session")
                else:
                    self.sent_settings = text  # what the server's SettingsApplied answers
                self.settings_sent = True

    # ------------------------------------------------------------------------- incoming

    def receive_bytes(self, data: bytes) -> list[Event]:
        return [Event(E.AudioData, bytes(data))]

    def receive_text(self, text: str, received_at: float | None = None) -> list[Event]:
        """Events for one text frame; ``received_at`` (epoch seconds) stamps the speaking events."""
        if not text:
            return []
        try:
            data = json.loads(text)
        except ValueError as exc:
            return [_error(f"The server sent text that is not JSON: {exc}", "ProtocolError")]
        if not isinstance(data, dict):
            return [_error("The server sent JSON that is not an object", "ProtocolError")]
        route = _ROUTES.get(str(data.get("type")))
        if route is None:
            return [Event(E.Unhandled, UnhandledResponse(type="Unhandled", raw=text), text)]
        name, cls = route
        try:
            payload = cls.from_dict(data)
        except (MalformedMessage, TypeError) as exc:
            description = f"Malformed {data['type']} message from the server: {exc}"
            return [_error(description, "ProtocolError", message=text)]
        self._track(payload, received_at)
        return [Event(name, payload, text)]

    def _track(self, payload: BaseResponse, received_at: float | None) -> None:
        if isinstance(payload, UserStartedSpeakingResponse | AgentStartedSpeakingResponse):
            if payload.timestamp is None and received_at is not None:
                payload.timestamp = timestamp(received_at)
        elif isinstance(payload, SettingsAppliedResponse):
            if payload.settings is None and self.sent_settings is not None:
                payload.settings = json.loads(self.sent_settings)
        elif isinstance(payload, FunctionCallRequest):
            self.pending.extend(f for f in payload.functions if f.client_side)
        elif isinstance(payload, FunctionCallCancelledResponse):
            cancelled = {f.id for f in payload.functions}
            self.pending = [c for c in self.pending if c.id not in cancelled]
