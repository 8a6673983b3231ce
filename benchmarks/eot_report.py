"""The tables and listings of ``eot_bench.py`` (kept apart to keep each file short)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from harken.session.listener import FRAME_SAMPLES, FRAME_SECONDS
from speech import RATE

if TYPE_CHECKING:
    from eot_bench import Judge, PauseSet, Result


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else float("nan")


def rate(flags: Sequence[bool]) -> str:
    if not flags:
        return "-"
    return f"{sum(flags)}/{len(flags)} {100 * sum(flags) / len(flags):.0f}%"


def describe(data: PauseSet) -> None:
    recorded = [c for c in data.clips if c.name == c.recording]
    inserted = [p for p in data.pauses if p.kind == "inserted"]
    natural = [p for p in data.pauses if p.kind == "natural"]
    heard_ms = [p.heard_ms for p in inserted]
    seconds = sum(c.samples.size for c in data.clips) / RATE
    sources = sorted({n.source for n in data.noise.values()})
    noise = [n.seconds for n in data.noise.values()]
    print(f"recordings: {len(recorded)} ({', '.join(c.name for c in recorded)})")
    print(
        f"room noise: each recording's own {' or '.join(sources)}, "
        f"{min(noise):.2f}-{max(noise):.2f} s, looped forwards and backwards"
    )
    print(f"clips: {len(data.clips)} ({seconds:.0f} s of audio), each one fresh connection")
    print(
        f"mid-sentence pauses: {len(data.pauses)} = {len(inserted)} inserted at "
        f"{len(inserted) // 2} phrase boundaries (300-600 and 700-1200 ms of room noise; "
        f"pause as heard {min(heard_ms):.0f}-{max(heard_ms):.0f} ms, median "
        f"{pct(heard_ms, 50):.0f}) + {len(natural)} natural (VAD below off for "
        f"{', '.join(f'{p.heard_ms:.0f}' for p in natural)} ms)"
    )
    print(
        f"finished utterances: {len(data.clips)} clip ends = {len(recorded)} distinct real "
        "utterance ends, each as recorded and after each of its inserted pauses"
    )


def table(results: Sequence[Result], data: PauseSet) -> None:
    head = (
        f"| {'policy':20} | {'premature, all':>14} | {'inserted 300-600':>16} | "
        f"{'inserted 700-1200':>17} | {'natural':>7} | {'delay p50':>9} | {'p90':>7} | "
        f"{'ended by signal':>15} |"
    )
    print(head)
    print("|" + "|".join("-" * (len(cell)) for cell in head.split("|")[1:-1]) + "|")
    notes = []
    for r in results:
        groups: dict[str, list[bool]] = {"all": [], "short": [], "long": [], "natural": []}
        for pause, cut in zip(data.pauses, r.premature, strict=True):
            groups["all"].append(cut)
            if pause.kind == "natural":
                groups["natural"].append(cut)
            else:
                groups["short" if pause.inserted_ms <= 600 else "long"].append(cut)
        delays = [d * 1000 for d in r.delays if d is not None]
        signal = rate(r.by_signal) if r.policy.signal else "-"
        print(
            f"| {r.policy.name:20} | {rate(groups['all']):>14} | {rate(groups['short']):>16} | "
            f"{rate(groups['long']):>17} | {rate(groups['natural']):>7} | "
            f"{pct(delays, 50):>6.0f} ms | {pct(delays, 90):>4.0f} ms | {signal:>15} |"
        )
        missed = sum(d is None for d in r.delays)
        if missed:
            notes.append(f"{r.policy.name}: {missed} finished utterances never ended")
        if r.policy.signal and r.by_silence:
            notes.append(f"{r.policy.name}: {r.by_silence} of its cut-offs by the timeout")
    for note in notes:
        print(f"  {note}")


def listing(data: PauseSet, results: Sequence[Result], judge: Judge) -> None:
    """Every pause and finished end, with the outcome under each policy (x: cut off)."""
    names = [r.policy.name for r in results]
    print("\npolicies: " + ", ".join(f"{i}={n}" for i, n in enumerate(names)))
    for k, p in enumerate(data.pauses):
        marks = "".join("x" if r.premature[k] else "." for r in results)
        clip = data.clips[p.clip]
        print(f"  pause {clip.name:28} {p.where:26} heard {p.heard_ms:5.0f} ms  {marks}")
    for i, clip in enumerate(data.clips):
        delays = " ".join(
            "  -  " if r.delays[i] is None else f"{r.delays[i] * 1000:5.0f}" for r in results
        )
        print(f"  end   {clip.name:28} delay ms {delays}")
    for (signal, index, frame, size), p in sorted(judge.cache.items()):
        clip = data.clips[index]
        when = "after the end" if frame * FRAME_SAMPLES >= clip.last_speech else "mid-turn"
        print(
            f"  {signal} {clip.name:28} pause at {frame * FRAME_SECONDS:5.2f} s, turn "
            f"{size / 2 / RATE:4.1f} s, {when:13}: P(complete) {p:.3f}"
        )
