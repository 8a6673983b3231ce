"""Embedded LLM: a Qwen2.5-Coder GGUF on llama.cpp (llama-cpp-python), run on the compute lane.

One model per process: every :class:`LlamaLLM` for the same file shares one loaded
``llama_cpp.Llama`` (an :class:`_Engine`). All model work runs on the
:class:`~harken.engines.lane.ComputeLane`: one step per decoded token, and prompts in steps of
``prefill_chunk`` tokens, so other sessions' speech and transcription interleave with a reply.

**KV cache.** llama.cpp keeps one KV cache; :mod:`harken.providers.llm.kv` knows which
tokens it holds and for which session, and keeps RAM snapshots of it
(``llama_state_seq_get_data``, ~12 KB per token for the 0.5B) under *slots*: a session's answer
context and its tool-choice context, LRU-bounded by ``cache_bytes``. A step continues from
whichever of the live cache or a snapshot shares the longest prefix with its tokens that its
session may reuse: all of its own, and of another session's only a whole system message (with
the opening of the next message), never anything said. So ``prime`` evaluates a session's
system message once (``BACKGROUND`` priority) and it stays however many other sessions talk;
two replies interleave token by token, each restoring its own context in milliseconds; and a
finished turn stays cached, so the next turn evaluates only the new messages.

**Decoding.** Greedy unless a temperature > 0 is given. An answer stops at an end-of-generation
or control token (never as its first token) or after ``max_tokens``. The tool choice
(:mod:`harken.providers.llm.tools`) is greedy under its grammar; once only one tool fits, the
rest of its name is appended without decoding it token by token.
"""

from __future__ import annotations

import codecs
import ctypes
import threading
import time
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import aclosing
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Final, cast

import llama_cpp
import numpy as np

from harken.engines.lane import BACKGROUND, SESSION, ComputeLane
from harken.errors import ModelError, ProviderError
from harken.protocol.settings import FunctionDef
from harken.providers.base import Capabilities, LLMEndScore, LLMOutput, LLMText, LLMToolCalls
from harken.providers.llm import kv, tools
from harken.session.effects import ChatMessage, ToolCall

_TRAILING: Final = " \t\n.?!,;:…"  # stripped from the user's text before its end is scored
_ENDINGS: Final = (("<|im_end|>", True), (".", False), ("?", False), ("!", False))
_FIX: Final = "check it with `harken models --verify` and re-assemble it with `make install`"
_LIBRARY_ERRORS: Final = (ValueError, RuntimeError, OSError)


@dataclass(frozen=True, slots=True)
class TurnStats:
    """One reply: its first prompt and how much of it was cached, first output, answer size."""

    session: str
    prompt_tokens: int
    cached_tokens: int
    first_output_s: float | None
    output_tokens: int


def _load(path: Path, n_ctx: int, n_threads: int) -> llama_cpp.Llama:
    if not path.is_file():
        raise ModelError(f"the LLM model file {path} is missing; run `make install`")
    try:
        return llama_cpp.Llama(
            str(path), n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads, verbose=False
        )
    except _LIBRARY_ERRORS as exc:
        raise ModelError(f"llama.cpp cannot load {path} ({exc}); is it corrupt? {_FIX}") from exc


