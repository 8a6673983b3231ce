"""Embedded LLM: a Qwen2.5-Coder GGUF on llama.cpp (llama-cpp-python), run on the compute lane.

One model per process: every :class:`LlamaLLM` for the same file shares one loaded
``llama_cpp.Llama`` (an :class:`_Engine`; :mod:`.runtime` has the llama.cpp glue). All model
work runs on the :class:`~harken.engines.lane.ComputeLane`: one step per decoded token, and
prompts in steps of ``prefill_chunk`` tokens, or, while other sessions share the lane, of as many
as fit the lane's ``STEP_SECONDS`` at the measured rate, so other sessions' speech and
transcription interleave with a reply and never wait long behind a prompt.

**Long conversations.** Only the newest messages that fit the window are kept, and a
conversation that outgrows it is cut in big steps (to half the room), so the turns after a cut
continue the cached prompt instead of evaluating the whole window again (:meth:`LlamaLLM._fit`).

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
import threading
import time
from collections import OrderedDict, deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
    Sequence,
)
from contextlib import aclosing
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Final, cast

import llama_cpp
import numpy as np

from harken.engines.lane import BACKGROUND, SESSION, STEP_SECONDS, ComputeLane
from harken.errors import ContextTooLong, ProviderError
from harken.protocol.settings import FunctionDef
from harken.providers.base import Capabilities, LLMEndScore, LLMOutput, LLMText, LLMToolCalls
from harken.providers.llm import kv, tools
from harken.providers.llm.runtime import LIBRARY_ERRORS, Context, Sampler, load
from harken.session.effects import ChatMessage, ToolCall

_TRAILING: Final = " \t\n.?!,;:…"  # stripped from the user's text before its end is scored
_ENDINGS: Final = (("<|im_end|>", True), (".", False), ("?", False), ("!", False))


@dataclass(frozen=True, slots=True)
class TurnStats:
    """One reply: its first prompt and how much of it was cached, first output, answer size."""

    session: str
    prompt_tokens: int
    cached_tokens: int
    first_output_s: float | None
    output_tokens: int


class _Engine:
    """A loaded model and its KV cache (:class:`kv.Cache`). Lane thread only, under ``lock``."""

    def __init__(self, path: Path, n_ctx: int, n_threads: int, cache_bytes: int) -> None:
        self.llm = llm = load(path, n_ctx, n_threads)
        self.lock = threading.Lock()  # two lanes sharing a model would still take turns
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        assert vocab is not None
        self.vocab, self.cache = vocab, kv.Cache(Context(llm), cache_bytes)
        is_eog, is_control = llama_cpp.llama_vocab_is_eog, llama_cpp.llama_vocab_is_control
        stop = [t for t in range(llm.n_vocab()) if is_eog(vocab, t) or is_control(vocab, t)]
        self.stop = frozenset(stop)
        self.never = dict.fromkeys(stop, float("-inf"))  # logit bias: no empty answer
        endings = [self.tokenize([piece]) for piece in _ENDINGS]
        self.endings = [ids[0] for ids in endings if len(ids) == 1]  # what ends a message
        self.per_token: float | None = None  # prefill seconds per token, measured
        self.starts: OrderedDict[str, tuple[int, ChatMessage]] = OrderedDict()  # see _fit

    def remember(self, slot: str, start: int, first: ChatMessage) -> None:
        """Where ``slot``'s kept messages begin now (the most recent 4,096 slots)."""
        self.starts[slot] = (start, first)
        self.starts.move_to_end(slot)
        while len(self.starts) > 4096:
            self.starts.popitem(last=False)

    def forget(self, session: str) -> None:
        """Drop what the engine keeps of ``session``: its KV cache slots and its starts."""
        self.cache.forget(session)
        for slot in [s for s in self.starts if s == session or s.startswith(f"{session}/")]:
            del self.starts[slot]

    def prefill(self, job: kv.Job, tokens: Sequence[int]) -> None:
        """Evaluate prompt ``tokens`` for ``job`` (see :meth:`kv.Cache.eval`), measuring the
        seconds per token of chunks of at least ``MIN_CHUNK``."""
        started = time.perf_counter()
        self.cache.eval(job, tokens)
        if len(tokens) >= MIN_CHUNK:
            took = (time.perf_counter() - started) / len(tokens)
            rate = self.per_token
            self.per_token = took if rate is None else rate + _RATE_WEIGHT * (took - rate)

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


def _too_long(tokens: int, window: int) -> str:
    return (
        f"the conversation does not fit the model's context: its prompt alone is {tokens} "
        f"tokens of the {window}-token window; shorten the prompt (think.prompt)"
    )


def _primed(messages: Sequence[ChatMessage], functions: Sequence[FunctionDef]) -> list[tools.Piece]:
    """What priming evaluates: the prompt without a reply, and the next user message opened."""
    return tools.render(messages, functions, reply=False) + _NEXT


_KEEP: Final = 0.5
"""Of the room in the window, what a conversation that outgrew it keeps when it is cut."""

MIN_CHUNK: Final = 4
"""The fewest prompt tokens a step evaluates (a step of 1-2 costs nearly as much as one of 4)."""

