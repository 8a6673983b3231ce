"""The compute lane: one worker thread, priorities, round-robin over sessions, cancellation."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from harken.engines.lane import (
    BACKGROUND,
    BOOST,
    BUDGET_FLOOR,
    BUDGET_TAU,
    BURST,
    CROWD_SECONDS,
    NORMAL,
    STALL_SECONDS,
    STEP_SECONDS,
    URGENT,
    ComputeLane,
)


@pytest.fixture
def lane() -> Iterator[ComputeLane]:
    running = ComputeLane("test-lane")
    yield running
    running.close()


async def test_run_returns_results_and_raises_errors(lane: ComputeLane) -> None:
    assert await lane.run(key="a", fn=lambda: 41 + 1) == 42

    def boom() -> None:
        raise ValueError("model exploded")

    with pytest.raises(ValueError, match="model exploded"):
        await lane.run(key="a", fn=boom)
    assert lane.steps_run == 2


async def test_all_steps_run_on_one_thread(lane: ComputeLane) -> None:
    names = await asyncio.gather(
        *(lane.run(key=str(i), fn=lambda: threading.current_thread().name) for i in range(5))
    )
    assert set(names) == {"test-lane"}


async def test_round_robin_between_sessions_and_priorities(lane: ComputeLane) -> None:
    gate = threading.Event()
    order: list[str] = []
    blocker = asyncio.ensure_future(lane.run(key="x", fn=gate.wait))
    await asyncio.sleep(0.05)  # the lane is now busy with the blocker

    def mark(label: str) -> None:
        order.append(label)

    tasks = [
        lane.run(key="a", fn=lambda: mark("a1")),
        lane.run(key="a", fn=lambda: mark("a2")),
        lane.run(key="a", fn=lambda: mark("a3")),
        lane.run(key="b", fn=lambda: mark("b1")),
        lane.run(key="c", fn=lambda: mark("c-bg"), priority=BACKGROUND),
        lane.run(key="c", fn=lambda: mark("c-urgent"), priority=URGENT),
    ]
    futures = [asyncio.ensure_future(t) for t in tasks]
    await asyncio.sleep(0.05)
    assert lane.pending() == 6
    gate.set()
    await asyncio.gather(blocker, *futures)
    assert order == ["c-urgent", "a1", "b1", "a2", "a3", "c-bg"]


@pytest.mark.parametrize("queued", ["a step", "a chain of two"])
async def test_cancelled_steps_never_run(lane: ComputeLane, queued: str) -> None:
    gate = threading.Event()
    ran: list[str] = []
    blocker = asyncio.ensure_future(lane.run(key="x", fn=gate.wait))
    await asyncio.sleep(0.05)
    if queued == "a step":
        work = lane.run(key="a", fn=lambda: ran.append("doomed"), priority=NORMAL)
    else:
        work = lane.chain(lambda: ran.append("first"), lambda _: ran.append("then"), key="a")
    doomed = asyncio.ensure_future(work)
    await asyncio.sleep(0.01)
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    gate.set()
    await blocker
    await lane.run(key="a", fn=lambda: ran.append("after"))
    assert ran == ["after"]


async def test_a_chain_is_two_steps_with_no_less_urgent_step_between(lane: ComputeLane) -> None:
    """The session's own NORMAL step, queued while the first step runs, waits for the second;
    another session's URGENT step goes between them, as round-robin says."""
    gate = threading.Event()
    order: list[str] = []
    blocker = asyncio.ensure_future(lane.run(key="x", fn=gate.wait))
    await asyncio.sleep(0.05)  # the lane is now busy with the blocker

    def first() -> int:
        order.append("a-first")
        return 20

    def then(value: int) -> int:
        order.append("a-then")
        return value + 1

    chained = asyncio.ensure_future(lane.chain(first, then, key="a", priority=URGENT))
    await asyncio.sleep(0.01)
    others = [
        asyncio.ensure_future(lane.run(lambda: order.append("b-tts"), key="b", priority=URGENT)),
        asyncio.ensure_future(lane.run(lambda: order.append("a-llm"), key="a", priority=NORMAL)),
    ]
    await asyncio.sleep(0.01)
    assert lane.pending() == 4
    gate.set()
    assert await chained == 21
    await asyncio.gather(blocker, *others)
    assert order == ["a-first", "b-tts", "a-then", "a-llm"]


