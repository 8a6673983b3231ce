"""Issue 13's benchmark: harken replicas behind nginx, and one shared llama-server, on loopback.

Everything is a real process: ``harken serve --providers testing`` replicas (configured through
``HARKEN_*``; the testing providers make the server, not the models, the thing measured),
Debian's nginx running deploy/nginx/harken.conf with only its addresses and ports changed (as
tests/test_deploy.py runs it), and llama.cpp's ``llama-server`` (tests/model_servers.py).
The clients are raw asyncio WebSockets (benchmarks/scaleout_wire.py) in this process. Numbers
are printed; nothing is asserted. Sections (``--sections``, default all):

1. **overhead**: ``--sessions`` (50) sessions stream 20 ms frames of silence at real time for
   ``--seconds`` (20), once straight to the 3 replicas (round-robin) and once through nginx
   (least_conn), in the order direct, nginx, nginx, direct (``--rounds 2``) so that drift on the
   shared machine cancels. Every 200 ms each session sends ``UpdatePrompt`` right after an
   audio frame and times the ``PromptUpdated`` answer: the server handles a connection's
   messages in order, so that round trip covers the audio before it, both hops and the session's
   work. The first 2 s of each phase are not counted. Also: CPU (cores) of the replicas, of nginx
   (master and worker) and of the client, over the measured window.
2. **restart**: ``--restart-sessions`` (30) long sessions stream through nginx while a new one
   arrives every ``--arrival-ms`` (100) and lives 2 s. Each replica in turn: a few of its long
   sessions are given a slow reply (``InjectUserMessage "[slow] ..."``: the testing LLM and TTS
   wait 0.5 s a word and a chunk) and, once their AgentStartedSpeaking came, SIGTERM; wait for
   the exit; a new process on the same port; wait for /healthz 200; next. Long sessions that
   are closed reconnect through nginx at once (as the JavaScript SDK does after a 1001).
   Counted: failed handshakes (new and reconnecting sessions), drained sessions with
   ``Error SERVER_GOING_AWAY`` + close 1001, slow replies that ended (AgentAudioDone) before
   their 1001, sessions otherwise disturbed (closed another way, or a round trip over 1 s),
   SIGTERM-to-exit per replica, reconnect gap (1001 to the new session's SettingsApplied), and
   how many handshakes nginx passed on after a 503 (draining) or a refused connect (restarting).
3. **reload**: the same traffic (``--reload-sessions``, 50 long ones, arrivals), and two
   ``nginx -s reload`` (SIGHUP to the master, with a real change: least_conn <-> the session-id
   hash, as tests/test_deploy.py does): sessions interrupted, failed handshakes, round trips.
4. **full**: replica 0 with ``max_sessions`` = ``--full-cap`` (5), filled by direct sessions;
   ``--full-new`` (30) sessions through nginx, one every 50 ms, all kept open: client-visible
   failures, where they landed, handshake times, and nginx's retries after a 503 (access log).
5. **stalled**: a client with SO_RCVBUF 4 KiB that stops reading, then asks for a reply of
   about 5 minutes of audio (15 MB) (harken sends audio as fast as it is made). The replica's RSS
   (/proc/PID/status VmRSS, every 50 ms) before the request and at its peak until the
   replica closes the session (``write_timeout`` ``--write-timeout``, 3 s), the bytes queued in
   the kernel (client receive queue, server send queue, from ``ss``), and a streaming
   bystander's round trips meanwhile; straight to the replica and through nginx.
6. **model**: one ``llama-server --parallel 4 --threads 2`` (``--model``, the 0.5B by default)
   and 2 replicas (testing listen/speak) whose think route goes to it (``HARKEN_ENDPOINTS`` with
   ``slots = 4`` and ``max_tokens = 400`` as a bound on a looping answer,
   ``HARKEN_MODELS_THINK="open_ai/*=llm"``). After one warm-up question, one fresh session asks
   alone; then 4 fresh sessions, 2 per replica (direct), ask at the same moment for an answer of
   about ``--words`` (100) words. Per session: **first token** = LatencyReport
   ``ttt_token_latency`` (harken's own clock: its request to llama-server until the first
   streamed token), **first audio** = the client's ask to AgentStartedSpeaking, the reply's end
   (AgentAudioDone) and whether it is complete (AgentAudioDone came and the text ends a
   sentence). Tokens come from llama-server itself: its log (``print_timing``: prompt tokens
   evaluated and tokens generated per request) and ``/slots`` polled every 100 ms (each busy
   slot's ``n_decoded``). Throughput, 4 at once against 1 alone: (a) tokens/s summed over the
   slots while all of the round's requests decode at once (from /slots), the headline; (b) all
   tokens / (the ask to the last AgentAudioDone), which the longest answer dominates, as it
   ends alone; (c) the sum of each request's own decode rate (log).

Run from the repository root (about 3 minutes on 2 cores with the defaults)::

    .venv/bin/python benchmarks/scaleout.py [--sections overhead,restart,...] [--tiny] [--keep DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import os
import re
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scaleout_procs import (
    Cluster,
    cluster,
    cpu_seconds,
    http_get,
    machine_line,
    rss_kb,
)
from scaleout_table import ms, print_problems, quantile, table
from scaleout_wire import SETTINGS, Session, Streamer, connect, start

SECTIONS = ("overhead", "restart", "reload", "full", "stalled", "model")
PROBE_EVERY = 10  # frames: a round trip every 200 ms per session
WARMUP = 2.0  # seconds of each streaming phase not counted
DISTURBED_RTT = 1.0  # seconds: a round trip this long counts as a disturbance
SLOW_REPLY = "[slow] Tell me a story."  # ~6 words at 0.5 s each, then its slow audio
SHORT_LIFE = 2.0  # seconds an arriving session lives
STALL_SENTENCES = 1200  # ~0.27 s of testing TTS audio each: ~5 min, 15 MB at 24 kHz


# ------------------------------------------------------------------------------- numbers


def describe(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    return f"HTTP {status}" if status is not None else type(exc).__name__


def upgrades(access_log: str) -> int:
    """Requests nginx logged as upgraded (status 101): sessions, logged when they end."""
    return len(re.findall(r"^GET \S+ 101 ", access_log, re.MULTILINE))


def retries(access_log: str) -> Counter[str]:
    """Upgraded requests that nginx sent on to another replica, by the upstream statuses it got
    first ("503": full or draining; "502": the connect was refused, i.e. no process)."""
    found: Counter[str] = Counter()
    for statuses in re.findall(r'^GET \S+ 101 "[^"]*" "([^"]*), 101"$', access_log, re.MULTILINE):
        found[statuses] += 1
    return found


def rtts_of(sessions: Sequence[Session], since: float = 0.0) -> list[float]:
    return [rtt for s in sessions for sent, rtt in s.probes.rtts if sent >= since]


async def open_many(ports: Sequence[int], count: int) -> tuple[list[Session], list[str]]:
    """``count`` sessions, round-robin over ``ports``, 10 handshakes at a time."""
    gate = asyncio.Semaphore(10)

    async def one(index: int) -> Session | str:
        async with gate:
            try:
                return await start(ports[index % len(ports)])
            except (OSError, TimeoutError) as exc:
                return describe(exc)

    results = await asyncio.gather(*(one(i) for i in range(count)))
    opened = [r for r in results if isinstance(r, Session)]
    return opened, [r for r in results if isinstance(r, str)]


async def close_all(sessions: Sequence[Session]) -> None:
    await asyncio.gather(*(s.close() for s in sessions))


@dataclass
class Meter:
    """CPU (cores) of the replicas, nginx and this process from now to ``read()``."""

    pids: dict[str, list[int]]
    start: dict[str, float] = field(default_factory=dict)
    wall: float = 0.0

    def __post_init__(self) -> None:
        self.start = self._sample()
        self.wall = time.monotonic()

    def _sample(self) -> dict[str, float]:
        sample = {k: sum(cpu_seconds(p) for p in pids) for k, pids in self.pids.items()}
        sample["client"] = time.process_time()
        return sample

    def read(self) -> dict[str, float]:
        now, elapsed = self._sample(), max(time.monotonic() - self.wall, 1e-9)
        return {k: (now[k] - self.start[k]) / elapsed for k in now}


def meter(c: Cluster) -> Meter:
    return Meter({"replicas": [r.pid for r in c.replicas], "nginx": c.nginx_pids()})


# ------------------------------------------------------------------------------- 1: overhead


@dataclass
class Phase:
    path: str
    rtts: list[float]
    late: list[float]
    cpu: dict[str, float]
    opened: int
    failed: list[str]
    broken: int  # sessions that closed during the phase


async def stream_phase(c: Cluster, path: str, count: int, seconds: float) -> Phase:
    assert c.nginx is not None
    ports = c.ports if path == "direct" else [c.nginx.port]
    sessions, failed = await open_many(ports, count)
    streamer, stop = Streamer(PROBE_EVERY), asyncio.Event()
    for session in sessions:
        streamer.add(session)
    task = asyncio.create_task(streamer.run(stop, WARMUP + seconds + 5))
    await asyncio.sleep(WARMUP)
    usage, since, late_from = meter(c), time.monotonic(), len(streamer.late)
    await asyncio.sleep(seconds)
    cpu, late = usage.read(), streamer.late[late_from:]
    stop.set()
    await task
    await asyncio.sleep(0.3)  # the last answers
    broken = sum(1 for s in sessions if s.close_code is not None)
    await close_all(sessions)
    return Phase(path, rtts_of(sessions, since), late, cpu, len(sessions), failed, broken)


def phase_row(label: str, phases: Sequence[Phase]) -> list[object]:
    rtts = [x for p in phases for x in p.rtts]
    late = [x for p in phases for x in p.late]
    cpu = {k: sum(p.cpu[k] for p in phases) / len(phases) for k in phases[0].cpu}
    return [
        label,
        sum(p.opened for p in phases) // len(phases),
        len(rtts),
        ms(quantile(rtts, 0.5)),
        ms(quantile(rtts, 0.95)),
        ms(quantile(rtts, 0.99)),
        ms(max(rtts, default=float("nan"))),
        ms(quantile(late, 0.99)),
        f"{cpu['replicas']:.2f}",
        f"{cpu['nginx']:.2f}",
        f"{cpu['client']:.2f}",
        f"{sum(len(p.failed) for p in phases)}/{sum(p.broken for p in phases)}",
    ]


async def overhead(opts: argparse.Namespace, root: Path) -> None:
    order = ["direct", "nginx", "nginx", "direct"] * ((opts.rounds + 1) // 2)
    order = order[: 2 * opts.rounds] if opts.rounds > 1 else ["direct", "nginx"]
    phases: list[Phase] = []
    async with cluster(root / "overhead", 3) as c:
        for path in order:
            phases.append(await stream_phase(c, path, opts.sessions, opts.seconds))
            print(f"  [{path}: {len(phases[-1].rtts)} round trips]", flush=True)
        rss = {"nginx": sum(rss_kb(p) for p in c.nginx_pids()) / 1024}
        rss["replicas"] = sum(rss_kb(r.pid) for r in c.replicas) / 1024
        problems = c.problems()
    header = ["path", "sessions", "probes", "p50 ms", "p95 ms", "p99 ms", "max ms"]
    header += ["late p99 ms", "replicas CPU", "nginx CPU", "client CPU", "failed/closed"]
    rows = [phase_row(f"{n + 1}. {p.path}", [p]) for n, p in enumerate(phases)]
    direct = [p for p in phases if p.path == "direct"]
    balanced = [p for p in phases if p.path == "nginx"]
    rows += [phase_row("all direct", direct), phase_row("all nginx", balanced)]
    table(
        f"1. Balancer overhead: {opts.sessions} sessions x 20 ms frames, UpdatePrompt round trip "
        f"every 200 ms, {opts.seconds:g} s per phase (CPU in cores)",
        header,
        rows,
    )
    d = rtts_of_phases(direct)
    b = rtts_of_phases(balanced)
    print(
        f"  via nginx minus direct: p50 {diff(b, d, 0.5)} ms, p99 {diff(b, d, 0.99)} ms "
        "(goal <= +0.2 ms p50, <= +2 ms p99)"
    )
    print(
        f"  RSS at the end: nginx (master + worker) {rss['nginx']:.1f} MiB, "
        f"3 replicas {rss['replicas']:.1f} MiB"
    )
    print_problems(problems)


def rtts_of_phases(phases: Sequence[Phase]) -> list[float]:
    return [x for p in phases for x in p.rtts]


def diff(a: Sequence[float], b: Sequence[float], q: float) -> str:
    return f"{(quantile(a, q) - quantile(b, q)) * 1000:+.2f}"


# ------------------------------------------------------------------------------- traffic


@dataclass
class Traffic:
    """Long sessions kept up through nginx (reconnecting when closed) and short sessions
    arriving every ``every`` seconds, all streaming with probes."""

    port: int
    every: float
    streamer: Streamer = field(default_factory=lambda: Streamer(PROBE_EVERY))
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    live: dict[int, Session] = field(default_factory=dict)  # keeper index -> its session
    sessions: list[Session] = field(default_factory=list)  # every one that opened
    refused: list[str] = field(default_factory=list)  # arriving sessions that failed
    reconnect_failed: list[str] = field(default_factory=list)
    gaps: list[float] = field(default_factory=list)  # a close to the reconnect's SettingsApplied
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def begin(self, count: int) -> None:
        """Open the long sessions, start streaming and the arrivals."""
        self.tasks.append(asyncio.create_task(self.streamer.run(self.stop, 600)))
        for index in range(count):
            self.tasks.append(asyncio.create_task(self._keep(index)))
        deadline = time.monotonic() + 15
        while len(self.live) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self.tasks.append(asyncio.create_task(self._arrivals()))

    async def end(self) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks)
        await close_all(self.sessions)

    async def _open(self) -> Session:
        session = await start(self.port)
        self.sessions.append(session)
        self.streamer.add(session)
        return session

    async def _keep(self, index: int) -> None:
        closed_at: float | None = None
        while not self.stop.is_set():
            try:
                session = await self._open()
            except (OSError, TimeoutError) as exc:
                failures = self.reconnect_failed if closed_at is not None else self.refused
                failures.append(describe(exc))
                await asyncio.sleep(0.1)
                continue
            if closed_at is not None:
                applied = session.first("SettingsApplied")
                self.gaps.append((applied[0] if applied else time.monotonic()) - closed_at)
            session.tag, self.live[index] = "long", session
            await wait_either(session.ended, self.stop)
            self.streamer.remove(session)
            closed_at = session.closed_at or time.monotonic()

    async def _arrivals(self) -> None:
        arriving: list[asyncio.Task[None]] = []
        while not self.stop.is_set():
            arriving.append(asyncio.create_task(self._short()))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.every):
                    await self.stop.wait()
        await asyncio.gather(*arriving)

    async def _short(self) -> None:
        try:
            session = await self._open()
        except (OSError, TimeoutError) as exc:
            self.refused.append(describe(exc))
            return
        session.tag = "short"
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SHORT_LIFE):
                await session.ended.wait()
        self.streamer.remove(session)
        await session.close()

    def disturbed(self) -> list[str]:
        """Sessions closed neither by us nor with SERVER_GOING_AWAY + 1001, or with a round
        trip over DISTURBED_RTT."""
        found = []
        for s in self.sessions:
            worst = max((rtt for _, rtt in s.probes.rtts), default=0.0)
            if s.ended_by_server and not s.going_away:
                found.append(f"{s.tag} closed {s.close_code} {s.error_codes()}")
            elif worst > DISTURBED_RTT:
                found.append(f"{s.tag} round trip {worst:.2f} s")
        return found


async def wait_either(first: asyncio.Event, second: asyncio.Event) -> None:
    waits = {asyncio.create_task(first.wait()), asyncio.create_task(second.wait())}
    _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()


# ------------------------------------------------------------------------------- 2: restart


@dataclass
class Restart:
    name: str
    held: int  # sessions on the replica at SIGTERM (its /healthz)
    busy: list[Session]  # given a slow reply before the SIGTERM
    sigterm: float
    drain: float | None  # SIGTERM to exit (None: killed after the budget)
    ready: float  # new process to /healthz 200


async def start_replies(sessions: Sequence[Session]) -> list[Session]:
    """A slow reply in each; returns those whose AgentStartedSpeaking came."""
    now = time.monotonic()
    for session in sessions:
        session.marks["asked"] = now
        session.send({"type": "InjectUserMessage", "content": SLOW_REPLY})
    speaking = []
    for session in sessions:
        with contextlib.suppress(TimeoutError, ConnectionError):
            await session.wait_for("AgentStartedSpeaking", 10, since=now)
            speaking.append(session)
    return speaking


async def restart_one(
    c: Cluster, index: int, traffic: Traffic, opts: argparse.Namespace
) -> Restart:
    replica = c.replicas[index]
    mine = [s for s in traffic.live.values() if s.live and c.placement(s.request_id) == index]
    busy = await start_replies(mine[: opts.mid_reply])
    _, health = await http_get(f"http://127.0.0.1:{replica.port}/healthz")
    held = health.get("sessions", -1) if isinstance(health, dict) else -1
    sigterm = time.monotonic()
    replica.signal(signal.SIGTERM)
    drain = await replica.exit(opts.drain_timeout + 3 + 2 + 10)
    if drain is None:
        replica.kill()
    replica.start()
    ready = await replica.ready()
    return Restart(replica.name, held, busy, sigterm, drain, ready)


def drained_by(restart: Restart, sessions: Sequence[Session]) -> list[Session]:
    end = restart.sigterm + (restart.drain or 30.0) + 1.0
    return [
        s
        for s in sessions
        if s.going_away and s.closed_at is not None and restart.sigterm <= s.closed_at <= end
    ]


def finished_first(session: Session) -> bool:
    """The slow reply's AgentAudioDone came before the SERVER_GOING_AWAY."""
    done = session.first("AgentAudioDone", session.marks.get("asked", 0.0))
    error = session.first("Error")
    return done is not None and error is not None and done[0] <= error[0]


