"""End of turn on real pauses: how often a policy cuts a speaker off mid-sentence, and how long
it makes a speaker who has finished wait (issue 11, item 4).

**The set** is built in memory, the same every run, from the 11 real recordings that
``make install`` puts in ``var/testdata`` (``tests/speech.py``: five LibriVox sentences,
``goforward``, five ``cards``; read human speech at 16 kHz). Nothing in it is synthetic but the
splices, and every inserted sample is the recording's *own* room noise, never digital silence.
Per recording:

* **where speech is**: the last speech sample is the earlier of the acoustic end (the last 10 ms
  window within 40 dB of the loudest and 15 dB above the floor, ``voice_client.acoustic_span``)
  and the end of the last 32 ms frame the Silero VAD scores as speech, as ``latency_bench.py``
  counts it. **Room noise** is the recording's tail from 50 ms after the later of the two ends
  (0.05-0.23 s; the lead-in where the tail is shorter than 50 ms, which none is), played
  forwards, backwards, forwards, ... from an offset fixed by the clip's name: no joins, so no
  clicks or level dips. (Random 60-200 ms pieces with crossfades were tried first: their joins
  made the VAD rise to 0.4-0.9 in the noise, which the recordings' own tails never do.) Every
  splice into speech is a 10 ms equal-power crossfade.
* **inserted mid-sentence pauses**: 20 phrase boundaries picked from the transcripts, at commas
  and between phrases (``SPLITS``: "dashwood | had", "woman | he", "spades | four", ...). The
  recording is cut at the boundary's time from a forced alignment of its transcript (see
  ``SPLITS``) and room noise is inserted twice: 300-600 ms and 700-1200 ms (``SHORT[i % 4]``,
  ``LONG[i % 6]`` for boundary ``i``): 40 clips. The pause *as heard* runs from the last loud
  10 ms window before the cut to the first one after it (the inserted noise plus any gap that
  was there already: 300-1530 ms). ``--check`` runs Whisper on every clip: all 40 transcripts
  equal the recording's own, so no cut fell inside a word.
* **natural pauses**: runs of 32 ms frames that the real Silero VAD scores below the listener's
  ``off`` (0.35) inside an utterance (after its onset, before its last speech frame), in the
  recordings as recorded. These readers rarely pause long enough for the VAD to notice: there
  are 5, of 32-160 ms, reported apart from the inserted ones.
* **finished utterances**: the real end of each clip (the recording's last words, its own
  trailing noise, then its room noise up to 3 s after the last speech sample, ``TAIL``): 51
  ends, each recording's as recorded and after each of its inserted pauses, so only **11
  distinct** real utterance ends in different turns (the recordings hold no more).

**Evaluation** drives harken's own pure :class:`~harken.session.listener.Listener` exactly as
the server does: each clip is one fresh connection, its audio sent in 20 ms chunks of linear16
through :class:`~harken.server.ears.Ears` (32 ms frames, a fresh Silero VAD stream), and every
frame with its probability is fed to the listener. A **premature end of turn** is a turn that
ended inside a mid-sentence pause: after the pause began and before the speech resumed (96 ms
after the resumption still counts, the time the VAD takes to rise). The **end-of-turn delay**
of a finished utterance is the time from its last speech sample to the end of the frame that
ended the turn, in audio time. Policies:

* ``fixed N ms``: today's rule, ``eot_frames`` of silence below ``off`` (544 ms = 17 frames is
  the default; other values rounded to 32 ms frames as the server rounds ``end_of_turn_ms``);
* ``<signal> t``: "end when the silence reaches ``--floor-ms`` and the signal says P(complete)
  >= t, or when the silence reaches ``--timeout-ms``". The listener runs with ``pause_frames`` =
  the floor and ``eot_frames`` = the timeout; at its ``pause`` event the signal gets the turn so
  far (the listener's ``pcm``: 16 kHz int16 from the preroll to the floor's silence), and at or
  above the threshold the turn ends at that frame (``Listener.complete``). The decision counts
  as instant in audio time; the signal's time per call is printed apart (in the server the turn
  ends that much later);
* ``oracle``: the same with a signal that knows the answer (1 once the speech is over, else 0):
  what the floor and the VAD's decay cost even with a perfect signal.

A **signal** is any callable taking the int16 samples (16 kHz, mono) of the turn so far and
returning P(complete), or an awaitable of it: add a loader to ``SIGNALS`` and pass
``--signal NAME``. ``smart-turn`` is ``harken.providers.turn.SmartTurn`` (Smart Turn v3.2, its
model from the catalog) on its own compute lane; ``llm``, ``llm-bare``, ``llm-sum`` (the LLM's
P(<|im_end|>) after Whisper's transcript) and ``combined*`` (those with Smart Turn) are in
``eot_llm.py``. Each distinct (clip, turn, pause) is asked once and the answer reused across
the threshold sweep.

Numbers only; nothing is asserted. Run from the repository root::

    .venv/bin/python benchmarks/eot_bench.py [--signal smart-turn] [--thresholds 0.5 0.9 ...]
        [--floor-ms 128 192] [--timeout-ms 1500] [--fixed-ms 160 544 ...] [--list] [--check]
        [--save var/eot_bench]

``--list`` prints every pause and finished end with its outcome under each policy, and every
answer of the signal; ``--save DIR`` writes the clips as WAV files to listen to.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import sys
import time
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import eot_llm  # noqa: E402
from eot_report import describe, listing, pct, table  # noqa: E402
from harken.engines.assemble import verify  # noqa: E402
from harken.engines.lane import ComputeLane  # noqa: E402
from harken.protocol.audio import pcm16_from_bytes, wav_header  # noqa: E402
from harken.protocol.settings import AudioInput  # noqa: E402
from harken.providers.base import Int16Array  # noqa: E402
from harken.providers.vad import SileroVAD  # noqa: E402
from harken.server.ears import Ears  # noqa: E402
from harken.session.listener import (  # noqa: E402
    FRAME_SAMPLES,
    FRAME_SECONDS,
    Listener,
    ListenerConfig,
)
from speech import RATE, model_root, normalise, utterances  # noqa: E402
from voice_client import acoustic_span, speech_span  # noqa: E402

TAIL: Final = 3.0  # seconds of room noise after the last speech sample of every clip
FADE: Final = 160  # 10 ms equal-power crossfade at every splice
GUARD: Final = 800  # room noise is taken 50 ms away from speech
WINDOW: Final = 160  # 10 ms level windows
GRACE: Final = 3 * FRAME_SAMPLES  # an end this soon after speech resumes is still a cut-off
MIN_NOISE: Final = 800  # 50 ms
SHORT: Final = (300, 400, 500, 600)  # inserted ms at boundary i: SHORT[i % 4] and LONG[i % 6]
LONG: Final = (700, 800, 900, 1000, 1100, 1200)
OFF: Final = ListenerConfig().off
ON: Final = ListenerConfig().on

SPLITS: Final[dict[str, tuple[tuple[str, float], ...]]] = {
    "0870": (
        ("dashwood | had", 1.58),
        ("leisure | to", 2.71),
        ("consider | how", 3.44),
        ("prudently | in", 5.46),
        ("power | to", 6.04),
    ),
    "0880": (("not | an", 1.095),),
    "0890": (("hearted | and", 2.22), ("selfish | is", 3.61)),
    "0920": (("woman | he", 2.49), ("made | still", 3.69), ("respectable | than", 5.00)),
    "0930": (("even | have", 0.92), ("made | amiable", 1.70)),
    "goforward": (("forward | ten", 1.17),),
    "cards-001": (("ten | of", 0.34),),
    "cards-002": (("four | queen", 0.70),),
    "cards-003": (("seven | of", 0.57),),
    "cards-004": (("five | five", 0.775),),
    "cards-005": (("spades | four", 1.195), ("clubs | seven", 2.22)),
}
"""Where each recording is split: (the words on either side, seconds into the recording).