async def test_nothing_less_urgent_runs_between_the_steps_of_a_chain(lane: ComputeLane) -> None:
    """Queued one after the other, the second step would come after the session's own reply
    step that was queued while the first ran; queued together, it does not."""
    order: list[str] = []
    llm: list[asyncio.Future[None]] = []

    def first() -> int:
        loop.call_soon_threadsafe(start_llm)
        time.sleep(0.05)  # the reply's step is queued meanwhile
        order.append("first")
        return 1

    def start_llm() -> None:
        step = lane.run(lambda: order.append("llm"), key="a", priority=NORMAL)
        llm.append(asyncio.ensure_future(step))

    loop = asyncio.get_running_loop()
    await lane.chain(first, lambda _: order.append("then"), key="a", priority=URGENT)
    await asyncio.gather(*llm)
    assert order == ["first", "then", "llm"]


async def test_a_chain_whose_first_step_fails_never_runs_the_second(lane: ComputeLane) -> None:
    ran: list[object] = []

    def boom() -> int:
        raise ValueError("encoder exploded")

    with pytest.raises(ValueError, match="encoder exploded"):
        await lane.chain(boom, ran.append, key="a", priority=URGENT)
    await lane.run(lambda: None, key="a")  # after whatever the chain left queued
    assert ran == []


async def test_stream_interleaves_sessions_step_by_step(lane: ComputeLane) -> None:
    order: list[str] = []

    def tokens(label: str) -> Iterator[str]:
        for i in range(3):
            order.append(f"{label}{i}")
            yield f"{label}{i}"

    async def consume(label: str) -> list[str]:
        return [t async for t in lane.stream(lambda: tokens(label), key=label)]

    a, b = await asyncio.gather(consume("a"), consume("b"))
    assert a == ["a0", "a1", "a2"]
    assert b == ["b0", "b1", "b2"]
    assert order[:4] in (["a0", "b0", "a1", "b1"], ["b0", "a0", "b1", "a1"])


async def test_a_boosted_stream_goes_first_while_its_boost_says_so(lane: ComputeLane) -> None:
    """A reply whose listener is about to run out of audio (BOOST) is served before the
    other sessions' NORMAL steps, BURST items a step, and only while it needs to be."""
    order: list[str] = []
    starving = {"b": True}
    count = BURST + 2

    def tokens(label: str) -> Iterator[str]:
        for i in range(count):
            order.append(f"{label}{i}")
            if label == "b" and i == BURST - 1:
                starving["b"] = False  # enough audio now: back in line
            yield f"{label}{i}"

    async def consume(label: str) -> list[str]:
        if label == "b":
            BOOST.set(lambda: starving["b"])
        return [t async for t in lane.stream(lambda: tokens(label), key=label)]

    gate = threading.Event()
    blocker = asyncio.ensure_future(lane.run(gate.wait, key="x"))  # hold the lane while queued
    await asyncio.sleep(0.05)
    both = asyncio.gather(consume("a"), consume("b"))
    await asyncio.sleep(0.05)
    gate.set()
    await blocker
    a, b = await both
    assert a == [f"a{i}" for i in range(count)] and b == [f"b{i}" for i in range(count)]
    # b first while starving, BURST tokens in one step; a waited behind it
    assert order[: BURST + 1] == [*(f"b{i}" for i in range(BURST)), "a0"]
    assert order[BURST + 1 : BURST + 3] == [f"b{BURST}", "a1"]  # then round-robin again
    assert BOOST.get() is None  # set in the consuming task only