def restart_row(r: Restart, sessions: Sequence[Session]) -> list[object]:
    drained = drained_by(r, sessions)
    rest = [s.closed_at - r.sigterm for s in drained if s not in r.busy and s.closed_at]
    busy = [s.closed_at - r.sigterm for s in r.busy if s.going_away and s.closed_at]
    return [
        r.name,
        r.held,
        len(drained),
        f"{ms(quantile(rest, 0.5))} / {ms(max(rest, default=float('nan')))}",
        f"{sum(finished_first(s) for s in r.busy)}/{len(r.busy)}",
        f"{max(busy, default=float('nan')):.2f}",
        "killed" if r.drain is None else f"{r.drain:.2f}",
        f"{r.ready:.2f}",
    ]


async def restart(opts: argparse.Namespace, root: Path) -> None:
    env = {"HARKEN_DRAIN_TIMEOUT": str(opts.drain_timeout)}
    async with cluster(root / "restart", 3, env) as c:
        assert c.nginx is not None
        traffic = Traffic(c.nginx.port, opts.arrival_ms / 1000)
        await traffic.begin(opts.restart_sessions)
        await asyncio.sleep(3)
        started = time.monotonic()
        restarts = []
        for index in range(len(c.replicas)):
            restarts.append(await restart_one(c, index, traffic, opts))
            print(f"  [{restarts[-1].name} restarted]", flush=True)
            await asyncio.sleep(2)
        took = time.monotonic() - started
        await traffic.end()
        await asyncio.sleep(1)  # nginx logs an upgraded request when it ends
        log = c.nginx.log("access.log")
        problems = c.problems()
    report_restart(opts, traffic, restarts, took, log)
    print_problems(problems)


