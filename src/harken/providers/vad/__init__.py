"""Voice activity detection providers, and :class:`VADFramer` to feed them audio of any size.

A :class:`~harken.providers.base.VADStream` scores fixed frames (``frame_samples`` at 16 kHz);
client audio arrives in chunks of any length and at the client's rate. :class:`VADFramer`
resamples a stream of chunks to 16 kHz (keeping the filter state between chunks), cuts it into
frames and keeps the remainder for the next chunk.
"""

from __future__ import annotations

import numpy as np

from harken.protocol.audio import StreamResampler
from harken.providers.base import Int16Array, VADStream
from harken.providers.vad.silero import SileroVAD, SileroVADStream

__all__ = ["SileroVAD", "SileroVADStream", "VADFramer"]

VAD_RATE = 16000


class VADFramer:
    """Per-frame speech probabilities for a stream of int16 chunks of any length.

    ``framer = VADFramer(vad.stream(), sample_rate=48000)``, then for every chunk
    ``for p in framer.feed(chunk): ...``: one probability per complete frame, in order.
    Frame ``i`` covers 16 kHz samples ``[i * frame_samples, (i + 1) * frame_samples)`` of the
    resampled stream (:attr:`frames` counts them, :attr:`frame_seconds` is their length).
    """

    def __init__(self, stream: VADStream, sample_rate: int = VAD_RATE) -> None:
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive; got {sample_rate}")
        self.stream = stream
        self.sample_rate = sample_rate
        self._resampler: StreamResampler[np.int16] | None = None
        if sample_rate != VAD_RATE:
            self._resampler = StreamResampler(sample_rate, VAD_RATE, np.int16)
        self._pending: Int16Array = np.zeros(0, dtype=np.int16)
        self.frames = 0

    @property
    def frame_seconds(self) -> float:
        return self.stream.frame_samples / VAD_RATE

    @property
    def buffered(self) -> int:
        """16 kHz samples held back until they make a whole frame."""
        return int(self._pending.size)

    def feed(self, pcm: Int16Array) -> list[float]:
        """Score every frame completed by ``pcm`` (mono int16 at ``sample_rate``)."""
        samples = np.asarray(pcm)
        if samples.ndim != 1 or samples.dtype != np.int16:
            raise ValueError(
                f"VADFramer.feed needs mono int16 samples; got {samples.dtype} with shape "
                f"{samples.shape}"
            )
        if self._resampler is not None:
            samples = self._resampler.process(samples)
        if self._pending.size:
            samples = np.concatenate((self._pending, samples))
        size = self.stream.frame_samples
        whole = samples.size - samples.size % size
        probabilities = [
            self.stream.probability(samples[start : start + size])
            for start in range(0, whole, size)
        ]
        self._pending = samples[whole:].copy()
        self.frames += len(probabilities)
        return probabilities
