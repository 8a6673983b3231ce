"""Smart Turn v3.2: time per call on 1 and 2 threads, its parts, and the memory it adds.

Each thread count runs in a fresh process: it reads RSS, imports onnxruntime (the embedded
server has it loaded already, for Piper), reads RSS, loads the model, makes the calls and reads
RSS again: "RSS added" is the model's share; the import is shown apart. A call is
``await SmartTurn.probability(turn)`` on a compute lane (the features and the model in one lane
step), timed from the event loop, on a real recording cut 0.22 s into its pause; the median over
``--calls`` calls after 3 warm-up calls, with its CPU time (all threads of the process). The
features (numpy) and the model (onnxruntime) are also timed alone. Run from the repository
root::

    python benchmarks/smart_turn_bench.py [--calls 50] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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


def rss_mb() -> float:
    """Resident set size of this process, MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def median_ms(calls: int, call: Callable[[], object]) -> tuple[float, float, float]:
    """Median and 90th percentile wall time of ``calls`` timed calls, and their median CPU time
    (all threads of the process: what the call costs the machine, less swayed by other load),
    in ms, after 3 untimed calls."""
    for _ in range(3):
        call()
    wall, cpu = [], []
    for _ in range(calls):
        start, start_cpu = time.perf_counter(), time.process_time()
        call()
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    return statistics.median(wall), float(np.percentile(wall, 90)), statistics.median(cpu)


def measure(threads: int, calls: int) -> dict[str, Any]:
    """One thread count, in this process."""
    from harken.engines.lane import ComputeLane
    from harken.providers.turn import SmartTurn
    from harken.providers.turn import smart_turn as st
    from speech import librivox

    recording = librivox()[0].samples  # 7.1 s, ends 0.22 s after its last word
    bare = rss_mb()
    import onnxruntime  # noqa: F401

    before = rss_mb()
    lane = ComputeLane("bench-turn")
    started = time.perf_counter()
    detector = SmartTurn.load("smart-turn-v3.2", lane, REPO / "models", threads=threads)
    load_s = time.perf_counter() - started
    loop = asyncio.new_event_loop()
    try:
        call, p90, cpu = median_ms(
            calls, lambda: loop.run_until_complete(detector.probability(recording))
        )
        probability = loop.run_until_complete(detector.probability(recording))
    finally:
        loop.close()
        lane.close()
    session = st.load_session(REPO / "models/smart-turn-v3.2/smart-turn-v3.2-cpu.onnx", threads)
    inputs = st.features(recording)
    feats, _, _ = median_ms(calls, lambda: st.features(recording))
    model, _, _ = median_ms(calls, lambda: session.run(None, {st.INPUT_NAME: inputs}))
    return {
        "threads": threads,
        "load_s": load_s,
        "call_ms": call,
        "call_p90_ms": p90,
        "call_cpu_ms": cpu,
        "features_ms": feats,
        "model_ms": model,
        "rss_added_mb": rss_mb() - before,
        "rss_import_mb": before - bare,
        "probability": probability,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(measure(args.one, args.calls)))
        return
    print(f"Smart Turn v3.2, {args.calls} calls, load average {os.getloadavg()[0]:.2f}")
    print("threads  load    call p50 (p90)    CPU/call  features  model    RSS added  P(complete)")
    imports = []
    for threads in args.threads:
        out = subprocess.run(
            [sys.executable, __file__, "--one", str(threads), "--calls", str(args.calls)],
            check=True,
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        call = f"{r['call_ms']:5.1f} ms ({r['call_p90_ms']:5.1f})  {r['call_cpu_ms']:5.1f} ms"
        print(
            f"{r['threads']:>7}  {r['load_s']:.2f} s  {call}  {r['features_ms']:6.1f} ms "
            f"{r['model_ms']:5.1f} ms  {r['rss_added_mb']:5.1f} MB   {r['probability']:.3f}"
        )
        imports.append(r["rss_import_mb"])
    print(f"importing onnxruntime: +{min(imports):.1f} MB RSS (not counted above)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