def report_restart(
    opts: argparse.Namespace,
    traffic: Traffic,
    restarts: Sequence[Restart],
    took: float,
    access_log: str,
) -> None:
    sessions = traffic.sessions
    table(
        f"2. Rolling restart through nginx: {opts.restart_sessions} long sessions + one new "
        f"every {opts.arrival_ms:g} ms (each {SHORT_LIFE:g} s), drain_timeout "
        f"{opts.drain_timeout:g} s, {took:.1f} s for all 3",
        [
            "replica",
            "held",
            "got 1001",
            "at rest: 1001 after SIGTERM p50/max ms",
            "slow reply done before 1001",
            "slow: 1001 after SIGTERM s",
            "SIGTERM->exit s",
            "restart->healthz 200 s",
        ],
        [restart_row(r, sessions) for r in restarts],
    )
    drained = [s for s in sessions if s.going_away]
    ended = [s for s in sessions if s.ended_by_server]
    short = [s for s in sessions if s.tag == "short"]
    disturbed = traffic.disturbed()
    rtts = rtts_of(sessions)
    print(
        f"  new sessions: {len(short) + len(traffic.refused)} handshakes, "
        f"{len(traffic.refused)} failed {sorted(set(traffic.refused))} (goal 0); reconnects "
        f"after a close: {len(traffic.gaps) + len(traffic.reconnect_failed)}, "
        f"{len(traffic.reconnect_failed)} failed"
    )
    print(
        f"  sessions closed by the servers: {len(ended)}; with SERVER_GOING_AWAY + 1001: "
        f"{len(drained)} ({100 * len(drained) / max(len(ended), 1):.0f} %, goal 100 %)"
    )
    print(f"  otherwise disturbed: {len(disturbed)} {disturbed[:5]} (goal 0)")
    print(
        f"  reconnect gap (1001 -> SettingsApplied through nginx): p50 "
        f"{ms(quantile(traffic.gaps, 0.5))} ms, max {ms(max(traffic.gaps, default=0.0))} ms; "
        f"round trips over the run: p50 {ms(quantile(rtts, 0.5))} ms, p99 "
        f"{ms(quantile(rtts, 0.99))} ms, max {ms(max(rtts, default=0.0))} ms ({len(rtts)})"
    )
    tried = retries(access_log)
    print(
        f"  nginx: {upgrades(access_log)} sessions upgraded, {sum(tried.values())} of them after "
        f"trying another replica first {dict(tried)} (503: draining, 502: no process)"
    )