async def test_stream_closes_its_iterator_on_the_lane_when_abandoned(lane: ComputeLane) -> None:
    closed_on: list[str] = []

    def tokens() -> Iterator[int]:
        try:
            yield from range(100)
        finally:
            closed_on.append(threading.current_thread().name)

    stream = lane.stream(tokens, key="a")
    assert await anext(stream) == 0
    await stream.aclose()
    await lane.run(key="a", fn=lambda: None, priority=NORMAL)
    assert closed_on == ["test-lane"]


async def test_closed_lane_refuses_work() -> None:
    lane = ComputeLane()
    assert await lane.run(key="a", fn=lambda: 1, priority=NORMAL) == 1
    lane.close()
    with pytest.raises(RuntimeError, match="closed"):
        await lane.run(key="a", fn=lambda: 2)


async def test_waits_name_the_steps_that_ran_first(lane: ComputeLane) -> None:
    gate = threading.Event()
    blocker = asyncio.ensure_future(lane.run(key="x", fn=gate.wait, what="llm"))
    await asyncio.sleep(0.05)
    queued = [
        asyncio.ensure_future(lane.run(key="a", fn=lambda: None, what="tts", priority=URGENT)),
        asyncio.ensure_future(lane.run(key="b", fn=lambda: None, what="stt", priority=URGENT)),
    ]
    await asyncio.sleep(0.05)
    gate.set()
    await asyncio.gather(blocker, *queued)
    waits = {w.what: w for w in lane.waits}
    assert waits["llm"].behind == () and waits["llm"].jobs_behind == 0
    assert waits["tts"].behind == (("x", "llm"),)
    assert waits["stt"].behind == (("x", "llm"), ("a", "tts"))
    assert waits["stt"].steps_between == 2 and waits["stt"].jobs_behind == 2


def test_closing_steps_are_not_jobs() -> None:
    from harken.engines.lane import Wait

    wait = Wait("a", URGENT, 0.1, 3, "stt", (("b", "llm"), ("b", "llm close"), ("b", "llm")))
    assert wait.jobs_behind == 1


# ------------------------------------------------------------------ per-session budgets


async def _queued_order(lane: ComputeLane, steps: list[tuple[str, str, int]]) -> list[str]:
    """Queue ``(key, label, priority)`` steps while the lane is busy; the order they ran in."""
    gate = threading.Event()
    order: list[str] = []
    blocker = asyncio.ensure_future(lane.run(key="blocker", fn=gate.wait))
    await asyncio.sleep(0.05)
    futures = [
        asyncio.ensure_future(
            lane.run(key=key, fn=lambda label=label: order.append(label), priority=priority)
        )
        for key, label, priority in steps
    ]
    await asyncio.sleep(0.05)
    gate.set()
    await asyncio.gather(blocker, *futures)
    return order


async def test_a_session_over_its_budget_waits_behind_every_other_session(
    lane: ComputeLane,
) -> None:
    """A session that just spent 1.2 s of lane time (an expensive client) goes after another
    session's steps of every class, its speech included; the other session is not reordered."""
    await lane.run(key="hog", fn=lambda: time.sleep(BUDGET_FLOOR + 0.2))
    assert lane.usage("hog") > BUDGET_FLOOR
    order = await _queued_order(
        lane,
        [
            ("hog", "hog-urgent", URGENT),
            ("hog", "hog-normal", NORMAL),
            ("canary", "canary-bg", BACKGROUND),
            ("canary", "canary-urgent", URGENT),
        ],
    )
    assert order == ["canary-urgent", "canary-bg", "hog-urgent", "hog-normal"]
    assert lane.held_back == 2


