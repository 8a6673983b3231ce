"""The sans-I/O core: URLs, headers, parsing and aliases, handler adaptation, function calls."""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest

from harken import (
    AgentStartedSpeakingResponse,
    AgentWebSocketEvents,
    ConversationTextResponse,
    DeepgramApiError,
    DeepgramClientOptions,
    ErrorResponse,
    FunctionCallRequest,
    FunctionCallResponse,
    HistoryResponse,
    InjectionRefusedResponse,
    LatencyReportResponse,
    UnhandledResponse,
    WarningResponse,
    WelcomeResponse,
)
from harken.client.core import AgentCore, ConnectionState, Event, resolve_url

E = AgentWebSocketEvents


def core(**options: Any) -> AgentCore:
    return AgentCore(DeepgramClientOptions(options=options))


def one(c: AgentCore, message: dict[str, Any]) -> Event:
    events = c.receive_text(json.dumps(message))
    assert len(events) == 1
    return events[0]


# ----------------------------------------------------------------------------- url and headers


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("", "ws://127.0.0.1:8765/v1/agent/converse"),
        ("ws://127.0.0.1:9000", "ws://127.0.0.1:9000/v1/agent/converse"),
        ("ws://127.0.0.1:9000/", "ws://127.0.0.1:9000/v1/agent/converse"),
        ("localhost:9000", "ws://localhost:9000/v1/agent/converse"),
        ("agent.example.com", "wss://agent.example.com/v1/agent/converse"),
        ("https://agent.example.com", "wss://agent.example.com/v1/agent/converse"),
        ("http://10.0.0.2:80", "ws://10.0.0.2:80/v1/agent/converse"),
        ("wss://h/custom/path?x=1", "wss://h/custom/path?x=1"),
    ],
)
def test_resolve_url(given: str, expected: str) -> None:
    assert resolve_url(given) == expected


def test_url_comes_from_config_then_harken_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARKEN_URL", "ws://10.1.1.1:1234")
    assert AgentCore(DeepgramClientOptions()).url == "ws://10.1.1.1:1234/v1/agent/converse"
    cfg = DeepgramClientOptions(url="ws://127.0.0.1:5")
    assert AgentCore(cfg).url == "ws://127.0.0.1:5/v1/agent/converse"


