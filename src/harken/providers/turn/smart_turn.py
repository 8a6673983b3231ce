"""Smart Turn v3.2: the probability that the user has finished their turn, from its sound alone.

Smart Turn (Daily, BSD-2-Clause) is a Whisper-tiny encoder with a classifier head, trained on
turns that end and turns that pause, in 23 languages. It hears intonation, pace and
trailing-off words, not meaning. harken runs the int8 CPU build, ``smart-turn-v3.2-cpu.onnx``
(8.7 MB, from the pipecat-ai 1.14.0 wheel; see the catalog), with onnxruntime.

The preprocessing is Pipecat's own (``pipecat/audio/turn/smart_turn/local_smart_turn_v3.py``,
``_whisper_features.py`` and ``base_smart_turn.py`` in pipecat-ai 1.14.0), step by step:

1. int16 samples scaled to float32 by 1/32768;
2. the last 8 s (128 000 samples) kept, or zeros added *at the start* up to 8 s;
3. the whole 8 s window (padding included) normalised to zero mean and unit variance
   (``(x - mean) / sqrt(var + 1e-7)``, in float32), as ``WhisperFeatureExtractor`` does with
   ``do_normalize=True``;
4. Whisper's log-mel spectrogram: 80 Slaney mel bands (0-8 kHz, area-normalised), 400-point
   FFT, hop 160, periodic Hann window, centred with reflect padding, the last frame dropped
   (800 frames), ``log10`` floored at 1e-10, clamped to 8 below its maximum, then
   ``(x + 4) / 4``;
5. ``input_features`` of shape (1, 80, 800) float32 into the model, whose one output (named
   ``logits``) is already the sigmoid probability that the turn is complete.

What to feed it: the turn from a little before its first word (Pipecat keeps 500 ms) up to now,
*with the pause so far as recorded*. The room noise of the pause matters: digital silence
(zeros) in place of a mid-sentence pause pushed the model towards "complete".

**Why not faster-whisper's feature extractor.** It computes step 4 (within 5e-6 of Pipecat's
code) but not exactly enough, and not cheaply enough here. It works in float32 where Pipecat works
in float64, and the int8 model can turn such rounding into a different answer: on one of the 11
test recordings 0.15 instead of Pipecat's 0.22. And it projects onto the mel bands with a dense
matrix product, which numpy hands to OpenBLAS; OpenBLAS runs it on both cores and its threads
then spin for a while, fighting onnxruntime's threads for the two cores: features and model
cost 112 ms of CPU instead of 50 ms (1 onnxruntime thread, quiet machine), and on a busy machine
a call took 124 ms instead of 57 ms. :func:`log_mel` works in float64 with the filters kept
sparse (391 weights instead of 80 x 201), no BLAS: its output equals Pipecat's bit for bit on the
11 test recordings (tests/test_turn_features.py pins it), in 6-7 ms.

A call is one ``URGENT`` compute-lane step (the features and the model; BENCHMARKS.md has the
times): at a pause it competes with transcription, not behind an LLM reply. The onnxruntime
session uses ``threads`` intra-op threads, one inter-op thread and no spin-waiting, like the other
models, and is shared by every provider of the process.

onnxruntime is imported lazily and reached through a small typed Protocol.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any, Final, Protocol, cast

import numpy as np
import numpy.typing as npt

from harken.engines.lane import URGENT, ComputeLane
from harken.errors import ModelError, ProviderError
from harken.protocol.audio import int16_to_float32
from harken.providers.base import Capabilities, Int16Array

Float32Array = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.intp]

SAMPLE_RATE: Final = 16000
WINDOW_SECONDS: Final = 8
WINDOW_SAMPLES: Final = WINDOW_SECONDS * SAMPLE_RATE
"""The model hears the last 8 s of the turn; earlier audio is dropped."""
N_FFT: Final = 400
HOP: Final = 160
MEL_BANDS: Final = 80
FRAMES: Final = WINDOW_SAMPLES // HOP
"""800 frames of 10 ms (Whisper computes 801 and drops the last)."""
INPUT_NAME: Final = "input_features"
NORMALISE_EPS: Final = 1e-7
"""``WhisperFeatureExtractor.zero_mean_unit_var_norm``'s epsilon."""
LANGUAGES: Final = (
    "ar", "bn", "zh", "da", "nl", "de", "en", "fi", "fr", "hi", "id", "it", "ja", "ko", "mr",
    "no", "pl", "pt", "ru", "es", "tr", "uk", "vi",
)  # fmt: skip
"""The 23 languages Smart Turn v3 was trained on (its model card)."""
_FIX: Final = "run `make install`"

