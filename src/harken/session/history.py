"""The conversation as the LLM sees it, and its bound (``think.context_length``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from harken.protocol.settings import HistoryFunctionCall, HistoryItem
from harken.session.effects import ChatMessage, ToolCall


@dataclass(frozen=True, slots=True)
class _Block:
    """Messages that must stay together when the context is trimmed (a tool round)."""

    messages: tuple[ChatMessage, ...]

    @property
    def size(self) -> int:
        return sum(
            len(m.content) + sum(len(c.arguments) for c in m.tool_calls) for m in self.messages
        )


class Conversation:
    """Everything said so far, oldest first."""

    def __init__(self, items: Iterable[HistoryItem] = ()) -> None:
        self._blocks: list[_Block] = []
        for item in items:
            if item.function_calls:
                self.add_function_calls(item.function_calls)
            elif item.content is not None and item.role in ("user", "assistant"):
                self._add("user" if item.role == "user" else "assistant", item.content)

    def add_user(self, text: str) -> None:
        self._add("user", text)

    def add_assistant(self, text: str) -> None:
        """Add agent speech; consecutive sentences of one reply join into one message."""
        if text:
            self._add("assistant", text)

    def _add(self, role: Literal["user", "assistant"], text: str) -> None:
        self._blocks.append(_Block((ChatMessage(role, text),)))

    def add_function_calls(self, calls: Iterable[HistoryFunctionCall]) -> None:
        calls = tuple(calls)
        request = ChatMessage(
            "assistant",
            "",
            tool_calls=tuple(ToolCall(c.id, c.name, c.arguments) for c in calls),
        )
        results = tuple(ChatMessage("tool", c.response, tool_call_id=c.id) for c in calls)
        self._blocks.append(_Block((request, *results)))

    def messages(
        self, prompt: str, context_length: int | Literal["max"] | None = None
    ) -> tuple[ChatMessage, ...]:
        """The system prompt plus as much recent history as ``context_length`` characters allow."""
        blocks = self._blocks
        if isinstance(context_length, int):
            kept: list[_Block] = []
            budget = context_length
            for block in reversed(blocks):
                if block.size > budget and kept:
                    break
                kept.append(block)
                budget -= block.size
            blocks = kept[::-1]
        head = (ChatMessage("system", prompt),) if prompt else ()
        return head + tuple(m for b in blocks for m in b.messages)
