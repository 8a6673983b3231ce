"""The session as one table: ``(State, Event) -> Row(next state, actions)``.

One flat machine holds what used to be three (the connection phase, the turn, and speculation):

==================  ======================================================================
state               meaning
==================  ======================================================================
AWAITING_SETTINGS   connected; only ``Settings`` (or ``KeepAlive``) may come first
LISTENING           nobody has the floor
USER_SPEAKING       a speech onset was heard; nothing of this utterance is being transcribed
GUESSING            the user paused: a speculative transcription of the turn so far runs
HELD                the guess came back: a reply is prepared and held (never spoken) until
                    the turn is final
HELD_FAILED         the held reply's LLM failed: the failure is said once the turn is final
TRANSCRIBING        the turn ended: its final transcription runs
CONTINUING          the user speaks again while the turn before is still transcribed (the
                    two parts become one turn)
THINKING            a reply is being prepared; none of its audio went out yet
AGENT_SPEAKING      the reply's audio is going out
CLOSED              the connection is over; everything is ignored
==================  ======================================================================

Every ``(state, event)`` pair is either a row of :data:`TRANSITIONS` or a named impossibility
in :data:`IMPOSSIBLE` with the reason it cannot happen; ``tests/test_session_table.py``
enumerates the product. Events a client can cause (its messages, its audio) are never
impossible: where they make no sense they get a row that refuses or ignores them.

The driver (:class:`harken.session.turns.Turns`) classifies each input into an :class:`Event`,
sets the next state and then runs the row's actions in order; an action may feed a further
event (a held reply whose audio is already synthesised starts speaking at once), which sees the
new state. Barge-in is the row ``(AGENT_SPEAKING, ONSET)``: ``USER_STARTED`` (the client stops
playing at once) and ``CANCEL_REPLY``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from harken.errors import LocalProtocolError
from harken.protocol.codes import INTERNAL_SERVER_ERROR


class State(enum.Enum):
    AWAITING_SETTINGS = "awaiting_settings"
    LISTENING = "listening"
    USER_SPEAKING = "user_speaking"
    GUESSING = "guessing"
    HELD = "held"
    HELD_FAILED = "held_failed"
    TRANSCRIBING = "transcribing"
    CONTINUING = "continuing"
    THINKING = "thinking"
    AGENT_SPEAKING = "agent_speaking"
    CLOSED = "closed"


class Turn(enum.Enum):
    """Who has the floor: the coarse view of :class:`State` (for logs, metrics and tests)."""

    LISTENING = "listening"
    USER_SPEAKING = "user_speaking"
    THINKING = "thinking"
    AGENT_SPEAKING = "agent_speaking"


class Phase(enum.Enum):
    """Connection lifecycle: the coarsest view of :class:`State`."""

    AWAITING_SETTINGS = "awaiting_settings"
    ACTIVE = "active"
    CLOSED = "closed"


class Event(enum.Enum):
    # the client's messages
    SETTINGS = "settings"
    UPDATE = "update"  # UpdatePrompt / UpdateSpeak / UpdateThink / UpdateListen
    INJECT_USER = "inject_user"
    INJECT_AGENT = "inject_agent"  # behavior "default"
    QUEUE_AGENT = "queue_agent"  # behavior "queue"
    INTERRUPT_AGENT = "interrupt_agent"  # behavior "interrupt"
    FUNCTION_RESPONSE = "function_response"
    FORCE_END_TURN = "force_end_turn"
    KEEPALIVE = "keepalive"
    UNSUPPORTED = "unsupported"  # documented, not served (Think Live, pass-through)
    AUDIO = "audio"  # a binary frame
    FATAL = "fatal"  # unparsable message, idle timeout, session too long, server shutdown
    CONNECTION_LOST = "connection_lost"
    SUSPEND = "suspend"  # the connection dropped; the session waits to be resumed
    # the listener (VAD over the user's audio)
    ONSET = "onset"
    PAUSE = "pause"  # a short pause: speculation may start
    RESUME = "resume"  # speech again after the pause
    END = "end"  # the silence ended the turn
    # providers
    TRANSCRIPT = "transcript"
    TRANSCRIPT_EMPTY = "transcript_empty"  # nothing was said (noise, a cough)
    STT_FAILED = "stt_failed"
    THINK_FAILED = "think_failed"  # after every fallback
    SPEAK_FAILED = "speak_failed"  # after every fallback
    AUDIO_STARTED = "audio_started"  # the reply's first audio frame went out
    REPLY_FINISHED = "reply_finished"  # said, every function answered, nothing left


class Action(enum.Enum):
    FAIL = "fail"  # fatal Error (the event's code), close 1000
    FAIL_BEFORE_SETTINGS = "fail_before_settings"  # NON_SETTINGS_MESSAGE_BEFORE_SETTINGS
    FAIL_SETTINGS_AGAIN = "fail_settings_again"  # SETTINGS_ALREADY_APPLIED
    APPLY_SETTINGS = "apply_settings"  # or fail INVALID_SETTINGS; then the greeting
    APPLY_UPDATE = "apply_update"
    WARN_UNSUPPORTED = "warn_unsupported"
    ANSWER_FUNCTION = "answer_function"  # a client FunctionCallResponse (or its Warning)
    SHUT = "shut"  # the socket is gone: cancel every job
    USER_STARTED = "user_started"  # send UserStartedSpeaking
    CANCEL_REPLY = "cancel_reply"  # cancel the reply (or the held one), void its calls
    DROP_GUESS = "drop_guess"  # cancel the speculative/final transcription, forget it
    RESET_LISTENER = "reset_listener"  # forget the utterance in progress
    GUESS = "guess"  # speculative transcription of the turn so far
    TRANSCRIBE = "transcribe"  # final transcription of the turn
    TRANSCRIBE_SO_FAR = "transcribe_so_far"  # ForceEndTurn: the utterance until now, final
    FINALIZE_GUESS = "finalize_guess"  # the running speculative transcription is the turn's
    MERGE = "merge"  # transcribe the pending turn and the new part as one
    HOLD = "hold"  # think on the guess; speak nothing yet
    USER_TURN = "user_turn"  # the user's final text: ConversationText, AgentThinking, reply
    PROMOTE = "promote"  # the held reply becomes the reply for the final turn
    HELD_FAILURE = "held_failure"  # the guess's LLM failure, said now that the turn is final
    WARN_LISTEN_FAILED = "warn_listen_failed"  # Warning FAILED_TO_LISTEN
    SAY = "say"  # the agent says the injected text
    REFUSE = "refuse"  # InjectionRefused
    QUEUE = "queue"  # say it after the current turn
    THINK_ERROR = "think_error"  # non-fatal Error FAILED_TO_THINK, the reply ends
    SPEAK_ERROR = "speak_error"  # non-fatal Error FAILED_TO_SPEAK, the reply ends
    FINISH_REPLY = "finish_reply"  # AgentAudioDone, the reply joins the conversation
    DRAIN_QUEUE = "drain_queue"  # the floor is free: say the next queued agent message


@dataclass(frozen=True, slots=True)
class Row:
    next: State
    actions: tuple[Action, ...] = ()


S, E, A = State, Event, Action

USER_STATES = (S.USER_SPEAKING, S.GUESSING, S.HELD, S.HELD_FAILED, S.TRANSCRIBING, S.CONTINUING)
REPLY_STATES = (S.THINKING, S.AGENT_SPEAKING)
ACTIVE = (S.LISTENING, *USER_STATES, *REPLY_STATES)

# What ends the user's turn in progress, state by state, when something else takes the floor
# (an injection, an interruption): its jobs cancelled and the utterance forgotten.
_LEAVE_USER: dict[State, tuple[Action, ...]] = {
    S.USER_SPEAKING: (A.RESET_LISTENER,),
    S.GUESSING: (A.DROP_GUESS, A.RESET_LISTENER),
    S.HELD: (A.CANCEL_REPLY, A.DROP_GUESS, A.RESET_LISTENER),
    S.HELD_FAILED: (A.CANCEL_REPLY, A.DROP_GUESS, A.RESET_LISTENER),
    S.TRANSCRIBING: (A.DROP_GUESS,),
    S.CONTINUING: (A.DROP_GUESS, A.RESET_LISTENER),
    S.LISTENING: (),
    S.THINKING: (A.CANCEL_REPLY,),
    S.AGENT_SPEAKING: (A.CANCEL_REPLY,),
}


Table = dict[tuple[State, Event], Row]


def _rows() -> Table:
    t: Table = {}
    _client_rows(t)
    _voice_rows(t)
    _reply_rows(t)
    for event in Event:  # closed: everything is ignored
        t[S.CLOSED, event] = Row(S.CLOSED)
    return t


def _client_rows(t: Table) -> None:
    """The client's messages and audio, before and after Settings; fatal ends."""
    t[S.AWAITING_SETTINGS, E.SETTINGS] = Row(S.LISTENING, (A.APPLY_SETTINGS,))
    t[S.AWAITING_SETTINGS, E.KEEPALIVE] = Row(S.AWAITING_SETTINGS)
    for event in (
        E.UPDATE,
        E.INJECT_USER,
        E.INJECT_AGENT,
        E.QUEUE_AGENT,
        E.INTERRUPT_AGENT,
        E.FUNCTION_RESPONSE,
        E.FORCE_END_TURN,
        E.UNSUPPORTED,
        E.AUDIO,
    ):
        t[S.AWAITING_SETTINGS, event] = Row(S.CLOSED, (A.FAIL_BEFORE_SETTINGS,))
    # ---------------------------------------------------------------- any live state
    for state in (S.AWAITING_SETTINGS, *ACTIVE):
        t[state, E.FATAL] = Row(S.CLOSED, (A.FAIL,))
        t[state, E.CONNECTION_LOST] = Row(S.CLOSED, (A.SHUT,))
    t[S.AWAITING_SETTINGS, E.SUSPEND] = Row(S.CLOSED, (A.SHUT,))  # nothing to resume
    for state in ACTIVE:  # every turn in progress ends; the conversation so far is kept
        t[state, E.SUSPEND] = Row(S.LISTENING, _LEAVE_USER[state])
    for state in ACTIVE:
        t[state, E.SETTINGS] = Row(S.CLOSED, (A.FAIL_SETTINGS_AGAIN,))
        t[state, E.KEEPALIVE] = Row(state)
        t[state, E.AUDIO] = Row(state)
        t[state, E.UPDATE] = Row(state, (A.APPLY_UPDATE,))
        t[state, E.UNSUPPORTED] = Row(state, (A.WARN_UNSUPPORTED,))
        t[state, E.FUNCTION_RESPONSE] = Row(state, (A.ANSWER_FUNCTION,))
        # the client takes the floor for the user, or for the agent
        t[state, E.INJECT_USER] = Row(S.THINKING, (*_LEAVE_USER[state], A.USER_TURN))
        t[state, E.INTERRUPT_AGENT] = Row(S.THINKING, (*_LEAVE_USER[state], A.SAY))
        busy = state is not S.LISTENING
        t[state, E.INJECT_AGENT] = Row(state, (A.REFUSE,)) if busy else Row(S.THINKING, (A.SAY,))
        t[state, E.QUEUE_AGENT] = Row(state, (A.QUEUE,)) if busy else Row(S.THINKING, (A.SAY,))
    for state in (S.LISTENING, S.TRANSCRIBING, *REPLY_STATES):  # no utterance in progress
        t[state, E.FORCE_END_TURN] = Row(state)


