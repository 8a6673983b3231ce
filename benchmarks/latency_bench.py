"""Mouth-to-ear latency with the embedded models, measured from the audio, as a user feels it.

A client (``tests/voice_client.py``) streams real recorded speech (the 11 pocketsphinx
utterances, looped to ``--turns``) at real time in 20 ms linear16 frames, with 0.5 s of silence
before and 1.5 s after, and keeps streaming silence. It timestamps the **last speech sample
sent** and the **first agent audio frame received**; mouth-to-ear is the difference. The last
speech sample is the earlier of the acoustic end (``voice_client.acoustic_span``: the last 10 ms
window within 40 dB of the loudest and 15 dB above the floor) and the end of the last frame the
Silero VAD scores as speech, because the recordings end with 0.1-0.55 s of room noise that is not
speech: counting from the end of the file (column ``file``, shown for comparison) flatters the
numbers by that much. Each turn is a fresh conversation (Settings, 0.6 s for the system prompt
to be primed, then the speech), so every turn is a first turn. Each conversation's system prompt
carries its own number: the LLM keeps KV-cache snapshots across sessions, and an utterance used
twice (warm-up, the speculation on/off sections, concurrent rounds) would otherwise find its
whole prompt, user words included, already evaluated, which no real user gets (measured: the
first LLM step drops from ~130 ms to ~35 ms). The system prompt itself is primed at Settings,
as the server does for every session.

**How model time is measured.** The server runs **in this process**, in a thread with its own
event loop (as the tests run it), with the default configuration (``providers = "embedded"``).
That lets the benchmark wrap every step put on the process's compute lane
(``harken.engines.lane.shared_lane()``: all STT, LLM, TTS and priming work runs there,
one step at a time) and record when each step ran, for which session and what it was (STT,
LLM, TTS, prime). Nothing is added to the server. Per turn:

* the server's end of turn = first audio received - ``total_latency`` (AgentStartedSpeaking
  counts from the end of turn; the loopback downlink, well under 1 ms, is neglected);
* *end-of-turn wait* = server end of turn - last speech sample: the configured
  ``end_of_turn_ms`` plus the end-of-turn detection lag (the Silero VAD's probability decays
  50-300 ms after the sound stops, the 32 ms frame it needs, the uplink), reported apart;
* *STT*, *LLM (first sentence)*, *TTS (first audio)*: lane time spent on each kind of step
  between the end of turn and the first audio, i.e. on the critical path (work that speculation
  finished during the end-of-turn wait is hidden there and not counted);
* *after TTS → ear*: from the end of the TTS step that made the first audio to its arrival
  (resampling, framing, the pump, the WebSocket);
* **orchestration overhead** = mouth-to-ear - end-of-turn wait - model time on the critical
  path = the server's own time between its end of turn and the first audio that is not spent in
  a model: hand-offs between the event loop and the lane, resampling and framing, the pump and
  the WebSocket. (With the *configured* ``end_of_turn_ms`` instead of the measured wait it
  would also hold the VAD's decay, a property of the model, not of the orchestration; the
  report prints that lag on its own line.)

``--subprocess`` instead runs ``harken serve`` as a child process on a free port (the
black-box view): mouth-to-ear and the server's reported latencies only; no model time, so
no overhead.

Sections: (1) single conversation, speculation on (the default); (2) the same with
``speculate = false``, to show what speculation saves; (3) barge-in: how long after the speech
onset (acoustic, as above) agent audio stops, over ``--barge-trials`` trials; (4) four
concurrent conversations streaming different utterances, staggered by 1 s, against the
single-conversation numbers of the same utterances.
Numbers only; nothing is asserted. Run from the repository root::

    .venv/bin/python benchmarks/latency_bench.py [--turns 11] [--barge-trials 5]
        [--rounds 2] [--subprocess] [--skip NAME ...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from harken.config import load_config  # noqa: E402
from harken.engines.assemble import verify  # noqa: E402
from harken.engines.lane import (  # noqa: E402
    BACKGROUND,
    NORMAL,
    URGENT,
    ComputeLane,
    shared_lane,
)
from harken.providers.vad import SileroVAD  # noqa: E402
from harken.server.app import HarkenServer  # noqa: E402
from speech import RATE, Utterance, model_root, utterances, wer  # noqa: E402
from voice_client import (  # noqa: E402
    LONG_PARAGRAPH,
    Received,
    Span,
    VoiceClient,
    acoustic_span,
    speech_span,
)

T = TypeVar("T")
BEFORE, AFTER = 0.5, 1.5  # seconds of silence around each utterance
PRIME_WAIT = 0.6  # seconds between SettingsApplied and speech (a greeting would cover it)
PROMPT = "You are a friendly voice assistant. Answer in one short sentence."
SETTINGS: dict[str, Any] = {
    "type": "Settings",
    "experimental": True,  # LatencyReport
    "audio": {
        "input": {"encoding": "linear16", "sample_rate": RATE},
        "output": {"encoding": "linear16", "sample_rate": 24000, "container": "none"},
    },
    "agent": {
        "listen": {"provider": {"type": "deepgram", "model": "nova-3"}},
        "think": {"provider": {"type": "open_ai", "model": "gpt-4o-mini"}, "prompt": PROMPT},
        "speak": {"provider": {"type": "deepgram", "model": "aura-2-thalia-en"}},
    },
}
CONCURRENT = ("0880", "goforward", "cards-005", "0930")
_SESSIONS = itertools.count(1)


def fresh_settings() -> dict[str, Any]:
    """SETTINGS with a system prompt no earlier conversation had (see the module docstring)."""
    think = {**SETTINGS["agent"]["think"], "prompt": f"{PROMPT} Session {next(_SESSIONS)}."}
    return {**SETTINGS, "agent": {**SETTINGS["agent"], "think": think}}


# ----------------------------------------------------------------------------- lane timeline


@dataclass(frozen=True, slots=True)
class Step:
    key: str  # the session (its request_id) the step ran for
    kind: str  # stt, llm, tts, prime, other
    start: float  # time.perf_counter()
    end: float


def _kind(priority: int, fn: Callable[[], Any]) -> str:
    name = getattr(getattr(fn, "func", fn), "__qualname__", "")  # through a partial
    if priority == BACKGROUND:
        return "prime"
    if priority == NORMAL:
        return "llm"  # LlamaLLM.stream: one step per prompt chunk or token
    if priority == URGENT and name.startswith("WhisperSTT."):
        return "stt"  # WhisperSTT.transcribe: an encoder and a decoder step per piece
    if priority == URGENT and name.endswith("stream.<locals>.step"):
        return "tts"  # PiperTTS.synthesize: one step per chunk of speech
    return "other"


class Timeline:
    """Records every step the compute lane runs, by wrapping it as it is queued."""

    def __init__(self, lane: ComputeLane) -> None:
        self.steps: list[Step] = []
        put = lane._put

        def timed_put(step: Any) -> None:
            fn, key, kind = step.fn, step.key, _kind(step.priority, step.fn)

            def timed() -> Any:
                start = time.perf_counter()
                try:
                    return fn()
                finally:
                    self.steps.append(Step(key, kind, start, time.perf_counter()))

            step.fn = timed
            put(step)

        lane._put = timed_put  # type: ignore[method-assign]

    def between(self, start: float, end: float) -> list[Step]:
        return [s for s in list(self.steps) if s.end > start and s.start < end]


def clipped(step: Step, start: float, end: float) -> float:
    return max(0.0, min(step.end, end) - max(step.start, start))


# ----------------------------------------------------------------------------- servers


class InProcessServer:
    """A HarkenServer on its own event loop in a daemon thread (like the tests' ServerThread)."""

    def __init__(self, **overrides: Any) -> None:
        base = {"host": "127.0.0.1", "port": 0, "providers": "embedded", **overrides}
        self.config = load_config(None, {}, base)
        self.loop = asyncio.new_event_loop()
        self.server = HarkenServer(self.config)
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> InProcessServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(120)
        return self

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            done = asyncio.run_coroutine_threadsafe(self.server.shutdown(), self.loop)
            done.result(20)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.server.port}/v1/agent/converse"


