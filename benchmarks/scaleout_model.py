"""Section 6 of benchmarks/scaleout.py: the shared model tier (see its docstring).

One ``llama-server --parallel 4`` (tests/model_servers.py) and 2 replicas whose think route
goes to it; one session asks alone, then 4 (2 per replica) ask at the same moment.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scaleout_procs import REPO, cluster, http_get
from scaleout_table import print_problems, quantile, table
from scaleout_wire import SETTINGS, Session, start

sys.path.insert(0, str(REPO / "tests"))

from model_servers import Running, llama_server

SLOTS = 4
PROMPT = "You are a friendly voice assistant. Answer in plain spoken sentences, no lists."
QUESTIONS = (
    "In about {n} words, explain why the sky is blue.",
    "In about {n} words, explain how a bicycle stays upright.",
    "In about {n} words, explain why bread rises when it bakes.",
    "In about {n} words, explain how bees make honey.",
)
WARM_UP = "Say hello in one short sentence."
REPLY_BUDGET = 90.0  # seconds a reply may take on a busy 2-core machine
MAX_TOKENS = 400  # a bound on a looping answer (0.5B models loop now and then); ~3x the ask
TIMING = re.compile(r"task (\d+) \|\s+eval time =\s+([0-9.]+) ms /\s+(\d+) tokens")
PROMPT_TIMING = re.compile(r"task (\d+) \| prompt eval time =\s+([0-9.]+) ms /\s+(\d+) tokens")


def model_settings() -> dict[str, Any]:
    settings = json.loads(json.dumps(SETTINGS))
    settings["agent"]["think"]["prompt"] = PROMPT
    return settings


@dataclass
class Answer:
    replica: int
    asked: float
    first_token: float | None  # LatencyReport ttt_token_latency (the replica's clock)
    first_audio: float | None  # asked -> AgentStartedSpeaking (the client's clock)
    done: float | None  # asked -> AgentAudioDone
    text: str

    @property
    def complete(self) -> bool:
        return self.done is not None and self.text.rstrip(" \"'").endswith((".", "!", "?"))


async def ask(session: Session, replica: int, question: str) -> Answer:
    asked = time.monotonic()
    session.send({"type": "InjectUserMessage", "content": question})
    with contextlib.suppress(TimeoutError, ConnectionError):
        await session.wait_for("AgentAudioDone", REPLY_BUDGET, since=asked)
    spoke = session.first("AgentStartedSpeaking", asked)
    done = session.first("AgentAudioDone", asked)
    report = session.first("LatencyReport", asked)
    texts = [
        m["content"]
        for at, m in session.messages
        if at >= asked and m.get("type") == "ConversationText" and m.get("role") == "assistant"
    ]
    return Answer(
        replica,
        asked,
        None if report is None else report[1].get("ttt_token_latency"),
        None if spoke is None else spoke[0] - asked,
        None if done is None else done[0] - asked,
        " ".join(texts),
    )


def eval_tasks(log: str) -> list[tuple[int, float, int]]:
    """(task, eval ms, eval tokens) of each request that generated more than a prime's token."""
    return [(int(t), float(m), int(n)) for t, m, n in TIMING.findall(log) if int(n) > 1]


async def idle(server: Running, budget: float = 60.0) -> None:
    """Until no slot of llama-server is processing (the replicas' primes are done)."""
    deadline = time.monotonic() + budget
    while time.monotonic() < deadline:
        status, slots = await http_get(server.url("/slots"))
        if status == 200 and not any(s.get("is_processing") for s in slots):
            return
        await asyncio.sleep(0.1)


Slots = dict[int, int]  # slot id -> tokens decoded so far, for slots generating


async def sample_slots(server: Running, stop: asyncio.Event) -> list[tuple[float, Slots]]:
    """llama-server's /slots every 100 ms until ``stop``: the decoding slots' n_decoded."""
    samples: list[tuple[float, Slots]] = []
    while not stop.is_set():
        status, slots = await http_get(server.url("/slots"))
        if status == 200:
            decoding = {
                int(s["id"]): int(s["next_token"][0]["n_decoded"])
                for s in slots
                if s.get("is_processing")
                and s.get("next_token")
                and s["next_token"][0].get("n_decoded", 0) > 0
            }
            samples.append((time.monotonic(), decoding))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.1):
                await stop.wait()
    return samples


def together_rate(samples: Sequence[tuple[float, Slots]], count: int) -> tuple[float, float]:
    """(tokens/s summed over the slots, seconds) over the samples where ``count`` slots were
    decoding at once: the aggregate rate while all the requests generate."""
    window = [(t, d) for t, d in samples if len(d) >= count]
    if len(window) < 2:
        return float("nan"), 0.0
    (t0, d0), (t1, d1) = window[0], window[-1]
    tokens = sum(d1[slot] - d0[slot] for slot in set(d0) & set(d1))
    return tokens / (t1 - t0), t1 - t0


@dataclass
class Round:
    label: str
    answers: list[Answer]
    tasks: list[tuple[int, float, int]]  # from llama-server's log
    samples: list[tuple[float, Slots]]  # from llama-server's /slots
    prompts: list[tuple[int, float, int]]  # (task, prompt eval ms, prompt tokens evaluated)

    @property
    def tokens(self) -> int:
        return sum(n for _, _, n in self.tasks)

    @property
    def wall(self) -> float:
        ends = [a.asked + a.done for a in self.answers if a.done is not None]
        return max(ends, default=float("nan")) - min(a.asked for a in self.answers)

    @property
    def decode_rate(self) -> float:
        """The sum of each request's decode rate (tokens over its own eval time)."""
        return sum(n / (m / 1000) for _, m, n in self.tasks if m > 0)


