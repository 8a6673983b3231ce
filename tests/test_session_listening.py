"""Turns from audio: VAD frames → onset, pause (speculation), end of turn, barge-in."""

from __future__ import annotations

from harken.protocol import codes
from harken.protocol import messages as m
from harken.session.effects import (
    AudioChunk,
    Effect,
    JobDone,
    JobFailed,
    SpeakJob,
    TextDelta,
    ThinkJob,
    ToolCall,
    ToolCalls,
    TranscribeJob,
    Transcript,
)
from harken.session.listener import FRAME_SECONDS, Listener, ListenerConfig
from harken.session.session import SessionLimits
from harken.session.state import State, Turn
from session_script import SETTINGS, Script, job, jobs, one, types

FRAME = b"\x01\x00" * 512
PAUSE = ListenerConfig().pause_frames
EOT = ListenerConfig().eot_frames
AUDIO = b"\x01\x00" * 12000  # 0.5 s of linear16 at 24 kHz


def frames(s: Script, n: int, p: float) -> list[Effect]:
    out: list[Effect] = []
    for _ in range(n):
        s.now += FRAME_SECONDS
        s.session.receive_speech(p, FRAME, s.now)
        out += s.drain()
    return out


def speech(s: Script, n: int = 20) -> list[Effect]:
    return frames(s, n, 0.9)


def silence(s: Script, n: int) -> list[Effect]:
    return frames(s, n, 0.02)


def ready(**limits: object) -> Script:
    s = Script(limits=SessionLimits(**limits)) if limits else Script()  # type: ignore[arg-type]
    s.settings()
    return s


def test_frames_before_settings_are_ignored() -> None:
    s = Script()
    s.drain()
    assert speech(s) == []


def test_audio_and_its_vad_frames_in_one_input_are_the_same_as_one_by_one() -> None:
    """The pump's hot path hands a client frame and the VAD frames it completed in one call
    (receive_heard); that is receive_audio, then receive_speech of each frame."""
    one_by_one, together = ready(), ready()
    heard = [(0.9, FRAME)] * 3
    for _ in range(4):
        one_by_one.now = together.now = one_by_one.now + FRAME_SECONDS
        one_by_one.session.receive_audio(FRAME, one_by_one.now)
        for p, frame in heard:
            one_by_one.session.receive_speech(p, frame, one_by_one.now)
        together.session.receive_heard(FRAME, heard, together.now)
        assert types(one_by_one.drain()) == types(together.drain())
    assert together.session.turns.turn is Turn.USER_SPEAKING
    assert together.session.audio_bytes_in == one_by_one.session.audio_bytes_in == 4 * len(FRAME)


def test_onset_needs_three_loud_frames() -> None:
    s = ready()
    assert frames(s, 2, 0.9) == []
    assert silence(s, 1) == []  # a click is not speech
    effects = frames(s, 3, 0.9)
    assert types(effects) == ["UserStartedSpeaking"]
    assert s.session.turns.turn is Turn.USER_SPEAKING


def test_speculation_thinks_at_the_pause_and_speaks_only_after_the_end_of_turn() -> None:
    s = ready()
    speech(s)
    effects = silence(s, PAUSE)
    stt = job(effects, TranscribeJob)
    assert len(stt.pcm16k) == (20 + PAUSE) * len(FRAME)  # preroll empty: started loud
    effects = s.provider(Transcript(stt.job_id, "What time is it?"))
    think = job(effects, ThinkJob)
    assert think.messages[-1].content == "What time is it?"
    assert "ConversationText" not in types(effects)  # not final yet
    # the first sentence is synthesised while held, but nothing goes to the client
    speak = job(s.provider(TextDelta(think.job_id, "It is noon. ")), SpeakJob)
    assert speak.text == "It is noon."
    s.now += 0.08
    assert s.provider(AudioChunk(speak.job_id, AUDIO)) == []
    assert s.provider(TextDelta(think.job_id, "Lunch time. ")) == []  # one sentence ahead only
    effects = silence(s, EOT - PAUSE)
    ended = s.now
    assert types(effects) == [
        "ConversationText",  # user
        "History",
        "AgentThinking",
        "ConversationText",  # assistant, just before its audio
        "History",
        "AgentStartedSpeaking",
        "LatencyReport",
        "audio",
    ]
    started = one(effects, m.AgentStartedSpeaking)
    assert started.total_latency == 0.0  # everything was ready at the end of turn
    assert abs(started.tts_latency - 0.08) < 1e-6  # what the TTS took, even though held
    assert s.session.turns.turn is Turn.AGENT_SPEAKING
    effects = s.provider(JobDone(speak.job_id))
    second = job(effects, SpeakJob)
    assert second.text == "Lunch time."
    effects = s.provider(AudioChunk(second.job_id, AUDIO)) + s.provider(JobDone(second.job_id))
    effects += s.provider(JobDone(think.job_id))
    assert types(effects) == ["ConversationText", "History", "audio", "AgentAudioDone"]
    assert s.now == ended


