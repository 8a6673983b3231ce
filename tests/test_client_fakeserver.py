"""A scripted GA Voice Agent server on 127.0.0.1 for the SDK tests (no tests of its own).

It plays the GA protocol the way the live server did (PROTOCOL.md 4.4): ``Welcome`` at once,
``SettingsApplied`` for Settings, ``*Updated`` acknowledgements, a turn for each
``InjectUserMessage`` (user text, History, EndOfThought, then either a client-side
``FunctionCallRequest`` or assistant text + AgentStartedSpeaking + two binary audio frames +
AgentAudioDone), ``InjectionRefused`` for an agent message containing "refuse", and
``Error`` + close 1000 for a user message containing "fail". With ``api_key`` set, a request
without ``Authorization: Token <api_key>`` gets HTTP 401 before the upgrade.

Until the real harken server exists this stands in for it; the same tests can later be pointed
at the real one.
"""

from __future__ import annotations

import asyncio
import http
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Request, Response, Server, ServerConnection, serve

Frame = str | bytes
CLOSE = object()  # in a reaction list: close with 1000
ABORT = object()  # in a reaction list: close with 1011 (abnormal)
AUDIO = [b"\x01\x00" * 480, b"\x02\x00" * 480]


def msg(type_: str, **fields: Any) -> str:
    return json.dumps({"type": type_, **fields})


WEATHER_CALL = {
    "id": "call_weather_1",
    "name": "get_weather",
    "arguments": json.dumps({"location": "Paris"}),
    "client_side": True,
}
REMINDER_CALL = {
    "id": "call_reminder_1",
    "name": "set_reminder",
    "arguments": json.dumps({"reminder": "buy milk", "time": "5pm"}),
    "client_side": True,
}


@dataclass
class Connection:
    """What one client did: handshake path and headers, every frame, the close code."""

    path: str
    headers: dict[str, str]
    received: list[Frame] = field(default_factory=list)
    close_code: int | None = None
    closed: threading.Event = field(default_factory=threading.Event)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def add(self, frame: Frame) -> None:
        with self.cond:
            self.received.append(frame)
            self.cond.notify_all()

    def messages(self, type_: str | None = None) -> list[dict[str, Any]]:
        with self.cond:
            texts = [json.loads(f) for f in self.received if isinstance(f, str)]
        return [m for m in texts if type_ is None or m.get("type") == type_]

    def audio(self) -> list[bytes]:
        with self.cond:
            return [f for f in self.received if isinstance(f, bytes)]

    def wait_for(self, type_: str, count: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.messages(type_)) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"server never got {count} {type_}: {self.received}")
                self.cond.wait(left)
        return self.messages(type_)


Reaction = Callable[[dict[str, Any], Connection], Iterable[Any]]


def _turn(content: str) -> list[Any]:
    out: list[Any] = [
        msg("UserStartedSpeaking"),
        msg("ConversationText", role="user", content=content),
        msg("History", role="user", content=content),
        msg("EndOfThought"),
    ]
    if "fail" in content:
        return [msg("Error", code="FAILED_TO_THINK", description="The LLM failed."), CLOSE]
    if "weather" in content:
        return [*out, msg("FunctionCallRequest", functions=[WEATHER_CALL])]
    if "remind" in content:
        return [*out, msg("FunctionCallRequest", functions=[REMINDER_CALL])]
    return [*out, *_reply(f"You said: {content}")]


def _reply(text: str) -> list[Any]:
    return [
        msg("ConversationText", role="assistant", content=text),
        msg("History", role="assistant", content=text),
        msg("AgentStartedSpeaking", total_latency=0.5, tts_latency=0.2, ttt_latency=0.3),
        *AUDIO,
        msg("AgentAudioDone"),
    ]


def default_reaction(data: dict[str, Any], conn: Connection) -> list[Any]:
    kind = data.get("type")
    if kind == "Settings":
        return [msg("SettingsApplied")]
    if kind in ("UpdatePrompt", "UpdateSpeak", "UpdateThink"):
        return [msg(kind.replace("Update", "") + "Updated")]
    if kind == "InjectUserMessage":
        return _turn(str(data.get("content", "")))
    if kind == "InjectAgentMessage":
        text = str(data.get("message", ""))
        if "refuse" in text:
            return [msg("InjectionRefused", message="The agent is speaking.")]
        return [
            msg("ConversationText", role="assistant", content=text),
            *AUDIO,
            msg("AgentAudioDone"),
        ]
    if kind == "FunctionCallResponse":
        call = {**data, "client_side": True, "arguments": "{}", "response": data.get("content")}
        call.pop("type", None)
        call.pop("content", None)
        history = msg("History", function_calls=[call])
        return [history, *_reply(f"Result: {data.get('content')}")]
    return []