async def test_sessions_that_share_the_lane_evenly_keep_their_order(lane: ComputeLane) -> None:
    for key in ("a", "b"):
        await lane.run(key=key, fn=lambda: time.sleep(BUDGET_FLOOR + 0.1))
    order = await _queued_order(
        lane, [("a", "a-normal", NORMAL), ("b", "b-bg", BACKGROUND), ("a", "a-urgent", URGENT)]
    )
    assert order == ["a-urgent", "a-normal", "b-bg"]
    assert lane.held_back == 0


async def test_one_of_two_sessions_may_not_keep_three_times_the_others_share(
    lane: ComputeLane,
) -> None:
    """Over budget is measured against the *other* sessions: beside a canary that used 1 s, a
    session that used 2.5 s is over (against the mean of both, 1.75 s, it would not be: a hog
    could keep three times a canary's share, one long step before each of its tokens)."""
    now = time.perf_counter()
    lane._charge("canary", BUDGET_FLOOR, now)
    lane._charge("hog", BUDGET_FLOOR * 2.5, now)
    order = await _queued_order(lane, [("hog", "hog", URGENT), ("canary", "canary", NORMAL)])
    assert order == ["canary", "hog"]
    assert lane.held_back == 1


async def test_a_lone_session_is_never_held_back(lane: ComputeLane) -> None:
    await lane.run(key="hog", fn=lambda: time.sleep(BUDGET_FLOOR + 0.2))
    order = await _queued_order(lane, [("hog", "n", NORMAL), ("hog", "u", URGENT)])
    assert order == ["u", "n"]
    assert lane.held_back == 0


def test_lane_use_is_forgotten_as_it_decays() -> None:
    lane = ComputeLane("decay")
    now = time.perf_counter()
    lane._charge("old", 2.0, now - 10 * BUDGET_TAU)
    assert lane.usage("old") < 0.01
    for i in range(200):  # enough sessions for the table to be pruned
        lane._charge(f"s{i}", 0.001, now - 10 * BUDGET_TAU)
    lane._charge("new", 2.0, now)
    assert set(lane._use) == {"new"}
    assert lane.usage("new") == pytest.approx(2.0, rel=0.05)


async def test_stalled_reports_a_step_that_holds_the_lane(lane: ComputeLane) -> None:
    assert lane.stalled() == 0.0
    gate = threading.Event()
    blocker = asyncio.ensure_future(lane.run(key="x", fn=gate.wait))
    await asyncio.sleep(0.2)
    waiting = asyncio.ensure_future(lane.run(key="y", fn=lambda: None))
    assert 0.15 < lane.stalled() < STALL_SECONDS
    gate.set()
    await asyncio.gather(blocker, waiting)
    assert lane.stalled() == 0.0


# ------------------------------------------------------------------ the thread pools' waits