class ChildServer:
    """``harken serve`` as a subprocess on a free port."""

    def __init__(self, **overrides: Any) -> None:
        self.config = load_config(None, {}, {"providers": "embedded", **overrides})
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("HARKEN_")}
        for key, value in overrides.items():
            self.env[f"HARKEN_{key.upper()}"] = str(value).lower()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ChildServer:
        command = [sys.executable, "-m", "harken", "serve", "--port", str(self.port)]
        self.process = subprocess.Popen(
            [*command, "--providers", "embedded", "--log-level", "warning"], env=self.env
        )
        OTHERS.pids.append(self.process.pid)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"harken serve exited with {self.process.returncode}")
            health = f"http://127.0.0.1:{self.port}/healthz"
            with contextlib.suppress(OSError), urllib.request.urlopen(health, timeout=1):
                return self
            time.sleep(0.25)
        raise SystemExit("harken serve did not become ready within 120 s")

    def stop(self) -> None:
        if self.process is not None and self.process.pid in OTHERS.pids:
            OTHERS.pids.remove(self.process.pid)
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/agent/converse"


Server = InProcessServer | ChildServer


# ----------------------------------------------------------------------------- the machine


class Others:
    """How much CPU other processes took (from /proc), so a busy machine shows in the numbers.

    The share of the whole machine (all CPUs) used by processes other than ``pids`` (this
    process, plus the server child with ``--subprocess``) between two samples.
    """

    def __init__(self) -> None:
        self.pids = [os.getpid()]
        self.hz = os.sysconf("SC_CLK_TCK")
        self.cpus = os.cpu_count() or 1

    def sample(self) -> tuple[float, float, float]:
        """(wall seconds, machine busy ticks, our ticks)."""
        try:
            with open("/proc/stat") as stat:
                ticks = [int(v) for v in stat.readline().split()[1:]]
            busy = sum(ticks) - ticks[3] - ticks[4]  # minus idle and iowait
            own = sum(self._ticks(pid) for pid in self.pids)
        except (OSError, ValueError, IndexError):
            return time.perf_counter(), float("nan"), float("nan")
        return time.perf_counter(), float(busy), float(own)

    def share(self, before: tuple[float, float, float]) -> float:
        wall, busy, own = self.sample()
        seconds = (wall - before[0]) * self.hz * self.cpus
        if seconds <= 0:
            return float("nan")
        return max(0.0, ((busy - before[1]) - (own - before[2])) / seconds)  # ticks are coarse

    @staticmethod
    def _ticks(pid: int) -> int:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime, all threads


