"""The linguistic end-of-turn signal for ``eot_bench.py`` (issue 11): P(the user's message is
complete) read from the embedded LLM, alone and combined with Smart Turn.

At each pause the turn so far is transcribed by the embedded Whisper (``WhisperSTT``,
``whisper-base``, as the server loads it: greedy, 2 threads, fitted window), and the transcript
is put, as harken's answer prompt puts a user message (``providers/llm/tools.py``), after a
system block holding harken's default :data:`~harken.providers.llm.tools.VOICE_NOTE`::

    <|im_start|>system\\n{VOICE_NOTE}<|im_end|>\\n<|im_start|>user\\n{transcript}

with no closing ``<|im_end|>``. Qwen2.5-Coder-1.5B (``models/qwen2.5-coder-1.5b``, loaded here
with ``llama_cpp.Llama``, 2 threads) gives the logits of the next token; the signal is the
softmax probability of ``<|im_end|>``. The system block is evaluated once and kept in the KV
cache (as a server session would keep it); each call drops what follows it and evaluates the
user's tokens alone.

Signals (``--signal NAME``):

* ``llm``: P(<|im_end|>) after the transcript as Whisper wrote it (its punctuation included:
  Whisper often ends a fragment with a full stop);
* ``llm-bare``: the transcript with its trailing punctuation stripped, and P(complete) =
  P(<|im_end|>) + sum over p in ". ? !" of P(p) * P(<|im_end|> | p): the model, not Whisper,
  decides whether the sentence ends (three more one-token evaluations per call);
* ``llm-sum``: the stripped transcript, P(<|im_end|>) + P(.) + P(?) + P(!) from the same
  logits (no extra evaluation; an upper bound of ``llm-bare``);
* ``combined``: with Smart Turn (``smart-turn-v3.2``): ``llm&st>=a``, the LLM's P when Smart
  Turn says >= a and 0 otherwise (so threshold b means "smart >= a AND llm >= b"), for each a
  in ``--smart-gate``; and ``mean w``, w * smart + (1 - w) * llm, for each w in
  ``--smart-weight``; with ``--smart-or c``, also ``...|st>=c``: that, or Smart Turn >= c
  alone. ``combined-bare`` and ``combined-sum``: the same with ``llm-bare``, ``llm-sum``.

* ``harken``: what the server ships (``LlamaLLM.stream(..., end_score=True)``, the score read
  in the held reply's own prefill, ``llm-sum``'s formula) on the same Whisper transcript, after
  ``harken talk``'s default prompt as the system message (primed, as a session primes it);
  ``combined-harken``: with Smart Turn, as ``combined``.

Whisper, the LLM and Smart Turn are each asked once per distinct turn audio (and the LLM once
per distinct transcript); :func:`report` prints their cost per call.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from harken.engines.lane import ComputeLane
from harken.providers.base import Int16Array
from harken.providers.llm.tools import VOICE_NOTE

Signal = Callable[[Int16Array], "float | Awaitable[float]"]
Loader = Callable[[argparse.Namespace, ComputeLane], Awaitable["Signal | dict[str, Signal]"]]

PUNCT = (".", "?", "!")
FULL_RUNS = 8  # calls also timed with the system block evaluated from scratch


def _key(pcm: Int16Array) -> bytes:
    return hashlib.sha1(np.ascontiguousarray(pcm).tobytes()).digest()


class Linguistic:
    """Whisper then the LLM's P(<|im_end|>), cached per turn audio and per transcript."""

    def __init__(self, args: argparse.Namespace, lane: ComputeLane) -> None:
        import llama_cpp

        from harken.providers.stt.whisper import WhisperSTT
        from speech import model_root

        root = model_root()
        self.stt = WhisperSTT.from_catalog(args.stt_model, lane, root)
        path = root / args.llm_model / "model.gguf"
        self.llm = llama_cpp.Llama(
            str(path), n_ctx=1024, n_threads=2, n_threads_batch=2, verbose=False
        )
        self.memory = llama_cpp.llama_get_memory(self.llm.ctx)
        self.seq_rm = llama_cpp.llama_memory_seq_rm
        self.system = f"<|im_start|>system\n{VOICE_NOTE}<|im_end|>\n<|im_start|>user\n"
        self.prefix = self.llm.tokenize(self.system.encode(), add_bos=False, special=True)
        self.end = self.llm.tokenize(b"<|im_end|>", add_bos=False, special=True)
        self.punct = [self.llm.tokenize(p.encode(), add_bos=False, special=False) for p in PUNCT]
        assert len(self.end) == 1 and all(len(p) == 1 for p in self.punct)
        begin = time.perf_counter()
        self.llm.eval(self.prefix)
        self.prefix_s = time.perf_counter() - begin
        self.texts: dict[bytes, str] = {}
        self.probs: dict[tuple[str, bool], float] = {}
        self.stt_s: list[float] = []
        self.user_s: list[tuple[float, int]] = []  # (seconds, user tokens)
        self.bare_s: list[float] = []  # the three extra one-token evaluations of llm-bare
        self.full_s: list[tuple[float, int]] = []  # system block + user tokens from scratch

    async def text(self, pcm: Int16Array) -> str:
        key = _key(pcm)
        if key not in self.texts:
            begin = time.perf_counter()
            self.texts[key] = (await self.stt.transcribe(pcm)).strip()
            self.stt_s.append(time.perf_counter() - begin)
        return self.texts[key]

    def _at(self, n: int) -> None:
        """Keep the first ``n`` tokens of the KV cache."""
        self.seq_rm(self.memory, -1, n, -1)
        self.llm.n_tokens = n

    def _next(self) -> np.ndarray:
        import llama_cpp  # the last evaluated position's logits (Llama.scores keeps none)

        row = llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        logits = np.ctypeslib.as_array(row, shape=(self.llm.n_vocab(),)).astype(np.float64)
        e = np.exp(logits - logits.max())
        return e / e.sum()

    def _from_scratch(self, user: list[int]) -> None:
        self._at(0)
        begin = time.perf_counter()
        self.llm.eval(self.prefix + user)
        self.full_s.append((time.perf_counter() - begin, len(self.prefix) + len(user)))

    def probability(self, text: str, mode: str) -> float:
        """``mode``: "llm" (the text as is), "bare" (trailing punctuation stripped, two steps)
        or "sum" (stripped, P(<|im_end|>) + P(. ? !): no extra evaluation)."""
        if mode != "llm":
            text = text.rstrip(" .?!,;:…")
        if (text, mode) in self.probs:
            return self.probs[(text, mode)]
        user = self.llm.tokenize(text.encode(), add_bos=False, special=False) if text else []
        if len(self.full_s) < FULL_RUNS and user and mode == "llm":
            self._from_scratch(user)
        else:
            self._at(len(self.prefix))
            begin = time.perf_counter()
            if user:
                self.llm.eval(user)
            self.user_s.append((time.perf_counter() - begin, len(user)))
        dist = self._next()
        p = float(dist[self.end[0]])
        if mode == "sum":
            p += sum(float(dist[token]) for (token,) in self.punct)
        if mode == "bare":
            n = self.llm.n_tokens
            begin = time.perf_counter()
            for (token,) in self.punct:
                self._at(n)
                self.llm.eval([token])
                p += float(dist[token]) * float(self._next()[self.end[0]])
            self.bare_s.append(time.perf_counter() - begin)
        self.probs[(text, mode)] = p
        return p

    def signal(self, mode: str) -> Signal:
        async def probability(pcm: Int16Array) -> float:
            return self.probability(await self.text(pcm), mode)

        return probability


