"""Embedded text-to-speech providers.

* :class:`~harken.providers.tts.piper.PiperTTS`: Piper (VITS, onnxruntime) with the en_US joe
  voice (``piper-joe``), 22.05 kHz, one chunk per sentence (long sentences are cut at clause
  boundaries so no lane step lasts long).
* :class:`~harken.providers.tts.espeak.EspeakTTS`: espeak-ng (formant synthesis) through the
  ``libespeak-ng.so`` of ``espeakng-loader``, 22.05 kHz: instant and robotic, the fallback voice.

Both yield mono int16 at their native rate (``capabilities.sample_rate``); resampling, encoding
and framing are the runner's job. Importing this package is cheap: each provider module imports
its runtime (onnxruntime, piper, ctypes) only when it is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harken.providers.tts.espeak import EspeakTTS
    from harken.providers.tts.piper import PiperTTS

__all__ = ["EspeakTTS", "PiperTTS"]


def __getattr__(name: str) -> Any:
    if name == "PiperTTS":
        from harken.providers.tts.piper import PiperTTS

        return PiperTTS
    if name == "EspeakTTS":
        from harken.providers.tts.espeak import EspeakTTS

        return EspeakTTS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