async def ask_round(
    label: str, server: Running, pairs: Sequence[tuple[Session, int]], words: int
) -> Round:
    await idle(server)
    mark = len(server.log.read_text(errors="replace"))
    questions = [QUESTIONS[i % len(QUESTIONS)].format(n=words) for i in range(len(pairs))]
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_slots(server, stop))
    answers = await asyncio.gather(
        *(ask(s, replica, q) for (s, replica), q in zip(pairs, questions, strict=True))
    )
    await idle(server)
    stop.set()
    log = server.log.read_text(errors="replace")[mark:]
    tasks = eval_tasks(log)
    ids = {t for t, _, _ in tasks}
    prompts = [
        (int(t), float(m), int(n)) for t, m, n in PROMPT_TIMING.findall(log) if int(t) in ids
    ]
    return Round(label, list(answers), tasks, await sampler, prompts)


async def model(opts: argparse.Namespace, root: Path) -> None:
    with contextlib.ExitStack() as stack:
        server = await asyncio.to_thread(
            stack.enter_context, llama_server(opts.model, slots=SLOTS, threads=2)
        )
        endpoint = {
            "kind": "llm",
            "url": server.url("/v1/chat/completions"),
            "preset": "llama.cpp",
            "slots": SLOTS,
            "timeout": 60,
            "max_tokens": MAX_TOKENS,
        }
        env = {
            "HARKEN_ENDPOINTS": json.dumps({"llm": endpoint}),
            "HARKEN_MODELS_THINK": "open_ai/*=llm",
        }
        async with cluster(root / "model", 2, env, balanced=False) as c:
            rounds = await model_rounds(server, c.ports, opts.words)
            problems = c.problems()
    report_model(opts, rounds, problems)


async def model_rounds(server: Running, ports: Sequence[int], words: int) -> list[Round]:
    """A warm-up question, then one fresh session alone, then SLOTS fresh ones at once (each
    with only its primed system prompt as history, so that no slot cache is favoured)."""
    settings = model_settings()
    count = SLOTS + 2
    sessions = [await start(ports[i % 2], settings, timeout=30) for i in range(count)]
    pairs = [(s, i % 2) for i, s in enumerate(sessions)]
    try:
        await ask(sessions[0], 0, WARM_UP)
        alone = await ask_round("1 session alone", server, pairs[1:2], words)
        together = await ask_round(f"{SLOTS} at once", server, pairs[2:], words)
    finally:
        await asyncio.gather(*(s.close() for s in sessions))
    return [alone, together]


def report_model(
    opts: argparse.Namespace, rounds: Sequence[Round], problems: Sequence[str]
) -> None:
    rows = []
    for r in rounds:
        for n, a in enumerate(r.answers):
            rows.append(answer_row(r.label, n, a))
    table(
        f"6. Shared model tier: llama-server --parallel {SLOTS} --threads 2 ({opts.model}), "
        f"2 replicas, answers of about {opts.words} words asked for",
        [
            "round",
            "session",
            "replica",
            "first token s",
            "first audio s",
            "done s",
            "complete",
            "words",
            "~tokens (words x 1.3)",
        ],
        rows,
    )
    together = rounds[-1]
    rate = [r.tokens / r.wall if r.wall > 0 else float("nan") for r in rounds]
    both = [together_rate(r.samples, len(r.answers)) for r in rounds]
    for r, wall_rate, (live, span) in zip(rounds, rate, both, strict=True):
        print(
            f"  {r.label}: {r.tokens} tokens generated (llama-server log, {len(r.tasks)} "
            f"requests) in {r.wall:.2f} s from the ask to the last AgentAudioDone = "
            f"{wall_rate:.1f} tok/s; while all {len(r.answers)} decoded (/slots, {span:.1f} s): "
            f"{live:.1f} tok/s; the requests' own decode rates summed: {r.decode_rate:.1f} tok/s"
        )
        evaluated = ", ".join(f"{n} in {m:.0f} ms" for _, m, n in r.prompts)
        generated = ", ".join(f"{n} in {m:.0f} ms" for _, m, n in r.tasks)
        print(f"    per request: prompt tokens evaluated {evaluated}; generated {generated}")
    firsts = [a.first_token for a in together.answers if a.first_token is not None]
    print(
        f"  {SLOTS} at once vs alone: {both[1][0] / both[0][0]:.2f}x tokens/s while all decode, "
        f"{rate[1] / rate[0]:.2f}x ask-to-last-reply (goal >= 1.4x); first "
        f"token max {max(firsts, default=float('nan')):.2f} s, p50 {quantile(firsts, 0.5):.2f} "
        f"s (goal <= 1 s for all); complete replies "
        f"{sum(a.complete for a in together.answers)}/{len(together.answers)}"
    )
    print_problems(problems)


def answer_row(label: str, n: int, a: Answer) -> list[object]:
    words = len(a.text.split())
    return [
        label,
        n + 1,
        a.replica,
        "-" if a.first_token is None else f"{a.first_token:.2f}",
        "-" if a.first_audio is None else f"{a.first_audio:.2f}",
        "-" if a.done is None else f"{a.done:.2f}",
        "yes" if a.complete else f"NO: ...{a.text[-30:]!r}",
        words,
        round(words * 1.3),
    ]
