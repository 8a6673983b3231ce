"""Property tests: round trips through the codec, and no input makes a parser raise anything
but ``RemoteProtocolError``."""

from __future__ import annotations

import contextlib
import json
from dataclasses import replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from harken.errors import RemoteProtocolError
from harken.protocol.codec import (
    encode_client,
    encode_server,
    parse_client,
    parse_server,
    settings_to_wire,
)
from harken.protocol.messages import (
    AgentAudioDone,
    AgentStartedSpeaking,
    AgentThinking,
    CancelledFunction,
    ClientMessage,
    ConversationText,
    EndOfThought,
    Error,
    ForceEndTurn,
    FunctionCall,
    FunctionCallCancelled,
    FunctionCallRequest,
    FunctionCallResponse,
    Generation,
    History,
    InjectAgentMessage,
    InjectionRefused,
    InjectUserMessage,
    KeepAlive,
    LatencyReport,
    ListenUpdated,
    PromptUpdated,
    ServerMessage,
    Settings,
    SettingsApplied,
    SpeakUpdated,
    ThinkUpdated,
    UpdateListen,
    UpdatePrompt,
    UpdateSpeak,
    UpdateThink,
    UserStartedSpeaking,
    Warning,
    Welcome,
)
from harken.protocol.settings import (
    AgentConfig,
    AudioConfig,
    AudioInput,
    AudioOutput,
    ContextConfig,
    Endpoint,
    Flags,
    FunctionDef,
    HistoryFunctionCall,
    HistoryItem,
    ListenConfig,
    Provider,
    SpeakConfig,
    ThinkConfig,
)
from harken.protocol.settings_codec import FLOAT_OPTIONS

GA, EA = Generation.GA, Generation.EA
RESERVED = {"type", "model", "language", "language_code", "keyterms", "voice_id", *FLOAT_OPTIONS}

text = st.text(max_size=20)
nonempty = st.text(min_size=1, max_size=20)
names = st.from_regex(r"[a-zA-Z0-9_-]{1,64}", fullmatch=True)
floats = st.floats(allow_nan=False, allow_infinity=False)
awkward = st.sampled_from(["http://[", "https://", "", " ", "max", "History", "user", "object"])
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(10**300, 10**400)
    | floats
    | text
    | awkward,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
option_keys = text.filter(lambda k: k not in RESERVED)


@st.composite
def providers(draw: st.DrawFn, *, think: bool = False, typed: bool = False) -> Provider:
    options: dict[str, Any] = draw(st.dictionaries(option_keys, json_values, max_size=3))
    if draw(st.booleans()):
        options["language"] = draw(text)
    if draw(st.booleans()):
        options["keyterms"] = draw(st.lists(text, max_size=3))
    if think and draw(st.booleans()):
        options["temperature"] = draw(st.floats(0, 2) | st.integers(0, 2))
    if draw(st.booleans()):  # whole numbers come as ints from deepgram-sdk 7.x
        options["eot_threshold"] = draw(st.floats(0, 1) | st.integers(0, 1))
        options["speed"] = draw(floats | st.integers(-(10**6), 10**6))
    ptype = draw(nonempty if typed else text)
    return Provider(ptype, draw(st.none() | nonempty), options)


urls = st.builds(
    lambda s, host, path: f"{s}://{host}/{path}",
    st.sampled_from(["http", "https"]),
    st.from_regex(r"[a-z0-9.-]{1,20}", fullmatch=True),
    st.from_regex(r"[a-z0-9/]{0,10}", fullmatch=True),
)
endpoints = st.builds(
    Endpoint,
    urls,
    st.sampled_from(["get", "post", "put", "patch", "delete"]),
    st.dictionaries(text, text, max_size=2),
)
schemas = st.just({}) | st.builds(
    lambda props, req: {"type": "object", "properties": props, "required": req},
    st.dictionaries(text, st.dictionaries(text, text, max_size=2), max_size=2),
    st.lists(text, max_size=2),
)


@st.composite
def function_lists(draw: st.DrawFn) -> tuple[FunctionDef, ...]:
    unique = draw(st.lists(names, max_size=3, unique=True))
    return tuple(
        FunctionDef(name, draw(text), draw(schemas), draw(st.none() | endpoints)) for name in unique
    )


@st.composite
def thinks(draw: st.DrawFn, *, ea: bool = False) -> ThinkConfig:
    return ThinkConfig(
        provider=draw(providers(think=True)),
        prompt=draw(text),
        functions=draw(function_lists()),
        endpoint=None if ea else draw(st.none() | endpoints),
        context_length=None if ea else draw(st.none() | st.just("max") | st.integers(2, 10**6)),
    )