OTHERS = Others()


# ----------------------------------------------------------------------------- one turn


@dataclass(slots=True)
class Turn:
    name: str
    text: str
    wer: float
    mouth_to_ear: float
    from_file_end: float  # mouth-to-ear counted from the end of the recording file
    eot_wait: float
    total: float  # server: end of turn -> first audio
    ttt: float
    tts: float
    stages: dict[str, float] = field(default_factory=dict)  # critical-path lane time by kind
    after_tts: float | None = None
    overhead: float | None = None
    stt_call: float | None = None  # the final transcription's own duration, hidden or not
    others: float = float("nan")  # CPU share of other processes during the turn (0-1)
    reply: str = ""  # the agent's first chunk of speech (its first ConversationText)


@dataclass(frozen=True, slots=True)
class Speech:
    utterance: Utterance
    span: Span


def padded(samples: np.ndarray, before: float = BEFORE, after: float = AFTER) -> np.ndarray:
    zeros = (np.zeros(int(before * RATE), np.int16), np.zeros(int(after * RATE), np.int16))
    return np.concatenate((zeros[0], samples, zeros[1]))


def message(items: Sequence[Received], kind: str, role: str | None = None) -> dict[str, Any]:
    for item in items:
        wanted = item.message is not None and (role is None or item.message.get("role") == role)
        if item.type == kind and wanted and item.message is not None:
            return item.message
    return {}


