"""Memory over many conversations with the embedded models (issue 14): does RSS stay flat?

The server runs in this process (as the tests run it) with the default embedded stack. Each
conversation is a fresh session with an ``x-deepgram-session-id`` of its own: Settings (its own
numbered prompt, so no KV snapshot is reused), a real recording streamed in 20 ms linear16
frames (at ``--speed`` times real time: turn-taking counts audio frames, not the clock), and the
spoken reply. Every third conversation barges in (the recording again while the agent speaks);
every fifth drops its socket without a close frame mid-reply (the session is parked for a
resume, then expires after ``resume_window``, set to 2 s here); every seventh offers a function
and asks for it by text (``InjectUserMessage``), answers the ``FunctionCallRequest`` if the model
makes one, and waits for the spoken answer. Conversations run one at a time, then four at a time.
After each conversation (or round of four) the process's RSS and the embedded LLM's KV
snapshots are read from ``/metrics``, and printed with the curve's summary: growth after the
warm-up, and the slope over the last half.

Usage: python benchmarks/soak_bench.py [--sequential N] [--concurrent ROUNDS] [--warmup N]
       [--speed X] [--clip librivox|goforward]
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import socket
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from conftest import (
    SETTINGS,
    ServerThread,
    harken_config,
    recv_json,
    recv_until,
    start_session,
)
from speech import goforward, librivox

FRAME = 640  # 20 ms of 16 kHz linear16


FUNCTION: dict[str, Any] = {
    "name": "get_time",
    "description": "The current time of day",
    "parameters": {"type": "object", "properties": {}},
}


def settings(n: int) -> dict[str, Any]:
    """The tests' Settings, with a prompt of its own (no KV snapshot reused); a function only
    in the conversations that ask for one."""
    fresh: dict[str, Any] = json.loads(json.dumps(SETTINGS))
    fresh["agent"]["think"] = {
        "provider": fresh["agent"]["think"]["provider"],
        "prompt": f"You are a terse voice assistant. Answer in one short sentence. Chat {n}.",
    }
    if n % 7 == 6:
        fresh["agent"]["think"]["functions"] = [FUNCTION]
    return fresh


def stream(ws: Any, pcm: bytes, speed: float) -> None:
    start = time.monotonic()
    for i, offset in enumerate(range(0, len(pcm), FRAME)):
        ws.send(pcm[offset : offset + FRAME])
        delay = start + (i + 1) * 0.02 / speed - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def cut(ws: Any) -> None:
    ws.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    ws.socket.close()


def ask_function(ws: Any) -> str:
    """A text turn that asks for the function; the call is answered if the model makes it."""
    ws.send(json.dumps({"type": "InjectUserMessage", "content": "What time is it? Use get_time."}))
    called = False
    deadline = time.monotonic() + 90
    while True:
        message = recv_json(ws, max(0.01, deadline - time.monotonic()))
        if message["type"] == "FunctionCallRequest":
            called = True
            for call in message["functions"]:
                answer = {"type": "FunctionCallResponse", "id": call["id"], "name": call["name"]}
                ws.send(json.dumps(answer | {"content": "It is ten past four."}))
        elif message["type"] == "AgentAudioDone":
            return "function" if called else "no call"


def conversation(server: ServerThread, n: int, pcm: bytes, speed: float) -> str:
    """One conversation; returns how it ended."""
    headers = {"x-deepgram-session-id": str(uuid.uuid4())}
    ws = start_session(server, settings=settings(n), additional_headers=headers)
    try:
        if n % 7 == 6:
            how = ask_function(ws)
            ws.close()
            return how
        stream(ws, pcm, speed)
        if n % 5 == 4:
            recv_until(ws, "AgentStartedSpeaking", timeout=60)
            cut(ws)
            return "dropped"
        if n % 3 == 2:
            recv_until(ws, "AgentStartedSpeaking", timeout=60)
            stream(ws, pcm, speed)  # the user talks over the reply
        recv_until(ws, "AgentAudioDone", timeout=60)
    except Exception as exc:
        ws.close()
        return f"no reply ({type(exc).__name__})"
    ws.close()
    return "barge-in" if n % 3 == 2 else "answered"


def run_one(server: ServerThread, n: int, pcm: bytes, speed: float, results: list[str]) -> None:
    results.append(conversation(server, n, pcm, speed))


def sample(server: ServerThread) -> tuple[float, float, float]:
    with urllib.request.urlopen(server.http("/metrics"), timeout=10) as response:
        body = response.read().decode()

    def metric(name: str) -> float:
        found = re.search(rf"^{name} (\S+)$", body, re.M)
        return float(found.group(1)) if found else float("nan")

    return (
        metric("harken_process_resident_bytes") / 1e6,
        metric("harken_llm_kv_snapshots"),
        metric("harken_sessions_suspended"),
    )


def record(server: ServerThread, curve: list[float], label: str) -> None:
    """Sample the server 0.3 s after a step, add its RSS to ``curve`` and print the line."""
    time.sleep(0.3)
    rss, snapshots, suspended = sample(server)
    curve.append(rss)
    print(
        f"{label} rss {rss:8.1f} MB  snapshots {snapshots:3.0f}  suspended {suspended:.0f}",
        flush=True,
    )


def wait_ready(server: ServerThread) -> None:
    for _ in range(600):
        try:
            with urllib.request.urlopen(server.http("/healthz"), timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the server did not get ready")


def summary(label: str, curve: list[float], warmup: int) -> None:
    after = curve[warmup:]
    if len(after) < 4:
        print(f"{label}: too few points after the warm-up")
        return
    half = after[len(after) // 2 :]
    slope = np.polyfit(np.arange(len(half)), np.array(half), 1)[0]
    growth = (after[-1] - after[0]) / after[0] * 100
    print(
        f"{label}: RSS {after[0]:.1f} -> {after[-1]:.1f} MB after the warm-up ({growth:+.2f} %), "
        f"max {max(after):.1f}; slope over the last half {slope:+.3f} MB per step"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sequential", type=int, default=40)
    parser.add_argument("--concurrent", type=int, default=10, help="rounds of four at once")
    parser.add_argument("--warmup", type=int, default=6, help="steps left out of the summary")
    parser.add_argument("--speed", type=float, default=1.0, help="audio sent at X times real time")
    parser.add_argument("--clip", choices=("librivox", "goforward"), default="librivox")
    args = parser.parse_args()
    print(
        f"# soak: {platform.processor() or platform.machine()}, {time.strftime('%Y-%m-%d %H:%M')}"
    )
    clip = librivox()[1].samples if args.clip == "librivox" else goforward().samples
    outcomes: Counter[str] = Counter()
    began = time.monotonic()
    silence = np.zeros(16000, np.int16)
    pcm = np.concatenate([silence[:8000], clip, silence, silence]).tobytes()
    server = ServerThread(harken_config(providers="embedded", resume_window=2.0)).start()
    try:
        wait_ready(server)
        print(f"start: rss {sample(server)[0]:.1f} MB")
        curve: list[float] = []
        for n in range(args.sequential):
            how = conversation(server, n, pcm, args.speed)
            outcomes[how] += 1
            record(server, curve, f"seq {n:4d} {how:10s}")
        summary("one at a time", curve, args.warmup)
        curve = []
        for r in range(args.concurrent):
            base = 10_000 + 4 * r
            results: list[str] = []
            threads = [
                threading.Thread(target=run_one, args=(server, base + k, pcm, args.speed, results))
                for k in range(4)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(180)
            outcomes.update(results)
            record(server, curve, f"four {r:3d} {','.join(sorted(results)):40s}")
        summary("four at a time", curve, min(args.warmup, max(len(curve) // 4, 1)))
        time.sleep(3)  # dropped sessions expire (resume_window 2 s)
        rss, snapshots, suspended = sample(server)
        print(
            f"end (3 s idle): rss {rss:.1f} MB, snapshots {snapshots:.0f}, "
            f"suspended {suspended:.0f}"
        )
        minutes = (time.monotonic() - began) / 60
        print(f"outcomes: {dict(sorted(outcomes.items()))} in {minutes:.1f} min")
        print(json.dumps({"sequential": args.sequential, "rounds_of_four": args.concurrent}))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
