"""The embedded stack under 1 and 4 concurrent sessions: does the fair queue keep turns moving?

Each simulated session runs turns of: STT of a real recorded utterance (LibriVox, ~3-6 s) →
LLM reply streamed from a primed system prompt → TTS of the reply's first sentence. Sessions
start staggered by a fraction of a turn, as real conversations would. All model work goes
through the process's one compute lane (engines/lane.py); the lane records, for every step, how
long it queued and how many *other* steps ran first. We report per-stage latency for one session
alone and for four together, and the queueing of STT steps.

Run: ``.venv/bin/python benchmarks/fair_queue_bench.py [--sessions 4] [--turns 3]``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

import numpy as np

from harken.config import load_config
from harken.engines.lane import SESSION, shared_lane
from harken.protocol import audio
from harken.providers.base import LLMText
from harken.providers.embedded import load_engines
from harken.session.effects import ChatMessage

DATA = Path(__file__).resolve().parent.parent / "var/testdata/pocketsphinx-5.1.1/librivox"
PROMPT = "You are a friendly voice assistant. Answer in one or two short sentences."


def utterances() -> list[np.ndarray]:
    clips = []
    for wav in sorted(DATA.glob("*.wav")):
        decoded = audio.read_wav(wav.read_bytes())
        clips.append(audio.to_mono(decoded.samples))
    if not clips:
        raise SystemExit(f"no recordings in {DATA}: run scripts/fetch_testdata.py")
    return clips


async def session(name: str, engines, clips, turns: int, delay: float, out: dict) -> None:  # type: ignore[no-untyped-def]
    SESSION.set(name)
    stt, llm, tts = (
        engines.stt["stt-default"],
        engines.llm["llm-default"],
        engines.tts["tts-default"],
    )
    await asyncio.sleep(delay)
    await llm.prime([ChatMessage("system", PROMPT)])
    for turn in range(turns):
        clip = clips[(turn + hash(name)) % len(clips)]
        t0 = time.perf_counter()
        text = await stt.transcribe(clip)
        t1 = time.perf_counter()
        reply = ""
        first_token = None
        messages = [ChatMessage("system", PROMPT), ChatMessage("user", text)]
        async for item in llm.stream(messages):
            if isinstance(item, LLMText):
                first_token = first_token or time.perf_counter()
                reply += item.text
                if any(p in reply for p in ".!?"):
                    break
        t2 = time.perf_counter()
        sentence = reply.strip() or "Okay."
        async for _chunk in tts.synthesize(sentence):
            break
        t3 = time.perf_counter()
        out.setdefault("stt", []).append(t1 - t0)
        out.setdefault("ttft", []).append((first_token or t2) - t1)
        out.setdefault("first_sentence", []).append(t2 - t1)
        out.setdefault("tts_first_audio", []).append(t3 - t2)
        out.setdefault("turn", []).append(t3 - t0)


def summary(label: str, out: dict) -> None:  # type: ignore[type-arg]
    print(f"\n{label}")
    print(f"  {'stage':<16} {'p50 s':>7} {'max s':>7}")
    for stage in ("stt", "ttft", "first_sentence", "tts_first_audio", "turn"):
        values = out[stage]
        print(f"  {stage:<16} {statistics.median(values):7.3f} {max(values):7.3f}")


async def run(n: int, turns: int, engines, clips) -> dict:  # type: ignore[no-untyped-def,type-arg]
    out: dict = {}  # type: ignore[type-arg]
    lane = shared_lane()
    lane.waits.clear()
    await asyncio.gather(*(session(f"s{i}", engines, clips, turns, i * 0.7, out) for i in range(n)))
    out["waits"] = list(lane.waits)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--turns", type=int, default=3)
    args = parser.parse_args()
    started = time.perf_counter()
    engines = load_engines(load_config(None, {}, {}))
    print(f"loaded the default stack in {time.perf_counter() - started:.1f} s")
    clips = utterances()
    single = asyncio.run(run(1, args.turns, engines, clips))
    summary("1 session", single)
    many = asyncio.run(run(args.sessions, args.turns, engines, clips))
    summary(f"{args.sessions} concurrent sessions (staggered 0.7 s)", many)
    for label, out in (("1 session", single), (f"{args.sessions} sessions", many)):
        print(f"\nqueueing, {label}:")
        for what in ("stt", "tts", "llm"):
            waits = [w for w in out["waits"] if w.what == what]
            if not waits:
                continue
            jobs = [w.jobs_behind for w in waits]
            seconds = sorted(w.seconds for w in waits)
            kinds = sorted({k for w in waits for _, k in w.behind})
            print(
                f"  {what} steps: {len(waits)}; other steps run first p50 "
                f"{statistics.median(w.steps_between for w in waits):.0f}, max "
                f"{max(w.steps_between for w in waits)}; distinct other jobs (session, kind) "
                f"p50 {statistics.median(jobs):.0f}, max {max(jobs)}, "
                f"{sum(j <= 1 for j in jobs) / len(jobs):.0%} waited behind at most one; "
                f"queue wait p50 {statistics.median(seconds) * 1000:.0f} ms, "
                f"p95 {seconds[int(0.95 * (len(seconds) - 1))] * 1000:.0f} ms, "
                f"max {seconds[-1] * 1000:.0f} ms; behind: {', '.join(kinds) or '-'}"
            )


if __name__ == "__main__":
    main()