def one_turn(
    url: str, speech: Speech, eot_ms: float, timeline: Timeline | None, delay: float = 0.0
) -> Turn:
    time.sleep(delay)
    machine = OTHERS.sample()
    with VoiceClient(url, fresh_settings()) as client:
        time.sleep(PRIME_WAIT)
        mark = client.mark()
        playback = client.play(padded(speech.utterance.samples))
        begin = playback.start + int(BEFORE * RATE)
        ended = client.sample_time(begin + speech.span.end - 1)
        file_end = client.sample_time(begin + speech.utterance.samples.size - 1)
        first = client.wait_for("audio", after=mark, timeout=120)
        seen = client.messages(mark)
        key = client.request_id
    started = message(seen, "AgentStartedSpeaking")
    said = message(seen, "ConversationText", "user").get("content", "")
    total = float(started.get("total_latency", float("nan")))
    turn = Turn(
        name=speech.utterance.name,
        text=said,
        reply=message(seen, "ConversationText", "assistant").get("content", ""),
        wer=wer(speech.utterance.text, said),
        mouth_to_ear=first.t - ended,
        from_file_end=first.t - file_end,
        eot_wait=first.t - total - ended,
        total=total,
        ttt=float(started.get("ttt_latency", float("nan"))),
        tts=float(started.get("tts_latency", float("nan"))),
        others=OTHERS.share(machine),
    )
    if timeline is not None:
        analyse(turn, timeline, key, end_of_turn=first.t - total, first_audio=first.t, ended=ended)
        turn.overhead = turn.mouth_to_ear - turn.eot_wait - sum(turn.stages.values())
    return turn


def analyse(
    turn: Turn,
    timeline: Timeline,
    key: str,
    *,
    end_of_turn: float,
    first_audio: float,
    ended: float,
) -> None:
    """Critical-path model time of one turn from the lane timeline."""
    steps = timeline.between(end_of_turn, first_audio)
    stages = dict.fromkeys(("stt", "llm", "tts", "prime", "other"), 0.0)
    for step in steps:
        kind = step.kind if step.key == key else "other"
        stages[kind] += clipped(step, end_of_turn, first_audio)
    turn.stages = stages
    spoken = [s for s in steps if s.key == key and s.kind == "tts" and s.end <= first_audio]
    turn.after_tts = first_audio - max(s.end for s in spoken) if spoken else None
    heard = [s for s in timeline.between(ended - 2.0, first_audio) if s.key == key]
    stt = [s for s in heard if s.kind == "stt"]
    # the last piece's encoder and decoder steps
    turn.stt_call = sum(s.end - s.start for s in stt[-2:]) if stt else None


# ----------------------------------------------------------------------------- barge-in


@dataclass(frozen=True, slots=True)
class BargeIn:
    name: str
    last_audio: float  # last agent audio frame received - speech onset
    cut: float  # UserStartedSpeaking received - speech onset
    late_frames: int  # agent audio frames received after UserStartedSpeaking (should be 0)
    was_speaking: bool  # the reply was still going out at the onset


