"""The server on loopback with a real websockets client: paths, handshake, auth, HTTP routes,
limits, idle timeout, session cap, internal errors, graceful shutdown."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from conftest import (
    EA,
    GA,
    SETTINGS,
    LogWatch,
    ServerThread,
    closing_error,
    harken_config,
    open_ws,
    recv_json,
    recv_until,
    start_session,
    still_answers,
)
from harken.server.app import HarkenServer

pytestmark = pytest.mark.loopback


def http_get(url: str) -> tuple[int, str, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


# ------------------------------------------------------------------------------- handshake


def test_ga_welcome_first_with_request_id_and_header(server: ServerThread) -> None:
    with open_ws(server, GA) as ws:
        welcome = recv_json(ws)
        assert welcome["type"] == "Welcome"
        assert uuid.UUID(welcome["request_id"]).version == 4
        assert ws.response is not None
        assert ws.response.headers["dg-request-id"] == welcome["request_id"]
        assert ws.subprotocol is None


def test_ea_welcome_has_session_id(server: ServerThread) -> None:
    with start_session(server, EA) as ws:
        ws.send(json.dumps({"type": "UpdateInstructions", "instructions": "Be brief."}))
        assert recv_json(ws)["type"] == "InstructionsUpdated"
    with open_ws(server, EA) as ws:
        welcome = recv_json(ws)
        assert set(welcome) == {"type", "session_id"} and welcome["type"] == "Welcome"
        assert ws.response is not None
        assert ws.response.headers["dg-request-id"] == welcome["session_id"]


def test_settings_sent_before_welcome_is_accepted(server: ServerThread) -> None:
    from conftest import SETTINGS

    with open_ws(server, GA + "?addon=1&x=y") as ws:  # query strings are ignored
        ws.send(json.dumps(SETTINGS, indent=4))  # the SDK sends at once, pretty-printed
        ws.send(b"\x00\x00" * 320)  # and audio right after
        assert recv_json(ws)["type"] == "Welcome"
        assert recv_json(ws)["type"] == "SettingsApplied"
        still_answers(ws)


def test_updates_and_keepalive(server: ServerThread) -> None:
    with start_session(server) as ws:
        ws.send(json.dumps({"type": "KeepAlive"}))
        ws.send(json.dumps({"type": "UpdatePrompt", "prompt": "New prompt."}))
        assert recv_json(ws)["type"] == "PromptUpdated"  # KeepAlive got no answer
        speak = {"provider": {"type": "deepgram", "model": "aura-2-luna-en"}}
        ws.send(json.dumps({"type": "UpdateSpeak", "speak": speak}))
        assert recv_json(ws)["type"] == "SpeakUpdated"
        think = {"provider": {"type": "open_ai", "model": "gpt-4o"}, "prompt": "p"}
        ws.send(json.dumps({"type": "UpdateThink", "think": think}))
        assert recv_json(ws)["type"] == "ThinkUpdated"


def test_a_turn_with_audio(server: ServerThread) -> None:
    with start_session(server) as ws:
        ws.send(json.dumps({"type": "InjectUserMessage", "content": "hello there"}))
        audio = 0
        kinds: list[str] = []
        while "AgentAudioDone" not in kinds:
            frame = ws.recv(timeout=5)
            if isinstance(frame, bytes):
                audio += len(frame)
            else:
                kinds.append(json.loads(frame)["type"])
        assert kinds[0] == "ConversationText" and "AgentStartedSpeaking" in kinds
        assert audio > 0 and audio % 2 == 0


def test_function_call_round_trip(server: ServerThread) -> None:
    with start_session(server) as ws:
        ws.send(json.dumps({"type": "InjectUserMessage", "content": "weather in Paris?"}))
        request = recv_until(ws, "FunctionCallRequest")[-1]
        call = request["functions"][0]
        assert call["name"] == "get_weather" and call["client_side"] is True
        answer = {"type": "FunctionCallResponse", "id": call["id"], "name": call["name"]}
        ws.send(json.dumps({**answer, "content": '{"temp_c": 21}'}))
        texts = [m for m in recv_until(ws, "AgentAudioDone") if m["type"] == "ConversationText"]
        assert any("temp_c" in m["content"] for m in texts)


def test_idle_timeout(make_server: Any) -> None:
    server = make_server(idle_timeout=1.0)
    with start_session(server) as ws:
        started = time.monotonic()
        error, code = closing_error(ws, timeout=5)
        assert error["code"] == "CLIENT_MESSAGE_TIMEOUT" and code == 1000
        assert 0.8 < time.monotonic() - started < 5


def test_keepalive_resets_idle_timeout(make_server: Any) -> None:
    server = make_server(idle_timeout=1.0)
    with start_session(server) as ws:
        for _ in range(4):
            time.sleep(0.4)
            ws.send(json.dumps({"type": "KeepAlive"}))
        still_answers(ws)


# ------------------------------------------------------------------------------- auth


@pytest.fixture(scope="module")
def secured() -> Any:
    running = ServerThread(harken_config(api_keys=("sekret-1", "sekret-2"))).start()
    yield running
    running.stop()


@pytest.mark.parametrize(
    ("headers", "subprotocols", "echo"),
    [
        ({"Authorization": "Token sekret-1"}, None, None),
        ({"Authorization": "token sekret-2"}, None, None),
        ({"Authorization": "Bearer sekret-1"}, None, None),
        ({"Authorization": "bearer sekret-1"}, None, None),  # deepgram-sdk 7.x access_token
        ({"Authorization": "BEARER sekret-2"}, None, None),
        ({"Authorization": "TOKEN sekret-2"}, None, None),
        ({}, ["token", "sekret-1"], "token"),
        ({}, ["bearer", "sekret-2"], "bearer"),
        # @deepgram/sdk 5.x in a browser (PROTOCOL.md 10)
        ({}, ["token", "sekret-1", "x-deepgram-session-id", str(uuid.uuid4())], "token"),
        ({}, ["bearer", "sekret-2", "x-deepgram-session-id", str(uuid.uuid4())], "bearer"),
    ],
)
def test_auth_accepted(
    secured: ServerThread, headers: dict[str, str], subprotocols: Any, echo: str | None
) -> None:
    with start_session(secured, additional_headers=headers, subprotocols=subprotocols) as ws:
        assert ws.subprotocol == echo


@pytest.mark.parametrize(
    ("headers", "subprotocols"),
    [
        ({}, None),
        ({"Authorization": "Token wrong"}, None),
        ({"Authorization": "Basic c2VrcmV0LTE="}, None),
        ({"Authorization": "Token"}, None),
        ({}, ["token", "wrong"]),
        ({}, ["token"]),
        ({}, ["sekret-1"]),
    ],
)
def test_auth_rejected_with_401(
    secured: ServerThread, headers: dict[str, str], subprotocols: Any
) -> None:
    with pytest.raises(InvalidStatus) as exc:
        open_ws(secured, additional_headers=headers, subprotocols=subprotocols)
    assert exc.value.response.status_code == 401
    assert json.loads(exc.value.response.body)["err_code"] == "INVALID_AUTH"
    assert exc.value.response.headers["WWW-Authenticate"] == 'Token realm="harken"'


def test_auth_protects_ea_path_but_not_healthz(secured: ServerThread) -> None:
    with pytest.raises(InvalidStatus):
        open_ws(secured, EA)
    assert http_get(secured.http("/healthz"))[0] == 200


def test_open_mode_echoes_offered_subprotocol(server: ServerThread) -> None:
    with open_ws(server, subprotocols=["token", "anything"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "token"
        assert recv_json(ws)["type"] == "Welcome"


def test_client_session_id_is_logged_with_the_session(server: ServerThread, logs: LogWatch) -> None:
    client_session = str(uuid.uuid4())
    headers = {"x-deepgram-session-id": client_session}
    with start_session(server, additional_headers=headers) as ws:
        request_id = ws.response.headers["dg-request-id"] if ws.response else ""
    from_list = str(uuid.uuid4())
    with start_session(server, subprotocols=["token", "k", "x-deepgram-session-id", from_list]):
        pass
    hostile = "x" * 500 + " y"
    with start_session(server, additional_headers={"x-deepgram-session-id": hostile}):
        pass
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [r.getMessage() for r in logs.records() if r.name == "harken.server"]
        if sum("closed" in line for line in lines) >= 3:
            break
        time.sleep(0.05)
    assert f"session {request_id} (client session {client_session}) opened (GA)" in lines
    assert f"session {request_id} (client session {client_session}) closed" in lines
    assert any(f"(client session {from_list}) opened" in line for line in lines)
    [long] = [line for line in lines if "xxxx" in line and "opened" in line]
    assert f"(client session {'x' * 64}) opened" in long  # bounded, nothing unprintable


def test_open_mode_is_logged_loudly(make_server: Any, logs: LogWatch) -> None:
    make_server()
    assert any("NO API KEYS" in r.getMessage() and r.levelname == "WARNING" for r in logs.records())
    assert any("TESTING PROVIDERS" in r.getMessage() for r in logs.records())


# ------------------------------------------------------------------------------- HTTP


def test_healthz_metrics_and_404(server: ServerThread) -> None:
    status, body, _ = http_get(server.http("/healthz?verbose=1"))
    assert status == 200 and json.loads(body)["status"] == "ok"
    with start_session(server) as ws:
        ws.send(b"\x00" * 640)
        still_answers(ws)
    status, body, headers = http_get(server.http("/metrics"))
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    for name in (
        "harken_sessions_active",
        'harken_sessions_total{generation="ga"}',
        'harken_client_messages_total{type="Settings"}',
        'harken_client_messages_total{type="audio"}',
        "harken_audio_in_bytes_total",
        "harken_audio_out_bytes_total",
        "harken_frame_handling_seconds_bucket",
        "harken_errors_total",
    ):
        assert name in body, name
    assert http_get(server.http("/nope"))[0] == 404
    assert http_get(server.http("/static/../app.py"))[0] == 404
    status, body, _ = http_get(server.http("/"))
    assert status == 200 and "harken" in body


def test_reply_latencies_are_histograms_on_metrics(make_server: Any) -> None:
    server = make_server()
    with start_session(server) as ws:
        for n in range(2):
            ws.send(json.dumps({"type": "InjectUserMessage", "content": f"Hello {n}"}))
            recv_until(ws, "AgentAudioDone")
    body = http_get(server.http("/metrics"))[1]
    assert "harken_reply_latency_seconds_count 2.0" in body
    assert 'harken_reply_latency_seconds_bucket{le="+Inf"} 2.0' in body
    assert "harken_end_of_turn_seconds_count 0.0" in body  # typed turns have no end of speech
    rss = re.search(r"^harken_process_resident_bytes (\S+)$", body, re.M)
    assert rss is not None and float(rss.group(1)) > 10e6
    assert "harken_sessions_suspended 0.0" in body
    # the process's LLM engines (0 here unless an earlier test loaded the embedded one)
    assert re.search(r"^harken_llm_kv_snapshots \d", body, re.M)
    assert re.search(r"^harken_llm_kv_snapshot_bytes \d", body, re.M)


def test_plain_http_to_ws_path_gets_426(server: ServerThread) -> None:
    assert http_get(server.http(GA))[0] == 426


def test_healthz_503_until_providers_load() -> None:
    running = ServerThread(harken_config())
    running._thread.start()
    try:
        running.call(running.server.start(load=False))
        status, body, _ = http_get(running.http("/healthz"))
        assert status == 503 and json.loads(body)["status"] == "loading"
        with pytest.raises(InvalidStatus) as exc:
            open_ws(running)
        assert exc.value.response.status_code == 503
        running.call(running.server.load())
        assert http_get(running.http("/healthz"))[0] == 200
    finally:
        running.stop()


# ------------------------------------------------------------------------------- limits


def test_session_cap(make_server: Any) -> None:
    """A full replica says so on /healthz and refuses the handshake with HTTP 503 before the
    upgrade (a balancer retries another replica); one slot frees, it takes sessions again."""
    server = make_server(max_sessions=2)
    first, second = start_session(server), start_session(server)
    status, body, _ = http_get(server.http("/healthz"))
    assert status == 503 and json.loads(body) | {"providers": 0} == {
        "status": "full",
        "providers": 0,
        "sessions": 2,
        "capacity": 2,
    }
    with pytest.raises(InvalidStatus) as refused:
        open_ws(server)
    response = refused.value.response
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert json.loads(response.body)["err_code"] == "TOO_MANY_SESSIONS"
    still_answers(first)
    first.close()
    deadline = time.monotonic() + 3
    while server.session_count() > 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert http_get(server.http("/healthz"))[0] == 200
    with start_session(server) as fourth:
        still_answers(fourth)
    second.close()
    metrics = http_get(server.http("/metrics"))[1]
    assert "harken_sessions_capacity 2.0" in metrics and "harken_draining 0.0" in metrics


def test_a_session_that_slips_past_a_full_check_still_gets_too_many_sessions(
    make_server: Any,
) -> None:
    """Two handshakes can pass the 503 check at once: the session cap behind it holds."""
    server = make_server(max_sessions=1)
    server.server._routes._health = lambda: (True, {"status": "ok"})  # both raced the check
    with start_session(server) as first, open_ws(server) as second:
        assert recv_json(second)["type"] == "Welcome"
        error, code = closing_error(second)
        assert error["code"] == "TOO_MANY_SESSIONS" and code == 1000
        still_answers(first)


def test_session_crash_is_contained(
    make_server: Any, logs: LogWatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harken.session.session import Session

    original = Session.receive_text

    def exploding(self: Session, data: str | bytes, now: float) -> None:
        if "BOOM" in str(data):
            raise RuntimeError("simulated bug")
        original(self, data, now)

    monkeypatch.setattr(Session, "receive_text", exploding)
    server = make_server()
    with start_session(server) as bystander, start_session(server) as victim:
        victim.send(json.dumps({"type": "InjectUserMessage", "content": "BOOM"}))
        error, code = closing_error(victim)
        assert error["code"] == "INTERNAL_SERVER_ERROR" and code == 1000
        still_answers(bystander)
    assert any("simulated bug" in str(r.exc_info) for r in logs.records() if r.exc_info)


def test_in_process_shutdown_sends_going_away() -> None:
    running = ServerThread(harken_config()).start()
    sessions = [start_session(running), start_session(running, EA)]
    started = time.monotonic()
    running.call(running.server.shutdown())
    for ws in sessions:
        error, code = closing_error(ws)
        assert error["code"] == "SERVER_GOING_AWAY" and code == 1001
        assert "shutting down" in error["description"]
    assert time.monotonic() - started < 5
    running.loop.call_soon_threadsafe(running.loop.stop)


def test_server_object_port_requires_start() -> None:
    with pytest.raises(AssertionError):
        _ = HarkenServer(harken_config()).port


def test_effect_crash_is_contained(
    make_server: Any, logs: LogWatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harken.protocol import messages as m
    from harken.server import connection

    original = connection.encode_server

    def exploding(message: m.ServerMessage, generation: m.Generation) -> tuple[str, ...]:
        if isinstance(message, m.SpeakUpdated):
            raise ValueError("simulated encoder bug")
        return original(message, generation)

    monkeypatch.setattr(connection, "encode_server", exploding)
    server = make_server()
    with start_session(server) as bystander, start_session(server) as victim:
        speak = {"provider": {"type": "deepgram", "model": "aura-2-luna-en"}}
        victim.send(json.dumps({"type": "UpdateSpeak", "speak": speak}))
        error, code = closing_error(victim)
        assert error["code"] == "INTERNAL_SERVER_ERROR" and code == 1000
        still_answers(bystander)
    assert any("simulated encoder bug" in str(r.exc_info) for r in logs.records() if r.exc_info)


async def test_turn_detection_auto_follows_what_the_stack_can_do() -> None:
    """``auto``: semantic with an end-of-turn model and a default LLM that scores the end of
    the user's message; the fixed silence otherwise (the testing stack's echo cannot score)."""
    from dataclasses import replace

    from harken.providers.base import Capabilities
    from harken.providers.compose import load_registry
    from harken.providers.testing import EchoLLM
    from harken.server.app import HarkenServer

    class ScoringEcho(EchoLLM):
        capabilities = Capabilities(streaming=True, tools=True, end_score=True)

    def semantic(registry: Any, detection: str = "auto") -> bool:
        server = HarkenServer(replace(harken_config(), turn_detection=detection), registry=registry)
        server._resolve_turn_detection(registry)
        return server._limits.turn.semantic

    registry = load_registry(harken_config())
    assert registry.engines.turn is not None
    assert not semantic(registry)  # EchoLLM
    registry.engines.llm["llm-default"] = ScoringEcho()
    assert semantic(registry)
    assert not semantic(registry, "silence")
    registry.engines.turn = None
    assert not semantic(registry)


def test_audio_frames_go_straight_to_the_session_in_their_order(
    make_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A binary frame that arrives while the receiver waits with nothing queued goes to the
    session from the connection's protocol callback (no queue, no task wake-up: the capacity
    hot path), and still in the order the client sent it: a text-only agent's first frame
    gets AUDIO_IGNORED before the UpdatePrompt sent after it is answered."""
    from harken.server.connection import Pump

    handled: list[bool] = []
    direct = Pump._audio

    def counting(self: Pump, data: bytes) -> bool:
        handled.append(direct(self, data))
        return handled[-1]

    monkeypatch.setattr(Pump, "_audio", counting)
    server = make_server()
    settings = json.loads(json.dumps(SETTINGS))
    del settings["agent"]["listen"]  # text-only: audio gets one Warning
    ws = start_session(server, settings=settings)
    for _ in range(20):
        ws.send(b"\x00\x01" * 320)
        time.sleep(0.005)
    ws.send(json.dumps({"type": "UpdatePrompt", "prompt": "Be brief."}))
    kinds = [(m["type"], m.get("code")) for m in recv_until(ws, "PromptUpdated")]
    assert kinds == [("Warning", "AUDIO_IGNORED"), ("PromptUpdated", None)], kinds
    assert sum(handled) >= 10, handled  # most frames went straight to the session
    ws.close()


def test_a_limit_tripped_on_the_direct_path_ends_the_session(make_server: Any) -> None:
    """An audio frame over the frame limit, taken on the direct path, stops the session with
    its Error and reads nothing more, as the receiver does."""
    server = make_server(max_frame_bytes=4096)
    ws = start_session(server)
    ws.send(b"\x00\x01" * 320)
    time.sleep(0.1)
    ws.send(b"\x00" * 8192)
    error = recv_until(ws, "Error")[-1]
    assert error["code"] == "MESSAGE_TOO_LARGE", error
    with pytest.raises(ConnectionClosed):
        for _ in range(50):
            ws.recv(timeout=2)