def test_handshake_headers_and_addons(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HARKEN_API_KEY", "DEEPGRAM_API_KEY", "DEEPGRAM_ACCESS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    c = AgentCore(DeepgramClientOptions(api_key="k", headers={"X-One": "1"}))
    request, settings = c.begin_start(None, addons={"a": "b"}, headers={"X-Two": "2"})
    assert settings is None
    assert request.url.endswith("/v1/agent/converse?a=b")
    assert request.headers == {
        "Accept": "application/json",
        "Authorization": "Token k",
        "X-One": "1",
        "X-Two": "2",
    }
    assert request.user_agent.startswith("harken-sdk/")
    bearer = AgentCore(DeepgramClientOptions(access_token="jwt"))
    assert bearer.begin_start(None)[0].headers["Authorization"] == "Bearer jwt"
    anonymous = AgentCore(DeepgramClientOptions())
    assert "Authorization" not in anonymous.begin_start(None)[0].headers
    monkeypatch.setenv("DEEPGRAM_API_KEY", "from-env")
    assert AgentCore(DeepgramClientOptions()).begin_start(None)[0].headers["Authorization"] == (
        "Token from-env"
    )
    monkeypatch.setenv("HARKEN_API_KEY", "harken-env")
    assert AgentCore(DeepgramClientOptions()).begin_start(None)[0].headers["Authorization"] == (
        "Token harken-env"
    )
    monkeypatch.delenv("HARKEN_API_KEY")
    monkeypatch.delenv("DEEPGRAM_API_KEY")
    monkeypatch.setenv("DEEPGRAM_ACCESS_TOKEN", "tok")
    assert AgentCore(DeepgramClientOptions()).begin_start(None)[0].headers["Authorization"] == (
        "Bearer tok"
    )


def test_start_twice_is_refused() -> None:
    c = core()
    c.begin_start(None)
    with pytest.raises(DeepgramApiError, match="already started"):
        c.begin_start(None)


# ----------------------------------------------------------------------------- parsing


def test_parses_every_481_message_with_aliases() -> None:
    c = core()
    welcome = one(c, {"type": "Welcome", "request_id": "r1"})
    assert welcome.name is E.Welcome and isinstance(welcome.payload, WelcomeResponse)
    assert welcome.payload.request_id == welcome.payload.message == "r1"
    text = one(c, {"type": "ConversationText", "role": "user", "content": "hi"}).payload
    assert isinstance(text, ConversationTextResponse)
    assert (text.role, text.content, text.text) == ("user", "hi", "hi")
    started = one(
        c,
        {
            "type": "AgentStartedSpeaking",
            "total_latency": 1,
            "tts_latency": 0.2,
            "ttt_latency": 0.8,
        },
    )
    assert isinstance(started.payload, AgentStartedSpeakingResponse)
    assert started.payload.total_latency == 1
    refused = one(c, {"type": "InjectionRefused", "message": "busy"}).payload
    assert isinstance(refused, InjectionRefusedResponse) and refused.message == "busy"
    assert one(c, {"type": "InjectionRefused"}).payload.message == ""
    for kind in ("SettingsApplied", "UserStartedSpeaking", "AgentAudioDone"):
        assert one(c, {"type": kind}).name == E(kind)
    assert one(c, {"type": "AgentThinking", "content": "hmm"}).payload.content == "hmm"
    # early-access Welcome still parses
    assert one(c, {"type": "Welcome", "session_id": "s"}).payload.request_id == "s"


def test_function_call_request_aliases() -> None:
    c = core()
    event = one(
        c,
        {
            "type": "FunctionCallRequest",
            "functions": [
                {
                    "id": "call_1",
                    "name": "get_weather",
                    "arguments": '{"location": "Paris"}',
                    "client_side": True,
                },
                {"id": "call_2", "name": "other", "arguments": "not json", "client_side": True},
            ],
        },
    )
    request = event.payload
    assert isinstance(request, FunctionCallRequest)
    assert request.functions[0].arguments == '{"location": "Paris"}'  # 4.8.1: JSON text
    assert request.function_call is not None
    assert request.function_call.name == "get_weather"
    assert request.function_call.arguments == {"location": "Paris"}  # flat style: a dict
    assert request.function_call.arguments.get("location") == "Paris"
    assert request.call_id == "call_1"
    assert request.functions[1].parsed_arguments == {}
    assert request["type"] == "FunctionCallRequest"
    assert json.loads(str(request))["functions"][1]["id"] == "call_2"
    empty = FunctionCallRequest(type="FunctionCallRequest", functions=[])
    assert empty.function_call is None and empty.call_id == ""


def test_error_keeps_code_and_new_messages_parse() -> None:
    c = core()
    error = one(c, {"type": "Error", "code": "INVALID_SETTINGS", "description": "bad"}).payload
    assert isinstance(error, ErrorResponse)
    assert (error.code, error.description, error.type) == ("INVALID_SETTINGS", "bad", "Error")
    assert "INVALID_SETTINGS" in str(error)
    warning = one(c, {"type": "Warning", "code": "SLOW_THINK_REQUEST", "description": "slow"})
    assert warning.name is E.Warning and isinstance(warning.payload, WarningResponse)
    history = one(
        c,
        {
            "type": "History",
            "function_calls": [
                {"id": "c", "name": "n", "client_side": True, "arguments": "{}", "response": "ok"}
            ],
        },
    ).payload
    assert isinstance(history, HistoryResponse) and history.function_calls is not None
    assert history.function_calls[0].response == "ok"
    report = one(c, {"type": "LatencyReport", "stt_latency": 0.1}).payload
    assert isinstance(report, LatencyReportResponse) and report.stt_latency == 0.1
    for kind in ("PromptUpdated", "SpeakUpdated", "ThinkUpdated", "ListenUpdated"):
        assert one(c, {"type": kind}).name == E(kind)
    server_fcr = one(c, {"type": "FunctionCallResponse", "name": "n", "content": "x"})
    assert server_fcr.name is E.FunctionCallResponse and server_fcr.payload.content == "x"


def test_unknown_types_are_unhandled_with_the_raw_text() -> None:
    raw = '{"type": "EndOfThought"}'
    [event] = core().receive_text(raw)
    assert event.name is E.Unhandled
    assert event.payload == UnhandledResponse(type="Unhandled", raw=raw)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not an object"),
        ('{"type": "Welcome"}', "missing required field 'request_id'"),
        ('{"type": "ConversationText", "role": "user"}', "'content'"),
        ('{"type": "FunctionCallRequest", "functions": {}}', "must be a list"),
        ('{"type": "FunctionCallRequest", "functions": [{"id": "x"}]}', "'name'"),
        ('{"type": "FunctionCallRequest", "functions": [3]}', "expected an object"),
    ],
)
def test_malformed_messages_become_error_events(text: str, needle: str) -> None:
    [event] = core().receive_text(text)
    assert event.name is E.Error
    assert event.payload.type == "ProtocolError" and needle in event.payload.description