The boundaries are chosen from the transcripts, at commas and between phrases. The times are
the word boundaries of a forced alignment of each transcript (the middle of the silence where
the aligner found one), computed once with pocketsphinx 5.0.4's ``set_align_text`` in a scratch
environment (not a dependency): for the five LibriVox files it gives exactly the alignments
that ship in the same pocketsphinx sdist. The cut is made at that time; faster-whisper base's
word timestamps were tried first and are 80-300 ms off on these recordings ("selfish" ends
0.3 s early), so cuts fell inside words ("self | ish", "prudent | ly"), and moving a cut to the
quietest 10 ms nearby put "ten | of" inside the n (Whisper then heard "ten enough clubs").
"""

Signal = Callable[[Int16Array], "float | Awaitable[float]"]
"""P(complete) of the turn so far (16 kHz mono int16, the pause included)."""


# ----------------------------------------------------------------------------- the set


@dataclass(frozen=True, slots=True)
class Pause:
    clip: int  # index of the clip it is in
    start: int  # sample of the clip where the pause starts (the last speech before it ends)
    resume: int  # sample where speech resumes
    kind: str  # "inserted" or "natural"
    where: str  # the words around it, "woman | he"
    inserted_ms: int = 0

    @property
    def heard_ms(self) -> float:
        return (self.resume - self.start) / RATE * 1000


@dataclass(slots=True)
class Clip:
    name: str  # "0920" (as recorded) or "0920 woman|he +700"
    recording: str
    samples: Int16Array
    last_speech: int  # sample of the clip where the finished utterance's speech ends
    frames: list[tuple[float, bytes]] = field(default_factory=list)  # Ears' output


class RoomNoise:
    """The recording's own room noise: its tail after the speech (its lead-in where the tail is
    shorter than 50 ms), and longer stretches looped from it."""

    def __init__(self, samples: Int16Array, first: int, last: int) -> None:
        tail, lead = samples[last + GUARD :], samples[: max(0, first - GUARD)]
        self.source = "tail" if tail.size >= MIN_NOISE else "lead-in"
        self.segment = (tail if tail.size >= MIN_NOISE else lead).astype(np.float64)
        if self.segment.size < MIN_NOISE:
            raise ValueError("no room noise in the recording")
        self.seconds = self.segment.size / RATE

    def make(self, n: int, seed: str) -> np.ndarray:
        """``n`` samples (float64): the segment played forwards, backwards, forwards, ... from
        an offset given by ``seed`` (no joins, so no clicks or level dips for the VAD to hear)."""
        loop = np.concatenate((self.segment, self.segment[::-1]))
        start = zlib.crc32(seed.encode()) % loop.size
        return np.tile(loop, (start + n) // loop.size + 1)[start : start + n]


def join(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a`` then ``b`` with a FADE-sample equal-power crossfade (len(a) + len(b) - FADE)."""
    t = np.linspace(0.0, np.pi / 2, FADE)
    middle = a[-FADE:] * np.cos(t) + b[:FADE] * np.sin(t)
    return np.concatenate((a[:-FADE], middle, b[FADE:]))


