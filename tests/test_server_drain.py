"""Draining and slot hygiene (issues 13, 14). A replica told to stop takes no new session
(``/healthz`` and the handshake answer 503, so a balancer goes elsewhere) and ends each live one
with SERVER_GOING_AWAY and a 1001 close once its turn is over, at the latest after drain_timeout.
A client that stops reading is closed; one that streams is never timed out, even when the
server's loop was too busy to read it."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from conftest import (
    ServerThread,
    closing_error,
    open_ws,
    recv_json,
    start_session,
    still_answers,
)
from phone_client import CarrierClient
from test_server import http_get

pytestmark = [pytest.mark.loopback, pytest.mark.timeout(60)]

SLOW = {"type": "InjectUserMessage", "content": "[slow] tell me a story"}  # ~0.5 s a word


def drain_in_background(server: ServerThread) -> threading.Thread:
    thread = threading.Thread(target=lambda: server.call(server.server.drain(), 60))
    thread.start()
    return thread


def wait_for(ws: Any, kind: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        message = recv_json(ws, max(0.01, deadline - time.monotonic()))
        if message["type"] == kind:
            return message


def test_a_drain_lets_a_reply_finish_and_closes_idle_sessions_at_once(make_server: Any) -> None:
    server = make_server()
    idle, busy = start_session(server), start_session(server)
    busy.send(json.dumps(SLOW))
    wait_for(busy, "ConversationText")  # the user's text; the reply is on its way
    started = time.monotonic()
    draining = drain_in_background(server)
    error, code = closing_error(idle)
    assert error["code"] == "SERVER_GOING_AWAY" and code == 1001  # 1001: clients reconnect
    assert time.monotonic() - started < 1.0
    status, body, _ = http_get(server.http("/healthz"))
    assert status == 503 and json.loads(body)["status"] == "draining"
    with pytest.raises(InvalidStatus) as refused:
        open_ws(server)
    assert refused.value.response.status_code == 503
    assert json.loads(refused.value.response.body)["err_code"] == "SERVER_GOING_AWAY"
    seen: list[str] = []
    with pytest.raises(ConnectionClosed):  # read until the close
        while True:
            seen.append(recv_json(busy, 15)["type"])
    assert seen.index("AgentAudioDone") < seen.index("Error")  # the reply was said in full
    assert busy.close_code == 1001
    draining.join(10)
    assert not draining.is_alive() and server.session_count() == 0


def test_a_drain_ends_a_long_turn_at_drain_timeout(make_server: Any) -> None:
    server = make_server(drain_timeout=0.5)
    busy = start_session(server)
    busy.send(json.dumps(SLOW))
    wait_for(busy, "ConversationText")
    started = time.monotonic()
    draining = drain_in_background(server)
    error, code = closing_error(busy)
    assert error["code"] == "SERVER_GOING_AWAY" and code == 1001
    assert 0.4 < time.monotonic() - started < 2.0
    draining.join(10)


def test_a_phone_call_is_not_hung_up_until_drain_timeout(make_server: Any) -> None:
    server = make_server(drain_timeout=1.0)
    with CarrierClient(server.url("/twilio")) as call:
        call.wait_for("mark")
        started = time.monotonic()
        draining = drain_in_background(server)
        deadline = time.monotonic() + 5
        while call.closed_code is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert call.closed_code == 1001
        assert time.monotonic() - started > 0.9  # at rest all along, but a call is not cut
    draining.join(10)


def test_a_client_that_stops_reading_is_closed_after_write_timeout(make_server: Any) -> None:
    """Slot hygiene: the agent talks, the client reads nothing; once a send has made no
    progress for write_timeout the session ends and frees its slot, and nobody else notices."""
    server = make_server(write_timeout=1.0)
    bystander = start_session(server)
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled = start_session(server, sock=sock)
    words = " ".join(f"Sentence number {n} is here." for n in range(300))  # ~80 s of speech
    stalled.send(json.dumps({"type": "InjectUserMessage", "content": words}))
    started = time.monotonic()
    deadline = started + 30
    while server.session_count() > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.session_count() == 1, "the stalled session was not closed"
    still_answers(bystander)
    metrics = http_get(server.http("/metrics"))[1]
    assert 'harken_errors_total{code="CLIENT_NOT_READING"} 1.0' in metrics
    sock.close()


def test_a_streaming_client_is_not_timed_out_while_the_server_cannot_read_it(
    make_server: Any,
) -> None:
    """Issue 14: the server stops reading a streaming client for longer than the idle timeout
    (its queue is full: a CPU hog starves the loop, a send is slow). The client sent all along:
    it is not timed out."""
    server = make_server(idle_timeout=1.0)
    ws = start_session(server)
    stop = threading.Event()

    def stream() -> None:
        while not stop.is_set():
            with contextlib.suppress(Exception):
                ws.send(b"\x00" * 640)  # 20 ms of silence
            time.sleep(0.02)

    sender = threading.Thread(target=stream)
    sender.start()
    time.sleep(0.3)
    (pump,) = server.server._pumps
    server.loop.call_soon_threadsafe(pump._room.clear)  # the pump stops reading (backpressure)
    time.sleep(1.8)
    server.loop.call_soon_threadsafe(pump._room.set)
    time.sleep(0.5)
    stop.set()
    sender.join(5)
    assert server.session_count() == 1  # still open: it never stopped sending
    still_answers(ws)
    ws.close()
