"""Piper text-to-speech (VITS on onnxruntime) with the en_US joe voice, streamed per sentence.

One :class:`PiperVoice` per model file per process, shared by every :class:`PiperTTS` and every
session. ``PiperVoice.load`` builds its onnxruntime session with default options (as many
intra-op threads as cores, spinning worker threads), so the session is built here instead:
``intra_op_num_threads=threads`` (2), ``inter_op_num_threads=1``, and no spin-waiting
(``session.intra_op.allow_spinning=0``) so the pool does not burn the cores the next lane step
needs. Everything else is Piper's own code: its phonemizer (its bundled espeak-ng and data, part
of its runtime), its phoneme-id map and the voice's inference settings.

Streaming: :meth:`PiperTTS.synthesize` phonemizes the text, then synthesises one sentence per
:class:`~harken.engines.lane.ComputeLane` step (``URGENT``) and yields it, so other sessions'
steps run between sentences. A sentence longer than ``max_phonemes`` phoneme symbols (about
8 s of speech, ~0.3 s of compute) is cut at its last clause boundary (``, ; :``) that fits,
else at a word boundary, so one step never holds the lane for seconds. Each chunk is
peak-normalised like Piper does per sentence, to ``PEAK`` (a little headroom for resampling).
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np

from harken.engines.lane import URGENT, ComputeLane
from harken.errors import ModelError, ProviderError
from harken.protocol.audio import float32_to_int16
from harken.providers.base import Capabilities, Int16Array

if TYPE_CHECKING:
    from piper.voice import PiperVoice

PEAK: Final = 0.9
"""Peak level of each synthesised chunk (Piper normalises to 1.0; keep headroom)."""
MAX_TEXT: Final = 400
"""Characters phonemized per lane step at most (espeak-ng: ~1 ms each on this machine)."""
MAX_PHONEMES: Final = 160
"""Default cap of phoneme symbols per lane step (Piper's NFD codepoints, stress marks included)."""
_FIX: Final = "run `make install`"
_CLAUSE: Final = frozenset(",;:")
_NOT_SOUNDS: Final = frozenset(" ,;:.!?¡¿\u2014\u2013-\u2026\"'()ˈˌːˑ")

_VOICES: dict[tuple[Path, int], PiperVoice] = {}
_VOICES_LOCK = threading.Lock()


def _speakable(text: str) -> bool:
    """Text with no letter or digit in it (empty, blank, punctuation) is not spoken at all."""
    return any(ch.isalnum() for ch in text)


def _voiced(phonemes: Sequence[str]) -> bool:
    return any(p not in _NOT_SOUNDS and not p.isspace() for p in phonemes)


def _onnx_file(model: Path) -> Path:
    """The voice's .onnx: ``model`` itself, or the only ``*.onnx`` in directory ``model``."""
    if model.is_dir():
        found = sorted(model.glob("*.onnx"))
        if len(found) != 1:
            what = "no" if not found else f"{len(found)}"
            raise ModelError(f"{what} Piper voice (.onnx) in {model}; {_FIX}")
        return found[0]
    if not model.is_file():
        raise ModelError(f"Piper voice {model} is missing; {_FIX}")
    return model


def _load_voice(onnx: Path, threads: int) -> PiperVoice:
    """Load the voice with our onnxruntime session options and run it once (warm-up)."""
    try:
        import onnxruntime
        from piper.config import PiperConfig
        from piper.voice import PiperVoice
    except ImportError as exc:
        raise ModelError(f"Piper is not installed ({exc}); {_FIX}") from exc
    config_file = onnx.with_name(onnx.name + ".json")
    fix = f"delete {onnx.parent} and {_FIX}"
    try:
        config = PiperConfig.from_dict(json.loads(config_file.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"cannot read Piper voice config {config_file}: {exc}; {fix}") from exc
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = onnxruntime.InferenceSession(
            str(onnx), sess_options=options, providers=["CPUExecutionProvider"]
        )
        voice = PiperVoice(session=session, config=config)
        _render(voice, _phonemes(voice, "Hello.")[0])  # loads the phonemizer, warms the graph
    except Exception as exc:  # onnxruntime raises its own (pybind) exception types
        raise ModelError(f"cannot load Piper voice {onnx}: {exc}; {fix}") from exc
    return voice


def _phonemes(voice: PiperVoice, text: str) -> list[list[str]]:
    """Phoneme symbols per sentence (Piper's espeak-ng phonemizer)."""
    sentences: list[list[str]] = voice.phonemize(text)
    return sentences


def _render(voice: PiperVoice, phonemes: Sequence[str]) -> Int16Array:
    """One model run: phoneme symbols to peak-normalised int16 at the voice's rate."""
    result = voice.phoneme_ids_to_audio(voice.phonemes_to_ids(list(phonemes)))
    audio = np.asarray(result[0] if isinstance(result, tuple) else result, dtype=np.float32)
    audio = audio.reshape(-1)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak < 1e-8:
        return np.zeros(audio.size, dtype=np.int16)
    return float32_to_int16(audio * np.float32(PEAK / peak))


def split_phonemes(phonemes: Sequence[str], limit: int) -> Iterator[list[str]]:
    """Cut one sentence's phonemes into pieces of at most ``limit`` symbols.

    Cuts after the last clause mark (``, ; :``) in the window if it is not in the window's
    first third, else at the last word boundary, else exactly at ``limit``.
    """
    rest = list(phonemes)
    while len(rest) > limit:
        window = rest[:limit]
        cut = next((i + 1 for i in range(limit - 1, limit // 3 - 1, -1) if window[i] in _CLAUSE), 0)
        if not cut:
            cut = next((i for i in range(limit - 1, 0, -1) if window[i] == " "), limit)
        yield rest[:cut]
        rest = rest[cut:]
        while rest and rest[0] == " ":
            rest = rest[1:]
    if rest:
        yield rest


def split_text(text: str, limit: int) -> Iterator[str]:
    """``text`` in stretches of at most ``limit`` characters, cut after the last sentence end
    (``. ! ?`` or a line break followed by a space) that fits, else the last space, else at
    ``limit``: linear in the text."""
    start = 0
    while len(text) - start > limit:
        window = text[start : start + limit]
        ends = [window.rfind(f"{mark} ") for mark in ".!?\n"]
        cut = max(ends) + 1
        if cut <= 0:
            cut = window.rfind(" ") + 1 or limit
        yield window[:cut]
        start += cut
    if start < len(text):
        yield text[start:]


class PiperTTS:
    """Piper voice (``piper-joe``), one sentence (or clause group) per lane step.

    ``model`` is the voice's ``.onnx`` file (what ``verify("piper-joe")`` returns) or the
    directory holding it; the ``.onnx.json`` config sits next to it. Raises
    :class:`~harken.errors.ModelError` when the voice is missing, corrupt or does not run.
    """

    def __init__(
        self,
        model: Path,
        lane: ComputeLane,
        *,
        threads: int = 2,
        max_phonemes: int = MAX_PHONEMES,
    ) -> None:
        if max_phonemes < 8:
            raise ValueError("max_phonemes must be at least 8")
        onnx = _onnx_file(Path(model)).resolve()
        with _VOICES_LOCK:
            voice = _VOICES.get((onnx, threads))
            if voice is None:
                voice = _VOICES[(onnx, threads)] = _load_voice(onnx, threads)
        self._voice = voice
        self._lane = lane
        self.max_phonemes = max_phonemes
        self.path = onnx
        language = voice.config.espeak_voice.split("-")[0] or "en"
        self.capabilities = Capabilities(
            streaming=True, sample_rate=voice.config.sample_rate, languages=(language,)
        )

    async def synthesize(self, text: str) -> AsyncIterator[Int16Array]:
        """Yield int16 audio at ``capabilities.sample_rate``, one chunk per sentence."""
        if not _speakable(text):
            return
        stream = self._lane.stream(lambda: self._chunks(text), priority=URGENT, what="tts")
        try:
            while True:
                try:
                    chunk = await anext(stream)
                except StopAsyncIteration:
                    return
                except ProviderError:
                    raise
                except Exception as exc:
                    raise ProviderError(f"Piper synthesis failed: {exc}", retryable=True) from exc
                yield chunk
        finally:
            if isinstance(stream, AsyncGenerator):
                await stream.aclose()

    def _chunks(self, text: str) -> Iterator[Int16Array]:
        """Runs on the lane: each ``next()`` is one step, which phonemizes the next stretch of
        text when it needs one (never the whole text at once: a long injection would hold
        the lane for seconds)."""
        # Piper reads "[[ ... ]]" as raw phonemes: speak whatever the text says instead
        for stretch in split_text(text.replace("[[", "[ ["), MAX_TEXT):
            for sentence in _phonemes(self._voice, stretch):
                for piece in split_phonemes(sentence, self.max_phonemes):
                    if _voiced(piece):
                        yield _render(self._voice, piece)