def to_int16(x: np.ndarray) -> Int16Array:
    return np.asarray(np.clip(np.rint(x), -32768, 32767), dtype=np.int16)


def levels(samples: Int16Array) -> tuple[np.ndarray, float]:
    """dBFS of consecutive 10 ms windows, and the level that counts as speech (the rule of
    ``voice_client.acoustic_span``)."""
    count = samples.size // WINDOW
    windows = samples[: count * WINDOW].astype(np.float64).reshape(count, WINDOW)
    level = 20 * np.log10(np.maximum(np.sqrt((windows**2).mean(axis=1)), 1.0) / 32768)
    return level, max(float(np.percentile(level, 10)) + 15, float(level.max()) - 40)


def probabilities(samples: Int16Array, vad: SileroVAD) -> list[tuple[float, bytes]]:
    """The frames and speech probabilities the server's pump makes of this audio (one fresh
    connection, linear16 at 16 kHz, sent in 20 ms chunks)."""
    ears = Ears(AudioInput("linear16", RATE), vad)
    try:
        data, out = samples.astype("<i2").tobytes(), []
        for i in range(0, len(data), 640):
            out.extend(ears.feed(data[i : i + 640]))
        return out
    finally:
        ears.close()


def heard(model: Any, samples: Int16Array) -> str:
    """What Whisper hears in ``samples`` (normalised words), for ``--check``."""
    segments, _ = model.transcribe(
        samples.astype(np.float32) / 32768, language="en", beam_size=5, without_timestamps=True
    )
    return " ".join(normalise(" ".join(segment.text for segment in segments)))


def gap_around(level: np.ndarray, threshold: float, cut: int) -> tuple[int, int]:
    """(end of the last loud 10 ms window before ``cut``, start of the first one after it)."""
    w = cut // WINDOW
    before = np.flatnonzero(level[:w] >= threshold)
    after = np.flatnonzero(level[w:] >= threshold)
    start = (int(before[-1]) + 1) * WINDOW if before.size else 0
    resume = (w + int(after[0])) * WINDOW if after.size else level.size * WINDOW
    return min(start, cut), max(resume, cut)