# ------------------------------------------------------------------------------- 3: reload


async def reload(opts: argparse.Namespace, root: Path) -> None:
    async with cluster(root / "reload", 3) as c:
        assert c.nginx is not None
        traffic = Traffic(c.nginx.port, opts.arrival_ms / 1000)
        await traffic.begin(opts.reload_sessions)
        await asyncio.sleep(3)
        reloads = []
        for hashed in (True, False):
            before = len(c.nginx_pids())
            at = time.monotonic()
            await asyncio.to_thread(c.nginx.reload, hashed=hashed)
            reloads.append((at, time.monotonic() - at, before, len(c.nginx_pids())))
            await asyncio.sleep(4)
        workers_after = len(c.nginx_pids()) - 1
        await traffic.end()
        problems = c.problems()
    report_reload(opts, traffic, reloads, workers_after, problems)


def report_reload(
    opts: argparse.Namespace,
    traffic: Traffic,
    reloads: Sequence[tuple[float, float, int, int]],
    workers_after: int,
    problems: Sequence[str],
) -> None:
    rows = []
    for n, (at, took, before, after) in enumerate(reloads):
        near = [rtt for s in traffic.sessions for sent, rtt in s.probes.rtts if at <= sent < at + 2]
        rows.append(
            [
                f"{n + 1}: {'least_conn -> hash' if n == 0 else 'hash -> least_conn'}",
                ms(took),
                f"{before} -> {after}",
                ms(quantile(near, 0.99)),
                ms(max(near, default=float("nan"))),
            ]
        )
    table(
        f"3. nginx reload (SIGHUP, config changed) under {opts.reload_sessions} long sessions + "
        f"one new every {opts.arrival_ms:g} ms",
        ["reload", "new workers after ms", "nginx processes", "RTT p99 ms (2 s after)", "max ms"],
        rows,
    )
    interrupted = [s for s in traffic.sessions if s.ended_by_server]
    rtts = rtts_of(traffic.sessions)
    print(
        f"  sessions interrupted: {len(interrupted)} (goal 0); disturbed: "
        f"{len(traffic.disturbed())}; failed handshakes: {len(traffic.refused)} "
        f"{sorted(set(traffic.refused))}; round trips: p50 {ms(quantile(rtts, 0.5))} ms, p99 "
        f"{ms(quantile(rtts, 0.99))} ms, max {ms(max(rtts, default=0.0))} ms"
    )
    print(
        f"  nginx workers 4 s after the second reload: {workers_after} (an old worker stays "
        "while it holds upgraded connections)"
    )
    print_problems(problems)