def barge_in(url: str, speech: Speech, delay: float) -> BargeIn:
    with VoiceClient(url, fresh_settings()) as client:
        time.sleep(PRIME_WAIT)
        mark = client.mark()
        client.send_json({"type": "InjectAgentMessage", "message": LONG_PARAGRAPH})
        client.wait_for("audio", after=mark, timeout=60)
        time.sleep(delay)
        samples = padded(speech.utterance.samples, before=0.0, after=0.8)
        playback = client.play(samples)
        onset = client.sample_time(playback.start + speech.span.start)
        heard = client.wait_for("UserStartedSpeaking", after=mark, timeout=30)
        cut = client.received.index(heard)
        done = client.wait_for("AgentAudioDone", after=mark, timeout=30)
        stopped = client.received.index(done)
        seen = client.messages(mark)
    cut -= mark
    last = max(item.t for item in seen[:cut] if item.type == "audio")
    late = sum(1 for item in seen[cut : stopped - mark] if item.type == "audio")
    return BargeIn(speech.utterance.name, last - onset, heard.t - onset, late, stopped - mark > cut)


# ----------------------------------------------------------------------------- reporting


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else float("nan")


def ms(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value * 1000:.0f}"


LEGEND = (
    "busy: CPU share of the machine used by other processes during the turn; "
    "m2e: last speech sample -> first agent audio; file: the same from the end of the file; "
    "EOT: wait until the server's end of turn; total/ttt/tts: AgentStartedSpeaking\n"
    "STT/LLM/TTS/other: lane time on the critical path (after the end of turn); ->ear: end of "
    "the TTS step -> first audio received; ovh: overhead; stt*: the final STT call, hidden or not"
)


def print_turns(title: str, turns: Sequence[Turn], eot_ms: float) -> None:
    print(f"\n## {title}\n")
    if not turns:
        print("no turn completed")
        return
    detail = bool(turns[0].stages)
    head = f"{'utterance':10} {'busy':>4} {'WER':>4} {'m2e':>6} {'file':>6} {'EOT':>5} {'total':>6}"
    head += f" {'ttt':>6} {'tts':>5}"
    if detail:
        head += f" {'STT':>5} {'LLM':>5} {'TTS':>5} {'other':>5} {'→ear':>5} {'ovh':>5} {'stt*':>5}"
    print(head + "   (ms; user transcript → the agent's first chunk)")
    print(LEGEND if detail else LEGEND.split("\n", 1)[0])
    for t in turns:
        row = f"{t.name:10} {t.others:4.0%} {t.wer:4.0%} {ms(t.mouth_to_ear):>6}"
        row += f" {ms(t.from_file_end):>6}"
        row += f" {ms(t.eot_wait):>5}"
        row += f" {ms(t.total):>6} {ms(t.ttt):>6} {ms(t.tts):>5}"
        if detail:
            s = t.stages
            row += f" {ms(s['stt']):>5} {ms(s['llm']):>5} {ms(s['tts']):>5}"
            row += f" {ms(s['prime'] + s['other']):>5} {ms(t.after_tts):>5} {ms(t.overhead):>5}"
            row += f" {ms(t.stt_call):>5}"
        print(f"{row}   {t.text[:40]!r} → {t.reply[:60]!r}")
    m2e = [t.mouth_to_ear for t in turns]
    print(
        f"\nmouth-to-ear over {len(turns)} turns: p50 {ms(pct(m2e, 50))} ms, "
        f"p95 {ms(pct(m2e, 95))} ms, min {ms(min(m2e))}, max {ms(max(m2e))}  "
        f"(target p50 ≤ 1100 ms)"
    )
    busy = [t.others for t in turns if t.others == t.others]
    if busy:
        print(
            f"other processes used {pct(busy, 50):.0%} of the machine's CPU during these turns "
            f"(median; max {max(busy):.0%}): above a few %, the model times are inflated"
        )
    mean = statistics.fmean(m2e)
    shares: list[tuple[str, float]] = [("end-of-turn wait (measured)", _mean(turns, "eot_wait"))]
    if detail:
        for label, kinds in (
            ("STT", ("stt",)),
            ("LLM to first sentence", ("llm",)),
            ("TTS first audio", ("tts",)),
            ("other lane work (prime, others)", ("prime", "other")),
        ):
            shares.append((label, statistics.fmean(sum(t.stages[k] for k in kinds) for t in turns)))
        after = [t.after_tts for t in turns if t.after_tts is not None]
        shares.append(("after TTS → ear (transport)", statistics.fmean(after) if after else 0.0))
        rest = mean - sum(v for _, v in shares)
        shares.append(("idle lane / hand-offs", rest))
    else:
        shares.append(("server: end of turn → first audio", _mean(turns, "total")))
    print(f"\nwhere the mean mouth-to-ear ({ms(mean)} ms) goes:")
    for label, value in shares:
        print(f"  {label:34} {ms(value):>6} ms  {value / mean:6.1%}")
    if detail:
        overhead = [t.overhead for t in turns if t.overhead is not None]
        print(
            f"orchestration overhead (m2e - end-of-turn wait - model time on the critical path): "
            f"p50 {ms(pct(overhead, 50))} ms, p95 {ms(pct(overhead, 95))} ms (target p95 ≤ 30 ms)"
        )
        eot_lag = [t.eot_wait - eot_ms / 1000 for t in turns]
        print(
            f"end-of-turn detection beyond end_of_turn_ms = {eot_ms:.0f} (VAD decay, 32 ms frames, "
            f"uplink): p50 {ms(pct(eot_lag, 50))} ms, p95 {ms(pct(eot_lag, 95))} ms"
        )
        calls = [t.stt_call for t in turns if t.stt_call is not None]
        if calls:
            print(f"  the final STT call itself (stt*): p50 {ms(pct(calls, 50))} ms")


