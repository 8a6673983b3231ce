"""A healthy canary conversation beside one hostile session at a time (issue 15).

The server runs in this process with the default embedded stack. The **canary** is one
conversation taking turns on a schedule, alternately typed (``InjectUserMessage``, timed from
the send) and spoken (a real recording streamed at real time with silence after it, timed from
the end of the speech), each to the first agent audio frame; it waits for ``AgentAudioDone``
(or 30 s: the turn counts as unanswered) and a pause before the next turn. It runs alone, then
beside each **hostile** session in turn:

* ``context``: Settings with a 10,000-message ``agent.context`` (a ~0.5 MB frame), then typed
  turns one after the other;
* ``prompt``: Settings with a 1 MB ``think.prompt`` (just under the 1 MiB frame limit), then
  typed turns;
* ``inject``: a 200 KB ``InjectAgentMessage``, then the longest injections the server accepts,
  queued one after the other (a session that makes the server speak for hours);
* ``stalled``: a client that asks for a long spoken answer and never reads (its session is
  closed after ``write_timeout``).

Per phase: the canary's reply latency (p50, max), unanswered turns, the ratio of its p50 to the
quiet one (goal: at most 2x, none unanswered), what the hostile client was told, and the longest
lane step of each kind of work (goal: ~0.3 s at most).

Usage: python benchmarks/hostile_bench.py [--turns N]
"""

from __future__ import annotations

import argparse
import json
import platform
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from conftest import SETTINGS, ServerThread, harken_config, open_ws, recv_json, start_session
from harken.engines.lane import shared_lane
from speech import goforward

FRAME = 640  # 20 ms of 16 kHz linear16


def canary_settings() -> dict[str, Any]:
    settings: dict[str, Any] = json.loads(json.dumps(SETTINGS))
    settings["agent"]["think"] = {
        "provider": settings["agent"]["think"]["provider"],
        "prompt": "You are a terse voice assistant. Answer in one short sentence.",
    }
    return settings


def first_audio(ws: Any, timeout: float) -> float | None:
    """Seconds until the next binary frame (None: none in ``timeout``)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        frame = ws.recv(timeout=max(0.01, timeout - (time.monotonic() - start)))
        if isinstance(frame, bytes):
            return time.monotonic()
    return None


def until_done(ws: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = ws.recv(timeout=max(0.01, deadline - time.monotonic()))
        if isinstance(frame, str) and json.loads(frame)["type"] == "AgentAudioDone":
            return True
    return False


def stream(ws: Any, pcm: bytes, stop: threading.Event) -> None:
    start = time.monotonic()
    for i, offset in enumerate(range(0, len(pcm), FRAME)):
        if stop.is_set():
            return
        ws.send(pcm[offset : offset + FRAME])
        delay = start + (i + 1) * 0.02 - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def canary(server: ServerThread, turns: int, speech: np.ndarray) -> tuple[list[float], int]:
    """The canary's reply latencies (seconds) and how many turns went unanswered."""
    ws = start_session(server, settings=canary_settings())
    latencies: list[float] = []
    unanswered = 0
    silence = np.zeros(16000 * 3, np.int16)
    pcm = np.concatenate([speech, silence]).tobytes()
    speech_seconds = len(speech) / 16000
    try:
        for turn in range(turns):
            try:
                if turn % 2 == 0:
                    sent = time.monotonic()
                    ws.send(json.dumps({"type": "InjectUserMessage", "content": f"Hi {turn}!"}))
                    heard = first_audio(ws, 30)
                else:
                    stop = threading.Event()
                    sender = threading.Thread(target=stream, args=(ws, pcm, stop))
                    sent = time.monotonic() + speech_seconds
                    sender.start()
                    heard = first_audio(ws, 30)
                    stop.set()
                    sender.join()
                if heard is None or not until_done(ws, 30):
                    unanswered += 1
                else:
                    latencies.append(heard - sent)
            except TimeoutError:
                unanswered += 1
            time.sleep(1.0)
    finally:
        ws.close()
    return latencies, unanswered


def read(
    ws: Any,
    stop: threading.Event,
    told: list[str],
    until: tuple[str, ...] = (),
    seconds: float = 1e9,
) -> None:
    """Read (noting Warnings, Errors and refusals) until ``stop``, a message in ``until``, or
    ``seconds``."""
    deadline = time.monotonic() + seconds
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            frame = ws.recv(timeout=0.5)
        except TimeoutError:
            continue
        if isinstance(frame, str):
            kind = json.loads(frame)
            if kind["type"] in ("Warning", "Error", "InjectionRefused"):
                told.append(kind.get("code") or kind["type"])
            if kind["type"] in until:
                return


def typed_turns(ws: Any, stop: threading.Event) -> list[str]:
    told: list[str] = []
    while not stop.is_set():
        ws.send(json.dumps({"type": "InjectUserMessage", "content": "Tell me a long story."}))
        read(ws, stop, told, ("AgentAudioDone", "Error"), 60)
    return told