speaks = st.builds(SpeakConfig, providers(), st.none() | endpoints)
listens = st.builds(ListenConfig, providers())
history_calls = st.builds(HistoryFunctionCall, text, text, st.booleans(), text, text)
roles = st.sampled_from(["user", "assistant"])
history_items = st.builds(HistoryItem, roles, text) | st.builds(
    HistoryItem,
    st.none() | roles,
    st.none() | text,
    st.lists(history_calls, min_size=1, max_size=2).map(tuple),
)
rates = st.integers(8000, 48000)
encodings = st.sampled_from(["linear16", "mulaw", "alaw"])
audio = st.builds(
    AudioConfig,
    st.builds(AudioInput, encodings, rates),
    st.builds(
        AudioOutput,
        encodings,
        rates,
        st.none() | st.integers(0, 10**6),
        st.sampled_from(["none", "wav"]),
    ),
)


def tuples(
    strategy: st.SearchStrategy[Any], min_size: int = 0
) -> st.SearchStrategy[tuple[Any, ...]]:
    return st.lists(strategy, min_size=min_size, max_size=3).map(tuple)


ga_settings = st.builds(
    Settings,
    audio=audio,
    agent=st.builds(
        AgentConfig,
        language=text,
        listen=st.none() | listens,
        think=tuples(thinks()),
        speak=tuples(speaks),
        greeting=st.none() | text,
        context=st.none() | st.builds(ContextConfig, tuples(history_items), st.booleans()),
    ),
    experimental=st.booleans(),
    tags=tuples(text),
    flags=st.builds(Flags, st.booleans()),
    mip_opt_out=st.booleans(),
)


@st.composite
def ea_settings(draw: st.DrawFn) -> Settings:
    """What the early-access form can say: one think and speak, no GA-only fields."""
    keyterms = draw(st.none() | st.lists(text, max_size=2))
    listen = ListenConfig(
        Provider(
            "deepgram",
            draw(st.none() | nonempty),
            {} if keyterms is None else {"keyterms": keyterms},
        )
    )
    voice = draw(st.none() | text)
    speak = SpeakConfig(
        Provider(
            draw(st.just("deepgram") | nonempty),
            draw(st.none() | nonempty),
            {} if voice is None else {"voice_id": voice},
        )
    )
    messages = tuples(st.builds(HistoryItem, roles, text))
    return Settings(
        audio=draw(audio),
        agent=AgentConfig(
            listen=draw(st.none() | st.just(listen)),
            think=draw(tuples(thinks(ea=True), 0).map(lambda t: t[:1])),
            speak=draw(st.sampled_from([(), (speak,)])),
            context=draw(st.none() | st.builds(ContextConfig, messages, st.booleans())),
        ),
    )


both: dict[Generation, st.SearchStrategy[ClientMessage]] = {
    GA: st.one_of(
        ga_settings,
        st.builds(UpdatePrompt, prompt=text),
        st.builds(UpdateSpeak, speak=tuples(speaks, 1)),
        st.builds(UpdateThink, think=tuples(thinks(), 1)),
        st.builds(UpdateListen, listen=listens),
        st.builds(InjectUserMessage, content=text),
        st.builds(
            InjectAgentMessage,
            message=text,
            behavior=st.sampled_from(["default", "queue", "interrupt"]),
        ),
        st.builds(FunctionCallResponse, id=text, name=text, content=text),
        st.just(KeepAlive()),
        st.just(ForceEndTurn()),
    ),
    EA: st.one_of(
        ea_settings(),
        st.builds(UpdatePrompt, prompt=text, append=st.just(True)),
        st.builds(
            UpdateSpeak,
            speak=st.builds(lambda m: (SpeakConfig(Provider("deepgram", m)),), nonempty),
        ),
        st.builds(InjectUserMessage, content=text),
        st.builds(InjectAgentMessage, message=text),
        st.builds(FunctionCallResponse, id=text, name=st.just(""), content=text),
        st.just(KeepAlive()),
    ),
}


@settings(max_examples=300)
@given(both[GA])
def test_ga_client_messages_round_trip(message: ClientMessage) -> None:
    text_ = encode_client(message, GA)
    assert parse_client(text_, GA, strict=True).message == message
    assert parse_client(json.dumps(json.loads(text_), indent=4).encode(), GA).message == message


@settings(max_examples=200)
@given(both[EA])
def test_ea_client_messages_round_trip(message: ClientMessage) -> None:
    assert parse_client(encode_client(message, EA), EA, strict=True).message == message


# ----------------------------------------------------------------------------------- robustness


def _parses_or_refuses(frame: str | bytes, strict: bool = False) -> None:
    for generation in (GA, EA):
        try:
            parse_client(frame, generation, strict=strict)
        except RemoteProtocolError as exc:
            assert exc.description and "Traceback" not in exc.description
        with contextlib.suppress(RemoteProtocolError):
            parse_server(frame, generation)


@given(st.binary())
def test_arbitrary_bytes(frame: bytes) -> None:
    _parses_or_refuses(frame)


