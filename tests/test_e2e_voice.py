"""End to end on loopback with the real embedded models: recorded human speech in, speech out.

One real server (``providers="embedded"``: Silero VAD, whisper-base, Qwen2.5-Coder-1.5B, Piper)
runs in a thread for the whole module; each test opens its own conversation with
:class:`voice_client.VoiceClient`, which streams audio at real time in 20 ms frames and keeps
streaming silence, as a real client does. The recordings are the pocketsphinx test data
(``tests/speech.py``). Covered:

* a spoken sentence is transcribed (WER ≤ 20 %) and answered, in the documented order;
* barge-in: speech while the agent speaks stops its audio (< 1 s after the onset, frames in
  flight included; ``benchmarks/latency_bench.py`` measures the real number);
* a client-side function call round trip;
* telephony: mulaw 8 kHz in and out (the reply's audio is transcribed back to check it);
* an utterance with a 300 ms inner pause (shorter than ``end_of_turn_ms``) is one turn;
* speech that resumes just after the end of turn, while that turn is still being transcribed.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import pytest

from conftest import ServerThread
from harken.engines.assemble import verify
from harken.protocol.audio import mulaw_decode, resample
from harken.providers.base import Int16Array
from harken.providers.vad import SileroVAD
from speech import RATE, Utterance, model_root, need, normalise, utterances, wer
from voice_client import (
    LONG_PARAGRAPH,
    Received,
    Span,
    VoiceClient,
    acoustic_span,
    speech_span,
)

pytestmark = [pytest.mark.models, pytest.mark.loopback, pytest.mark.timeout(180)]

PROMPT = "You are a friendly voice assistant. Answer in one short sentence."
REPLY_TIMEOUT = 90.0  # seconds for a whole reply; generous for a shared two-core machine


def settings(
    *,
    encoding: str = "linear16",
    rate: int = 24000,
    out_encoding: str = "linear16",
    out_rate: int = 24000,
    functions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    think: dict[str, Any] = {
        "provider": {"type": "open_ai", "model": "gpt-4o-mini"},
        "prompt": PROMPT,
    }
    if functions:
        think["functions"] = functions
    return {
        "type": "Settings",
        "experimental": True,
        "audio": {
            "input": {"encoding": encoding, "sample_rate": rate},
            "output": {"encoding": out_encoding, "sample_rate": out_rate, "container": "none"},
        },
        "agent": {
            "listen": {"provider": {"type": "deepgram", "model": "nova-3"}},
            "think": think,
            "speak": {"provider": {"type": "deepgram", "model": "aura-2-thalia-en"}},
        },
    }


WEATHER = {
    "name": "get_weather",
    "description": "Get the current weather for a city.",
    "parameters": {
        "type": "object",
        "properties": {"location": {"type": "string", "description": "The city"}},
        "required": ["location"],
    },
}


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def speech() -> dict[str, Utterance]:
    return {u.name: u for u in need(utterances)}


@pytest.fixture(scope="module")
def vad() -> SileroVAD:
    return SileroVAD(need(verify, "silero-vad", model_root()))


# ----------------------------------------------------------------------------- helpers


def at_rate(samples: Int16Array, rate: int) -> Int16Array:
    return resample(samples, RATE, rate) if rate != RATE else samples


def padded(samples: Int16Array, rate: int, before: float = 0.5, after: float = 1.5) -> Int16Array:
    """``samples`` (16 kHz) with silence around them, resampled to ``rate``."""
    zeros = np.zeros
    whole = np.concatenate(
        (zeros(int(before * RATE), np.int16), samples, zeros(int(after * RATE), np.int16))
    )
    return at_rate(whole, rate)


def scaled(index16k: int, rate: int) -> int:
    """A sample index of a 16 kHz signal, in the same signal at ``rate``."""
    return index16k * rate // RATE


def types(items: list[Received]) -> list[str]:
    return [item.type for item in items]


def first(items: list[Received], kind: str, role: str | None = None) -> int:
    for index, item in enumerate(items):
        if item.type == kind and (role is None or (item.message or {}).get("role") == role):
            return index
    raise AssertionError(f"no {kind} {role or ''} in {compact(items)}")


def texts(items: list[Received], role: str) -> list[str]:
    return [
        item.message["content"]
        for item in items
        if item.type == "ConversationText" and item.message and item.message["role"] == role
    ]


def compact(items: list[Received]) -> list[str]:
    """Message types with consecutive audio frames collapsed (for assertion messages)."""
    out: list[str] = []
    for item in items:
        kind = item.type
        if kind == "audio" and out and out[-1].startswith("audio"):
            count = int(out[-1].split("x")[1]) + 1 if "x" in out[-1] else 2
            out[-1] = f"audio x{count}"
        elif kind == "ConversationText" and item.message:
            out.append(f"CT({item.message['role']}: {item.message['content'][:40]})")
        else:
            out.append(kind)
    return out


def wait_reply_done(client: VoiceClient, after: int) -> list[Received]:
    """Everything from ``after`` up to the AgentAudioDone that ends the next spoken reply."""
    started = client.wait_for("AgentStartedSpeaking", after=after, timeout=REPLY_TIMEOUT)
    index = client.received.index(started)
    client.wait_for("AgentAudioDone", after=index, timeout=REPLY_TIMEOUT)
    return client.messages(after)


def no_errors(items: list[Received]) -> None:
    problems = [item.message for item in items if item.type in ("Error", "Warning")]
    slow = [p for p in problems if p and p.get("code") == "SLOW_THINK_REQUEST"]
    assert [p for p in problems if p not in slow] == []


# ----------------------------------------------------------------------------- (a)


def test_spoken_sentence_is_transcribed_and_answered(
    embedded: ServerThread, speech: dict[str, Utterance]
) -> None:
    utterance = speech["0890"]  # "unless to be rather cold hearted and rather selfish ..."
    span = acoustic_span(utterance.samples)
    rate = 24000
    with VoiceClient(embedded.url(), settings(rate=rate)) as client:
        mark = client.mark()
        playback = client.play(padded(utterance.samples, rate))
        end_of_speech = client.sample_time(
            playback.start + scaled(int(0.5 * RATE) + span.end, rate)
        )
        seen = wait_reply_done(client, mark)

    shown = compact(seen)
    no_errors(seen)
    user = texts(seen, "user")
    assert len(user) == 1, shown
    assert wer(utterance.text, user[0]) <= 0.20, (utterance.text, user[0])

    # the documented order (PROTOCOL.md 3.4 and 4.4)
    heard = first(seen, "UserStartedSpeaking")
    said = first(seen, "ConversationText", "user")
    answer = first(seen, "ConversationText", "assistant")
    started = first(seen, "AgentStartedSpeaking")
    audio = first(seen, "audio")
    done = first(seen, "AgentAudioDone")
    assert heard < said < answer < started < audio < done, shown
    assert "audio" not in types(seen[done:]), shown
    assert "audio" not in types(seen[:started]), shown

    # History mirrors the user's turn and every sentence the agent said
    history = [item.message for item in seen if item.type == "History" and item.message]
    assert history[0] == {"type": "History", "role": "user", "content": user[0]}
    spoken = [h["content"] for h in history if h.get("role") == "assistant"]
    assert spoken == texts(seen, "assistant") and spoken, shown
    assert sum(len(item.audio or b"") for item in seen) > 24000 * 2 * 0.3  # ≥ 0.3 s of speech

    # plausible latencies: counted from the server's end of turn, which follows the speech
    latency = seen[started].message or {}
    total, tts = latency["total_latency"], latency["tts_latency"]
    assert tts > 0 and total >= 0, latency  # 0: the held reply's audio was ready at the end
    mouth_to_ear = seen[audio].t - end_of_speech
    assert 0 <= total < mouth_to_ear, (latency, mouth_to_ear)
    waited = mouth_to_ear - total  # end-of-turn wait + transport both ways
    assert 0.3 < waited < 3.0, (latency, mouth_to_ear)
    report = seen[first(seen, "LatencyReport")].message or {}
    assert report["total_latency"] == total


# ----------------------------------------------------------------------------- (b)


def test_barge_in_stops_the_agent_and_starts_a_new_turn(
    embedded: ServerThread, speech: dict[str, Utterance]
) -> None:
    utterance = speech["goforward"]
    span = acoustic_span(utterance.samples)
    rate = 16000
    with VoiceClient(embedded.url(), settings(rate=rate)) as client:
        mark = client.mark()
        client.send_json({"type": "InjectAgentMessage", "message": LONG_PARAGRAPH})
        client.wait_for("audio", after=mark, timeout=REPLY_TIMEOUT)
        playback = client.play(padded(utterance.samples, rate, before=0.0))
        onset = client.sample_time(playback.start + span.start)
        interrupted = client.wait_for("UserStartedSpeaking", after=mark, timeout=30)
        cut = client.received.index(interrupted)
        client.wait_for("AgentAudioDone", after=cut, timeout=30)
        new_turn = wait_reply_done(client, cut)
        seen = client.messages(mark)

    shown = compact(seen)
    no_errors(seen)
    cut -= mark
    reply = seen[:cut]
    after = seen[cut:]
    # the agent was still speaking the paragraph: its audio is cut, AgentAudioDone says so
    assert "AgentAudioDone" not in types(reply), shown
    cut_done = first(after, "AgentAudioDone")
    said_then = texts(reply, "assistant")
    assert said_then and LONG_PARAGRAPH.startswith(" ".join(said_then)), said_then
    assert " ".join(said_then) != LONG_PARAGRAPH, "the whole paragraph went out before the onset"

    # no audio of the cut reply after UserStartedSpeaking; frames in flight stop within 1 s
    next_reply = first(after, "ConversationText", "assistant")
    assert "audio" not in types(after[: next_reply + 1]), shown
    last_audio = max(item.t for item in reply if item.type == "audio")
    stopped_after = last_audio - onset
    assert stopped_after < 1.0, f"agent audio went on {stopped_after:.3f} s after the onset"

    # then the new turn: the user's words, and a spoken answer
    user = texts(new_turn, "user")
    assert len(user) == 1 and wer(utterance.text, user[0]) <= 0.20, user
    new_started = first(after, "AgentStartedSpeaking")
    new_audio = next(i for i, item in enumerate(after) if i > next_reply and item.type == "audio")
    assert cut_done < first(after, "ConversationText", "user") < next_reply < new_audio, shown
    assert new_started < new_audio < len(after) - 1, shown
    assert "AgentAudioDone" in types(after[new_audio:]), shown


# ----------------------------------------------------------------------------- (c)


def test_client_side_function_call_round_trip(embedded: ServerThread) -> None:
    with VoiceClient(embedded.url(), settings(functions=[WEATHER])) as client:
        mark = client.mark()
        client.send_json({"type": "InjectUserMessage", "content": "What is the weather in Paris?"})
        request = client.wait_for("FunctionCallRequest", after=mark, timeout=REPLY_TIMEOUT)
        assert request.message is not None
        calls = request.message["functions"]
        assert len(calls) == 1, calls
        call = calls[0]
        assert call["name"] == "get_weather" and call["client_side"] is True, call
        assert isinstance(call["id"], str) and call["id"]
        arguments = json.loads(call["arguments"])
        assert "paris" in str(arguments.get("location", "")).lower(), arguments
        result = json.dumps({"location": "Paris", "conditions": "sunny", "temperature_c": 18})
        answered = client.mark()
        client.send_json(
            {
                "type": "FunctionCallResponse",
                "id": call["id"],
                "name": call["name"],
                "content": result,
            }
        )
        seen = wait_reply_done(client, answered)
        before = client.messages(mark)[: answered - mark]

    shown = compact(seen)
    no_errors(seen)
    assert texts(before, "user") == ["What is the weather in Paris?"]
    history = [item.message for item in seen if item.type == "History" and item.message]
    recorded = [h for h in history if "function_calls" in h]
    assert recorded and recorded[0]["function_calls"][0]["id"] == call["id"], history
    assert recorded[0]["function_calls"][0]["response"] == result
    answer = " ".join(texts(seen, "assistant")).lower()
    assert re.search(r"sunny|\b18\b|eighteen", answer), answer
    assert first(seen, "ConversationText", "assistant") < first(seen, "audio"), shown


# ----------------------------------------------------------------------------- (d)


def test_telephony_mulaw_8khz_in_and_out(
    embedded: ServerThread, speech: dict[str, Utterance]
) -> None:
    utterance = speech["0930"]  # "he might even have been made amiable himself"
    rate = 8000
    config = settings(encoding="mulaw", rate=rate, out_encoding="mulaw", out_rate=rate)
    with VoiceClient(embedded.url(), config) as client:
        assert client.frame == 160  # 20 ms of mulaw at 8 kHz: 160 bytes a frame
        mark = client.mark()
        client.play(padded(utterance.samples, rate))
        seen = wait_reply_done(client, mark)

    shown = compact(seen)
    no_errors(seen)
    user = texts(seen, "user")
    assert len(user) == 1 and wer(utterance.text, user[0]) <= 0.20, (utterance.text, user)
    frames = [item.audio for item in seen if item.audio is not None]
    assert frames, shown
    assert all(len(f) <= 320 for f in frames) and len(frames[0]) == 320  # 40 ms of 8 kHz mulaw
    spoken = mulaw_decode(b"".join(frames))
    assert spoken.size / rate > 0.3
    # the bytes really are 8 kHz mulaw: decoded that way, whisper hears the agent's words
    registry = embedded.server.registry
    assert registry is not None
    stt = registry.engines.stt["stt-default"]
    heard = embedded.call(stt.transcribe(resample(spoken, rate, RATE)), timeout=60)
    answer = " ".join(texts(seen, "assistant"))
    assert wer(answer, heard) <= 0.5, (answer, heard)


# ----------------------------------------------------------------------------- (e)


def trimmed(samples: Int16Array, span: Span) -> Int16Array:
    return samples[span.start : span.end]


def test_a_short_pause_inside_an_utterance_does_not_end_the_turn(
    embedded: ServerThread, speech: dict[str, Utterance], vad: SileroVAD
) -> None:
    head, tail = speech["cards-003"], speech["goforward"]  # "seven of clubs" + "go forward ..."
    pause = np.zeros(int(0.3 * RATE), dtype=np.int16)  # < end_of_turn_ms (544 ms)
    assert embedded.config.end_of_turn_ms > 300 + 150
    spliced = np.concatenate(
        (
            trimmed(head.samples, speech_span(head.samples, vad)),
            pause,
            trimmed(tail.samples, speech_span(tail.samples, vad)),
        )
    )
    rate = 16000
    with VoiceClient(embedded.url(), settings(rate=rate)) as client:
        mark = client.mark()
        client.wait_played(client.play(padded(spliced, rate)))
        # a premature end of turn would have sent a second UserStartedSpeaking by now
        client.wait_for("AgentStartedSpeaking", after=mark, timeout=REPLY_TIMEOUT)
        seen = client.messages(mark)

    shown = compact(seen)
    assert types(seen).count("UserStartedSpeaking") == 1, shown
    user = texts(seen, "user")
    assert len(user) == 1, shown
    words = set(normalise(user[0]))
    assert words & {"seven", "clubs"} and words & {"forward", "meters", "metres"}, user[0]


# ----------------------------------------------------------------------------- (f)


def second_part_or_error(item: Received) -> bool:
    """An Error, or the user's ConversationText with "seven of clubs" in it."""
    if item.type == "Error":
        return True
    message = item.message or {}
    words = set(normalise(message.get("content", "")))
    return item.type == "ConversationText" and message["role"] == "user" and bool(SECOND & words)


