"""One flat frozen type per wire message, for both directions and both generations.

harken speaks two protocol generations (``Generation.GA`` at ``/v1/agent/converse`` and
``Generation.EA`` at ``/agent``). Internally there is one vocabulary, named after GA; the codec
maps early-access frames onto it and back:

============================  ======================================================
GA type (internal)            early-access wire form
============================  ======================================================
Settings                      SettingsConfiguration (flat listen/think/speak models)
UpdatePrompt                  UpdateInstructions{instructions} (``append=True``)
UpdateSpeak                   UpdateSpeak{model}
FunctionCallResponse          FunctionCallResponse{function_call_id, output}
Welcome{request_id}           Welcome{session_id}
PromptUpdated                 InstructionsUpdated
FunctionCallRequest           one FunctionCallRequest{function_name, function_call_id,
                              input (JSON string)} per client-side function
                              (server-side calls are not announced on EA)
Error{code, description}      Error{message, code, description}
============================  ======================================================

Every class has a ``type`` field with a ``Literal`` default so instances are self-describing;
no message type inherits from another.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal

from harken.protocol.settings import (
    AgentConfig,
    AudioConfig,
    Flags,
    HistoryFunctionCall,
    ListenConfig,
    SpeakConfig,
    ThinkConfig,
)


class Generation(enum.Enum):
    GA = "ga"  # /v1/agent/converse
    EA = "ea"  # /agent


InjectBehavior = Literal["default", "queue", "interrupt"]
ConversationalBehavior = Literal["default", "backchannel", "presence_check", "filler"]

# --------------------------------------------------------------------------- client -> server


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    audio: AudioConfig = field(default_factory=AudioConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    experimental: bool = False
    tags: tuple[str, ...] = ()
    flags: Flags = field(default_factory=Flags)
    mip_opt_out: bool = False
    type: Literal["Settings"] = "Settings"


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdatePrompt:
    prompt: str
    append: bool = False  # early access UpdateInstructions adds to the prompt
    type: Literal["UpdatePrompt"] = "UpdatePrompt"


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateSpeak:
    speak: tuple[SpeakConfig, ...]
    type: Literal["UpdateSpeak"] = "UpdateSpeak"


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateThink:
    think: tuple[ThinkConfig, ...]
    type: Literal["UpdateThink"] = "UpdateThink"


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateListen:
    listen: ListenConfig
    type: Literal["UpdateListen"] = "UpdateListen"


@dataclass(frozen=True, slots=True, kw_only=True)
class InjectUserMessage:
    content: str
    type: Literal["InjectUserMessage"] = "InjectUserMessage"


@dataclass(frozen=True, slots=True, kw_only=True)
class InjectAgentMessage:
    message: str
    behavior: InjectBehavior = "default"
    type: Literal["InjectAgentMessage"] = "InjectAgentMessage"


@dataclass(frozen=True, slots=True, kw_only=True)
class FunctionCallResponse:
    """Travels both ways: the client's answer to a call, or the server's report of one it ran."""

    id: str
    name: str
    content: str
    type: Literal["FunctionCallResponse"] = "FunctionCallResponse"


@dataclass(frozen=True, slots=True, kw_only=True)
class KeepAlive:
    type: Literal["KeepAlive"] = "KeepAlive"


@dataclass(frozen=True, slots=True, kw_only=True)
class ForceEndTurn:
    """End the user's turn now (push-to-talk release, a "send" button, DTMF); no fields."""

    type: Literal["ForceEndTurn"] = "ForceEndTurn"


@dataclass(frozen=True, slots=True, kw_only=True)
class Unsupported:
    """A message Deepgram documents that harken does not serve (Think Live, the
    ``__customToThinkProvider`` pass-through): answered with a Warning, never fatal.

    ``name`` is the wire ``type``; this type is never encoded.
    """

    name: str
    type: Literal["Unsupported"] = "Unsupported"


ClientMessage = (
    Settings
    | UpdatePrompt
    | UpdateSpeak
    | UpdateThink
    | UpdateListen
    | InjectUserMessage
    | InjectAgentMessage
    | FunctionCallResponse
    | KeepAlive
    | ForceEndTurn
    | Unsupported
)

# --------------------------------------------------------------------------- server -> client


@dataclass(frozen=True, slots=True, kw_only=True)
class Welcome:
    request_id: str
    type: Literal["Welcome"] = "Welcome"


