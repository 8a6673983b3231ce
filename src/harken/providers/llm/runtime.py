"""llama.cpp as the embedded LLM uses it: loading a model, its context as :class:`kv.Cache`
sees it (sequence 0 of its KV memory), and sampler chains."""

from __future__ import annotations

import ctypes
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Final, Protocol, cast

import llama_cpp

from harken.errors import ModelError, ProviderError
from harken.providers.llm import kv

FIX: Final = "check it with `harken models --verify` and re-assemble it with `make install`"
LIBRARY_ERRORS: Final = (ValueError, RuntimeError, OSError)


class Engine(Protocol):
    """What a sampler needs of a loaded model."""

    @property
    def llm(self) -> llama_cpp.Llama: ...

    @property
    def vocab(self) -> llama_cpp.llama_vocab_p: ...


def load(path: Path, n_ctx: int, n_threads: int) -> llama_cpp.Llama:
    if not path.is_file():
        raise ModelError(f"the LLM model file {path} is missing; run `make install`")
    try:
        return llama_cpp.Llama(
            str(path), n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads, verbose=False
        )
    except LIBRARY_ERRORS as exc:
        raise ModelError(f"llama.cpp cannot load {path} ({exc}); is it corrupt? {FIX}") from exc


class Context:
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


class Sampler:
    """A llama.cpp sampler chain: logit biases, a grammar, then greedy or temperature."""

    def __init__(
        self,
        engine: Engine,
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

    def sample(self, engine: Engine) -> int:
        assert self.chain is not None
        return int(llama_cpp.llama_sampler_sample(self.chain, engine.llm.ctx, -1))

    def close(self) -> None:
        if self.chain is not None:
            llama_cpp.llama_sampler_free(self.chain)
            self.chain = None
