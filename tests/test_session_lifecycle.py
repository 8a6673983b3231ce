"""Connection lifecycle of the sans-I/O session, in virtual time."""

from __future__ import annotations

import pytest

from harken.protocol import codes
from harken.protocol import messages as m
from harken.session.effects import CloseConnection, PrimeJob, StartJob
from harken.session.session import Session, SessionLimits
from harken.session.state import Phase, State
from session_script import SETTINGS, DenyModel, Script, one, types


def test_welcome_is_queued_at_once() -> None:
    s = Script()
    assert types(s.drain()) == ["Welcome"]
    assert s.session.next_deadline() == 30.0


def test_settings_applied_and_prompt_primed() -> None:
    s = Script()
    s.drain()
    effects = s.settings()
    assert types(effects) == ["SettingsApplied", "start:prime"]
    prime = next(e.job for e in effects if isinstance(e, StartJob))
    assert isinstance(prime, PrimeJob)
    assert prime.messages[0].content == "You are terse."
    assert s.session.phase is Phase.ACTIVE
    assert s.session.settings is not None


def test_settings_without_prompt_primes_nothing() -> None:
    s = Script()
    s.drain()
    think = {"provider": {"type": "open_ai", "model": "gpt-4o-mini"}}
    assert types(s.settings(think=think)) == ["SettingsApplied"]


@pytest.mark.parametrize(
    "first",
    [
        {"type": "UpdatePrompt", "prompt": "x"},
        {"type": "InjectUserMessage", "content": "hi"},
        {"type": "FunctionCallResponse", "id": "a", "name": "b", "content": "c"},
    ],
)
def test_non_settings_message_first_is_fatal(first: dict[str, str]) -> None:
    s = Script()
    s.drain()
    effects = s.text(first)
    assert types(effects) == ["Error", "close"]
    error = one(effects, m.Error)
    assert error.code == codes.NON_SETTINGS_MESSAGE_BEFORE_SETTINGS
    assert first["type"] in error.description
    assert s.session.closed


def test_audio_before_settings_is_fatal() -> None:
    s = Script()
    s.drain()
    effects = s.audio()
    assert one(effects, m.Error).code == codes.NON_SETTINGS_MESSAGE_BEFORE_SETTINGS


def test_keepalive_before_settings_is_fine_and_resets_idle_timer() -> None:
    s = Script()
    s.drain()
    s.advance(20)
    assert s.text({"type": "KeepAlive"}) == []
    assert s.session.next_deadline() == 50.0


def test_second_settings_is_fatal() -> None:
    s = Script()
    s.settings()
    effects = s.settings()
    assert one(effects, m.Error).code == codes.SETTINGS_ALREADY_APPLIED
    assert isinstance(effects[-1], CloseConnection)


def test_unparsable_message_is_fatal() -> None:
    s = Script()
    s.drain()
    effects = s.text("{not json")
    assert one(effects, m.Error).code == codes.UNPARSABLE_CLIENT_MESSAGE


def test_unknown_fields_give_one_warning() -> None:
    s = Script()
    s.drain()
    settings = dict(SETTINGS, bogus=1, other={"x": 1})
    effects = s.text(settings)
    warning = one(effects, m.Warning)
    assert warning.code == codes.UNKNOWN_FIELDS_IGNORED
    assert "bogus" in warning.description
    assert "SettingsApplied" in types(effects)


def test_many_unknown_fields_are_abbreviated() -> None:
    s = Script()
    s.drain()
    settings = dict(SETTINGS, **{f"k{i}": i for i in range(12)})
    assert one(s.text(settings), m.Warning).description.endswith("…")


def test_unknown_model_is_invalid_settings() -> None:
    s = Script(catalog=DenyModel("nova-3"))
    s.drain()
    effects = s.settings()
    error = one(effects, m.Error)
    assert error.code == codes.INVALID_SETTINGS
    assert "available" in error.description


def test_settings_without_listen_is_text_only() -> None:
    s = Script(catalog=DenyModel("nope"))
    s.drain()
    assert "SettingsApplied" in types(s.settings(listen=None))
    assert s.session.listen is None
    warning = one(s.audio(), m.Warning)  # said once, so a client learns why nothing is heard
    assert warning.code == codes.AUDIO_IGNORED and "agent.listen" in warning.description
    assert s.audio() == []


def test_idle_timeout_in_virtual_time() -> None:
    s = Script()
    s.settings()
    assert s.advance(29.9) == []
    effects = s.advance(0.2)
    assert one(effects, m.Error).code == codes.CLIENT_MESSAGE_TIMEOUT
    assert s.session.closed
    assert s.session.next_deadline() is None


