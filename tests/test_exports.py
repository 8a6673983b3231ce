"""Pin harken's public API: ``from deepgram import X`` becomes ``from harken import X``."""

from __future__ import annotations

import harken
import harken.client

EXPECTED = [
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

# every agent name deepgram-sdk 4.8.1 exports at the top level (PROTOCOL.md 6.5)
DEEPGRAM_481 = {
    "AgentWebSocketClient", "AsyncAgentWebSocketClient", "AgentWebSocketEvents", "AgentRouter",
    "SettingsOptions", "Agent", "Audio", "Input", "Output", "Listen", "Think", "Speak",
    "Provider", "Endpoint", "Function", "Parameters", "Properties", "Item", "Header",
    "UpdatePromptOptions", "UpdateSpeakOptions", "InjectAgentMessageOptions",
    "InjectUserMessageOptions", "FunctionCallResponse", "AgentKeepAlive", "WelcomeResponse",
    "SettingsAppliedResponse", "ConversationTextResponse", "UserStartedSpeakingResponse",
    "AgentThinkingResponse", "FunctionCall", "FunctionCallRequest",
    "AgentStartedSpeakingResponse", "AgentAudioDoneResponse", "InjectionRefusedResponse",
    "OpenResponse", "CloseResponse", "ErrorResponse", "UnhandledResponse",
    "DeepgramClient", "DeepgramClientOptions", "DeepgramApiError",
}  # fmt: skip


def test_all_is_pinned() -> None:
    assert harken.__all__ == EXPECTED
    assert harken.client.__all__ == EXPECTED


def test_every_name_resolves_to_the_sdk_object() -> None:
    for name in EXPECTED:
        assert getattr(harken, name) is getattr(harken.client, name), name


def test_the_481_names_are_all_there() -> None:
    assert set(EXPECTED) >= DEEPGRAM_481


def test_star_import() -> None:
    namespace: dict[str, object] = {}
    exec("from harken import *", namespace)
    assert set(EXPECTED) <= set(namespace)