def test_empty_text_and_binary_frames() -> None:
    c = core()
    assert c.receive_text("") == []
    [audio] = c.receive_bytes(bytearray(b"\x00\x01"))
    assert audio.name is E.AudioData and audio.payload == b"\x00\x01"


# ----------------------------------------------------------------------------- handlers


class Client:
    pass


def calls_for(c: AgentCore, event: Event) -> list[Any]:
    return [inv() for inv in c.invocations(event, Client())]


def test_handler_payload_by_keyword_or_position() -> None:
    c = core()
    got: list[tuple[str, Any]] = []

    def seed_style(self: Any, text_event: Any, **kwargs: Any) -> None:
        got.append(("seed", text_event.text))

    def sdk_style(self: Any, conversation_text: Any, **kwargs: Any) -> None:
        got.append(("481", conversation_text.content))

    def kwargs_only(self: Any, **kwargs: Any) -> None:
        got.append(("kw", kwargs["conversation_text"].content))

    def keyword_only(self: Any, *, conversation_text: Any) -> None:
        got.append(("kwonly", conversation_text.content))

    for handler in (seed_style, sdk_style, kwargs_only, keyword_only):
        c.on(E.ConversationText, handler)
    c.on("ConversationText", lambda client, payload: got.append(("lambda", payload.content)))
    c.on(E.ConversationText, functools.partial(sdk_style))
    calls_for(c, one(c, {"type": "ConversationText", "role": "user", "content": "x"}))
    assert got == [
        ("seed", "x"),
        ("481", "x"),
        ("kw", "x"),
        ("kwonly", "x"),
        ("lambda", "x"),
        ("481", "x"),
    ]


def test_audio_open_error_keywords() -> None:
    c = core()
    got: list[Any] = []
    c.on(E.AudioData, lambda self, data, **kw: got.append(("data", data)))
    c.on(E.AudioData, lambda self, audio_data, **kw: got.append(("pos", audio_data)))
    c.on(E.Open, lambda self, open_event, **kw: got.append(("open", open_event.type)))
    c.on(E.Open, lambda self, open, **kw: got.append(("open-kw", open.type)))
    c.on(E.Error, lambda self, error, **kw: got.append(("error", error.description)))
    calls_for(c, c.receive_bytes(b"ab")[0])
    calls_for(c, c.connected())
    calls_for(c, one(c, {"type": "Error", "description": "d", "code": "C"}))
    assert got == [
        ("data", b"ab"),
        ("pos", b"ab"),
        ("open", "Open"),
        ("open-kw", "Open"),
        ("error", "d"),
    ]
    [inv] = c.invocations(c.receive_bytes(b"z")[0], Client())[:1]
    assert inv.kwargs == {"data": b"z"}


def test_start_kwargs_reach_handlers_that_accept_them() -> None:
    c = core()
    got: list[Any] = []
    c.on(E.Welcome, lambda self, welcome, **kw: got.append(kw))
    c.on(E.Welcome, lambda self, welcome, tag: got.append(tag))
    c.on(E.Welcome, lambda self, welcome: got.append("no extras"))
    c.begin_start(None, kwargs={"tag": 7})
    calls_for(c, one(c, {"type": "Welcome", "request_id": "r"}))
    assert got == [{"tag": 7}, 7, "no extras"]


def test_uninspectable_handler_gets_the_keyword() -> None:
    c = core()
    c.on(E.Welcome, min)  # builtins like min() have no signature
    [inv] = c.invocations(one(c, {"type": "Welcome", "request_id": "r"}), Client())
    assert "welcome" in inv.kwargs


