"""Helpers for the real-model tests: real recorded speech, word error rate, noise, skip rules.

The recordings come from the pocketsphinx 5.1.1 sdist (``scripts/fetch_testdata.py`` puts them
in ``var/testdata/pocketsphinx-5.1.1``; ``$HARKEN_TESTDATA_DIR`` overrides): five LibriVox
sentences, ``goforward.raw`` and five ``cards`` recordings, 11 utterances and 96 words of read
human speech, all 16 kHz mono. :func:`asterisk` adds real 8 kHz telephone speech: a fixed
selection of Debian's Asterisk English prompts (``scripts/install_asterisk_sounds.sh``).

WER follows MODELS.md: lower-case, hyphens and dashes split words, punctuation is dropped,
digits are spelled out ("10" = "ten") and Whisper's "Mr." counts as "mister" (as Whisper's own
English normaliser does).

A missing model or data directory fails the test with the fix, unless
``HARKEN_ALLOW_MISSING_MODELS=1``, in which case it is skipped (:func:`need`).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NoReturn, TypeVar

import numpy as np

from harken.errors import ModelError
from harken.protocol.audio import pcm16_from_bytes, read_wav, to_mono
from harken.providers.base import Int16Array

T = TypeVar("T")

REPO: Final = Path(__file__).resolve().parents[1]
ALLOW_MISSING: Final = "HARKEN_ALLOW_MISSING_MODELS"
DATA_ENV: Final = "HARKEN_TESTDATA_DIR"
DEFAULT_DATA: Final = REPO / "var" / "testdata" / "pocketsphinx-5.1.1"
RATE: Final = 16000
_FETCH: Final = "run `python scripts/fetch_testdata.py` (part of `make install`)"

LIBRIVOX: Final = tuple(
    f"librivox/sense_and_sensibility_01_austen_64kb-{n}"
    for n in ("0870", "0880", "0890", "0920", "0930")
)
CARDS: Final = tuple(f"cards/00{n}" for n in range(1, 6))

PHONE_RATE: Final = 8000
ASTERISK_ENV: Final = "HARKEN_ASTERISK_SOUNDS"
ASTERISK_DIR: Final = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
_INSTALL_ASTERISK: Final = "run `sh scripts/install_asterisk_sounds.sh` (part of `make test`)"
# Asterisk core sounds 1.6.1 (Debian's asterisk-core-sounds-en-wav, Allison Smith's voice, 8 kHz
# mono 16-bit): 12 whole sentences of 2.6-5.4 s (46.8 s, 137 words), with the transcripts of the
# package's own core-sounds-en.txt (in asterisk-core-sounds-en's /usr/share/doc).
ASTERISK: Final = {
    "privacy-prompt": "Please enter your phone number, starting with the area code.",
    "queue-youarenext": "Your call is now first in line and will be answered by the next "
    "available representative.",
    "cannot-complete-as-dialed": "Your call cannot be completed as dialed.",
    "followme/sorry": "I'm sorry, but I was unable to locate the person you are calling",
    "privacy-unident": "The party you are trying to reach does not accept unidentified calls.",
    "ss-noservice": "The number you have dialed is not in service. Please check the number and "
    "try again.",
    "tt-weasels": "Weasels have eaten our phone system",
    "vm-nobodyavail": "Nobody is available to take your call at the moment",
    "vm-rec-name": "After the tone say your name and then press the pound key.",
    "conf-waitforleader": "The conference will begin when the leader arrives.",
    "priv-introsaved": "Thank you. Please hold, while I attempt to connect you with your party!",
    "pbx-invalidpark": "I am sorry, there is no call parked on that extension. Please try again.",
}


class MissingTestData(Exception):
    """The recordings are not where the tests look for them."""


@dataclass(frozen=True, slots=True)
class Utterance:
    name: str
    samples: Int16Array  # mono int16 at ``rate``
    text: str  # the reference transcript
    rate: int = RATE  # 16 kHz, but 8 kHz for the telephone speech of asterisk()

    @property
    def seconds(self) -> float:
        return self.samples.size / self.rate


# ----------------------------------------------------------------------------- fail or skip


def missing(message: str) -> NoReturn:
    """Fail with ``message``; skip instead when ``HARKEN_ALLOW_MISSING_MODELS=1``."""
    import pytest

    if os.environ.get(ALLOW_MISSING) == "1":
        pytest.skip(message)
    pytest.fail(f"{message}\n(set {ALLOW_MISSING}=1 to skip instead)", pytrace=False)


def need(load: Callable[..., T], *args: object) -> T:
    """``load(*args)``, turning a missing model or missing test data into :func:`missing`."""
    try:
        return load(*args)
    except (ModelError, MissingTestData) as exc:
        problem = str(exc)
    missing(problem)  # outside the except block: no chained traceback in the report


def model_root() -> Path:
    """The model cache the tests use: ``$HARKEN_MODEL_DIR`` or ``<repo>/models``."""
    env = os.environ.get("HARKEN_MODEL_DIR")
    return Path(env) if env else REPO / "models"


# ----------------------------------------------------------------------------- recordings


def data_dir() -> Path:
    env = os.environ.get(DATA_ENV)
    path = Path(env) if env else DEFAULT_DATA
    if not (path / "goforward.raw").is_file():
        raise MissingTestData(f"the real speech recordings are missing from {path}; {_FETCH}")
    return path


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise MissingTestData(f"{path} is missing; {_FETCH}") from None


def _wav16k(path: Path) -> Int16Array:
    audio = read_wav(_read(path))
    if audio.sample_rate != RATE:
        raise MissingTestData(f"{path} is {audio.sample_rate} Hz, not {RATE}; {_FETCH}")
    return to_mono(audio.samples)


def librivox() -> list[Utterance]:
    """The five LibriVox sentences (Sense and Sensibility, 3-7 s each)."""
    root = data_dir()
    return [
        Utterance(
            name.split("-")[-1],
            _wav16k(root / f"{name}.wav"),
            _read(root / f"{name}.txt").decode().strip(),
        )
        for name in LIBRIVOX
    ]


def goforward() -> Utterance:
    """ "go forward ten meters" (raw 16 kHz s16le)."""
    samples = pcm16_from_bytes(_read(data_dir() / "goforward.raw"))
    return Utterance("goforward", samples, "go forward ten meters")


def cards() -> list[Utterance]:
    """Five recordings of playing cards read out (1-3.5 s each)."""
    root = data_dir()
    lines = _read(root / "cards" / "cards.transcription").decode().splitlines()
    texts: dict[str, str] = {}
    for line in lines:
        match = re.fullmatch(r"\s*(?:<s>)?(.*?)(?:</s>)?\s*\((\w+)\)\s*", line)
        if match:
            texts[match.group(2)] = match.group(1).strip()
    out = []
    for name in CARDS:
        key = name.split("/")[-1]
        if key not in texts:
            raise MissingTestData(f"no transcript for {key} in cards.transcription; {_FETCH}")
        out.append(Utterance(name.replace("/", "-"), _wav16k(root / f"{name}.wav"), texts[key]))
    return out


def utterances() -> list[Utterance]:
    """All 11 real utterances: LibriVox, goforward, cards."""
    return [*librivox(), goforward(), *cards()]


def asterisk(names: Sequence[str] = tuple(ASTERISK)) -> list[Utterance]:
    """Real 8 kHz telephone speech: the :data:`ASTERISK` prompts named (all 12 by default),
    from :data:`ASTERISK_DIR` (``$HARKEN_ASTERISK_SOUNDS`` overrides)."""
    env = os.environ.get(ASTERISK_ENV)
    root = Path(env) if env else ASTERISK_DIR
    out = []
    for name in names:
        path = root / f"{name}.wav"
        if not path.is_file():
            raise MissingTestData(f"the Asterisk prompt {path} is missing; {_INSTALL_ASTERISK}")
        audio = read_wav(path.read_bytes())
        if audio.sample_rate != PHONE_RATE or audio.channels != 1:
            raise MissingTestData(f"{path} is not 8 kHz mono; {_INSTALL_ASTERISK}")
        out.append(Utterance(name.replace("/", "-"), audio.samples, ASTERISK[name], PHONE_RATE))
    return out


# ----------------------------------------------------------------------------- synthetic audio


def noise(seconds: float, dbfs: float = -50.0, seed: int = 0) -> Int16Array:
    """White Gaussian noise at an RMS level of ``dbfs`` (relative to full scale, 1.0)."""
    rng = np.random.default_rng(seed)
    level = 10 ** (dbfs / 20) * 32768
    samples = rng.standard_normal(int(seconds * RATE)) * level
    return np.asarray(np.clip(np.rint(samples), -32768, 32767), dtype=np.int16)


def level_dbfs(samples: Int16Array) -> float:
    """RMS level relative to full scale (1.0 = 32768)."""
    rms = float(np.sqrt(np.mean((samples.astype(np.float64) / 32768) ** 2)))
    return 20 * math.log10(max(rms, 1e-12))


# ----------------------------------------------------------------------------- WER

_ONES: Final = (
    *("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"),
    *("eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen"),
    *("eighteen", "nineteen"),
)
_TENS: Final = (
    *("", "", "twenty", "thirty", "forty"),
    *("fifty", "sixty", "seventy", "eighty", "ninety"),
)
_ABBREVIATIONS: Final = {"mr": "mister", "mrs": "missus", "ms": "miss", "dr": "doctor"}


def number_words(n: int) -> str:
    """``n`` spelled out in English words (0 to 999,999,999)."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    for size, name in ((10**6, "million"), (1000, "thousand"), (100, "hundred")):
        if n >= size:
            rest = n % size
            head = f"{number_words(n // size)} {name}"
            return head if rest == 0 else f"{head} {number_words(rest)}"
    raise AssertionError("unreachable")  # pragma: no cover


def normalise(text: str) -> list[str]:
    """The words of ``text`` as WER compares them."""
    text = text.lower()
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)  # 1,000 → 1000
    text = re.sub(r"\d+", lambda m: f" {number_words(int(m.group()))} ", text)
    text = re.sub(r"[-\u2010-\u2015]", " ", text)  # hyphens and dashes split words
    text = re.sub(r"[^a-z' ]+", " ", text).replace("'", "")
    return [_ABBREVIATIONS.get(word, word) for word in text.split()]


def word_errors(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Substitutions + deletions + insertions (Levenshtein distance over words)."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        current = [i]
        for j, hyp in enumerate(hypothesis, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp)))
        previous = current
    return previous[-1]


def wer(reference: str, hypothesis: str) -> float:
    ref = normalise(reference)
    return word_errors(ref, normalise(hypothesis)) / max(len(ref), 1)


def corpus_wer(pairs: Sequence[tuple[str, str]]) -> tuple[int, int]:
    """``(word errors, reference words)`` summed over ``(reference, hypothesis)`` pairs."""
    errors = words = 0
    for reference, hypothesis in pairs:
        ref = normalise(reference)
        errors += word_errors(ref, normalise(hypothesis))
        words += len(ref)
    return errors, words