# ------------------------------------------------------------------------------- 4: full


async def timed_start(port: int) -> tuple[Session | None, float, str]:
    began = time.monotonic()
    try:
        session = await connect(port)
    except (OSError, TimeoutError) as exc:
        return None, time.monotonic() - began, describe(exc)
    took = time.monotonic() - began
    try:
        session.send(SETTINGS)
        await session.wait_for("SettingsApplied", 5)
    except (OSError, TimeoutError) as exc:
        session.abort()
        return None, took, f"Settings: {describe(exc)}"
    return session, took, ""


async def full(opts: argparse.Namespace, root: Path) -> None:
    cap = {"HARKEN_MAX_SESSIONS": str(opts.full_cap)}
    async with cluster(root / "full", 3, first_env=cap) as c:
        assert c.nginx is not None
        streamer, stop = Streamer(PROBE_EVERY), asyncio.Event()
        task = asyncio.create_task(streamer.run(stop, 120))
        filled, _ = await open_many([c.replicas[0].port], opts.full_cap)
        results = []
        for _ in range(opts.full_new):
            results.append(await timed_start(c.nginx.port))
            if results[-1][0] is not None:
                streamer.add(results[-1][0])
            await asyncio.sleep(0.05)
        await asyncio.sleep(1)
        counts = [await healthz_sessions(r.port) for r in c.replicas]
        full_health = await http_get(f"http://127.0.0.1:{c.replicas[0].port}/healthz")
        stop.set()
        await task
        opened = [s for s, _, _ in results if s is not None]
        await close_all([*filled, *opened])
        await asyncio.sleep(1)  # nginx logs an upgraded request when it ends
        log = c.nginx.log("access.log")
        problems = c.problems()
    report_full(opts, filled, results, counts, full_health, log, problems)


