"""The embedded LLM's KV cache bookkeeping (``harken.providers.llm.kv``), without a model.

A fake llama.cpp context records, for every KV cell, the exact tokens its keys and values were
computed over and the session that computed it. So the tests see what a real context hides:
whether the cells a reply continues from are exactly its own prompt, and whose they are.
"""

from __future__ import annotations

import random
from collections.abc import Generator, Sequence
from dataclasses import dataclass

import numpy as np
import pytest

from harken.providers.llm import kv, tools
from harken.session.effects import ChatMessage


@dataclass(frozen=True, slots=True)
class Cell:
    over: tuple[int, ...]  # the tokens this cell's keys and values were computed over, itself last
    session: str  # who computed it


class FakeContext:
    """A llama.cpp context: ``cells`` is its KV memory, ``ids`` what its bookkeeping says."""

    def __init__(self) -> None:
        self.cells: list[Cell] = []
        self.ids: list[int] = []
        self.writer = ""  # the session on whose behalf the next eval runs
        self.fail: set[str] = set()  # "truncate", "load", "eval": the next such call fails

    def held(self) -> kv.Tokens:
        return np.asarray(self.ids, dtype=np.intc)

    def positions(self) -> tuple[int, int]:
        return (0, len(self.cells) - 1) if self.cells else (-1, -1)

    def eval(self, tokens: Sequence[int]) -> None:
        del self.cells[len(self.ids) :]  # as llama-cpp-python's eval does first
        for token in tokens:
            over = (self.cells[-1].over if self.cells else ()) + (int(token),)
            self.cells.append(Cell(over, self.writer))
            if "eval" in self.fail:  # decoded, but the bookkeeping never learns of it
                self.fail.discard("eval")
                raise RuntimeError("llama_decode returned -3")
            self.ids.append(int(token))

    def truncate(self, n: int) -> bool:
        self.ids = self.ids[:n]
        if "truncate" in self.fail:
            self.fail.discard("truncate")
            return False
        del self.cells[n:]
        return True

    def clear(self) -> None:
        self.cells, self.ids = [], []

    def save(self, budget: int) -> tuple[object, int] | None:
        size = 10 * len(self.cells)
        return (list(self.cells), size) if size <= budget else None

    def load(self, state: object, tokens: kv.Tokens) -> bool:
        self.clear()
        if "load" in self.fail:
            self.fail.discard("load")
            return False
        assert isinstance(state, list)
        self.cells, self.ids = list(state), [int(t) for t in tokens]
        return True


def exact(context: FakeContext, target: Sequence[int], have: int) -> None:
    """The context holds exactly ``target[:have]``, every cell computed over its own prefix."""
    assert len(context.cells) == len(context.ids) == have
    assert context.ids == list(target[:have])
    for i, cell in enumerate(context.cells):
        assert cell.over == tuple(target[: i + 1]), f"cell {i} was computed over other tokens"


def isolated(context: FakeContext, job: kv.Job) -> None:
    """Cells computed by other sessions lie only within the system message and the opening of
    the next message, never in anything said."""
    foreign = [i for i, cell in enumerate(context.cells) if cell.session != job.session]
    assert max(foreign, default=-1) < max(job.shared, default=0), (job.session, foreign)


# ------------------------------------------------------------------------------- a tiny "model"

SYSTEM, END, USER, ASSISTANT = 1, 2, 3, 4  # markup tokens
PROMPT = [11, 12, 13, 14, 15, 16]
SIMILAR = [11, 12, 13, 14, 15, 99]  # another session's prompt: the same but its last token


def system(prompt: Sequence[int]) -> list[int]:
    return [SYSTEM, *prompt, END]


def head(prompt: Sequence[int]) -> tuple[list[int], tuple[int, ...]]:
    """What ``prime`` caches: the system message and the opening of the user's next message."""
    block = system(prompt)
    return [*block, USER], (len(block), len(block) + 1)