def test_audio_resets_idle_timer_and_is_counted() -> None:
    s = Script()
    s.settings()
    for _ in range(10):
        s.advance(20)
        assert s.audio(b"\0" * 640) == []
    assert s.session.audio_bytes_in == 6400
    assert not s.session.closed


def test_session_length_warning_then_error() -> None:
    limits = SessionLimits(idle_timeout=1e9, max_duration=100.0, duration_warning=90.0)
    s = Script(limits=limits)
    s.settings()
    effects = s.advance(95)
    warning = one(effects, m.Warning)
    assert warning.code == codes.MAXIMUM_SESSION_LENGTH_APPROACHING
    assert "10 seconds" in warning.description
    effects = s.advance(10)
    assert one(effects, m.Error).code == codes.MAXIMUM_SESSION_LENGTH_REACHED
    assert types(effects)[-1] == "close"


def test_fail_is_idempotent_and_inputs_after_close_are_ignored() -> None:
    s = Script()
    s.settings()
    s.session.fail(codes.SERVER_GOING_AWAY, "bye", s.now)
    s.session.fail(codes.SERVER_GOING_AWAY, "bye", s.now)
    effects = s.drain()
    assert types(effects).count("Error") == 1
    assert s.text({"type": "KeepAlive"}) == []
    assert s.audio() == []
    s.session.tick(1000.0)
    assert s.drain() == []


def test_fail_cancels_live_jobs() -> None:
    s = Script()
    s.settings()
    s.text({"type": "InjectUserMessage", "content": "hi"})
    effects = s.text({"type": "UpdatePrompt", "prompt": 5})  # wrong type: fatal
    assert types(effects)[:2] == ["cancel", "cancel"]  # the prime job and the think job
    assert s.session.out.live == {}


def test_connection_lost_cancels_everything_silently() -> None:
    s = Script()
    s.settings()
    s.text({"type": "InjectUserMessage", "content": "hi"})
    s.session.connection_lost(s.now)
    assert set(types(s.drain())) == {"cancel"}
    assert s.session.closed


def test_updates_are_acknowledged() -> None:
    s = Script()
    s.settings()
    effects = s.text({"type": "UpdatePrompt", "prompt": "Be a pirate."})
    assert types(effects) == ["PromptUpdated", "start:prime"]
    # Deepgram, December 2026: UpdatePrompt adds to the prompt ("will add to - not replace")
    assert s.session.turns.agent.prompt == "You are terse.\nBe a pirate."
    speak = {"provider": {"type": "deepgram", "model": "aura-2-luna-en"}}
    assert types(s.text({"type": "UpdateSpeak", "speak": speak})) == ["SpeakUpdated"]
    assert s.session.turns.agent.speak[0].provider.model == "aura-2-luna-en"
    think = {"provider": {"type": "open_ai", "model": "gpt-4o"}}
    assert types(s.text({"type": "UpdateThink", "think": think})) == ["ThinkUpdated", "start:prime"]
    assert s.session.turns.agent.prompt == "You are terse.\nBe a pirate."  # kept
    think["prompt"] = "Be brief."
    s.text({"type": "UpdateThink", "think": think})
    assert s.session.turns.agent.prompt == "Be brief."
    listen = {"provider": {"type": "deepgram", "model": "nova-3", "keyterms": ["harken"]}}
    assert types(s.text({"type": "UpdateListen", "listen": listen})) == ["ListenUpdated"]
    assert s.session.listen is not None
    assert s.session.listen.provider.options["keyterms"] == ["harken"]


def test_update_with_unknown_model_is_refused_not_fatal() -> None:
    s = Script(catalog=DenyModel("aura-bad"))
    s.settings()
    speak = {"provider": {"type": "deepgram", "model": "aura-bad"}}
    effects = s.text({"type": "UpdateSpeak", "speak": speak})
    assert one(effects, m.Warning).code == codes.INVALID_SETTINGS
    assert not s.session.closed
    assert s.session.turns.agent.speak[0].provider.model == "aura-2-thalia-en"


def test_update_listen_must_keep_the_provider() -> None:
    s = Script()
    s.settings()
    listen = {"provider": {"type": "deepgram", "model": "nova-2"}}
    warning = one(s.text({"type": "UpdateListen", "listen": listen}), m.Warning)
    assert "deepgram/nova-3" in warning.description
    s2 = Script()
    s2.settings(listen=None)
    warning = one(s2.text({"type": "UpdateListen", "listen": listen}), m.Warning)
    assert "unset" in warning.description