def with_tail(x: np.ndarray, last_speech: int, noise: RoomNoise, seed: str) -> np.ndarray:
    """``x`` extended with room noise to TAIL seconds after ``last_speech``."""
    need = last_speech + int(TAIL * RATE) - x.size
    if need <= 0:
        return x
    return join(x, noise.make(need + FADE, seed))


def natural_pauses(clip: Clip, index: int) -> list[Pause]:
    """Runs of frames below ``off`` after the utterance's onset, before its last speech frame."""
    probs = [p for p, _ in clip.frames]
    onset = next((i for i in range(len(probs) - 2) if min(probs[i : i + 3]) >= ON), None)
    loud = [i for i, p in enumerate(probs) if p >= ON]
    if onset is None or not loud:
        return []
    out, i = [], onset
    while i < loud[-1]:
        if probs[i] >= OFF:
            i += 1
            continue
        j = i
        while probs[j] < OFF:
            j += 1
        where = f"frames {i}-{j - 1} ({(j - i) * FRAME_SECONDS * 1000:.0f} ms)"
        out.append(Pause(index, i * FRAME_SAMPLES, j * FRAME_SAMPLES, "natural", where))
        i = j
    return out


@dataclass(slots=True)
class PauseSet:
    clips: list[Clip]
    pauses: list[Pause]
    noise: dict[str, RoomNoise]  # per recording


def build(vad: SileroVAD) -> PauseSet:
    clips: list[Clip] = []
    pauses: list[Pause] = []
    noise: dict[str, RoomNoise] = {}
    boundary = 0
    for u in utterances():
        sound, voice = acoustic_span(u.samples), speech_span(u.samples, vad)
        last = min(sound.end, voice.end)
        room = RoomNoise(u.samples, min(sound.start, voice.start), max(sound.end, voice.end))
        noise[u.name] = room
        level, threshold = levels(u.samples)
        x = u.samples.astype(np.float64)
        clips.append(Clip(u.name, u.name, to_int16(with_tail(x, last, room, u.name)), last))
        for label, seconds in SPLITS[u.name]:
            cut = round(seconds * RATE)
            start, resume = gap_around(level, threshold, cut)
            for ms in (SHORT[boundary % len(SHORT)], LONG[boundary % len(LONG)]):
                n = ms * RATE // 1000
                name = f"{u.name} {label.replace(' ', '')} +{ms}"
                spliced = join(join(x[:cut], room.make(n + 2 * FADE, name)), x[cut:])
                samples = to_int16(with_tail(spliced, last + n, room, f"{name} tail"))
                pauses.append(Pause(len(clips), start, resume + n, "inserted", label, ms))
                clips.append(Clip(name, u.name, samples, last + n))
            boundary += 1
    for clip in clips:
        clip.frames = probabilities(clip.samples, vad)
    for i, clip in enumerate(clips):
        if clip.name == clip.recording:
            pauses.extend(natural_pauses(clip, i))
    return PauseSet(clips, pauses, noise)


# ----------------------------------------------------------------------------- policies


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    listener: ListenerConfig
    signal: str | None = None  # None: fixed silence; "oracle"; or a key of the signals given
    threshold: float = 1.0


def frames(ms: float) -> int:
    """Milliseconds to whole 32 ms frames, as the server rounds ``end_of_turn_ms``."""
    return max(1, round(ms / 1000 / FRAME_SECONDS))


def fixed(ms: float) -> Policy:
    n = frames(ms)
    return Policy(f"fixed {n * FRAME_SECONDS * 1000:.0f} ms", ListenerConfig(eot_frames=n))


def semantic(
    signal: str, threshold: float, floor_ms: float, timeout_ms: float, floors: Sequence[float] = ()
) -> Policy:
    """End at a pause of ``floor_ms`` if the signal says >= ``threshold``, else at the timeout
    (the floor is named when ``floors`` holds more than one)."""
    config = ListenerConfig(pause_frames=frames(floor_ms), eot_frames=frames(timeout_ms))
    label = signal if signal == "oracle" else f"{signal} {threshold:g}"
    if len(floors) > 1:
        label += f" @{frames(floor_ms) * FRAME_SECONDS * 1000:.0f}"
    return Policy(label, config, signal, threshold)


