"""The SDK against the real harken server (testing providers) on 127.0.0.1.

Uses the shared ``server``/``make_server`` fixtures from ``conftest.py``. The testing LLM
echoes the user and asks for a tool when the text says "weather" (see providers/testing.py).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from harken import (
    Agent,
    AgentWebSocketEvents,
    DeepgramApiError,
    DeepgramClient,
    DeepgramClientOptions,
    Function,
    FunctionCallResponse,
    Listen,
    Parameters,
    Provider,
    SettingsOptions,
    Speak,
    Think,
)

try:
    from test_client_fakeserver import Recorder
    from test_sdk_seed_examples import BASIC, FUNCTION_CALLING, Printed, run
except ImportError:  # pragma: no cover - when tests/ is imported as a package
    from tests.test_client_fakeserver import Recorder
    from tests.test_sdk_seed_examples import BASIC, FUNCTION_CALLING, Printed, run

pytestmark = pytest.mark.loopback
E = AgentWebSocketEvents
WEATHER = Function(
    name="get_weather",
    description="Weather for a city",
    parameters=Parameters(properties={"location": {"type": "string"}}, required=["location"]),
)
FLAT = SettingsOptions(
    agent=Agent(
        listen=Listen(model="nova-3", encoding="linear16", sample_rate=16000),
        think=Think(
            provider=Provider(type="open_ai"),
            model="gpt-4o-mini",
            instructions="Hi.",
            functions=[WEATHER],
        ),
        speak=Speak(model="aura-2-thalia-en", encoding="linear16", sample_rate=24000),
    )
)
SDK_481 = SettingsOptions()
SDK_481.agent.listen.provider.type = "deepgram"
SDK_481.agent.listen.provider.model = "nova-3"
SDK_481.agent.think.provider.type = "open_ai"
SDK_481.agent.think.provider.model = "gpt-4o-mini"
SDK_481.agent.think.prompt = "Hi."
SDK_481.agent.think.functions = [WEATHER]
SDK_481.agent.speak.provider.type = "deepgram"
SDK_481.agent.speak.provider.model = "aura-2-thalia-en"


def url(server: Any) -> str:
    return f"ws://127.0.0.1:{server.port}"


def answer_seed_style(self: Any, request: Any, **kwargs: Any) -> None:
    city = request.function_call.arguments["location"]
    self.send_function_call_response(
        FunctionCallResponse(name=request.function_call.name, result={"city": city, "temp_c": 21})
    )


@pytest.mark.parametrize("options", [FLAT, SDK_481], ids=["flat-style", "481-style"])
def test_sync_turn_with_a_function_call(server: Any, options: SettingsOptions) -> None:
    connection = DeepgramClient(url=url(server)).agent.websocket.v("1")
    rec = Recorder().attach(connection)
    connection.on(E.FunctionCallRequest, answer_seed_style)
    assert connection.start(options)
    rec.wait("SettingsApplied")
    assert connection.inject_user_message("What's the weather in Paris?")
    rec.wait("AgentAudioDone", timeout=10)
    [request] = rec.of("FunctionCallRequest")
    assert request.function_call.name == "get_weather"
    assert request.function_call.arguments == {"location": "Paris"}
    reply = [t.text for t in rec.of("ConversationText") if t.role == "assistant"]
    assert reply and json.loads(reply[0].split(": ", 1)[1]) == {"city": "Paris", "temp_c": 21}
    assert rec.of("AudioData") and all(isinstance(a, bytes) for a in rec.of("AudioData"))
    assert connection.close()
    assert rec.names().count("Close") == 1 and rec.of("Error") == []


async def test_async_turn(server: Any) -> None:
    connection = DeepgramClient(url=url(server)).agent.asyncwebsocket.v("1")
    rec = Recorder().attach(connection)

    async def on_request(self: Any, function_call_request: Any, **kwargs: Any) -> None:
        call = function_call_request.functions[0]
        await self.send_function_call_response(
            FunctionCallResponse(id=call.id, name=call.name, content='{"temp_c": 5}')
        )

    connection.on(E.FunctionCallRequest, on_request)
    assert await connection.start(SDK_481)
    await rec.await_("SettingsApplied")
    assert await connection.inject_user_message("hello there")
    await rec.await_("AgentAudioDone", timeout=10)
    assert await connection.inject_user_message("weather in Oslo?")
    await rec.await_("AgentAudioDone", 2, timeout=10)
    texts = [t.text for t in rec.of("ConversationText") if t.role == "assistant"]
    assert texts[0] == 'You said: "hello there".'
    assert texts[-1] == 'The function returned: {"temp_c": 5}'
    assert await connection.close()
    await asyncio.sleep(0)
    assert rec.names().count("Close") == 1 and rec.of("Error") == []


def test_server_error_reaches_the_error_handler(server: Any) -> None:
    connection = DeepgramClient(url=url(server)).agent.websocket.v("1")
    rec = Recorder().attach(connection)
    assert connection.start(SettingsOptions())  # bare options: the server's default providers
    rec.wait("SettingsApplied")
    connection.inject_user_message("hello [fail]")  # the testing LLM fails on request
    [error] = rec.wait("Error", timeout=10)
    assert error.code == "FAILED_TO_THINK" and error.type == "Error"
    connection.finish()
    assert not connection.is_connected() and rec.names().count("Close") == 1


def test_credentials(make_server: Callable[..., Any]) -> None:
    secured = make_server(api_keys=("secret-1",))
    bad = DeepgramClient("wrong", url(secured)).agent.websocket.v("1")
    rec = Recorder().attach(bad)
    assert bad.start(FLAT) is False
    assert "rejected the credentials" in rec.of("Error")[0].description
    strict = DeepgramClientOptions(
        api_key="wrong", url=url(secured), options={"termination_exception_connect": True}
    )
    with pytest.raises(DeepgramApiError):
        DeepgramClient(config=strict).agent.websocket.v("1").start(FLAT)
    good = DeepgramClient("secret-1", url(secured)).agent.websocket.v("1")
    rec = Recorder().attach(good)
    assert good.start(FLAT)
    rec.wait("SettingsApplied")
    good.close()
    bearer = DeepgramClient(access_token="secret-1", url=url(secured)).agent.websocket.v("1")
    rec = Recorder().attach(bearer)
    assert bearer.start(FLAT)  # DESIGN.md 4.13: Token and Bearer are both accepted
    rec.wait("SettingsApplied")
    bearer.close()


def test_seed_examples_against_the_real_server(
    server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HARKEN_URL", url(server))
    _, printed = run(BASIC)
    assert "Agent connection started" in printed.lines
    ns, printed = run(FUNCTION_CALLING)
    ns["dg_connection"].inject_user_message("What's the weather in Paris?")
    printed.wait_for("Function call: get_weather", timeout=10)
    printed.wait_for("Arguments: {'location': 'Paris'}")
    ns["dg_connection"].close()
    assert isinstance(printed, Printed) and "Agent connection started" not in printed.lines