def test_on_rejects_unknown_events_and_non_callables() -> None:
    c = core()
    with pytest.raises(DeepgramApiError, match="Unknown event"):
        c.on("Nope", print)
    with pytest.raises(DeepgramApiError, match="not callable"):
        c.on(E.Welcome, "print")  # type: ignore[arg-type]


def test_new_events_fall_back_to_unhandled_until_someone_listens() -> None:
    c = core()
    unhandled: list[str] = []
    history: list[Any] = []
    c.on(E.Unhandled, lambda self, unhandled_event, **kw: unhandled.append(unhandled_event.raw))
    raw = {"type": "History", "role": "user", "content": "hi"}
    calls_for(c, one(c, raw))
    assert [json.loads(r) for r in unhandled] == [raw]
    c.on(E.History, lambda self, history_event, **kw: history.append(history_event.content))
    calls_for(c, one(c, raw))
    assert history == ["hi"] and len(unhandled) == 1


def test_handler_failure_is_described() -> None:
    c = core()

    def broken(self: Any, welcome: Any) -> None:
        raise RuntimeError("boom")

    c.on(E.Welcome, broken)
    [inv] = c.invocations(one(c, {"type": "Welcome", "request_id": "r"}), Client())
    with pytest.raises(RuntimeError) as info:
        inv()
    event = c.handler_failed(inv, info.value)
    assert event.name is E.Error and event.payload.type == "HandlerError"
    assert "broken raised RuntimeError: boom" in event.payload.description


# ----------------------------------------------------------------------------- function calls


def request(*calls: tuple[str, str, bool]) -> dict[str, Any]:
    functions = [{"id": i, "name": n, "arguments": "{}", "client_side": cs} for i, n, cs in calls]
    return {"type": "FunctionCallRequest", "functions": functions}


def test_function_call_response_fills_the_oldest_pending_id() -> None:
    c = core()
    c.receive_text(json.dumps(request(("a1", "f", True), ("b1", "g", True))))
    c.receive_text(json.dumps(request(("a2", "f", True), ("s1", "server", False))))
    assert [p.id for p in c.pending] == ["a1", "b1", "a2"]  # server-side calls are not pending
    first = json.loads(c.encode_function_call_response(FunctionCallResponse(name="f", result="1")))
    assert first == {"type": "FunctionCallResponse", "id": "a1", "name": "f", "content": "1"}
    second = json.loads(c.encode_function_call_response({"name": "f", "content": "2"}))
    assert second["id"] == "a2"
    with pytest.raises(
        DeepgramApiError, match=r"No pending FunctionCallRequest for function 'f'.*g \(b1\)"
    ):
        c.encode_function_call_response(FunctionCallResponse(name="f", result="3"))
    with pytest.raises(DeepgramApiError, match="needs an id or a function name"):
        c.encode_function_call_response(FunctionCallResponse(content="x"))
    by_id = json.loads(c.encode_function_call_response(FunctionCallResponse(id="b1", content="4")))
    assert by_id == {"type": "FunctionCallResponse", "id": "b1", "name": "g", "content": "4"}
    assert c.pending == []
    unknown = json.loads(c.encode_function_call_response(FunctionCallResponse(id="zz", name="h")))
    assert unknown["id"] == "zz"  # an explicit id is sent as given


def test_cancelled_and_raw_responses_clear_pending() -> None:
    c = core()
    c.receive_text(json.dumps(request(("a", "f", True), ("b", "f", True), ("c", "f", True))))
    c.receive_text(
        json.dumps({"type": "FunctionCallCancelled", "functions": [{"id": "a", "name": "f"}]})
    )
    c.note_outgoing(FunctionCallResponse(id="b", name="f", content="x").to_json())
    c.note_outgoing("garbage FunctionCallResponse")
    c.note_outgoing('["FunctionCallResponse"]')
    assert [p.id for p in c.pending] == ["c"]
    assert json.loads(c.encode_function_call_response(FunctionCallResponse(name="f")))["id"] == "c"


