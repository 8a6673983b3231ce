"""One compute lane per process: every model call of every session runs here, fairly.

This machine has two cores and each model call already uses both (llama.cpp ``n_threads``,
CTranslate2 ``cpu_threads``, onnxruntime intra-op threads). Running two model calls at once
would make them thrash, so all model work goes through one worker thread, in small *steps*:
a whole transcription or sentence of speech is one step, but an LLM reply is one step per
token. Between steps the lane picks the next step fairly:

1. the most urgent priority class first (``URGENT`` speech and transcription, then ``NORMAL``,
   then ``BACKGROUND`` prompt priming), so the first sentence's audio is never stuck behind the
   rest of an LLM reply;
2. within a class, round-robin over sessions, so one conversation never waits behind a whole
   other conversation, only behind one step of it;
3. a session over its budget waits behind every other session's steps, of every class: one whose
   lane time in the last ``BUDGET_TAU`` seconds or so (an exponentially decayed sum) is at least
   ``BUDGET_FLOOR`` and more than ``BUDGET_SHARE`` times the mean of the other sessions waiting
   for the lane. A client that makes its session expensive (a huge injection to speak, a long
   context to prefill) slows itself, not its neighbours; sessions that share the lane evenly
   are never reordered.

Awaiting code stays on the event loop; a cancelled caller's pending steps are dropped, and a
step already running finishes and its result is thrown away.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

T = TypeVar("T")
A = TypeVar("A")

SESSION: ContextVar[str] = ContextVar("harken_session", default="-")
"""The session (connection) on whose behalf the current task runs model work."""

BOOST: ContextVar[Callable[[], bool] | None] = ContextVar("harken_boost", default=None)
"""Set by a task whose stream must not starve (an LLM whose reply is being heard and whose
audio is about to run out): while it returns True, that stream's steps are ``URGENT``."""

BURST = 6
"""Items a boosted stream makes per step (an LLM: tokens, ~50 ms each on 2 cores, so ~0.3 s):
between two of its steps another session's step runs, so one item per step would only halve
its wait. At four phone calls, 6 left fewer gaps than 3 (BENCHMARKS.md, issue 12)."""

BUDGET_TAU = 10.0
"""Seconds over which a session's lane time is remembered (the decay's time constant)."""
BUDGET_FLOOR = 1.0
"""Decayed lane seconds below which a session is never over budget (a reply of ~20 tokens)."""
BUDGET_SHARE = 1.5
"""Over budget: more than this many times the mean decayed use of the other sessions waiting.
At 2.0 a canary conversation beside a session that re-sends a 10,000-message context alternated
step for step with it (its use 2.9 s against 5.8 s: 1.98, not over): 2.06-2.98x its quiet reply
time in six runs of ``hostile_bench.py``; at 1.5, 1.60x, 1.82x and, in a slow phase of the VM,
2.82x (BENCHMARKS.md). 1.5 had once reordered two ordinary sessions of a test, which primed one
after the other; they now prime side by side, as a server's sessions do."""
ANTICIPATE = 0.03
"""After a step of a session within budget, the lane stays idle this long rather than start a
step of an over-budget one, when that is all there is: a stream's next step (the next token)
is queued only after its last one was delivered, and in that gap a 0.3 s step of the heavy
session would otherwise run before every token of the light one."""
STEP_SECONDS = 0.2
"""What a step aims to stay under while other sessions share the lane: a provider that can cut
its work finer (an LLM's prompt chunk, a boosted stream's burst) does, when :meth:`ComputeLane.\
crowded` says another session is there to be held up by it."""
CROWD_SECONDS = 5.0
"""Another session that ran a step this recently still counts as sharing the lane: its next
step (the next turn's transcript) would otherwise arrive behind one long step."""
STALL_SECONDS = 5.0
"""A step running, or the oldest step waiting, this long: the lane is stalled (``/healthz``)."""

URGENT = 0
NORMAL = 1
BACKGROUND = 2
_END = object()