class _Context:
    """llama.cpp's context as :class:`kv.Cache` sees it: sequence 0 of its KV memory."""

    def __init__(self, llm: llama_cpp.Llama) -> None:
        memory = llama_cpp.llama_get_memory(llm.ctx)
        assert memory is not None
        self.llm, self.memory = llm, memory

    def held(self) -> kv.Tokens:
        return self.llm.input_ids[: self.llm.n_tokens]

    def positions(self) -> tuple[int, int]:
        first = llama_cpp.llama_memory_seq_pos_min(self.memory, 0)
        return int(first), int(llama_cpp.llama_memory_seq_pos_max(self.memory, 0))

    def eval(self, tokens: Sequence[int]) -> None:
        self.llm.eval(tokens)

    def truncate(self, n: int) -> bool:
        removed = bool(llama_cpp.llama_memory_seq_rm(self.memory, -1, n, -1))
        self.llm.n_tokens = min(n, self.llm.n_tokens)
        return removed

    def clear(self) -> None:
        llama_cpp.llama_memory_clear(self.memory, False)  # metadata: cells are free
        self.llm.n_tokens = 0

    def save(self, budget: int) -> tuple[object, int] | None:
        ctx = self.llm.ctx
        size = llama_cpp.llama_state_seq_get_size(ctx, 0)
        if size > budget:
            return None
        data = (ctypes.c_uint8 * size)()
        if llama_cpp.llama_state_seq_get_data(ctx, data, size, 0) == 0:
            return None
        return data, size

    def load(self, state: object, tokens: kv.Tokens) -> bool:
        self.clear()
        data = cast(ctypes.Array[ctypes.c_uint8], state)
        if llama_cpp.llama_state_seq_set_data(self.llm.ctx, data, ctypes.sizeof(data), 0) == 0:
            return False
        self.llm.input_ids[: len(tokens)] = tokens
        self.llm.n_tokens = len(tokens)
        return True


class _Engine:
    """A loaded model and its KV cache (:class:`kv.Cache`). Lane thread only, under ``lock``."""

    def __init__(self, path: Path, n_ctx: int, n_threads: int, cache_bytes: int) -> None:
        self.llm = llm = _load(path, n_ctx, n_threads)
        self.lock = threading.Lock()  # two lanes sharing a model would still take turns
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        assert vocab is not None
        self.vocab, self.cache = vocab, kv.Cache(_Context(llm), cache_bytes)
        is_eog, is_control = llama_cpp.llama_vocab_is_eog, llama_cpp.llama_vocab_is_control
        stop = [t for t in range(llm.n_vocab()) if is_eog(vocab, t) or is_control(vocab, t)]
        self.stop = frozenset(stop)
        self.never = dict.fromkeys(stop, float("-inf"))  # logit bias: no empty answer
        endings = [self.tokenize([piece]) for piece in _ENDINGS]
        self.endings = [ids[0] for ids in endings if len(ids) == 1]  # what ends a message

    def end_probability(self) -> float:
        """P(the message ends here) after the last evaluated token: the softmax mass of
        ``<|im_end|>`` and of a full stop, question or exclamation mark."""
        n_vocab = self.llm.n_vocab()
        row = llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        logits = np.ctypeslib.as_array(row, shape=(n_vocab,)).astype(np.float64)
        weights = np.exp(logits - logits.max())
        return float(weights[self.endings].sum() / weights.sum())

    def tokenize(self, pieces: Iterable[tools.Piece]) -> list[int]:
        encode = self.llm.tokenize
        return [t for text, special in pieces for t in encode(text.encode(), False, special)]

    def render(self, pieces: Sequence[tools.Piece]) -> tuple[list[int], tuple[int, ...]]:
        """The tokens of ``pieces``, and their lengths at the marks of :func:`tools.shared`."""
        tokens: list[int] = []
        marks: list[int] = []
        cuts = tools.shared(pieces)
        for count, piece in enumerate(pieces, 1):
            tokens += self.tokenize([piece])
            if count in cuts:
                marks.append(len(tokens))
        return tokens, tuple(marks)


_NEXT: Final[list[tools.Piece]] = [("<|im_start|>user\n", True)]
"""Primed after the prompt: the opening of the user's next message, which a turn would otherwise
prefill on its critical path (3 tokens, ≈ 40 ms on two cores)."""

_MARKUP_TOKENS: Final = 5
"""Tokens a message's markup takes besides its text (``<|im_start|>role\\n … <|im_end|>\\n``)."""

_FIT_TRIES: Final = 4
"""Renders of a trimmed prompt that may still be too long (the sizes are per message, and the
tokenizer merges differently across messages) before the step gives up trimming further."""