class Shipped:
    """The server's text signal: the first output of ``LlamaLLM.stream(end_score=True)``."""

    def __init__(self, args: argparse.Namespace, lane: ComputeLane, words: Linguistic) -> None:
        from harken.providers.llm.llama import LlamaLLM
        from harken.session.effects import ChatMessage
        from harken.talk import DEFAULT_PROMPT
        from speech import model_root

        self.words, self.chat = words, ChatMessage
        self.llm = LlamaLLM(model_root() / args.llm_model / "model.gguf", lane)
        self.system = ChatMessage("system", DEFAULT_PROMPT)
        self.primed = False
        self.probs: dict[str, float] = {}
        self.score_s: list[float] = []  # stream start to the score (the user's tokens' prefill)

    async def probability(self, text: str) -> float:
        from contextlib import aclosing

        from harken.providers.base import LLMEndScore

        if not self.primed:
            await self.llm.prime([self.system])
            self.primed = True
        if text not in self.probs:
            begin, score = time.perf_counter(), None
            messages = [self.system, self.chat("user", text)]
            async with aclosing(self.llm.stream(messages, end_score=True)) as stream:
                async for output in stream:
                    assert isinstance(output, LLMEndScore)  # the first output, always
                    score = output.probability
                    break
            self.score_s.append(time.perf_counter() - begin)
            self.probs[text] = score or 0.0
        return self.probs[text]

    def signal(self) -> Signal:
        async def probability(pcm: Int16Array) -> float:
            return await self.probability(await self.words.text(pcm))

        return probability


_shared: dict[str, Any] = {}