def test_a_guess_whose_llm_fails_while_the_user_speaks_fails_once_the_turn_is_final() -> None:
    s = ready()
    speech(s)
    stt = job(silence(s, PAUSE), TranscribeJob)
    think = job(s.provider(Transcript(stt.job_id, "Hi")), ThinkJob)
    # e.g. a remote LLM that refuses connections: nothing reaches the client yet
    assert s.provider(JobFailed(think.job_id, "connection refused", retryable=True)) == []
    assert s.session.turns.turn is Turn.USER_SPEAKING
    effects = silence(s, EOT - PAUSE)
    assert types(effects) == ["ConversationText", "History", "Error"]
    error = one(effects, m.Error)
    assert error.code == codes.FAILED_TO_THINK and "connection refused" in error.description
    assert s.session.turns.turn is Turn.LISTENING
    assert not s.session.closed


def test_a_guess_whose_llm_failed_is_dropped_when_the_user_goes_on() -> None:
    s = ready()
    speech(s)
    stt = job(silence(s, PAUSE), TranscribeJob)
    think = job(s.provider(Transcript(stt.job_id, "Hi")), ThinkJob)
    assert s.provider(JobFailed(think.job_id, "timed out", retryable=True)) == []
    assert speech(s, 5) == []  # resumed: the failed guess goes with the guess
    stt = job(silence(s, EOT), TranscribeJob)
    think = job(s.provider(Transcript(stt.job_id, "Hi there")), ThinkJob)
    assert think.messages[-1].content == "Hi there"


def test_a_held_reply_finished_before_the_end_of_turn_is_said_whole() -> None:
    s = ready()
    speech(s)
    stt = job(silence(s, PAUSE), TranscribeJob)
    think = job(s.provider(Transcript(stt.job_id, "Hi")), ThinkJob)
    assert s.provider(TextDelta(think.job_id, "Hello there!")) == []  # not a whole sentence yet
    speak = job(s.provider(JobDone(think.job_id)), SpeakJob)
    assert speak.text == "Hello there!"  # the LLM finished: its rest is the sentence
    assert s.provider(AudioChunk(speak.job_id, AUDIO)) == []
    assert s.provider(JobDone(speak.job_id)) == []
    assert s.session.turns.turn is Turn.USER_SPEAKING  # held: the reply does not finish
    effects = silence(s, EOT - PAUSE)
    assert types(effects) == [
        "ConversationText",
        "History",
        "AgentThinking",
        "ConversationText",
        "History",
        "AgentStartedSpeaking",
        "LatencyReport",
        "audio",
        "AgentAudioDone",
    ]
    assert s.session.turns.turn is Turn.LISTENING


def test_resuming_drops_the_parked_speech() -> None:
    s = ready()
    speech(s)
    stt = job(silence(s, PAUSE), TranscribeJob)
    think = job(s.provider(Transcript(stt.job_id, "Book a table")), ThinkJob)
    speak = job(s.provider(TextDelta(think.job_id, "Sure. ")), SpeakJob)
    assert s.provider(AudioChunk(speak.job_id, AUDIO)) == []
    effects = speech(s, 5)
    assert types(effects) == ["cancel", "cancel"]  # the think and speak jobs
    assert s.provider(AudioChunk(speak.job_id, AUDIO)) == []  # late output is dropped
    stt2 = job(silence(s, PAUSE), TranscribeJob)
    think2 = job(s.provider(Transcript(stt2.job_id, "Book a table for two")), ThinkJob)
    effects = silence(s, EOT - PAUSE)
    assert types(effects) == ["ConversationText", "History", "AgentThinking"]
    assert one(effects, m.ConversationText).content == "Book a table for two"
    assert job(s.provider(TextDelta(think2.job_id, "Done. ")), SpeakJob).text == "Done."