def turn(prompt: Sequence[int], said: Sequence[int]) -> tuple[list[int], tuple[int, ...]]:
    start, shared = head(prompt)
    return [*start, *said, END, ASSISTANT], shared


class Harness:
    def __init__(self, budget: int = 10_000) -> None:
        self.context = FakeContext()
        self.cache = kv.Cache(self.context, budget)
        self.claimed = 0  # what the last claim found

    def step(self, job: kv.Job, target: Sequence[int], chunk: int, *, logits: bool = True) -> int:
        """One lane step: claim, check, evaluate the next chunk; return the tokens now held."""
        have = self.claimed = self.cache.claim(job, target, logits=logits)
        exact(self.context, target, have)
        isolated(self.context, job)
        self.context.writer = job.session
        self.cache.eval(job, target[have : have + chunk])
        exact(self.context, target, len(self.context.ids))
        return len(self.context.ids)

    def prime(self, session: str, prompt: Sequence[int], chunk: int = 3) -> int:
        """Prime like ``LlamaLLM.prime``; return how many tokens it evaluated."""
        target, shared = head(prompt)
        job = kv.Job(session, session, shared)
        evaluated = 0
        try:
            if self.cache.adopt(job, target):
                return 0
            while True:
                before = self.cache.claim(job, target, logits=False)
                held = self.step(job, target, chunk, logits=False)
                evaluated += held - before
                if held == len(target):
                    self.cache.save(session)
                    return evaluated
        finally:
            self.cache.release(job)

    def reply(
        self,
        session: str,
        target: list[int],
        shared: tuple[int, ...],
        words: Sequence[int],
        choice: list[int] | None = None,
    ) -> Generator[int, None, None]:
        """A reply as ``LlamaLLM.stream`` runs it, one lane step per ``next``: yields the
        tokens held after each step. With ``choice``, first a tool choice over that prompt (in
        the session's other slot), then the answer; ``target`` grows by the "sampled" words."""
        job = kv.Job(session, session)
        marks = (choice.index(END) + 1, choice.index(END) + 2) if choice else ()
        phases = [(choice, f"{session}/tools", marks, [0]), (target, session, shared, [*words])]
        try:
            for prompt, slot, job.shared, said in phases[0 if choice else 1 :]:
                assert prompt is not None
                self.cache.release(job)  # as LlamaLLM._phase does
                job.slot = slot
                while True:
                    held = self.step(job, prompt, 4)
                    if held == len(prompt):
                        if not said:
                            break  # the end was sampled
                        prompt.append(said.pop(0))  # sampled from exactly ``prompt``
                    yield held
        finally:
            self.cache.release(job)

    def talk(
        self, session: str, target: list[int], shared: tuple[int, ...], words: list[int]
    ) -> int:
        """A whole reply; return how many prompt tokens its first claim found cached."""
        reply = self.reply(session, target, shared, words)
        next(reply)
        first = self.claimed
        for _ in reply:
            pass
        return first


SEVEN_OF_CLUBS = [70, 71, 72]
LISTED = [80, 81, 82, 83]


def test_another_sessions_words_are_never_reused_even_when_identical() -> None:
    """Session A hears "Seven of clubs" and answers; session B then hears exactly the same
    words after exactly the same prompt: B computes them itself, only the system message is
    shared."""
    h = Harness()
    h.prime("A", PROMPT)
    a, shared = turn(PROMPT, SEVEN_OF_CLUBS)
    h.talk("A", a, shared, LISTED)
    assert h.context.cells[-1].session == "A"  # A's conversation is still in the context
    b, _ = turn(PROMPT, SEVEN_OF_CLUBS)
    assert h.talk("B", b, shared, [90]) == shared[-1]  # the system message and "user", no more
    # and from a snapshot: A's conversation is parked once C's own prompt takes the context
    h.prime("C", SIMILAR)
    c, _ = turn(PROMPT, SEVEN_OF_CLUBS)
    assert h.talk("D", c, shared, [91]) == shared[-1]


