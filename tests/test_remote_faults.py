"""Model servers that fail: each fault gives the client one exact code, the fallback is taken
where one can be, the session stays alive, and a second session on the same server is served
meanwhile.

The failing servers are real (``tests/faulty_http.py``: a TCP server on loopback answering each
path its own wrong way; a port that refuses; a port whose backlog is full; a name that does not
resolve). harken runs with the testing providers, so the fallback and the neighbour are the
deterministic EchoLLM and ToneTTS, and ``think.endpoint``/``speak.endpoint`` come from Settings
(``allow_loopback_endpoints`` on), exactly as a client sends them.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from websockets.sync.client import ClientConnection

from conftest import SETTINGS, ServerThread, harken_config, recv_json, start_session, still_answers
from faulty_http import FaultyServer, closed_port, faulty_server, unaccepting_port

pytestmark = [pytest.mark.loopback, pytest.mark.timeout(60)]

TIMEOUT = 1.0  # endpoint_timeout: to the first byte and between bytes
CONNECT = 0.5  # endpoint_connect_timeout
ECHO = 'You said: "Hello there".'


@pytest.fixture(scope="module")
def faulty() -> Iterator[FaultyServer]:
    with faulty_server() as server:
        yield server


@pytest.fixture(scope="module")
def harken(faulty: FaultyServer) -> Iterator[ServerThread]:
    endpoints = {
        "broken-stt": {"kind": "stt", "url": f"http://127.0.0.1:{closed_port()}/v1/audio/x"},
    }
    config = harken_config(
        allow_loopback_endpoints=True,
        endpoint_timeout=TIMEOUT,
        endpoint_connect_timeout=CONNECT,
        endpoints=json.dumps(endpoints),
        models={"listen": {"deepgram/broken": "broken-stt"}},
    )
    running = ServerThread(config).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def neighbour(harken: ServerThread) -> Iterator[ClientConnection]:
    """A healthy session that talks while the others fail."""
    ws = start_session(harken)
    try:
        yield ws
    finally:
        ws.close()


def settings(
    think_url: str | None = None, speak_url: str | None = None, fallback: bool = False
) -> dict[str, Any]:
    out = copy.deepcopy(SETTINGS)
    agent = out["agent"]
    agent["think"].pop("functions")
    if think_url is not None:
        remote = {
            **agent["think"],
            "endpoint": {"url": think_url, "headers": {"authorization": "Bearer sk-secret"}},
        }
        agent["think"] = [remote, agent["think"]] if fallback else remote
    if speak_url is not None:
        remote = {
            "provider": {"type": "open_ai", "model": "tts-1", "voice": "alloy"},
            "endpoint": {"url": speak_url},
        }
        agent["speak"] = [remote, agent["speak"]] if fallback else remote
    return out


def turn(
    ws: ClientConnection, text: str = "Hello there", timeout: float = 10
) -> list[dict[str, Any]]:
    """Inject a user message; everything up to the reply's end (AgentAudioDone) or an Error."""
    ws.send(json.dumps({"type": "InjectUserMessage", "content": text}))
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while not seen or seen[-1]["type"] not in ("AgentAudioDone", "Error"):
        seen.append(recv_json(ws, max(0.01, deadline - time.monotonic())))
    return seen


def assistant(seen: list[dict[str, Any]]) -> list[str]:
    return [
        m["content"] for m in seen if m["type"] == "ConversationText" and m["role"] == "assistant"
    ]


def codes(seen: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(m["type"], m["code"]) for m in seen if m["type"] in ("Warning", "Error")]


def problem(seen: list[dict[str, Any]]) -> str:
    """The description of the one Warning or Error in ``seen``."""
    return next(m["description"] for m in seen if m["type"] in ("Warning", "Error"))


def neighbour_is_served(ws: ClientConnection) -> None:
    assert assistant(turn(ws)) == [ECHO]


def think_faults(faulty: FaultyServer) -> list[tuple[str, str, str]]:
    """(name, URL, what the description says) for each way a chat-completions server fails."""
    port = closed_port()
    return [
        ("refused", f"http://127.0.0.1:{port}/v1/chat/completions", "cannot connect"),
        ("dns", "http://no-such-host.invalid/v1/chat/completions", "Failed to resolve endpoint"),
        ("http-500", faulty.url("/status/500"), "answered HTTP 500: vendor says 500"),
        ("http-401", faulty.url("/status/401"), "answered HTTP 401: vendor says 401"),
        ("http-429", faulty.url("/status/429"), "answered HTTP 429: vendor says 429"),
        ("malformed", faulty.url("/malformed"), "malformed stream"),
        ("read-timeout", faulty.url("/hang"), f"sent nothing for {TIMEOUT:g} s"),
    ]


