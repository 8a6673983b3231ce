"""espeak-ng text-to-speech through ctypes: the instant, robotic fallback voice.

The library is the ``libespeak-ng.so`` (1.52) shipped by ``espeakng-loader``; the data is the
``espeak-ng`` model directory (``verify("espeak-ng")`` returns its ``espeak-ng-data``). espeak-ng
keeps its state in globals and is not thread-safe, so the process has one :class:`_Engine`,
initialised once in ``AUDIO_OUTPUT_SYNCHRONOUS`` mode with a synth callback that collects the
samples in memory, and every call goes through its lock. Voice and rate are set before a call
only when they differ from the last call's, so several :class:`EspeakTTS` (different voices or
rates) can share it. Synthesis costs about 1 ms per sentence: each piece of up to
``max_chars`` characters (whole sentences where possible) is one lane step.
"""

from __future__ import annotations

import asyncio
import ctypes
import importlib.util
import re
import threading
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path
from typing import Final

import numpy as np

from harken.engines.lane import URGENT, ComputeLane
from harken.errors import ModelError, ProviderError
from harken.providers.base import Capabilities, Int16Array

_AUDIO_OUTPUT_SYNCHRONOUS: Final = 2
_INITIALIZE_DONT_EXIT: Final = 0x8000  # report errors instead of calling exit()
_POS_CHARACTER: Final = 1
_CHARS_UTF8: Final = 0x1
_ENDPAUSE: Final = 0x1000
_RATE: Final = 1  # espeakRATE, words per minute
_EE_OK: Final = 0
_FIX: Final = "run `make install`"
MAX_CHARS: Final = 400
"""Default cap of characters per synthesis call (one lane step of a few ms)."""

_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")


def _speakable(text: str) -> bool:
    """Text with no letter or digit in it (empty, blank, punctuation) is not spoken at all."""
    return any(ch.isalnum() for ch in text)


def default_library() -> Path:
    """The ``libespeak-ng.so`` inside the installed ``espeakng-loader`` package."""
    spec = importlib.util.find_spec("espeakng_loader")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"espeakng-loader is not installed; {_FIX}")
    return Path(next(iter(spec.submodule_search_locations))) / "libespeak-ng.so"


def _cut(sentence: str, limit: int) -> Iterator[str]:
    """Cut a sentence longer than ``limit`` after a comma (late enough) or at a space."""
    while len(sentence) > limit:
        cut = sentence.rfind(", ", limit // 3, limit)
        cut = cut + 1 if cut >= 0 else sentence.rfind(" ", 1, limit)
        if cut <= 0:
            cut = limit
        yield sentence[:cut].strip()
        sentence = sentence[cut:].strip()
    if sentence:
        yield sentence


def split_text(text: str, limit: int) -> Iterator[str]:
    """Whole sentences packed into pieces of at most ``limit`` characters (long ones cut)."""
    piece = ""
    for sentence in _SENTENCE_END.split(text.strip()):
        for part in _cut(sentence, limit):
            if piece and len(piece) + 1 + len(part) > limit:
                yield piece
                piece = part
            else:
                piece = f"{piece} {part}" if piece else part
    if piece:
        yield piece


class _Engine:
    """The process's one espeak-ng: the loaded library, its sample rate and its lock."""

    def __init__(self, library: Path, data_dir: Path) -> None:
        self.library = library
        self.data_dir = data_dir
        self.lock = threading.Lock()
        self._chunks: list[Int16Array] = []
        self._settings: tuple[str, int] | None = None
        try:
            lib = ctypes.CDLL(str(library))
        except OSError as exc:
            raise ModelError(f"cannot load {library}: {exc}; {_FIX}") from exc
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,  # text
            ctypes.c_size_t,  # size in bytes, NUL included
            ctypes.c_uint,  # position
            ctypes.c_int,  # position type
            ctypes.c_uint,  # end position
            ctypes.c_uint,  # flags
            ctypes.POINTER(ctypes.c_uint),  # unique identifier (out)
            ctypes.c_void_p,  # user data
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        self._lib = lib
        # espeak_Initialize takes the directory that *contains* espeak-ng-data
        parent = str(data_dir.parent).encode()
        rate = int(
            lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, parent, _INITIALIZE_DONT_EXIT)
        )
        if rate <= 0:
            raise ModelError(f"espeak-ng failed to initialise from {data_dir}; {_FIX}")
        self.sample_rate = rate
        self._callback = _SynthCallback(self._collect)  # keep a reference: C holds the pointer
        lib.espeak_SetSynthCallback(self._callback)

    def _collect(
        self, wav: ctypes._Pointer[ctypes.c_short], count: int, _events: int | None
    ) -> int:
        if wav and count > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).astype(np.int16))
        return 0  # 0 = go on

    def _settle(self, voice: str, rate: int) -> None:
        """Select ``voice`` and ``rate`` (call with the lock held)."""
        if self._settings == (voice, rate):
            return
        self._settings = None
        if int(self._lib.espeak_SetVoiceByName(voice.encode())) != _EE_OK:
            raise ModelError(f"espeak-ng has no voice {voice!r} in {self.data_dir}")
        self._lib.espeak_SetParameter(_RATE, rate, 0)
        self._settings = (voice, rate)

    def select(self, voice: str, rate: int) -> None:
        with self.lock:
            self._settle(voice, rate)

    def synthesize(self, text: str, voice: str, rate: int) -> Int16Array:
        """Speak ``text`` at once; return all its samples."""
        data = text.encode("utf-8", errors="replace") + b"\0"
        with self.lock:
            self._settle(voice, rate)
            self._chunks = []
            err = int(
                self._lib.espeak_Synth(
                    data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _ENDPAUSE, None, None
                )
            )
            chunks, self._chunks = self._chunks, []
        if err != _EE_OK:
            raise ProviderError(f"espeak-ng synthesis failed (error {err})", retryable=True)
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)


