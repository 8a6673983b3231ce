"""The embedded LLM's KV cache: which tokens llama.cpp's context holds, whose they are, and the
RAM snapshots that keep them while other replies use the context.

llama.cpp has one context per loaded model. Its KV memory holds keys and values for one sequence
of tokens; a job (a prime or a reply) continues from the longest prefix of its prompt that the
context, or a snapshot of it, already holds, and evaluates the rest. Before a job overwrites
tokens nobody saved, they are saved: under the writing job's own key while it still runs (so
two replies interleave token by token, not even one slot undoing another's progress), else
under its *slot* (a session's answer context, or its tool-choice context). Snapshots are bounded
by ``budget`` bytes, least recently used first out.

Two rules keep sessions apart, by construction rather than by the care of callers:

1. **Exact tokens.** The context and every snapshot carry the exact token sequence their KV data
   covers; a job keeps only the common prefix of those tokens and its own, and everything after
   it is removed from the KV memory before the job evaluates anything. No name, key or job
   identity ever stands for content. The KV memory itself is checked against that bookkeeping
   at every claim (sequence 0 holds positions ``0..n-1``, nothing more): a removal or restore
   that failed, or a decode that failed halfway, empties the context instead of being built on.
2. **Sessions own their tokens.** The context and every snapshot also record the session that
   wrote them and their *shared* marks: the lengths at which nothing said has begun yet (after
   the whole system message, and after the markup that opens the next message: what ``prime``
   caches). Another session may reuse tokens only up to such a mark, so only a whole system
   message: a partial match would let response times tell one session another's prompt a token
   at a time. Nothing anyone said ever serves another session, not even when the tokens are the
   same. A session reuses all of its own tokens.
"""

from __future__ import annotations

import itertools
import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

Tokens = npt.NDArray[np.intc]
log = logging.getLogger("harken.llm")
_NUMBERS: Final = itertools.count(1)


class Context(Protocol):
    """The llama.cpp context as the cache uses it: sequence 0 of its KV memory."""

    def held(self) -> Tokens:
        """The tokens the context holds, oldest first (what its bookkeeping says)."""
        ...

    def positions(self) -> tuple[int, int]:
        """The first and last position the KV memory holds; ``(-1, -1)`` when empty."""
        ...

    def eval(self, tokens: Sequence[int]) -> None:
        """Append ``tokens``: compute their keys and values after the held ones."""
        ...

    def truncate(self, n: int) -> bool:
        """Keep the first ``n`` tokens; False if the memory could not remove the rest."""
        ...

    def clear(self) -> None:
        """Remove every token."""
        ...

    def save(self, budget: int) -> tuple[object, int] | None:
        """The KV data of the held tokens and its size in bytes; None if over ``budget``."""
        ...

    def load(self, state: object, tokens: Tokens) -> bool:
        """Replace the held tokens with a saved ``state`` of ``tokens``; False on failure."""
        ...


@dataclass(eq=False, slots=True)
class Job:
    """One job writing to the context: a prime, or one phase of a reply.

    ``slot`` names where its tokens are kept once it is over; ``shared`` are the lengths of its
    target's prefixes that other sessions may reuse (see the module docstring), ascending.
    """

    session: str
    slot: str
    shared: tuple[int, ...] = ()
    number: int = field(default_factory=lambda: next(_NUMBERS))

    @property
    def key(self) -> str:
        """Where its tokens are parked while it runs: unique, never reused."""
        return f"#{self.number}"


@dataclass(frozen=True, slots=True)
class Snapshot:
    tokens: Tokens
    state: object
    size: int
    session: str
    shared: tuple[int, ...]


def common(a: Tokens, b: Tokens) -> int:
    """The length of the longest common prefix of ``a`` and ``b``."""
    n = min(len(a), len(b))
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if len(differ) else n


def usable(
    tokens: Tokens, session: str, shared: tuple[int, ...], target: Tokens, reader: str
) -> int:
    """How many leading ``tokens`` (written by ``session``) session ``reader`` may reuse for
    ``target``: their common prefix for the writer itself, else up to a ``shared`` mark."""
    same = common(tokens, target)
    if session == reader:
        return same
    return max((mark for mark in shared if mark <= same), default=0)


