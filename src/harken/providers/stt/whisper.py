"""Batch speech-to-text with faster-whisper (CTranslate2), run on the process's compute lane.

One loaded ``WhisperModel`` per model directory and settings is shared by every provider and
session of the process (a weak cache, so it is freed when no provider holds it). A turn of up to
``PIECE_S`` seconds is two ``URGENT`` lane steps queued together, the encoder's and the
decoder's (so other sessions' steps run between them, but not a step of the session's own reply);
a longer one is cut at its quietest moments (:func:`pieces`) into pieces of at most ``PIECE_S``,
two steps each. On two cores whisper-base takes ≈ 0.85 s for 30 s of read speech in one step.
In 8 s pieces, on three 31-39 s turns of the test recordings,
the longest encoder step was 0.14 s and the longest decoder step 0.29 s, with 2.7 %, 4.2 % and
2.1 % word errors (10 s pieces: 1.3 %, 3.1 %, 2.1 %, but decoder steps up to 0.35 s; 6-7 s: up to
8 %, as shorter pieces cut more words; the text of the pieces before as Whisper's prompt made it
loop: 5-28 %). The decoder cannot be cut finer: CTranslate2 decodes a forced prefix token by
token, as slowly as it generates, so continuing a decoding from its first tokens costs them again.
A decoding again over the full window (below) is two steps of its own too; its encoder step is
the one long step left (≈ 0.6 s with base), and it is rare.

**Fitted encoder window.** faster-whisper pads every input to Whisper's 30 s window, so the
encoder, most of the cost, does the same work for a 3 s turn as for a 30 s one (0.6 s with base
on two cores). CTranslate2 encodes shorter inputs as well, so harken cuts the padded features to
the speech plus ``FIT_MARGIN_S`` of padding: base then takes 0.14 s instead of 0.65 s for a 3-7
s turn. On the 11 real recordings of the tests the word errors were 5/96 with a 1 s margin, 4/96
with 2 s or 3 s, 3/96 with 5 s and 4/96 over the full window. Larger margins are not steadier:
on "Go forward 10 meters." cut at 50 different sample offsets, as the server's 32 ms frames cut
it, 8 s and 10 s margins lost "Go forward" 14-15 times; 3 s never did (and a 3 s margin read
robotic espeak-ng speech with digital silence at both ends best of all).

By default only multilingual models get the fitted window: English-only tiny.en made more errors
in it (8/96 against 5/96 over the full window). A short window can send the decoder into a
repetition loop (tiny.en did on two of the eleven recordings, "Go forward 10 meters. Go forward
10 meters. ...") or make it skip words; so the number of new tokens is bounded by the length of
the audio, and a transcript that loops (:func:`loops`) or has a segment Whisper itself would
distrust (:func:`unsure`) is decoded again over the full 30 s window, the way Whisper falls back
to a higher temperature. On the offsets above that happened 6 times in 50; on the real
recordings, never.

Decoding is deterministic and bounded: temperature 0 only (no fallback loop), beam 1 by default,
no conditioning on previous text and no built-in VAD filter (harken's own VAD has already cut
the turn). Timestamp tokens are decoded (Whisper's own mode): they cost nothing measurable and
on the 11 real recordings of the tests they cut tiny.en's word errors from 8/96 to 5/96 (base:
4/96 either way).

Whisper invents text on silence and noise ("you", "Thank you.", "I'm sorry.");
:func:`keep_segment` drops such segments, so silence and noise give ``""``.

faster-whisper is untyped; it is imported lazily and reached through the small typed Protocols
below, so importing this module costs nothing and needs no mypy override.
"""

from __future__ import annotations

import importlib
import re
import threading
import weakref
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Final, Protocol, cast

import numpy as np
import numpy.typing as npt

from harken.engines.lane import URGENT, ComputeLane
from harken.errors import ModelError, ProviderError
from harken.protocol.audio import int16_to_float32
from harken.providers.base import Capabilities, Int16Array

SAMPLE_RATE: Final = 16000
MIN_SAMPLES: Final = SAMPLE_RATE // 10
"""Input shorter than 100 ms is returned as ``""`` without running the model."""