async def healthz_sessions(port: int) -> int:
    _, body = await http_get(f"http://127.0.0.1:{port}/healthz")
    return int(body.get("sessions", -1)) if isinstance(body, dict) else -1


def report_full(
    opts: argparse.Namespace,
    filled: Sequence[Session],
    results: Sequence[tuple[Session | None, float, str]],
    counts: Sequence[int],
    full_health: tuple[int, Any],
    log: str,
    problems: Sequence[str],
) -> None:
    failures = [why for s, _, why in results if s is None]
    times = [t for s, t, _ in results if s is not None]
    tried = retries(log)
    table(
        f"4. A full replica skipped: replica0 max_sessions={opts.full_cap} holding "
        f"{len(filled)} direct sessions; {opts.full_new} new sessions through nginx, 50 ms apart",
        [
            "new sessions",
            "client-visible failures",
            "sessions per replica (healthz)",
            "handshake p50 ms",
            "p99 ms",
            "max ms",
            "upgrades retried by nginx",
        ],
        [
            [
                len(results),
                f"{len(failures)} {sorted(set(failures))}",
                " / ".join(map(str, counts)),
                ms(quantile(times, 0.5)),
                ms(quantile(times, 0.99)),
                ms(max(times, default=float("nan"))),
                f"{sum(tried.values())} of {upgrades(log)} {dict(tried)}",
            ]
        ],
    )
    print(f"  replica0 /healthz while full: {full_health[0]} {full_health[1]}")
    print_problems(problems)


