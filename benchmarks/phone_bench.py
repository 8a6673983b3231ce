"""Phone calls over the Twilio media-stream path with the embedded models (issue 12): how long a
caller waits, what the agent understood, and whether the agent's audio reaches the caller whole;
one call alone, then several at once.

**A call.** The server runs in this process (``latency_bench.InProcessServer``: the default
configuration, ``providers = "embedded"``) with one phone profile per call, chosen by the stream's
``agent`` parameter; each profile's prompt (the default phone agent's) carries the call's number,
for the reason ``latency_bench`` numbers its sessions (the LLM keeps KV-cache snapshots across
sessions: a prompt seen before would be found already evaluated). The caller is
:class:`phone_client.CarrierClient` on ``/twilio``: Twilio's messages, μ-law at 8 kHz in 20 ms
``media`` frames at real time both ways, each ``mark`` echoed when the audio before it has been
played. Like a carrier it sends a frame every 20 ms for the whole call, silence when the caller
is not speaking:

1. silence until the greeting has been played (its marks echoed) and 0.5 s more;
2. for each of ``--turns`` prompts (``speech.asterisk()``: real 8 kHz telephone speech, Debian's
   Asterisk prompts, looped; each call starts at a different one): the prompt at real time, then
   silence until the agent's reply has been played (as ``CarrierClient.wait_quiet``: no media
   for 0.3 s; and every mark sent has been echoed, and the session's history holds the reply, so
   that a pause between two sentences of a slow reply is not taken for its end), then 0.5 s more.

A run is a warm-up call of one turn (not counted), then one setting per ``--calls`` value: that
many calls at once, started 1 s apart. With the default 12 turns every call speaks each of the 12
prompts once, so each setting's WER is over the same words; the default run (1 call, then 4)
takes about 5 minutes on 2 cores.

**Metrics**, per turn, then per setting:

* **mouth-to-ear** = first agent ``media`` frame received after the last speech sample - the
  last speech sample. The last speech sample is found as ``latency_bench`` finds it: the earlier
  of the acoustic end (``voice_client.acoustic_span``, at 8 kHz) and the end of the last 32 ms
  frame the Silero VAD scores as speech (the prompt upsampled to 16 kHz); its time is when the
  frame holding it was sent (:class:`Caller` records each frame's send time);
* **WER**: corpus WER of the caller's transcripts (``speech.corpus_wer``): the user messages the
  session's history gained during the turn, read from the server's pump for the call (a carrier
  gets no ConversationText), against the package's transcripts;
* **continuity** of the reply, from its first ``media`` frame to its last (after the last
  ``clear`` of the turn, if any): the Player sends 0.1 s ahead of real time, then a frame every
  20 ms, so frames should arrive every ~20 ms. *gap*: the largest interval between two
  consecutive frames' arrivals; *>40*: how many intervals exceed 40 ms; **underruns**: how often
  the carrier's buffer ran dry inside the reply, i.e. a frame arrived after everything before it
  had been played (the client's playhead, replayed over the arrival times: ``playhead =
  max(playhead, arrival) + 20 ms``), which is what the caller hears as a gap; *dry*: the total
  time it was dry. A late frame within the 0.1 s lead is not an underrun;
* *clears*: replies cut off during the turn: ``clear`` messages after agent audio of the turn
  (the Player sends one at every onset of the caller's speech; one after agent audio means the
  agent started to answer before the prompt was over, e.g. in a pause between its sentences).

The client threads share this process (and its GIL) with the server, as in ``latency_bench``:
arrival times include any wait for the GIL, so the gaps are, if anything, overstated. Numbers
only; nothing is asserted. From the repository root::

    .venv/bin/python benchmarks/phone_bench.py [--turns 12] [--calls 1 4]
"""

from __future__ import annotations

import argparse
import base64
import bisect
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

import latency_bench as lb
from harken.engines.assemble import verify
from harken.phone import DEFAULT_AGENT
from harken.protocol.audio import resample
from harken.providers.vad import SileroVAD
from harken.server.connection import Pump
from harken.server.phone import CarrierLink
from phone_client import FRAME, CarrierClient, Heard
from speech import PHONE_RATE, RATE, Utterance, asterisk, corpus_wer, model_root
from voice_client import acoustic_span, speech_span