NO_SPEECH_PROB: Final = 0.6
"""A segment whose no-speech probability exceeds this ...

On the real recordings every segment had P(no speech) <= 0.24 (base) / 0.56 (tiny.en, the
quiet "five five" of the cards set); on silence and noise from -60 to -20 dBFS, hum, a tone and
clicks every hallucinated segment had 0.67-0.97.
"""
NO_SPEECH_LOGPROB: Final = -0.8
"""... and whose mean token log-probability is below this is dropped as a hallucination.

Real speech: >= -0.72 (worst: tiny.en on "five five"); hallucinations: -1.01 to -1.82.
Whisper's own rule is 0.6 / -1.0, which a 5 s silence only just met (-1.01) with base.
"""
MAX_COMPRESSION_RATIO: Final = 2.4
"""A segment that compresses better than this (gzip) is a repetition loop: dropped. Whisper
normally retries such a segment at a higher temperature; harken decodes once."""

FULL_WINDOW_FRAMES: Final = 3000
"""Whisper's window: 30 s of 10 ms feature frames."""
FIT_MARGIN_S: Final = 3.0
"""Padding kept after the speech in a fitted window (seconds; rounded up to whole seconds)."""
PIECE_S: Final = 8.0
"""The longest audio transcribed in one encoder step and one decoder step; a longer turn is cut
into pieces (see the module's docstring for why 8 s)."""
QUIET_S: Final = 0.2
"""A cut goes in the middle of the quietest stretch this long (a pause between words)."""
TOKENS_PER_SECOND: Final = 15
"""At most this many new tokens per second of audio (+ ``TOKENS_SLACK``): fast English is ~8
tokens/s including timestamps; a loop runs to the bound and is then caught as a loop."""
TOKENS_SLACK: Final = 24
MAX_NEW_TOKENS: Final = 400
"""faster-whisper refuses more than Whisper's 448 positions, prompt included."""

UNSURE_LOGPROB: Final = -1.0

_LOAD_LOCK: Final = threading.Lock()
_LOADED: Final[weakref.WeakValueDictionary[tuple[str, str, int], Any]] = (
    weakref.WeakValueDictionary()
)


class Segment(Protocol):
    """The fields harken reads from a ``faster_whisper.transcribe.Segment``."""

    @property
    def text(self) -> str: ...

    @property
    def no_speech_prob(self) -> float: ...

    @property
    def avg_logprob(self) -> float: ...

    @property
    def compression_ratio(self) -> float: ...


class _WhisperModel(Protocol):
    """The part of ``faster_whisper.WhisperModel`` harken uses (``encode`` is an
    :class:`_Encoder` once :func:`load_model` has loaded it)."""

    @property
    def supported_languages(self) -> list[str]: ...

    @property
    def model(self) -> Any: ...  # the CTranslate2 model (for language detection)

    def feature_extractor(self, audio: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]: ...

    def encode(self, features: npt.NDArray[np.float32]) -> Any: ...

    def transcribe(
        self, audio: npt.NDArray[np.float32], **options: Any
    ) -> tuple[Iterable[Segment], Any]: ...