def test_a_session_reuses_its_own_conversation() -> None:
    """The latency side: a session's next turn evaluates only what is new, even after another
    session used the context in between."""
    h = Harness()
    assert h.prime("A", PROMPT) == len(head(PROMPT)[0])
    a, shared = turn(PROMPT, SEVEN_OF_CLUBS)
    assert h.talk("A", a, shared, LISTED) == shared[-1]  # the primed prompt was cached
    h.prime("B", SIMILAR)
    b, shared_b = turn(SIMILAR, [5])
    h.talk("B", b, shared_b, [6])
    again = [*a, END, USER, 73, END, ASSISTANT]
    assert h.talk("A", again, shared, [7]) == len(a)  # all of turn one, from A's snapshot


def test_a_primed_prompt_is_shared_whole_and_a_partial_match_not_at_all() -> None:
    h = Harness()
    assert h.prime("A", PROMPT) > 0
    assert h.prime("B", PROMPT) == 0  # adopted: the same whole system message
    b, shared = turn(PROMPT, [5])
    assert h.talk("B", b, shared, [6]) == shared[-1]
    assert h.prime("C", SIMILAR) == len(head(SIMILAR)[0])  # all but its last prompt token
    c, shared_c = turn(SIMILAR, [5])  # are A's: nothing could be reused
    assert h.talk("C", c, shared_c, [6]) == shared_c[-1]  # its own prime


def test_the_answer_after_a_greeting_still_reuses_a_shared_system_message() -> None:
    h = Harness()
    h.prime("A", PROMPT)
    block = system(PROMPT)
    greeted = [*block, ASSISTANT, 60, END, USER, 5, END, ASSISTANT]
    assert h.talk("B", greeted, (len(block), len(block) + 1), [6]) == len(block)


@pytest.mark.parametrize("fault", ["truncate", "load", "eval"])
def test_a_failed_library_call_empties_the_context_instead_of_being_built_on(fault: str) -> None:
    h = Harness()
    h.prime("A", PROMPT)
    a, shared = turn(PROMPT, SEVEN_OF_CLUBS)
    h.talk("A", a, shared, LISTED)
    h.prime("B", SIMILAR)  # A's conversation is now a snapshot
    h.context.fail.add(fault)
    b, shared_b = turn(PROMPT, [5])
    if fault == "eval":
        with pytest.raises(RuntimeError):
            h.talk("B", b, shared_b, [6])
        assert len(h.context.cells) == len(h.context.ids) + 1  # one cell nobody knows of
    h.talk("B", b, shared_b, [6])  # the checks in Harness.step hold throughout
    assert h.cache.resets == 1


def test_kv_memory_that_disagrees_with_the_bookkeeping_is_emptied() -> None:
    h = Harness()
    h.prime("A", PROMPT)
    h.context.cells.append(Cell((999,), "Z"))  # a stale cell behind the bookkeeping's back
    a, shared = turn(PROMPT, [5])
    assert h.talk("A", a, shared, [6]) == shared[-1]  # from A's snapshot, checked (in step)
    assert h.cache.resets == 1


def test_a_job_cannot_evaluate_in_a_context_it_has_not_claimed() -> None:
    h = Harness()
    a, b = kv.Job("A", "A"), kv.Job("B", "B")
    h.cache.claim(a, [1, 2, 3])
    h.cache.claim(b, [1, 2, 9])
    with pytest.raises(RuntimeError, match="not claimed"):
        h.cache.eval(a, [1, 2])


