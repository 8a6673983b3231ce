"""A small, real OpenAI-compatible text-to-speech server for the tests, with Piper inside.

No OpenAI-compatible speech server installs offline from the package registries (Kokoro-FastAPI,
openedai-speech and Speaches all fetch their models from a hub at run time), so the suite runs
this one: Starlette under uvicorn, in its own process, on loopback. It follows OpenAI's
documented shape for ``POST /v1/audio/speech``: a JSON body ``{model, input, voice,
response_format, speed}``; the audio streams back chunked as it is synthesised, sentence by
sentence: ``pcm`` is raw 16-bit little-endian mono at 24 kHz, ``wav`` a RIFF header (sizes
unknown, as a stream must) then the voice's own rate (22050 Hz); other formats, a missing
``input`` or an unknown voice get HTTP 400 with OpenAI's error body.

    python tests/speech_server.py --voice models/piper-joe/en_US-joe-medium.onnx --port 8100
"""

from __future__ import annotations

import argparse
import asyncio
import struct
from collections.abc import AsyncIterator, Iterator
from typing import Any

import numpy as np
import soxr
import uvicorn
from piper.config import SynthesisConfig
from piper.voice import PiperVoice
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

OPENAI_VOICES = frozenset(
    {"alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer"}
)
PCM_RATE = 24000  # OpenAI's raw pcm


def error(message: str, param: str | None = None, status: int = 400) -> JSONResponse:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": param}}
    return JSONResponse(body, status_code=status)


def wav_stream_header(rate: int) -> bytes:
    unknown = 0xFFFFFFFF
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", unknown)
        + b"WAVEfmt "
        + struct.pack("<I", 16)
        + fmt
        + (b"data" + struct.pack("<I", unknown))
    )


STEADY = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
"""Piper samples noise into every synthesis, so the same text sounded different each run and a
transcription of it now and then misheard a word ("in Paris" as "impairs"); the tests check
what is heard, so this server speaks without the noise: the same audio every run."""


class Speech:
    def __init__(self, voice: PiperVoice) -> None:
        self.voice = voice
        self.rate = int(voice.config.sample_rate)
        self.lock = asyncio.Lock()  # one synthesis at a time, as a small server would

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def speech(self, request: Request) -> Response:
        try:
            body: Any = await request.json()
        except ValueError:
            return error("the body must be JSON")
        if not isinstance(body, dict):
            return error("the body must be a JSON object")
        text = body.get("input")
        if not isinstance(text, str) or not text.strip():
            return error("input is required", "input")
        voice = body.get("voice", "alloy")
        if voice not in OPENAI_VOICES and voice != "joe":
            return error(f"voice {voice!r} is not supported", "voice")
        fmt = body.get("response_format", "mp3")
        if fmt not in ("pcm", "wav"):
            return error(
                f"response_format {fmt!r} is not supported here (pcm, wav)", "response_format"
            )
        media = "audio/wav" if fmt == "wav" else "audio/pcm"
        return StreamingResponse(self._audio(text, fmt), media_type=media)

    async def _audio(self, text: str, fmt: str) -> AsyncIterator[bytes]:
        if fmt == "wav":
            yield wav_stream_header(self.rate)
        resampler = soxr.ResampleStream(self.rate, PCM_RATE, 1, dtype="int16")
        async with self.lock:
            chunks = self._chunks(text)
            while (pcm := await asyncio.to_thread(next, chunks, None)) is not None:
                if fmt == "pcm":
                    out = resampler.resample_chunk(pcm)
                    if out.size:
                        yield out.astype("<i2").tobytes()
                else:
                    yield pcm.astype("<i2").tobytes()
        if fmt == "pcm":
            tail = resampler.resample_chunk(np.zeros(0, np.int16), last=True)
            if tail.size:
                yield tail.astype("<i2").tobytes()

    def _chunks(self, text: str) -> Iterator[np.ndarray[Any, np.dtype[np.int16]]]:
        for chunk in self.voice.synthesize(text, STEADY):  # one sentence at a time
            yield np.frombuffer(chunk.audio_int16_bytes, dtype=np.int16)


def app(voice_path: str) -> Starlette:
    speech = Speech(PiperVoice.load(voice_path))
    routes = [
        Route("/health", speech.health, methods=["GET"]),
        Route("/v1/audio/speech", speech.speech, methods=["POST"]),
    ]
    return Starlette(routes=routes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voice", required=True, help="a Piper voice (.onnx, its .json beside)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    args = parser.parse_args()
    uvicorn.run(app(args.voice), host=args.host, port=args.port, log_level="info")  # the access log


if __name__ == "__main__":
    main()