_ENGINE: _Engine | None = None
_ENGINE_LOCK = threading.Lock()


def _engine(library: Path, data_dir: Path) -> _Engine:
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            _ENGINE = _Engine(library, data_dir)
        elif (_ENGINE.library, _ENGINE.data_dir) != (library, data_dir):
            raise ModelError(
                f"espeak-ng is already initialised in this process from {_ENGINE.data_dir} "
                f"({_ENGINE.library}); it holds global state, so use one data directory"
            )
        return _ENGINE


class EspeakTTS:
    """espeak-ng voice: ``data_dir`` is the ``espeak-ng-data`` directory.

    Runs each call as one ``URGENT`` step on ``lane`` when given, else in a worker thread;
    either way calls are serialised by the process's one engine. Raises
    :class:`~harken.errors.ModelError` when the library, the data or the voice is missing.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        voice: str = "en-us",
        rate: int = 175,
        lane: ComputeLane | None = None,
        library: Path | None = None,
        max_chars: int = MAX_CHARS,
    ) -> None:
        if not 80 <= rate <= 450:
            raise ValueError(f"espeak-ng rate must be 80-450 words per minute, not {rate}")
        if max_chars < 16:
            raise ValueError("max_chars must be at least 16")
        data_dir = Path(data_dir).absolute()
        if not (data_dir / "phontab").is_file():
            raise ModelError(f"espeak-ng data is missing: no {data_dir / 'phontab'}; {_FIX}")
        library = Path(library).absolute() if library is not None else default_library()
        if not library.is_file():
            raise ModelError(f"espeak-ng library {library} is missing; {_FIX}")
        self._engine = _engine(library, data_dir)
        self._engine.select(voice, rate)  # fails now if the voice does not exist
        self.voice = voice
        self.rate = rate
        self.max_chars = max_chars
        self._lane = lane
        self.capabilities = Capabilities(
            streaming=True,
            sample_rate=self._engine.sample_rate,
            languages=(voice.split("-")[0],),
        )

    async def synthesize(self, text: str) -> AsyncIterator[Int16Array]:
        """Yield int16 audio at ``capabilities.sample_rate``, one chunk per piece of text."""
        for piece in split_text(text, self.max_chars):
            if not _speakable(piece):
                continue
            job = partial(self._engine.synthesize, piece, self.voice, self.rate)
            try:
                if self._lane is not None:
                    samples = await self._lane.run(job, priority=URGENT, what="tts")
                else:
                    samples = await asyncio.to_thread(job)
            except ProviderError:
                raise
            except Exception as exc:
                raise ProviderError(f"espeak-ng synthesis failed: {exc}", retryable=True) from exc
            if samples.size:
                yield samples