# ------------------------------------------------------------------------------- 5: stalled


def queued_bytes(session: Session) -> int:
    """Bytes waiting in the client socket's receive queue (FIONREAD)."""
    assert session.transport is not None
    sock = session.transport.get_extra_info("socket")
    buf = fcntl.ioctl(sock.fileno(), termios.FIONREAD, struct.pack("i", 0))
    return int(struct.unpack("i", buf)[0])


def send_queue(port: int) -> int:
    """The sum of Send-Q over established TCP sockets whose local port is ``port`` (ss)."""
    out = subprocess.run(
        ["ss", "-tnH", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        timeout=5,
        check=False,
    ).stdout
    return sum(int(line.split()[1]) for line in out.splitlines() if line.split())


async def stall_counter(port: int) -> float:
    _, text = await http_get(f"http://127.0.0.1:{port}/metrics")
    match = re.search(r'harken_errors_total\{code="CLIENT_NOT_READING"\} ([0-9.]+)', str(text))
    return float(match.group(1)) if match else 0.0


@dataclass
class Stall:
    path: str
    rss_before: float  # MiB
    rss_peak: float
    rss_after: float
    closed_after: float | None  # seconds from the request to the server's close
    client_queue: int  # bytes
    server_queue: int
    nginx_queue: int
    received: int  # bytes the client read once it resumed
    close_code: int | None
    bystander_max: float


async def stall_once(c: Cluster, path: str, timeout: float) -> Stall:
    replica = c.replicas[0]
    assert c.nginx is not None
    port = replica.port if path == "direct" else c.nginx.port
    bystander = await start(port)
    streamer, stop = Streamer(PROBE_EVERY), asyncio.Event()
    streamer.add(bystander)
    task = asyncio.create_task(streamer.run(stop, 60))
    stalled = await start(port, rcvbuf=4096)
    await asyncio.sleep(1.0)
    before = rss_kb(replica.pid) / 1024
    counted = await stall_counter(replica.port)
    assert stalled.transport is not None
    stalled.transport.pause_reading()
    words = " ".join(f"Sentence number {n} is here." for n in range(STALL_SENTENCES))
    asked = time.monotonic()
    stalled.send({"type": "InjectUserMessage", "content": words})
    stats = await watch_stall(c, stalled, asked, counted, timeout)
    await asyncio.sleep(1.0)
    after = rss_kb(replica.pid) / 1024
    stalled.transport.resume_reading()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(5):
            await stalled.ended.wait()
    stop.set()
    await task
    worst = max((rtt for _, rtt in bystander.probes.rtts), default=float("nan"))
    await close_all([bystander, stalled])
    return Stall(path, before, stats["peak"], after, stats["closed"], int(stats["client"]),
                 int(stats["server"]), int(stats["nginx"]), stalled.audio_bytes,
                 stalled.close_code, worst)  # fmt: skip


async def watch_stall(
    c: Cluster, stalled: Session, asked: float, counted: float, timeout: float
) -> dict[str, Any]:
    """Sample RSS every 50 ms until the replica counts the stalled client as closed; the
    kernel queues are read half-way through write_timeout after the send blocked."""
    replica = c.replicas[0]
    assert c.nginx is not None
    stats: dict[str, Any] = {"peak": 0.0, "closed": None, "client": 0, "server": 0, "nginx": 0}
    sampled_queues = False
    while time.monotonic() - asked < timeout:
        stats["peak"] = max(stats["peak"], rss_kb(replica.pid) / 1024)
        if not sampled_queues and time.monotonic() - asked > 1.5:
            stats["client"] = queued_bytes(stalled)
            stats["server"] = send_queue(replica.port)
            stats["nginx"] = send_queue(c.nginx.port)
            sampled_queues = True
        if await stall_counter(replica.port) > counted:
            stats["closed"] = time.monotonic() - asked
            break
        await asyncio.sleep(0.05)
    return stats


async def stalled(opts: argparse.Namespace, root: Path) -> None:
    env = {"HARKEN_WRITE_TIMEOUT": str(opts.write_timeout)}
    results = []
    async with cluster(root / "stalled", 1, env) as c:
        for path in ("direct", "nginx"):
            results.append(await stall_once(c, path, opts.write_timeout + 20))
        problems = c.problems()
    rows = [
        [
            r.path,
            f"{r.rss_before:.1f}",
            f"{r.rss_peak:.1f}",
            f"{r.rss_peak - r.rss_before:+.2f}",
            f"{r.rss_after:.1f}",
            "never" if r.closed_after is None else f"{r.closed_after:.2f}",
            f"{r.client_queue // 1024} / {r.server_queue // 1024} / {r.nginx_queue // 1024}",
            f"{r.received // 1024}",
            r.close_code,
            ms(r.bystander_max),
        ]
        for r in results
    ]
    table(
        f"5. Stalled client (SO_RCVBUF 4 KiB, reads nothing, asks for ~5 min of audio: 15 MB), "
        f"write_timeout {opts.write_timeout:g} s; RSS of the replica in MiB",
        [
            "path",
            "RSS before",
            "peak",
            "growth",
            "1 s after close",
            "closed after s",
            "queued KiB client/harken/nginx",
            "client read after KiB",
            "close code",
            "bystander max RTT ms",
        ],
        rows,
    )
    print("  goal: growth <= 5 MB; the session closed once a send makes no progress for "
          "write_timeout")  # fmt: skip
    print_problems(problems)


# ------------------------------------------------------------------------------- 6: model
# (in scaleout_model.py: it needs llama-server)


# ------------------------------------------------------------------------------- main


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sections", default=",".join(SECTIONS), help=",".join(SECTIONS))
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=2, help="1: direct, nginx; 2: ABBA")
    parser.add_argument("--restart-sessions", type=int, default=30)
    parser.add_argument("--arrival-ms", type=float, default=100.0)
    parser.add_argument("--drain-timeout", type=float, default=5.0)
    parser.add_argument("--mid-reply", type=int, default=3, help="slow replies per replica")
    parser.add_argument("--reload-sessions", type=int, default=50)
    parser.add_argument("--full-cap", type=int, default=5)
    parser.add_argument("--full-new", type=int, default=30)
    parser.add_argument("--write-timeout", type=float, default=3.0)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--words", type=int, default=100, help="answer length asked for")
    parser.add_argument("--tiny", action="store_true", help="small, quick settings")
    parser.add_argument("--keep", metavar="DIR", help="keep the logs and configs in DIR")
    opts = parser.parse_args(argv)
    if opts.tiny:
        opts.sessions, opts.seconds, opts.rounds = 6, 3.0, 1
        opts.restart_sessions, opts.reload_sessions, opts.full_new = 6, 6, 8
        opts.words = 30
    unknown = set(opts.sections.split(",")) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {sorted(unknown)}")
    return opts


