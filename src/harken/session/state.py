"""Turn-taking as a table: ``(state, event) -> Row(next state, what to cancel)``.

The session consults :data:`TRANSITIONS` for every turn event; a pair that is not in the table
is illegal and raises :class:`IllegalTransition` with the state left unchanged. Barge-in is not
a race fix scattered across tasks: it is the row ``(AGENT_SPEAKING, SPEECH_STARTED)``, whose
``cancel_reply`` flag makes the session cancel the reply's LLM and TTS jobs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from harken.errors import LocalProtocolError
from harken.protocol.codes import INTERNAL_SERVER_ERROR


class Phase(enum.Enum):
    """Connection lifecycle."""

    AWAITING_SETTINGS = "awaiting_settings"
    ACTIVE = "active"
    CLOSED = "closed"


class Turn(enum.Enum):
    """Who has the floor once Settings are applied."""

    LISTENING = "listening"  # nobody speaks; waiting for the user
    USER_SPEAKING = "user_speaking"  # speech onset seen, turn not final yet
    THINKING = "thinking"  # a reply is being prepared; no agent audio sent yet
    AGENT_SPEAKING = "agent_speaking"  # agent audio of the current reply is going out


class TurnEvent(enum.Enum):
    SPEECH_STARTED = "speech_started"  # VAD onset (user audio)
    SPEECH_DISCARDED = "speech_discarded"  # the onset was not a turn (noise, empty transcript)
    USER_TURN_ENDED = "user_turn_ended"  # final user text (end of turn or InjectUserMessage)
    AGENT_MESSAGE = "agent_message"  # the agent says given text (greeting, injection)
    AUDIO_STARTED = "audio_started"  # first agent audio frame of a reply went out
    REPLY_FINISHED = "reply_finished"  # last frame sent (or the reply ended without audio)


@dataclass(frozen=True, slots=True)
class Row:
    next: Turn
    cancel_reply: bool = False  # cancel the reply in progress (its LLM, TTS and function jobs)


L, U, T, A = Turn.LISTENING, Turn.USER_SPEAKING, Turn.THINKING, Turn.AGENT_SPEAKING
E = TurnEvent

TRANSITIONS: dict[tuple[Turn, TurnEvent], Row] = {
    # the user starts talking
    (L, E.SPEECH_STARTED): Row(U),
    (U, E.SPEECH_STARTED): Row(U),
    (T, E.SPEECH_STARTED): Row(U, cancel_reply=True),  # user goes on before the agent spoke
    (A, E.SPEECH_STARTED): Row(U, cancel_reply=True),  # barge-in
    # the onset was noise, or the transcript came back empty
    (U, E.SPEECH_DISCARDED): Row(L),
    # a final user turn: reply to it (pre-empting whatever reply was in progress)
    (L, E.USER_TURN_ENDED): Row(T),
    (U, E.USER_TURN_ENDED): Row(T),
    (T, E.USER_TURN_ENDED): Row(T, cancel_reply=True),
    (A, E.USER_TURN_ENDED): Row(T, cancel_reply=True),
    # the agent says a given text (greeting, InjectAgentMessage)
    (L, E.AGENT_MESSAGE): Row(T),
    (T, E.AGENT_MESSAGE): Row(T, cancel_reply=True),  # behavior=interrupt
    (A, E.AGENT_MESSAGE): Row(T, cancel_reply=True),  # behavior=interrupt
    # reply progress
    (T, E.AUDIO_STARTED): Row(A),
    (A, E.AUDIO_STARTED): Row(A),
    (T, E.REPLY_FINISHED): Row(L),
    (A, E.REPLY_FINISHED): Row(L),
}


class IllegalTransition(LocalProtocolError):
    """A turn event that the current state does not allow (a bug in the caller)."""

    def __init__(self, state: Turn, event: TurnEvent) -> None:
        super().__init__(INTERNAL_SERVER_ERROR, f"turn event {event.value} in state {state.value}")
        self.state = state
        self.event = event


def transition(state: Turn, event: TurnEvent) -> Row:
    """Look up the row for ``(state, event)``; raise :class:`IllegalTransition` if none."""
    row = TRANSITIONS.get((state, event))
    if row is None:
        raise IllegalTransition(state, event)
    return row