def test_each_think_fault_falls_back_with_a_warning(
    harken: ServerThread, faulty: FaultyServer, neighbour: ClientConnection
) -> None:
    for name, url, said in think_faults(faulty):
        ws = start_session(harken, settings=settings(think_url=url, fallback=True))
        started = time.monotonic()
        seen = turn(ws)
        took = time.monotonic() - started
        assert codes(seen) == [("Warning", "THINK_REQUEST_FAILED")], (name, seen)
        warning = next(m for m in seen if m["type"] == "Warning")
        assert said in warning["description"] and "falling back" in warning["description"], (
            name,
            warning,
        )
        assert "sk-secret" not in json.dumps(seen)  # headers never reach a message
        assert assistant(seen) == [ECHO], (name, seen)  # the fallback answered
        assert took < TIMEOUT + 3, (name, took)  # a dead server costs at most its timeout
        neighbour_is_served(neighbour)
        ws.close()


def test_each_think_fault_without_a_fallback_is_a_clean_error(
    harken: ServerThread, faulty: FaultyServer, neighbour: ClientConnection
) -> None:
    for name, url, said in think_faults(faulty):
        ws = start_session(harken, settings=settings(think_url=url))
        seen = turn(ws)
        assert codes(seen) == [("Error", "FAILED_TO_THINK")], (name, seen)
        assert said in seen[-1]["description"], (name, seen[-1])
        still_answers(ws)  # not fatal: the session goes on
        neighbour_is_served(neighbour)
        ws.close()


def test_connect_timeout(harken: ServerThread, neighbour: ClientConnection) -> None:
    with unaccepting_port() as port:
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        ws = start_session(harken, settings=settings(think_url=url, fallback=True))
        seen = turn(ws)
        assert codes(seen) == [("Warning", "THINK_REQUEST_FAILED")], seen
        assert f"did not accept a connection within {CONNECT:g} s" in problem(seen)
        assert assistant(seen) == [ECHO]
        neighbour_is_served(neighbour)
        ws.close()


@pytest.mark.parametrize(
    ("path", "said"),
    [("/cut", "cut the stream before it was complete"), ("/no-done", "ended the stream before")],
)
def test_a_stream_cut_mid_reply_is_an_error_even_with_a_fallback(
    harken: ServerThread, faulty: FaultyServer, neighbour: ClientConnection, path: str, said: str
) -> None:
    # words were already on their way to the client: starting over with another model would
    # say them twice, so the reply ends with the error
    ws = start_session(harken, settings=settings(think_url=faulty.url(path), fallback=True))
    seen = turn(ws)
    assert codes(seen) == [("Error", "FAILED_TO_THINK")], seen
    assert said in seen[-1]["description"], seen[-1]
    still_answers(ws)
    assert assistant(turn(ws, "Hello there")) == []  # the same remote fails the same way
    neighbour_is_served(neighbour)
    ws.close()


def test_speak_faults(
    harken: ServerThread, faulty: FaultyServer, neighbour: ClientConnection
) -> None:
    url = faulty.url("/status/503")
    ws = start_session(harken, settings=settings(speak_url=url, fallback=True))
    seen = turn(ws)
    assert codes(seen) == [("Warning", "SPEAK_REQUEST_FAILED")], seen
    assert "answered HTTP 503: vendor says 503" in problem(seen)
    assert assistant(seen) == [ECHO] and seen[-1]["type"] == "AgentAudioDone"
    ws.close()
    ws = start_session(harken, settings=settings(speak_url=faulty.url("/hang")))
    seen = turn(ws)
    assert codes(seen) == [("Error", "FAILED_TO_SPEAK")], seen
    still_answers(ws)
    neighbour_is_served(neighbour)
    ws.close()


def test_a_listen_endpoint_that_is_down_is_a_warning(
    harken: ServerThread, neighbour: ClientConnection
) -> None:
    config = settings()
    config["agent"]["listen"] = {"provider": {"type": "deepgram", "model": "broken"}}
    ws = start_session(harken, settings=config)
    tone = (np.sin(np.arange(16000) * 2 * np.pi * 440 / 16000) * 8000).astype("<i2").tobytes()
    silence = bytes(2 * 16000)
    for chunk in range(0, len(tone + silence), 640):
        ws.send((tone + silence)[chunk : chunk + 640])
    seen: list[dict[str, Any]] = []
    while not seen or seen[-1]["type"] != "Warning":
        seen.append(recv_json(ws, 10))
    assert seen[-1]["code"] == "FAILED_TO_LISTEN" and "cannot connect" in seen[-1]["description"]
    still_answers(ws)
    neighbour_is_served(neighbour)
    ws.close()