def test_a_parked_tts_failure_is_reported_once_the_turn_is_final() -> None:
    s = ready()
    speech(s)
    stt = job(silence(s, PAUSE), TranscribeJob)
    think = job(s.provider(Transcript(stt.job_id, "Hi")), ThinkJob)
    speak = job(s.provider(TextDelta(think.job_id, "Hello. ")), SpeakJob)
    assert s.provider(JobFailed(speak.job_id, "voice broke")) == []
    effects = silence(s, EOT - PAUSE)
    assert types(effects) == ["ConversationText", "History", "AgentThinking", "Error", "cancel"]
    assert one(effects, m.Error).code == codes.FAILED_TO_SPEAK
    assert s.session.turns.turn is Turn.LISTENING
    assert s.provider(TextDelta(think.job_id, "More. ")) == []


def test_resuming_cancels_the_guess() -> None:
    s = ready()
    speech(s)
    stt = job(silence(s, PAUSE), TranscribeJob)
    think = job(s.provider(Transcript(stt.job_id, "Book a table")), ThinkJob)
    effects = speech(s, 5)
    assert types(effects) == ["cancel"]  # the think job (the STT already answered)
    assert s.provider(TextDelta(think.job_id, "Sure. ")) == []
    stt2 = job(silence(s, PAUSE), TranscribeJob)
    effects = s.provider(Transcript(stt2.job_id, "Book a table for two"))
    assert job(effects, ThinkJob).messages[-1].content == "Book a table for two"


def test_resume_while_the_guess_is_still_transcribing_cancels_it() -> None:
    s = ready()
    speech(s)
    stt = job(silence(s, PAUSE), TranscribeJob)
    assert types(speech(s, 3)) == ["cancel"]
    assert s.provider(Transcript(stt.job_id, "late")) == []


def test_end_of_turn_before_the_guess_arrives() -> None:
    s = ready()
    speech(s)
    stt = job(silence(s, PAUSE), TranscribeJob)
    assert silence(s, EOT - PAUSE) == []
    effects = s.provider(Transcript(stt.job_id, "Hello"))
    assert types(effects) == ["ConversationText", "History", "AgentThinking", "start:think"]


def test_without_speculation_the_final_transcript_starts_at_end_of_turn() -> None:
    s = ready(speculate=False)
    speech(s)
    assert silence(s, 16) == []
    stt = job(silence(s, 1), TranscribeJob)
    effects = s.provider(Transcript(stt.job_id, "Hi"))
    assert types(effects) == ["ConversationText", "History", "AgentThinking", "start:think"]


def test_empty_transcript_discards_the_turn() -> None:
    s = ready()
    speech(s)
    stt = job(silence(s, PAUSE), TranscribeJob)
    assert s.provider(Transcript(stt.job_id, "  ")) == []  # an empty guess is forgotten
    assert s.session.state is State.USER_SPEAKING
    final = job(silence(s, EOT - PAUSE), TranscribeJob)  # the whole turn, transcribed again
    assert s.provider(Transcript(final.job_id, "")) == []
    assert s.session.state is State.LISTENING


def test_transcription_failure_is_a_warning() -> None:
    s = ready()
    speech(s)
    stt = job(silence(s, PAUSE), TranscribeJob)
    silence(s, EOT - PAUSE)
    effects = s.provider(JobFailed(stt.job_id, "decoder crashed"))
    assert one(effects, m.Warning).code == codes.FAILED_TO_LISTEN
    assert s.session.turns.turn is Turn.LISTENING


def test_onset_after_the_end_of_turn_waits_for_the_whole_turn() -> None:
    """The user speaks again before the turn's transcript came back: no reply to half a turn
    (it could start talking over them); both parts become one turn."""
    s = ready(speculate=False)
    speech(s)
    stt = job(silence(s, 17), TranscribeJob)
    assert types(speech(s, 3)) == []  # still the user's floor: no second UserStartedSpeaking
    assert s.session.state is State.CONTINUING
    assert s.provider(Transcript(stt.job_id, "first part")) == []  # no reply yet
    merged = job(silence(s, 17), TranscribeJob)
    assert merged.pcm16k.startswith(stt.pcm16k) and len(merged.pcm16k) > len(stt.pcm16k)
    effects = s.provider(Transcript(merged.job_id, "first part and more"))
    assert types(effects) == ["ConversationText", "History", "AgentThinking", "start:think"]