def _mean(turns: Sequence[Turn], field: str) -> float:
    return statistics.fmean(getattr(t, field) for t in turns)


def print_barge_in(trials: Sequence[BargeIn]) -> None:
    print("\n## Barge-in: a long injected reply, then the user speaks\n")
    print(
        f"{'trial':>5} {'utterance':10} {'stops':>6} {'last frame':>10} {'late':>5} {'speaking':>9}"
    )
    for i, b in enumerate(trials, 1):
        print(
            f"{i:5} {b.name:10} {ms(b.cut):>6} {ms(b.last_audio):>10} {b.late_frames:5} "
            f"{'yes' if b.was_speaking else 'NO':>9}"
        )
    print(
        "stops: UserStartedSpeaking received - speech onset (no agent audio of the reply follows "
        "it); last frame: last agent audio frame received - onset (negative: none was arriving); "
        "late: agent frames between UserStartedSpeaking and AgentAudioDone (want 0); speaking: "
        "the reply was still going out at the onset"
    )
    cut = [b.cut for b in trials if b.was_speaking]
    last = [max(0.0, b.last_audio) for b in trials if b.was_speaking]
    if cut:
        print(
            f"\nagent audio stops {ms(pct(cut, 50))} ms after the speech onset at p50, "
            f"{ms(max(cut))} ms at most (target ≤ 150 ms); last frame received: p50 "
            f"{ms(pct(last, 50))} ms, max {ms(max(last))} ms"
        )


# ----------------------------------------------------------------------------- main


def load_speech() -> dict[str, Speech]:
    """The recordings and where speech is in them (see the module docstring)."""
    vad = SileroVAD(verify("silero-vad", model_root()))
    out = {}
    for u in utterances():
        sound, voice = acoustic_span(u.samples), speech_span(u.samples, vad)
        out[u.name] = Speech(u, Span(sound.start, min(sound.end, voice.end)))
    return out