def hostile_context(server: ServerThread, stop: threading.Event) -> list[str]:
    settings = canary_settings()
    history = [{"role": "user", "content": f"Note {i}: remember this."} for i in range(10_000)]
    settings["agent"]["context"] = {"messages": history}
    return hostile_settings(server, settings, stop)


def hostile_prompt(server: ServerThread, stop: threading.Event) -> list[str]:
    settings = canary_settings()
    settings["agent"]["think"]["prompt"] = "You are helpful. " * 58_000  # ~1 MB
    return hostile_settings(server, settings, stop)


def hostile_settings(
    server: ServerThread, settings: dict[str, Any], stop: threading.Event
) -> list[str]:
    ws = open_ws(server)
    recv_json(ws)  # Welcome
    ws.send(json.dumps(settings))
    told = [
        m.get("code") or m["type"]
        for m in _until(ws, "SettingsApplied")
        if m["type"] != "SettingsApplied"
    ]
    try:
        return told + typed_turns(ws, stop)
    finally:
        ws.close()


def _until(ws: Any, kind: str) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    while not seen or seen[-1]["type"] not in (kind, "Error"):
        seen.append(recv_json(ws, 60))
    return seen


def hostile_inject(server: ServerThread, stop: threading.Event) -> list[str]:
    ws = start_session(server, settings=canary_settings())
    told: list[str] = []
    try:
        ws.send(json.dumps({"type": "InjectAgentMessage", "message": "word " * 40_000}))
        longest = server.config.max_message_chars
        story = ("The river ran past the mill and on to the sea. " * 1000)[: longest - 1]
        for _ in range(3):
            ws.send(
                json.dumps({"type": "InjectAgentMessage", "message": story, "behavior": "queue"})
            )
        read(ws, stop, told)
    finally:
        ws.close()
    return told


def hostile_stalled(server: ServerThread, stop: threading.Event) -> list[str]:
    ws = start_session(server, settings=canary_settings())
    story = ("The river ran past the mill and on to the sea. " * 1000)[:19_000]
    ws.send(json.dumps({"type": "InjectAgentMessage", "message": story}))
    ws.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stop.wait()  # never reads
    closed = ws.protocol.state.name
    ws.socket.close()
    return [f"socket {closed.lower()} at the end"]


HOSTILE: dict[str, Callable[[ServerThread, threading.Event], list[str]]] = {
    "context": hostile_context,
    "prompt": hostile_prompt,
    "inject": hostile_inject,
    "stalled": hostile_stalled,
}


def run_hostile(name: str, server: ServerThread, stop: threading.Event, told: list[str]) -> None:
    told.extend(HOSTILE[name](server, stop))


def longest_steps() -> str:
    """The longest lane step of each kind of work since the last call (then forgotten)."""
    lane = shared_lane()
    kinds = sorted(lane.longest.items(), key=lambda item: -item[1])
    lane.longest.clear()
    return ", ".join(f"{what or '-'} {seconds:.2f} s" for what, seconds in kinds[:5])


def report(label: str, latencies: list[float], unanswered: int, quiet: float | None) -> float:
    p50 = statistics.median(latencies) if latencies else float("nan")
    ratio = f"{p50 / quiet:.2f}x quiet" if quiet else "-"
    print(
        f"{label:8s} canary p50 {p50 * 1000:6.0f} ms, "
        f"max {max(latencies, default=0) * 1000:6.0f} ms, "
        f"{len(latencies)} answered, {unanswered} unanswered, {ratio}",
        flush=True,
    )
    print(f"         longest lane steps: {longest_steps()}", flush=True)
    return p50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--turns", type=int, default=8, help="canary turns per phase")
    parser.add_argument("phases", nargs="*", default=list(HOSTILE), help=", ".join(HOSTILE))
    args = parser.parse_args()
    unknown = set(args.phases) - set(HOSTILE)
    if unknown:
        parser.error(f"unknown phases {sorted(unknown)}; choose from {', '.join(HOSTILE)}")
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"# hostile neighbours: {platform.machine()}, {stamp}")
    speech = goforward().samples
    server = ServerThread(harken_config(providers="embedded")).start()
    try:
        time.sleep(1)
        canary(server, 2, speech)  # warm-up
        longest_steps()
        quiet = report("quiet", *canary(server, args.turns, speech), None)
        for name in args.phases:
            stop = threading.Event()
            told: list[str] = []
            hostile = threading.Thread(target=run_hostile, args=(name, server, stop, told))
            hostile.start()
            time.sleep(2.0)  # the hostile session is under way
            latencies, unanswered = canary(server, args.turns, speech)
            stop.set()
            hostile.join(60)
            report(name, latencies, unanswered, quiet)
            print(f"         the hostile client was told: {sorted(set(told)) or 'nothing'}")
            time.sleep(3.0)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
