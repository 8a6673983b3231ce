"""The conversation as the LLM sees it, and its bound (``think.context_length``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Literal

from harken.protocol.settings import HistoryFunctionCall, HistoryItem
from harken.session.effects import ChatMessage, ToolCall

Spoken = Callable[[], Iterable[tuple[int, str]]]
"""The sentences of an agent-speech block as ``(number, text)``, read when the history is cut
(a round's sentences may still be announced after its text went into the conversation)."""


@dataclass(frozen=True, slots=True)
class _Block:
    """Messages that must stay together when the context is trimmed (a tool round)."""

    messages: tuple[ChatMessage, ...]
    spoken: Spoken | None = None  # agent speech: its sentences, numbered as they were announced

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

    def add_assistant(self, text: str, spoken: Spoken | None = None) -> None:
        """Add agent speech; consecutive sentences of one reply join into one message.

        ``spoken`` names its sentences, so that :meth:`keep_heard` can cut it to what was heard.
        """
        if text:
            self._add("assistant", text, spoken)

    def _add(
        self, role: Literal["user", "assistant"], text: str, spoken: Spoken | None = None
    ) -> None:
        self._blocks.append(_Block((ChatMessage(role, text),), spoken))

    def keep_heard(self, through: int) -> None:
        """The listener heard agent sentences up to number ``through`` and no further: the
        agent's latest speech (after the last user message) keeps only those sentences."""
        for index in range(len(self._blocks) - 1, -1, -1):
            block = self._blocks[index]
            if block.messages[0].role == "user":
                return
            if block.spoken is None:
                continue  # a function-call round stays: the call was made
            sentences = list(block.spoken())
            if all(number <= through for number, _ in sentences):
                continue
            heard = " ".join(text for number, text in sentences if number <= through)
            if not heard:
                del self._blocks[index]  # not a word of it was heard
                continue
            message = replace(block.messages[0], content=heard)
            self._blocks[index] = replace(block, messages=(message,))

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
