"""Speech-to-text providers."""

from __future__ import annotations

from harken.providers.stt.whisper import WhisperSTT

__all__ = ["WhisperSTT"]
