"""The session table: every (state, event) pair is a row or a named impossibility.

Also the regression tests for the two ways ordinary clients used to kill a session (issue 10).
"""

from __future__ import annotations

import itertools

import pytest

from harken.protocol import codes
from harken.protocol import messages as m
from harken.session.effects import JobFailed, ThinkJob, TranscribeJob, Transcript
from harken.session.state import (
    ACTIVE,
    IMPOSSIBLE,
    TRANSITIONS,
    USER_STATES,
    Action,
    Event,
    IllegalTransition,
    State,
    transition,
)
from harken.session.turns import Cause, Turns
from session_script import Script, job, messages, types
from test_session_listening import EOT, PAUSE, ready, silence, speech

# events only a client causes: its messages and its audio
CLIENT_EVENTS = (
    Event.SETTINGS,
    Event.UPDATE,
    Event.INJECT_USER,
    Event.INJECT_AGENT,
    Event.QUEUE_AGENT,
    Event.INTERRUPT_AGENT,
    Event.FUNCTION_RESPONSE,
    Event.FORCE_END_TURN,
    Event.KEEPALIVE,
    Event.UNSUPPORTED,
    Event.AUDIO,
    Event.FATAL,  # malformed messages, timeouts
    Event.CONNECTION_LOST,
    Event.SUSPEND,  # the connection dropped
)


@pytest.mark.parametrize(("state", "event"), list(itertools.product(State, Event)))
def test_every_pair_is_a_row_or_a_named_impossibility(state: State, event: Event) -> None:
    row = TRANSITIONS.get((state, event))
    reason = IMPOSSIBLE.get((state, event))
    assert (row is None) != (reason is None), "exactly one of: a row, a reason"
    if reason is not None:
        assert len(reason) > 20  # a reason, not a placeholder
        with pytest.raises(IllegalTransition) as info:
            transition(state, event)
        assert reason in info.value.description
    else:
        assert transition(state, event) is row


def test_no_client_event_is_ever_impossible() -> None:
    for state, event in itertools.product(State, CLIENT_EVENTS):
        assert (state, event) in TRANSITIONS, (state, event)


def test_every_action_is_used_and_implemented() -> None:
    used = {action for row in TRANSITIONS.values() for action in row.actions}
    assert used == set(Action)
    for action in Action:
        assert callable(getattr(Turns, f"_{action.value}"))


def test_barge_in_is_a_row_that_cancels_the_reply() -> None:
    row = transition(State.AGENT_SPEAKING, Event.ONSET)
    assert row.next is State.USER_SPEAKING
    assert row.actions == (Action.USER_STARTED, Action.CANCEL_REPLY)


def test_closed_ignores_everything() -> None:
    for event in Event:
        assert transition(State.CLOSED, event).next is State.CLOSED
        assert transition(State.CLOSED, event).actions == ()


def test_every_fatal_row_closes() -> None:
    for state in (State.AWAITING_SETTINGS, *ACTIVE):
        assert transition(state, Event.FATAL).next is State.CLOSED


def test_the_user_states_never_refuse_a_forced_end_of_turn_silently() -> None:
    """ForceEndTurn during an utterance ends it; with none in progress it is ignored."""
    for state in USER_STATES:
        row = transition(state, Event.FORCE_END_TURN)
        moved = row.next is not state
        assert moved or state is State.TRANSCRIBING, state


# ------------------------------------------------------------------ the two crashes of issue 10


def test_interrupting_agent_message_while_the_user_speaks_does_not_kill_the_session() -> None:
    s = ready()
    speech(s)
    assert s.session.state is State.USER_SPEAKING
    effects = s.text({"type": "InjectAgentMessage", "message": "Hold on.", "behavior": "interrupt"})
    assert "Error" not in types(effects)
    assert not s.session.closed
    assert s.session.state is State.THINKING
    assert types(effects)[-1] == "start:speak"
    # the utterance in progress was dropped: the user's further speech is a new onset that
    # barges in on the injected message
    effects = speech(s, 5)
    assert types(effects) == ["UserStartedSpeaking", "cancel"]
    assert s.session.state is State.USER_SPEAKING


def test_a_guess_whose_llm_fails_while_the_user_still_speaks_does_not_kill_the_session() -> None:
    s = ready()
    speech(s)
    stt = job(silence(s, PAUSE), TranscribeJob)
    think = job(s.provider(Transcript(stt.job_id, "What is")), ThinkJob)
    assert s.session.state is State.HELD
    effects = s.provider(JobFailed(think.job_id, "model server refused the connection"))
    assert effects == []  # nothing yet: the user may still go on
    assert s.session.state is State.HELD_FAILED
    assert types(speech(s, 5)) == []  # the user went on: the failed guess goes
    assert s.session.state is State.USER_SPEAKING
    final = job(silence(s, EOT), TranscribeJob)
    effects = s.provider(Transcript(final.job_id, "What is the time?"))
    assert "start:think" in types(effects)
    assert not s.session.closed


def test_a_failed_guess_is_reported_once_the_turn_is_final() -> None:
    s = ready()
    speech(s)
    stt = job(silence(s, PAUSE), TranscribeJob)
    think = job(s.provider(Transcript(stt.job_id, "What is the time?")), ThinkJob)
    s.provider(JobFailed(think.job_id, "model server refused the connection"))
    effects = silence(s, EOT)
    errors = [x for x in messages(effects) if isinstance(x, m.Error)]
    assert [e.code for e in errors] == [codes.FAILED_TO_THINK]
    assert "refused" in errors[0].description
    assert types(effects)[:2] == ["ConversationText", "History"]
    assert s.session.state is State.LISTENING
    assert not s.session.closed


def test_an_illegal_internal_event_leaves_the_state_unchanged() -> None:
    s = Script()
    s.settings()
    turns = s.session.turns
    with pytest.raises(IllegalTransition):
        turns.fire(Event.AUDIO_STARTED, Cause(0.0))
    assert turns.state is State.LISTENING