_LOCK: Final = threading.Lock()
_SESSIONS: dict[tuple[str, int], _Session] = {}


class _Session(Protocol):
    """The part of ``onnxruntime.InferenceSession`` harken uses."""

    def run(self, output_names: list[str] | None, input_feed: dict[str, Any]) -> list[Any]: ...

    def get_inputs(self) -> list[Any]: ...


def _slaney_mel(hz: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Hz to Slaney's mel scale: linear below 1 kHz (15 mel there), logarithmic above."""
    log = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) * 27.0 / np.log(6.4)
    return np.where(hz >= 1000.0, log, 3.0 * hz / 200.0)


def _slaney_hz(mel: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.where(mel >= 15.0, 1000.0 * np.exp((mel - 15.0) * np.log(6.4) / 27.0), 200 * mel / 3)


def _mel_filters() -> tuple[IntArray, npt.NDArray[np.float64], IntArray]:
    """Whisper's 80 triangular, area-normalised mel filters over the 201 FFT bins, 0-8 kHz,
    kept sparse: every band's bins (each band covers 1-14 neighbouring bins), their weights, and
    where each band starts in those two arrays."""
    edges = _slaney_hz(np.linspace(0.0, float(_slaney_mel(np.array(8000.0))), MEL_BANDS + 2))
    bins = np.linspace(0.0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    rising = (bins - edges[:-2, None]) / (edges[1:-1] - edges[:-2])[:, None]
    falling = (edges[2:, None] - bins) / (edges[2:] - edges[1:-1])[:, None]
    area = 2.0 / (edges[2:] - edges[:-2])
    dense = np.maximum(0.0, np.minimum(rising, falling)) * area[:, None]  # (80, 201)
    columns = [np.flatnonzero(band) for band in dense]
    starts = np.cumsum([0] + [c.size for c in columns[:-1]])
    weights = np.concatenate([band[c] for band, c in zip(dense, columns, strict=True)])
    return np.concatenate(columns), weights, starts


_BINS, _WEIGHTS, _STARTS = _mel_filters()
_HANN: Final = np.hanning(N_FFT + 1)[:-1]
"""The periodic Hann window (``torch.hann_window``)."""


def window(pcm16k: Int16Array) -> Float32Array:
    """Steps 1-2: the last 8 s as float32, zero-padded at the start to exactly 8 s."""
    audio = int16_to_float32(np.asarray(pcm16k[-WINDOW_SAMPLES:]))
    if audio.size < WINDOW_SAMPLES:
        audio = np.concatenate((np.zeros(WINDOW_SAMPLES - audio.size, np.float32), audio))
    return audio


def normalise(audio: Float32Array) -> Float32Array:
    """Step 3: zero mean, unit variance over the whole window (in float32)."""
    centred = audio - audio.mean(dtype=np.float32)
    scale = np.sqrt(audio.var(dtype=np.float32) + np.float32(NORMALISE_EPS))
    return np.asarray(centred / scale, dtype=np.float32)


def log_mel(audio: Float32Array) -> Float32Array:
    """Step 4: Whisper's log-mel spectrogram of 8 s of audio, shape (80, 800), without BLAS.

    In float64 like Pipecat's code: the model is int8, and float32 rounding (faster-whisper's
    extractor) moved one of the 11 test recordings from 0.22 to 0.15."""
    padded = np.pad(audio.astype(np.float64), N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:FRAMES]
    spectrum = np.fft.rfft(frames * _HANN, axis=-1)
    power = np.square(spectrum.real)
    power += np.square(spectrum.imag)  # (800 frames, 201 bins)
    weighted = power[:, _BINS]
    weighted *= _WEIGHTS
    mel = np.add.reduceat(weighted, _STARTS, axis=1).T  # (80 bands, 800 frames)
    log = np.log10(np.maximum(mel, 1e-10))
    log = np.maximum(log, log.max() - 8.0)
    return np.asarray((log + 4.0) / 4.0, dtype=np.float32)


def features(pcm16k: Int16Array) -> Float32Array:
    """Steps 1-4: the model's input for ``pcm16k``, shape (1, 80, 800), float32."""
    return log_mel(normalise(window(pcm16k)))[np.newaxis]


def load_session(path: Path | str, threads: int = 2) -> _Session:
    """The process's one onnxruntime session for the model at ``path`` on ``threads`` threads.

    Raises :class:`ModelError` if the file is missing, onnxruntime is, or the model is not a
    Smart Turn v3 model (one input ``input_features`` of shape (batch, 80, 800)).
    """
    model = Path(path).absolute()
    if not model.is_file():
        raise ModelError(f"Smart Turn model {model} is missing; {_FIX}")
    key = (str(model), threads)
    with _LOCK:
        session = _SESSIONS.get(key)
        if session is None:
            session = _open(model, threads)
            _SESSIONS[key] = session
        return session


def _open(model: Path, threads: int) -> _Session:
    try:
        import onnxruntime
    except ImportError as exc:
        raise ModelError(f"onnxruntime is not installed; {_FIX}") from exc
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    fix = f"delete {model.parent} and {_FIX}"
    try:
        session = cast(
            _Session,
            onnxruntime.InferenceSession(
                str(model), sess_options=options, providers=["CPUExecutionProvider"]
            ),
        )
        inputs = [(i.name, list(i.shape)[1:]) for i in session.get_inputs()]
    except Exception as exc:  # onnxruntime raises its own (pybind) exception types
        raise ModelError(f"cannot load the Smart Turn model {model}: {exc}; {fix}") from exc
    if inputs != [(INPUT_NAME, [MEL_BANDS, FRAMES])]:
        raise ModelError(f"{model} is not a Smart Turn v3 model (its inputs: {inputs}); {fix}")
    return session


class SmartTurn:
    """:class:`~harken.providers.base.TurnDetector` over Smart Turn v3.2 on onnxruntime.

    ``await probability(pcm16k)``: the probability that the turn in ``pcm16k`` (mono int16 at
    16 kHz, the pause so far included) is complete; only its last 8 s count.
    """

    window_samples: int = WINDOW_SAMPLES

    def __init__(self, model_path: Path | str, lane: ComputeLane, *, threads: int = 2) -> None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1; got {threads}")
        self.model_path = Path(model_path)
        self._lane = lane
        self._session = load_session(model_path, threads)
        self.capabilities = Capabilities(sample_rate=SAMPLE_RATE, languages=LANGUAGES)
        try:  # warm-up, and proof that the model runs
            self._run(np.zeros(SAMPLE_RATE, dtype=np.int16))
        except ProviderError as exc:
            raise ModelError(f"the Smart Turn model {model_path} does not run: {exc}") from exc

    @classmethod
    def load(
        cls, model_id: str, lane: ComputeLane, root: Path | str | None = None, *, threads: int = 2
    ) -> SmartTurn:
        """Verify ``model_id`` (e.g. ``"smart-turn-v3.2"``) in the model cache and load it."""
        from harken.engines.assemble import verify

        return cls(verify(model_id, root), lane, threads=threads)

    async def probability(self, pcm16k: Int16Array) -> float:
        """The probability (0-1) that the turn is complete; one ``URGENT`` lane step.

        Raises :class:`ProviderError` for input that is not non-empty mono int16, or if the
        model fails (``retryable``: the caller may fall back to silence alone).
        """
        samples = np.asarray(pcm16k)
        if samples.ndim != 1 or samples.dtype != np.int16:
            raise ProviderError(
                f"SmartTurn needs mono int16 samples at 16 kHz; got {samples.dtype} with "
                f"shape {samples.shape}"
            )
        if samples.size == 0:
            raise ProviderError("SmartTurn needs some audio; got no samples")
        recent = samples[-WINDOW_SAMPLES:].copy()  # the caller may reuse its buffer meanwhile
        return await self._lane.run(lambda: self._run(recent), priority=URGENT, what="turn")

    def _run(self, samples: Int16Array) -> float:
        """Features and model, on the lane thread."""
        try:
            outputs = self._session.run(None, {INPUT_NAME: features(samples)})
            value = float(np.asarray(outputs[0], dtype=np.float64).reshape(-1)[0])
        except ProviderError:
            raise
        except Exception as exc:  # onnxruntime's own exception types, numpy errors
            raise ProviderError(f"Smart Turn failed: {exc}", retryable=True) from exc
        if not math.isfinite(value) or not 0.0 <= value <= 1.0:
            raise ProviderError(f"Smart Turn returned {value}, not a probability", retryable=True)
        return value
