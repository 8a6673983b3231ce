"""Mouth-to-ear with think in-process versus on llama.cpp's server, and 0.5B versus 1.5B.

The same measurement as ``latency_bench.py`` (its client, clips, fresh primed conversations and
lane timeline), over several server variants side by side in one process, **interleaved**: each
utterance is spoken to every variant in turn (the order rotating from one utterance to the next),
so the machine's drift and noise (±70-100 ms at p50 here) fall on all of them alike. Variants:

* ``embedded:MODEL``: the default server, the LLM in-process on the compute lane;
* ``remote:MODEL``: the same server with think routed (``[models.think] "*"``) to an operator
  endpoint (preset ``llama.cpp``: ``cache_prompt`` and the system prompt primed at Settings, as
  the in-process model primes it) on ``llama-server`` serving the same GGUF with the same thread
  count, on loopback, beside the server on the same cores.

Prints each variant's turns (``latency_bench``'s table; for ``remote`` the LLM is not on the
lane, so its time shows up in "ovh"), then p50/p90 per variant and the median of the paired
per-utterance differences against the first variant. Numbers only. From the repository root::

    .venv/bin/python benchmarks/think_bench.py [--turns 22] \
        [--variants embedded:qwen2.5-coder-1.5b remote:qwen2.5-coder-1.5b]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from functools import partial

import latency_bench as lb
from model_servers import Running, llama_server

DEFAULT_VARIANTS = ("embedded:qwen2.5-coder-1.5b", "remote:qwen2.5-coder-1.5b")


def server_for(variant: str, stack: contextlib.ExitStack, threads: int) -> lb.InProcessServer:
    kind, _, model = variant.partition(":")
    if kind == "embedded":
        return stack.enter_context(_started(lb.InProcessServer(llm_model=model)))
    if kind != "remote":
        raise SystemExit(f"unknown variant {variant!r}: embedded:MODEL or remote:MODEL")
    llama: Running = stack.enter_context(llama_server(model, slots=1, threads=threads))
    endpoint = {
        "kind": "llm",
        "url": llama.url("/v1/chat/completions"),
        "model": model,
        "preset": "llama.cpp",
    }
    server = lb.InProcessServer(
        llm_model=model,
        endpoints=json.dumps({"bench-llm": endpoint}),
        models={"think": {"*": "bench-llm"}},
    )
    return stack.enter_context(_started(server))


@contextlib.contextmanager
def _started(server: lb.InProcessServer) -> Iterator[lb.InProcessServer]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


def interleaved(
    servers: dict[str, lb.InProcessServer], speech: Sequence[lb.Speech], timeline: lb.Timeline
) -> dict[str, list[lb.Turn | None]]:
    names = list(servers)
    turns: dict[str, list[lb.Turn | None]] = {name: [] for name in names}
    for name, server in servers.items():  # one warm-up turn each, not counted
        eot = server.config.end_of_turn_ms
        lb.attempt(f"{name} warm-up", partial(lb.one_turn, server.url, speech[-1], eot, timeline))
    for i, item in enumerate(speech):
        order = names[i % len(names) :] + names[: i % len(names)]
        for name in order:
            server = servers[name]
            eot = server.config.end_of_turn_ms
            run = partial(lb.one_turn, server.url, item, eot, timeline)
            turns[name].append(lb.attempt(f"{name} {item.utterance.name}", run))
            time.sleep(0.3)
    return turns


def summary(turns: dict[str, list[lb.Turn | None]]) -> None:
    names = list(turns)
    base = names[0]
    print("\n## Summary (mouth-to-ear, ms)\n")
    print(f"{'variant':34} {'n':>3} {'p50':>6} {'p90':>6}  {'paired Δ vs ' + base:>24}")
    for name in names:
        done = [t.mouth_to_ear for t in turns[name] if t is not None]
        pairs = [
            (t.mouth_to_ear - b.mouth_to_ear)
            for t, b in zip(turns[name], turns[base], strict=True)
            if t is not None and b is not None
        ]
        delta = f"{lb.pct(pairs, 50) * 1000:+.0f}" if name != base and pairs else ""
        print(
            f"{name:34} {len(done):>3} {lb.ms(lb.pct(done, 50)):>6} {lb.ms(lb.pct(done, 90)):>6}"
            f"  {delta:>24}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--turns", type=int, default=22, help="utterances per variant (looped)")
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS))
    parser.add_argument("--threads", type=int, default=2, help="llama-server threads")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    speech = lb.load_speech()
    ordered = list(speech.values())
    picked = [ordered[i % len(ordered)] for i in range(args.turns)]
    timeline = lb.Timeline(lb.shared_lane())
    load = os.getloadavg()
    print("# think in-process vs on llama-server, interleaved")
    cpus = os.cpu_count()
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {cpus} CPUs")
    with contextlib.ExitStack() as stack:
        servers = {v: server_for(v, stack, args.threads) for v in args.variants}
        turns = interleaved(servers, picked, timeline)
    for name, done in turns.items():
        eot = lb.load_config(None, {}, {}).end_of_turn_ms
        lb.print_turns(name, [t for t in done if t is not None], eot)
    summary(turns)
    load = os.getloadavg()
    print(f"\nload average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