async def run(opts: argparse.Namespace, root: Path) -> None:
    from scaleout_model import model  # it imports tests/model_servers.py

    runners = {
        "overhead": overhead,
        "restart": restart,
        "reload": reload,
        "full": full,
        "stalled": stalled,
        "model": model,
    }
    for name in SECTIONS:
        if name in opts.sections.split(","):
            began = time.monotonic()
            await runners[name](opts, root)
            print(f"  [{name}: {time.monotonic() - began:.0f} s]", flush=True)


def leftovers() -> str:
    """What ``pgrep -f`` finds of harken, nginx and llama-server, each marked as this run's
    (its parent is this process) or not (another user's tests, say)."""
    found = []
    for pattern in ("harken serve", "nginx", "llama-server"):
        out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, check=False)
        pids = [int(p) for p in out.stdout.split() if int(p) != os.getpid()]
        marked = [f"{p} ({'OURS' if parent_of(p) == os.getpid() else 'not ours'})" for p in pids]
        found.append(f"{pattern}: {', '.join(marked) or 'none'}")
    return "; ".join(found)


def parent_of(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def main(argv: Sequence[str] | None = None) -> None:
    opts = parse(argv)
    print(machine_line())
    began = time.monotonic()
    with contextlib.ExitStack() as stack:
        tmp = opts.keep or stack.enter_context(tempfile.TemporaryDirectory(prefix="scaleout-"))
        try:
            asyncio.run(run(opts, Path(tmp)))
        finally:
            print(f"\ntotal {time.monotonic() - began:.0f} s; processes left: {leftovers()}")


if __name__ == "__main__":
    main()
