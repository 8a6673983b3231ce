"""Audio helpers: G.711 against a scalar reference, PCM, resampling, WAV, frame math."""

from __future__ import annotations

import io
import struct
import warnings
import wave

import numpy as np
import pytest

from harken.protocol import audio

ALL_INT16 = np.arange(-32768, 32768, dtype=np.int16)
ALL_CODES = bytes(range(256))


# ------------------------------------------------------------------------------ G.711 reference
# Written from ITU-T G.711 (tables 1a/2a): mu-law works on 14-bit magnitudes with a bias of 33
# and 8 segments of 16 steps; A-law on 13-bit magnitudes, segment 0 and 1 share a step of 2;
# mu-law code words are inverted, A-law ones have the even bits inverted (XOR 0x55).


def ref_mulaw_encode(sample: int) -> int:
    value = sample >> 2  # 16-bit two's complement to 14 bits
    sign = 0x00 if value >= 0 else 0x80  # before the final inversion: 1 = negative
    magnitude = min(abs(value), 8159) + 33
    segment = max(0, magnitude.bit_length() - 6)  # magnitude in [32 << s, 64 << s)
    step = (magnitude >> (segment + 1)) & 0x0F
    if segment > 7:  # 8192: the top of the scale
        segment, step = 7, 0x0F
    return ~(sign | (segment << 4) | step) & 0xFF


def ref_mulaw_decode(code: int) -> int:
    code = ~code & 0xFF
    segment, step = (code >> 4) & 0x07, code & 0x0F
    magnitude = ((2 * step + 33) << segment) - 33  # 14-bit, bias removed
    magnitude <<= 2
    return -magnitude if code & 0x80 else magnitude


def ref_alaw_encode(sample: int) -> int:
    value = sample >> 3  # 13 bits
    positive = value >= 0
    magnitude = value if positive else -value - 1
    segment = max(0, magnitude.bit_length() - 5)  # segment 0 is 0..31, segment s 16 << s..
    step = (magnitude >> (segment if segment > 1 else 1)) & 0x0F
    code = (segment << 4) | step | (0x80 if positive else 0x00)
    return code ^ 0x55


def ref_alaw_decode(code: int) -> int:
    code ^= 0x55
    segment, step = (code >> 4) & 0x07, code & 0x0F
    magnitude = (2 * step + 1) << 3 if segment == 0 else ((2 * step + 33) << (segment + 2))
    return magnitude if code & 0x80 else -magnitude


def test_mulaw_matches_the_reference_for_every_value() -> None:
    expected = np.array([ref_mulaw_encode(int(s)) for s in ALL_INT16], dtype=np.uint8)
    np.testing.assert_array_equal(audio.mulaw_encode(ALL_INT16), expected)
    decoded = np.array([ref_mulaw_decode(c) for c in ALL_CODES], dtype=np.int16)
    np.testing.assert_array_equal(audio.mulaw_decode(ALL_CODES), decoded)


def test_alaw_matches_the_reference_for_every_value() -> None:
    expected = np.array([ref_alaw_encode(int(s)) for s in ALL_INT16], dtype=np.uint8)
    np.testing.assert_array_equal(audio.alaw_encode(ALL_INT16), expected)
    decoded = np.array([ref_alaw_decode(c) for c in ALL_CODES], dtype=np.int16)
    np.testing.assert_array_equal(audio.alaw_decode(ALL_CODES), decoded)


def test_g711_matches_cpython_audioop_when_available() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")
    pcm = ALL_INT16.astype("<i2").tobytes()
    assert audio.mulaw_encode(ALL_INT16).tobytes() == audioop.lin2ulaw(pcm, 2)
    assert audio.alaw_encode(ALL_INT16).tobytes() == audioop.lin2alaw(pcm, 2)
    assert audio.pcm16_to_bytes(audio.mulaw_decode(ALL_CODES)) == audioop.ulaw2lin(ALL_CODES, 2)
    assert audio.pcm16_to_bytes(audio.alaw_decode(ALL_CODES)) == audioop.alaw2lin(ALL_CODES, 2)


