"""Per-connection limits on client frames: size, text message rate, audio byte rate.

Each check returns ``None`` (fine) or a :class:`Violation` carrying the wire error code and a
description; the pump turns a violation into ``Error{code, description}`` and a close with 1000.
Time is passed in (``now``, seconds on the loop clock), so the limits are tested without sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass

from harken.config import ServerConfig
from harken.protocol import codes

# Bytes per second of audio at the given input encoding (mono); unknown encodings get linear16.
_BYTES_PER_SAMPLE = {"linear16": 2, "linear32": 4, "mulaw": 1, "alaw": 1}
DEFAULT_INPUT_RATE = 24000  # Settings may omit audio.input (DESIGN.md §4.4)


@dataclass(frozen=True, slots=True)
class Violation:
    code: str
    description: str


class TokenBucket:
    """``rate`` tokens per second, at most ``capacity`` banked; starts full."""

    __slots__ = ("_stamp", "_tokens", "capacity", "rate")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self._tokens = capacity
        self._stamp = now

    def take(self, amount: float, now: float) -> bool:
        elapsed = now - self._stamp
        if elapsed > 0:
            self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)
            self._stamp = now
        if amount > self._tokens:
            return False
        self._tokens -= amount
        return True


def audio_bytes_per_second(encoding: str, sample_rate: int) -> float:
    return float(_BYTES_PER_SAMPLE.get(encoding, 2) * sample_rate)


class FrameLimits:
    """The limits of one connection."""

    def __init__(self, config: ServerConfig, now: float) -> None:
        self.max_frame = config.max_frame_bytes
        self._text = TokenBucket(config.text_rate, config.text_burst, now)
        self._factor = config.audio_rate_factor
        self._window = config.audio_window
        self._audio = TokenBucket(1.0, 1.0, now)
        self.set_audio_format("linear16", DEFAULT_INPUT_RATE, now)

    def set_audio_format(self, encoding: str, sample_rate: int, now: float) -> None:
        """Re-derive the audio budget from the declared input format (after Settings)."""
        rate = audio_bytes_per_second(encoding, max(sample_rate, 8000)) * self._factor
        self._audio = TokenBucket(rate, rate * self._window, now)

    def check_text(self, size: int, now: float) -> Violation | None:
        if size > self.max_frame:
            return _too_large("text", size, self.max_frame)
        if not self._text.take(1.0, now):
            return Violation(
                codes.RATE_LIMITED,
                f"Too many text messages: at most {self._text.rate:g} per second "
                f"(bursts of {self._text.capacity:g}) are allowed.",
            )
        return None

    def check_audio(self, size: int, now: float) -> Violation | None:
        if size > self.max_frame:
            return _too_large("binary", size, self.max_frame)
        if not self._audio.take(float(size), now):
            return Violation(
                codes.RATE_LIMITED,
                f"Audio is arriving faster than {self._factor:g}x real time for the declared "
                "audio.input format; stream audio at real time.",
            )
        return None


def _too_large(kind: str, size: int, limit: int) -> Violation:
    return Violation(
        codes.MESSAGE_TOO_LARGE,
        f"A {kind} message of {size} bytes is larger than the {limit}-byte limit.",
    )
