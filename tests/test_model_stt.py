"""Whisper (faster-whisper, int8) on 11 real recorded human utterances, silence and noise.

Real models: needs ``models/whisper-base`` and ``models/whisper-tiny.en`` (``make install``)
and the recordings of ``scripts/fetch_testdata.py``; missing either fails, unless
``HARKEN_ALLOW_MISSING_MODELS=1``. Run with ``-s`` to see the per-utterance transcripts.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harken.engines.assemble import verify
from harken.engines.lane import SESSION, ComputeLane
from harken.errors import ModelError, ProviderError
from harken.protocol.audio import int16_to_float32, resample
from harken.providers.base import STT
from harken.providers.stt import WhisperSTT
from harken.providers.stt.whisper import (
    PIECE_S,
    _Encoder,
    fitted,
    keep_segment,
    load_model,
    loops,
    pieces,
    unsure,
)
from harken.providers.tts.espeak import EspeakTTS
from speech import (
    Utterance,
    corpus_wer,
    model_root,
    need,
    noise,
    normalise,
    utterances,
    wer,
)

pytestmark = pytest.mark.models

BASE_MAX_WER = 0.08  # measured 4/96 (fitted window and full window; MODELS.md: 4.2 %)
# 5/96 when measured (MODELS.md); 9/96 on 2026-12-05 with a fresh install from the registry,
# at the last commit as well (not a code change: the packages it resolves moved on)
TINY_MAX_WER = 0.10
"""tiny.en (full window: English-only models do not get the fitted one) measured 5/96 = 5.2 %
with timestamp tokens decoded (MODELS.md: 5.2 %); without them it was 8/96, which is why harken
decodes them. In a fitted window it made 8/96."""


@pytest.fixture(scope="module")
def lane() -> Iterator[ComputeLane]:
    lane = ComputeLane("test-stt")
    yield lane
    lane.close()


@pytest.fixture(scope="module")
def speech() -> list[Utterance]:
    return need(utterances)


@pytest.fixture(scope="module")
def base(lane: ComputeLane) -> WhisperSTT:
    return need(WhisperSTT.from_catalog, "whisper-base", lane, model_root())


@pytest.fixture(scope="module")
def tiny(lane: ComputeLane) -> WhisperSTT:
    return need(WhisperSTT.from_catalog, "whisper-tiny.en", lane, model_root())


def _run_all(stt: WhisperSTT, speech: list[Utterance]) -> dict[str, str]:
    async def run() -> dict[str, str]:
        return {u.name: await stt.transcribe(u.samples) for u in speech}

    loop = asyncio.new_event_loop()  # private: never installed as the current loop
    try:
        return loop.run_until_complete(run())
    finally:
        loop.close()


@pytest.fixture(scope="module")
def base_texts(base: WhisperSTT, speech: list[Utterance]) -> dict[str, str]:
    return _run_all(base, speech)


@pytest.fixture(scope="module")
def tiny_texts(tiny: WhisperSTT, speech: list[Utterance]) -> dict[str, str]:
    return _run_all(tiny, speech)


def _report(label: str, speech: list[Utterance], texts: dict[str, str]) -> tuple[float, str]:
    lines = [f"{label}: per-utterance WER"]
    for u in speech:
        lines.append(f"  {u.name:<10} {wer(u.text, texts[u.name]):6.1%}  {texts[u.name]!r}")
    errors, words = corpus_wer([(u.text, texts[u.name]) for u in speech])
    lines.append(f"  corpus WER {errors}/{words} = {errors / words:.1%}")
    report = "\n".join(lines)
    print("\n" + report)
    return errors / words, report


def test_provider_shape(base: WhisperSTT, tiny: WhisperSTT) -> None:
    assert isinstance(base, STT)
    assert base.capabilities.sample_rate == 16000
    assert "en" in base.capabilities.languages and "de" in base.capabilities.languages
    assert tiny.capabilities.languages == ("en",)


def test_base_wer_on_real_speech(speech: list[Utterance], base_texts: dict[str, str]) -> None:
    corpus, report = _report("whisper-base int8", speech, base_texts)
    assert corpus <= BASE_MAX_WER, report


def test_tiny_wer_on_real_speech(speech: list[Utterance], tiny_texts: dict[str, str]) -> None:
    corpus, report = _report("whisper-tiny.en int8", speech, tiny_texts)
    assert corpus <= TINY_MAX_WER, report


def test_the_fitted_window_is_faster_and_as_accurate(
    lane: ComputeLane, base: WhisperSTT, speech: list[Utterance], base_texts: dict[str, str]
) -> None:
    full = WhisperSTT(base.model_path, lane, fit_window=False)  # shares the loaded model
    long = [u for u in speech if u.samples.size >= 3 * 16000]
    started = time.perf_counter()
    full_texts = _run_all(full, long)
    full_seconds = time.perf_counter() - started
    started = time.perf_counter()
    fit_texts = _run_all(base, long)
    fit_seconds = time.perf_counter() - started
    full_wer, full_report = _report("base, full window", long, full_texts)
    fit_wer, fit_report = _report("base, fitted window", long, fit_texts)
    assert fit_wer <= full_wer + 0.02, fit_report + "\n" + full_report
    # a functional check, not a benchmark: the fitted encoder does a fraction of the work
    assert fit_seconds < full_seconds, (fit_seconds, full_seconds)
    assert fit_texts == {u.name: base_texts[u.name] for u in long}


async def test_the_fitted_window_holds_at_any_frame_offset(
    base: WhisperSTT, speech: list[Utterance]
) -> None:
    """The server cuts turns at 32 ms frames wherever the stream happens to put them; a fitted
    window made Whisper skip "Go forward" at some offsets; the fallback must catch every one."""
    u = next(x for x in speech if x.name == "goforward")
    through_48k = resample(resample(u.samples, 16000, 48000), 48000, 16000)  # as `harken talk`
    audio = np.concatenate([np.zeros(12800, np.int16), through_48k, np.zeros(8000, np.int16)])
    wrong = []
    for offset in range(9600, 12800, 200):
        text = await base.transcribe(audio[offset : offset + 36352])
        if normalise(text) != normalise(u.text):
            wrong.append((offset, text))
    assert wrong == []


def test_a_loop_in_the_fitted_window_is_decoded_again(
    lane: ComputeLane, tiny: WhisperSTT, speech: list[Utterance], tiny_texts: dict[str, str]
) -> None:
    """tiny.en loops on short recordings in a fitted window; the full window fixes it."""
    assert not tiny.fit_window  # English-only: the full window by default
    fresh = WhisperSTT(tiny.model_path, lane, fit_window=True, fit_margin=2.0)
    goforward = [u for u in speech if u.name == "goforward"]
    texts = _run_all(fresh, goforward)
    assert fresh.refits == 1
    assert normalise(texts["goforward"]) == normalise(goforward[0].text)
    assert tiny_texts["goforward"] == texts["goforward"]


@pytest.mark.parametrize("model", ["base", "tiny"])
@pytest.mark.parametrize("kind", ["silence-1s", "noise-50dBFS-2s", "silence-5s"])
async def test_silence_and_noise_give_nothing(
    request: pytest.FixtureRequest, model: str, kind: str
) -> None:
    stt: WhisperSTT = request.getfixturevalue(model)
    audio = {
        "silence-1s": np.zeros(16000, np.int16),
        "silence-5s": np.zeros(80000, np.int16),
        "noise-50dBFS-2s": noise(2.0, -50.0, seed=3),
    }[kind]
    assert await stt.transcribe(audio) == ""


async def test_too_short_input_skips_the_model(base: WhisperSTT, lane: ComputeLane) -> None:
    steps = lane.steps_run
    assert await base.transcribe(np.zeros(0, np.int16)) == ""
    assert await base.transcribe(noise(0.05, -20.0)) == ""
    assert lane.steps_run == steps


@pytest.mark.parametrize("rate", [8000, 44100])
async def test_other_rates_resampled_give_the_same_text(
    base: WhisperSTT, speech: list[Utterance], base_texts: dict[str, str], rate: int
) -> None:
    for u in (speech[1], speech[5]):  # a LibriVox sentence and goforward
        at_rate = resample(u.samples, 16000, rate)  # what a client at ``rate`` would send
        text = await base.transcribe(resample(at_rate, rate, 16000))
        # the same words, give or take one ("ill-disposed" vs "ill-sposed" at 8 kHz)
        assert wer(base_texts[u.name], text) <= 0.15, (u.name, text, base_texts[u.name])


async def test_concurrent_transcriptions_share_the_lane(
    base: WhisperSTT, lane: ComputeLane, speech: list[Utterance], base_texts: dict[str, str]
) -> None:
    chosen = [speech[1], speech[5], speech[10]]
    steps = lane.steps_run

    async def session(index: int, u: Utterance) -> str:
        SESSION.set(f"session-{index}")
        return await base.transcribe(u.samples)

    started = time.perf_counter()
    texts = await asyncio.wait_for(
        asyncio.gather(*(session(i, u) for i, u in enumerate(chosen))), timeout=60
    )
    print(f"\n3 concurrent transcriptions: {time.perf_counter() - started:.2f} s")
    assert texts == [base_texts[u.name] for u in chosen]
    assert lane.steps_run - steps == 6  # two lane steps per transcription: encoder, decoder


def test_the_decoder_step_reuses_the_encoder_step(
    base: WhisperSTT, speech: list[Utterance], base_texts: dict[str, str]
) -> None:
    """The encoder runs once per piece, in the encoder step, and what the two steps make is what
    faster-whisper makes in one call (the encoder's input built as faster-whisper builds it)."""
    model = base._model
    encoder = cast(_Encoder, model.encode)
    runs = encoder.runs
    assert _run_all(base, speech) == base_texts
    assert encoder.runs - runs == len(speech)
    switch = encoder.switch
    switch.margin = round(base.fit_margin * 100)  # in one call, on this thread: the old way
    try:
        for u in speech:
            options = base.options(u.seconds, "en", None)
            segments, _ = model.transcribe(int16_to_float32(u.samples), **options)
            one_call = " ".join(s.text.strip() for s in segments if keep_segment(s))
            assert one_call == base_texts[u.name], u.name
    finally:
        switch.margin = None


@pytest.mark.parametrize(
    ("voice", "text"),
    [
        ("de", "Guten Morgen, wie geht es Ihnen heute? Ich möchte einen Tisch reservieren."),
        ("es", "Buenos días, ¿cómo está usted? Quisiera reservar una mesa para dos personas."),
    ],
)
async def test_the_encoder_step_detects_the_language(
    base: WhisperSTT, lane: ComputeLane, voice: str, text: str
) -> None:
    """With ``multi`` the language is detected on the encoder step's output: as faster-whisper
    detects it, and the text is the one decoded in that language given explicitly."""
    tts = EspeakTTS(need(verify, "espeak-ng", model_root()), voice=voice, lane=lane)
    spoken = np.concatenate([chunk async for chunk in tts.synthesize(text)])
    pcm = resample(spoken, tts.capabilities.sample_rate, 16000)
    detected, _probability = base._model.detect_language(int16_to_float32(pcm))[:2]
    assert detected == voice
    given = await base.transcribe(pcm, language=voice)
    assert await base.transcribe(pcm, language="multi") == given


async def test_language_codes(base: WhisperSTT, tiny: WhisperSTT, speech: list[Utterance]) -> None:
    u = speech[5]
    assert normalise(await base.transcribe(u.samples, language="en-US")) == normalise(u.text)
    assert normalise(await tiny.transcribe(u.samples, language="multi")) == normalise(u.text)
    with pytest.raises(ProviderError, match="does not transcribe language 'de'"):
        await tiny.transcribe(u.samples, language="de")
    with pytest.raises(ProviderError, match="xx"):
        await base.transcribe(u.samples, language="xx")


async def test_bad_input_is_a_provider_error(base: WhisperSTT) -> None:
    with pytest.raises(ProviderError, match="mono int16"):
        await base.transcribe(np.zeros(16000, np.float32))
    with pytest.raises(ProviderError, match="mono int16"):
        await base.transcribe(np.zeros((16000, 2), np.int16))


@pytest.mark.parametrize("step", ["encoder", "decoder"])
async def test_engine_failure_is_translated(
    lane: ComputeLane, tiny: WhisperSTT, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("CTranslate2 fell over")

    def features(audio: object) -> np.ndarray:
        return np.ones((80, 101), np.float32)

    broken = WhisperSTT(tiny.model_path, lane)  # shares the loaded model
    parts = {
        "feature_extractor": staticmethod(features),
        "encode": _Encoder(explode if step == "encoder" else features),
        "transcribe": staticmethod(explode),
    }
    monkeypatch.setattr(broken, "_model", type("M", (), parts)())
    with pytest.raises(ProviderError, match="fell over") as info:
        await broken.transcribe(noise(1.0, -20.0))
    assert isinstance(info.value.__cause__, RuntimeError)
    assert info.value.retryable


def test_one_loaded_model_per_process(tiny: WhisperSTT, lane: ComputeLane) -> None:
    again = WhisperSTT(tiny.model_path, lane, beam_size=5)
    assert again._model is tiny._model
    assert load_model(tiny.model_path) is tiny._model


def test_corrupt_model_is_a_model_error(tmp_path: Path, lane: ComputeLane) -> None:
    source = need(verify, "whisper-tiny.en", model_root())
    copy = tmp_path / "whisper-tiny.en"
    shutil.copytree(source, copy)
    model_bin = copy / "model.bin"
    with model_bin.open("r+b") as f:
        f.truncate(model_bin.stat().st_size // 2)
    started = time.perf_counter()
    with pytest.raises(ModelError, match="cannot load the Whisper model") as info:
        WhisperSTT(copy, lane)
    assert time.perf_counter() - started < 30
    assert info.value.__cause__ is not None


def test_missing_model_is_a_model_error(tmp_path: Path, lane: ComputeLane) -> None:
    # never mistaken for a Hugging Face model id (no download attempt)
    with pytest.raises(ModelError, match=r"model\.bin is missing"):
        WhisperSTT(tmp_path / "nothing-here", lane)


@dataclass
class _Seg:
    text: str = " hello"
    no_speech_prob: float = 0.1
    avg_logprob: float = -0.3
    compression_ratio: float = 1.2


def test_loops_are_seen_in_one_segment_or_across_segments() -> None:
    assert not loops([_Seg(" Go forward 10 meters.")])
    assert loops([_Seg(" 10 meters 10 meters")])  # in a fitted window, once
    assert not loops([_Seg(" No, no, I said the red one.")])  # one word twice is speech
    assert loops([_Seg(compression_ratio=2.6)])
    assert loops([_Seg(" Go forward 10 meters.") for _ in range(12)])
    assert not loops([_Seg(""), _Seg(" ")])


def test_unsure_segments_are_those_whisper_would_retry() -> None:
    assert not unsure([_Seg(avg_logprob=-0.41)])
    assert unsure([_Seg(avg_logprob=-0.41), _Seg(" 10 meters", avg_logprob=-1.13)])
    assert not unsure([])


def test_fitted_features_keep_the_audio_and_a_margin() -> None:
    features = np.zeros((80, 3000), np.float32)
    features[:, :312] = 0.5
    assert fitted(features, 200).shape == (80, 600)  # 312 + 200, rounded up to whole seconds
    assert fitted(features, 500).shape == (80, 900)
    assert fitted(features, 0).shape == (80, 400)
    assert fitted(np.ones((80, 3000), np.float32), 200).shape == (80, 3000)
    assert fitted(np.zeros((1, 80, 3000), np.float32), 150).shape == (1, 80, 200)


@pytest.mark.parametrize(
    ("segment", "kept"),
    [
        (_Seg(), True),
        (_Seg(no_speech_prob=0.56, avg_logprob=-0.72), True),  # tiny.en on "five five"
        (_Seg(no_speech_prob=0.9, avg_logprob=-0.5), True),  # confident text wins
        (_Seg(no_speech_prob=0.2, avg_logprob=-1.5), True),  # unsure, but speech was heard
        (_Seg(" you", no_speech_prob=0.705, avg_logprob=-1.01), False),  # base on 5 s silence
        (_Seg(" I'm sorry.", no_speech_prob=0.813, avg_logprob=-1.5), False),
        (_Seg(" the the the", compression_ratio=3.1), False),  # repetition loop
    ],
)
def test_hallucination_guard(segment: _Seg, kept: bool) -> None:
    assert keep_segment(segment) is kept


# ------------------------------------------------------------------------------- long turns


@settings(max_examples=200, deadline=None)
@given(
    size=st.integers(0, 40_000),
    longest=st.integers(8, 10_000),
    seed=st.integers(0, 2**32 - 1),
)
def test_pieces_cover_the_turn_within_the_longest(size: int, longest: int, seed: int) -> None:
    samples = np.random.default_rng(seed).integers(-3000, 3000, size, dtype=np.int16)
    cut = pieces(samples, longest)
    assert np.array_equal(np.concatenate(cut), samples)
    assert all(piece.size <= longest for piece in cut)
    if len(cut) > 1:
        assert all(piece.size >= longest // 2 for piece in cut)


def test_pieces_are_cut_where_the_speech_pauses() -> None:
    rng = np.random.default_rng(1)
    speech = rng.integers(-8000, 8000, 16000 * 30, dtype=np.int16)
    pauses = [(90_000, 96_000), (200_000, 205_000), (330_000, 336_000)]  # 0.3-0.4 s each
    for start, end in pauses:
        speech[start:end] = rng.integers(-30, 30, end - start, dtype=np.int16)
    cut = pieces(speech, 16000 * 10)  # pieces of up to 10 s: one cut at each pause
    ends = np.cumsum([piece.size for piece in cut])[:-1]
    assert len(cut) == 4
    assert all(start < at < end for at, (start, end) in zip(ends, pauses, strict=True)), ends


async def test_a_long_turn_is_transcribed_in_pieces_two_lane_steps_each(
    base: WhisperSTT, speech: list[Utterance], lane: ComputeLane
) -> None:
    """A turn longer than PIECE_S (here 6 recordings with pauses, ~22 s) is cut at its pauses
    and each piece is two lane steps (encoder, decoder), so no step works on more than PIECE_S;
    every recording's words are still there."""
    chosen = speech[:6]
    pause = np.zeros(16000 * 6 // 10, np.int16)
    turn = np.concatenate([part for u in chosen for part in (u.samples, pause)])
    assert turn.size > 2 * 16000 * PIECE_S
    encoder = cast(_Encoder, base._model.encode)
    before = len([w for w in lane.waits if w.what == "stt"])
    refits, runs = base.refits, encoder.runs
    text = await base.transcribe(turn)
    steps = len([w for w in lane.waits if w.what == "stt"]) - before
    cut = pieces(turn, int(16000 * PIECE_S))
    decodings = len(cut) + base.refits - refits
    assert len(cut) >= 3 and steps == 2 * decodings, (steps, len(cut))
    assert encoder.runs - runs == decodings
    reference = " ".join(u.text for u in chosen)
    errors = wer(reference, text)
    print(f"{turn.size / 16000:.1f} s in {steps} steps: {errors:.1%} WER: {text}")
    assert errors <= 0.15, text
