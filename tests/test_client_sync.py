"""The threaded client against a scripted GA agent on a real loopback socket."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from harken import (
    AgentWebSocketClient,
    AgentWebSocketEvents,
    DeepgramApiError,
    DeepgramClient,
    DeepgramClientOptions,
    FunctionCallResponse,
    InjectAgentMessageOptions,
    InjectUserMessageOptions,
    Listen,
    Provider,
    SettingsOptions,
    Speak,
    Think,
    UpdatePromptOptions,
    UpdateSpeakOptions,
    UpdateThinkOptions,
)

try:
    from test_client_fakeserver import ABORT, AUDIO, FakeAgentServer, Recorder, msg
except ImportError:  # pragma: no cover - when tests/ is imported as a package
    from tests.test_client_fakeserver import ABORT, AUDIO, FakeAgentServer, Recorder, msg

E = AgentWebSocketEvents
OPTIONS = SettingsOptions()
OPTIONS.agent.listen = Listen(model="nova-3", encoding="linear16", sample_rate=16000)
OPTIONS.agent.think = Think(provider=Provider(type="open_ai", model="gpt-4o-mini"), prompt="Hi.")
OPTIONS.agent.speak = Speak(model="aura-2-thalia-en", encoding="linear16", sample_rate=24000)


@pytest.fixture
def server() -> Iterator[FakeAgentServer]:
    with FakeAgentServer() as srv:
        yield srv


def connect(server: FakeAgentServer, **options: Any) -> tuple[AgentWebSocketClient, Recorder]:
    client = DeepgramClient("test-key", DeepgramClientOptions(url=server.url, options=options))
    connection = client.agent.websocket.v("1")
    return connection, Recorder().attach(connection)


def test_full_flow(server: FakeAgentServer) -> None:
    conn, rec = connect(server)
    assert conn.start(OPTIONS) is True and conn.is_connected()
    rec.wait("SettingsApplied")
    assert rec.names()[0] == "Open"
    assert rec.of("Welcome")[0].request_id == "req-0001"
    wire = server.connection()
    assert wire.path == "/v1/agent/converse"
    assert wire.headers["Authorization"] == "Token test-key"
    assert wire.messages("Settings") == [OPTIONS.to_dict()]

    assert conn.inject_user_message(InjectUserMessageOptions(content="hello"))
    rec.wait("AgentAudioDone")
    texts = [(t.role, t.text) for t in rec.of("ConversationText")]
    assert texts == [("user", "hello"), ("assistant", "You said: hello")]
    assert rec.of("AudioData") == AUDIO and all(isinstance(a, bytes) for a in rec.of("AudioData"))
    assert rec.of("AgentStartedSpeaking")[0].total_latency == 0.5
    assert [h.role for h in rec.of("History")] == ["user", "assistant"]
    assert json.loads(rec.of("Unhandled")[0].raw) == {"type": "EndOfThought"}
    assert len(rec.of("UserStartedSpeaking")) == 1
    assert rec.of("UserStartedSpeaking")[0].timestamp.endswith("Z")  # the client's receive time
    assert rec.of("AgentStartedSpeaking")[0].timestamp is not None
    assert rec.of("SettingsApplied")[0].settings == OPTIONS.to_dict()  # what was sent

    assert conn.send_audio(b"\x00\x01" * 160) and conn.send_audio(bytearray(b"\x02"))
    assert conn.update_prompt(UpdatePromptOptions(prompt="Be brief."))
    assert conn.update_speak_options(UpdateSpeakOptions(speak=Speak(model="aura-2-luna-en")))
    assert conn.update_think(UpdateThinkOptions(think=Think(model="gpt-4o")))
    assert conn.inject_agent_message(InjectAgentMessageOptions(message="please refuse"))
    assert conn.keep_alive()
    assert conn.force_end_turn()
    assert conn.send(json.dumps({"type": "KeepAlive"}))
    for name in ("PromptUpdated", "SpeakUpdated", "ThinkUpdated", "InjectionRefused"):
        rec.wait(name)
    assert rec.of("InjectionRefused")[0].message == "The agent is speaking."
    wire.wait_for("KeepAlive", 2)
    assert wire.messages("ForceEndTurn") == [{"type": "ForceEndTurn"}]
    assert wire.audio() == [b"\x00\x01" * 160, b"\x02"]
    assert wire.messages("UpdateSpeak")[0]["speak"] == {
        "provider": {"type": "deepgram", "model": "aura-2-luna-en"}
    }

    assert conn.finish() is True
    assert wire.closed.wait(5) and wire.close_code == 1000
    assert not conn.is_connected() and conn.send("late") is False
    assert conn.close() is True
    assert rec.names().count("Close") == 1 and rec.names()[-1] == "Close"
    assert rec.of("Error") == []


def test_function_call_seed_style(server: FakeAgentServer) -> None:
    conn, rec = connect(server)

    def on_function_call_request(self: Any, request: Any, **kwargs: Any) -> None:
        assert request.function_call.arguments["location"] == "Paris"
        response = FunctionCallResponse(
            name=request.function_call.name, result=json.dumps({"temperature": 21})
        )
        assert self.send_function_call_response(response)

    conn.on(E.FunctionCallRequest, on_function_call_request)
    assert conn.start(OPTIONS)
    conn.inject_user_message("what's the weather?")
    [answer] = server.connection().wait_for("FunctionCallResponse")
    assert answer == {
        "type": "FunctionCallResponse",
        "id": "call_weather_1",
        "name": "get_weather",
        "content": '{"temperature": 21}',
    }
    rec.wait("AgentAudioDone")
    assert rec.of("ConversationText")[-1].content == 'Result: {"temperature": 21}'
    [calls] = [h.function_calls for h in rec.of("History") if h.function_calls]
    assert calls[0].id == "call_weather_1"
    conn.finish()


def test_function_call_481_style(server: FakeAgentServer) -> None:
    conn, rec = connect(server)

    def on_request(self: Any, function_call_request: Any, **kwargs: Any) -> None:
        call = function_call_request.functions[0]
        response = FunctionCallResponse(id=call.id, name=call.name, content='{"ok": 1}')
        self.send(response.to_json())

    conn.on(E.FunctionCallRequest, on_request)
    assert conn.start(OPTIONS)
    conn.inject_user_message("remind me")
    [answer] = server.connection().wait_for("FunctionCallResponse")
    assert answer["id"] == "call_reminder_1" and answer["content"] == '{"ok": 1}'
    rec.wait("AgentAudioDone")
    with pytest.raises(DeepgramApiError, match="No pending FunctionCallRequest"):
        conn.send_function_call_response(FunctionCallResponse(name="set_reminder", result="x"))
    conn.finish()


def test_server_error_then_close_fires_error_and_close_once(server: FakeAgentServer) -> None:
    conn, rec = connect(server)
    assert conn.start(OPTIONS)
    conn.inject_user_message("this will fail")
    rec.wait("Close")
    [error] = rec.of("Error")
    assert (error.code, error.description, error.type) == (
        "FAILED_TO_THINK",
        "The LLM failed.",
        "Error",
    )
    assert not conn.is_connected()
    assert conn.send("anything") is False and conn.inject_user_message("hi") is False
    assert conn.finish() is True
    time.sleep(0.1)
    assert rec.names().count("Close") == 1
    assert rec.of("Close")[0].code == 1000


def test_abnormal_close_reports_an_error() -> None:
    def reaction(data: dict[str, Any], conn: Any) -> list[Any]:
        return [ABORT] if data["type"] == "InjectUserMessage" else [msg("SettingsApplied")]

    with FakeAgentServer(reaction=reaction) as server:
        conn, rec = connect(server)
        assert conn.start(OPTIONS)
        conn.inject_user_message("x")
        rec.wait("Close")
        [error] = rec.of("Error")
        assert error.type == "ConnectionClosed" and "1011" in error.description
        assert rec.names()[-2:] == ["Error", "Close"]
        conn.finish()


def test_start_then_close_at_once_flushes_settings(server: FakeAgentServer) -> None:
    conn, rec = connect(server)
    assert conn.start(OPTIONS)
    assert conn.close()
    wire = server.connection()
    assert wire.closed.wait(5)
    assert wire.messages("Settings") == [OPTIONS.to_dict()] and wire.close_code == 1000
    assert rec.names()[0] == "Open" and rec.names().count("Close") == 1


def test_close_is_idempotent_and_safe_before_start(server: FakeAgentServer) -> None:
    conn, rec = connect(server)
    assert conn.close() is True and conn.finish() is True
    assert rec.names() == []
    assert conn.start(OPTIONS)
    assert conn.close() and conn.close() and conn.finish()
    assert rec.names().count("Close") == 1
    # a finished client can start again
    before = len(rec.of("SettingsApplied"))
    assert conn.start(OPTIONS)
    rec.wait("SettingsApplied", before + 1)
    conn.close()
    assert rec.names().count("Close") == 2


def test_close_from_inside_a_handler(server: FakeAgentServer) -> None:
    conn, rec = connect(server)
    conn.on(E.AgentAudioDone, lambda self, done, **kw: self.close())
    assert conn.start(OPTIONS)
    conn.inject_user_message("hi")
    rec.wait("Close")
    assert server.connection().closed.wait(5) and server.connection().close_code == 1000
    conn.finish()


def test_401_returns_false_with_an_error() -> None:
    with FakeAgentServer(api_key="right") as server:
        client = DeepgramClient(api_key="wrong", url=server.url)
        conn = client.agent.websocket.v("1")
        rec = Recorder().attach(conn)
        assert conn.start(OPTIONS) is False
        [error] = rec.of("Error")
        assert error.type == "AuthenticationError"
        assert "rejected the credentials" in error.description and "401" in error.description
        assert rec.names() == ["Error"] and not conn.is_connected()
        assert conn.close() is True

        strict = DeepgramClientOptions(
            url=server.url, options={"termination_exception_connect": "true"}
        )
        with pytest.raises(DeepgramApiError) as info:
            DeepgramClient("wrong", strict).agent.websocket.v("1").start(OPTIONS)
        assert info.value.status == "401"

        good = DeepgramClient("right", server.url).agent.websocket.v("1")
        assert good.start(OPTIONS) and good.close()
        assert server.rejected == 2


def test_connection_refused_returns_false() -> None:
    with FakeAgentServer() as server:
        url = server.url
    conn = DeepgramClient(url=url).agent.websocket.v("1")
    rec = Recorder().attach(conn)
    assert conn.start(OPTIONS) is False
    [error] = rec.of("Error")
    assert error.type == "ConnectionError" and url in error.description


def test_a_raising_handler_is_reported_and_the_connection_survives(server: FakeAgentServer) -> None:
    conn, rec = connect(server)

    def broken(self: Any, welcome: Any) -> None:
        raise ValueError("handler bug")

    conn.on(E.Welcome, broken)
    assert conn.start(OPTIONS)
    [error] = rec.wait("Error")
    assert error.type == "HandlerError" and "handler bug" in error.description
    conn.inject_user_message("still here?")
    rec.wait("AgentAudioDone")
    assert conn.is_connected()
    conn.finish()


def test_termination_exception_closes_on_a_raising_handler(server: FakeAgentServer) -> None:
    conn, rec = connect(server, termination_exception=True)
    conn.on(E.SettingsApplied, lambda self, applied: 1 / 0)
    assert conn.start(OPTIONS)
    rec.wait("Close")
    assert rec.of("Error")[0].type == "HandlerError"
    assert server.connection().closed.wait(5)
    conn.finish()


def test_malformed_server_message_is_an_error_not_a_disconnect() -> None:
    with FakeAgentServer(on_connect=['{"type": "ConversationText", "role": "user"}']) as server:
        conn, rec = connect(server)
        assert conn.start(OPTIONS)
        [error] = rec.wait("Error")
        assert error.type == "ProtocolError" and "'content'" in error.description
        conn.inject_user_message("ok")
        rec.wait("AgentAudioDone")
        conn.finish()


def test_keepalive_thread_sends_every_five_seconds(server: FakeAgentServer) -> None:
    conn, _ = connect(server, keepalive="true")
    started = time.monotonic()
    assert conn.start(OPTIONS)
    server.connection().wait_for("KeepAlive", timeout=7)
    assert 4.5 <= time.monotonic() - started < 7
    conn.finish()
    assert not any(t.name == "harken-agent-keepalive" for t in threading.enumerate())


def test_keepalive_false_means_off(server: FakeAgentServer) -> None:
    fast, _ = connect(server, keepalive="true", keepalive_interval=0.05)
    assert fast.start(OPTIONS)
    server.connection(0).wait_for("KeepAlive", 3)
    fast.finish()
    off, _ = connect(server, keepalive="false", keepalive_interval=0.05)
    assert off.start(OPTIONS)
    time.sleep(0.4)
    assert server.connection(1).messages("KeepAlive") == []
    off.finish()


def test_members_and_start_kwargs(server: FakeAgentServer) -> None:
    conn, _ = connect(server)
    seen: list[Any] = []
    conn.on(E.Welcome, lambda self, welcome, tag=None: seen.append((self.label, tag)))
    assert conn.start(OPTIONS, members={"label": "L"}, tag="T")
    deadline = time.monotonic() + 5
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen == [("L", "T")]
    conn.finish()


def test_start_without_settings_then_send_settings(server: FakeAgentServer) -> None:
    conn, rec = connect(server)
    assert conn.start()
    time.sleep(0.1)
    assert server.connection().messages("Settings") == []
    assert conn.send_settings(OPTIONS.to_json())
    rec.wait("SettingsApplied")
    conn.finish()


def test_invalid_options_raise_before_connecting(server: FakeAgentServer) -> None:
    conn, rec = connect(server)
    with pytest.raises(DeepgramApiError):
        conn.start(12)
    assert rec.names() == [] and server.connections == []
    with pytest.raises(DeepgramApiError):
        conn.on("NotAnEvent", print)