def test_early_access_update_instructions_appends() -> None:
    s = Script(generation=m.Generation.EA)
    s.drain()
    s.text(
        {
            "type": "SettingsConfiguration",
            "audio": {"input": {"encoding": "linear16", "sample_rate": 16000}},
            "agent": {
                "listen": {"model": "nova-2"},
                "think": {
                    "provider": {"type": "open_ai"},
                    "model": "gpt-4o-mini",
                    "instructions": "A.",
                },
                "speak": {"model": "aura-asteria-en"},
            },
        }
    )
    effects = s.text({"type": "UpdateInstructions", "instructions": "B."})
    assert types(effects) == ["PromptUpdated", "start:prime"]
    assert s.session.turns.agent.prompt == "A.\nB."


def test_deadline_covers_the_duration_cap_after_warning() -> None:
    limits = SessionLimits(idle_timeout=1e9, max_duration=100.0, duration_warning=90.0)
    s = Script(limits=limits)
    s.settings()
    assert s.session.next_deadline() == 90.0
    s.advance(91)
    assert s.session.next_deadline() == 100.0


def test_unservable_fallback_is_dropped_with_a_warning() -> None:
    s = Script(catalog=DenyModel("exotic"))
    s.drain()
    speak = [
        {"provider": {"type": "deepgram", "model": "aura-2-thalia-en"}},
        {"provider": {"type": "deepgram", "model": "exotic"}},
    ]
    effects = s.settings(speak=speak)
    assert types(effects)[:2] == ["Warning", "SettingsApplied"]
    assert "speak fallback 2" in one(effects, m.Warning).description
    assert [c.provider.model for c in s.session.turns.agent.speak] == ["aura-2-thalia-en"]


def test_omitted_think_and_speak_use_the_server_defaults() -> None:
    s = Script()
    s.drain()
    s.text(
        {
            "type": "Settings",
            "audio": {"input": {"encoding": "linear16", "sample_rate": 16000}},
            "agent": {},
        }
    )
    agent = s.session.turns.agent
    assert agent.think[0].provider.type == ""
    assert agent.speak[0].provider.type == ""


def test_a_tick_at_the_idle_deadline_fires_it_whatever_the_float_rounding() -> None:
    """(2.3 + 30) - 2.3 < 30 in floating point: the tick at next_deadline() must still fire,
    else the pump would wake at the same deadline forever (found by the state machine)."""
    start = 2.3000000000000003
    session = Session(generation=m.Generation.GA, request_id="r", now=start)
    deadline = session.next_deadline()
    assert deadline == start + 30.0
    session.tick(deadline)
    assert session.closed
    assert one(session.effects(), m.Error).code == codes.CLIENT_MESSAGE_TIMEOUT


def test_a_tick_at_the_slow_think_deadline_always_moves_it() -> None:
    s = Script()
    s.settings()
    s.now = 3.2  # (3.2 + 5) - 3.2 < 5 in floating point
    s.text({"type": "InjectUserMessage", "content": "hi"})
    deadline = s.session.next_deadline()
    assert deadline == 3.2 + 5.0
    s.session.tick(deadline)
    assert one(s.drain(), m.Warning).code == codes.SLOW_THINK_REQUEST
    assert s.session.next_deadline() == 3.2 + 10.0


def test_a_session_is_at_rest_only_between_turns() -> None:
    """A draining server closes a session when it is at rest, not mid-turn."""
    s = Script()
    assert s.session.at_rest  # no Settings yet
    s.settings()
    assert s.session.at_rest
    s.text({"type": "InjectUserMessage", "content": "Hello?"})
    assert not s.session.at_rest  # thinking


def test_a_dropped_connection_suspends_the_session_and_a_new_one_resumes_it() -> None:
    s = Script()
    s.settings()
    s.text({"type": "InjectUserMessage", "content": "Hello?"})
    assert s.session.state is State.THINKING
    s.session.suspend(s.now)
    assert "cancel" in types(s.drain())  # the reply in progress ends
    assert s.session.state is State.LISTENING and not s.session.closed
    history = s.session.turns.conversation.messages("", None)
    assert [m.content for m in history] == ["Hello?"]
    s.now += 5.0
    s.session.resume(s.now)
    welcome = one(s.drain(), m.Welcome)
    assert welcome.request_id == "req-1" and s.session.last_client_frame == s.now


def test_a_session_without_settings_closes_when_suspended() -> None:
    s = Script()
    s.drain()
    s.session.suspend(s.now)
    assert s.session.closed
    s.session.resume(s.now)
    s.session.suspend(s.now)
    assert s.drain() == []


def test_unread_client_activity_moves_the_idle_timeout() -> None:
    s = Script()
    s.settings()
    s.session.client_active(5.0)
    assert s.session.last_client_frame == 5.0
    s.session.client_active(2.0)  # never backwards
    assert s.session.last_client_frame == 5.0
