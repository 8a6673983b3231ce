"""Shared fixtures: a real harken server on 127.0.0.1:0 (testing providers) in a background
thread with its own event loop, log capture, and small websocket client helpers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from websockets.sync.client import ClientConnection, connect

from harken.config import ServerConfig, load_config
from harken.server.app import HarkenServer

# Hypothesis's timing checks measure this 2-core VM, not the code: a CI run failed when one draw
# of a four-key dict took 3.7 s (test_carrier_codec, derandomized: the same inputs pass in
# milliseconds). Tests that need a deadline set one themselves.
settings.register_profile("harken", suppress_health_check=[HealthCheck.too_slow], deadline=None)
settings.load_profile("harken")

GA = "/v1/agent/converse"
EA = "/agent"

SETTINGS: dict[str, Any] = {
    "type": "Settings",
    "audio": {
        "input": {"encoding": "linear16", "sample_rate": 16000},
        "output": {"encoding": "linear16", "sample_rate": 24000, "container": "none"},
    },
    "agent": {
        "listen": {"provider": {"type": "deepgram", "model": "nova-3"}},
        "think": {
            "provider": {"type": "open_ai", "model": "gpt-4o-mini"},
            "prompt": "You are a test agent.",
            "functions": [
                {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "parameters": {
                        "type": "object",
                        "properties": {"location": {"type": "string"}},
                        "required": ["location"],
                    },
                }
            ],
        },
        "speak": {"provider": {"type": "deepgram", "model": "aura-2-thalia-en"}},
    },
}

EA_SETTINGS: dict[str, Any] = {
    "type": "SettingsConfiguration",
    "audio": {"input": {"encoding": "linear16", "sample_rate": 16000}},
    "agent": {
        "listen": {"model": "nova-2"},
        "think": {"provider": {"type": "open_ai"}, "model": "gpt-4o-mini", "instructions": "Hi."},
        "speak": {"model": "aura-asteria-en"},
    },
}


# ------------------------------------------------------------------------------- logs


class RecordingHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock:
            self.records.append(record)

    def mark(self) -> int:
        with self._lock:
            return len(self.records)

    def since(self, mark: int) -> list[logging.LogRecord]:
        with self._lock:
            return list(self.records[mark:])


_HANDLER = RecordingHandler()


@pytest.fixture(scope="session", autouse=True)
def _record_logs() -> Iterator[None]:
    root = logging.getLogger()
    root.addHandler(_HANDLER)
    old = root.level
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(_HANDLER)
        root.setLevel(old)


@dataclass
class LogWatch:
    """Records logged since it was created; ``tracebacks()`` lists any with exc_info."""

    handler: RecordingHandler
    start: int = field(init=False)

    def __post_init__(self) -> None:
        self.start = self.handler.mark()

    def records(self) -> list[logging.LogRecord]:
        return self.handler.since(self.start)

    def tracebacks(self) -> list[str]:
        return [
            f"{r.name}: {r.getMessage()}"
            for r in self.records()
            if r.exc_info or r.exc_text or r.levelno >= logging.ERROR
        ]


@pytest.fixture
def logs() -> LogWatch:
    return LogWatch(_HANDLER)


# ------------------------------------------------------------------------------- servers


class ServerThread:
    """A HarkenServer running on its own event loop in a daemon thread."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.loop = asyncio.new_event_loop()
        self.server = HarkenServer(config)
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> ServerThread:
        self._thread.start()
        self.call(self.server.start())
        return self

    def call(self, coro: Any, timeout: float = 20.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.call(self.server.shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    @property
    def port(self) -> int:
        return self.server.port

    def url(self, path: str = GA) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def http(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def session_count(self) -> int:
        return len(self.server._pumps)


@contextlib.contextmanager
def serving(config: ServerConfig) -> Iterator[ServerThread]:
    """A server with ``config`` for the duration of a ``with`` (or a fixture's ``yield``)."""
    running = ServerThread(config).start()
    try:
        yield running
    finally:
        running.stop()


def harken_config(**overrides: Any) -> ServerConfig:
    base: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "providers": "testing"}
    base.update(overrides)
    return load_config(None, {}, base)


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    """One open-mode server with the testing providers, shared by a test module."""
    running = ServerThread(harken_config()).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def embedded() -> Iterator[ServerThread]:
    """One real server with the embedded models, shared by a test module (~5 s to load)."""
    from harken.errors import HarkenError
    from speech import missing

    running = ServerThread(harken_config(providers="embedded"))
    try:
        running.start()
    except HarkenError as exc:
        running.stop()
        missing(f"the embedded models did not load: {exc}")
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def make_server() -> Iterator[Callable[..., ServerThread]]:
    """Factory for servers with special configuration; all are stopped after the test."""
    started: list[ServerThread] = []

    def make(**overrides: Any) -> ServerThread:
        running = ServerThread(harken_config(**overrides)).start()
        started.append(running)
        return running

    try:
        yield make
    finally:
        for running in started:
            running.stop()


# ------------------------------------------------------------------------------- clients


def open_ws(server: ServerThread, path: str = GA, **kwargs: Any) -> ClientConnection:
    kwargs.setdefault("open_timeout", 5)
    kwargs.setdefault("close_timeout", 2)
    kwargs.setdefault("legacy", True)
    return connect(server.url(path), **kwargs)


def recv_json(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    """The next JSON message, skipping binary audio."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no JSON message in time")
        frame = ws.recv(timeout=left)
        if isinstance(frame, str):
            message: dict[str, Any] = json.loads(frame)
            return message


def recv_until(ws: ClientConnection, kind: str, timeout: float = 5.0) -> list[dict[str, Any]]:
    """Messages up to and including the first of type ``kind``."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        message = recv_json(ws, max(0.01, deadline - time.monotonic()))
        seen.append(message)
        if message.get("type") == kind:
            return seen


def start_session(
    server: ServerThread, path: str = GA, settings: dict[str, Any] | None = None, **kwargs: Any
) -> ClientConnection:
    """Connect, check Welcome, send Settings, wait for SettingsApplied."""
    ws = open_ws(server, path, **kwargs)
    welcome = recv_json(ws)
    assert welcome["type"] == "Welcome", welcome
    default = SETTINGS if path == GA else EA_SETTINGS
    ws.send(json.dumps(settings if settings is not None else default))
    applied = recv_json(ws)
    assert applied["type"] == "SettingsApplied", applied
    return ws


def closing_error(ws: ClientConnection, timeout: float = 5.0) -> tuple[dict[str, Any], int | None]:
    """Read until the server closes; return the Error it sent and the close code."""
    error: dict[str, Any] = {}
    deadline = time.monotonic() + timeout
    with contextlib.suppress(Exception):
        while time.monotonic() < deadline:
            frame = ws.recv(timeout=max(0.01, deadline - time.monotonic()))
            if isinstance(frame, str):
                message = json.loads(frame)
                if message.get("type") == "Error":
                    error = message
    code = ws.close_code
    if code is None:
        ws.close()
        code = ws.close_code
    return error, code


def still_answers(ws: ClientConnection) -> None:
    """A healthy session answers UpdatePrompt with PromptUpdated."""
    ws.send(json.dumps({"type": "UpdatePrompt", "prompt": "Still here?"}))
    seen = recv_until(ws, "PromptUpdated", timeout=5)
    assert seen[-1]["type"] == "PromptUpdated"