SECOND = {"seven", "clubs", "club"}


def test_speaking_again_while_the_last_turn_is_transcribed(
    embedded: ServerThread, speech: dict[str, Utterance], vad: SileroVAD
) -> None:
    """The user pauses a little longer than ``end_of_turn_ms`` and goes on.

    The first part is long (three sentences, ~17 s, so its transcription takes ~0.8-2 s); after
    650 ms of silence (the end of turn fires at ~550 ms) comes "ten", 400 ms of silence (a
    pause: speculation starts) and "seven of clubs". The second part's onset and first pause
    come while the first part's transcript may still be computed. Whether the server makes one
    turn of it or several, the session must survive, hear all of it and answer.
    """
    first_part = np.concatenate(
        [
            trimmed(speech[n].samples, speech_span(speech[n].samples, vad))
            for n in ("0870", "0920", "0890")
        ]
    )
    ten = trimmed(speech["cards-001"].samples, speech_span(speech["cards-001"].samples, vad))
    clubs = speech["cards-003"]  # "seven of clubs"
    spliced = np.concatenate(
        (
            first_part,
            np.zeros(int(0.65 * RATE), dtype=np.int16),
            ten[: int(0.3 * RATE)],  # "ten" (the first 300 ms of "ten of clubs")
            np.zeros(int(0.4 * RATE), dtype=np.int16),
            trimmed(clubs.samples, speech_span(clubs.samples, vad)),
        )
    )
    with VoiceClient(embedded.url(), settings(rate=RATE)) as client:
        mark = client.mark()
        client.play(padded(spliced, RATE))
        last_user = client.wait_for(second_part_or_error, after=mark, timeout=REPLY_TIMEOUT)
        assert last_user.type != "Error", last_user.message
        wait_reply_done(client, client.received.index(last_user))
        seen = client.messages(mark)

    no_errors(seen)
    heard = set(normalise(" ".join(texts(seen, "user"))))
    assert {"dashwood", "amiable", "selfish"} <= heard, compact(seen)
