"""Isolation between sessions, with the real embedded models (issue 10, item 4).

Once, a new session's first reply repeated another caller's words. The mechanism, found by
reading ``llama.py`` and reproduced with the real model: a reply picked the snapshot of
another reply's context that shared the longest prefix with its prompt, then saved the
unsaved live context under that same slot (replacing the snapshot it had picked), restored it
and kept as many of its tokens as the *picked* snapshot had in common with its prompt. Those
tokens were someone else's words, and nothing checked them: session B said "Seven of spades"
and was answered about the "Ten of spades", "Ten" being what session A had said last.
``harken.providers.llm.kv`` now checks the tokens actually held before any reuse, and lets a
session reuse of another's tokens only a whole system message (``tests/test_llm_cache.py``
proves both without a model).

Here, with the real server and models, over real WebSockets:

* that very sequence of three replies, through the embedded LLM;
* three conversations, two at the same time and one after them, each told its own made-up code
  word in its first message (all first messages alike but for the word) and then asked what it
  was told: no reply and no History message of a session ever holds another session's code
  word (nor "Zorblax", which no session is told), and no session's first reply reused a token
  of another session's identical opening sentence.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pytest

from conftest import ServerThread, open_ws, recv_json
from harken.engines.lane import SESSION
from harken.providers.base import LLMText
from harken.providers.llm import tools
from harken.session.effects import ChatMessage

if TYPE_CHECKING:
    from harken.providers.llm.llama import LlamaLLM

pytestmark = [pytest.mark.models, pytest.mark.loopback, pytest.mark.timeout(300)]

PROMPT = "You are a helpful voice assistant. Answer in one short sentence."
REPLY_TIMEOUT = 90.0  # seconds for one whole reply on a shared two-core machine
WORDS = {"left": "Quimpel", "right": "Fraddock", "last": "Velmorin", "elsewhere": "Zorblax"}
TELL = "Hello, this is a test call. Please remember my secret code word. My code word is {}."
ASK = "What code word did I tell you? Did I tell you any other code word?"


def stem(word: str) -> str:
    """What a leak would show even if cut or misspelt: the word's first five letters."""
    return word[:5].lower()


def head(llm: LlamaLLM, messages: list[ChatMessage]) -> int:
    """How many tokens of the prompt for ``messages`` another session may have cached: the
    system message and the opening of the user's message."""
    pieces = tools.render(messages)
    return len(llm._engine.tokenize(pieces[: tools.shared(pieces)[-1]]))