def _voice_rows(t: Table) -> None:
    """The user's voice (the listener's events), its transcription and the held guess."""
    t[S.LISTENING, E.ONSET] = Row(S.USER_SPEAKING, (A.USER_STARTED,))
    for state in REPLY_STATES:  # barge-in (or the user goes on before the agent spoke)
        t[state, E.ONSET] = Row(S.USER_SPEAKING, (A.USER_STARTED, A.CANCEL_REPLY))
    t[S.TRANSCRIBING, E.ONSET] = Row(S.CONTINUING)  # still the user's floor: said already
    t[S.USER_SPEAKING, E.PAUSE] = Row(S.GUESSING, (A.GUESS,))
    t[S.USER_SPEAKING, E.RESUME] = Row(S.USER_SPEAKING)  # after a guess that came to nothing
    t[S.USER_SPEAKING, E.END] = Row(S.TRANSCRIBING, (A.TRANSCRIBE,))
    t[S.USER_SPEAKING, E.FORCE_END_TURN] = Row(S.TRANSCRIBING, (A.TRANSCRIBE_SO_FAR,))
    t[S.GUESSING, E.RESUME] = Row(S.USER_SPEAKING, (A.DROP_GUESS,))
    t[S.GUESSING, E.END] = Row(S.TRANSCRIBING, (A.FINALIZE_GUESS,))
    t[S.GUESSING, E.FORCE_END_TURN] = Row(S.TRANSCRIBING, (A.FINALIZE_GUESS, A.RESET_LISTENER))
    t[S.GUESSING, E.TRANSCRIPT] = Row(S.HELD, (A.HOLD,))
    t[S.GUESSING, E.TRANSCRIPT_EMPTY] = Row(S.USER_SPEAKING, (A.DROP_GUESS,))
    t[S.GUESSING, E.STT_FAILED] = Row(S.USER_SPEAKING, (A.DROP_GUESS,))  # the final one retries
    for held in (S.HELD, S.HELD_FAILED):
        t[held, E.RESUME] = Row(S.USER_SPEAKING, (A.CANCEL_REPLY, A.DROP_GUESS))
    t[S.HELD, E.END] = Row(S.THINKING, (A.PROMOTE,))
    t[S.HELD, E.FORCE_END_TURN] = Row(S.THINKING, (A.RESET_LISTENER, A.PROMOTE))
    t[S.HELD, E.THINK_FAILED] = Row(S.HELD_FAILED)
    t[S.HELD_FAILED, E.END] = Row(S.LISTENING, (A.HELD_FAILURE, A.DRAIN_QUEUE))
    t[S.HELD_FAILED, E.FORCE_END_TURN] = Row(
        S.LISTENING, (A.RESET_LISTENER, A.HELD_FAILURE, A.DRAIN_QUEUE)
    )
    t[S.TRANSCRIBING, E.TRANSCRIPT] = Row(S.THINKING, (A.USER_TURN,))
    t[S.TRANSCRIBING, E.TRANSCRIPT_EMPTY] = Row(S.LISTENING, (A.DROP_GUESS, A.DRAIN_QUEUE))
    t[S.TRANSCRIBING, E.STT_FAILED] = Row(
        S.LISTENING, (A.DROP_GUESS, A.WARN_LISTEN_FAILED, A.DRAIN_QUEUE)
    )
    for event in (E.PAUSE, E.RESUME):  # no guess while the part before is still transcribed
        t[S.CONTINUING, event] = Row(S.CONTINUING)
    for event in (E.TRANSCRIPT, E.TRANSCRIPT_EMPTY, E.STT_FAILED):  # the merge redoes it
        t[S.CONTINUING, event] = Row(S.CONTINUING)
    t[S.CONTINUING, E.END] = Row(S.TRANSCRIBING, (A.MERGE,))
    t[S.CONTINUING, E.FORCE_END_TURN] = Row(S.TRANSCRIBING, (A.MERGE, A.RESET_LISTENER))