def test_g711_known_points_and_idempotence() -> None:
    assert audio.mulaw_encode(np.array([0, 32767, -32768], dtype=np.int16)).tolist() == [
        0xFF,
        0x80,
        0x00,
    ]
    assert audio.mulaw_decode(bytes([0xFF, 0x80, 0x00])).tolist() == [0, 32124, -32124]
    assert audio.alaw_encode(np.array([0, 32767, -32768], dtype=np.int16)).tolist() == [
        0xD5,
        0xAA,
        0x2A,
    ]
    assert audio.alaw_decode(bytes([0xD5, 0xAA, 0x2A])).tolist() == [8, 32256, -32256]
    for encode, decode in (
        (audio.mulaw_encode, audio.mulaw_decode),
        (audio.alaw_encode, audio.alaw_decode),
    ):
        values = decode(ALL_CODES)
        np.testing.assert_array_equal(decode(encode(values)), values)
        assert decode(np.frombuffer(ALL_CODES, dtype=np.uint8)).dtype == np.int16


def test_g711_accepts_non_contiguous_input() -> None:
    stereo = np.stack([ALL_INT16, ALL_INT16[::-1]], axis=1)
    np.testing.assert_array_equal(
        audio.mulaw_encode(stereo[:, 1]), audio.mulaw_encode(ALL_INT16[::-1].copy())
    )


# ----------------------------------------------------------------------------------- PCM


def test_pcm16_bytes_round_trip_and_errors() -> None:
    data = ALL_INT16.astype("<i2").tobytes()
    samples = audio.pcm16_from_bytes(data)
    assert samples.dtype == np.int16 and samples.flags.writeable
    np.testing.assert_array_equal(samples, ALL_INT16)
    assert audio.pcm16_to_bytes(samples) == data
    assert audio.pcm16_to_bytes(ALL_INT16.astype(">i2")) == data
    with pytest.raises(ValueError, match="whole 2-byte samples; got 3 bytes"):
        audio.pcm16_from_bytes(b"abc")


def test_float_conversion_is_exact_and_clips() -> None:
    floats = audio.int16_to_float32(ALL_INT16)
    assert floats.dtype == np.float32 and floats.min() == -1.0 and floats.max() < 1.0
    np.testing.assert_array_equal(audio.float32_to_int16(floats), ALL_INT16)
    clipped = audio.float32_to_int16(np.array([1.5, -2.0, 0.5], dtype=np.float32))
    assert clipped.tolist() == [32767, -32768, 16384]


@pytest.mark.parametrize("encoding", ["linear16", "mulaw", "alaw"])
def test_decode_input_and_encode_output(encoding: str) -> None:
    samples = audio.decode_input(audio.encode_output(ALL_INT16, encoding), encoding)
    assert samples.dtype == np.int16 and len(samples) == 65536
    assert audio.encode_output(samples, encoding) == audio.encode_output(ALL_INT16, encoding)
    assert audio.decode_input(b"", encoding).size == 0


def test_unknown_encodings_are_refused() -> None:
    for call in (
        lambda: audio.decode_input(b"", "opus"),
        lambda: audio.encode_output(ALL_INT16, "mp3"),
        lambda: audio.bytes_per_sample("flac"),
        lambda: audio.wav_header(8000, "opus"),
    ):
        with pytest.raises(ValueError, match="use linear16, mulaw or alaw"):
            call()


# ----------------------------------------------------------------------------------- resampling


