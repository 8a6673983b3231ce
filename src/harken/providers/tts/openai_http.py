"""Text to speech behind the OpenAI ``/v1/audio/speech`` API (OpenAI, Kokoro-FastAPI,
openedai-speech, ...).

One request per sentence: ``{model, voice, input, response_format}``. The audio is consumed and
forwarded as it streams in: raw ``pcm`` (16-bit little-endian mono at the preset's rate, 24 kHz
for OpenAI) or ``wav`` (its header read on the fly; another rate or stereo is converted to this
provider's declared rate, so the runner's resampling to ``audio.output`` stays one step).
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator

import numpy as np

from harken.errors import ProviderError
from harken.protocol.audio import StreamResampler, to_mono
from harken.protocol.settings import Provider
from harken.providers.base import Capabilities, Int16Array
from harken.providers.remote import HTTPEndpoint, Preset

DEFAULT_MODEL = "tts-1"
DEFAULT_VOICE = "alloy"
MAX_HEADER = 4096


class OpenAITTS:
    """The :class:`~harken.providers.base.TTS` for one speech URL, model and voice."""

    def __init__(
        self,
        endpoint: HTTPEndpoint,
        preset: Preset,
        *,
        model: str = "",
        voice: str = "",
        response_format: str = "",
        sample_rate: int = 0,
    ) -> None:
        self.endpoint, self.model, self.voice = endpoint, model, voice
        self.response_format = response_format or preset.tts_format
        self.capabilities = Capabilities(streaming=True, sample_rate=sample_rate or preset.tts_rate)

    def bind(self, provider: Provider) -> OpenAITTS:
        """The operator's model and voice, else those the client asked for."""
        voice = provider.options.get("voice")
        bound = OpenAITTS(
            self.endpoint,
            Preset(),
            model=self.model or provider.model or "",
            voice=self.voice or (voice if isinstance(voice, str) else ""),
            response_format=self.response_format,
            sample_rate=self.capabilities.sample_rate,
        )
        return bound

    def synthesize(self, text: str) -> AsyncIterator[Int16Array]:
        return self._synthesize(text)

    async def _synthesize(self, text: str) -> AsyncIterator[Int16Array]:
        body = {
            "model": self.model or DEFAULT_MODEL,
            "voice": self.voice or DEFAULT_VOICE,
            "input": text,
            "response_format": self.response_format,
        }
        wav = _WavStream(self.capabilities.sample_rate) if self.response_format == "wav" else None
        carry = b""
        async with self.endpoint.open(json_body=body) as response:
            async for chunk in response.aiter_bytes():
                data = carry + (wav.push(chunk) if wav is not None else chunk)
                frame = 2 * (wav.channels if wav is not None else 1)
                usable = len(data) - len(data) % frame
                carry = data[usable:]
                if usable:
                    samples = np.frombuffer(data[:usable], dtype="<i2").astype(np.int16)
                    out = wav.convert(samples) if wav is not None else samples
                    if len(out):
                        yield out
        if wav is not None:
            if not wav.ready:
                raise self._bad("a WAV stream without audio")
            tail = wav.flush()
            if len(tail):
                yield tail

    def _bad(self, what: str) -> ProviderError:
        return ProviderError(
            f"{self.endpoint.what} {self.endpoint.shown} sent {what}", retryable=True
        )


class _WavStream:
    """Reads a WAV header off the front of a byte stream; converts its PCM to ``rate`` mono."""

    def __init__(self, rate: int) -> None:
        self.rate, self.ready, self.channels = rate, False, 1
        self._head = b""
        self._resampler: StreamResampler[np.int16] | None = None

    def push(self, chunk: bytes) -> bytes:
        """The PCM bytes in ``chunk`` (none until the header has been read)."""
        if self.ready:
            return chunk
        self._head += chunk
        found = self._parse()
        if found is None:
            if len(self._head) > MAX_HEADER:
                raise _invalid("a WAV header that could not be read")
            return b""
        channels, rate, bits, start = found
        if bits != 16 or channels < 1:
            raise _invalid(f"{bits}-bit, {channels}-channel WAV audio (16-bit PCM is needed)")
        self.ready, self.channels = True, channels
        if rate != self.rate:
            self._resampler = StreamResampler(rate, self.rate, np.int16)
        rest, self._head = self._head[start:], b""
        return rest

    def _parse(self) -> tuple[int, int, int, int] | None:
        head = self._head
        if len(head) < 12:
            return None
        if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise _invalid("audio that is not WAV")
        position, fmt = 12, None
        while position + 8 <= len(head):
            tag, size = (
                head[position : position + 4],
                struct.unpack("<I", head[position + 4 : position + 8])[0],
            )
            if tag == b"data":
                if fmt is None:
                    raise _invalid("a WAV stream without a fmt chunk")
                return (*fmt, position + 8)
            if position + 8 + size > len(head):
                return None
            if tag == b"fmt ":
                _, channels, rate, _, _, bits = struct.unpack(
                    "<HHIIHH", head[position + 8 : position + 24]
                )
                fmt = (channels, rate, bits)
            position += 8 + size + (size & 1)
        return None

    def convert(self, samples: Int16Array) -> Int16Array:
        if self.channels > 1:
            samples = to_mono(samples.reshape(-1, self.channels))
        return self._resampler.process(samples) if self._resampler is not None else samples

    def flush(self) -> Int16Array:
        if self._resampler is None:
            return np.zeros(0, dtype=np.int16)
        return self._resampler.flush()


def _invalid(what: str) -> ProviderError:
    return ProviderError(f"the speech server sent {what}", retryable=True)