def _reply_rows(t: Table) -> None:
    """The agent's reply: its first audio, its end, its failures."""
    t[S.THINKING, E.AUDIO_STARTED] = Row(S.AGENT_SPEAKING)
    for state in REPLY_STATES:
        t[state, E.REPLY_FINISHED] = Row(S.LISTENING, (A.FINISH_REPLY, A.DRAIN_QUEUE))
        t[state, E.THINK_FAILED] = Row(S.LISTENING, (A.THINK_ERROR, A.DRAIN_QUEUE))
        t[state, E.SPEAK_FAILED] = Row(S.LISTENING, (A.SPEAK_ERROR, A.DRAIN_QUEUE))


TRANSITIONS: Table = _rows()

_NO_STT = "no transcription runs in this state: every row leaving a state with one cancels it"
_NO_UTTERANCE = (
    "the listener reports pause, resume and end only inside an utterance, which starts with an "
    "onset (a user state); every row that leaves the user states mid-utterance resets it"
)
_NO_REPLY = "no reply runs here: replies are cancelled on every row that enters this state"
_HELD_SILENT = "a held reply parks its audio and never finishes before the turn is final"
_SPEAKING = "the listener reports an onset only when it is idle, and this state has an utterance"


def _impossible() -> dict[tuple[State, Event], str]:
    n: dict[tuple[State, Event], str] = {}
    before = "no audio is heard before Settings (frames are dropped there)"
    for event in (E.ONSET, E.PAUSE, E.RESUME, E.END):
        n[S.AWAITING_SETTINGS, event] = before
    for event in (E.TRANSCRIPT, E.TRANSCRIPT_EMPTY, E.STT_FAILED):
        n[S.AWAITING_SETTINGS, event] = "no job runs before Settings"
    for event in (E.THINK_FAILED, E.SPEAK_FAILED, E.AUDIO_STARTED, E.REPLY_FINISHED):
        n[S.AWAITING_SETTINGS, event] = "no job runs before Settings"
    for state in (S.LISTENING, *REPLY_STATES):
        for event in (E.PAUSE, E.RESUME, E.END):
            n[state, event] = _NO_UTTERANCE
        for event in (E.TRANSCRIPT, E.TRANSCRIPT_EMPTY, E.STT_FAILED):
            n[state, event] = _NO_STT
    for state in (S.USER_SPEAKING, S.GUESSING, S.HELD, S.HELD_FAILED, S.CONTINUING):
        n[state, E.ONSET] = _SPEAKING
    for event in (E.TRANSCRIPT, E.TRANSCRIPT_EMPTY, E.STT_FAILED):
        for state in (S.USER_SPEAKING, S.HELD, S.HELD_FAILED):
            n[state, event] = _NO_STT
    n[S.TRANSCRIBING, E.PAUSE] = n[S.TRANSCRIBING, E.RESUME] = _NO_UTTERANCE
    n[S.TRANSCRIBING, E.END] = _NO_UTTERANCE
    n[S.GUESSING, E.PAUSE] = n[S.HELD, E.PAUSE] = n[S.HELD_FAILED, E.PAUSE] = (
        "the listener reports one pause until speech resumes or the turn ends"
    )
    for state in (S.LISTENING, *USER_STATES):
        for event in (E.AUDIO_STARTED, E.REPLY_FINISHED, E.SPEAK_FAILED):
            n[state, event] = _HELD_SILENT if state in (S.HELD, S.HELD_FAILED) else _NO_REPLY
    for state in (S.LISTENING, S.USER_SPEAKING, S.GUESSING, S.TRANSCRIBING, S.CONTINUING):
        n[state, E.THINK_FAILED] = _NO_REPLY
    n[S.HELD_FAILED, E.THINK_FAILED] = "the held reply's LLM already failed; it runs no job"
    n[S.AGENT_SPEAKING, E.AUDIO_STARTED] = "a reply starts its audio once"
    return n


