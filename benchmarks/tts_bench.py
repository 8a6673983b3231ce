"""TTS providers: load time, memory, time to first audio and real-time factor.

Each engine is measured in its own fresh process (so load time and RSS are its own): Piper
(``piper-joe``) and espeak-ng, both through their harken providers on a ComputeLane, the way
the server runs them. Timings are the best of ``--runs`` after a warm-up. Plain numbers, no
assertions. Run from the repository root::

    PYTHONPATH=src python benchmarks/tts_bench.py [piper|espeak|all] [--runs 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from harken.engines.assemble import verify
from harken.engines.lane import ComputeLane
from harken.providers.base import TTS, Int16Array

SENTENCE = "I can help you book a table, check the weather, or set a reminder for tomorrow morning."
PARAGRAPH = (
    "The weather tomorrow will be mostly sunny with a light breeze. Remember to bring an "
    "umbrella on Thursday, because heavy rain is expected in the afternoon. The roads may be "
    "slippery, so leave a little earlier than usual."
)
RUN_ON = "we walked along the river, past the old mill and the bakery, " * 8 + "and went home."


def rss_mb() -> float:
    """Current resident set size of this process in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def timeline(tts: TTS, text: str) -> tuple[list[float], list[Int16Array]]:
    """Arrival time of each chunk (seconds from the call) and the chunks."""
    start = time.perf_counter()
    times: list[float] = []
    chunks: list[Int16Array] = []
    async for chunk in tts.synthesize(text):
        times.append(time.perf_counter() - start)
        chunks.append(chunk)
    return times, chunks


async def measure(tts: TTS, text: str, runs: int) -> tuple[float, float, float, int]:
    """Best first-chunk time, best total time, audio seconds and chunk count for ``text``."""
    await timeline(tts, text)  # warm-up
    first = total = float("inf")
    seconds, count = 0.0, 0
    for _ in range(runs):
        times, chunks = await timeline(tts, text)
        first, total = min(first, times[0]), min(total, times[-1])
        seconds = sum(len(c) for c in chunks) / tts.capabilities.sample_rate
        count = len(chunks)
    return first, total, seconds, count


async def bench(engine: str, runs: int, threads: int) -> None:
    lane = ComputeLane("bench")
    before = rss_mb()
    start = time.perf_counter()
    tts: TTS
    if engine == "piper":
        from harken.providers.tts.piper import PiperTTS

        path = verify("piper-joe")
        start = time.perf_counter()
        tts = PiperTTS(path, lane, threads=threads)
    else:
        from harken.providers.tts.espeak import EspeakTTS

        path = verify("espeak-ng")
        start = time.perf_counter()
        tts = EspeakTTS(path, lane=lane)
    load = time.perf_counter() - start
    loaded = rss_mb()
    title = f"{engine} ({tts.capabilities.sample_rate} Hz"
    title += f", {threads} threads)" if engine == "piper" else ")"
    print(title)
    print(f"  {'load (incl. warm-up run)':<36} {load:8.3f} s")
    print(f"  {'RSS before / loaded':<36} {before:6.0f} / {loaded:.0f} MB")
    for label, text in (("sentence", SENTENCE), ("3-sentence paragraph", PARAGRAPH)):
        first, total, seconds, count = await measure(tts, text, runs)
        print(
            f"  {label:<22} first audio {first:7.3f} s   total {total:7.3f} s   "
            f"audio {seconds:5.2f} s in {count} chunk(s)   RTF {total / seconds:.3f}"
        )
    times, chunks = await timeline(tts, RUN_ON)
    gaps = np.diff([0.0, *times])
    print(
        f"  {'run-on sentence (' + str(len(RUN_ON)) + ' chars)':<22} {len(chunks)} chunks, "
        f"longest step {gaps.max():.3f} s, chunks of "
        f"{', '.join(f'{len(c) / tts.capabilities.sample_rate:.1f}' for c in chunks)} s of audio"
    )
    print(f"  {'RSS after synthesis / peak':<36} {rss_mb():6.0f} / {peak_mb():.0f} MB")
    lane.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("engine", nargs="?", default="all", choices=["piper", "espeak", "all"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    args = parser.parse_args()
    if args.engine != "all":
        asyncio.run(bench(args.engine, args.runs, args.threads))
        return
    for engine in ("piper", "espeak"):  # fresh processes: load time and RSS are each its own
        command = [sys.executable, __file__, engine, "--runs", str(args.runs)]
        subprocess.run([*command, "--threads", str(args.threads)], check=True)


if __name__ == "__main__":
    main()