@dataclass(frozen=True, slots=True)
class Wait:
    """How long one step queued, and which other steps ran in the meantime."""

    key: str
    priority: int
    seconds: float
    steps_between: int
    what: str = ""  # the kind of work ("stt", "llm", "tts", ...), as the caller named it
    behind: tuple[tuple[str, str], ...] = ()  # (key, what) of the steps that ran first

    @property
    def jobs_behind(self) -> int:
        """How many distinct (session, kind of work) pairs this step waited behind; the
        micro-steps that close a finished stream (``"... close"``) are not work."""
        return len({(key, what) for key, what in self.behind if not what.endswith("close")})


@dataclass(slots=True)
class _Step:
    key: str
    priority: int
    fn: Callable[[], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    seq: int = 0
    cancelled: bool = field(default=False)
    what: str = ""
    queued_at: float = field(default_factory=time.perf_counter)
    steps_before: int = 0  # lane.steps_run when the step was queued


class ComputeLane:
    """A single worker thread running callables for many sessions, fairly."""

    def __init__(self, name: str = "harken-compute") -> None:
        self._name = name
        self._cond = threading.Condition()
        self._queues: dict[int, dict[str, deque[_Step]]] = {URGENT: {}, NORMAL: {}, BACKGROUND: {}}
        self._turn: dict[int, deque[str]] = {URGENT: deque(), NORMAL: deque(), BACKGROUND: deque()}
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.steps_run = 0
        self.busy_seconds = 0.0
        self.waits: deque[Wait] = deque(maxlen=10_000)  # recent queueing, for benchmarks
        self._recent: deque[tuple[str, str]] = deque(maxlen=64)  # (key, what) of the last steps
        self._use: dict[str, tuple[float, float]] = {}  # key -> (decayed lane seconds, when)
        self._running_since: float | None = None  # perf_counter when the running step began
        self.held_back = 0  # steps taken before an over-budget session's queued ones
        self._light: tuple[str, float] | None = None  # the session served last, and when
        self._last: dict[str, float] = {}  # key -> when its last step ended (recent ones)
        self._pruned = 0.0  # when _last was last pruned
        self.longest: dict[str, float] = {}  # what -> the longest step of that kind, seconds

    # ------------------------------------------------------------------ public API

    async def run(
        self,
        fn: Callable[[], T],
        *,
        priority: int = NORMAL,
        key: str | None = None,
        what: str = "",
    ) -> T:
        """Run ``fn()`` on the lane as one step of session ``key``; return its result.

        ``key`` defaults to :data:`SESSION`, which the server sets once per connection;
        ``what`` names the kind of work in :attr:`waits`.
        """
        loop = asyncio.get_running_loop()
        key = SESSION.get() if key is None else key
        step = _Step(key, priority, fn, loop.create_future(), loop, next(self._seq), what=what)
        self._put(step)
        try:
            result: T = await step.future
        except asyncio.CancelledError:
            step.cancelled = True
            raise
        return result

    async def chain(
        self,
        first: Callable[[], A],
        then: Callable[[A], T],
        *,
        priority: int = NORMAL,
        key: str | None = None,
        what: str = "",
    ) -> T:
        """``then(first())`` as two steps of session ``key``, queued together: other sessions'
        steps of the class may run between them, as between any two of its steps, but no step
        of a less urgent class (queued one after the other, the lane would be free between
        them, and could start a long step of the session's own reply there). If ``first``
        fails, ``then`` is never called and the error is raised."""
        loop = asyncio.get_running_loop()
        key = SESSION.get() if key is None else key
        made: list[A] = []

        def run_then() -> T:
            if not made:  # first failed: the caller sees its error, not this one
                raise RuntimeError(f"{what} step skipped: the step before it failed")
            return then(made.pop())

        def queued(fn: Callable[[], Any]) -> _Step:
            return _Step(key, priority, fn, loop.create_future(), loop, next(self._seq), what=what)

        steps = [queued(lambda: made.append(first())), queued(run_then)]
        steps[1].future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._put(*steps)
        try:
            await steps[0].future
            result: T = await steps[1].future
        except BaseException:
            for each in steps:
                each.cancelled = True
            raise
        return result

    async def stream(
        self,
        make: Callable[[], Iterator[T]],
        *,
        priority: int = NORMAL,
        key: str | None = None,
        what: str = "",
    ) -> AsyncIterator[T]:
        """Iterate ``make()`` on the lane, one ``next()`` per step, yielding each item; while
        the caller's :data:`BOOST` says so, a step is ``URGENT`` and makes ``BURST`` items."""
        iterator: Iterator[T] | None = None
        boost = BOOST.get()

        def step(count: int) -> list[Any]:
            nonlocal iterator
            if iterator is None:
                iterator = make()
            items: list[Any] = []
            started = last = time.perf_counter()
            while len(items) < count and (not items or items[-1] is not _END):
                items.append(next(iterator, _END))
                now = time.perf_counter()
                if now - started + (now - last) > STEP_SECONDS:  # the next item would pass it
                    break
                last = now
            return items

        try:
            while True:
                boosted = boost is not None and boost()
                items = await self.run(
                    partial(step, BURST if boosted else 1),
                    priority=URGENT if boosted else priority,
                    key=key,
                    what=what,
                )
                for item in items:
                    if item is _END:
                        return
                    yield item
        finally:
            # close the iterator on the lane thread (never on the GC's), without waiting; queued
            # even if no step has made it yet, as the step running now on the lane may make it
            def close() -> None:
                if iterator is not None and hasattr(iterator, "close"):
                    iterator.close()

            with contextlib.suppress(RuntimeError):  # no running loop: nothing to close on
                self.submit(close, priority=URGENT, key=key, what=f"{what} close")

    def submit(
        self,
        fn: Callable[[], Any],
        *,
        priority: int = NORMAL,
        key: str | None = None,
        what: str = "",
    ) -> None:
        """Queue ``fn()`` without waiting for it; its result and errors are dropped."""
        loop = asyncio.get_running_loop()
        key = SESSION.get() if key is None else key
        future: asyncio.Future[Any] = loop.create_future()
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._put(_Step(key, priority, fn, future, loop, next(self._seq), what=what))

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def pending(self) -> int:
        with self._cond:
            return sum(len(q) for queues in self._queues.values() for q in queues.values())

    def stalled(self) -> float:
        """Seconds the running step has run or the oldest queued step has waited, whichever is
        longer (0 when idle): ``STALL_SECONDS`` or more means sessions are not being served."""
        now = time.perf_counter()
        with self._cond:
            since = [s.queued_at for qs in self._queues.values() for q in qs.values() for s in q]
            if self._running_since is not None:
                since.append(self._running_since)
        return max((now - t for t in since), default=0.0)

    def crowded(self, key: str) -> bool:
        """Whether a session other than ``key`` has a step queued, or ran one in the last
        ``CROWD_SECONDS``: a step of ``key`` should then stay within ``STEP_SECONDS``."""
        now = time.perf_counter()
        with self._cond:
            if any(k != key for turn in self._turn.values() for k in turn):
                return True
            return any(k != key and now - t < CROWD_SECONDS for k, t in self._last.items())

    def usage(self, key: str) -> float:
        """``key``'s decayed lane seconds now (its recent share of the lane)."""
        with self._cond:
            return self._decayed(key, time.perf_counter())

    # ------------------------------------------------------------------ internals

    def _put(self, *steps: _Step) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError("the compute lane is closed")
            for step in steps:  # together: the lane takes none of them before all are queued
                queues = self._queues[step.priority]
                if step.key not in queues:
                    queues[step.key] = deque()
                    self._turn[step.priority].append(step.key)
                step.steps_before = self.steps_run
                queues[step.key].append(step)
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify()

    def _take(self) -> _Step | None:
        """The next step: sessions within budget first; then the most urgent class first, and
        round-robin over sessions within it."""
        over = self._over_budget(time.perf_counter())
        for demoted in (False, True) if over else (False,):
            for priority in (URGENT, NORMAL, BACKGROUND):
                turn, queues = self._turn[priority], self._queues[priority]
                while True:
                    index = next(
                        (i for i, key in enumerate(turn) if (key in over) == demoted), None
                    )
                    if index is None:
                        break
                    key = turn[index]
                    del turn[index]
                    queue = queues[key]
                    step = queue.popleft()
                    if queue:
                        turn.append(key)  # the session goes to the back of the line
                    else:
                        del queues[key]
                    if not step.cancelled:
                        self.held_back += bool(over) and not demoted
                        return step
        return None

    def _anticipation(self, now: float) -> float:
        """Seconds to wait for the session served last, while only over-budget sessions (by
        its measure) have steps queued; 0: take a step now."""
        if self._light is None:
            return 0.0
        key, ended = self._light
        left = ANTICIPATE - (now - ended)
        waiting = {k for turn in self._turn.values() for k in turn}
        if left <= 0 or not waiting or key in waiting:
            return 0.0
        light = self._decayed(key, now)
        if all(self._heavy(k, now, light) for k in waiting):
            return left
        return 0.0

    def _heavy(self, key: str, now: float, than: float) -> bool:
        """``key`` has used the lane over budget: ``BUDGET_FLOOR`` at least, and more than
        ``BUDGET_SHARE`` times ``than``."""
        used = self._decayed(key, now)
        return used >= BUDGET_FLOOR and used > BUDGET_SHARE * than

    def _decayed(self, key: str, now: float) -> float:
        used, when = self._use.get(key, (0.0, now))
        return used * math.exp(-(now - when) / BUDGET_TAU)

    def _over_budget(self, now: float) -> set[str]:
        """The sessions with queued steps whose recent lane use is over budget: more than
        ``BUDGET_SHARE`` times the mean of the *other* sessions waiting (with the session's own
        use in that mean, one of two sessions could keep three times the other's share, and
        one long step of it run before each of the other's tokens). None while
        only one session has steps queued: there is nobody to go first."""
        waiting = {key for turn in self._turn.values() for key in turn}
        if len(waiting) < 2:
            return set()
        use = {key: self._decayed(key, now) for key in waiting}
        total, others = sum(use.values()), len(use) - 1
        return {
            key
            for key, used in use.items()
            if used >= BUDGET_FLOOR and used > BUDGET_SHARE * (total - used) / others
        }

    def _charge(self, key: str, seconds: float, now: float) -> None:
        self._use[key] = (self._decayed(key, now) + seconds, now)
        if len(self._use) > 2 * len(self._recent):  # ended sessions: forgotten once decayed
            for old in [k for k in self._use if self._decayed(k, now) < 0.01]:
                del self._use[old]

    def _ended(self, step: _Step, seconds: float, now: float) -> None:
        """Note when ``step``'s session last ran (the recent ones only) and its kind's longest."""
        self._last[step.key] = now
        if len(self._last) > 64 and now - self._pruned > 1.0:  # at most once a second
            self._pruned = now
            for old in [k for k, t in self._last.items() if now - t >= CROWD_SECONDS]:
                del self._last[old]
        known = step.what in self.longest or len(self.longest) < 256  # kinds: a handful
        if known and seconds > self.longest.get(step.what, 0.0):
            self.longest[step.what] = seconds

    def _work(self) -> None:
        while True:
            with self._cond:
                while True:
                    # one reading of the clock decides both: take a step, or wait that long
                    pause = self._anticipation(time.perf_counter())
                    step = None if pause else self._take()
                    if step is not None:
                        break
                    if self._closed:
                        return
                    self._cond.wait(pause or None)
            started = self._running_since = time.perf_counter()
            others = self.steps_run - step.steps_before
            behind = tuple(self._recent)[len(self._recent) - others :] if others else ()
            queued = started - step.queued_at
            self.waits.append(Wait(step.key, step.priority, queued, others, step.what, behind))
            result: Any = None
            error: BaseException | None = None
            try:
                result = step.fn()
            except BaseException as exc:  # delivered to the awaiting task
                error = exc
            # count before delivering, so an awaiting task sees its own step counted
            ended = time.perf_counter()
            with self._cond:
                self._running_since = None
                self._light = (step.key, ended)
                self._charge(step.key, ended - started, ended)
                self._ended(step, ended - started, ended)
            self.busy_seconds += ended - started
            self.steps_run += 1
            self._recent.append((step.key, step.what))
            self._deliver(step, result, error)

    @staticmethod
    def _deliver(step: _Step, result: Any, exc: BaseException | None) -> None:
        def settle() -> None:
            if step.future.done():
                return
            if exc is not None:
                step.future.set_exception(exc)
            else:
                step.future.set_result(result)

        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
            step.loop.call_soon_threadsafe(settle)


_LANE: ComputeLane | None = None


def shared_lane() -> ComputeLane:
    """The process's one compute lane (created on first use)."""
    global _LANE
    if _LANE is None:
        _LANE = ComputeLane()
    return _LANE
