"""Audio helpers, pure: linear16, G.711 mu-law and A-law, resampling, WAV, frame math.

Samples are numpy arrays: ``int16`` for PCM (little-endian on the wire), ``float32`` in
``[-1, 1)`` where a model wants floats. G.711 uses 65536-entry encode tables and 256-entry decode
tables built once, vectorised, from the classic reference algorithm (Sun ``g711.c``, the one
CPython's ``audioop`` implements): 16-bit input is reduced to 14 bits (mu-law) or 13 bits
(A-law) and coded by segment.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, Final, Generic, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt
import soxr

Int16Array = npt.NDArray[np.int16]
Float32Array = npt.NDArray[np.float32]
_Pcm = TypeVar("_Pcm", np.int16, np.float32)

ENCODINGS: Final = ("linear16", "mulaw", "alaw")
WAVE_FORMAT_TAGS: Final = {"linear16": 1, "alaw": 6, "mulaw": 7}
STREAMING_DATA_SIZE: Final = 0xFFFFFFFF
"""The WAV ``data`` size to announce when the length is not known (a stream)."""

_BYTES_PER_SAMPLE: Final = {"linear16": 2, "mulaw": 1, "alaw": 1}


class WavError(ValueError):
    """The bytes are not a WAV file this module can read."""


def bytes_per_sample(encoding: str) -> int:
    try:
        return _BYTES_PER_SAMPLE[encoding]
    except KeyError:
        raise ValueError(
            f"unsupported encoding {encoding!r}; use linear16, mulaw or alaw"
        ) from None


# ----------------------------------------------------------------------------------- linear16


def pcm16_from_bytes(data: bytes) -> Int16Array:
    """Little-endian 16-bit PCM to a (writable, native-order) int16 array."""
    if len(data) % 2:
        raise ValueError(f"linear16 audio needs whole 2-byte samples; got {len(data)} bytes")
    return np.frombuffer(data, dtype="<i2").astype(np.int16)


def pcm16_to_bytes(samples: Int16Array) -> bytes:
    return np.asarray(samples, dtype="<i2").tobytes()


def int16_to_float32(samples: Int16Array) -> Float32Array:
    """Scale by 1/32768 (exact; :func:`float32_to_int16` inverts it bit for bit)."""
    return samples.astype(np.float32) / np.float32(32768.0)


def float32_to_int16(samples: npt.NDArray[np.floating[Any]]) -> Int16Array:
    """Scale by 32768, round to nearest and clip to the int16 range."""
    return np.asarray(np.clip(np.rint(samples * 32768.0), -32768, 32767), dtype=np.int16)


# ----------------------------------------------------------------------------------- G.711

_ALL_INT16 = np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)
"""Every int16 value, ordered so that ``table[samples.view(np.uint16)]`` looks it up."""
_CODES = np.arange(256, dtype=np.int32)


def _mulaw_encode_table() -> npt.NDArray[np.uint8]:
    pcm = _ALL_INT16 >> 2  # 14-bit
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(pcm), 8159) + 33  # clip, add the bias
    ends = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
    segment = np.searchsorted(ends, magnitude)
    code = np.where(segment >= 8, 0x7F, (segment << 4) | ((magnitude >> (segment + 1)) & 0xF))
    return (code ^ mask).astype(np.uint8)


def _mulaw_decode_table() -> Int16Array:
    u = ~_CODES & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return np.asarray(np.where(u & 0x80, 0x84 - t, t - 0x84), dtype=np.int16)


def _alaw_encode_table() -> npt.NDArray[np.uint8]:
    pcm = _ALL_INT16 >> 3  # 13-bit
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    magnitude = np.where(pcm >= 0, pcm, -pcm - 1)  # at most 0xFFF: segment <= 7
    ends = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])
    segment = np.searchsorted(ends, magnitude)
    shift = np.where(segment < 2, 1, segment)
    return (((segment << 4) | ((magnitude >> shift) & 0xF)) ^ mask).astype(np.uint8)


def _alaw_decode_table() -> Int16Array:
    a = _CODES ^ 0x55
    segment = (a & 0x70) >> 4
    t = ((a & 0x0F) << 4) + np.where(segment == 0, 8, 0x108)
    t = t << np.maximum(segment - 1, 0)
    return np.asarray(np.where(a & 0x80, t, -t), dtype=np.int16)


_MULAW_ENCODE: Final = _mulaw_encode_table()
_MULAW_DECODE: Final = _mulaw_decode_table()
_ALAW_ENCODE: Final = _alaw_encode_table()
_ALAW_DECODE: Final = _alaw_decode_table()


def _codes(data: bytes | npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    return np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes) else data


def mulaw_encode(samples: Int16Array) -> npt.NDArray[np.uint8]:
    return _MULAW_ENCODE[np.asarray(samples, dtype=np.int16).view(np.uint16)]


def mulaw_decode(data: bytes | npt.NDArray[np.uint8]) -> Int16Array:
    return _MULAW_DECODE[_codes(data)]


def alaw_encode(samples: Int16Array) -> npt.NDArray[np.uint8]:
    return _ALAW_ENCODE[np.asarray(samples, dtype=np.int16).view(np.uint16)]


def alaw_decode(data: bytes | npt.NDArray[np.uint8]) -> Int16Array:
    return _ALAW_DECODE[_codes(data)]


def decode_input(data: bytes, encoding: str) -> Int16Array:
    """Raw client audio in ``encoding`` to int16 samples."""
    bytes_per_sample(encoding)  # rejects unknown encodings
    if encoding == "linear16":
        return pcm16_from_bytes(data)
    return mulaw_decode(data) if encoding == "mulaw" else alaw_decode(data)


def encode_output(samples: Int16Array, encoding: str) -> bytes:
    """int16 samples to raw agent audio in ``encoding``."""
    bytes_per_sample(encoding)
    if encoding == "linear16":
        return pcm16_to_bytes(samples)
    coded = mulaw_encode(samples) if encoding == "mulaw" else alaw_encode(samples)
    return coded.tobytes()


# ----------------------------------------------------------------------------------- resampling


def resample(pcm: npt.NDArray[_Pcm], from_rate: int, to_rate: int) -> npt.NDArray[_Pcm]:
    """Resample a whole signal (1-D, or 2-D ``(frames, channels)``) with soxr, HQ quality."""
    if from_rate == to_rate:
        return pcm.copy()
    return np.asarray(soxr.resample(pcm, from_rate, to_rate, quality="HQ"), dtype=pcm.dtype)


class StreamResampler(Generic[_Pcm]):
    """Resample a mono stream chunk by chunk, keeping the filter state between chunks.

    ``StreamResampler(24000, 16000, np.int16).process(chunk)``; pass ``last=True`` (or call
    :meth:`flush`) at the end to get the samples still held in the filter.
    """

    def __init__(self, from_rate: int, to_rate: int, dtype: type[_Pcm]) -> None:
        self.from_rate = from_rate
        self.to_rate = to_rate
        self.dtype: type[_Pcm] = dtype
        self._stream: soxr.ResampleStream | None = None
        if from_rate != to_rate:
            name = np.dtype(dtype).name
            self._stream = soxr.ResampleStream(from_rate, to_rate, 1, dtype=name, quality="HQ")

    def process(self, chunk: npt.NDArray[_Pcm], *, last: bool = False) -> npt.NDArray[_Pcm]:
        chunk = np.asarray(chunk, dtype=self.dtype)
        if self._stream is None:
            return chunk.copy()
        return np.asarray(self._stream.resample_chunk(chunk, last=last), dtype=self.dtype)

    def flush(self) -> npt.NDArray[_Pcm]:
        return self.process(np.zeros(0, dtype=self.dtype), last=True)


# ----------------------------------------------------------------------------------- WAV


class WavAudio(NamedTuple):
    """Samples are ``(frames,)`` for mono, ``(frames, channels)`` otherwise."""

    samples: Int16Array
    sample_rate: int
    channels: int


def wav_header(
    sample_rate: int,
    encoding: str = "linear16",
    channels: int = 1,
    data_size: int = STREAMING_DATA_SIZE,
) -> bytes:
    """A RIFF/WAVE header: PCM (format 1), A-law (6) or mu-law (7).

    The default ``data_size`` marks a stream of unknown length; the RIFF size is clamped.
    """
    width = bytes_per_sample(encoding)
    tag = WAVE_FORMAT_TAGS[encoding]
    if sample_rate <= 0 or channels <= 0 or not 0 <= data_size <= STREAMING_DATA_SIZE:
        raise ValueError("wav_header needs a positive rate and channel count and a 32-bit size")
    block = width * channels
    fmt = struct.pack("<HHIIHH", tag, channels, sample_rate, sample_rate * block, block, width * 8)
    if tag != 1:
        fmt += b"\x00\x00"  # cbSize: non-PCM formats carry it
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data"
    body += struct.pack("<I", data_size)
    return b"RIFF" + struct.pack("<I", min(STREAMING_DATA_SIZE, len(body) + data_size)) + body


def _pcm8(raw: bytes) -> Int16Array:
    return ((np.frombuffer(raw, dtype=np.uint8).astype(np.int16) - 128) << 8).astype(np.int16)


def _pcm24(raw: bytes) -> Int16Array:
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3)[:, 1:].copy().view("<i2").ravel()


_WAV_DECODERS: dict[tuple[int, int], Callable[[bytes], Int16Array]] = {
    (1, 8): _pcm8,
    (1, 16): pcm16_from_bytes,
    (1, 24): _pcm24,
    (1, 32): lambda raw: (np.frombuffer(raw, dtype="<i4") >> 16).astype(np.int16),
    (3, 32): lambda raw: float32_to_int16(np.frombuffer(raw, dtype="<f4")),
    (3, 64): lambda raw: float32_to_int16(np.frombuffer(raw, dtype="<f8")),
    (6, 8): alaw_decode,
    (7, 8): mulaw_decode,
}


def read_wav(data: bytes) -> WavAudio:
    """Read a WAV file: PCM 8/16/24/32-bit, float 32/64-bit, A-law, mu-law; any channels.

    A ``data`` size past the end of the file (a streamed header) means "up to the end".
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise WavError("not a RIFF/WAVE file")
    fmt: tuple[int, int, int, int] | None = None
    pos = 12
    while pos + 8 <= len(data):
        chunk_id, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = data[pos + 8 : pos + 8 + size]
        if chunk_id == b"fmt ":
            fmt = _wav_format(body)
        elif chunk_id == b"data":
            if fmt is None:
                raise WavError("the data chunk comes before the fmt chunk")
            return _wav_samples(body, *fmt)
        pos += 8 + size + (size & 1)
    raise WavError("no data chunk")


