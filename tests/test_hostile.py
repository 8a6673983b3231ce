"""Hostile input against a real server on loopback.

Every case asserts the exact wire answer (the Error code, or that no Error came), that the server
logged no traceback, and that a second, concurrent session on the same server still gets answers.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.sync.client import ClientConnection

from conftest import (
    EA,
    EA_SETTINGS,
    GA,
    SETTINGS,
    LogWatch,
    ServerThread,
    closing_error,
    open_ws,
    recv_json,
    recv_until,
    start_session,
    still_answers,
)

pytestmark = pytest.mark.loopback

UNPARSABLE = "UNPARSABLE_CLIENT_MESSAGE"
INVALID = "INVALID_SETTINGS"
BEFORE = "NON_SETTINGS_MESSAGE_BEFORE_SETTINGS"


@pytest.fixture
def bystander(server: ServerThread, logs: LogWatch) -> Iterator[ClientConnection]:
    """A healthy session that must be unaffected by whatever the test does."""
    ws = start_session(server)
    yield ws
    still_answers(ws)
    ws.close()
    assert logs.tracebacks() == []


def settings(**agent: Any) -> str:
    body = json.loads(json.dumps(SETTINGS))
    body["agent"].update(agent)
    return json.dumps(body)


def with_audio(section: dict[str, Any]) -> str:
    return json.dumps({**SETTINGS, "audio": section})


def send_all(ws: ClientConnection, frames: list[str | bytes]) -> None:
    with contextlib.suppress(Exception):  # the server may close while we are still sending
        for frame in frames:
            ws.send(frame)


# (id, path, send Settings first, frames, expected Error code)
FATAL: list[tuple[str, str, bool, list[str | bytes], str]] = [
    ("bad_json", GA, False, ['{"type": Settings}'], UNPARSABLE),
    ("truncated_json", GA, False, ['{"type": "Settings", "audio": {'], UNPARSABLE),
    ("json_array", GA, False, ["[]"], UNPARSABLE),
    ("json_number", GA, False, ["42"], UNPARSABLE),
    ("json_null", GA, False, ["null"], UNPARSABLE),
    ("json_string", GA, False, ['"Settings"'], UNPARSABLE),
    ("empty_text", GA, False, [""], UNPARSABLE),
    ("missing_type", GA, False, ['{"audio": {}}'], UNPARSABLE),
    ("type_not_string", GA, False, ['{"type": 5}'], UNPARSABLE),
    ("type_is_object", GA, False, ['{"type": {"name": "Settings"}}'], UNPARSABLE),
    ("unknown_type", GA, False, ['{"type": "Bogus"}'], UNPARSABLE),
    (
        "settings_audio_wrong_type",
        GA,
        False,
        [json.dumps({**SETTINGS, "audio": "loud"})],
        UNPARSABLE,
    ),
    ("settings_agent_wrong_type", GA, False, [json.dumps({**SETTINGS, "agent": 5})], UNPARSABLE),
    ("settings_listen_wrong_type", GA, False, [settings(listen=[1, 2])], UNPARSABLE),
    (
        "settings_bad_encoding",
        GA,
        False,
        [with_audio({"input": {"encoding": "flac", "sample_rate": 16000}})],
        INVALID,
    ),
    (
        "settings_bad_rate",
        GA,
        False,
        [with_audio({"input": {"encoding": "linear16", "sample_rate": -5}})],
        INVALID,
    ),
    (
        "settings_rate_not_number",
        GA,
        False,
        [with_audio({"input": {"encoding": "linear16", "sample_rate": "fast"}})],
        INVALID,
    ),
    ("settings_output_mp3", GA, False, [with_audio({"output": {"encoding": "mp3"}})], INVALID),
    (
        "settings_unknown_model",
        GA,
        False,
        [settings(speak={"provider": {"type": "deepgram", "model": "no-such-voice"}})],
        INVALID,
    ),
    (
        "settings_think_endpoint_metadata",
        GA,
        False,
        [
            settings(
                think={
                    "provider": {"type": "open_ai", "model": "gpt-4o"},
                    "endpoint": {"url": "http://169.254.169.254/v1/chat/completions"},
                }
            )
        ],
        INVALID,
    ),
    (
        "agent_id_string",
        GA,
        False,
        [json.dumps({**SETTINGS, "agent": "0b0f7c1e-0000-4000-8000-000000000000"})],
        "AGENT_ID_NOT_SUPPORTED",
    ),
    ("second_settings", GA, True, [json.dumps(SETTINGS)], "SETTINGS_ALREADY_APPLIED"),
    ("audio_before_settings", GA, False, [b"\x00\x00" * 160], BEFORE),
    ("update_prompt_before_settings", GA, False, ['{"type":"UpdatePrompt","prompt":"x"}'], BEFORE),
    ("inject_before_settings", GA, False, ['{"type":"InjectUserMessage","content":"x"}'], BEFORE),
    ("nesting_depth", GA, False, ["[" * 200_000 + "]" * 200_000], UNPARSABLE),
    (
        "nesting_in_settings",
        GA,
        False,
        ['{"type":"Settings","agent":' + '{"a":' * 50_000 + "1" + "}" * 50_001],
        UNPARSABLE,
    ),
    ("nan_literal", GA, True, ['{"type":"UpdatePrompt","prompt":NaN}'], UNPARSABLE),
    ("infinity_literal", GA, True, ['{"type":"KeepAlive","x":-Infinity}'], UNPARSABLE),
    ("huge_number", GA, True, ['{"type":"KeepAlive","n":' + "9" * 20_000 + "}"], UNPARSABLE),
    ("ea_message_on_ga", GA, False, [json.dumps(EA_SETTINGS)], UNPARSABLE),
    ("ga_message_on_ea", EA, False, [json.dumps(SETTINGS)], UNPARSABLE),
    (
        "ea_update_on_ga",
        GA,
        True,
        ['{"type":"UpdateInstructions","instructions":"x"}'],
        UNPARSABLE,
    ),
    (
        "inject_wrong_field_type",
        GA,
        True,
        ['{"type":"InjectAgentMessage","message":5}'],
        UNPARSABLE,
    ),
    (
        "function_response_missing_content",
        GA,
        True,
        ['{"type":"FunctionCallResponse","id":"x","name":"y"}'],
        UNPARSABLE,
    ),
    ("update_speak_bad_shape", GA, True, ['{"type":"UpdateSpeak","speak":"loud"}'], UNPARSABLE),
]


@pytest.mark.parametrize(
    ("path", "settings_first", "frames", "code"),
    [case[1:] for case in FATAL],
    ids=[case[0] for case in FATAL],
)
def test_fatal_input(
    server: ServerThread,
    bystander: ClientConnection,
    path: str,
    settings_first: bool,
    frames: list[str | bytes],
    code: str,
) -> None:
    ws = start_session(server, path) if settings_first else open_ws(server, path)
    if not settings_first:
        assert recv_json(ws)["type"] == "Welcome"
    send_all(ws, frames)
    error, close_code = closing_error(ws)
    assert error.get("code") == code, error
    assert error.get("description") and close_code == 1000


# ------------------------------------------------------------------------------- limits


def test_oversized_text_frame(server: ServerThread, bystander: ClientConnection) -> None:
    ws = start_session(server)
    prompt = "x" * (1 << 20)
    send_all(ws, [json.dumps({"type": "UpdatePrompt", "prompt": prompt})])
    error, code = closing_error(ws)
    assert error["code"] == "MESSAGE_TOO_LARGE" and code == 1000


def test_oversized_multibyte_text_frame(server: ServerThread, bystander: ClientConnection) -> None:
    ws = start_session(server)
    prompt = "é" * 600_000  # 600k characters, 1.2 MB of UTF-8
    send_all(ws, [json.dumps({"type": "UpdatePrompt", "prompt": prompt}, ensure_ascii=False)])
    error, code = closing_error(ws)
    assert error["code"] == "MESSAGE_TOO_LARGE" and code == 1000


def test_oversized_binary_frame(server: ServerThread, bystander: ClientConnection) -> None:
    ws = start_session(server)
    send_all(ws, [b"\x00" * ((1 << 20) + 2)])
    error, code = closing_error(ws)
    assert error["code"] == "MESSAGE_TOO_LARGE" and code == 1000


def test_too_many_fragments(server: ServerThread, bystander: ClientConnection) -> None:
    ws = start_session(server)
    send_all(ws, [["k"] * 5000])  # type: ignore[list-item]  # one message, 5000 fragments
    error, code = closing_error(ws)
    assert error["code"] == "MESSAGE_TOO_LARGE" and code == 1000


def test_text_flood(server: ServerThread, bystander: ClientConnection) -> None:
    ws = start_session(server)
    send_all(ws, ['{"type":"KeepAlive"}'] * 1000)
    error, code = closing_error(ws)
    assert error["code"] == "RATE_LIMITED" and code == 1000


def test_binary_flood(server: ServerThread, bystander: ClientConnection) -> None:
    ws = start_session(server)  # 16 kHz linear16: 32 kB/s, so 16x for 5 s is 2.56 MB
    send_all(ws, [b"\x00" * 65536] * 100)
    error, code = closing_error(ws)
    assert error["code"] == "RATE_LIMITED" and code == 1000


def test_audio_at_real_time_burst_is_fine(
    server: ServerThread, bystander: ClientConnection
) -> None:
    with start_session(server) as ws:
        send_all(ws, [b"\x00" * 640] * 250)  # 5 s of audio at once, then more later
        still_answers(ws)


def test_invalid_utf8_text(server: ServerThread, bystander: ClientConnection) -> None:
    ws = start_session(server)
    ws.send(b'{"type":"UpdatePrompt","prompt":"\xff\xfe"}', text=True)
    error, code = closing_error(ws)
    assert error["code"] == UNPARSABLE and code == 1000


# ------------------------------------------------------------------------------- not fatal


def test_function_response_unknown_id_is_a_warning(
    server: ServerThread, bystander: ClientConnection
) -> None:
    with start_session(server) as ws:
        answer = {"type": "FunctionCallResponse", "id": "nope", "name": "x", "content": "{}"}
        ws.send(json.dumps(answer))
        warning = recv_json(ws)
        assert warning["type"] == "Warning" and warning["code"] == "UNKNOWN_FUNCTION_CALL_ID"
        still_answers(ws)


def test_unknown_fields_are_a_warning(server: ServerThread, bystander: ClientConnection) -> None:
    with start_session(server) as ws:
        ws.send(json.dumps({"type": "KeepAlive", "junk": {"deep": [1, 2, 3]}, "more": None}))
        warning = recv_json(ws)
        assert warning["code"] == "UNKNOWN_FIELDS_IGNORED" and "junk" in warning["description"]
        still_answers(ws)


def test_extremely_long_prompt(server: ServerThread, bystander: ClientConnection) -> None:
    with start_session(server) as ws:
        ws.send(json.dumps({"type": "UpdatePrompt", "prompt": "y" * 900_000}))
        kinds = [m["type"] for m in recv_until(ws, "PromptUpdated")]
        assert "Error" not in kinds
        still_answers(ws)


def test_lone_surrogate_is_not_fatal(server: ServerThread, bystander: ClientConnection) -> None:
    with start_session(server) as ws:
        ws.send('{"type":"InjectUserMessage","content":"hi \\ud800 there"}')
        kinds = [m["type"] for m in recv_until(ws, "AgentAudioDone")]
        assert "Error" not in kinds
        still_answers(ws)


def test_odd_sized_audio_frames(server: ServerThread, bystander: ClientConnection) -> None:
    with start_session(server) as ws:
        for size in (1, 3, 0, 7, 641):
            ws.send(b"\x01" * size)
        still_answers(ws)


# ------------------------------------------------------------------------------- transport


def wait_for_sessions(server: ServerThread, count: int) -> None:
    deadline = time.monotonic() + 5
    while server.session_count() > count and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.session_count() <= count


def test_abrupt_disconnect_mid_message(server: ServerThread, bystander: ClientConnection) -> None:
    baseline = server.session_count()
    ws = start_session(server)
    raw = ws.socket
    raw.sendall(b"\x81\xfe\x10\x00\x00\x00\x00\x00" + b'{"type":"Upd')  # 4 kB frame, 12 bytes
    raw.close()
    wait_for_sessions(server, baseline)


def test_abrupt_disconnect_mid_job(server: ServerThread, bystander: ClientConnection) -> None:
    baseline = server.session_count()
    ws = start_session(server)
    ws.send(json.dumps({"type": "InjectUserMessage", "content": "[slow] talk slowly"}))
    assert recv_json(ws)["type"] == "ConversationText"
    ws.socket.shutdown(socket.SHUT_RDWR)
    ws.socket.close()
    wait_for_sessions(server, baseline)


def test_abrupt_disconnect_during_audio(server: ServerThread, bystander: ClientConnection) -> None:
    baseline = server.session_count()
    ws = start_session(server)
    ws.send(json.dumps({"type": "InjectUserMessage", "content": "x" * 400}))  # 4 s of tone
    ws.socket.close()
    wait_for_sessions(server, baseline)


def raw_exchange(server: ServerThread, payload: bytes, wait: float = 2.0) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=wait) as sock:
        if payload:
            sock.sendall(payload)
        chunks = []
        with contextlib.suppress(OSError):
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
        return b"".join(chunks)


def test_garbage_without_handshake(server: ServerThread, bystander: ClientConnection) -> None:
    answer = raw_exchange(server, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 4")


def test_half_open_connection(server: ServerThread, bystander: ClientConnection) -> None:
    sock = socket.create_connection(("127.0.0.1", server.port))
    try:
        sock.sendall(b"GET /v1/agent/converse HTTP/1.1\r\nHost: x\r\n")  # never finishes
        still_answers(bystander)
    finally:
        sock.close()


def test_plain_http_to_ws_path(server: ServerThread, bystander: ClientConnection) -> None:
    answer = raw_exchange(server, b"GET /v1/agent/converse HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 426")


def test_post_to_ws_path(server: ServerThread, bystander: ClientConnection) -> None:
    request = b"POST /v1/agent/converse HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
    answer = raw_exchange(server, request)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 4")


def test_bad_websocket_version(server: ServerThread, bystander: ClientConnection) -> None:
    request = (
        b"GET /v1/agent/converse HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 7\r\n\r\n"
    )
    assert raw_exchange(server, request).startswith(b"HTTP/1.1 4")


def test_huge_http_headers(server: ServerThread, bystander: ClientConnection) -> None:
    request = (
        b"GET /v1/agent/converse HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n"
    )
    answer = raw_exchange(server, request)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 4")


def test_invalid_close_code_from_client(server: ServerThread, bystander: ClientConnection) -> None:
    baseline = server.session_count()
    ws = start_session(server)
    ws.socket.sendall(b"\x88\x82\x00\x00\x00\x00\x03\xe7")  # close frame with code 999
    with contextlib.suppress(Exception):
        ws.recv(timeout=2)
    ws.socket.close()
    wait_for_sessions(server, baseline)


def test_many_connections_opened_and_dropped(
    server: ServerThread, bystander: ClientConnection
) -> None:
    baseline = server.session_count()
    for _ in range(30):
        ws = open_ws(server)
        ws.socket.close()
    wait_for_sessions(server, baseline)
