"""Semantic end of turn (issue 11): the end-of-turn model asked at the pause ends the turn
there when it says complete; else the silence timeout does. Flux settings ask for it."""

from __future__ import annotations

import json
from typing import Any

from harken.protocol import codes
from harken.protocol import messages as m
from harken.session.effects import (
    CancelJob,
    JobFailed,
    TextDelta,
    ThinkJob,
    TranscribeJob,
    Transcript,
    TurnJob,
    TurnScore,
)
from harken.session.eot import TurnPolicy, listener_config, session_policy
from harken.session.listener import FRAME_SECONDS, ListenerConfig
from harken.session.session import SessionLimits
from harken.session.state import State
from session_script import SETTINGS, Script, job, jobs, one, types
from test_session_listening import EOT, PAUSE, silence, speech

FLUX = {"type": "deepgram", "version": "v2", "model": "flux-general-en"}


def flux(**options: Any) -> Script:
    s = Script()
    settings = json.loads(json.dumps(SETTINGS))
    settings["agent"]["listen"] = {"provider": FLUX | options}
    s.text(settings)
    return s


def test_flux_settings_ask_for_the_semantic_signal_at_each_pause() -> None:
    s = flux()
    speech(s)
    effects = silence(s, PAUSE)
    turn = job(effects, TurnJob)
    stt = job(effects, TranscribeJob)  # speculation starts at the same pause
    assert turn.pcm16k == stt.pcm16k
    assert s.session.state is State.GUESSING


def test_a_complete_score_ends_the_turn_at_the_pause() -> None:
    s = flux()
    speech(s)
    effects = silence(s, PAUSE)
    turn, stt = job(effects, TurnJob), job(effects, TranscribeJob)
    assert s.provider(TurnScore(turn.job_id, 0.93)) == []  # the running STT is now final
    assert s.session.state is State.TRANSCRIBING
    effects = s.provider(Transcript(stt.job_id, "What is the capital of France?"))
    assert types(effects) == ["ConversationText", "History", "AgentThinking", "start:think"]
    assert silence(s, EOT) == []  # the silence after it ends nothing more


def test_a_complete_score_with_a_held_reply_speaks_it_at_once() -> None:
    s = flux()
    speech(s)
    effects = silence(s, PAUSE)
    turn, stt = job(effects, TurnJob), job(effects, TranscribeJob)
    think = job(s.provider(Transcript(stt.job_id, "Hi there.")), ThinkJob)
    s.provider(TextDelta(think.job_id, "Hello! "))
    effects = s.provider(TurnScore(turn.job_id, 0.8))
    assert types(effects)[:3] == ["ConversationText", "History", "AgentThinking"]
    assert s.session.state is State.THINKING


def test_an_incomplete_score_waits_for_the_timeout() -> None:
    s = flux(eot_timeout_ms=800)
    speech(s)
    effects = silence(s, PAUSE)
    turn = job(effects, TurnJob)
    assert s.provider(TurnScore(turn.job_id, 0.2)) == []
    assert s.session.state is State.GUESSING
    frames = round(0.8 / FRAME_SECONDS)
    assert silence(s, frames - PAUSE - 1) == []
    silence(s, 1)
    assert s.session.state is State.TRANSCRIBING  # 800 ms of silence, whatever the model said


def test_the_threshold_comes_from_the_settings() -> None:
    s = flux(eot_threshold=0.9)
    speech(s)
    turn = job(silence(s, PAUSE), TurnJob)
    s.provider(TurnScore(turn.job_id, 0.85))
    assert s.session.state is State.GUESSING  # below 0.9: not yet
    update = {"type": "UpdateListen", "listen": {"provider": FLUX | {"eot_threshold": 0.5}}}
    assert types(s.text(update)) == ["ListenUpdated"]
    speech(s, 5)
    turn = job(silence(s, PAUSE), TurnJob)
    s.provider(TurnScore(turn.job_id, 0.6))
    assert s.session.state is State.TRANSCRIBING


def test_speech_resuming_cancels_the_question_and_drops_its_late_answer() -> None:
    s = flux()
    speech(s)
    turn = job(silence(s, PAUSE), TurnJob)
    effects = speech(s, 3)
    assert any(isinstance(e, CancelJob) and e.job_id == turn.job_id for e in effects)
    assert s.provider(TurnScore(turn.job_id, 1.0)) == []
    assert s.session.state is State.USER_SPEAKING


def test_a_score_after_the_user_made_a_sound_does_not_end_the_turn() -> None:
    s = flux()
    speech(s)
    turn = job(silence(s, PAUSE), TurnJob)
    s.now += FRAME_SECONDS
    s.session.receive_speech(0.4, b"\x01\x00" * 512, s.now)  # not speech, not silence either
    s.drain()
    assert s.provider(TurnScore(turn.job_id, 1.0)) == []
    assert s.session.state is State.GUESSING


def test_a_failing_model_is_said_once_and_the_timeout_decides() -> None:
    s = flux()
    speech(s)
    turn = job(silence(s, PAUSE), TurnJob)
    warning = one(s.provider(JobFailed(turn.job_id, "no end-of-turn model")), m.Warning)
    assert warning.code == codes.END_OF_TURN_FAILED
    assert "1500 ms" in warning.description
    silence(s, 60)
    assert s.session.state is State.TRANSCRIBING
    speech(s, 5)
    turn = job(silence(s, PAUSE), TurnJob)
    assert s.provider(JobFailed(turn.job_id, "again")) == []  # said once


def test_without_speculation_the_model_is_still_asked() -> None:
    limits = SessionLimits(speculate=False, turn=TurnPolicy(semantic=True))
    s = Script(limits=limits)
    s.settings()
    speech(s)
    effects = silence(s, PAUSE)
    turn = job(effects, TurnJob)
    assert jobs(effects, TranscribeJob) == []
    final = job(s.provider(TurnScore(turn.job_id, 1.0)), TranscribeJob)
    assert s.session.state is State.TRANSCRIBING
    assert len(final.pcm16k) == len(turn.pcm16k)


def test_force_end_turn_cancels_the_question() -> None:
    s = flux()
    speech(s)
    turn = job(silence(s, PAUSE), TurnJob)
    effects = s.text({"type": "ForceEndTurn"})
    assert any(isinstance(e, CancelJob) and e.job_id == turn.job_id for e in effects)


def test_the_fixed_silence_stays_the_default() -> None:
    s = Script()
    s.settings()
    speech(s)
    assert jobs(silence(s, PAUSE), TurnJob) == []


def test_policies() -> None:
    server = TurnPolicy(semantic=False, threshold=0.7, timeout_ms=1500)
    assert session_policy(None, server) is server
    from harken.protocol.settings import ListenConfig, Provider

    nova = ListenConfig(Provider("deepgram", "nova-3", {"eot_threshold": 0.6}))
    assert session_policy(nova, server) == TurnPolicy(False, 0.6, 1500)
    flux_model = ListenConfig(Provider("deepgram", "flux-general-en", {"eot_timeout_ms": 900}))
    assert session_policy(flux_model, server) == TurnPolicy(True, 0.7, 900)
    odd = ListenConfig(Provider("deepgram", None, {"eot_timeout_ms": "soon", "version": "v2"}))
    assert session_policy(odd, server) == TurnPolicy(True, 0.7, 1500)
    base = ListenerConfig()
    assert listener_config(server, base) is base
    assert listener_config(TurnPolicy(True, 0.7, 960), base).eot_frames == 30
    assert listener_config(TurnPolicy(True, 0.7, 10), base).eot_frames == base.pause_frames + 1