def _wav_format(body: bytes) -> tuple[int, int, int, int]:
    """``(format tag, channels, sample rate, bits per sample)`` of a ``fmt`` chunk."""
    if len(body) < 16:
        raise WavError("the fmt chunk is too short")
    tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", body)
    if tag == 0xFFFE and len(body) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the sub-format GUID
        tag = struct.unpack_from("<H", body, 24)[0]
    if channels < 1 or rate < 1:
        raise WavError(f"bad fmt chunk: {channels} channels at {rate} Hz")
    return tag, channels, rate, bits


def _wav_samples(body: bytes, tag: int, channels: int, rate: int, bits: int) -> WavAudio:
    decode = _WAV_DECODERS.get((tag, bits))
    if decode is None:
        raise WavError(f"unsupported WAV sample format {tag} with {bits} bits")
    block = bits // 8 * channels
    samples = decode(body[: len(body) // block * block])
    if channels > 1:
        samples = samples.reshape(-1, channels)
    return WavAudio(samples, rate, channels)


def to_mono(samples: Int16Array) -> Int16Array:
    """Average the channels of ``(frames, channels)`` samples; mono input is returned as is."""
    if samples.ndim == 1:
        return samples
    return np.asarray(np.rint(samples.mean(axis=1)), dtype=np.int16)


# ----------------------------------------------------------------------------------- frame math


def frame_bytes(encoding: str, sample_rate: int, ms: float, channels: int = 1) -> int:
    """Bytes in ``ms`` milliseconds of audio (whole samples): 20 ms linear16 24 kHz is 960."""
    return int(sample_rate * ms / 1000) * bytes_per_sample(encoding) * channels


def bytes_to_seconds(n: int, encoding: str, sample_rate: int, channels: int = 1) -> float:
    """Duration of ``n`` bytes of raw audio."""
    return n / (bytes_per_sample(encoding) * channels * sample_rate)