def words_of(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


# ----------------------------------------------------------------------------- the LLM


def test_a_reply_never_continues_from_another_sessions_words(embedded: ServerThread) -> None:
    """The reported leak's mechanism, replayed: A says two things, then B says something that
    starts like A's first. B's reply must come from B's words: its cache may only hold the
    shared system message (and the opening of the user's message), never A's tokens."""
    from harken.providers.llm.llama import LlamaLLM, cache_usage

    registry = embedded.server.registry
    assert registry is not None
    llm = registry.engines.llm["llm-default"]
    assert isinstance(llm, LlamaLLM)

    async def say(session: str, text: str) -> str:
        SESSION.set(session)
        messages = [ChatMessage("system", PROMPT), ChatMessage("user", text)]
        outputs = [o async for o in llm.stream(messages)]
        return "".join(o.text for o in outputs if isinstance(o, LLMText))

    embedded.call(say("isolation-A", "Seven of clubs. What card did I name?"), timeout=120)
    embedded.call(say("isolation-A", "Ten of hearts. What card did I name?"), timeout=120)
    question = "Seven of spades. What card did I name?"
    answer = embedded.call(say("isolation-B", question), timeout=120)
    assert not {"ten", "hearts", "clubs"} & words_of(answer), answer
    turn = llm.turns[-1]
    assert turn.session == "isolation-B"
    messages = [ChatMessage("system", PROMPT), ChatMessage("user", question)]
    assert turn.cached_tokens <= head(llm, messages), "B reused tokens of what A said"
    # /metrics shows the snapshots the model keeps (issue 14: cache sizes for operators)
    with urllib.request.urlopen(embedded.http("/metrics"), timeout=5) as response:
        metrics = response.read().decode()
    snapshots = list(llm._engine.cache.snapshots.values())
    shown = re.search(r"^harken_llm_kv_snapshots (\S+)$", metrics, re.M)
    size = re.search(r"^harken_llm_kv_snapshot_bytes (\S+)$", metrics, re.M)
    assert shown is not None and size is not None and snapshots
    # every model loaded in the process counts (another test module may have loaded one)
    assert float(shown.group(1)) == cache_usage()[0] >= len(snapshots)
    assert float(size.group(1)) == cache_usage()[1] >= sum(s.size for s in snapshots) > 0
    embedded.call(llm.forget("isolation-A"))  # the server's cue that a session has ended
    kept = llm._engine.cache.snapshots.items()
    assert not [k for k, s in kept if k.startswith("isolation-A") or s.session == "isolation-A"]


# ----------------------------------------------------------------------------- conversations


def settings() -> dict[str, Any]:
    return {
        "type": "Settings",
        "audio": {
            "input": {"encoding": "linear16", "sample_rate": 16000},
            "output": {"encoding": "linear16", "sample_rate": 16000, "container": "none"},
        },
        "agent": {
            "listen": {"provider": {"type": "deepgram", "model": "nova-3"}},
            "think": {"provider": {"type": "open_ai", "model": "gpt-4o-mini"}, "prompt": PROMPT},
            "speak": {"provider": {"type": "harken", "model": "espeak"}},  # cheap on the CPU
        },
    }


def reply(ws: Any, text: str) -> list[dict[str, Any]]:
    """Inject ``text``; return every message up to the end of the agent's spoken reply."""
    ws.send(json.dumps({"type": "InjectUserMessage", "content": text}))
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + REPLY_TIMEOUT
    while not seen or seen[-1]["type"] != "AgentAudioDone":
        seen.append(recv_json(ws, max(0.1, deadline - time.monotonic())))
        assert seen[-1]["type"] != "Error", seen[-1]
    return seen


def converse(
    server: ServerThread, name: str, start: threading.Barrier | None
) -> tuple[str, list[dict[str, Any]]]:
    """One conversation: the code word, then the question. Returns its request id (the session
    its model work is done for) and everything it received."""
    ws = open_ws(server)
    try:
        welcome = recv_json(ws)
        ws.send(json.dumps(settings()))
        assert recv_json(ws)["type"] == "SettingsApplied"
        if start is not None:
            start.wait(timeout=30)  # the concurrent pair tells their words at the same time
        seen = reply(ws, TELL.format(WORDS[name]))
        seen += reply(ws, ASK)
        while True:  # a History message may trail AgentAudioDone
            try:
                seen.append(recv_json(ws, 0.3))
            except TimeoutError:
                return str(welcome["request_id"]), seen
    finally:
        ws.close()


def said(seen: list[dict[str, Any]], role: str) -> list[str]:
    """Contents of ConversationText and History messages of ``role``."""
    kinds = ("ConversationText", "History")
    return [m["content"] for m in seen if m["type"] in kinds and m.get("role") == role]


def test_sessions_at_the_same_time_and_after_each_other_never_hear_another_code_word(
    embedded: ServerThread,
) -> None:
    """Two conversations at once, then a third: each hears only its own code word, and the
    first reply of each reused no token of another session's identical opening sentence."""
    from harken.providers.llm.llama import LlamaLLM

    started = time.monotonic()
    pair = threading.Barrier(2)
    with ThreadPoolExecutor(2) as pool:
        left = pool.submit(converse, embedded, "left", pair)
        right = pool.submit(converse, embedded, "right", pair)
        sessions = {"left": left.result(), "right": right.result()}
    sessions["last"] = converse(embedded, "last", None)
    print(f"three conversations in {time.monotonic() - started:.1f} s")

    recalled = 0
    for name, (_, seen) in sessions.items():
        user, agent = said(seen, "user"), said(seen, "assistant")
        print(name, agent)
        assert any(WORDS[name] in text for text in user), (name, user)  # its own word went in
        assert agent, (name, seen)
        everything = " ".join(user + agent).lower()
        others = [word for other, word in WORDS.items() if other != name]
        assert not [w for w in others if stem(w) in everything], (name, user, agent)
        recalled += stem(WORDS[name]) in " ".join(agent).lower()
    # the model really answers from the conversation (else the check above would prove little)
    assert recalled >= 2, sessions

    registry = embedded.server.registry
    assert registry is not None
    llm = registry.engines.llm["llm-default"]
    assert isinstance(llm, LlamaLLM)
    for name, (request_id, _) in sessions.items():
        told = [ChatMessage("system", PROMPT), ChatMessage("user", TELL.format(WORDS[name]))]
        first = next(turn for turn in llm.turns if turn.session == request_id)
        assert first.cached_tokens <= head(llm, told), (name, first)
