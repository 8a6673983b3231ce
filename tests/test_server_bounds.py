"""Issue 15 over real sockets: size limits answered with codes, duplicate credentials refused,
``/metrics`` behind the API key when asked, ``/healthz`` degraded while the lane is stalled."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from conftest import SETTINGS, ServerThread, open_ws, recv_json, recv_until, start_session
from harken.engines.lane import shared_lane

pytestmark = pytest.mark.loopback


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_two_authorization_headers_get_400_not_a_guess(make_server: Any) -> None:
    server = make_server(api_keys=("k1",))
    for pair in (("Token k1", "Token k1"), ("Basic x", "Token k1"), ("Token k1", "Token nope")):
        with pytest.raises(InvalidStatus) as exc:
            open_ws(server, additional_headers=[("Authorization", value) for value in pair])
        assert exc.value.response.status_code == 400
        assert json.loads(exc.value.response.body)["err_code"] == "INVALID_AUTH"
    with start_session(server, additional_headers={"Authorization": "Token k1"}):
        pass


def test_metrics_can_require_the_api_key(make_server: Any) -> None:
    guarded = make_server(api_keys=("k1",), metrics_require_key=True)
    assert http_get(guarded.http("/metrics"))[0] == 401
    assert http_get(guarded.http("/metrics"), {"Authorization": "Token nope"})[0] == 401
    status, body = http_get(guarded.http("/metrics"), {"Authorization": "Token k1"})
    assert status == 200 and "harken_sessions_active" in body
    assert http_get(guarded.http("/healthz"))[0] == 200  # probes stay open
    open_metrics = make_server(api_keys=("k1",))
    assert http_get(open_metrics.http("/metrics"))[0] == 200


def test_healthz_is_degraded_while_the_lane_is_stalled_and_sessions_still_start(
    server: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    import harken.server.app as app

    monkeypatch.setattr(app, "STALL_SECONDS", 0.3)
    gate = threading.Event()
    holder = threading.Thread(target=lambda: asyncio.run(shared_lane().run(gate.wait, key="x")))
    holder.start()
    try:
        time.sleep(0.5)
        status, body = http_get(server.http("/healthz"))
        health = json.loads(body)
        assert status == 503 and health["status"] == "degraded"
        assert health["lane_stalled_seconds"] >= 0.3
        metrics = http_get(server.http("/metrics"))[1]
        stalled = [line for line in metrics.splitlines() if line.startswith("harken_lane_stalled")]
        assert stalled and float(stalled[0].split()[1]) >= 0.3
        with start_session(server):  # admission stays open: a stall may be one long step
            pass
    finally:
        gate.set()
        holder.join(5)
    assert http_get(server.http("/healthz"))[0] == 200


def test_an_oversized_injection_is_refused_and_the_session_goes_on(make_server: Any) -> None:
    server = make_server(max_message_chars=1000)
    with start_session(server) as ws:
        ws.send(json.dumps({"type": "InjectAgentMessage", "message": "word " * 40_000}))
        refused = recv_json(ws)
        assert refused["type"] == "InjectionRefused" and "200000 characters" in refused["message"]
        ws.send(json.dumps({"type": "InjectAgentMessage", "message": "Hello there."}))
        said = recv_until(ws, "AgentAudioDone")
        assert any(m.get("content") == "Hello there." for m in said)


def test_a_ten_thousand_message_context_is_cut_with_prompt_too_long(make_server: Any) -> None:
    server = make_server()
    settings = json.loads(json.dumps(SETTINGS))
    history = [{"role": "user", "content": f"note {i}"} for i in range(10_000)]
    settings["agent"]["context"] = {"messages": history}
    with open_ws(server) as ws:
        assert recv_json(ws)["type"] == "Welcome"
        ws.send(json.dumps(settings))
        seen = recv_until(ws, "SettingsApplied")
        (warning,) = [m for m in seen if m["type"] == "Warning"]
        assert warning["code"] == "PROMPT_TOO_LONG"
        assert "kept the newest 1000 of 10000" in warning["description"]
        ws.send(json.dumps({"type": "InjectUserMessage", "content": "Hello?"}))
        recv_until(ws, "AgentAudioDone", timeout=10)
