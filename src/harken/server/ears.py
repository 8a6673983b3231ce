"""The client's audio → 32 ms frames of 16 kHz speech with VAD probabilities, per connection.

Decoding (linear16/mulaw/alaw), resampling and the VAD are numpy and model work, so they live
here at the edge; the session only counts frames (``Session.receive_speech``).
"""

from __future__ import annotations

import numpy as np

from harken.protocol import audio
from harken.protocol.settings import AudioInput
from harken.providers.base import VAD, VADStream

RATE = 16000


class Ears:
    """Per-frame work is the server's hot path (every session, 50 frames a second): audio that
    arrives as 16 kHz linear16 is only appended to a buffer and cut into frames, with no
    decoding, copying or concatenating of arrays; other formats are decoded and resampled into
    the same buffer."""

    def __init__(self, given: AudioInput, vad: VAD) -> None:
        self.encoding = given.encoding
        self._direct = given.encoding == "linear16" and given.sample_rate == RATE
        self._odd = b""  # a linear16 sample split across two frames (decoded formats)
        self._resampler: audio.StreamResampler[np.int16] | None = None
        if given.sample_rate != RATE:
            self._resampler = audio.StreamResampler(given.sample_rate, RATE, np.int16)
        self._stream: VADStream = vad.stream()
        self._size = self._stream.frame_samples
        self._step = 2 * self._size  # bytes per frame
        self._buffer = bytearray()  # 16 kHz little-endian int16, not yet a whole frame

    def feed(self, data: bytes) -> list[tuple[float, bytes]]:
        """Every whole frame completed by ``data``: (speech probability, int16 bytes)."""
        buffer = self._buffer
        if self._direct:
            buffer += data  # a split sample stays at the end: frames start on sample bounds
        else:
            buffer += self._decode(data)
        step = self._step
        whole = len(buffer) - len(buffer) % step
        if not whole:
            return []
        probability = self._stream.probability
        if whole == step:  # the usual: this data completes one frame
            frame = bytes(buffer[:step])
            del buffer[:step]
            return [(probability(np.frombuffer(frame, "<i2")), frame)]
        frames = [bytes(buffer[i : i + step]) for i in range(0, whole, step)]
        del buffer[:whole]
        return [(probability(np.frombuffer(f, "<i2")), f) for f in frames]

    def _decode(self, data: bytes) -> bytes:
        if self.encoding == "linear16":
            data = self._odd + data
            cut = len(data) - len(data) % 2
            data, self._odd = data[:cut], data[cut:]
        samples = audio.decode_input(data, self.encoding)
        if self._resampler is not None:
            samples = self._resampler.process(samples)
        return audio.pcm16_to_bytes(samples)

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()
