"""Speech to text behind the OpenAI ``/v1/audio/transcriptions`` API (faster-whisper servers,
vLLM, OpenAI, Groq, ...), used behind harken's own VAD and turn detection like the embedded
Whisper, speculative transcriptions included.

Each turn is sent as a multipart upload: a 16 kHz mono WAV of the turn, ``model``, ``language``
(ISO-639-1, when the session names one; ``multi`` sends none so the server detects it),
``prompt`` from ``listen.provider.keyterms`` (Whisper's way of biasing towards words) and
``response_format`` (``json`` by default; ``verbose_json`` and ``text`` are read too).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from harken.errors import ProviderError
from harken.protocol.audio import pcm16_to_bytes, wav_header
from harken.protocol.settings import Provider
from harken.providers.base import Capabilities, Int16Array
from harken.providers.remote import HTTPEndpoint, Preset

MIN_SAMPLES = 1600  # 0.1 s: less is not a turn worth a request


class OpenAISTT:
    """The :class:`~harken.providers.base.STT` for one transcriptions URL and model."""

    capabilities = Capabilities(sample_rate=16000, languages=("*",))

    def __init__(
        self,
        endpoint: HTTPEndpoint,
        preset: Preset,
        *,
        model: str = "",
        response_format: str = "",
        language: str = "",
    ) -> None:
        self.endpoint, self.model = endpoint, model
        self.response_format = response_format or preset.stt_format
        self.language = language

    def bind(self, provider: Provider) -> OpenAISTT:
        """The same server; the operator's model, else the name the client asked for."""
        model = self.model or provider.model or ""
        bound = OpenAISTT(self.endpoint, Preset(), model=model, language=self.language)
        bound.response_format = self.response_format
        return bound

    async def transcribe(
        self, pcm16k: Int16Array, *, language: str | None = None, keyterms: Sequence[str] = ()
    ) -> str:
        samples = np.asarray(pcm16k, dtype=np.int16)
        if samples.size < MIN_SAMPLES:
            return ""
        wav = wav_header(16000, data_size=samples.size * 2) + pcm16_to_bytes(samples)
        fields = {"response_format": self.response_format}
        if self.model:
            fields["model"] = self.model
        code = _iso639(language or self.language)
        if code:
            fields["language"] = code
        terms = [t.strip() for t in keyterms if t.strip()]
        if terms:
            fields["prompt"] = ", ".join(terms)
        files = {"file": ("turn.wav", wav, "audio/wav")}
        async with self.endpoint.open(files=files, data=fields) as response:
            raw = await response.aread()
        return self._text(raw)

    def _text(self, raw: bytes) -> str:
        body = raw.decode("utf-8", "replace")
        if self.response_format == "text":
            return body.strip()
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if not isinstance(payload, dict) or not isinstance(payload.get("text"), str):
            raise ProviderError(
                f"{self.endpoint.what} {self.endpoint.shown} answered without a transcript "
                f"text ({body[:80]!r})",
                retryable=True,
            )
        return " ".join(payload["text"].split())


def _iso639(language: str | None) -> str:
    """``en-US`` → ``en``; ``multi``/``auto``/none → ``""`` (the server detects it)."""
    code = (language or "").split("-")[0].split("_")[0].lower()
    return "" if code in ("", "multi", "auto") else code