_RATE_WEIGHT: Final = 0.3
"""Weight of the newest step in the running measure of prefill seconds per token."""

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
        self.sampler: Sampler | None = None
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
        except LIBRARY_ERRORS as exc:
            raise ProviderError(f"llama.cpp failed to prime the prompt: {exc}") from exc

    async def forget(self, session: str) -> None:
        """Drop what the KV cache keeps of ``session`` (for the server, when it has ended)."""

        def drop() -> None:
            with self._engine.lock:
                self._engine.forget(session)

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
        except LIBRARY_ERRORS as exc:
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
                _, tokens, job.shared = self._fit(messages, render, self.max_tokens, slot)
                if len(tokens) + 16 > engine.llm.n_ctx():
                    raise ContextTooLong(_too_long(len(tokens), engine.llm.n_ctx()))
                done = cache.adopt(job, tokens)
            try:
                while not done:
                    with engine.lock:
                        have = cache.claim(job, tokens, logits=False)
                        engine.prefill(job, tokens[have : have + self._chunk(session)])
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
        slot = f"{job.session}/tools" if functions else job.session
        messages, job.tokens, job.kv.shared = self._fit(job.messages, pieces, self.max_tokens, slot)
        if len(job.tokens) + 16 > engine.llm.n_ctx():
            raise ContextTooLong(_too_long(len(job.tokens), engine.llm.n_ctx()), retryable=True)
        engine.cache.release(job.kv)
        job.prompt, job.decoded = len(job.tokens), 0
        if job.sampler is not None:
            job.sampler.close()
        job.kv.slot = slot
        if functions:
            job.choice = tools.Choice(functions)
            job.sampler = Sampler(engine, grammar=tools.grammar(functions))
        else:
            job.choice = None
            job.sampler = Sampler(engine, job.temperature, bias=engine.never)
        if job.end_score:
            job.end_score, job.cut = False, self._cut(job, messages, functions) or -1

    def _fit(
        self,
        messages: Sequence[ChatMessage],
        pieces: Callable[[Sequence[ChatMessage]], list[tools.Piece]],
        reserve: int,
        slot: str = "",
    ) -> tuple[list[ChatMessage], list[int], tuple[int, ...]]:
        """The newest messages whose prompt (``pieces`` of them) leaves ``reserve`` tokens of the
        window free, the system message and the last message always kept; with their tokens and
        shared marks.

        Bounded by the window, not by the conversation: a prompt whose UTF-8 bytes fit (a token
        is at least one byte) is tokenized once; else messages are sized from the newest back
        until the window is full, and the prompt of those is rendered (rarely a few times, when
        the per-message sizes were short) to check it. Older messages are never tokenized.

        With a ``slot``, a conversation that outgrows the window is cut in big steps, not one
        message per turn (which would change the prompt's start, and so re-evaluate all of it,
        at every turn): the messages kept begin where they began last time while that still
        fits, else at the newest that fill ``_KEEP`` of the room, as llama.cpp's context shift
        does. The turns after a cut then continue the cached prompt."""
        engine, kept = self._engine, list(messages)
        limit = engine.llm.n_ctx() - reserve
        rendered = pieces(kept)
        if sum(len(text.encode()) for text, _ in rendered) <= limit:
            tokens, marks = engine.render(rendered)
            return kept, tokens, marks
        head = 1 if kept and kept[0].role == "system" else 0
        body = kept[head:]
        start, half = self._starts(body, limit - len(engine.render(pieces(kept[:head]))[0]))
        if slot:
            last = engine.starts.get(slot)
            steady = last is not None and start <= last[0] < len(body) and body[last[0]] == last[1]
            start = last[0] if last is not None and steady else half
        for _ in range(_FIT_TRIES):
            kept = [*messages[:head], *body[start:]]
            tokens, marks = engine.render(pieces(kept))
            if len(tokens) <= limit or start >= len(body) - 1:
                break
            start = min(start + max(1, (len(body) - start) // 8), len(body) - 1)
        if slot and body:
            engine.remember(slot, start, body[start])
        return kept, tokens, marks

    def _starts(self, body: Sequence[ChatMessage], room: int) -> tuple[int, int]:
        """Where the newest messages of ``body`` that fit ``room`` tokens begin, and where those
        that fit ``_KEEP`` of it begin (the last message always counts as fitting)."""
        start = half = len(body) - 1
        used = self._size(body[start]) if body else 0
        while start > 0:
            used += self._size(body[start - 1])
            if used > room:
                break
            start -= 1
            if used <= room * _KEEP:
                half = start
        return start, half

    def _chunk(self, session: str) -> int:
        """Prompt tokens for one step: ``prefill_chunk``; while other sessions share the lane,
        as many as fit ``STEP_SECONDS`` at the measured rate (at least ``MIN_CHUNK``): on two
        cores 32 tokens of the 1.5B take 0.5 s at the start of the window and 0.65 s near
        its end."""
        rate = self._engine.per_token
        if not rate or not self._lane.crowded(session):  # unmeasured (None or 0): no bound
            return self.prefill_chunk
        return max(MIN_CHUNK, min(self.prefill_chunk, int(STEP_SECONDS / rate)))

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
        engine.prefill(job.kv, job.tokens[have : have + self._chunk(job.session)])
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
        engine.prefill(job.kv, job.tokens[have : min(have + self._chunk(job.session), cut)])
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
            job.sampler = Sampler(engine, grammar=tools.grammar(job.functions, tool))
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
            job.sampler = Sampler(engine, job.temperature)
        text = job.decoder.decode(engine.llm.detokenize([token]))
        if not job.spoke:
            text = text.lstrip()
            job.spoke = bool(text)
        return (LLMText(text) if text else None), False
