"""Embedded LLM (llama.cpp + Qwen2.5-Coder): load, memory, time to first token, decode speed.

Each model runs in its own fresh process (so load time and RSS are its own), through
:class:`~harken.providers.llm.llama.LlamaLLM` on a ComputeLane, the way the server runs it:

* load time and RSS after loading;
* cold TTFT: a new ~300-token system prompt that nothing has cached, plus one question;
* prime time (``prime`` at BACKGROUND priority) and primed TTFT: the next question after it;
* decode speed of the answers (tokens after the first one, per second);
* tool choice: time to a ``get_weather`` call, and TTFT of chit-chat with the tool offered
  (the "none" choice plus the answer), both with the tools primed;
* two sessions streaming at once (their tokens interleave on the lane, each restoring its own
  KV cache): time for both, against one after the other.

Timings are the best of ``--runs``; plain numbers, no assertions. Run from the repository root::

    PYTHONPATH=src python benchmarks/llm_bench.py [--quality] [--runs 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import subprocess
import sys
import time
from pathlib import Path

from harken.engines.assemble import verify
from harken.engines.lane import SESSION, ComputeLane
from harken.protocol.settings import FunctionDef
from harken.session.effects import ChatMessage

FACTS = " ".join(
    f"Fact {i}: the shop on street number {i} sells {item} every day from nine to five."
    for i, item in enumerate(["bread", "fish", "books", "shoes", "lamps", "maps", "tea"] * 2)
)
QUESTIONS = (
    "Which shop sells tea?",
    "What is a good quick dinner idea?",
    "How far away is the moon?",
    "Tell me something nice about dogs.",
)
WEATHER = FunctionDef(
    "get_weather",
    "Get the current weather for a city",
    {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def chat(prompt: str, question: str) -> list[ChatMessage]:
    return [ChatMessage("system", prompt), ChatMessage("user", question)]


async def turn(
    llm: object, messages: list[ChatMessage], functions: tuple[FunctionDef, ...] = ()
) -> tuple[float, float, int, str]:
    """Time to first output, total time, tokens of the answer and the reply (text or call)."""
    from harken.providers.base import LLMText
    from harken.providers.llm.llama import LlamaLLM

    assert isinstance(llm, LlamaLLM)
    start, first, parts = time.perf_counter(), 0.0, []
    async for output in llm.stream(messages, functions):
        first = first or time.perf_counter() - start
        parts.append(output.text if isinstance(output, LLMText) else repr(output))
    return first, time.perf_counter() - start, llm.turns[-1].output_tokens, "".join(parts)


async def bench(model: str, runs: int, threads: int) -> None:
    from harken.providers.llm.llama import LlamaLLM

    lane, before = ComputeLane("bench"), rss_mb()
    start = time.perf_counter()
    llm = LlamaLLM(verify(model), lane, n_threads=threads)
    print(f"{model}: load {time.perf_counter() - start:.2f} s, RSS +{rss_mb() - before:.0f} MB")
    await turn(llm, chat("Warm-up.", "Hi!"))  # first decode allocates buffers

    cold, primed, prime, speed, reply = [], [], [], [], ""
    for run in range(runs):
        SESSION.set(f"cold-{run}")
        first, total, tokens, _ = await turn(llm, chat(f"Agent {run}. {FACTS}", QUESTIONS[0]))
        cold.append(first)
        SESSION.set(f"primed-{run}")
        prompt = f"Primed agent {run}. {FACTS}"
        start = time.perf_counter()
        await llm.prime([ChatMessage("system", prompt)])
        prime.append(time.perf_counter() - start)
        first, total, tokens, reply = await turn(llm, chat(prompt, QUESTIONS[1 + run % 3]))
        primed.append(first)
        speed.append((tokens - 1) / max(total - first, 1e-9))
    print(f"  prompt ~{llm.turns[-1].prompt_tokens} tokens")
    print(f"  cold TTFT            {min(cold):6.3f} s")
    print(f"  prime                {min(prime):6.3f} s")
    print(f"  primed TTFT          {min(primed):6.3f} s")
    print(f"  decode               {max(speed):6.1f} tok/s   e.g. {reply!r}")

    SESSION.set("tools")
    prompt = f"Tool agent. {FACTS}"
    await llm.prime([ChatMessage("system", prompt)], [WEATHER])
    calls, chit = [], []
    for run in range(runs):
        city = ("Paris", "Oslo", "Rome", "Lima")[run % 4]
        q = f"What's the weather in {city}?"
        calls.append(await turn(llm, chat(prompt, q), (WEATHER,)))
        chit.append(await turn(llm, chat(prompt, QUESTIONS[1 + run % 3]), (WEATHER,)))
    print(f"  tool call            {min(c[1] for c in calls):6.3f} s   e.g. {calls[-1][3]}")
    print(f"  chit-chat TTFT       {min(c[0] for c in chit):6.3f} s   (tool offered, not used)")

    for who in ("A", "B"):
        SESSION.set(who)
        await llm.prime([ChatMessage("system", f"Agent {who}. {FACTS}")])

    async def talk(who: str, question: str) -> tuple[float, float, int, str]:
        SESSION.set(who)
        return await turn(llm, chat(f"Agent {who}. {FACTS}", question))

    start = time.perf_counter()
    alone = [await talk(who, QUESTIONS[3]) for who in ("A", "B")]
    alone_rate = sum(r[2] for r in alone) / (time.perf_counter() - start)
    start = time.perf_counter()
    both = await asyncio.gather(talk("A", QUESTIONS[2]), talk("B", QUESTIONS[2]))
    both_rate = sum(r[2] for r in both) / (time.perf_counter() - start)
    print(
        f"  two sessions         {both_rate:6.1f} tok/s in all at once (TTFT {both[0][0]:.2f} /"
        f" {both[1][0]:.2f} s), {alone_rate:.1f} tok/s one after the other"
    )
    print(f"  RSS {rss_mb():.0f} MB, peak {peak_mb():.0f} MB")
    lane.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quality", action="store_true", help="also the 1.5B (quality option)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", help=argparse.SUPPRESS)  # one model, in this process
    args = parser.parse_args()
    if args.model:
        asyncio.run(bench(args.model, args.runs, args.threads))
        return
    models = ["qwen2.5-coder-0.5b"] + ["qwen2.5-coder-1.5b"] * args.quality
    for model in models:
        command = [sys.executable, __file__, "--model", model, "--runs", str(args.runs)]
        subprocess.run([*command, "--threads", str(args.threads)], check=True)


if __name__ == "__main__":
    main()
