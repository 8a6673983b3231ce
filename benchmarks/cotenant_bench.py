"""Mouth-to-ear beside a busy neighbour (issue 14): does harken degrade in proportion?

Runs ``latency_bench.py`` (real recordings, the default embedded stack, in a fresh process each
time) quiet and with a CPU hog of one core beside it (another process spinning in a Python
loop, as a second replica or a llama-server would), for each wait policy given, interleaved so
that drift in the machine hits every setting alike. The hog is started before the benchmark's
server and stopped after it. Prints each run's p50/p95 and, per setting, the hogged p50 over the
quiet one (the goal: at most 2x).

A setting is ``NAME`` or ``NAME:VAR=VALUE,VAR=VALUE``: environment for the benchmark's process,
e.g. ``spin:OMP_WAIT_POLICY=ACTIVE`` (libgomp's threads spin between parallel regions and at
barriers: llama.cpp's and CTranslate2's pools) against the default, which harken makes passive.

Usage: python benchmarks/cotenant_bench.py [--turns N] [--repeats N] [SETTING ...]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULT = re.compile(r"mouth-to-ear over (\d+) turns: p50 (\d+) ms, p95 (\d+) ms")


def parse_setting(text: str) -> tuple[str, dict[str, str]]:
    name, _, assignments = text.partition(":")
    env = dict(item.split("=", 1) for item in assignments.split(",") if item)
    return name, env


def run(turns: int, env: dict[str, str], hog: bool) -> tuple[int, int, int]:
    """One latency_bench run: (turns, p50 ms, p95 ms)."""
    spinner = None
    if hog:
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        done = subprocess.run(
            [
                sys.executable,
                str(ROOT / "benchmarks" / "latency_bench.py"),
                "--turns",
                str(turns),
                "--skip",
                "barge",
                "concurrent",
                "nospec",
            ],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    found = RESULT.search(done.stdout)
    if found is None:
        raise RuntimeError(f"latency_bench failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    count, p50, p95 = (int(x) for x in found.groups())
    return count, p50, p95


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--turns", type=int, default=11)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("settings", nargs="*", default=["default"])
    args = parser.parse_args()
    settings = [parse_setting(s) for s in args.settings]
    print(
        f"# co-tenant: {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    results: dict[tuple[str, bool], list[int]] = {}
    for repeat in range(args.repeats):
        for name, env in settings:
            for hog in (False, True):
                count, p50, p95 = run(args.turns, env, hog)
                results.setdefault((name, hog), []).append(p50)
                label = "hog of one core" if hog else "quiet"
                print(
                    f"run {repeat + 1} {name:10s} {label:16s} {count} turns: "
                    f"p50 {p50} ms, p95 {p95} ms",
                    flush=True,
                )
    print()
    for name, _ in settings:
        quiet = statistics.median(results[(name, False)])
        hogged = statistics.median(results[(name, True)])
        print(
            f"{name:10s} quiet p50 {quiet:.0f} ms, beside a hog {hogged:.0f} ms: "
            f"{hogged / quiet:.2f}x (goal <= 2x)"
        )


if __name__ == "__main__":
    main()