PROMPT = DEFAULT_AGENT["think"]["prompt"]
QUIET = 0.3  # seconds without media (and every mark echoed) before a reply counts as played
AFTER = 0.5  # seconds of silence after the greeting and after each reply
TURN_TIMEOUT = 60.0
STAGGER = 1.0  # seconds between the starts of concurrent calls
FRAME_S = 0.02


# ----------------------------------------------------------------------------- speech


@dataclass(frozen=True, slots=True)
class Prompt:
    utterance: Utterance
    end: int  # one past the last speech sample (8 kHz)


def load_prompts() -> list[Prompt]:
    """The Asterisk prompts and where their speech ends (see the module docstring)."""
    vad = SileroVAD(verify("silero-vad", model_root()))
    prompts = []
    for u in asterisk():
        sound = acoustic_span(u.samples, PHONE_RATE)
        voice = speech_span(resample(u.samples, PHONE_RATE, RATE), vad)
        prompts.append(Prompt(u, min(sound.end, voice.end * PHONE_RATE // RATE)))
    return prompts


def profiles(count: int) -> dict[str, Any]:
    """``phone_profiles``: ``call1`` … ``call<count>``, each prompt with its own number."""
    return {
        f"call{n}": {
            "agent": {"think": {**DEFAULT_AGENT["think"], "prompt": f"{PROMPT} Call {n}."}}
        }
        for n in range(1, count + 1)
    }


# ----------------------------------------------------------------------------- a call


class Caller(CarrierClient):
    """A CarrierClient that records when each ``media`` frame leaves (its line sends one every
    20 ms, the caller's words or silence)."""

    def __init__(self, url: str, parameters: dict[str, str]) -> None:
        super().__init__(url, parameters)
        self.sent: list[float] = []  # only the line's thread appends (and sends media)

    def _send(self, message: dict[str, Any]) -> None:
        if message.get("event") == "media":
            self.sent.append(time.monotonic())
        super()._send(message)

    def speak(self, prompt: Prompt) -> tuple[float, float]:
        """Say the prompt; (when its first frame left, when its last speech sample left)."""
        begin = self.stream(prompt.utterance.samples)  # taken just after its first frame's send
        first = bisect.bisect_right(self.sent, begin) - 1  # its frames follow one another
        end = first + (prompt.end - 1) // FRAME
        if first < 0 or end >= len(self.sent):
            raise RuntimeError(f"{prompt.utterance.name} did not go out (the call ended?)")
        return self.sent[first], self.sent[end]

    def wait_until(self, done: Callable[[], bool], timeout: float = TURN_TIMEOUT) -> float:
        """Until ``done()`` (the line carries silence meanwhile); returns when it was."""
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline or self.closed_code is not None:
                raise TimeoutError(f"no reply played within {timeout:.0f} s")
            time.sleep(0.02)
        return time.monotonic()

    def played(self) -> bool:
        """Every mark sent has come back and no media arrived for QUIET seconds."""
        media, marks = self.events("media"), self.events("mark")
        quiet = bool(media) and time.monotonic() - media[-1].t >= QUIET
        return quiet and len(self.echoed) >= len(marks)


def history(pump: Pump) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in pump.session.turns.conversation.messages("", None)]


def said(pump: Pump, role: str) -> list[str]:
    return [text for r, text in history(pump) if r == role]


def pump_of(server: lb.InProcessServer, profile: str, timeout: float = 10.0) -> Pump:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pump in list(server.server._pumps):
            if isinstance(pump.ws, CarrierLink) and pump.ws.profile == profile:
                return pump
        time.sleep(0.01)
    raise TimeoutError(f"no session for the call of profile {profile}")


def replied(pump: Pump, users: int) -> bool:
    """The session heard a new user message and its reply to it is in the history."""
    messages = history(pump)
    return sum(r == "user" for r, _ in messages) > users and messages[-1][0] == "assistant"


# ----------------------------------------------------------------------------- a turn


@dataclass(slots=True)
class Turn:
    call: int
    name: str
    reference: str
    text: str  # what the session heard
    reply: str
    mouth_to_ear: float
    frames: int
    reply_s: float  # audio received for the reply, in seconds
    gap: float  # the largest interval between consecutive frames of the reply
    gaps_40: int  # intervals over 40 ms
    underruns: int
    dry: float  # total time the carrier's buffer was empty inside the reply
    clears: int


def continuity(media: Sequence[Heard]) -> tuple[float, int, int, float]:
    """(largest gap, gaps over 40 ms, underruns, dry seconds) of a reply's frames."""
    arrivals = [h.t for h in media]
    gaps = np.diff(arrivals) if len(arrivals) > 1 else np.zeros(1)
    playhead, underruns, dry = 0.0, 0, 0.0
    for i, heard in enumerate(media):
        if i and heard.t > playhead:
            underruns, dry = underruns + 1, dry + heard.t - playhead
        playhead = (
            max(playhead, heard.t) + len(base64.b64decode(heard.data["media"]["payload"])) / 8000
        )
    return float(gaps.max()), int((gaps > 0.04).sum()), underruns, dry


def one_turn(call: Caller, pump: Pump, number: int, prompt: Prompt) -> Turn:
    users = len(said(pump, "user"))
    began, ended = call.speak(prompt)
    done = call.wait_until(lambda: call.played() and replied(pump, users))
    heard = [h for h in call.received if began <= h.t <= done]
    clears = [h.t for h in heard if h.event == "clear"]  # one at each onset of speech
    media = [h for h in heard if h.event == "media" and h.t > max([ended, *clears])]
    cut = [t for t in clears if any(h.event == "media" and h.t < t for h in heard)]
    if not media:
        raise RuntimeError(f"{prompt.utterance.name}: no reply audio after the speech")
    gap, gaps_40, underruns, dry = continuity(media)
    call.silence(AFTER)
    return Turn(
        call=number,
        name=prompt.utterance.name,
        reference=prompt.utterance.text,
        text=" ".join(said(pump, "user")[users:]),
        reply=said(pump, "assistant")[-1],
        mouth_to_ear=media[0].t - ended,
        frames=len(media),
        reply_s=len(media) * FRAME_S,
        gap=gap,
        gaps_40=gaps_40,
        underruns=underruns,
        dry=dry,
        clears=len(cut),
    )


def one_call(
    server: lb.InProcessServer, number: int, prompts: Sequence[Prompt], delay: float = 0.0
) -> list[Turn]:
    time.sleep(delay)
    url = f"ws://127.0.0.1:{server.server.port}{server.config.twilio_path}"
    turns = []
    call = Caller(url, {"agent": f"call{number}"})
    with call:
        pump = pump_of(server, f"call{number}")
        call.wait_until(lambda: bool(call.echoed) and call.played())  # the greeting
        call.silence(AFTER)
        for prompt in prompts:
            turn = lb.attempt(
                f"call {number} {prompt.utterance.name}",
                partial(one_turn, call, pump, number, prompt),
            )
            if turn is not None:
                turns.append(turn)
    return turns


def calls_at_once(
    server: lb.InProcessServer, first: int, count: int, prompts: Sequence[Prompt], turns: int
) -> list[Turn]:
    """``count`` calls (numbered from ``first``), started STAGGER apart, ``turns`` prompts each."""
    out: list[Turn] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        start = i * len(prompts) // count  # each call starts at a different prompt
        mine = [prompts[(start + k) % len(prompts)] for k in range(turns)]
        got = lb.attempt(
            f"call {first + i}", lambda: one_call(server, first + i, mine, i * STAGGER)
        )
        with lock:
            out.extend(got or [])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(out, key=lambda t: t.call)


# ----------------------------------------------------------------------------- reporting


@dataclass(frozen=True, slots=True)
class Summary:
    label: str
    turns: int
    tried: int
    m2e: list[float]
    errors: int
    words: int
    gaps: list[float]
    gaps_40: int
    frames: int
    underruns: int
    replies_dry: int
    dry: float
    clears: int
    busy: float


def summarise(label: str, turns: Sequence[Turn], tried: int, busy: float) -> Summary:
    errors, words = corpus_wer([(t.reference, t.text) for t in turns])
    return Summary(
        label=label,
        turns=len(turns),
        tried=tried,
        m2e=[t.mouth_to_ear for t in turns],
        errors=errors,
        words=words,
        gaps=[t.gap for t in turns],
        gaps_40=sum(t.gaps_40 for t in turns),
        frames=sum(t.frames for t in turns),
        underruns=sum(t.underruns for t in turns),
        replies_dry=sum(t.underruns > 0 for t in turns),
        dry=sum(t.dry for t in turns),
        clears=sum(t.clears for t in turns),
        busy=busy,
    )


def print_turns(title: str, turns: Sequence[Turn]) -> None:
    print(f"\n## {title}\n")
    print(
        f"{'call':>4} {'prompt':26} {'m2e':>5} {'WER':>4} {'reply':>5} {'gap':>4} {'>40':>3}"
        f" {'under':>5} {'dry':>4} {'clr':>3}   (ms; reply in s) what the agent heard → its reply"
    )
    for t in turns:
        wer = corpus_wer([(t.reference, t.text)])
        print(
            f"{t.call:4} {t.name:26} {lb.ms(t.mouth_to_ear):>5} {wer[0] / max(wer[1], 1):4.0%}"
            f" {t.reply_s:5.1f} {lb.ms(t.gap):>4} {t.gaps_40:3} {t.underruns:5} {lb.ms(t.dry):>4}"
            f" {t.clears:3}   {t.text[:44]!r} → {t.reply[:50]!r}"
        )


def print_summaries(summaries: Sequence[Summary]) -> None:
    print("\n## Summary\n")
    heads = ["setting", "turns", "m2e p50", "p95", "max", "WER", "errors", "gap p50", "max"]
    heads += [">40ms", "underruns", "dry", "clears", "busy"]
    rows = [heads]
    for s in summaries:
        rows.append(
            [
                *(s.label, f"{s.turns}/{s.tried}", lb.ms(lb.pct(s.m2e, 50))),
                *(lb.ms(lb.pct(s.m2e, 95)), lb.ms(lb.pct(s.m2e, 100))),
                *(f"{s.errors / max(s.words, 1):.1%}", f"{s.errors}/{s.words}"),
                *(lb.ms(lb.pct(s.gaps, 50)), lb.ms(lb.pct(s.gaps, 100))),
                *(f"{s.gaps_40}/{s.frames}", f"{s.underruns} in {s.replies_dry}"),
                *(lb.ms(s.dry), str(s.clears), f"{s.busy:.0%}"),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(heads))]
    for row in rows:
        cells = [v.rjust(w) for v, w in zip(row, widths, strict=True)]
        print(row[0].ljust(widths[0]), *cells[1:])
    print(
        "\nm2e: last speech sample sent -> first agent media frame received (ms); WER: corpus "
        "(errors/reference words); gap: the largest interval between consecutive reply frames' "
        "arrivals, p50 and max over replies (ms); >40ms: such intervals / all reply frames; "
        "underruns: times the carrier's buffer ran dry inside a reply, in how many replies; dry: "
        "their total (ms); clears: replies cut off by the caller's speech; busy: CPU share of "
        "other processes"
    )


# ----------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--turns", type=int, default=12, help="prompts per call (looped)")
    parser.add_argument(
        "--calls", type=int, nargs="+", default=[1, 4], help="settings: calls at once, in order"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    prompts = load_prompts()
    numbers = 1 + sum(args.calls)  # the warm-up call, then each setting's
    server = lb.InProcessServer(phone_profiles=profiles(numbers)).start()
    load = os.getloadavg()
    print("# harken phone calls over the Twilio path (in-process, embedded models)")
    print(
        f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs"
    )
    print(f"{len(prompts)} Asterisk prompts (8 kHz), {args.turns} turns per call")
    summaries = []
    try:
        lb.attempt("warm-up call", lambda: one_call(server, 1, prompts[-1:]))
        first = 2
        for count in args.calls:
            machine = lb.OTHERS.sample()
            turns = calls_at_once(server, first, count, prompts, args.turns)
            label = f"{count} call{'s' if count > 1 else ''}"
            summaries.append(summarise(label, turns, count * args.turns, lb.OTHERS.share(machine)))
            print_turns(f"{label} at once ({args.turns} turns each)", turns)
            first += count
    finally:
        server.stop()
    print_summaries(summaries)
    load = os.getloadavg()
    print(f"\nload average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