def test_barge_in_from_audio_keeps_only_what_was_played() -> None:
    s = ready()
    think = job(s.text({"type": "InjectUserMessage", "content": "Tell me a story"}), ThinkJob)
    text = "Once upon a time there was a fox. It lived in the woods. The end. "
    speak = job(s.provider(TextDelta(think.job_id, text)), SpeakJob)
    s.provider(AudioChunk(speak.job_id, AUDIO))
    s.provider(AudioChunk(speak.job_id, AUDIO))  # one second of audio for sentence 1
    s.provider(JobDone(think.job_id))
    speak2 = job(s.provider(JobDone(speak.job_id)), SpeakJob)
    s.provider(AudioChunk(speak2.job_id, AUDIO))
    s.now += 1.25  # the client has played all of sentence 1 and half of sentence 2
    effects = speech(s, 3)
    assert types(effects)[:1] == ["UserStartedSpeaking"]
    assert "AgentAudioDone" in types(effects)
    assert s.provider(AudioChunk(speak2.job_id, AUDIO)) == []  # no more audio of that reply
    history = s.session.turns.conversation.messages("")
    assert history[-1].content == "Once upon a time there was a fox. It lived in…"


def test_text_only_agent_hears_nothing() -> None:
    """Without a listen provider the server runs no VAD; frames fed anyway are ignored."""
    s = Script()
    s.settings(listen=None)
    assert types(speech(s)) == []
    assert jobs(silence(s, 20), TranscribeJob) == []
    assert s.session.turns.turn is Turn.LISTENING
    speech(s)
    s.text({"type": "InjectUserMessage", "content": "typed"})
    silence(s, 20)  # the end of that audio turn does not discard the typed turn's reply
    assert s.session.turns.turn is Turn.THINKING


def test_inject_user_message_drops_a_guess() -> None:
    s = ready()
    speech(s)
    stt = job(silence(s, PAUSE), TranscribeJob)
    effects = s.text({"type": "InjectUserMessage", "content": "typed instead"})
    assert types(effects)[0] == "cancel"
    assert s.provider(Transcript(stt.job_id, "spoken")) == []


def test_a_long_monologue_ends_the_turn_at_the_cap() -> None:
    listener = Listener(ListenerConfig(max_frames=10))
    events = [listener.feed(0.9, FRAME) for _ in range(10)]
    kinds = [e.kind for e in events if e is not None]
    assert kinds == ["onset", "end"]


def test_listener_keeps_preroll_before_the_onset() -> None:
    listener = Listener()
    for _ in range(20):
        assert listener.feed(0.0, b"\x00\x00") is None
    for _ in range(3):
        event = listener.feed(0.9, b"\x01\x00")
    assert event is not None and event.kind == "onset"
    assert listener.speaking
    assert listener.pcm() == b"\x00\x00" * 10 + b"\x01\x00" * 3
    assert listener.feed(0.4, b"\x01\x00") is None  # between off and on: still speech
    assert SETTINGS["type"] == "Settings"


def test_speech_ending_again_while_the_last_turn_is_transcribed_is_one_turn() -> None:
    s = ready(speculate=False)
    speech(s)
    first = job(silence(s, 17), TranscribeJob)
    speech(s)
    effects = silence(s, 17)
    merged = job(effects, TranscribeJob)
    assert types(effects) == ["cancel", "start:transcribe"]
    assert merged.pcm16k.startswith(first.pcm16k) and len(merged.pcm16k) > len(first.pcm16k)
    assert s.provider(Transcript(first.job_id, "old")) == []
    effects = s.provider(Transcript(merged.job_id, "first part and second part"))
    assert types(effects) == ["ConversationText", "History", "AgentThinking", "start:think"]


def test_a_pause_and_resume_in_the_next_part_keep_the_turn_still_transcribed() -> None:
    """Found end to end: "...selfish." (end of turn, STT running) "ten" (pause) "seven of clubs".

    The resume after the second part's pause must not drop the first part's transcription.
    """
    s = ready()
    speech(s)
    first = job(silence(s, EOT), TranscribeJob)  # speculative at the pause, final at the end
    speech(s, 5)
    assert silence(s, PAUSE) == []  # no second guess while the first is still transcribed
    assert speech(s, 5) == []  # the resume keeps it
    merged = job(silence(s, EOT), TranscribeJob)
    assert merged.pcm16k.startswith(first.pcm16k) and len(merged.pcm16k) > len(first.pcm16k)
    effects = s.provider(Transcript(merged.job_id, "first part and second part"))
    assert types(effects) == ["ConversationText", "History", "AgentThinking", "start:think"]


