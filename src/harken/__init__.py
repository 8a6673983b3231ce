"""harken: a self-hosted voice agent server speaking Deepgram's Voice Agent API, and its SDK.

The SDK mirrors ``deepgram-sdk`` 4.8.1's agent module, so ``from deepgram import X`` becomes
``from harken import X``::

    from harken import DeepgramClient, AgentWebSocketEvents, SettingsOptions

    connection = DeepgramClient().agent.websocket.v("1")  # ws://127.0.0.1:8765 or $HARKEN_URL
"""

from __future__ import annotations

import os as _os

# The embedded models' thread pools (llama.cpp's and CTranslate2's, both on libgomp) spin-wait
# between and inside parallel regions by default. Beside another busy process (a second replica,
# a llama-server) that spinning starves the thread being waited for, and mouth-to-ear went from
# 1.6 s to 4.2 s with one core taken; passive waits keep it at 2.3 s and cost nothing measurable
# on a quiet machine (BENCHMARKS.md, issue 14). libgomp reads this once, when a model library is
# loaded, so it is set as soon as harken is imported; an operator's own setting wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from harken.client import (
    Agent,
    AgentAudioDoneResponse,
    AgentKeepAlive,
    AgentRouter,
    AgentStartedSpeakingResponse,
    AgentThinkingResponse,
    AgentWebSocketClient,
    AgentWebSocketEvents,
    AsyncAgentWebSocketClient,
    Audio,
    CancelledFunction,
    CloseResponse,
    ConversationTextResponse,
    DeepgramApiError,
    DeepgramClient,
    DeepgramClientOptions,
    Endpoint,
    ErrorResponse,
    Function,
    FunctionCall,
    FunctionCallCancelledResponse,
    FunctionCallDetails,
    FunctionCalling,
    FunctionCallRequest,
    FunctionCallResponse,
    Header,
    HistoryFunctionCall,
    HistoryResponse,
    InjectAgentMessageOptions,
    InjectionRefusedResponse,
    InjectUserMessageOptions,
    Input,
    Item,
    LatencyReportResponse,
    Listen,
    ListenUpdatedResponse,
    OpenResponse,
    Output,
    Parameters,
    PromptUpdatedResponse,
    Properties,
    Provider,
    ServerFunctionCallResponse,
    SettingsAppliedResponse,
    SettingsOptions,
    Speak,
    SpeakUpdatedResponse,
    Think,
    ThinkUpdatedResponse,
    UnhandledResponse,
    UpdatePromptOptions,
    UpdateSpeakOptions,
    UpdateThinkOptions,
    UserStartedSpeakingResponse,
    WarningResponse,
    WelcomeResponse,
)

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "AgentAudioDoneResponse",
    "AgentKeepAlive",
    "AgentRouter",
    "AgentStartedSpeakingResponse",
    "AgentThinkingResponse",
    "AgentWebSocketClient",
    "AgentWebSocketEvents",
    "AsyncAgentWebSocketClient",
    "Audio",
    "CancelledFunction",
    "CloseResponse",
    "ConversationTextResponse",
    "DeepgramApiError",
    "DeepgramClient",
    "DeepgramClientOptions",
    "Endpoint",
    "ErrorResponse",
    "Function",
    "FunctionCall",
    "FunctionCallCancelledResponse",
    "FunctionCallDetails",
    "FunctionCallRequest",
    "FunctionCallResponse",
    "FunctionCalling",
    "Header",
    "HistoryFunctionCall",
    "HistoryResponse",
    "InjectAgentMessageOptions",
    "InjectUserMessageOptions",
    "InjectionRefusedResponse",
    "Input",
    "Item",
    "LatencyReportResponse",
    "Listen",
    "ListenUpdatedResponse",
    "OpenResponse",
    "Output",
    "Parameters",
    "PromptUpdatedResponse",
    "Properties",
    "Provider",
    "ServerFunctionCallResponse",
    "SettingsAppliedResponse",
    "SettingsOptions",
    "Speak",
    "SpeakUpdatedResponse",
    "Think",
    "ThinkUpdatedResponse",
    "UnhandledResponse",
    "UpdatePromptOptions",
    "UpdateSpeakOptions",
    "UpdateThinkOptions",
    "UserStartedSpeakingResponse",
    "WarningResponse",
    "WelcomeResponse",
]