class Judge:
    """Asks the signals, once per distinct (clip, turn, pause), and times them."""

    def __init__(self, signals: dict[str, Signal]) -> None:
        self.signals = signals
        self.cache: dict[tuple[str, int, int, int], float] = {}
        self.seconds: dict[str, list[float]] = {name: [] for name in signals}

    async def __call__(
        self, policy: Policy, clip: Clip, index: int, frame: int, pcm: bytes
    ) -> float:
        assert policy.signal is not None
        if policy.signal == "oracle":
            return 1.0 if frame * FRAME_SAMPLES >= clip.last_speech else 0.0
        key = (policy.signal, index, frame, len(pcm))
        if key not in self.cache:
            begin = time.perf_counter()
            answer = self.signals[policy.signal](pcm16_from_bytes(pcm))
            if inspect.isawaitable(answer):
                answer = await answer
            self.seconds[policy.signal].append(time.perf_counter() - begin)
            self.cache[key] = float(answer)
        return self.cache[key]


async def turn_ends(policy: Policy, clip: Clip, index: int, judge: Judge) -> list[tuple[int, bool]]:
    """Where the listener (under ``policy``) ended a turn in ``clip``: (sample, by the signal)."""
    listener, ends = Listener(policy.listener), []
    for probability, frame in clip.frames:
        event = listener.feed(probability, frame)
        if event is None:
            continue
        if event.kind == "end":
            ends.append((event.frame * FRAME_SAMPLES, False))
        elif event.kind == "pause" and policy.signal is not None:
            p = await judge(policy, clip, index, event.frame, event.pcm)
            if p >= policy.threshold and complete(listener):
                ends.append((event.frame * FRAME_SAMPLES, True))
    return ends


def complete(listener: Listener) -> bool:
    """End the paused turn now (``Listener.complete``; a reset where the listener predates it)."""
    end = getattr(listener, "complete", None)
    if end is None:
        listener.reset()
        return True
    return end() is not None


@dataclass(slots=True)
class Result:
    policy: Policy
    premature: list[bool]  # per pause: the turn ended inside it
    by_silence: int  # premature ends that silence alone made (the timeout, for a signal)
    delays: list[float | None]  # per clip: seconds from the last speech to the end (None: none)
    by_signal: list[bool]  # per clip: its finished end came from the signal


async def evaluate(policy: Policy, data: PauseSet, judge: Judge) -> Result:
    ends = [await turn_ends(policy, clip, i, judge) for i, clip in enumerate(data.clips)]
    premature, by_silence = [], 0
    for p in data.pauses:
        inside = [signal for e, signal in ends[p.clip] if p.start < e <= p.resume + GRACE]
        premature.append(bool(inside))
        by_silence += bool(inside) and not inside[0]
    delays: list[float | None] = []
    by_signal = []
    for clip, clip_ends in zip(data.clips, ends, strict=True):
        after = [(e, signal) for e, signal in clip_ends if e >= clip.last_speech]
        delays.append((after[0][0] - clip.last_speech) / RATE if after else None)
        by_signal.append(bool(after) and after[0][1])
    return Result(policy, premature, by_silence, delays, by_signal)


# ----------------------------------------------------------------------------- signals


async def load_smart_turn(args: argparse.Namespace, lane: ComputeLane) -> Signal:
    """Smart Turn v3.2 (``harken.providers.turn.smart_turn.SmartTurn``) on the given lane."""
    try:
        from harken.providers.turn.smart_turn import SmartTurn
    except ImportError as exc:
        raise SystemExit(
            f"--signal smart-turn: no harken.providers.turn.smart_turn ({exc})"
        ) from exc
    model = SmartTurn.load(args.turn_model, lane, model_root())
    probability: Signal = model.probability
    return probability


SIGNALS: dict[str, eot_llm.Loader] = {
    "smart-turn": load_smart_turn,
    **eot_llm.loaders(load_smart_turn),  # llm, llm-bare, combined, combined-bare
}
"""``--signal NAME``: an async loader of the signal (or of several, named), given the arguments
and the compute lane its model calls run on."""