class Cache:
    """What the context holds and for whom, and the snapshots. Call under the engine's lock."""

    def __init__(self, context: Context, budget: int) -> None:
        self.context, self.budget = context, budget
        self.snapshots: OrderedDict[str, Snapshot] = OrderedDict()
        self.session = ""  # who wrote the held tokens
        self.shared: tuple[int, ...] = ()  # and their shared marks
        self.owner: Job | None = None  # the job that claimed the context last
        self.dirty: tuple[str, Job | None] | None = None  # unsaved tokens: (slot, live job)
        self.resets = 0  # times the KV memory disagreed with the bookkeeping and was emptied

    def claim(self, job: Job, target: Sequence[int], *, logits: bool = True) -> int:
        """Make the context hold the longest prefix of ``target`` that ``job`` may reuse (and
        nothing else); return its length.

        With ``logits`` the last token never counts as held: it is evaluated again, so that
        what follows is sampled from this target's own logits.
        """
        ids = np.asarray(target, dtype=np.intc)
        limit = len(ids) - 1 if logits else len(ids)
        self._verify()
        held = self.context.held()
        if self.owner is job and len(held) <= limit and common(held, ids) == len(held):
            return len(held)  # still this job's own tokens, checked
        keep = usable(held, self.session, self.shared, ids, job.session)
        best = max(
            ((usable(s.tokens, s.session, s.shared, ids, job.session), k) for k, s in self.items()),
            default=(0, ""),
        )
        if best[0] > keep:
            snapshot = self.snapshots[best[1]]
            self._park(job)  # may replace or evict best[1]: restore the snapshot measured
            keep = best[0] if self._restore(snapshot) else 0
        keep = min(keep, limit, common(self.context.held(), ids))  # checked, not assumed
        if keep < len(self.context.held()):
            self._park(job)
            self._truncate(keep)
        self._verify()
        self.owner, self.session, self.shared = job, job.session, job.shared
        return len(self.context.held())

    def eval(self, job: Job, tokens: Sequence[int]) -> None:
        """Append ``tokens`` for ``job``, which must have claimed the context just before."""
        if self.owner is not job:
            raise RuntimeError("a job evaluated tokens in a context it had not claimed")
        if len(tokens):
            self.dirty = (job.slot, job)
            self.context.eval(tokens)

    def release(self, job: Job) -> None:
        """``job`` is over (or changes slot): its tokens are now just its slot's context."""
        if self.dirty is not None and self.dirty[1] is job:
            self.dirty = (self.dirty[0], None)
        self.snapshots.pop(job.key, None)
        self.owner = None if self.owner is job else self.owner

    def adopt(self, job: Job, target: Sequence[int]) -> bool:
        """Let ``job.slot`` keep a snapshot that ``job`` may reuse whole for ``target``: True
        if one exists (its own slot's first). The snapshot stays its writer's."""
        ids, own = np.asarray(target, dtype=np.intc), self.snapshots.get(job.slot)
        for snapshot in ([own] if own else []) + list(self.snapshots.values()):
            reusable = usable(snapshot.tokens, snapshot.session, snapshot.shared, ids, job.session)
            if reusable == len(ids):
                self.snapshots[job.slot] = snapshot
                self.snapshots.move_to_end(job.slot)
                return True
        return False

    def save(self, slot: str) -> None:
        """Snapshot the held tokens under ``slot``; evict the least recently used beyond the
        budget."""
        held = self.context.held()
        saved = self.context.save(self.budget) if len(held) else None
        if saved is None:
            return
        state, size = saved
        self.snapshots[slot] = Snapshot(held.copy(), state, size, self.session, self.shared)
        self.snapshots.move_to_end(slot)
        self.dirty = None
        while self.snapshots:
            unique = {id(s): s.size for s in self.snapshots.values()}
            if sum(unique.values()) <= self.budget:
                break
            self.snapshots.popitem(last=False)

    def forget(self, session: str) -> None:
        """``session`` is over: drop its slots (``session`` and ``session/...``), whatever
        they show, and its parked replies; its unsaved tokens will not be saved."""
        for key, snapshot in self.items():
            mine = key == session or key.startswith(f"{session}/")
            if mine or (key.startswith("#") and snapshot.session == session):
                del self.snapshots[key]
        if self.dirty is not None and self.dirty[1] is None and self.session == session:
            self.dirty = None

    def items(self) -> list[tuple[str, Snapshot]]:
        return list(self.snapshots.items())

    # ------------------------------------------------------------------ internals

    def _park(self, job: Job) -> None:
        """Save unsaved tokens of another slot or job before they are overwritten."""
        if self.dirty is not None and self.dirty != (job.slot, job):
            slot, writer = self.dirty
            self.save(slot if writer is None else writer.key)
            self.dirty = None  # saved, or lost if over the budget

    def _restore(self, snapshot: Snapshot) -> bool:
        keys = [key for key, kept in self.snapshots.items() if kept is snapshot]
        if self.context.load(snapshot.state, snapshot.tokens):
            for key in keys:
                self.snapshots.move_to_end(key)
            self.session, self.shared = snapshot.session, snapshot.shared
            self.owner = None
            return True
        log.warning("llama.cpp could not restore a KV cache snapshot; dropped it")
        for key in keys:
            del self.snapshots[key]
        self._reset()
        return False

    def _truncate(self, n: int) -> None:
        if not self.context.truncate(n):
            log.warning("llama.cpp could not shorten the KV cache to %d tokens; emptied it", n)
            self._reset()

    def _verify(self) -> None:
        """Empty the context if its KV memory does not hold exactly the held tokens' positions."""
        n = len(self.context.held())
        found = self.context.positions()
        if found != ((0, n - 1) if n else (-1, -1)):
            log.warning("the KV cache holds positions %s, not 0..%d; emptied it", found, n - 1)
            self._reset()

    def _reset(self) -> None:
        self.context.clear()
        self.resets += 1
        self.session, self.shared, self.owner, self.dirty = "", (), None, None
