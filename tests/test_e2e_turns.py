"""Semantic end of turn end to end (issue 11), real models: a Flux listen provider in Settings
asks harken's end-of-turn model (Smart Turn v3.2) at each pause of the user's real recorded
speech. Durations are read from ``LatencyReport.eou_latency``: the silence that ended the turn,
counted in audio frames by the server (audio time, not wall time).
"""

from __future__ import annotations

from typing import Any

import pytest

from conftest import ServerThread
from speech import Utterance, wer
from test_e2e_voice import no_errors, padded, settings, speech, texts, wait_reply_done
from voice_client import VoiceClient

__all__ = ["speech"]  # the module fixture, shared with test_e2e_voice

pytestmark = [pytest.mark.models, pytest.mark.loopback, pytest.mark.timeout(240)]

FIXED_SILENCE = 0.544  # the default end of turn


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


@pytest.mark.parametrize("name", ["0870", "0920"])
def test_a_finished_sentence_ends_before_the_fixed_silence(
    embedded: ServerThread, speech: dict[str, Utterance], name: str
) -> None:
    """Smart Turn scores these ends 0.98: the turn ends at the pause, not 544 ms later."""
    report = spoken_turn(embedded, flux(eot_threshold=0.7), speech[name])
    assert report["eou_latency"] < FIXED_SILENCE - 0.1, report


def test_eot_timeout_ends_the_turn_whatever_the_model_says(
    embedded: ServerThread, speech: dict[str, Utterance]
) -> None:
    """``eot_threshold: 1.0`` (no probability reaches it): the silence timeout decides."""
    report = spoken_turn(embedded, flux(eot_threshold=1.0, eot_timeout_ms=1000), speech["0870"])
    assert 0.95 <= report["eou_latency"] <= 1.1, report
