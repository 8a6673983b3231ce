"""Semantic end of turn (issue 11): at the pause the end-of-turn model (acoustic) and the held
reply's LLM (text) are asked; the turn ends there when both say complete, else the silence
timeout ends it. Flux settings ask for it."""

from __future__ import annotations

import json
from typing import Any

from harken.protocol import codes
from harken.protocol import messages as m
from harken.session.effects import (
    CancelJob,
    JobFailed,
    ResumeJob,
    TextDelta,
    TextScore,
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

FLOOR = TurnPolicy().floor_frames  # the end-of-turn model is asked at this silence (192 ms)
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
    effects = silence(s, PAUSE)  # speculation starts at the short pause (128 ms)
    stt = job(effects, TranscribeJob)
    assert jobs(effects, TurnJob) == []
    effects = silence(s, FLOOR - PAUSE)  # the model is asked at the floor (192 ms)
    turn = job(effects, TurnJob)
    assert turn.pcm16k.startswith(stt.pcm16k)  # it hears the pause so far too
    assert len(turn.pcm16k) == len(stt.pcm16k) + (FLOOR - PAUSE) * 1024
    assert s.session.state is State.GUESSING


def paused_and_held(s: Script, text: str = "What is the capital of France?") -> tuple[int, int]:
    """Speech, then the pause: the end-of-turn question and the held reply (its job ids)."""
    speech(s)
    effects = silence(s, FLOOR)
    turn, stt = job(effects, TurnJob), job(effects, TranscribeJob)
    think = job(s.provider(Transcript(stt.job_id, text)), ThinkJob)
    assert think.end_score  # the held reply scores the user's text
    assert s.session.state is State.HELD
    return turn.job_id, think.job_id


def test_both_signals_complete_end_the_turn_at_the_pause() -> None:
    s = flux()
    turn, think = paused_and_held(s)
    assert s.provider(TurnScore(turn, 0.93)) == []  # the text has not been scored yet
    assert s.session.state is State.HELD
    effects = s.provider(TextScore(think, 0.6))
    assert types(effects) == ["ConversationText", "History", "AgentThinking"]
    assert ResumeJob(think) in effects  # its LLM may go on past the first sentence now
    assert s.session.state is State.THINKING
    s.provider(TextDelta(think, "Paris. "))
    assert silence(s, EOT) == []  # the silence after it ends nothing more


def test_the_text_may_answer_first() -> None:
    s = flux()
    turn, think = paused_and_held(s)
    s.provider(TextDelta(think, "Hello! "))
    assert s.provider(TextScore(think, 0.9)) == []
    effects = s.provider(TurnScore(turn, 0.8))
    assert types(effects)[:3] == ["ConversationText", "History", "AgentThinking"]
    assert s.session.state is State.THINKING


def test_an_unfinished_text_keeps_the_turn_open_however_sure_the_audio() -> None:
    s = flux(eot_timeout_ms=800)
    turn, think = paused_and_held(s, "And so, my fellow Americans,")
    s.provider(TurnScore(turn, 0.99))
    assert s.provider(TextScore(think, 0.05)) == []
    assert s.session.state is State.HELD
    frames = round(0.8 / FRAME_SECONDS)
    assert silence(s, frames - FLOOR - 1) == []
    silence(s, 1)
    assert s.session.state is State.THINKING  # the timeout promotes the held reply


def test_the_first_held_think_alone_scores() -> None:
    s = flux()
    speech(s)
    stt = job(silence(s, FLOOR), TranscribeJob)
    think = job(s.provider(Transcript(stt.job_id, "Hi.")), ThinkJob)
    assert think.end_score
    s2 = Script()  # the fixed silence: nothing to score
    s2.settings()
    speech(s2)
    stt = job(silence(s2, FLOOR), TranscribeJob)
    assert not job(s2.provider(Transcript(stt.job_id, "Hi.")), ThinkJob).end_score


def test_a_think_provider_that_cannot_score_leaves_the_audio_to_decide() -> None:
    s = flux()
    turn, think = paused_and_held(s)
    s.provider(TurnScore(turn, 0.9))
    effects = s.provider(TextScore(think, None))  # the server logs it; nothing for the client
    assert types(effects) == ["ConversationText", "History", "AgentThinking"]


def test_an_empty_transcript_leaves_the_audio_to_decide() -> None:
    s = flux()
    speech(s)
    effects = silence(s, FLOOR)
    turn, stt = job(effects, TurnJob), job(effects, TranscribeJob)
    s.provider(TurnScore(turn.job_id, 0.9))
    assert s.session.state is State.GUESSING  # waiting for the text
    s.provider(Transcript(stt.job_id, ""))
    assert s.session.state is State.TRANSCRIBING  # ended: the final transcript is asked


def test_a_late_text_score_is_ignored() -> None:
    s = flux(eot_timeout_ms=800)
    turn, think = paused_and_held(s)
    s.provider(TurnScore(turn, 0.1))
    silence(s, round(0.8 / FRAME_SECONDS))
    assert s.session.state is State.THINKING
    assert s.provider(TextScore(think, 0.9)) == []


def test_a_text_threshold_of_zero_lets_the_audio_decide_alone() -> None:
    limits = SessionLimits(turn=TurnPolicy(semantic=True, text_threshold=0.0))
    s = Script(limits=limits)
    s.settings()
    speech(s)
    effects = silence(s, FLOOR)
    turn, stt = job(effects, TurnJob), job(effects, TranscribeJob)
    assert s.provider(TurnScore(turn.job_id, 0.93)) == []  # the running STT is now final
    assert s.session.state is State.TRANSCRIBING
    effects = s.provider(Transcript(stt.job_id, "What is the capital of France?"))
    assert types(effects) == ["ConversationText", "History", "AgentThinking", "start:think"]
    assert not job(effects, ThinkJob).end_score


def test_eager_end_of_turn_speculates_only_when_the_audio_says_so() -> None:
    s = flux(eager_eot_threshold=0.4)
    speech(s)
    effects = silence(s, FLOOR)
    turn = job(effects, TurnJob)
    assert jobs(effects, TranscribeJob) == []  # speculation waits for the acoustic score
    assert s.provider(TurnScore(turn.job_id, 0.3)) == []
    assert s.session.state is State.USER_SPEAKING
    speech(s, 5)  # the user went on
    turn = job(silence(s, FLOOR), TurnJob)
    stt = job(s.provider(TurnScore(turn.job_id, 0.5)), TranscribeJob)
    assert s.session.state is State.GUESSING
    think = job(s.provider(Transcript(stt.job_id, "Hi there.")), ThinkJob)
    assert s.provider(TextScore(think.job_id, 0.9)) == []  # 0.5 is below eot_threshold 0.7
    assert s.session.state is State.HELD


def test_eager_speculation_is_dropped_when_the_user_goes_on() -> None:
    s = flux(eager_eot_threshold=0.4)
    speech(s)
    turn = job(silence(s, FLOOR), TurnJob)
    speech(s, 3)
    assert s.provider(TurnScore(turn.job_id, 0.9)) == []  # cancelled: its answer is dropped
    assert s.session.state is State.USER_SPEAKING


def test_an_incomplete_score_waits_for_the_timeout() -> None:
    s = flux(eot_timeout_ms=800)
    speech(s)
    effects = silence(s, FLOOR)
    turn = job(effects, TurnJob)
    assert s.provider(TurnScore(turn.job_id, 0.2)) == []
    assert s.session.state is State.GUESSING
    frames = round(0.8 / FRAME_SECONDS)
    assert silence(s, frames - FLOOR - 1) == []
    silence(s, 1)
    assert s.session.state is State.TRANSCRIBING  # 800 ms of silence, whatever the model said


def test_the_threshold_comes_from_the_settings() -> None:
    s = flux(eot_threshold=0.9)
    speech(s)
    turn, think = paused_and_held(s)
    s.provider(TextScore(think, 0.9))
    s.provider(TurnScore(turn, 0.85))
    assert s.session.state is State.HELD  # below 0.9: not yet
    update = {"type": "UpdateListen", "listen": {"provider": FLUX | {"eot_threshold": 0.5}}}
    assert types(s.text(update)) == ["ListenUpdated"]
    speech(s, 5)  # the user went on: the held reply is void
    turn = job(silence(s, FLOOR), TurnJob)
    s.provider(TurnScore(turn.job_id, 0.6))
    assert s.session.state is State.GUESSING  # waits for the text now


def test_speech_resuming_cancels_the_question_and_drops_its_late_answer() -> None:
    s = flux()
    speech(s)
    turn = job(silence(s, FLOOR), TurnJob)
    effects = speech(s, 3)
    assert any(isinstance(e, CancelJob) and e.job_id == turn.job_id for e in effects)
    assert s.provider(TurnScore(turn.job_id, 1.0)) == []
    assert s.session.state is State.USER_SPEAKING


def test_a_score_after_the_user_made_a_sound_does_not_end_the_turn() -> None:
    s = flux()
    speech(s)
    turn = job(silence(s, FLOOR), TurnJob)
    s.now += FRAME_SECONDS
    s.session.receive_speech(0.4, b"\x01\x00" * 512, s.now)  # not speech, not silence either
    s.drain()
    assert s.provider(TurnScore(turn.job_id, 1.0)) == []
    assert s.session.state is State.GUESSING


def test_a_sound_only_delays_the_end_to_the_next_quiet_frame() -> None:
    limits = SessionLimits(turn=TurnPolicy(semantic=True, text_threshold=0.0))
    s = Script(limits=limits)
    s.settings()
    speech(s)
    turn = job(silence(s, FLOOR), TurnJob)
    s.now += FRAME_SECONDS
    s.session.receive_speech(0.4, b"\x01\x00" * 512, s.now)  # a breath: not speech
    s.drain()
    assert s.provider(TurnScore(turn.job_id, 0.9)) == []
    assert s.session.state is State.GUESSING  # not now: a sound is being heard
    silence(s, 1)
    assert s.session.state is State.TRANSCRIBING  # quiet again: the verdict stands


def test_a_failing_model_is_said_once_and_the_timeout_decides() -> None:
    s = flux()
    speech(s)
    turn = job(silence(s, FLOOR), TurnJob)
    warning = one(s.provider(JobFailed(turn.job_id, "no end-of-turn model")), m.Warning)
    assert warning.code == codes.END_OF_TURN_FAILED
    assert "1500 ms" in warning.description
    silence(s, 60)
    assert s.session.state is State.TRANSCRIBING
    speech(s, 5)
    turn = job(silence(s, FLOOR), TurnJob)
    assert s.provider(JobFailed(turn.job_id, "again")) == []  # said once


def test_without_speculation_the_model_is_still_asked() -> None:
    limits = SessionLimits(speculate=False, turn=TurnPolicy(semantic=True))
    s = Script(limits=limits)
    s.settings()
    speech(s)
    effects = silence(s, FLOOR)
    turn = job(effects, TurnJob)
    assert jobs(effects, TranscribeJob) == []
    final = job(s.provider(TurnScore(turn.job_id, 1.0)), TranscribeJob)
    assert s.session.state is State.TRANSCRIBING
    assert len(final.pcm16k) == len(turn.pcm16k)


def test_force_end_turn_cancels_the_question() -> None:
    s = flux()
    speech(s)
    turn = job(silence(s, FLOOR), TurnJob)
    effects = s.text({"type": "ForceEndTurn"})
    assert any(isinstance(e, CancelJob) and e.job_id == turn.job_id for e in effects)


def test_the_fixed_silence_stays_the_default() -> None:
    s = Script()
    s.settings()
    speech(s)
    assert jobs(silence(s, FLOOR), TurnJob) == []


def test_policies() -> None:
    server = TurnPolicy(semantic=False, threshold=0.7, timeout_ms=1500)
    assert session_policy(None, server) is server
    from harken.protocol.settings import ListenConfig, Provider

    nova = ListenConfig(Provider("deepgram", "nova-3", {"eot_threshold": 0.6}))
    assert session_policy(nova, server) == TurnPolicy(False, 0.6, 1500)
    flux_model = ListenConfig(Provider("deepgram", "flux-general-en", {"eot_timeout_ms": 900}))
    assert session_policy(flux_model, server) == TurnPolicy(True, 0.7, 900)
    eager = ListenConfig(Provider("deepgram", "flux-general-en", {"eager_eot_threshold": 0.9}))
    assert session_policy(eager, server).eager == 0.7  # never above eot_threshold
    assert session_policy(eager, server).scores_text
    odd = ListenConfig(Provider("deepgram", None, {"eot_timeout_ms": "soon", "version": "v2"}))
    assert session_policy(odd, server) == TurnPolicy(True, 0.7, 1500)
    base = ListenerConfig()
    assert listener_config(server, base) is base
    assert listener_config(TurnPolicy(True, 0.7, 960), base).eot_frames == 30
    floor = TurnPolicy().floor_frames
    assert listener_config(TurnPolicy(True, 0.7, 10), base).eot_frames == floor + 1


def test_eager_speculation_waits_while_the_user_makes_a_sound() -> None:
    s = flux(eager_eot_threshold=0.4)
    speech(s)
    turn = job(silence(s, FLOOR), TurnJob)
    s.now += FRAME_SECONDS
    s.session.receive_speech(0.4, b"\x01\x00" * 512, s.now)  # not speech, not silence either
    s.drain()
    assert s.provider(TurnScore(turn.job_id, 0.9)) == []  # no speculation, no end
    assert s.session.state is State.USER_SPEAKING


def test_the_listener_completes_only_a_paused_turn() -> None:
    from harken.session.listener import Listener

    listener = Listener(ListenerConfig(onset_frames=1, pause_frames=2))
    assert listener.complete() is None  # nothing said
    listener.feed(0.9, b"\x00\x00" * 512)
    assert listener.complete() is None  # speaking, not paused
    listener.feed(0.0, b"\x00\x00" * 512)
    assert listener.feed(0.0, b"\x00\x00" * 512) is not None  # the pause
    ended = listener.complete()
    assert ended is not None and ended.kind == "end" and ended.silence == 2 * FRAME_SECONDS
