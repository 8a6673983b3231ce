"""Capacity of one harken server process: concurrent sessions streaming audio at real time.

What it does
------------
1. Starts ``harken serve --providers testing`` in its own process (no models: this measures the
   server, the pump and the session, not inference).
2. For each N in the ramp, starts two client processes holding N/2 sessions each. Every session
   sends Settings (16 kHz linear16 in), then streams 20 ms frames (640 bytes of low-level noise)
   on a real-time schedule, phases spread evenly over the 20 ms period.
3. Prints, per N: frame-handling lag p50/p99, the server's own histogram p50/p99, client send
   lateness p99, the CPU used by the server and by the clients, and the server's CPU time per
   20 ms audio frame (steadier than the p99 on a noisy machine: compare changes with it).
4. Memory per idle session: server RSS with 0 sessions vs N idle sessions after Settings.

How the lag is measured (honestly, from the client side)
--------------------------------------------------------
Once a second, right after sending audio frame k, each session sends an ``UpdatePrompt``. The
server handles a connection's frames strictly in order, so its ``PromptUpdated`` answer can
only leave after frame k (and everything before it) was handled. The lag sample is

    time PromptUpdated arrived at the client  -  time frame k was *scheduled* to be sent

so it includes client lateness, both socket hops, queueing in the server and the session's
work: an upper bound on the true frame-handling lag. "send late p99" shows how much of it is
the clients' own scheduling (on this 2-core machine the clients compete with the server for
CPU). The server-side column comes from ``harken_frame_handling_seconds`` on ``/metrics`` (frame
read off the socket until handled, queueing included), reported as the upper edge of the bucket
holding the quantile.

The clients are raw asyncio protocols (pre-masked frames, a minimal frame parser), so that they
cost far less CPU than the server they measure. Numbers are printed; nothing is asserted.

Usage: ``python benchmarks/capacity_bench.py [--ramp 100,200,400] [--seconds 6] [--idle 500]``

The machine is shared: other processes competing for the 2 cores show up directly as lag (the
server is descheduled), so check ``uptime`` first and compare runs made on a quiet machine.
A quiet run (2026-11, 2 cores, testing providers) gave p99 lag 4 ms at N=400 (server 63-66 %
of one core, about 32 us of CPU per 20 ms frame), 15-32 ms at N=500-600, and overload near
N=700; idle sessions cost about 24 KiB of server RSS each. With ``listen`` in every session's
Settings (the clients' default: decode, framing and the VAD on every frame), 2026-12-07 after
the frames cut by harken: p99 lag 12-50 ms at N=400 in 8 of 9 runs, 29-42 us per frame.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing as mp
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

from ws_frames import client_frame as frame
from ws_frames import split_frames

FRAME_SECONDS = 0.020
SLOTS = 20  # phases within one 20 ms period
PROBE_EVERY = 50  # frames (1 s)
SETTINGS = {
    "type": "Settings",
    "audio": {
        "input": {"encoding": "linear16", "sample_rate": 16000},
        "output": {"encoding": "linear16", "sample_rate": 16000},
    },
    "agent": {
        "listen": {"provider": {"type": "deepgram", "model": "nova-3"}},
        "think": {"provider": {"type": "open_ai", "model": "gpt-4o-mini"}, "prompt": "Bench."},
        "speak": {"provider": {"type": "deepgram", "model": "aura-2-thalia-en"}},
    },
}
PROBE = json.dumps({"type": "UpdatePrompt", "prompt": "Bench."}).encode()

# ------------------------------------------------------------------------------- raw client


class RawSession(asyncio.Protocol):
    """One websocket session: handshake, then parse server frames; records probe answers."""

    def __init__(self, host: str, port: int) -> None:
        self.request = (
            f"GET /v1/agent/converse HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n\r\n"
        ).encode()
        self.buffer = bytearray()
        self.open = asyncio.get_running_loop().create_future()
        self.applied = asyncio.get_running_loop().create_future()
        self.probes: deque[float] = deque()
        self.lags: list[float] = []
        self.transport: asyncio.Transport | None = None
        self.upgraded = False
        self.closed = False
        self.errors: list[str] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        for future in (self.open, self.applied):
            if not future.done():
                future.set_exception(ConnectionError("closed"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self.buffer[:12])
            del self.buffer[: end + 4]
            self.upgraded = True
            if b" 101" not in status:
                self.open.set_exception(ConnectionError(status.decode(errors="replace")))
                return
            self.open.set_result(None)
        self._frames()

    def _frames(self) -> None:
        for opcode, payload in split_frames(self.buffer):
            self._frame(opcode, payload)

    def _frame(self, opcode: int, payload: bytes) -> None:
        assert self.transport is not None
        if opcode == 0x9:  # ping
            self.transport.write(frame(0xA, payload))
        elif opcode == 0x1:
            kind = json.loads(payload).get("type")
            if kind == "SettingsApplied" and not self.applied.done():
                self.applied.set_result(None)
            elif kind == "PromptUpdated" and self.probes:
                self.lags.append(time.monotonic() - self.probes.popleft())
            elif kind == "Error":
                self.errors.append(payload.decode())


@dataclass
class WorkerResult:
    lags: list[float] = field(default_factory=list)
    late: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    cpu: float = 0.0
    server_cpu: float = 0.0
    connected: int = 0


def cpu_seconds(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/stat") as handle:
        parts = handle.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


async def open_sessions(port: int, count: int) -> list[RawSession]:
    loop = asyncio.get_running_loop()
    sessions: list[RawSession] = []
    settings = frame(0x1, json.dumps(SETTINGS).encode())
    for start in range(0, count, 50):
        batch = []
        for _ in range(min(50, count - start)):
            _, proto = await loop.create_connection(
                lambda: RawSession("127.0.0.1", port), "127.0.0.1", port
            )
            batch.append(proto)
        await asyncio.gather(*(s.open for s in batch))
        for s in batch:
            assert s.transport is not None
            s.transport.write(settings)
        await asyncio.gather(*(s.applied for s in batch))
        sessions.extend(batch)
    return sessions


async def stream(
    port: int, count: int, warmup: float, seconds: float, server_pid: int
) -> WorkerResult:
    sessions = await open_sessions(port, count)
    rng = random.Random(count)
    noise = bytes(
        rng.randrange(-60, 60) & 0xFF if i % 2 == 0 else 0xFF * (rng.random() < 0.5)
        for i in range(640)
    )
    audio, probe = frame(0x2, noise), frame(0x1, PROBE)
    slots: list[list[RawSession]] = [[] for _ in range(SLOTS)]
    for index, session in enumerate(sessions):
        slots[index % SLOTS].append(session)
    result = WorkerResult(connected=len(sessions))
    t0 = time.monotonic() + 0.05
    measure_from, end = t0 + warmup, t0 + warmup + seconds
    cpu_start: float | None = None
    server_start = 0.0
    k, wall = 0, time.monotonic()
    while True:
        for slot in range(SLOTS):
            due = t0 + k * FRAME_SECONDS + slot * FRAME_SECONDS / SLOTS
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.monotonic()
            measuring = measure_from <= due < end
            if measuring:
                result.late.append(now - due)
            for session in slots[slot]:
                if session.closed or session.transport is None:
                    continue
                session.transport.write(audio)
                if k % PROBE_EVERY == slot % PROBE_EVERY and measuring:
                    session.probes.append(due)
                    session.transport.write(probe)
        if cpu_start is None and time.monotonic() >= measure_from:
            cpu_start, server_start, wall = cpu_seconds(), cpu_seconds(server_pid), time.monotonic()
        k += 1
        if t0 + k * FRAME_SECONDS >= end:
            break
    elapsed = time.monotonic() - wall
    result.cpu = (cpu_seconds() - (cpu_start or 0.0)) / elapsed
    result.server_cpu = (cpu_seconds(server_pid) - server_start) / elapsed
    await asyncio.sleep(0.5)  # let the last probe answers arrive
    for session in sessions:
        result.lags.extend(session.lags)
        result.errors.extend(session.errors)
        if session.transport is not None:
            session.transport.abort()
    return result


def worker(
    port: int, count: int, warmup: float, seconds: float, pid: int, pipe: Connection
) -> None:
    try:
        pipe.send(asyncio.run(stream(port, count, warmup, seconds, pid)))
    except Exception as exc:
        pipe.send(WorkerResult(errors=[f"worker failed: {exc!r}"]))


async def hold_idle(port: int, count: int, hold: float, pipe: Connection) -> None:
    sessions = await open_sessions(port, count)
    pipe.send(len(sessions))
    await asyncio.sleep(hold)
    for session in sessions:
        if session.transport is not None:
            session.transport.abort()


def idle_worker(port: int, count: int, hold: float, pipe: Connection) -> None:
    asyncio.run(hold_idle(port, count, hold, pipe))


# ------------------------------------------------------------------------------- server side


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "HARKEN_MAX_SESSIONS": "10000",
        "HARKEN_IDLE_TIMEOUT": "600",
        "HARKEN_LOG_LEVEL": "warning",
    }
    cmd = [sys.executable, "-m", "harken", "serve", "--port", str(port), "--providers", "testing"]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
                if response.status == 200:
                    return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not become healthy")


def histogram(port: int) -> dict[float, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    pattern = r'harken_frame_handling_seconds_bucket\{le="([^"]+)"\} ([0-9.e+]+)'
    return {float(le): float(v) for le, v in re.findall(pattern, text)}


def bucket_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    deltas = sorted((le, after[le] - before.get(le, 0.0)) for le in after)
    total = deltas[-1][1] if deltas else 0.0
    if total <= 0:
        return float("nan")
    for le, count in deltas:
        if count >= q * total:
            return le
    return float("inf")


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_step(port: int, pid: int, n: int, warmup: float, seconds: float) -> tuple[str, float]:
    pipes, procs = [], []
    before = histogram(port)
    for share in (n - n // 2, n // 2):
        if share == 0:
            continue
        parent, child = mp.Pipe(duplex=False)
        proc = mp.Process(target=worker, args=(port, share, warmup, seconds, pid, child))
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    results: list[WorkerResult] = [p.recv() for p in pipes]
    server_cpu = results[0].server_cpu
    for proc in procs:
        proc.join()
    after = histogram(port)
    lags = [x for r in results for x in r.lags]
    late = [x for r in results for x in r.late]
    errors = [e for r in results for e in r.errors]
    p99 = quantile(lags, 0.99)
    row = (
        f"{n:>5} {sum(r.connected for r in results):>5} {len(lags):>7} "
        f"{quantile(lags, 0.5) * 1000:>8.1f} {p99 * 1000:>8.1f} "
        f"{bucket_quantile(before, after, 0.5) * 1000:>8.1f} "
        f"{bucket_quantile(before, after, 0.99) * 1000:>8.1f} "
        f"{quantile(late, 0.99) * 1000:>8.1f} {server_cpu * 100:>7.0f}% "
        f"{server_cpu * FRAME_SECONDS / n * 1e6:>7.1f} "
        f"{statistics.fmean(r.cpu for r in results) * 100:>6.0f}% "
        f"{len(errors):>4}"
    )
    if errors:
        row += f"  first error: {errors[0][:80]}"
    return row, p99


def idle_memory(port: int, pid: int, n: int) -> str:
    parent, child = mp.Pipe(duplex=False)
    proc = mp.Process(target=idle_worker, args=(port, 1, 1.0, child))
    proc.start()
    parent.recv()
    proc.join()
    time.sleep(1.0)
    base = rss_kb(pid)
    parent, child = mp.Pipe(duplex=False)
    proc = mp.Process(target=idle_worker, args=(port, n, 6.0, child))
    proc.start()
    held = parent.recv()
    time.sleep(2.0)
    loaded = rss_kb(pid)
    proc.join()
    per = (loaded - base) / max(held, 1)
    return (
        f"idle sessions: {held}; server RSS {base / 1024:.1f} MiB -> {loaded / 1024:.1f} MiB; "
        f"{per:.0f} KiB per idle session (target <= 200 KB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ramp", default="50,100,200,300,400,500,600,800")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--idle", type=int, default=500)
    parser.add_argument("--keep-going", action="store_true", help="do not stop at p99 > 50 ms")
    args = parser.parse_args()
    port = free_port()
    server = start_server(port)
    print(f"server pid {server.pid} on 127.0.0.1:{port}; cores: {os.cpu_count()}")
    try:
        print(idle_memory(port, server.pid, args.idle))
        print()
        print(
            "    N  conn  probes  lag p50  lag p99  srv p50  srv p99 late p99  srv CPU "
            "us/frame  client errs"
        )
        print("                      (ms)     (ms)     (ms)     (ms)     (ms)          (CPU)")
        for n in (int(x) for x in args.ramp.split(",")):
            row, p99 = run_step(port, server.pid, n, args.warmup, args.seconds)
            print(row, flush=True)
            if p99 > 0.050 and not args.keep_going:
                print(f"p99 lag above 50 ms at N={n}; stopping the ramp")
                break
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
