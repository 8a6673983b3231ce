"""One agent reply: LLM text cut into sentences, spoken one sentence at a time."""

from __future__ import annotations

import bisect
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from harken.session.effects import ProviderEvent, ToolCall
from harken.session.functions import Call

# A sentence ends at . ! ? (optionally followed by closing quotes/brackets) before whitespace,
# or at a newline. "3.5" and "e.g.x" do not end a sentence because no whitespace follows.
_BOUNDARY = re.compile(r"""(?<=[.!?…])["')\]]*\s+|\n+""")
_ABBREVIATIONS = frozenset(
    {"mr.", "mrs.", "ms.", "dr.", "st.", "vs.", "e.g.", "i.e.", "etc.", "no."}
)


# A clause ends at , ; or a dash after a letter and before whitespace (not in "10,000",
# "1, 2, 3" or '{"a": "b", ...}'). Not at a colon: what follows one ("the answer: 42") belongs
# with it.
_CLAUSE = re.compile(r"(?<=[^\W\d_])(?:[,;]|\s?[\u2013\u2014])\s+")
FIRST_CLAUSE_WORDS = 4
"""The first chunk of a reply may be a clause of at least this many words: it reaches the TTS
(and the user's ear) a whole clause earlier than waiting for the end of its sentence, and four
words still carry natural prosody."""


def split_first_clause(buffer: str) -> tuple[str, str] | None:
    """Cut the first clause of ``FIRST_CLAUSE_WORDS`` or more words off ``buffer``, if any."""
    for match in _CLAUSE.finditer(buffer):
        head = buffer[: match.end()].strip()
        if len(head.split()) >= FIRST_CLAUSE_WORDS:
            return head, buffer[match.end() :]
    return None


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
class Said:
    """A sentence the client was sent (announced), and how much of its audio went out."""

    text: str
    round: int
    audio_seconds: float = 0.0
    number: int = 0  # the session's sentences are numbered 1, 2, … as they are announced


def played(said: list[Said], seconds: float) -> str:
    """The text a client can have played ``seconds`` after the reply's first audio frame.

    Whole sentences whose audio fits; of the sentence playing at that moment, the share of its
    words proportional to how much of its audio was played.
    """
    out: list[str] = []
    for sentence in said:
        if seconds >= sentence.audio_seconds:
            out.append(sentence.text)
            seconds -= sentence.audio_seconds
            continue
        words = sentence.text.split()
        share = seconds / sentence.audio_seconds if sentence.audio_seconds > 0 else 0.0
        heard = words[: int(len(words) * share)]
        if heard:
            out.append(" ".join(heard) + "…")
        break
    return " ".join(out)


@dataclass(slots=True)
class Timing:
    """When each step of a reply happened, as session ``now`` values (seconds)."""

    started: float  # end of the user's turn, or when the injection arrived
    think_started: float | None = None
    first_token_at: float | None = None  # the LLM's first output of any kind
    first_text_at: float | None = None
    first_tool_at: float | None = None
    speak_started: float | None = None  # the first sentence went to the TTS
    first_chunk_at: float | None = None  # the reply's first audio left the TTS (maybe parked)
    audio_started: float | None = None  # the first audio frame went to the client
    eou_latency: float | None = None  # the silence that ended the user's spoken turn
    stt_latency: float | None = None  # end of turn -> its transcript (0: speculation had it)
    slow_warnings: int = 0


@dataclass(slots=True)
class Thought:
    """The LLM side: think rounds (a round that calls functions is followed by another)."""

    job: int | None = None
    done: bool = True
    round: int = 0
    committed_round: int = -1  # rounds whose text is already in the conversation
    text: str = ""  # LLM text of the current round
    tool_calls: list[ToolCall] = field(default_factory=list)  # asked for, not called yet
    calls: list[Call] = field(default_factory=list)  # function calls of the current round


@dataclass(slots=True)
class Voice:
    """The speaking side: LLM text cut into sentences, one sentence at a time in the TTS."""

    buffer: str = ""
    chunks: int = 0  # sentences (or a first clause) cut from the LLM's text so far
    queue: deque[str] = field(default_factory=deque)
    job: int | None = None
    sentence: str = ""  # the sentence in the TTS
    announced: bool = False  # its ConversationText went out
    said: list[Said] = field(default_factory=list)
    round_ends: list[int] = field(default_factory=list)  # chunks cut by each round's end

    def round_of(self, chunk: int) -> int:
        """The think round the ``chunk``-th sentence (0-based) came from: a sentence may be
        spoken after its round ended and the next one began (a round that called functions)."""
        return bisect.bisect_right(self.round_ends, chunk)

    def feed(self, text: str) -> None:
        """Add streamed LLM text; complete sentences move to the speaking queue."""
        sentences, self.buffer = split_sentences(self.buffer + text)
        if not sentences and self.chunks == 0:  # the reply's first words: a clause will do
            clause = split_first_clause(self.buffer)
            if clause is not None:
                sentences, self.buffer = [clause[0]], clause[1]
        self.chunks += len(sentences)
        self.queue.extend(sentences)

    def flush(self) -> None:
        """The LLM finished: whatever is left is the last sentence."""
        rest = self.buffer.strip()
        self.buffer = ""
        if rest:
            self.queue.append(rest)
            self.chunks += 1


@dataclass(slots=True)
class Reply:
    """The reply in progress: who asked for it, its LLM rounds, its voice and its timing."""

    reply_id: int
    origin: Literal["llm", "inject", "greeting"]
    timing: Timing
    thought: Thought = field(default_factory=Thought)
    voice: Voice = field(default_factory=Voice)
    held: bool = False  # speculative: nothing is spoken until the user's turn is final
    parked: list[ProviderEvent] = field(default_factory=list)  # TTS output made while held
    failure: str | None = None  # the LLM failed while held: said once the turn is final

    def uncommitted(self, played_seconds: float) -> str:
        """Text said in rounds not yet in the conversation that was played by then."""
        return played(self.uncommitted_said(), played_seconds)

    def uncommitted_said(self) -> list[Said]:
        """The sentences of rounds not yet in the conversation."""
        return [s for s in self.voice.said if s.round > self.thought.committed_round]

    @property
    def finished(self) -> bool:
        """Nothing more will be said: the LLM is done, nothing is queued or in the TTS, and no
        function the LLM asked for is still to be called (a held guess asks for them)."""
        voice = self.voice
        return (
            self.thought.done
            and not voice.queue
            and voice.job is None
            and not voice.buffer
            and not self.thought.tool_calls
        )
