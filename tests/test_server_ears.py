"""The per-frame path: client audio cut into 16 kHz frames for the VAD, however it arrives."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from harken.protocol import audio
from harken.protocol.settings import AudioInput
from harken.providers.testing import EnergyVAD
from harken.server.ears import Ears

SIGNAL = (np.sin(np.arange(16000) / 7.0) * 3000).astype(np.int16)


def frames_of(ears: Ears, chunks: list[bytes]) -> list[tuple[float, bytes]]:
    return [frame for chunk in chunks for frame in ears.feed(chunk)]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 2000), min_size=1, max_size=40))
def test_linear16_frames_do_not_depend_on_how_the_bytes_are_split(sizes: list[int]) -> None:
    """Chunks of any size, odd ones included (a sample split across two messages): the frames
    are the signal's, in order, each with the probability of its own samples."""
    data = audio.pcm16_to_bytes(SIGNAL)
    chunks, at = [], 0
    for size in sizes:
        chunks.append(data[at : at + size])
        at += size
    chunks.append(data[at:])
    whole = frames_of(Ears(AudioInput("linear16", 16000), EnergyVAD()), [data])
    split = frames_of(Ears(AudioInput("linear16", 16000), EnergyVAD()), chunks)
    assert split == whole
    assert b"".join(frame for _, frame in whole) == data[: len(whole) * 640]
    vad = EnergyVAD().stream()
    assert [p for p, _ in whole] == [vad.probability(np.frombuffer(f, "<i2")) for _, f in whole]


def test_mulaw_at_8k_is_decoded_and_resampled_into_16k_frames() -> None:
    eight = SIGNAL[::2]
    coded = audio.mulaw_encode(eight).tobytes()
    ears = Ears(AudioInput("mulaw", 8000), EnergyVAD())
    frames = frames_of(ears, [coded[i : i + 160] for i in range(0, len(coded), 160)])
    assert 45 <= len(frames) <= 50  # 1 s of audio in 20 ms frames (the resampler's delay)
    assert all(len(f) == 640 for _, f in frames)
    assert np.mean([p for p, _ in frames[5:]]) > 0.5  # loud: the samples came through


def test_silence_has_no_energy() -> None:
    ears = Ears(AudioInput("linear16", 16000), EnergyVAD())
    assert [p for p, _ in ears.feed(bytes(1280))] == [0.0, 0.0]
