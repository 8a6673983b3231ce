"""The events an agent connection emits, and the keyword each payload travels under.

``AgentWebSocketEvents`` has every member of ``deepgram-sdk`` 4.8.1 (same names, same values)
plus the server messages 4.8.1 leaves to ``Unhandled``: ``PromptUpdated``, ``SpeakUpdated``,
``ThinkUpdated``, ``ListenUpdated``, ``History``, ``Warning``, ``LatencyReport``,
``FunctionCallCancelled`` and the server's own ``FunctionCallResponse``, and the early-access
``FunctionCalling`` of 3.x (early access's ``InstructionsUpdated`` arrives as ``PromptUpdated``).

Those newer events fall back to ``Unhandled`` (with the raw JSON, exactly like 4.8.1) while no
handler is registered for them, so code written for 4.8.1 that watches ``Unhandled`` keeps working.
"""

from __future__ import annotations

import enum


class AgentWebSocketEvents(enum.StrEnum):
    """Names of the events a connection emits (server side) and of the client message types."""

    # connection and server messages
    Open = "Open"
    Close = "Close"
    AudioData = "AudioData"
    Welcome = "Welcome"
    SettingsApplied = "SettingsApplied"
    ConversationText = "ConversationText"
    UserStartedSpeaking = "UserStartedSpeaking"
    AgentThinking = "AgentThinking"
    FunctionCallRequest = "FunctionCallRequest"
    AgentStartedSpeaking = "AgentStartedSpeaking"
    AgentAudioDone = "AgentAudioDone"
    InjectionRefused = "InjectionRefused"
    Error = "Error"
    Unhandled = "Unhandled"
    # server messages 4.8.1 has no event for (harken additions)
    PromptUpdated = "PromptUpdated"
    SpeakUpdated = "SpeakUpdated"
    ThinkUpdated = "ThinkUpdated"
    ListenUpdated = "ListenUpdated"
    History = "History"
    Warning = "Warning"
    LatencyReport = "LatencyReport"
    FunctionCallCancelled = "FunctionCallCancelled"
    FunctionCallResponse = "FunctionCallResponse"
    FunctionCalling = "FunctionCalling"  # early access (3.x)

    # client message types (never emitted; kept for 4.8.1 compatibility)
    Settings = "Settings"
    UpdatePrompt = "UpdatePrompt"
    UpdateSpeak = "UpdateSpeak"
    UpdateThink = "UpdateThink"
    InjectAgentMessage = "InjectAgentMessage"
    InjectUserMessage = "InjectUserMessage"
    AgentKeepAlive = "AgentKeepAlive"
    ForceEndTurn = "ForceEndTurn"


_E = AgentWebSocketEvents

#: The keyword under which 4.8.1 passes each event's payload to a handler.
PAYLOAD_KEYWORDS: dict[AgentWebSocketEvents, str] = {
    _E.Open: "open",
    _E.Close: "close",
    _E.AudioData: "data",
    _E.Welcome: "welcome",
    _E.SettingsApplied: "settings_applied",
    _E.ConversationText: "conversation_text",
    _E.UserStartedSpeaking: "user_started_speaking",
    _E.AgentThinking: "agent_thinking",
    _E.FunctionCallRequest: "function_call_request",
    _E.AgentStartedSpeaking: "agent_started_speaking",
    _E.AgentAudioDone: "agent_audio_done",
    _E.InjectionRefused: "injection_refused",
    _E.Error: "error",
    _E.Unhandled: "unhandled",
    _E.PromptUpdated: "prompt_updated",
    _E.SpeakUpdated: "speak_updated",
    _E.ThinkUpdated: "think_updated",
    _E.ListenUpdated: "listen_updated",
    _E.History: "history",
    _E.Warning: "warning",
    _E.LatencyReport: "latency_report",
    _E.FunctionCallCancelled: "function_call_cancelled",
    _E.FunctionCallResponse: "function_call_response",
    _E.FunctionCalling: "function_calling",
}

#: Events that 4.8.1 delivered as ``Unhandled``; they still do while nobody listens for them.
FALLBACK_TO_UNHANDLED: frozenset[AgentWebSocketEvents] = frozenset(
    {
        _E.PromptUpdated,
        _E.SpeakUpdated,
        _E.ThinkUpdated,
        _E.ListenUpdated,
        _E.History,
        _E.Warning,
        _E.LatencyReport,
        _E.FunctionCallCancelled,
        _E.FunctionCallResponse,
        _E.FunctionCalling,
    }
)


def payload_keyword(event: AgentWebSocketEvents) -> str:
    """The keyword for ``event``'s payload (client message types get their snake-case name)."""
    keyword = PAYLOAD_KEYWORDS.get(event)
    if keyword is not None:
        return keyword
    name = str(event)
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")