class FakeAgentServer:
    """``with FakeAgentServer() as server: ... server.url ... server.connections``."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        on_connect: Iterable[Any] = (),
        reaction: Reaction = default_reaction,
    ) -> None:
        self.api_key = api_key
        self.on_connect = list(on_connect)
        self.reaction = reaction
        self.connections: list[Connection] = []
        self.rejected = 0
        self._new = threading.Condition()
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> FakeAgentServer:
        self._server = serve(
            self._handle, "127.0.0.1", 0, process_request=self._check_auth, compression=None
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._thread.join(timeout=5)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.socket.getsockname()[1])

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def connection(self, index: int = 0, timeout: float = 5.0) -> Connection:
        deadline = time.monotonic() + timeout
        with self._new:
            while len(self.connections) <= index:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no connection #{index}")
                self._new.wait(left)
            return self.connections[index]

    def _check_auth(self, conn: ServerConnection, request: Request) -> Response | None:
        if self.api_key is None:
            return None
        if request.headers.get("Authorization") == f"Token {self.api_key}":
            return None
        self.rejected += 1
        return conn.respond(http.HTTPStatus.UNAUTHORIZED, "Invalid credentials.\n")

    def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        record = Connection(ws.request.path, dict(ws.request.headers.raw_items()))
        with self._new:
            self.connections.append(record)
            self._new.notify_all()
        try:
            if self._play(ws, [msg("Welcome", request_id="req-0001"), *self.on_connect]):
                for frame in ws:
                    record.add(frame)
                    if isinstance(frame, str) and not self._react(ws, frame, record):
                        break
        except ConnectionClosed:
            pass
        finally:
            ws.close()
            record.close_code = ws.close_code
            record.closed.set()

    def _react(self, ws: ServerConnection, frame: str, record: Connection) -> bool:
        data = json.loads(frame)
        return self._play(ws, self.reaction(data, record))

    @staticmethod
    def _play(ws: ServerConnection, frames: Iterable[Any]) -> bool:
        for frame in frames:
            if frame is CLOSE:
                ws.close(1000)
                return False
            if frame is ABORT:
                ws.close(1011, "scripted failure")
                return False
            try:
                ws.send(frame)
            except ConnectionClosed:
                return True  # the client is closing: still record what it sent before
        return True


SERVER_EVENTS = [
    "Open",
    "Close",
    "AudioData",
    "Welcome",
    "SettingsApplied",
    "ConversationText",
    "UserStartedSpeaking",
    "AgentThinking",
    "FunctionCallRequest",
    "AgentStartedSpeaking",
    "AgentAudioDone",
    "InjectionRefused",
    "Error",
    "Unhandled",
    "PromptUpdated",
    "SpeakUpdated",
    "ThinkUpdated",
    "History",
]


class Recorder:
    """Collects ``(event, payload)`` from handlers on any thread; ``wait`` blocks until seen."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.cond = threading.Condition()

    def handler(self, name: str) -> Callable[..., None]:
        def record(client: Any, payload: Any, **kwargs: Any) -> None:
            with self.cond:
                self.events.append((name, payload))
                self.cond.notify_all()

        return record

    def attach(self, connection: Any, names: Iterable[str] = SERVER_EVENTS) -> Recorder:
        for name in names:
            connection.on(name, self.handler(name))
        return self

    def names(self) -> list[str]:
        with self.cond:
            return [name for name, _ in self.events]

    def of(self, name: str) -> list[Any]:
        with self.cond:
            return [payload for n, payload in self.events if n == name]

    def wait(self, name: str, count: int = 1, timeout: float = 5.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.of(name)) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"never saw {count} {name}; saw {self.names()}")
                self.cond.wait(left)
        return self.of(name)

    async def await_(self, name: str, count: int = 1, timeout: float = 5.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        while len(self.of(name)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"never saw {count} {name}; saw {self.names()}")
            await asyncio.sleep(0.01)
        return self.of(name)