def loaders(smart_turn: Loader) -> dict[str, Loader]:
    """The ``SIGNALS`` entries, given eot_bench's Smart Turn loader."""

    def linguistic(args: argparse.Namespace, lane: ComputeLane) -> Linguistic:
        if "llm" not in _shared:
            _shared["llm"] = Linguistic(args, lane)
        model: Linguistic = _shared["llm"]
        return model

    async def smart(args: argparse.Namespace, lane: ComputeLane) -> Signal:
        if "smart" not in _shared:
            loaded = await smart_turn(args, lane)
            assert callable(loaded)
            cache: dict[bytes, float] = {}

            async def probability(pcm: Int16Array) -> float:
                key = _key(pcm)
                if key not in cache:
                    answer = loaded(pcm)
                    cache[key] = float(await answer if isinstance(answer, Awaitable) else answer)
                return cache[key]

            _shared["smart"] = probability
        signal: Signal = _shared["smart"]
        return signal

    def text_signal(args: argparse.Namespace, lane: ComputeLane, mode: str) -> Signal:
        if mode != "harken":
            return linguistic(args, lane).signal(mode)
        if "shipped" not in _shared:
            _shared["shipped"] = Shipped(args, lane, linguistic(args, lane))
        shipped: Shipped = _shared["shipped"]
        return shipped.signal()

    def alone(mode: str) -> Loader:
        async def load(args: argparse.Namespace, lane: ComputeLane) -> Signal:
            return text_signal(args, lane, mode)

        return load

    def combine(mode: str) -> Loader:
        async def load(args: argparse.Namespace, lane: ComputeLane) -> dict[str, Signal]:
            llm = text_signal(args, lane, mode)
            st = await smart(args, lane)
            tag = mode
            out: dict[str, Signal] = {}
            for a in args.smart_gate:

                async def gated(pcm: Int16Array, a: float = a) -> float:
                    s = await _value(st(pcm))
                    return await _value(llm(pcm)) if s >= a else 0.0

                out[f"{tag}&st>={a:g}"] = gated
                for c in args.smart_or:

                    async def either(pcm: Int16Array, a: float = a, c: float = c) -> float:
                        s = await _value(st(pcm))
                        if s >= c:
                            return 1.0
                        return await _value(llm(pcm)) if s >= a else 0.0

                    out[f"{tag}&st>={a:g}|st>={c:g}"] = either
            for w in args.smart_weight:

                async def mean(pcm: Int16Array, w: float = w) -> float:
                    return w * await _value(st(pcm)) + (1 - w) * await _value(llm(pcm))

                out[f"{tag} mean{w:g}"] = mean
            return out

        return load

    return {
        "llm": alone("llm"),
        "llm-bare": alone("bare"),
        "llm-sum": alone("sum"),
        "combined": combine("llm"),
        "combined-bare": combine("bare"),
        "combined-sum": combine("sum"),
        "harken": alone("harken"),
        "combined-harken": combine("harken"),
    }


async def _value(answer: float | Awaitable[float]) -> float:
    return float(await answer if isinstance(answer, Awaitable) else answer)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stt-model", default="whisper-base", help="catalog id (llm signals)")
    parser.add_argument("--llm-model", default="qwen2.5-coder-1.5b", help="model folder")
    parser.add_argument("--smart-gate", type=float, nargs="+", default=[0.5, 0.7, 0.9])
    parser.add_argument("--smart-weight", type=float, nargs="+", default=[0.5])
    parser.add_argument("--smart-or", type=float, nargs="*", default=[], help="or st >= c alone")


def _ms(values: list[float]) -> str:
    if not values:
        return "-"
    ms = np.asarray(values) * 1000
    return f"{np.percentile(ms, 50):.0f} ms p50, {np.percentile(ms, 90):.0f} ms p90"


def report(verbose: bool = False) -> None:
    """The cost per call of the linguistic signal's parts (nothing if it was not used)."""
    model: Linguistic | None = _shared.get("llm")
    if model is None:
        return
    user = [s for s, _ in model.user_s]
    tokens = [n for _, n in model.user_s]
    full = [s for s, _ in model.full_s]
    print(
        f"\nlinguistic signal, cost per call: Whisper {len(model.stt_s)} calls, "
        f"{_ms(model.stt_s)}; LLM system block ({len(model.prefix)} tokens) once, "
        f"{model.prefix_s * 1000:.0f} ms; user tokens alone after the cached system block: "
        f"{len(user)} calls, {_ms(user)} ({np.median(tokens) if tokens else 0:.0f} tokens p50, "
        f"{max(tokens, default=0)} max); system + user from scratch: {len(full)} calls, "
        f"{_ms(full)}; llm-bare's 3 extra one-token evaluations: {_ms(model.bare_s)}"
    )
    if verbose:
        for (text, mode), p in sorted(model.probs.items()):
            print(f"  {mode:4} P(end) {p:.3f}  {text!r}")
    shipped: Shipped | None = _shared.get("shipped")
    if shipped is not None:
        print(
            f"harken's own score (LlamaLLM.stream(end_score=True), prompt primed): "
            f"{len(shipped.score_s)} calls, {_ms(shipped.score_s)} from the stream's start"
        )
        if verbose:
            for text, p in sorted(shipped.probs.items()):
                print(f"  harken P(end) {p:.3f}  {text!r}")