def attempt(what: str, run: Callable[[], T]) -> T | None:
    """``run()``, or None (said on stderr) if it failed: one bad turn does not end the run."""
    try:
        return run()
    except (TimeoutError, ConnectionError, OSError, RuntimeError, ValueError) as exc:
        print(f"  {what} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None


def single(server: Server, speech: Sequence[Speech], timeline: Timeline | None) -> list[Turn]:
    eot = server.config.end_of_turn_ms
    attempt("warm-up", lambda: one_turn(server.url, speech[-1], eot, timeline))  # not counted
    turns = []
    for item in speech:
        turn = attempt(item.utterance.name, partial(one_turn, server.url, item, eot, timeline))
        if turn is not None:
            turns.append(turn)
        time.sleep(0.3)
    return turns


def concurrent(
    server: Server, speech: dict[str, Speech], timeline: Timeline | None, rounds: int
) -> list[Turn]:
    eot = server.config.end_of_turn_ms
    turns: list[Turn] = []
    lock = threading.Lock()

    def run(item: Speech, delay: float) -> None:
        turn = attempt(
            item.utterance.name, lambda: one_turn(server.url, item, eot, timeline, delay)
        )
        with lock:
            if turn is not None:
                turns.append(turn)

    for _ in range(rounds):
        threads = [
            threading.Thread(target=run, args=(speech[name], i * 1.0))
            for i, name in enumerate(CONCURRENT)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(180)
        time.sleep(0.5)
    return turns


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--turns", type=int, default=11, help="utterances (looped), ≥ 10")
    parser.add_argument("--barge-trials", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2, help="rounds of 4 concurrent turns")
    parser.add_argument("--subprocess", action="store_true", help="run `harken serve` instead")
    parser.add_argument(
        "--skip", nargs="*", default=[], choices=("nospec", "barge", "concurrent"), help="sections"
    )
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="server configuration, e.g. speculate_after_ms=128 (HARKEN_* is not read)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    settings = dict(item.split("=", 1) for item in args.set)

    speech = load_speech()
    ordered = list(speech.values())
    picked = [ordered[i % len(ordered)] for i in range(args.turns)]
    kind: Callable[..., Server] = ChildServer if args.subprocess else InProcessServer
    make: Callable[..., Server] = partial(kind, **settings)
    timeline = None if args.subprocess else Timeline(shared_lane())
    load = os.getloadavg()
    print(f"# harken mouth-to-ear latency ({'subprocess' if args.subprocess else 'in-process'})")
    print(
        f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs"
    )

    server = make().start()
    try:
        eot = server.config.end_of_turn_ms
        spec = single(server, picked, timeline)
        print_turns(f"Single conversation, speculation on (end_of_turn_ms = {eot})", spec, eot)
        if "barge" not in args.skip:
            tried = [
                attempt(
                    f"barge-in {i + 1}",
                    partial(barge_in, server.url, ordered[i % len(ordered)], 0.1 * (i % 4)),
                )
                for i in range(args.barge_trials)
            ]
            print_barge_in([trial for trial in tried if trial is not None])
        if "concurrent" not in args.skip:
            together = concurrent(server, speech, timeline, args.rounds)
            print_turns(f"Four concurrent conversations ({args.rounds} rounds)", together, eot)
            alone = [t.mouth_to_ear for t in spec if t.name in CONCURRENT]
            with_others = [t.mouth_to_ear for t in together]
            ratio = pct(with_others, 50) / pct(alone, 50)
            print(
                f"\nsame utterances alone: p50 {ms(pct(alone, 50))} ms; four at once: p50 "
                f"{ms(pct(with_others, 50))} ms = {ratio:.2f}x (target ≤ 1.5x)"
            )
    finally:
        server.stop()

    if "nospec" not in args.skip:
        server = make(speculate=False).start()
        try:
            plain = single(server, picked, timeline)
        finally:
            server.stop()
        print_turns("Single conversation, speculate = false", plain, eot)
        saved = pct([t.mouth_to_ear for t in plain], 50) - pct([t.mouth_to_ear for t in spec], 50)
        print(f"\nspeculation saves {ms(saved)} ms at p50")
    load = os.getloadavg()
    print(f"\nload average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