def _primed(messages: Sequence[ChatMessage], functions: Sequence[FunctionDef]) -> list[tools.Piece]:
    """What priming evaluates: the prompt without a reply, and the next user message opened."""
    return tools.render(messages, functions, reply=False) + _NEXT


_ENGINES: dict[tuple[Path, int, int], _Engine] = {}
_ENGINES_LOCK = threading.Lock()


def cache_usage() -> tuple[int, int]:
    """KV-cache snapshots kept by every loaded model: how many, and their bytes (read without
    the engines' locks, which a model step holds: a count that changed under it is retried)."""
    count = size = 0
    for engine in list(_ENGINES.values()):
        for _ in range(3):
            try:
                sizes = [snapshot.size for snapshot in list(engine.cache.snapshots.values())]
            except RuntimeError:  # changed while read
                continue
            count, size = count + len(sizes), size + sum(sizes)
            break
    return count, size


def _engine(path: Path, n_ctx: int, n_threads: int, cache_bytes: int) -> _Engine:
    key = (path.absolute(), n_ctx, n_threads)
    with _ENGINES_LOCK:
        if key not in _ENGINES:
            _ENGINES[key] = _Engine(path, n_ctx, n_threads, cache_bytes)
        return _ENGINES[key]


class _Sampler:
    """A llama.cpp sampler chain: logit biases, a grammar, then greedy or temperature."""

    def __init__(
        self,
        engine: _Engine,
        temperature: float | None = None,
        *,
        grammar: str = "",
        bias: Mapping[int, float] | None = None,
    ) -> None:
        params = llama_cpp.llama_sampler_chain_default_params()
        self.chain: llama_cpp.llama_sampler_p | None = llama_cpp.llama_sampler_chain_init(params)
        add = partial(llama_cpp.llama_sampler_chain_add, self.chain)
        if bias:
            items = [llama_cpp.llama_logit_bias(t, b) for t, b in sorted(bias.items())]
            array = (llama_cpp.llama_logit_bias * len(items))(*items)
            add(llama_cpp.llama_sampler_init_logit_bias(engine.llm.n_vocab(), len(items), array))
        if grammar:
            rules = llama_cpp.llama_sampler_init_grammar(engine.vocab, grammar.encode(), b"root")
            if not rules:
                self.close()
                raise ProviderError("llama.cpp rejected the tool-choice grammar")
            add(rules)
        if grammar or temperature is None or temperature <= 0:
            add(llama_cpp.llama_sampler_init_greedy())
        else:
            add(llama_cpp.llama_sampler_init_top_k(40))
            add(llama_cpp.llama_sampler_init_top_p(0.95, 1))
            add(llama_cpp.llama_sampler_init_temp(temperature))
            add(llama_cpp.llama_sampler_init_dist(llama_cpp.LLAMA_DEFAULT_SEED))

    def sample(self, engine: _Engine) -> int:
        assert self.chain is not None
        return int(llama_cpp.llama_sampler_sample(self.chain, engine.llm.ctx, -1))

    def close(self) -> None:
        if self.chain is not None:
            llama_cpp.llama_sampler_free(self.chain)
            self.chain = None


class _Turn:
    """One reply in the making: the slot and tokens of its current phase, and its state."""

    def __init__(
        self,
        session: str,
        messages: Sequence[ChatMessage],
        functions: Sequence[FunctionDef],
        temperature: float | None,
        end_score: bool = False,
    ) -> None:
        self.session, self.messages, self.functions = session, messages, functions
        self.temperature = temperature
        self.end_score = end_score  # score the user's text before the first phase's prompt
        self.cut = 0  # where that score is read: the length of the prompt up to that text
        self.kv = kv.Job(session, session)  # its slot and shared marks change with its phase
        self.prompt, self.decoded = 0, 0
        self.tokens: list[int] = []
        self.stats: tuple[int, int] | None = None  # first prompt's (size, cached)
        self.choice: tools.Choice | None = None
        self.sampler: _Sampler | None = None
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="ignore")
        self.spoke = False


