"""Embedded LLM providers.

* :class:`~harken.providers.llm.llama.LlamaLLM`: llama.cpp (llama-cpp-python) running
  Qwen2.5-Coder-1.5B-Instruct (``qwen2.5-coder-1.5b``, the default) or 0.5B
  (``qwen2.5-coder-0.5b``, the low-memory option) from a GGUF; streaming, grammar-constrained tool
  calls with a "no tool" choice, per-session system prompts kept in the KV cache.
* :mod:`~harken.providers.llm.tools`: the prompt format and the tool-choice grammar.
* :class:`~harken.providers.llm.openai_http.OpenAILLM`: any OpenAI-compatible chat-completions
  server (not embedded: the operator's or the client's model server).

Importing this package is cheap: ``llama_cpp`` is imported only when :class:`LlamaLLM` is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harken.providers.llm.llama import LlamaLLM

__all__ = ["LlamaLLM"]


def __getattr__(name: str) -> Any:
    if name == "LlamaLLM":
        from harken.providers.llm.llama import LlamaLLM

        return LlamaLLM
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