IMPOSSIBLE: dict[tuple[State, Event], str] = _impossible()


class IllegalTransition(LocalProtocolError):
    """An event that the current state cannot see (a bug in the caller, never a client's)."""

    def __init__(self, state: State, event: Event) -> None:
        reason = IMPOSSIBLE.get((state, event), "no row")
        super().__init__(
            INTERNAL_SERVER_ERROR, f"session event {event.value} in state {state.value}: {reason}"
        )
        self.state = state
        self.event = event


def transition(state: State, event: Event) -> Row:
    """Look up the row for ``(state, event)``; raise :class:`IllegalTransition` if none."""
    row = TRANSITIONS.get((state, event))
    if row is None:
        raise IllegalTransition(state, event)
    return row


_TURN = {
    S.AWAITING_SETTINGS: Turn.LISTENING,
    S.LISTENING: Turn.LISTENING,
    S.THINKING: Turn.THINKING,
    S.AGENT_SPEAKING: Turn.AGENT_SPEAKING,
    S.CLOSED: Turn.LISTENING,
} | dict.fromkeys(USER_STATES, Turn.USER_SPEAKING)


def turn_of(state: State) -> Turn:
    return _TURN[state]


def phase_of(state: State) -> Phase:
    if state is S.AWAITING_SETTINGS:
        return Phase.AWAITING_SETTINGS
    return Phase.CLOSED if state is S.CLOSED else Phase.ACTIVE
