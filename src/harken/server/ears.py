"""The client's audio → 32 ms frames of 16 kHz speech with VAD probabilities, per connection.

Decoding (linear16/mulaw/alaw), resampling and the VAD are numpy and model work, so they live
here at the edge; the session only counts frames (``Session.receive_speech``).
"""

from __future__ import annotations

import numpy as np

from harken.protocol import audio
from harken.protocol.settings import AudioInput
from harken.providers.base import VAD, Int16Array, VADStream

RATE = 16000


class Ears:
    def __init__(self, given: AudioInput, vad: VAD) -> None:
        self.encoding = given.encoding
        self._odd = b""  # a linear16 sample split across two frames
        self._resampler: audio.StreamResampler[np.int16] | None = None
        if given.sample_rate != RATE:
            self._resampler = audio.StreamResampler(given.sample_rate, RATE, np.int16)
        self._stream: VADStream = vad.stream()
        self._size = self._stream.frame_samples
        self._pending: Int16Array = np.zeros(0, dtype=np.int16)

    def feed(self, data: bytes) -> list[tuple[float, bytes]]:
        """Every whole frame completed by ``data``: (speech probability, int16 bytes)."""
        if self.encoding == "linear16":
            data = self._odd + data
            cut = len(data) - len(data) % 2
            data, self._odd = data[:cut], data[cut:]
        samples = audio.decode_input(data, self.encoding)
        if self._resampler is not None:
            samples = self._resampler.process(samples)
        if self._pending.size:
            samples = np.concatenate((self._pending, samples))
        whole = samples.size - samples.size % self._size
        frames = [samples[i : i + self._size] for i in range(0, whole, self._size)]
        self._pending = samples[whole:].copy()
        return [(self._stream.probability(f), f.tobytes()) for f in frames]

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()