def sine(rate: int, seconds: float = 1.0, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def peak_hz(signal: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(signal.astype(np.float64)))
    return float(np.fft.rfftfreq(len(signal), 1 / rate)[np.argmax(spectrum)])


def test_resample_keeps_dtype_length_and_pitch() -> None:
    x = sine(16000)
    y = audio.resample(x, 16000, 24000)
    assert y.dtype == np.float32 and len(y) == 24000
    assert abs(peak_hz(y, 24000) - 440) < 2
    pcm = audio.float32_to_int16(x)
    z = audio.resample(pcm, 16000, 8000)
    assert z.dtype == np.int16 and len(z) == 8000
    assert abs(peak_hz(z, 8000) - 440) < 2
    assert audio.resample(np.zeros(0, dtype=np.int16), 16000, 24000).size == 0
    stereo = audio.resample(np.stack([x, x], axis=1), 16000, 48000)
    assert stereo.shape == (48000, 2)


def test_resample_same_rate_is_a_copy() -> None:
    x = audio.float32_to_int16(sine(8000))
    y = audio.resample(x, 8000, 8000)
    assert y is not x and np.array_equal(x, y)


def test_stream_resampler_matches_a_whole_signal() -> None:
    x = audio.float32_to_int16(sine(24000, 0.5))
    stream = audio.StreamResampler(24000, 16000, np.int16)
    parts = [stream.process(x[i : i + 480]) for i in range(0, len(x), 480)]
    parts.append(stream.flush())
    y = np.concatenate(parts)
    assert y.dtype == np.int16 and abs(len(y) - 8000) <= 1
    whole = audio.resample(x, 24000, 16000)
    assert np.max(np.abs(y[:7900].astype(int) - whole[:7900].astype(int))) <= 2


def test_stream_resampler_float_and_passthrough() -> None:
    floats = audio.StreamResampler(16000, 48000, np.float32)
    out = floats.process(sine(16000, 0.1), last=True)
    assert out.dtype == np.float32 and abs(len(out) - 4800) <= 1
    same = audio.StreamResampler(16000, 16000, np.int16)
    chunk = np.arange(5, dtype=np.int16)
    assert same.process(chunk) is not chunk and same.process(chunk).tolist() == [0, 1, 2, 3, 4]
    assert same.flush().size == 0


# ----------------------------------------------------------------------------------- WAV


def wav_bytes(samples: np.ndarray, rate: int, width: int, channels: int = 1) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return buffer.getvalue()


def test_wav_header_pcm_is_read_by_the_wave_module() -> None:
    data = ALL_INT16[:1000].astype("<i2").tobytes()
    header = audio.wav_header(16000, "linear16", data_size=len(data))
    assert len(header) == 44
    with wave.open(io.BytesIO(header + data)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (
            1,
            2,
            16000,
            1000,
        )
        assert w.readframes(1000) == data


@pytest.mark.parametrize(("encoding", "tag"), [("linear16", 1), ("alaw", 6), ("mulaw", 7)])
def test_wav_header_fields(encoding: str, tag: int) -> None:
    header = audio.wav_header(8000, encoding, channels=2)
    assert header[:4] == b"RIFF" and header[8:16] == b"WAVEfmt "
    fmt_size = struct.unpack_from("<I", header, 16)[0]
    assert fmt_size == (16 if tag == 1 else 18)
    fields = struct.unpack_from("<HHIIHH", header, 20)
    width = 2 if tag == 1 else 1
    assert fields == (tag, 2, 8000, 8000 * 2 * width, 2 * width, 8 * width)
    assert header[-8:-4] == b"data"
    assert struct.unpack_from("<I", header, len(header) - 4)[0] == audio.STREAMING_DATA_SIZE
    assert struct.unpack_from("<I", header, 4)[0] == 0xFFFFFFFF
    samples = np.array([[0, 1000], [-1000, 32000]], dtype=np.int16)
    body = audio.encode_output(samples.ravel(), encoding)
    read = audio.read_wav(header + body)
    assert (read.sample_rate, read.channels, read.samples.shape) == (8000, 2, (2, 2))
    expected = audio.decode_input(body, encoding).reshape(-1, 2)
    np.testing.assert_array_equal(read.samples, expected)


def test_wav_header_rejects_bad_arguments() -> None:
    for kwargs in (
        {"sample_rate": 0},
        {"sample_rate": 8000, "channels": 0},
        {"sample_rate": 8000, "data_size": 2**32},
        {"sample_rate": 8000, "data_size": -1},
    ):
        with pytest.raises(ValueError, match="positive rate"):
            audio.wav_header(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_read_wav_pcm_widths(width: int) -> None:
    expected = np.array([-32768, -256, 0, 256, 32512], dtype=np.int16)
    if width == 1:
        raw = ((expected >> 8) + 128).astype(np.uint8)
    elif width == 2:
        raw = expected.astype("<i2")
    elif width == 3:
        raw = np.stack(
            [
                np.zeros(5, np.uint8),
                (expected & 0xFF).astype(np.uint8),
                ((expected >> 8) & 0xFF).astype(np.uint8),
            ],
            axis=1,
        )
    else:
        raw = expected.astype("<i4") << 16
    result = audio.read_wav(wav_bytes(raw, 22050, width))
    assert (result.sample_rate, result.channels) == (22050, 1)
    np.testing.assert_array_equal(result.samples, expected)


def fmt_chunk(tag: int, channels: int, rate: int, bits: int, extra: bytes = b"") -> bytes:
    block = channels * bits // 8
    body = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits) + extra
    return b"fmt " + struct.pack("<I", len(body)) + body


def riff(*chunks: bytes) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def data_chunk(payload: bytes) -> bytes:
    return b"data" + struct.pack("<I", len(payload)) + payload


@pytest.mark.parametrize(("dtype", "bits"), [("<f4", 32), ("<f8", 64)])
def test_read_wav_float(dtype: str, bits: int) -> None:
    payload = np.array([0.0, 0.5, -1.0, 2.0], dtype=dtype).tobytes()
    result = audio.read_wav(riff(fmt_chunk(3, 1, 48000, bits), data_chunk(payload)))
    assert result.samples.tolist() == [0, 16384, -32768, 32767]


def test_read_wav_extensible_odd_chunks_and_truncated_data() -> None:
    guid_tail = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
    extensible = fmt_chunk(
        0xFFFE, 2, 16000, 16, struct.pack("<HHI", 22, 16, 3) + struct.pack("<H", 1) + guid_tail
    )
    odd = b"LIST" + struct.pack("<I", 3) + b"abc" + b"\x00"
    payload = np.array([1, 2, 3, 4, 5], dtype="<i2").tobytes()  # 2.5 stereo frames
    result = audio.read_wav(riff(extensible, odd, data_chunk(payload)))
    assert result.samples.tolist() == [[1, 2], [3, 4]]
    streamed = riff(fmt_chunk(1, 1, 8000, 16), b"data" + struct.pack("<I", 0xFFFFFFFF) + payload)
    assert audio.read_wav(streamed).samples.tolist() == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"RIFX....WAVE", "not a RIFF/WAVE file"),
        (b"RIFF", "not a RIFF/WAVE file"),
        (riff(data_chunk(b"\x00\x00"), fmt_chunk(1, 1, 8000, 16)), "before the fmt chunk"),
        (riff(fmt_chunk(1, 1, 8000, 16)), "no data chunk"),
        (riff(b"fmt " + struct.pack("<I", 4) + b"\x01\x00\x01\x00", data_chunk(b"")), "too short"),
        (riff(fmt_chunk(1, 0, 8000, 16), data_chunk(b"")), "0 channels at 8000 Hz"),
        (riff(fmt_chunk(1, 1, 0, 16), data_chunk(b"")), "1 channels at 0 Hz"),
        (
            riff(fmt_chunk(2, 1, 8000, 4), data_chunk(b"")),
            "unsupported WAV sample format 2 with 4 bits",
        ),
    ],
)
def test_read_wav_errors(data: bytes, message: str) -> None:
    with pytest.raises(audio.WavError, match=message):
        audio.read_wav(data)


def test_to_mono() -> None:
    mono = np.array([1, 2], dtype=np.int16)
    assert audio.to_mono(mono) is mono
    stereo = np.array([[100, 300], [-32768, 32767], [1, 2]], dtype=np.int16)
    assert audio.to_mono(stereo).tolist() == [200, 0, 2]


# ----------------------------------------------------------------------------------- frame math


def test_frame_math() -> None:
    assert audio.frame_bytes("linear16", 24000, 20) == 960  # the SDK's frames (PROTOCOL 7.3)
    assert audio.frame_bytes("mulaw", 8000, 20) == 160
    assert audio.frame_bytes("linear16", 44100, 10, channels=2) == 1764
    assert audio.frame_bytes("alaw", 8000, 0.125) == 1
    assert audio.bytes_to_seconds(960, "linear16", 24000) == 0.02
    assert audio.bytes_to_seconds(16000, "alaw", 8000, channels=2) == 1.0
