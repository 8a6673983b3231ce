"""Parse and encode the JSON text frames of both protocol generations. Pure.

Parsing dispatches on ``type`` through one dict per generation and direction. Client frames are
read leniently by default: unknown keys are ignored and listed in :attr:`Parsed.ignored`
(dotted paths); ``strict=True`` rejects the first of them (outer objects before inner ones,
the same path lenient mode lists first). Every failure is a
:class:`~harken.errors.RemoteProtocolError` with ``UNPARSABLE_CLIENT_MESSAGE`` (or
``INVALID_SETTINGS`` / ``AGENT_ID_NOT_SUPPORTED``, see ``settings_codec``) and a description
that names the field; :func:`parse_server` uses ``UNPARSABLE_SERVER_MESSAGE``.

Aliases accepted on input: ``InjectAgentMessage.message``/``content`` (``message`` wins);
``FunctionCallResponse`` ``id``/``function_call_id`` and ``content``/``output`` (the native name
of the generation wins); ``Welcome`` ``request_id``/``session_id``; ``Error``
``description``/``message``. Early access also accepts ``InjectUserMessage`` and
``InjectAgentMessage.behavior``.

Server messages on early access (``/agent``), where the 3.x SDK is the client:

* ``Welcome`` -> ``{session_id}``; ``PromptUpdated`` -> ``InstructionsUpdated``;
  ``Error`` -> ``{message, description, code}`` (both texts are the description).
* ``FunctionCallRequest`` -> one frame per *client-side* function,
  ``{function_name, function_call_id, input}`` with ``input`` the JSON text of the arguments.
  Server-side calls are not announced and a server ``FunctionCallResponse`` encodes to no
  frame at all: EA clients never hear of functions the server runs itself.
* ``ConversationText`` -> ``{role, content}``: ``conversational_behavior`` (GA, 2026) is left out.
* GA-only messages (``History``, ``LatencyReport``, ``Warning``, ``EndOfThought``,
  ``ThinkUpdated``, ``ListenUpdated``, ``FunctionCallCancelled``) go out in GA shape; the 3.x
  SDK reports them as ``Unhandled``, which is harmless.

``FunctionCalling`` (an early-access debug notice) encodes to no frame on GA.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, Literal, cast, get_args

from harken.errors import LocalProtocolError
from harken.protocol import codes
from harken.protocol._reader import MISSING, Context, Node, json_kind
from harken.protocol.messages import (
    AgentAudioDone,
    AgentStartedSpeaking,
    AgentThinking,
    CancelledFunction,
    ClientMessage,
    ConversationalBehavior,
    ConversationText,
    EndOfThought,
    Error,
    ForceEndTurn,
    FunctionCall,
    FunctionCallCancelled,
    FunctionCalling,
    FunctionCallRequest,
    FunctionCallResponse,
    Generation,
    History,
    InjectAgentMessage,
    InjectBehavior,
    InjectionRefused,
    InjectUserMessage,
    KeepAlive,
    LatencyReport,
    ListenUpdated,
    PromptUpdated,
    ServerMessage,
    SettingsApplied,
    SpeakUpdated,
    ThinkUpdated,
    Unsupported,
    UpdateListen,
    UpdatePrompt,
    UpdateSpeak,
    UpdateThink,
    UserStartedSpeaking,
    Warning,
    Welcome,
)
from harken.protocol.settings import Provider, SpeakConfig
from harken.protocol.settings_codec import (
    ROLES,
    fallbacks_to_wire,
    history_call_to_wire,
    listen_to_wire,
    read_fallbacks,
    read_history_call,
    read_listen,
    read_settings,
    read_speak,
    read_think,
    settings_from_wire,
    settings_to_wire,
    speak_to_wire,
    think_to_wire,
)

__all__ = [
    "Parsed",
    "encode_client",
    "encode_server",
    "parse_client",
    "parse_server",
    "settings_from_wire",
    "settings_to_wire",
]

JsonObject = dict[str, Any]
Role = Literal["user", "assistant"]
BEHAVIORS = ("default", "queue", "interrupt")
CONVERSATIONAL_BEHAVIORS: tuple[ConversationalBehavior, ...] = get_args(ConversationalBehavior)


@dataclass(frozen=True, slots=True)
class Parsed:
    """A parsed client message and the dotted paths of unknown keys ignored on the way."""

    message: ClientMessage
    ignored: tuple[str, ...] = ()


def parse_client(text: str | bytes, generation: Generation, *, strict: bool = False) -> Parsed:
    """Parse one client text frame; raises ``RemoteProtocolError``."""
    ctx = Context(side="client", strict=strict)
    data = _load(ctx, text)
    kind: str = data["type"]
    parse = _CLIENT_PARSERS[generation].get(kind)
    if parse is None:
        ctx.fail(_unknown_client_type(kind, generation))
    return Parsed(parse(ctx, data), tuple(ctx.ignored))


def parse_server(text: str | bytes, generation: Generation) -> ServerMessage:
    """Parse one server text frame (for the SDK); unknown keys are ignored."""
    ctx = Context(side="server")
    data = _load(ctx, text)
    parse = _SERVER_PARSERS[generation].get(data["type"])
    if parse is None:
        table = ", ".join(_SERVER_PARSERS[generation])
        ctx.fail(f"Unknown message type {data['type'][:64]!r}. Expected one of: {table}.")
    return parse(Node(ctx, data, ""))


def encode_server(message: ServerMessage, generation: Generation) -> tuple[str, ...]:
    """Compact JSON text frames for one server message: usually one, sometimes none or several."""
    table = _EA_SERVER_ENCODERS if generation is Generation.EA else _GA_SERVER_ENCODERS
    return tuple(_dump(obj) for obj in table.get(message.type, _plain)(message))


def encode_client(message: ClientMessage, generation: Generation) -> str:
    """Compact JSON text for one client message; raises ``LocalProtocolError`` when the
    generation has no form for it (e.g. ``UpdateThink`` on early access)."""
    table = _EA_CLIENT_ENCODERS if generation is Generation.EA else _GA_CLIENT_ENCODERS
    return _dump(table[message.type](message))


# ----------------------------------------------------------------------------------- framing


class _BadConstant(ValueError):
    pass


def _reject_constant(name: str) -> None:
    raise _BadConstant(name)


# built once: json.loads/json.dumps with options build a new decoder/encoder on every call
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def _load(ctx: Context, text: str | bytes) -> JsonObject:
    """Decode a frame into a JSON object with a string ``type``."""
    prefix = f"Error parsing {ctx.side} message: "
    if not isinstance(text, str):  # bytes, or a bytearray/memoryview
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            ctx.fail(prefix + "the frame is not valid UTF-8 text.")
    try:
        data = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        ctx.fail(f"{prefix}not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}).")
    except _BadConstant as exc:
        ctx.fail(f"{prefix}not valid JSON ({exc.args[0]} is not a JSON number).")
    except ValueError:
        ctx.fail(prefix + "not valid JSON (a number is too long).")
    except RecursionError:
        ctx.fail(prefix + "not valid JSON (nested too deeply).")
    if not isinstance(data, dict):
        ctx.fail(f'{prefix}expected a JSON object with a "type" field, got {json_kind(data)}.')
    if not isinstance(data.get("type"), str):
        ctx.expected("type", "a string naming the message type", data.get("type", MISSING))
    return data


def _dump(obj: JsonObject) -> str:
    return _ENCODER.encode(obj)


# ----------------------------------------------------------------------------------- client in

_WRONG_GENERATION = {
    Generation.GA: {
        "SettingsConfiguration": "SettingsConfiguration is the early-access form; "
        "on /v1/agent/converse send Settings.",
        "UpdateInstructions": "UpdateInstructions is the early-access form; "
        "on /v1/agent/converse send UpdatePrompt.",
    },
    Generation.EA: {
        "Settings": "Settings is the /v1/agent/converse form; "
        "on /agent send SettingsConfiguration.",
        "UpdatePrompt": "UpdatePrompt is the /v1/agent/converse form; "
        "on /agent send UpdateInstructions (it adds to the instructions).",
        "UpdateThink": "UpdateThink exists only on /v1/agent/converse.",
        "UpdateListen": "UpdateListen exists only on /v1/agent/converse.",
        "ForceEndTurn": "ForceEndTurn exists only on /v1/agent/converse.",
    },
}


def _unknown_client_type(kind: str, generation: Generation) -> str:
    hint = _WRONG_GENERATION[generation].get(kind)
    if hint is not None:
        return hint
    expected = ", ".join(k for k in _CLIENT_PARSERS[generation] if k not in UNSUPPORTED_TYPES)
    if kind in _SERVER_PARSERS[generation]:
        return f"{kind} is a server-to-client message; clients send one of: {expected}."
    return f"Unknown message type {kind[:64]!r}. Expected one of: {expected}."


def _settings(generation: Generation) -> Callable[[Context, JsonObject], ClientMessage]:
    return lambda ctx, data: read_settings(ctx, data, generation)


def _update_prompt(ctx: Context, data: JsonObject) -> ClientMessage:
    return UpdatePrompt(prompt=ctx.node(data, "", ("type", "prompt")).req_str("prompt"))


def _update_instructions(ctx: Context, data: JsonObject) -> ClientMessage:
    node = ctx.node(data, "", ("type", "instructions"))
    return UpdatePrompt(prompt=node.req_str("instructions"), append=True)


def _require(node: Node, key: str, what: str) -> None:
    if not node.has(key):
        node.ctx.expected(node.at(key), what, node.data.get(key, MISSING))


def _update_speak(ctx: Context, data: JsonObject) -> ClientMessage:
    node = ctx.node(data, "", ("type", "speak"))
    _require(node, "speak", "an object or an array")
    return UpdateSpeak(speak=read_fallbacks(node, "speak", read_speak))


def _update_speak_ea(ctx: Context, data: JsonObject) -> ClientMessage:
    model = ctx.node(data, "", ("type", "model")).req_str("model")
    return UpdateSpeak(speak=(SpeakConfig(Provider("deepgram", model or None)),))


def _update_think(ctx: Context, data: JsonObject) -> ClientMessage:
    node = ctx.node(data, "", ("type", "think"))
    _require(node, "think", "an object or an array")
    return UpdateThink(think=read_fallbacks(node, "think", read_think))


def _update_listen(ctx: Context, data: JsonObject) -> ClientMessage:
    ctx.node(data, "", ("type", "listen"))
    listen = ctx.node(data.get("listen", MISSING), "listen", ("provider",))
    return UpdateListen(listen=read_listen(listen))


def _inject_user(ctx: Context, data: JsonObject) -> ClientMessage:
    return InjectUserMessage(content=ctx.node(data, "", ("type", "content")).req_str("content"))


def _inject_agent(ctx: Context, data: JsonObject) -> ClientMessage:
    node = ctx.node(data, "", ("type", "message", "content", "behavior"))
    behavior = cast(InjectBehavior, node.opt_enum("behavior", BEHAVIORS) or "default")
    return InjectAgentMessage(message=node.alias_str("message", "content"), behavior=behavior)


_FUNCTION_RESPONSE = ("type", "id", "function_call_id", "name", "content", "output")


def _function_response(ctx: Context, data: JsonObject) -> ClientMessage:
    node = ctx.node(data, "", _FUNCTION_RESPONSE)
    return FunctionCallResponse(
        id=node.alias_str("id", "function_call_id"),
        name=node.opt_str("name") or "",
        content=node.alias_str("content", "output"),
    )


def _function_response_ea(ctx: Context, data: JsonObject) -> ClientMessage:
    node = ctx.node(data, "", _FUNCTION_RESPONSE)
    return FunctionCallResponse(
        id=node.alias_str("function_call_id", "id"),
        name=node.opt_str("name") or "",
        content=node.alias_str("output", "content"),
    )


def _keep_alive(ctx: Context, data: JsonObject) -> ClientMessage:
    ctx.node(data, "", ("type",))
    return KeepAlive()


def _force_end_turn(ctx: Context, data: JsonObject) -> ClientMessage:
    ctx.node(data, "", ("type",))
    return ForceEndTurn()


def _unsupported(ctx: Context, data: JsonObject) -> ClientMessage:
    """Documented messages harken does not serve: their fields are not read (nor listed)."""
    return Unsupported(name=data["type"])


UNSUPPORTED_TYPES = (
    "UpdateThink_Live",
    "__customToThinkProvider",
)


_ClientParser = Callable[[Context, JsonObject], ClientMessage]
_CLIENT_PARSERS: dict[Generation, dict[str, _ClientParser]] = {
    Generation.GA: {
        "Settings": _settings(Generation.GA),
        "UpdatePrompt": _update_prompt,
        "UpdateSpeak": _update_speak,
        "UpdateThink": _update_think,
        "UpdateListen": _update_listen,
        "InjectUserMessage": _inject_user,
        "InjectAgentMessage": _inject_agent,
        "FunctionCallResponse": _function_response,
        "KeepAlive": _keep_alive,
        "ForceEndTurn": _force_end_turn,
    }
    | dict.fromkeys(UNSUPPORTED_TYPES, _unsupported),
    Generation.EA: {
        "SettingsConfiguration": _settings(Generation.EA),
        "UpdateInstructions": _update_instructions,
        "UpdateSpeak": _update_speak_ea,
        "InjectUserMessage": _inject_user,
        "InjectAgentMessage": _inject_agent,
        "FunctionCallResponse": _function_response_ea,
        "KeepAlive": _keep_alive,
    },
}

# ----------------------------------------------------------------------------------- client out


def _not_on(generation: Generation, why: str) -> LocalProtocolError:
    endpoint = "/agent" if generation is Generation.EA else "/v1/agent/converse"
    return LocalProtocolError(codes.UNPARSABLE_CLIENT_MESSAGE, f"Cannot send on {endpoint}: {why}")


def _update_prompt_out(m: UpdatePrompt) -> JsonObject:
    if m.append:
        raise _not_on(Generation.GA, "UpdatePrompt is sent with append=False (it adds anyway).")
    return {"type": m.type, "prompt": m.prompt}


def _update_instructions_out(m: UpdatePrompt) -> JsonObject:
    if not m.append:
        raise _not_on(Generation.EA, "UpdateInstructions adds to the prompt (append=True).")
    return {"type": "UpdateInstructions", "instructions": m.prompt}


def _update_speak_ea_out(m: UpdateSpeak) -> JsonObject:
    model = m.speak[0].provider.model if m.speak else None
    return {"type": m.type, "model": model or ""}


def _ga_only(m: ClientMessage) -> JsonObject:
    raise _not_on(Generation.EA, f"{m.type} exists only on /v1/agent/converse.")


def _inject_agent_out(m: InjectAgentMessage) -> JsonObject:
    out: JsonObject = {"type": m.type, "message": m.message}
    if m.behavior != "default":
        out["behavior"] = m.behavior
    return out


_ClientEncoder = Callable[[Any], JsonObject]
_GA_CLIENT_ENCODERS: dict[str, _ClientEncoder] = {
    "Settings": lambda m: settings_to_wire(m, Generation.GA),
    "UpdatePrompt": _update_prompt_out,
    "UpdateSpeak": lambda m: {"type": m.type, "speak": fallbacks_to_wire(m.speak, speak_to_wire)},
    "UpdateThink": lambda m: {"type": m.type, "think": fallbacks_to_wire(m.think, think_to_wire)},
    "UpdateListen": lambda m: {"type": m.type, "listen": listen_to_wire(m.listen)},
    "InjectUserMessage": lambda m: {"type": m.type, "content": m.content},
    "InjectAgentMessage": _inject_agent_out,
    "FunctionCallResponse": lambda m: _plain(m)[0],
    "KeepAlive": lambda m: {"type": m.type},
    "ForceEndTurn": lambda m: {"type": m.type},
}
_EA_CLIENT_ENCODERS: dict[str, _ClientEncoder] = _GA_CLIENT_ENCODERS | {
    "Settings": lambda m: settings_to_wire(m, Generation.EA),
    "UpdatePrompt": _update_instructions_out,
    "UpdateSpeak": _update_speak_ea_out,
    "UpdateThink": _ga_only,
    "UpdateListen": _ga_only,
    "ForceEndTurn": _ga_only,
    "FunctionCallResponse": lambda m: {
        "type": m.type,
        "function_call_id": m.id,
        "output": m.content,
    },
}

# ----------------------------------------------------------------------------------- server out


_FIELD_NAMES = {
    cls: tuple(f.name for f in fields(cls) if f.name != "type") for cls in get_args(ServerMessage)
}


def _plain(m: Any) -> list[JsonObject]:
    """``{"type", every field}``; fields that are ``None`` are left out."""
    out: JsonObject = {"type": m.type}
    for name in _FIELD_NAMES[type(m)]:
        value = getattr(m, name)
        if value is not None:
            out[name] = value
    return [out]


def _function_call_request(m: FunctionCallRequest) -> list[JsonObject]:
    functions = [
        {"id": f.id, "name": f.name, "arguments": f.arguments, "client_side": f.client_side}
        for f in m.functions
    ]
    return [{"type": m.type, "functions": functions}]


def _function_call_request_ea(m: FunctionCallRequest) -> list[JsonObject]:
    return [
        {"type": m.type, "function_name": f.name, "function_call_id": f.id, "input": f.arguments}
        for f in m.functions
        if f.client_side
    ]


def _history(m: History) -> list[JsonObject]:
    out = _plain(m)[0]
    if m.function_calls is not None:
        out["function_calls"] = [history_call_to_wire(call) for call in m.function_calls]
    return [out]


_ServerEncoder = Callable[[Any], list[JsonObject]]
_GA_SERVER_ENCODERS: dict[str, _ServerEncoder] = {
    "FunctionCallRequest": _function_call_request,
    "FunctionCallCancelled": lambda m: [
        {"type": m.type, "functions": [{"id": f.id, "name": f.name} for f in m.functions]}
    ],
    "History": _history,
    "FunctionCalling": lambda m: [],
}
_EA_SERVER_ENCODERS: dict[str, _ServerEncoder] = _GA_SERVER_ENCODERS | {
    "Welcome": lambda m: [{"type": m.type, "session_id": m.request_id}],
    "PromptUpdated": lambda m: [{"type": "InstructionsUpdated"}],
    "FunctionCallRequest": _function_call_request_ea,
    "FunctionCallResponse": lambda m: [],
    "Error": lambda m: [
        {"type": m.type, "message": m.description, "description": m.description, "code": m.code}
    ],
    "FunctionCalling": lambda m: [{"type": m.type}],
    "ConversationText": lambda m: [{"type": m.type, "role": m.role, "content": m.content}],
}

# ----------------------------------------------------------------------------------- server in


def _required_list(node: Node, key: str) -> list[tuple[str, Any]]:
    _require(node, key, "an array")
    return node.opt_list(key) or []


def _function_calls(node: Node) -> ServerMessage:
    items = [node.ctx.node(v, p, None) for p, v in _required_list(node, "functions")]
    calls = tuple(
        FunctionCall(
            id=f.req_str("id"),
            name=f.req_str("name"),
            arguments=f.req_str("arguments"),
            client_side=f.req_bool("client_side"),
        )
        for f in items
    )
    return FunctionCallRequest(functions=calls)


def _function_call_ea(node: Node) -> ServerMessage:
    arguments = node.data.get("input", MISSING)
    if arguments is MISSING or arguments is None:
        node.ctx.expected("input", "a JSON string or object", arguments)
    if not isinstance(arguments, str):
        arguments = _ENCODER.encode(arguments)
    call = FunctionCall(
        id=node.req_str("function_call_id"),
        name=node.req_str("function_name"),
        arguments=arguments,
        client_side=True,
    )
    return FunctionCallRequest(functions=(call,))


def _cancelled(node: Node) -> ServerMessage:
    items = [node.ctx.node(v, p, None) for p, v in _required_list(node, "functions")]
    functions = tuple(CancelledFunction(id=f.req_str("id"), name=f.req_str("name")) for f in items)
    return FunctionCallCancelled(functions=functions)


def _history_in(node: Node) -> ServerMessage:
    calls = node.opt_list("function_calls")
    return History(
        role=cast(Role, node.opt_enum("role", ROLES)),
        content=node.opt_str("content"),
        function_calls=None
        if calls is None
        else tuple(read_history_call(node.ctx.node(v, p, None)) for p, v in calls),
    )


def _conversation_text(node: Node) -> ServerMessage:
    behavior = node.opt_enum("conversational_behavior", CONVERSATIONAL_BEHAVIORS)
    return ConversationText(
        role=cast(Role, node.req_enum("role", ROLES)),
        content=node.req_str("content"),
        conversational_behavior=cast(ConversationalBehavior, behavior or "default"),
    )


def _latency(node: Node) -> ServerMessage:
    return LatencyReport(
        total_latency=node.opt_number("total_latency"),
        ttt_token_latency=node.opt_number("ttt_token_latency"),
        ttt_text_latency=node.opt_number("ttt_text_latency"),
        ttt_tool_latency=node.opt_number("ttt_tool_latency"),
        tts_latency=node.opt_number("tts_latency"),
        stt_latency=node.opt_number("stt_latency"),
        eou_latency=node.opt_number("eou_latency"),
    )


_ServerParser = Callable[[Node], ServerMessage]
_GA_SERVER_PARSERS: dict[str, _ServerParser] = {
    "Welcome": lambda n: Welcome(request_id=n.alias_str("request_id", "session_id")),
    "SettingsApplied": lambda n: SettingsApplied(),
    "PromptUpdated": lambda n: PromptUpdated(),
    "SpeakUpdated": lambda n: SpeakUpdated(),
    "ThinkUpdated": lambda n: ThinkUpdated(),
    "ListenUpdated": lambda n: ListenUpdated(),
    "ConversationText": _conversation_text,
    "UserStartedSpeaking": lambda n: UserStartedSpeaking(),
    "AgentThinking": lambda n: AgentThinking(content=n.req_str("content")),
    "FunctionCallRequest": _function_calls,
    "FunctionCallResponse": lambda n: FunctionCallResponse(
        id=n.opt_alias_str("id", "function_call_id") or "",
        name=n.opt_str("name") or "",
        content=n.alias_str("content", "output"),
    ),
    "FunctionCallCancelled": _cancelled,
    "AgentStartedSpeaking": lambda n: AgentStartedSpeaking(
        total_latency=n.req_number("total_latency"),
        tts_latency=n.req_number("tts_latency"),
        ttt_latency=n.req_number("ttt_latency"),
    ),
    "AgentAudioDone": lambda n: AgentAudioDone(),
    "InjectionRefused": lambda n: InjectionRefused(message=n.opt_str("message") or ""),
    "History": _history_in,
    "EndOfThought": lambda n: EndOfThought(),
    "LatencyReport": _latency,
    "Warning": lambda n: Warning(code=n.req_str("code"), description=n.req_str("description")),
    "Error": lambda n: Error(
        code=n.opt_str("code") or "",
        description=n.opt_alias_str("description", "message") or "",
    ),
}
_EA_SERVER_PARSERS: dict[str, _ServerParser] = {
    k: v for k, v in _GA_SERVER_PARSERS.items() if k != "PromptUpdated"
} | {
    "InstructionsUpdated": lambda n: PromptUpdated(),
    "FunctionCalling": lambda n: FunctionCalling(),
    "FunctionCallRequest": _function_call_ea,
}
_SERVER_PARSERS = {Generation.GA: _GA_SERVER_PARSERS, Generation.EA: _EA_SERVER_PARSERS}