def loops(segments: Sequence[Segment]) -> bool:
    """True if the transcript repeats itself: one segment that compresses too well, all of them
    together (with timestamps a loop comes out as many short segments), or a phrase of two or
    more words said twice in a row ("10 meters 10 meters")."""
    if any(segment.compression_ratio > MAX_COMPRESSION_RATIO for segment in segments):
        return True
    text = " ".join(segment.text.strip() for segment in segments)
    data = text.encode()
    if data and len(data) / len(zlib.compress(data)) > MAX_COMPRESSION_RATIO:
        return True
    words = re.findall(r"[\w']+", text.lower())
    return any(
        words[i : i + n] == words[i + n : i + 2 * n]
        for n in range(2, len(words) // 2 + 1)
        for i in range(len(words) - 2 * n + 1)
    )


def unsure(segments: Sequence[Segment]) -> bool:
    """True if a segment was decoded with a mean token log-probability below Whisper's own
    fallback threshold (-1.0): in a fitted window that happened when the decoder skipped the
    first words ("10 meters" for "Go forward 10 meters.", -1.13)."""
    return any(segment.avg_logprob < UNSURE_LOGPROB for segment in segments)


def keep_segment(segment: Segment) -> bool:
    """False for a segment that is a hallucination on silence or noise, or a repetition loop."""
    if segment.no_speech_prob > NO_SPEECH_PROB and segment.avg_logprob < NO_SPEECH_LOGPROB:
        return False
    return segment.compression_ratio <= MAX_COMPRESSION_RATIO


def load_model(path: Path | str, *, compute_type: str = "int8", cpu_threads: int = 2) -> Any:
    """The process's one ``WhisperModel`` for ``path`` and these settings, loading it if needed.

    Raises :class:`ModelError` if faster-whisper is missing or the model cannot be loaded (a
    missing directory is reported as such; it is never taken for a Hugging Face model id).
    """
    directory = Path(path).absolute()
    if not (directory / "model.bin").is_file():
        raise ModelError(
            f"no Whisper model in {directory} (model.bin is missing); run `make install` "
            "(or `harken models`) to assemble it"
        )
    key = (str(directory), compute_type, cpu_threads)
    with _LOAD_LOCK:
        model = _LOADED.get(key)
        if model is None:
            model = _load(directory, compute_type, cpu_threads)
            _LOADED[key] = model
        return model


class _Fit(threading.local):
    """Per-thread settings of the encoder, which the lane thread sets around each call: the
    fitted window's margin in frames (``None``: the full window), and an encoder step's input
    and output, which the decoder step gets back instead of encoding the same input again."""

    margin: int | None = None
    ready: _Encoded | None = None


@dataclass(frozen=True, slots=True)
class _Encoded:
    """What an encoder step hands to the decoder step of the same piece."""

    window: npt.NDArray[np.float32]  # the encoder's input
    output: Any  # its output (a CTranslate2 StorageView)
    language: str | None  # the language to decode in (detected if none was given)


def pieces(samples: Int16Array, longest: int) -> list[Int16Array]:
    """``samples`` cut into pieces of at most ``longest`` samples (none under half of it), each
    cut in the middle of the quietest ``QUIET_S`` between half and all of ``longest``: where a
    long turn pauses, not in a word."""
    cut: list[Int16Array] = []
    rest = samples
    while rest.size > longest:
        low, high = longest // 2, longest
        if rest.size < 2 * longest:  # leave no piece under half of longest
            low, high = max(low, rest.size - longest), min(high, rest.size - longest // 2)
        at = low + _quietest(rest[low:high], round(QUIET_S * SAMPLE_RATE))
        cut.append(rest[:at])
        rest = rest[at:]
    return [*cut, rest]


def _quietest(samples: Int16Array, width: int) -> int:
    """The middle of the ``width`` samples of ``samples`` with the least energy (0 if empty)."""
    if samples.size <= width:
        return samples.size // 2
    energy = np.cumsum(np.square(samples, dtype=np.float64))
    windows = energy[width:] - energy[:-width]
    return int(np.argmin(windows)) + width // 2 + 1


def fitted(features: npt.NDArray[np.float32], margin_frames: int) -> npt.NDArray[np.float32]:
    """``features`` (mel bins x 3000 frames, zero-padded by faster-whisper) cut to the audio
    plus ``margin_frames`` of the padding, rounded up to whole seconds."""
    columns = np.flatnonzero(np.any(features != 0.0, axis=tuple(range(features.ndim - 1))))
    used = int(columns[-1]) + 1 if columns.size else 0
    keep = min(features.shape[-1], -(-(used + margin_frames) // 100) * 100)
    return features[..., :keep]


def window(features: npt.NDArray[np.float32], margin_frames: int | None) -> npt.NDArray[np.float32]:
    """The encoder's input for the features of one piece, as faster-whisper builds it (their last
    frame dropped, padded to Whisper's window by its own ``pad_or_trim``) and then fitted, if
    ``margin_frames``."""
    pad_or_trim = importlib.import_module("faster_whisper.audio").pad_or_trim
    padded: npt.NDArray[np.float32] = pad_or_trim(features[..., : features.shape[-1] - 1])
    return padded if margin_frames is None else fitted(padded, margin_frames)


class _Encoder:
    """``model.encode`` as faster-whisper calls it: the input cut to a fitted window while a
    margin is set, and an encoder step's output returned for that step's input."""

    def __init__(self, encode: Callable[[npt.NDArray[np.float32]], Any]) -> None:
        self.switch = _Fit()
        self.runs = 0  # how often the encoder ran (a decoder step that reuses counts nothing)
        self._encode = encode

    def __call__(self, features: npt.NDArray[np.float32]) -> Any:
        margin, ready = self.switch.margin, self.switch.ready
        features = features if margin is None else fitted(features, margin)
        if ready is not None and np.array_equal(ready.window, features):
            return ready.output
        return self.run(features)

    def run(self, features: npt.NDArray[np.float32]) -> Any:
        """The encoder itself, on ``features`` as they are."""
        self.runs += 1
        return self._encode(features)


def _load(directory: Path, compute_type: str, cpu_threads: int) -> Any:
    try:
        module = importlib.import_module("faster_whisper")
    except ImportError as exc:
        raise ModelError(
            "faster-whisper is not installed; run `make install` (faster-whisper==1.2.1)"
        ) from exc
    try:
        model = module.WhisperModel(
            str(directory),
            device="cpu",
            compute_type=compute_type,
            cpu_threads=cpu_threads,
            local_files_only=True,
        )
        model.encode = _Encoder(model.encode)
        return model
    except Exception as exc:  # CTranslate2 raises RuntimeError/ValueError for bad files
        raise ModelError(
            f"cannot load the Whisper model in {directory}: {exc}; delete the directory and run "
            "`make install` to assemble it again"
        ) from exc


class WhisperSTT:
    """:class:`~harken.providers.base.STT` over faster-whisper: ``await transcribe(pcm16k)``.

    ``language`` is the default for calls that pass none; ``"multi"`` (or ``None``) lets a
    multilingual model detect it. English-only models (``tiny.en``) accept only English.
    """

    def __init__(
        self,
        model_path: Path | str,
        lane: ComputeLane,
        *,
        cpu_threads: int = 2,
        compute_type: str = "int8",
        beam_size: int = 1,
        language: str | None = "en",
        fit_window: bool | None = None,
        fit_margin: float = FIT_MARGIN_S,
    ) -> None:
        if beam_size < 1:
            raise ValueError(f"beam_size must be at least 1; got {beam_size}")
        self.model_path = Path(model_path)
        self._lane = lane
        self._beam_size = beam_size
        self._fit_window, self.fit_margin = fit_window, fit_margin
        self.refits = 0  # transcriptions decoded again over the full window (loops)
        self._model = cast(
            _WhisperModel,
            load_model(model_path, compute_type=compute_type, cpu_threads=cpu_threads),
        )
        self._languages = tuple(self._model.supported_languages)
        # tiny.en in a fitted window: 8/96 word errors instead of 5/96, and loops; base: better
        self.fit_window = len(self._languages) > 1 if self._fit_window is None else self._fit_window
        self.language = self._language(language)
        self.capabilities = Capabilities(
            streaming=False, sample_rate=SAMPLE_RATE, languages=self._languages
        )

    @classmethod
    def from_catalog(
        cls, model_id: str, lane: ComputeLane, root: Path | str | None = None, **options: Any
    ) -> WhisperSTT:
        """Verify ``model_id`` (e.g. ``"whisper-base"``) in the model cache and load it."""
        from harken.engines.assemble import verify

        return cls(verify(model_id, root), lane, **options)

    async def transcribe(
        self, pcm16k: Int16Array, *, language: str | None = None, keyterms: Sequence[str] = ()
    ) -> str:
        """The text spoken in ``pcm16k`` (mono int16 at 16 kHz); ``""`` if nothing was said.

        ``keyterms`` go to Whisper as hotwords (a hint phrase ahead of the decoded text).
        """
        samples = np.asarray(pcm16k)
        if samples.ndim != 1 or samples.dtype != np.int16:
            raise ProviderError(
                f"WhisperSTT needs mono int16 samples at 16 kHz; got {samples.dtype} with "
                f"shape {samples.shape}"
            )
        lang = self.language if language is None else self._language(language)
        if samples.size < MIN_SAMPLES:
            return ""
        hint = ", ".join(t.strip() for t in keyterms if t.strip()) or None
        texts: list[str] = []
        for piece in pieces(samples, round(PIECE_S * SAMPLE_RATE)):
            audio = int16_to_float32(piece)
            segments = await self._piece(audio, lang, hint, self.fit_window)
            if self.fit_window and (loops(segments) or unsure(segments)):
                self.refits += 1  # decoded again over the full window, in steps of its own
                segments = await self._piece(audio, lang, hint, False)
            texts += [segment.text.strip() for segment in segments if keep_segment(segment)]
        return " ".join(text for text in texts if text)

    async def _piece(
        self, audio: npt.NDArray[np.float32], language: str | None, hint: str | None, fit: bool
    ) -> list[Segment]:
        """One decoding of ``audio`` in two lane steps queued together, the encoder's and then
        the decoder's; engine errors become ProviderError."""
        margin = round(self.fit_margin * 100) if fit else None
        encode = partial(self._encode, audio, language, margin)
        decode = partial(self._decode, audio, hint, margin)
        try:
            return await self._lane.chain(encode, decode, priority=URGENT, what="stt")
        except Exception as exc:
            raise ProviderError(f"Whisper transcription failed: {exc}", retryable=True) from exc

    def _encode(
        self, audio: npt.NDArray[np.float32], language: str | None, margin: int | None
    ) -> _Encoded:
        """The encoder step: the features of ``audio`` through the encoder, and the language
        detected on its output where none was given (as faster-whisper would, on one window)."""
        inputs = window(self._model.feature_extractor(audio), margin)
        output = cast(_Encoder, self._model.encode).run(inputs)
        if language is None:
            ranked = self._model.model.detect_language(output)[0]
            language = str(ranked[0][0])[2:-2]  # "<|de|>" -> "de"
        return _Encoded(inputs, output, language)

    def _decode(
        self, audio: npt.NDArray[np.float32], hint: str | None, margin: int | None, ready: _Encoded
    ) -> list[Segment]:
        """The decoder step: faster-whisper on ``audio``, its encoder call answered with the
        encoder step's output (a different input, which it never asks for here, would run the
        encoder again)."""
        switch = cast(_Encoder, self._model.encode).switch
        switch.margin, switch.ready = margin, ready
        try:
            options = self.options(audio.size / SAMPLE_RATE, ready.language, hint)
            segments, _info = self._model.transcribe(audio, **options)
            return list(segments)
        finally:
            switch.margin = switch.ready = None

    def options(self, seconds: float, language: str | None, hint: str | None) -> dict[str, Any]:
        """faster-whisper's ``transcribe`` options for ``seconds`` of audio."""
        return {
            "language": language,
            "beam_size": self._beam_size,
            "best_of": 1,
            "temperature": 0.0,
            "without_timestamps": False,
            "condition_on_previous_text": False,
            "vad_filter": False,
            "no_speech_threshold": None,  # keep_segment() decides, on every segment
            "log_prob_threshold": None,
            "max_new_tokens": self._max_new_tokens(seconds),
            "hotwords": hint,
        }

    @staticmethod
    def _max_new_tokens(seconds: float) -> int:
        return min(MAX_NEW_TOKENS, int(seconds * TOKENS_PER_SECOND) + TOKENS_SLACK)

    def _language(self, language: str | None) -> str | None:
        """A Whisper language code for ``language`` (``"en-US"`` → ``"en"``; ``"multi"`` →
        None, i.e. detect), or :class:`ProviderError` if the model does not know it."""
        if language is None or language.lower() in ("multi", "auto", ""):
            return None if len(self._languages) > 1 else self._languages[0]
        code = language.split("-")[0].split("_")[0].lower()
        if code not in self._languages:
            raise ProviderError(
                f"this Whisper model does not transcribe language {language!r}; "
                f"it knows: {', '.join(self._languages)}"
            )
        return code