def save(data: PauseSet, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for i, clip in enumerate(data.clips):
        body = clip.samples.astype("<i2").tobytes()
        name = f"{i:02d}-{clip.name.replace(' ', '_').replace('|', '-')}.wav"
        (directory / name).write_bytes(wav_header(RATE, data_size=len(body)) + body)
    print(f"wrote {len(data.clips)} clips to {directory}")


def check(data: PauseSet) -> None:
    """Whisper on every clip against the recording as recorded (a cut inside a word shows as a
    changed transcript), and the VAD inside each inserted pause once it has decayed."""
    from harken.providers.stt.whisper import load_model

    whisper = load_model(verify("whisper-base", model_root()))
    print(
        "\ncheck: Whisper base on each clip; the VAD's highest probability inside each "
        "pause, from 300 ms after its start to 100 ms before speech resumes"
    )
    reference: dict[str, str] = {}
    for i, clip in enumerate(data.clips):
        text = heard(whisper, clip.samples)
        if clip.name == clip.recording:
            reference[clip.name] = text
            print(f"  {clip.name:30} {text}")
            continue
        pause = next(p for p in data.pauses if p.clip == i)
        inside = [
            p
            for k, (p, _) in enumerate(clip.frames)
            if pause.start + RATE * 3 // 10 <= k * FRAME_SAMPLES < pause.resume - RATE // 10
        ]
        same = "same" if text == reference[clip.recording] else f"DIFFERS: {text}"
        print(f"  {clip.name:30} VAD max {max(inside, default=0):.2f}  {same}")


# ----------------------------------------------------------------------------- main


async def run(args: argparse.Namespace) -> None:
    begin = time.perf_counter()
    vad = SileroVAD(verify("silero-vad", model_root()))
    data = build(vad)
    built = time.perf_counter() - begin
    describe(data)
    print(f"set built in {built:.1f} s (the VAD over every clip as the server runs it)")
    if args.check:
        check(data)
    if args.save:
        save(data, Path(args.save))

    lane = ComputeLane("eot-bench")
    try:
        signals: dict[str, Signal] = {}
        for name in args.signal:
            loaded = await SIGNALS[name](args, lane)
            signals.update(loaded if isinstance(loaded, dict) else {name: loaded})
        judge = Judge(signals)
        policies = [fixed(ms) for ms in args.fixed_ms]
        for floor in args.floor_ms:
            policies.append(semantic("oracle", 0.5, floor, args.timeout_ms, args.floor_ms))
            for name in signals:
                policies.extend(
                    semantic(name, t, floor, args.timeout_ms, args.floor_ms)
                    for t in args.thresholds
                )
        results = [await evaluate(policy, data, judge) for policy in policies]
    finally:
        lane.close()
    floors = ", ".join(f"{frames(ms) * FRAME_SECONDS * 1000:.0f}" for ms in args.floor_ms)
    timeout = frames(args.timeout_ms) * FRAME_SECONDS * 1000
    print(
        f"\nsignal policies (oracle{', ' if signals else ''}{', '.join(signals)}): "
        f"silence floor {floors} ms, timeout {timeout:.0f} ms. Delay: last speech sample -> "
        "end of turn, in audio time\n"
    )
    table(results, data)
    for name, seconds in judge.seconds.items():
        ms = [s * 1000 for s in seconds]
        print(
            f"\n{name}: {len(ms)} calls, {pct(ms, 50):.0f} ms p50, {pct(ms, 90):.0f} ms p90, "
            f"{max(ms, default=0):.0f} ms max per call (not in the delays above)"
        )
    eot_llm.report(args.list)
    if args.list:
        listing(data, results, judge)
    print(f"\nrun time {time.perf_counter() - begin:.1f} s")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--fixed-ms",
        type=float,
        nargs="+",
        default=[160, 256, 352, 448, 544, 736, 1000],
        help="fixed silences to try (rounded to 32 ms frames as the server does)",
    )
    parser.add_argument("--signal", nargs="*", default=[], choices=sorted(SIGNALS))
    parser.add_argument(
        "--thresholds", type=float, nargs="+", default=[0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99]
    )
    parser.add_argument("--floor-ms", type=float, nargs="+", default=[192.0])
    parser.add_argument("--timeout-ms", type=float, default=1500.0)
    parser.add_argument("--turn-model", default="smart-turn-v3.2", help="catalog id for the signal")
    eot_llm.add_arguments(parser)
    parser.add_argument("--list", action="store_true", help="every pause and end, per policy")
    parser.add_argument("--check", action="store_true", help="Whisper on every clip")
    parser.add_argument("--save", metavar="DIR", help="write the clips as WAV files")
    asyncio.run(run(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
