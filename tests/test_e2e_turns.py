"""Semantic end of turn end to end (issue 11), real models: a Flux listen provider in Settings
asks harken's two end-of-turn signals at each pause of the user's real recorded speech: Smart
Turn v3.2 on the audio, and the LLM's end-of-message probability read from the held reply's
prompt. Durations are read from ``LatencyReport.eou_latency``: the silence that ended the turn,
counted in audio frames by the server (audio time; how soon within it depends on how fast
Whisper and the LLM's prefill run, so the assertions here are about which rule ended the turn,
not about speed: ``benchmarks/`` measures that).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from conftest import ServerThread, harken_config
from speech import RATE, Utterance, noise, wer
from test_e2e_voice import no_errors, padded, settings, speech, texts, wait_reply_done
from voice_client import VoiceClient

__all__ = ["speech"]  # the module fixture, shared with test_e2e_voice

pytestmark = [pytest.mark.models, pytest.mark.loopback, pytest.mark.timeout(240)]


def flux(**options: Any) -> dict[str, Any]:
    base = settings(rate=16000)
    provider = {"type": "deepgram", "version": "v2", "model": "flux-general-en"}
    base["agent"]["listen"] = {"provider": provider | options}
    return base


def spoken_turn(server: ServerThread, config: dict[str, Any], utterance: Utterance) -> Any:
    with VoiceClient(server.url(), config) as client:
        mark = client.mark()
        client.play(padded(utterance.samples, 16000, after=2.5))
        seen = wait_reply_done(client, mark)
    no_errors(seen)
    user = texts(seen, "user")
    assert len(user) == 1 and wer(utterance.text, user[0]) <= 0.25, user
    reports = [item.message for item in seen if item.type == "LatencyReport" and item.message]
    assert reports, [item.type for item in seen]
    return reports[0]


@pytest.mark.parametrize("name", ["0870", "0920", "goforward"])
def test_a_finished_sentence_is_ended_by_the_signals(
    embedded: ServerThread, speech: dict[str, Utterance], name: str
) -> None:
    """Both signals say complete at the end (Smart Turn ≈ 0.98, the LLM 0.3-0.8): the turn
    ends as soon as they have answered, far sooner than the 4 s timeout."""
    report = spoken_turn(embedded, flux(eot_threshold=0.7, eot_timeout_ms=4000), speech[name])
    assert report["eou_latency"] < 3.0, report


def split(utterance: Utterance, pauses: list[tuple[float, float]]) -> Any:
    """``utterance`` with quiet noise inserted: (seconds into the recording, seconds long)."""
    parts, start = [], 0
    for at, seconds in pauses:
        cut = round(at * RATE)
        parts += [utterance.samples[start:cut], noise(seconds, dbfs=-60.0, seed=cut)]
        start = cut
    return np.concatenate([*parts, utterance.samples[start:]])


def user_turns(server: ServerThread, config: dict[str, Any], samples: Any) -> list[str]:
    """Play ``samples`` and 4 s of silence; the user's turns the server heard."""
    with VoiceClient(server.url(), config) as client:
        mark = client.mark()
        client.wait_played(client.play(padded(samples, 16000, after=4.0)))
        time.sleep(0.5)
        seen = client.messages(mark)
    assert not [i.message for i in seen if i.type == "Error"]
    return texts(seen, "user")


@pytest.fixture(scope="module")
def fixed_silence() -> Iterator[ServerThread]:
    """The embedded stack with ``turn_detection = "silence"`` (the fixed 544 ms)."""
    running = ServerThread(harken_config(providers="embedded", turn_detection="silence"))
    try:
        yield running.start()
    finally:
        running.stop()


def test_a_mid_sentence_pause_does_not_end_the_turn(
    embedded: ServerThread, fixed_silence: ServerThread, speech: dict[str, Utterance]
) -> None:
    """A pause at the comma of "Had he married a more amiable woman, | he might have been
    made ...": 0.9 s of quiet. The fixed 544 ms silence answers the fragment; the two signals
    wait (Smart Turn hears the phrase unfinished) and the sentence is one turn: with the
    embedded stack's default (``turn_detection = "auto"``), and with a Flux listen provider."""
    utterance = speech["0920"]
    samples = split(utterance, [(2.49, 0.9)])
    fixed = user_turns(fixed_silence, settings(rate=16000), samples)
    assert len(fixed) >= 2, fixed  # the test's pause does cut a turn on silence alone
    for config in (settings(rate=16000), flux()):
        semantic = user_turns(embedded, config, samples)
        assert len(semantic) == 1, semantic
        assert wer(utterance.text, semantic[0]) <= 0.25, semantic


def test_a_slow_speaker_is_answered_once(
    embedded: ServerThread, fixed_silence: ServerThread, speech: dict[str, Utterance]
) -> None:
    """ "And Mr. John Dashwood | had then leisure to consider | how much there might be ...",
    read slowly: 0.8 s of quiet at two phrase boundaries. One turn, one answer (the fixed
    silence answers three fragments)."""
    utterance = speech["0870"]
    samples = split(utterance, [(1.58, 0.8), (3.44, 0.8)])
    assert len(user_turns(fixed_silence, settings(rate=16000), samples)) >= 3
    heard = user_turns(embedded, settings(rate=16000), samples)
    assert len(heard) == 1 and wer(utterance.text, heard[0]) <= 0.25, heard


def test_force_end_turn_ends_it_at_once(
    embedded: ServerThread, speech: dict[str, Utterance]
) -> None:
    """``eot_threshold: 1.0`` and a 5 s timeout (the client decides): ForceEndTurn right after
    the speech ends the turn; the reply follows."""
    utterance = speech["0880"]
    with VoiceClient(embedded.url(), flux(eot_threshold=1.0, eot_timeout_ms=5000)) as client:
        mark = client.mark()
        client.wait_played(client.play(padded(utterance.samples, 16000, after=0.3)))
        client.send_json({"type": "ForceEndTurn"})
        seen = wait_reply_done(client, mark)
    no_errors(seen)
    user = texts(seen, "user")
    assert len(user) == 1 and wer(utterance.text, user[0]) <= 0.25, user
    report = next(i.message for i in seen if i.type == "LatencyReport" and i.message)
    assert report["eou_latency"] < 1.0, report  # not the 5 s timeout


def test_eot_timeout_ends_the_turn_whatever_the_model_says(
    embedded: ServerThread, speech: dict[str, Utterance]
) -> None:
    """``eot_threshold: 1.0`` (no probability reaches it): the silence timeout decides."""
    report = spoken_turn(embedded, flux(eot_threshold=1.0, eot_timeout_ms=1000), speech["0870"])
    assert 0.95 <= report["eou_latency"] <= 1.1, report