@pytest.mark.parametrize(("given", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_model_thread_pools_wait_passively_unless_the_operator_says(
    given: str | None, expected: str
) -> None:
    """libgomp (llama.cpp's and CTranslate2's pools) reads OMP_WAIT_POLICY when it loads:
    importing harken sets it first, so the pools sleep instead of spinning beside a busy
    neighbour (BENCHMARKS.md, issue 14); an operator's setting is kept."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given is not None:
        env["OMP_WAIT_POLICY"] = given
    code = (
        "import sys, os, harken.providers.llm.llama as l; "
        "print(os.environ['OMP_WAIT_POLICY'], 'libgomp' in open('/proc/self/maps').read())"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split() == [expected, "True"], out.stderr


async def test_the_lane_waits_a_moment_for_a_light_streams_next_step(lane: ComputeLane) -> None:
    """A light session streaming token by token queues each step only after the last one was
    delivered; in that gap the lane keeps idle (ANTICIPATE) instead of starting a step of the
    over-budget session, which would otherwise run before every token."""
    await lane.run(key="hog", fn=lambda: time.sleep(BUDGET_FLOOR + 0.2))
    order: list[str] = []
    stop = asyncio.Event()

    async def hog() -> None:
        while not stop.is_set():
            await lane.run(key="hog", fn=lambda: order.append("hog") or time.sleep(0.02))

    def tokens() -> Iterator[str]:
        for i in range(20):
            order.append("tok")
            yield str(i)

    hogging = asyncio.ensure_future(hog())
    await asyncio.sleep(0.05)
    got = [t async for t in lane.stream(tokens, key="light")]
    stop.set()
    await hogging
    assert len(got) == 20
    first = order.index("tok")
    between = order[first : len(order) - order[::-1].index("tok")]
    assert between.count("hog") <= 2, between  # not one hog step per token


async def test_crowded_while_another_session_waits_or_ran_lately(
    lane: ComputeLane, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step may run long only while its session is alone on the lane: another session's
    queued step, or one that ran within CROWD_SECONDS, makes the lane crowded for it."""
    seen: dict[str, bool] = {}
    assert await lane.run(lambda: lane.crowded("a"), key="a") is False  # alone
    gate = threading.Event()
    held = asyncio.ensure_future(lane.run(lambda: gate.wait() and lane.crowded("a"), key="a"))
    await asyncio.sleep(0.05)
    queued = asyncio.ensure_future(
        lane.run(lambda: seen.setdefault("b", lane.crowded("b")), key="b")
    )
    await asyncio.sleep(0.05)
    gate.set()
    assert await held is True  # b was queued behind it
    await queued
    assert seen == {"b": True}  # a ran a moment ago
    assert await lane.run(lambda: lane.crowded("b"), key="b") is True
    later = time.perf_counter() + CROWD_SECONDS + 0.1
    assert lane.crowded("a") is True  # b ran just now
    monkeypatch.setattr(time, "perf_counter", lambda: later)
    assert lane.crowded("b") is False and lane.crowded("a") is False  # both long ago


async def test_a_boosted_burst_stops_at_the_step_time(lane: ComputeLane) -> None:
    """A burst (BURST items in one step) ends early rather than hold the lane past
    STEP_SECONDS: items of STEP_SECONDS / 2.5 each make two a step, not six."""
    BOOST.set(lambda: True)

    def slow() -> Iterator[int]:
        for i in range(BURST):
            time.sleep(STEP_SECONDS / 2.5)
            yield i

    got = [i async for i in lane.stream(slow, key="slow")]
    assert got == list(range(BURST))
    steps = [w for w in lane.waits if w.key == "slow" and w.what == ""]
    # 2 + 2 + 2 items, then one that ends the stream (a slow machine may cut after 1 item);
    # uncut, it would be all six in one step, then the end
    assert 4 <= len(steps) <= BURST + 1, steps


async def test_the_longest_step_of_each_kind_is_kept(lane: ComputeLane) -> None:
    await lane.run(lambda: time.sleep(0.05), key="a", what="stt")
    await lane.run(lambda: None, key="a", what="stt")
    await lane.run(lambda: time.sleep(0.02), key="b", what="tts")
    assert lane.longest["stt"] >= 0.05 and 0.02 <= lane.longest["tts"] < lane.longest["stt"]


def test_the_sessions_that_ran_lately_are_forgotten_once_old() -> None:
    """``crowded`` looks at the sessions that ran in the last CROWD_SECONDS; the table of them
    is pruned (at most once a second), so it does not grow with the sessions ever served."""
    lane = ComputeLane("recent")
    then = time.perf_counter() - CROWD_SECONDS - 1
    for i in range(100):
        lane._ended(SimpleNamespace(key=f"s{i}", what="llm"), 0.01, then)  # type: ignore[arg-type]
    assert len(lane._last) == 100  # none old yet when pruned
    lane._ended(SimpleNamespace(key="new", what="llm"), 0.01, then + CROWD_SECONDS + 1)  # type: ignore[arg-type]
    assert set(lane._last) == {"new"}
    assert lane.longest == {"llm": 0.01}
