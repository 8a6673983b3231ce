"""The asyncio client against a scripted GA agent on a real loopback socket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from harken import (
    AgentWebSocketEvents,
    AsyncAgentWebSocketClient,
    DeepgramApiError,
    DeepgramClient,
    DeepgramClientOptions,
    FunctionCallResponse,
    InjectUserMessageOptions,
    SettingsOptions,
    Speak,
    Think,
    UpdatePromptOptions,
    UpdateSpeakOptions,
)

try:
    from test_client_fakeserver import ABORT, AUDIO, FakeAgentServer, Recorder, msg
except ImportError:  # pragma: no cover - when tests/ is imported as a package
    from tests.test_client_fakeserver import ABORT, AUDIO, FakeAgentServer, Recorder, msg

E = AgentWebSocketEvents
OPTIONS = SettingsOptions()
OPTIONS.agent.think = Think(model="gpt-4o-mini", instructions="Be kind.")
OPTIONS.agent.speak = Speak(model="aura-2-thalia-en")


@pytest.fixture
def server() -> Iterator[FakeAgentServer]:
    with FakeAgentServer() as srv:
        yield srv


def connect(server: FakeAgentServer, **options: Any) -> tuple[AsyncAgentWebSocketClient, Recorder]:
    client = DeepgramClient("k", DeepgramClientOptions(url=server.url, options=options))
    connection = client.agent.asyncwebsocket.v("1")
    return connection, Recorder().attach(connection)


async def test_full_flow(server: FakeAgentServer) -> None:
    conn, rec = connect(server)
    async_seen: list[str] = []

    async def on_text(self: Any, conversation_text: Any, **kwargs: Any) -> None:
        await asyncio.sleep(0)
        async_seen.append(conversation_text.text)

    conn.on(E.ConversationText, on_text)
    assert await conn.start(OPTIONS) is True
    assert conn.is_connected() and await conn.is_connected()
    await rec.await_("SettingsApplied")
    assert rec.names()[0] == "Open"
    wire = server.connection()
    assert wire.messages("Settings") == [OPTIONS.to_dict()]
    assert wire.headers["Authorization"] == "Token k"

    assert await conn.inject_user_message(InjectUserMessageOptions(text="hello"))
    await rec.await_("AgentAudioDone")
    assert async_seen == ["hello", "You said: hello"]
    assert rec.of("AudioData") == AUDIO
    assert await conn.send_audio(b"\x00" * 320)
    assert await conn.update_prompt(UpdatePromptOptions(prompt="p"))
    assert await conn.update_speak_options(UpdateSpeakOptions(speak=Speak(model="aura-2-luna-en")))
    assert await conn.update_think({"think": {"provider": {"type": "open_ai", "model": "x"}}})
    assert await conn.inject_agent_message("refuse this")
    assert await conn.keep_alive() and await conn.send('{"type": "KeepAlive"}')
    assert await conn.force_end_turn()
    for name in ("PromptUpdated", "SpeakUpdated", "ThinkUpdated", "InjectionRefused"):
        await rec.await_(name)
    assert await asyncio.to_thread(wire.wait_for, "KeepAlive", 2)
    assert await asyncio.to_thread(wire.wait_for, "ForceEndTurn")
    assert rec.of("SettingsApplied")[0].settings == OPTIONS.to_dict()
    assert rec.of("UserStartedSpeaking")[0].timestamp.endswith("Z")

    assert await conn.finish() is True
    assert not conn.is_connected() and not await conn.is_connected()
    assert await conn.send("late") is False
    assert await conn.close() is True
    assert await asyncio.to_thread(wire.closed.wait, 5) and wire.close_code == 1000
    assert wire.audio() == [b"\x00" * 320]
    assert rec.names().count("Close") == 1 and rec.of("Error") == []


async def test_function_call_with_an_async_seed_style_handler(server: FakeAgentServer) -> None:
    conn, rec = connect(server)

    async def on_request(self: Any, request: Any, **kwargs: Any) -> None:
        result = {"city": request.function_call.arguments["location"]}
        await self.send_function_call_response(
            FunctionCallResponse(name=request.function_call.name, result=result)
        )

    conn.on(E.FunctionCallRequest, on_request)
    assert await conn.start(OPTIONS)
    await conn.inject_user_message("weather please")
    [answer] = await asyncio.to_thread(server.connection().wait_for, "FunctionCallResponse")
    assert answer == {
        "type": "FunctionCallResponse",
        "id": "call_weather_1",
        "name": "get_weather",
        "content": '{"city": "Paris"}',
    }
    await rec.await_("AgentAudioDone")
    with pytest.raises(DeepgramApiError):
        await conn.send_function_call_response(FunctionCallResponse(name="get_weather"))
    await conn.finish()


async def test_plain_function_handlers_and_close_keyword(server: FakeAgentServer) -> None:
    conn, _ = connect(server)
    seen: list[Any] = []
    conn.on(E.Welcome, lambda self, welcome, **kw: seen.append(welcome.message))
    conn.on(E.Close, lambda self, close, **kw: seen.append(close.type))
    assert await conn.start(OPTIONS)
    for _ in range(200):
        if seen:
            break
        await asyncio.sleep(0.01)
    await conn.close()
    assert seen == ["req-0001", "Close"]


async def test_server_error_then_close(server: FakeAgentServer) -> None:
    conn, rec = connect(server)
    assert await conn.start(OPTIONS)
    await conn.inject_user_message("fail now")
    await rec.await_("Close")
    [error] = rec.of("Error")
    assert error.code == "FAILED_TO_THINK" and error.type == "Error"
    assert not await conn.is_connected()
    await conn.finish()
    assert rec.names().count("Close") == 1


async def test_abnormal_close() -> None:
    def reaction(data: dict[str, Any], conn: Any) -> list[Any]:
        return [ABORT] if data["type"] == "InjectUserMessage" else [msg("SettingsApplied")]

    with FakeAgentServer(reaction=reaction) as server:
        conn, rec = connect(server)
        assert await conn.start(OPTIONS)
        await conn.inject_user_message("x")
        await rec.await_("Close")
        assert rec.of("Error")[0].type == "ConnectionClosed"
        await conn.finish()


async def test_401() -> None:
    with FakeAgentServer(api_key="right") as server:
        conn = DeepgramClient("wrong", server.url).agent.asyncwebsocket.v("1")
        rec = Recorder().attach(conn)
        assert await conn.start(OPTIONS) is False
        assert rec.names() == ["Error"]
        assert "rejected the credentials" in rec.of("Error")[0].description
        strict = DeepgramClientOptions(
            api_key="wrong", url=server.url, options={"termination_exception_connect": True}
        )
        with pytest.raises(DeepgramApiError, match="rejected the credentials"):
            await DeepgramClient(config=strict).agent.asyncwebsocket.v("1").start(OPTIONS)


async def test_close_idempotence_and_close_from_a_handler(server: FakeAgentServer) -> None:
    conn, rec = connect(server)
    assert await conn.close() is True
    assert await conn.start(OPTIONS)

    async def closer(self: Any, done: Any) -> None:
        await self.close()

    conn.on(E.AgentAudioDone, closer)
    await conn.inject_user_message("hi")
    await rec.await_("Close")
    assert await conn.close() and await conn.finish()
    assert rec.names().count("Close") == 1


async def test_start_then_close_at_once_flushes_settings(server: FakeAgentServer) -> None:
    conn, _ = connect(server)
    assert await conn.start(OPTIONS)
    await conn.close()
    wire = server.connection()
    assert await asyncio.to_thread(wire.closed.wait, 5)
    assert wire.messages("Settings") == [OPTIONS.to_dict()] and wire.close_code == 1000


async def test_raising_handlers_are_reported(server: FakeAgentServer) -> None:
    conn, rec = connect(server)

    async def broken(self: Any, welcome: Any) -> None:
        raise RuntimeError("async bug")

    conn.on(E.Welcome, broken)
    assert await conn.start(OPTIONS)
    [error] = await rec.await_("Error")
    assert error.type == "HandlerError" and "async bug" in error.description
    assert await conn.is_connected()
    await conn.finish()


async def test_keepalive_task(server: FakeAgentServer) -> None:
    conn, _ = connect(server, keepalive="true", keepalive_interval=0.05)
    assert await conn.start(OPTIONS)
    await asyncio.to_thread(server.connection().wait_for, "KeepAlive", 3)
    await conn.finish()
    tasks = [t.get_name() for t in asyncio.all_tasks()]
    assert "harken-agent-keepalive" not in tasks and "harken-agent-listener" not in tasks
    quiet, _ = connect(server, keepalive="false", keepalive_interval=0.05)
    assert await quiet.start(OPTIONS)
    await asyncio.sleep(0.3)
    assert server.connection(1).messages("KeepAlive") == []
    await quiet.finish()


async def test_multiple_connections_and_json_settings(server: FakeAgentServer) -> None:
    conns = [connect(server)[0] for _ in range(3)]
    results = await asyncio.gather(*(c.start(json.dumps(OPTIONS.to_dict())) for c in conns))
    assert results == [True, True, True]
    await asyncio.gather(*(c.close() for c in conns))
    for i in range(3):
        wire = server.connection(i)
        assert await asyncio.to_thread(wire.closed.wait, 5)
        assert wire.messages("Settings") == [OPTIONS.to_dict()]


async def test_termination_exception_closes_on_a_raising_handler(server: FakeAgentServer) -> None:
    conn, rec = connect(server, termination_exception="true")
    conn.on(E.SettingsApplied, lambda self, applied: 1 / 0)
    assert await conn.start(OPTIONS)
    await rec.await_("Close")
    assert rec.of("Error")[0].type == "HandlerError"
    assert await asyncio.to_thread(server.connection().closed.wait, 5)
    await conn.finish()


async def test_invalid_arguments_raise(server: FakeAgentServer) -> None:
    conn, _ = connect(server)
    with pytest.raises(DeepgramApiError):
        await conn.start(3.5)
    with pytest.raises(DeepgramApiError):
        conn.on("Bogus", print)
    assert await conn.start(OPTIONS)
    with pytest.raises(DeepgramApiError, match="already started"):
        await conn.start(OPTIONS)
    with pytest.raises(DeepgramApiError):
        await conn.inject_user_message(42)
    await conn.finish()