def test_a_transcript_that_arrives_while_the_user_goes_on_starts_no_reply() -> None:
    s = ready()
    speech(s)
    stt = job(silence(s, 17), TranscribeJob)  # the pause started it; EOT made it final
    speech(s, 3)  # the user goes on while the first turn is transcribed
    assert s.provider(Transcript(stt.job_id, "first")) == []
    assert silence(s, PAUSE) == []  # no guess while the part before waits for the merge
    effects = silence(s, EOT - PAUSE)
    merged = job(effects, TranscribeJob)
    effects = s.provider(Transcript(merged.job_id, "first and second"))
    assert job(effects, ThinkJob).messages[-1].content == "first and second"


def test_latency_report_of_a_spoken_turn() -> None:
    s = Script()
    s.text(SETTINGS)  # no flag: LatencyReport comes after every turn (PROTOCOL.md §10)
    s.drain()
    speech(s)
    stt = job(silence(s, PAUSE), TranscribeJob)
    silence(s, EOT - PAUSE)  # end of turn before the transcript
    ended = s.now
    s.now += 0.25
    think = job(s.provider(Transcript(stt.job_id, "What time is it?")), ThinkJob)
    s.now += 0.1
    s.provider(TextDelta(think.job_id, "It is"))
    s.now += 0.2
    speak = job(s.provider(TextDelta(think.job_id, " noon. ")), SpeakJob)
    s.now += 0.05
    effects = s.provider(AudioChunk(speak.job_id, AUDIO))
    report = one(effects, m.LatencyReport)
    assert report.eou_latency == round(17 * FRAME_SECONDS, 4)
    assert report.stt_latency == 0.25
    assert report.ttt_token_latency == 0.1
    assert report.ttt_text_latency == 0.3
    assert report.tts_latency == 0.05
    assert report.total_latency == round(s.now - ended, 4) == 0.6
    started = one(effects, m.AgentStartedSpeaking)
    assert (started.total_latency, started.ttt_latency, started.tts_latency) == (0.6, 0.1, 0.05)


def _guess_calls_weather(s: Script, text: str = "") -> tuple[ThinkJob, list[Effect]]:
    speech(s)
    stt = job(silence(s, PAUSE), TranscribeJob)
    think = job(s.provider(Transcript(stt.job_id, "Weather in Paris?")), ThinkJob)
    effects = s.provider(TextDelta(think.job_id, text)) if text else []
    s.provider(ToolCalls(think.job_id, (ToolCall("c1", "get_weather", '{"location":"Paris"}'),)))
    return think, effects


def test_a_guess_never_calls_a_function_before_the_turn_is_final() -> None:
    s = ready()
    think, _ = _guess_calls_weather(s)
    assert s.provider(JobDone(think.job_id)) == []  # no FunctionCallRequest on a guess
    effects = silence(s, EOT - PAUSE)
    assert types(effects) == ["ConversationText", "History", "AgentThinking", "FunctionCallRequest"]
    assert one(effects, m.FunctionCallRequest).functions[0].id == "c1"
    effects = s.text({"type": "FunctionCallResponse", "id": "c1", "content": "21C"})
    assert types(effects) == ["History", "start:think"]


def test_a_guess_speaks_its_words_then_calls_once_final() -> None:
    s = ready()
    think, effects = _guess_calls_weather(s, "Let me check. ")
    speak = job(effects, SpeakJob)  # synthesised while held
    assert s.provider(AudioChunk(speak.job_id, AUDIO)) == []
    assert s.provider(JobDone(think.job_id)) == []
    effects = silence(s, EOT - PAUSE)
    assert types(effects) == [
        "ConversationText",  # user
        "History",
        "AgentThinking",
        "ConversationText",  # "Let me check." with its parked audio
        "History",
        "AgentStartedSpeaking",
        "LatencyReport",
        "audio",
        "FunctionCallRequest",
    ]
    assert s.session.turns.conversation.messages("P", None)[-1].content == "Let me check."
    assert types(s.provider(JobDone(speak.job_id))) == []  # the reply waits for the function


def test_a_guess_that_asked_for_a_function_is_dropped_silently_on_resume() -> None:
    s = ready()
    think, _ = _guess_calls_weather(s)
    assert s.provider(JobDone(think.job_id)) == []
    assert speech(s, 5) == []  # nothing was requested, so nothing is cancelled on the wire
    stt = job(silence(s, PAUSE), TranscribeJob)
    think = job(s.provider(Transcript(stt.job_id, "Weather in Rome?")), ThinkJob)
    assert think.messages[-1].content == "Weather in Rome?"