class LlamaLLM:
    """The embedded :class:`~harken.providers.base.LLM`: llama.cpp with a Qwen GGUF, streamed.

    ``turns`` keeps the :class:`TurnStats` of recent replies (for benchmarks and tests).
    """

    capabilities = Capabilities(streaming=True, tools=True, end_score=True)

    def __init__(
        self,
        model_path: Path,
        lane: ComputeLane,
        *,
        n_ctx: int = 4096,
        n_threads: int = 2,
        cache_bytes: int = 256 << 20,
        max_tokens: int = 200,
        prefill_chunk: int = 32,
    ) -> None:
        self._engine = _engine(Path(model_path), n_ctx, n_threads, cache_bytes)
        self._lane = lane
        self.max_tokens, self.prefill_chunk = max_tokens, prefill_chunk
        self.turns: deque[TurnStats] = deque(maxlen=64)

    async def prime(
        self, messages: Sequence[ChatMessage], functions: Sequence[FunctionDef] = ()
    ) -> None:
        """Cache the system message for this session (and its tool choice, given ``functions``)."""
        session = SESSION.get()
        make = partial(self._prime_steps, session, tuple(messages), tuple(functions))
        steps = cast(
            AsyncGenerator[None, None], self._lane.stream(make, priority=BACKGROUND, what="prime")
        )
        try:
            async with aclosing(steps):
                async for _ in steps:
                    pass
        except _LIBRARY_ERRORS as exc:
            raise ProviderError(f"llama.cpp failed to prime the prompt: {exc}") from exc

    async def forget(self, session: str) -> None:
        """Drop what the KV cache keeps of ``session`` (for the server, when it has ended)."""

        def drop() -> None:
            with self._engine.lock:
                self._engine.cache.forget(session)

        await self._lane.run(drop, key=session, what="forget")

    async def stream(
        self,
        messages: Sequence[ChatMessage],
        functions: Sequence[FunctionDef] = (),
        *,
        temperature: float | None = None,
        end_score: bool = False,
    ) -> AsyncIterator[LLMOutput]:
        job = _Turn(SESSION.get(), tuple(messages), tuple(functions), temperature, end_score)
        started, first = time.perf_counter(), None
        make = partial(self._turn_steps, job)
        steps = cast(AsyncGenerator[LLMOutput | None, None], self._lane.stream(make, what="llm"))
        try:
            async with aclosing(steps):
                async for output in steps:
                    if output is not None:
                        first = time.perf_counter() - started if first is None else first
                        yield output
        except _LIBRARY_ERRORS as exc:
            raise ProviderError(f"llama.cpp failed: {exc}", retryable=True) from exc
        finally:
            size, cached = job.stats or (0, 0)
            self.turns.append(TurnStats(job.session, size, cached, first, job.decoded))

    # ------------------------------------------------------------------ lane steps

    def _prime_steps(
        self, session: str, messages: Sequence[ChatMessage], functions: Sequence[FunctionDef]
    ) -> Iterator[None]:
        engine = self._engine
        slots: list[tuple[str, Sequence[FunctionDef]]] = [(session, ())]
        if functions:
            slots.append((f"{session}/tools", functions))
        for slot, offered in slots:
            job, cache = kv.Job(session, slot), engine.cache
            with engine.lock:
                render = partial(_primed, functions=offered)
                _, tokens, job.shared = self._fit(messages, render, self.max_tokens)
                if len(tokens) + 16 > engine.llm.n_ctx():
                    return  # nothing fits to prime: the turn will say so
                done = cache.adopt(job, tokens)
            try:
                while not done:
                    with engine.lock:
                        have = cache.claim(job, tokens, logits=False)
                        cache.eval(job, tokens[have : have + self.prefill_chunk])
                        done = engine.llm.n_tokens == len(tokens)
                        if done:
                            cache.save(slot)
                    if not done:
                        yield None
            finally:
                with engine.lock:
                    cache.release(job)

    def _turn_steps(self, job: _Turn) -> Iterator[LLMOutput | None]:
        try:
            while True:
                with self._engine.lock:
                    output, done = self._step(job)
                if output is not None or not done:
                    yield output
                if done:
                    return
        finally:
            with self._engine.lock:
                self._engine.cache.release(job.kv)
            if job.sampler is not None:
                job.sampler.close()

    def _phase(self, job: _Turn, functions: Sequence[FunctionDef]) -> None:
        """Start the tool choice (with ``functions``) or the answer: prompt, slot, sampler."""
        engine = self._engine
        pieces = partial(tools.render, functions=functions)
        messages, job.tokens, job.kv.shared = self._fit(job.messages, pieces, self.max_tokens)
        if len(job.tokens) + 16 > engine.llm.n_ctx():
            raise ProviderError("the conversation does not fit the model's context", retryable=True)
        engine.cache.release(job.kv)
        job.prompt, job.decoded = len(job.tokens), 0
        if job.sampler is not None:
            job.sampler.close()
        if functions:
            job.kv.slot, job.choice = f"{job.session}/tools", tools.Choice(functions)
            job.sampler = _Sampler(engine, grammar=tools.grammar(functions))
        else:
            job.kv.slot, job.choice = job.session, None
            job.sampler = _Sampler(engine, job.temperature, bias=engine.never)
        if job.end_score:
            job.end_score, job.cut = False, self._cut(job, messages, functions) or -1

    def _fit(
        self,
        messages: Sequence[ChatMessage],
        pieces: Callable[[Sequence[ChatMessage]], list[tools.Piece]],
        reserve: int,
    ) -> tuple[list[ChatMessage], list[int], tuple[int, ...]]:
        """The newest messages whose prompt (``pieces`` of them) leaves ``reserve`` tokens of the
        window free, the system message and the last message always kept; with their tokens and
        shared marks.

        Bounded by the window, not by the conversation: a prompt whose UTF-8 bytes fit (a token
        is at least one byte) is tokenized once; else messages are sized from the newest back
        until the window is full, and the prompt of those is rendered (rarely a few times, when
        the per-message sizes were short) to check it. Older messages are never tokenized."""
        engine, kept = self._engine, list(messages)
        limit = engine.llm.n_ctx() - reserve
        rendered = pieces(kept)
        if sum(len(text.encode()) for text, _ in rendered) <= limit:
            tokens, marks = engine.render(rendered)
            return kept, tokens, marks
        head = 1 if kept and kept[0].role == "system" else 0
        body = kept[head:]
        room = limit - len(engine.render(pieces(kept[:head]))[0])
        start = len(body) - 1  # the last message is always kept
        used = self._size(body[start]) if body else 0
        while start > 0:
            used += self._size(body[start - 1])
            if used > room:
                break
            start -= 1
        for _ in range(_FIT_TRIES):
            kept = [*messages[:head], *body[start:]]
            tokens, marks = engine.render(pieces(kept))
            if len(tokens) <= limit or start >= len(body) - 1:
                break
            start = min(start + max(1, (len(body) - start) // 8), len(body) - 1)
        return kept, tokens, marks

    def _size(self, message: ChatMessage) -> int:
        """About the tokens ``message`` takes in a prompt (its text, calls and markup)."""
        text = " ".join([message.content, *(c.arguments for c in message.tool_calls)])
        return len(self._engine.tokenize([(text, False)])) + _MARKUP_TOKENS

    def _cut(
        self, job: _Turn, messages: Sequence[ChatMessage], functions: Sequence[FunctionDef]
    ) -> int:
        """The length of the prompt up to the end of the user's last message, its trailing
        punctuation removed; 0 when the prompt does not end with a user's message or does not
        start with those tokens (a tokenizer merging across the cut)."""
        if not messages or messages[-1].role != "user":
            return 0
        pieces, content = tools.render(messages, functions), messages[-1].content
        found = [i for i, (text, special) in enumerate(pieces) if text == content and not special]
        bare = content.rstrip(_TRAILING)
        if not found or not bare:
            return 0
        last = found[-1]
        prefix = self._engine.tokenize([*pieces[:last], (bare, False)])
        same = len(prefix) < len(job.tokens) and job.tokens[: len(prefix)] == prefix
        return len(prefix) if same else 0

    def _step(self, job: _Turn) -> tuple[LLMOutput | None, bool]:
        """Evaluate the next prompt chunk or the last token; then maybe sample one token."""
        engine = self._engine
        if job.sampler is None:
            offer = tools.needs_choice(job.messages, job.functions)
            self._phase(job, job.functions if offer else ())
        if job.cut > 0:
            return self._score(job)
        if job.cut < 0:  # asked for, but this prompt cannot be scored
            job.cut = 0
            return LLMEndScore(None), False
        have = engine.cache.claim(job.kv, job.tokens)
        job.stats = job.stats or (len(job.tokens), have)
        engine.cache.eval(job.kv, job.tokens[have : have + self.prefill_chunk])
        if engine.llm.n_tokens < len(job.tokens):
            return None, False
        if engine.llm.n_tokens >= engine.llm.n_ctx() - 1:
            return None, True
        assert job.sampler is not None
        token = job.sampler.sample(engine)
        return self._choose(job, token) if job.choice else self._speak(job, token)

    def _score(self, job: _Turn) -> tuple[LLMOutput | None, bool]:
        """Prefill up to the cut (its last token always evaluated), then read the end score."""
        engine, cut = self._engine, job.cut
        have = engine.cache.claim(job.kv, job.tokens[:cut])
        job.stats = job.stats or (len(job.tokens), have)
        engine.cache.eval(job.kv, job.tokens[have : min(have + self.prefill_chunk, cut)])
        if engine.llm.n_tokens < cut:
            return None, False
        job.cut = 0
        return LLMEndScore(engine.end_probability()), False

    def _choose(self, job: _Turn, token: int) -> tuple[LLMOutput | None, bool]:
        """One token of the tool choice: a call ends the reply, "none" starts the answer."""
        engine, choice, sampler = self._engine, job.choice, job.sampler
        assert choice is not None and sampler is not None
        job.decoded += 1
        job.tokens.append(token)
        written = engine.llm.detokenize(job.tokens[job.prompt :])
        choice.text = written.decode(errors="ignore")
        tool, rest = choice.rest()
        if rest and choice.text.encode() == written:  # no character cut in half
            job.tokens += engine.tokenize([(rest, False)])
            choice.text += rest
            sampler.close()
            job.sampler = _Sampler(engine, grammar=tools.grammar(job.functions, tool))
        result = choice.result()
        if isinstance(result, ToolCall):
            return LLMToolCalls((result,)), True
        if result is None and job.decoded < self.max_tokens and token not in engine.stop:
            return None, False
        self._phase(job, ())  # "none", or no valid choice in time: answer in words
        return None, False

    def _speak(self, job: _Turn, token: int) -> tuple[LLMOutput | None, bool]:
        """One token of the spoken answer."""
        engine = self._engine
        if token in engine.stop or job.decoded >= self.max_tokens:
            return None, True
        job.tokens.append(token)
        job.decoded += 1
        if job.decoded == 1 and job.sampler is not None:  # the first token was not the end
            job.sampler.close()
            job.sampler = _Sampler(engine, job.temperature)
        text = job.decoder.decode(engine.llm.detokenize([token]))
        if not job.spoke:
            text = text.lstrip()
            job.spoke = bool(text)
        return (LLMText(text) if text else None), False
