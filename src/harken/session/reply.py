"""One agent reply: LLM text cut into sentences, spoken one sentence at a time."""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from harken.session.effects import ToolCall
from harken.session.functions import Call

# A sentence ends at . ! ? (optionally followed by closing quotes/brackets) before whitespace,
# or at a newline. "3.5" and "e.g.x" do not end a sentence because no whitespace follows.
_BOUNDARY = re.compile(r"""(?<=[.!?…])["')\]]*\s+|\n+""")
_ABBREVIATIONS = frozenset(
    {"mr.", "mrs.", "ms.", "dr.", "st.", "vs.", "e.g.", "i.e.", "etc.", "no."}
)


def split_sentences(buffer: str) -> tuple[list[str], str]:
    """Cut complete sentences off the front of ``buffer``; return them and the remainder."""
    sentences: list[str] = []
    start = 0
    for match in _BOUNDARY.finditer(buffer):
        candidate = buffer[start : match.start()].strip()
        last_word = candidate.rsplit(" ", 1)[-1].lower() if candidate else ""
        if not candidate or last_word in _ABBREVIATIONS:
            continue
        sentences.append(buffer[start : match.end()].strip())
        start = match.end()
    return sentences, buffer[start:]


@dataclass(slots=True)
class Reply:
    """State of the reply in progress. Timestamps are session ``now`` values (seconds)."""

    reply_id: int
    origin: Literal["llm", "inject", "greeting"]
    started: float  # end of the user turn, or when the injection arrived
    think_job: int | None = None
    think_started: float | None = None
    think_done: bool = True
    first_text_at: float | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    round_text: str = ""  # LLM text of the current think round
    round_calls: list[Call] = field(default_factory=list)  # function calls of the current round
    slow_warnings: int = 0
    buffer: str = ""
    queue: deque[str] = field(default_factory=deque)
    speak_job: int | None = None
    speak_sentence: str = ""
    speak_started: float | None = None
    sentence_announced: bool = False
    audio_started: float | None = None
    audio_bytes: int = 0
    spoken: list[str] = field(default_factory=list)
    failed: bool = False

    def feed(self, text: str, now: float) -> None:
        """Add streamed LLM text; complete sentences move to the speaking queue."""
        if self.first_text_at is None and text.strip():
            self.first_text_at = now
        sentences, self.buffer = split_sentences(self.buffer + text)
        self.queue.extend(sentences)

    def flush(self) -> None:
        """The LLM finished: whatever is left is the last sentence."""
        rest = self.buffer.strip()
        self.buffer = ""
        if rest:
            self.queue.append(rest)

    @property
    def finished(self) -> bool:
        """Nothing more will be said: the LLM is done, the queue is empty, no TTS is running."""
        return self.think_done and not self.queue and self.speak_job is None and not self.buffer