@given(st.text())
def test_arbitrary_text(frame: str) -> None:
    _parses_or_refuses(frame)


CLIENT_TYPES = [
    "Settings",
    "SettingsConfiguration",
    "UpdatePrompt",
    "UpdateInstructions",
    "UpdateSpeak",
    "UpdateThink",
    "UpdateListen",
    "InjectUserMessage",
    "InjectAgentMessage",
    "FunctionCallResponse",
    "KeepAlive",
    "ForceEndTurn",
    "UpdateThink_Live",
    "__customToThinkProvider",
    "Welcome",
    "FunctionCallRequest",
    "History",
    "Error",
]
FIELDS = [
    "audio",
    "agent",
    "prompt",
    "instructions",
    "speak",
    "think",
    "listen",
    "content",
    "message",
    "behavior",
    "id",
    "name",
    "output",
    "function_call_id",
    "model",
    "tags",
    "flags",
    "context",
    "functions",
    "role",
    "request_id",
    "input",
    "total_latency",
    "code",
    "description",
]


@given(
    st.sampled_from(CLIENT_TYPES), st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=4)
)
def test_arbitrary_json_objects_with_known_types(kind: str, fields: dict[str, Any]) -> None:
    frame = json.dumps({"type": kind, **fields})
    _parses_or_refuses(frame)
    _parses_or_refuses(frame, strict=True)


def _paths(obj: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(obj, dict):
        for key, value in obj.items():
            found += _paths(value, (*path, key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            found += _paths(value, (*path, i))
    return found


@settings(max_examples=300)
@given(st.data(), ga_settings, st.sampled_from([GA, EA]))
def test_mutated_settings(data: st.DataObject, settings_: Settings, generation: Generation) -> None:
    """Replace one subtree of a valid Settings object with arbitrary JSON."""
    wire = settings_to_wire(settings_, generation)
    path = data.draw(st.sampled_from(_paths(wire)[1:]))
    target = wire
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = data.draw(json_values)
    for strict in (False, True):
        try:
            parse_client(json.dumps(wire), generation, strict=strict)
        except RemoteProtocolError as exc:
            assert exc.description


# ----------------------------------------------------------------------------------- server


function_calls = st.builds(
    FunctionCall, id=text, name=text, arguments=text, client_side=st.booleans()
)
server_messages: st.SearchStrategy[ServerMessage] = st.one_of(
    st.builds(Welcome, request_id=text),
    st.sampled_from(
        [
            SettingsApplied(),
            PromptUpdated(),
            SpeakUpdated(),
            ThinkUpdated(),
            ListenUpdated(),
            UserStartedSpeaking(),
            AgentAudioDone(),
            EndOfThought(),
        ]
    ),
    st.builds(
        ConversationText,
        role=roles,
        content=text,
        conversational_behavior=st.sampled_from(
            ["default", "backchannel", "presence_check", "filler"]
        ),
    ),
    st.builds(AgentThinking, content=text),
    st.builds(FunctionCallRequest, functions=tuples(function_calls)),
    st.builds(FunctionCallResponse, id=text, name=text, content=text),
    st.builds(
        FunctionCallCancelled, functions=tuples(st.builds(CancelledFunction, id=text, name=text))
    ),
    st.builds(AgentStartedSpeaking, total_latency=floats, tts_latency=floats, ttt_latency=floats),
    st.builds(InjectionRefused, message=text),
    st.builds(
        History,
        role=st.none() | roles,
        content=st.none() | text,
        function_calls=st.none() | tuples(history_calls),
    ),
    st.builds(
        LatencyReport,
        **{
            name: st.none() | floats
            for name in (
                "total_latency",
                "ttt_token_latency",
                "ttt_text_latency",
                "ttt_tool_latency",
                "tts_latency",
                "stt_latency",
                "eou_latency",
            )
        },
    ),
    st.builds(Warning, code=text, description=text),
    st.builds(Error, code=text, description=text),
)


@settings(max_examples=300)
@given(server_messages)
def test_ga_server_messages_round_trip(message: ServerMessage) -> None:
    (frame,) = encode_server(message, GA)
    assert parse_server(frame, GA) == message


@settings(max_examples=300)
@given(server_messages)
def test_ea_server_messages_round_trip(message: ServerMessage) -> None:
    parsed = [parse_server(frame, EA) for frame in encode_server(message, EA)]
    if isinstance(message, FunctionCallRequest):
        calls = tuple(f for f in message.functions if f.client_side)
        assert parsed == [FunctionCallRequest(functions=(call,)) for call in calls]
    elif isinstance(message, FunctionCallResponse):
        assert parsed == []
    elif isinstance(message, ConversationText):  # early access has no conversational_behavior
        assert parsed == [replace(message, conversational_behavior="default")]
    else:
        assert parsed == [message]