@dataclass(frozen=True, slots=True, kw_only=True)
class SettingsApplied:
    type: Literal["SettingsApplied"] = "SettingsApplied"


@dataclass(frozen=True, slots=True, kw_only=True)
class PromptUpdated:
    type: Literal["PromptUpdated"] = "PromptUpdated"


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeakUpdated:
    type: Literal["SpeakUpdated"] = "SpeakUpdated"


@dataclass(frozen=True, slots=True, kw_only=True)
class ThinkUpdated:
    type: Literal["ThinkUpdated"] = "ThinkUpdated"


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenUpdated:
    type: Literal["ListenUpdated"] = "ListenUpdated"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationText:
    """``conversational_behavior`` goes out on GA only (PROTOCOL.md §10); harken's replies are
    all ``default``. The optional ``languages``/``languages_hinted`` are not sent."""

    role: Literal["user", "assistant"]
    content: str
    conversational_behavior: ConversationalBehavior = "default"
    type: Literal["ConversationText"] = "ConversationText"


@dataclass(frozen=True, slots=True, kw_only=True)
class UserStartedSpeaking:
    type: Literal["UserStartedSpeaking"] = "UserStartedSpeaking"


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentThinking:
    content: str
    type: Literal["AgentThinking"] = "AgentThinking"


@dataclass(frozen=True, slots=True, kw_only=True)
class FunctionCall:
    """One entry of ``FunctionCallRequest.functions``; ``arguments`` is JSON text."""

    id: str
    name: str
    arguments: str
    client_side: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class FunctionCallRequest:
    functions: tuple[FunctionCall, ...]
    type: Literal["FunctionCallRequest"] = "FunctionCallRequest"


@dataclass(frozen=True, slots=True, kw_only=True)
class FunctionCalling:
    """Early-access debug notice sent before a function call; GA has no equivalent."""

    type: Literal["FunctionCalling"] = "FunctionCalling"


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelledFunction:
    id: str
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FunctionCallCancelled:
    functions: tuple[CancelledFunction, ...]
    type: Literal["FunctionCallCancelled"] = "FunctionCallCancelled"


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentStartedSpeaking:
    total_latency: float
    tts_latency: float
    ttt_latency: float
    type: Literal["AgentStartedSpeaking"] = "AgentStartedSpeaking"


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentAudioDone:
    type: Literal["AgentAudioDone"] = "AgentAudioDone"


@dataclass(frozen=True, slots=True, kw_only=True)
class InjectionRefused:
    message: str
    type: Literal["InjectionRefused"] = "InjectionRefused"


@dataclass(frozen=True, slots=True, kw_only=True)
class History:
    """Either ``role`` + ``content`` or ``function_calls``; unset parts are not encoded."""

    role: Literal["user", "assistant"] | None = None
    content: str | None = None
    function_calls: tuple[HistoryFunctionCall, ...] | None = None
    type: Literal["History"] = "History"


@dataclass(frozen=True, slots=True, kw_only=True)
class EndOfThought:
    """Undocumented; the live server sent it after each user ``ConversationText``."""

    type: Literal["EndOfThought"] = "EndOfThought"


@dataclass(frozen=True, slots=True, kw_only=True)
class LatencyReport:
    """Latencies in seconds; fields left ``None`` are not encoded."""

    total_latency: float | None = None
    ttt_token_latency: float | None = None
    ttt_text_latency: float | None = None
    ttt_tool_latency: float | None = None
    tts_latency: float | None = None
    stt_latency: float | None = None
    eou_latency: float | None = None
    type: Literal["LatencyReport"] = "LatencyReport"


@dataclass(frozen=True, slots=True, kw_only=True)
class Warning:  # the wire name; shadows the builtin inside this module only
    code: str
    description: str
    type: Literal["Warning"] = "Warning"


@dataclass(frozen=True, slots=True, kw_only=True)
class Error:
    code: str
    description: str
    type: Literal["Error"] = "Error"


ServerMessage = (
    Welcome
    | SettingsApplied
    | PromptUpdated
    | SpeakUpdated
    | ThinkUpdated
    | ListenUpdated
    | ConversationText
    | UserStartedSpeaking
    | AgentThinking
    | FunctionCallRequest
    | FunctionCalling
    | FunctionCallResponse
    | FunctionCallCancelled
    | AgentStartedSpeaking
    | AgentAudioDone
    | InjectionRefused
    | History
    | EndOfThought
    | LatencyReport
    | Warning
    | Error
)