def test_two_replies_of_one_session_keep_their_own_progress() -> None:
    h = Harness()
    h.prime("A", PROMPT)
    one, shared = turn(PROMPT, [50, 51, 52, 53, 54, 55, 56, 57])
    two, _ = turn(PROMPT, [60, 61, 62, 63, 64, 65, 66, 67])
    first, second = h.reply("A", one, shared, [1, 2, 3]), h.reply("A", two, shared, [4, 5])
    progress = {1: 0, 2: 0}
    for _ in range(40):
        for name, reply in ((1, first), (2, second)):
            held = next(reply, None)
            if held is not None:
                assert held > progress[name]  # never back to an earlier point
                progress[name] = held
    assert one[-3:] == [1, 2, 3] and two[-2:] == [4, 5]


def test_an_ended_session_is_forgotten_but_what_others_adopted_stays() -> None:
    h = Harness()
    h.prime("A", PROMPT)
    assert h.prime("B", PROMPT) == 0  # B's slot shows A's snapshot
    a, shared = turn(PROMPT, SEVEN_OF_CLUBS)
    h.talk("A", a, shared, LISTED)  # A's conversation: live, not saved yet
    h.cache.forget("A")
    assert set(h.cache.snapshots) == {"B"}
    h.prime("C", [21, 22])  # overwrites the context: A's conversation is not parked
    assert set(h.cache.snapshots) == {"B", "C"}
    b, _ = turn(PROMPT, [5])
    assert h.talk("B", b, shared, [6]) == shared[-1]


# ------------------------------------------------------------------------------- interleavings


def _random_turn(rng: random.Random, session: str, prompts: dict[str, list[int]]) -> list[int]:
    said = [rng.choice([70, 71, 72, 73]) for _ in range(rng.randint(1, 6))]  # often the same
    return turn(prompts[session], said)[0]


@pytest.mark.parametrize("seed", range(40))
def test_random_interleavings_of_sessions_stay_exact_and_isolated(seed: int) -> None:
    """Primes, replies (some with a tool choice first), barge-ins, abandoned replies and
    library faults, interleaved at random between four sessions, two with the same prompt and
    all often saying the same words: at every step the context holds exactly the job's own
    prompt and nothing another session said (checked in ``Harness.step``)."""
    rng = random.Random(seed)
    h = Harness(budget=rng.choice([200, 1_000, 100_000]))
    prompts = {"A": PROMPT, "B": PROMPT, "C": SIMILAR, "D": [21, 22, 23]}
    running: list[Generator[int, None, None]] = []
    abandoned: list[Generator[int, None, None]] = []  # never closed: their jobs are never released
    for _ in range(150):
        roll, session = rng.random(), rng.choice(sorted(prompts))
        if roll < 0.1:
            h.prime(session, prompts[session], chunk=rng.randint(1, 5))
        elif roll < 0.25 or not running:
            said = [rng.choice([70, 71]) for _ in range(rng.randint(1, 4))]
            target, shared = turn(prompts[session], said)
            choice = [*system([*prompts[session], 40]), USER, *said] if roll < 0.15 else None
            words = [rng.randint(70, 80) for _ in range(rng.randint(1, 5))]
            running.append(h.reply(session, target, shared, words, choice))
        elif roll < 0.3:
            running.pop(rng.randrange(len(running))).close()  # a barge-in
        elif roll < 0.32:
            abandoned.append(running.pop(rng.randrange(len(running))))
        elif roll < 0.35:
            h.context.fail.add(rng.choice(["truncate", "load"]))
        else:
            reply = rng.choice(running)
            if next(reply, None) is None:
                running.remove(reply)
    for reply in running:
        for _ in reply:
            pass


def test_shared_marks_cover_the_system_message_and_the_next_opening() -> None:
    messages = [ChatMessage("system", "Be brief."), ChatMessage("user", "Seven of clubs")]
    pieces = tools.render(messages)
    assert tools.shared(pieces) == (3, 4)
    assert not any(pieces[i][0] == "Seven of clubs" for i in range(4))
    assert [p for p in pieces[:4] if not p[1]] == [(tools.system_text("Be brief."), False)]
    assert tools.shared(tools.render(messages[:1], reply=False)) == (3,)