def test_wrong_option_types_raise() -> None:
    c = core()
    with pytest.raises(DeepgramApiError, match="InjectAgentMessageOptions"):
        c.encode_inject_agent_message(3)
    assert json.loads(c.encode_inject_agent_message("hi")) == {
        "type": "InjectAgentMessage",
        "message": "hi",
    }
    assert json.loads(c.encode_inject_user_message("yo"))["content"] == "yo"
    assert json.loads(c.encode_update_prompt("p")) == {"type": "UpdatePrompt", "prompt": "p"}
    assert json.loads(c.encode_keep_alive()) == {"type": "KeepAlive"}


# ----------------------------------------------------------------------------- connection state


def test_close_is_emitted_once_and_abnormal_ends_add_an_error() -> None:
    c = core()
    c.begin_start(None)
    assert c.connected().name is E.Open and c.is_open
    events = c.connection_lost(1011, "oops")
    assert [e.name for e in events] == [E.Error, E.Close]
    assert "code 1011" in events[0].payload.description and "oops" in events[0].payload.description
    assert events[1].payload.code == 1011
    assert c.connection_lost(1000, "") == []
    assert c.state is ConnectionState.CLOSED
    c.begin_start(None)
    c.connected()
    assert c.begin_close() is True and c.begin_close() is False
    assert [e.name for e in c.connection_lost(1006, None)] == [E.Close]  # we were closing anyway


def test_connect_failures() -> None:
    c = core()
    c.begin_start(None)
    event, error = c.connect_failed(401, "InvalidStatus")
    assert error is None and event.payload.type == "AuthenticationError"
    assert "rejected the credentials" in event.payload.description
    assert "connection" not in str(event.payload).lower()
    assert c.connection_lost(None, None) == []  # never opened: no Close
    strict = core(termination_exception_connect=True)
    strict.begin_start(None)
    event, error = strict.connect_failed(None, "ConnectionRefusedError: refused")
    assert (
        event.payload.type == "ConnectionError" and "Connection failed" in event.payload.description
    )
    assert isinstance(error, DeepgramApiError) and error.original_error.startswith("Connection")
    other = core()
    other.begin_start(None)
    event, _ = other.connect_failed(500, "x")
    assert "HTTP 500" in event.payload.description


# ----------------------------------------------------------------------------- router and helpers


def test_router_versions_and_config_is_not_mutated() -> None:
    from harken import AgentWebSocketClient, AsyncAgentWebSocketClient, DeepgramClient

    shared = DeepgramClientOptions(
        api_key="a", url="ws://127.0.0.1:1", options={"keepalive": "true"}
    )
    client = DeepgramClient("b", shared, url="ws://127.0.0.1:2")
    assert (shared.api_key, shared.url) == ("a", "ws://127.0.0.1:1")
    assert client.api_key == "b" and client.config.url == "ws://127.0.0.1:2"
    sync = client.agent.websocket.v("1")
    assert isinstance(sync, AgentWebSocketClient)
    assert sync.url == "ws://127.0.0.1:2/v1/agent/converse"
    assert isinstance(client.agent.asyncwebsocket.v("1"), AsyncAgentWebSocketClient)
    for bad in ("", "2"):
        with pytest.raises(DeepgramApiError, match="Invalid module version"):
            client.agent.websocket.v(bad)
        with pytest.raises(DeepgramApiError):
            client.agent.asyncwebsocket.v(bad)
    by_position = DeepgramClient("k", "ws://127.0.0.1:3")
    assert by_position.agent.websocket.v("1").url == "ws://127.0.0.1:3/v1/agent/converse"
    token = DeepgramClient(access_token="t")
    assert (token.api_key, token.access_token) == ("", "t")


def test_payload_keywords_for_every_event() -> None:
    from harken.client.events import payload_keyword

    assert payload_keyword(E.AudioData) == "data"
    assert payload_keyword(E.UpdatePrompt) == "update_prompt"
    assert payload_keyword(E.AgentKeepAlive) == "agent_keep_alive"
    assert len({payload_keyword(e) for e in E}) == len(E)


async def test_awaitable_bool() -> None:
    from harken.client.asyncio import AwaitableBool

    yes, no = AwaitableBool(True), AwaitableBool(False)
    assert yes and not no and await yes is True and await no is False
    assert yes == True and no == False  # noqa: E712 - comparing like a bool is the point
    assert hash(yes) == hash(True) and repr(no) == "False"
