"""Resume after a dropped connection (issue 13): a socket cut without a close frame keeps its
session for ``resume_window``; a reconnect with the same ``x-deepgram-session-id`` and the same
credential goes on with the same conversation and no new Settings."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection

from conftest import ServerThread, open_ws, recv_json, recv_until, start_session

pytestmark = [pytest.mark.loopback, pytest.mark.timeout(60)]

LONG = {  # the testing agent echoes it, a word every 0.5 s ([slow]), sentence by sentence
    "type": "InjectUserMessage",
    "content": "[slow] Yes. Tell me a rather long story about the sea and all its ships.",
}
REPLY = f'You said: "{LONG["content"]}".'


def cut(ws: ClientConnection) -> None:
    """Drop the TCP connection with no close frame, as a network blip does."""
    ws.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    ws.socket.close()


def headers(session_id: str, key: str | None = None) -> dict[str, str]:
    out = {"x-deepgram-session-id": session_id}
    if key is not None:
        out["Authorization"] = f"Token {key}"
    return out


def history(server: ServerThread) -> list[tuple[str, str]]:
    (pump,) = server.server._pumps
    return [(m.role, m.content) for m in pump.session.turns.conversation.messages("", None)]


def wait_parked(server: ServerThread, count: int = 1) -> None:
    deadline = time.monotonic() + 5
    while len(server.server._parking) != count:
        assert time.monotonic() < deadline, "the session was not suspended"
        time.sleep(0.01)


def resume(server: ServerThread, session_id: str, key: str | None = None) -> ClientConnection:
    ws = open_ws(server, additional_headers=headers(session_id, key))
    assert recv_json(ws)["type"] == "Welcome"
    return ws


def test_a_dropped_connection_resumes_mid_reply_with_the_conversation(make_server: Any) -> None:
    server = make_server()
    session_id = str(uuid.uuid4())
    first = start_session(server, additional_headers=headers(session_id))
    request_id = server.server._pumps.copy().pop().session.request_id
    first.send(json.dumps(LONG))
    recv_until(first, "AgentStartedSpeaking")
    time.sleep(0.3)  # the first sentence is out; the rest is still being thought
    cut(first)
    wait_parked(server)
    again = resume(server, session_id)  # no Settings: the JS SDK does not resend them
    assert server.server._pumps.copy().pop().session.request_id == request_id
    said = history(server)
    assert said[0] == ("user", LONG["content"])
    kept = said[1][1].rstrip("…")
    assert said[1][0] == "assistant" and REPLY.startswith(kept) and len(kept) < len(REPLY) / 2
    again.send(json.dumps({"type": "InjectUserMessage", "content": "And then?"}))
    seen = recv_until(again, "AgentAudioDone", timeout=15)
    assert any(m["type"] == "ConversationText" and m["role"] == "assistant" for m in seen)
    assert [role for role, _ in history(server)] == ["user", "assistant", "user", "assistant"]
    again.close()


def test_no_resume_after_the_window_or_a_clean_close(make_server: Any) -> None:
    server = make_server(resume_window=0.3)
    session_id = str(uuid.uuid4())
    first = start_session(server, additional_headers=headers(session_id))
    cut(first)
    wait_parked(server)
    time.sleep(0.5)
    assert len(server.server._parking) == 0
    with start_session(server, additional_headers=headers(session_id)) as fresh:  # Settings again
        fresh.send(json.dumps({"type": "InjectUserMessage", "content": "Hi"}))
        recv_until(fresh, "AgentAudioDone")
        assert history(server)[0] == ("user", "Hi")  # a new conversation
    time.sleep(0.2)
    assert len(server.server._parking) == 0  # a close frame ends the session for good


def test_another_credential_never_resumes_someone_elses_session(make_server: Any) -> None:
    server = make_server(api_keys=["alice-key", "mallory-key"])
    session_id = str(uuid.uuid4())
    first = start_session(server, additional_headers=headers(session_id, "alice-key"))
    first.send(json.dumps({"type": "InjectUserMessage", "content": "My PIN is 4321."}))
    recv_until(first, "AgentAudioDone")
    cut(first)
    wait_parked(server)
    with resume(server, session_id, "mallory-key") as mallory:
        mallory.send(json.dumps({"type": "InjectUserMessage", "content": "What was my PIN?"}))
        closing = recv_until(mallory, "Error")  # a new session: it needs Settings first
        assert closing[-1]["code"] == "NON_SETTINGS_MESSAGE_BEFORE_SETTINGS"
        assert len(server.server._parking) == 1  # alice's session is still kept for her
    again = resume(server, session_id, "alice-key")
    assert history(server)[0] == ("user", "My PIN is 4321.")
    again.close()


def test_a_session_without_settings_is_not_kept(make_server: Any) -> None:
    server = make_server()
    ws = open_ws(server, additional_headers=headers(str(uuid.uuid4())))
    assert recv_json(ws)["type"] == "Welcome"
    cut(ws)
    time.sleep(0.3)
    assert len(server.server._parking) == 0 and server.session_count() == 0


def test_a_reconnect_takes_over_a_connection_whose_drop_went_unnoticed(make_server: Any) -> None:
    """A network blip: the old socket still looks open to the server when the client comes
    back; the same session id and credential take its session over."""
    server = make_server()
    session_id = str(uuid.uuid4())
    old = start_session(server, additional_headers=headers(session_id))
    old.send(json.dumps({"type": "InjectUserMessage", "content": "Remember the word teal."}))
    recv_until(old, "AgentAudioDone")
    again = resume(server, session_id)  # the old connection was never closed
    assert history(server)[0] == ("user", "Remember the word teal.")
    assert server.session_count() == 1
    again.close()
    old.close()


def test_the_official_js_sdk_reconnects_into_the_same_conversation(make_server: Any) -> None:
    """@deepgram/sdk 5.x reconnects by itself after a drop and does not resend Settings: with
    resume, its next turn is answered in the same conversation."""
    node = shutil.which("node")
    js = Path(__file__).parent / "official" / "js"
    if node is None or not (js / "node_modules" / "@deepgram" / "sdk").is_dir():
        pytest.fail("node or tests/official/js/node_modules is missing: run `make sdk-venvs`")
    server = make_server()
    base = f"ws://127.0.0.1:{server.port}"
    proc = subprocess.Popen(
        [node, "resume_flow.mjs", base], cwd=js, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("CUT "), line
        session_id = line.split()[1]
        (pump,) = [p for p in server.server._pumps if p.client_session == session_id]
        kept = pump.session
        server.loop.call_soon_threadsafe(pump.ws.transport.abort)  # no close frame
        out, _ = proc.communicate(timeout=40)
    finally:
        proc.kill()
    report = json.loads(out.strip().splitlines()[-1])
    assert report["welcome"] and report["applied"] and report["first_reply"], report
    assert report["opens"] == 2 and report["rewelcome"] and report["second_reply"], report
    assert "SettingsApplied" not in report["after"] and "Error" not in report["after"], report
    users = [m.content for m in kept.turns.conversation.messages("", None) if m.role == "user"]
    assert users == ["Remember the word teal.", "Which word was it?"]  # one conversation
