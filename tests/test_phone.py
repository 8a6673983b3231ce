"""Phone calls (issue 12, first part): a carrier's media stream on ``/twilio`` and ``/telnyx``
is an ordinary harken session with a profile's agent. The carrier side is
:class:`phone_client.CarrierClient` (Twilio's and Telnyx's documented messages, real-time audio
both ways, marks echoed when played); the server runs the testing providers here (energy VAD,
"I heard N ms" STT, echo LLM, tone TTS), so these check the plumbing and its timing, not models.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from conftest import ServerThread, harken_config
from harken.errors import ConfigError
from harken.phone import choose, parse_profiles
from harken.server.phone import CarrierLink
from phone_client import CarrierClient
from speech import Utterance, wer
from test_e2e_voice import at_rate, speech

__all__ = ["speech"]  # the module fixture, shared with test_e2e_voice

pytestmark = [pytest.mark.loopback, pytest.mark.timeout(120)]

PROFILES: dict[str, Any] = {
    "default": {"agent": {"greeting": "Hello caller."}},
    "secure": {"token": "s3cret", "agent": {"greeting": "This is the secure line."}},
}


@pytest.fixture(scope="module")
def phone() -> Iterator[ServerThread]:
    running = ServerThread(harken_config(phone_profiles=PROFILES)).start()
    try:
        yield running
    finally:
        running.stop()


def tone(seconds: float, level: int = 8000) -> Any:
    t = np.arange(int(seconds * 8000)) / 8000
    return (level * np.sin(2 * np.pi * 300 * t)).astype(np.int16)


def link_of(server: ServerThread) -> CarrierLink:
    links = [p.ws for p in server.server._pumps if isinstance(p.ws, CarrierLink)]
    assert len(links) == 1, links
    return links[0]


def said(server: ServerThread) -> list[tuple[str, str]]:
    session = next(iter(server.server._pumps)).session
    return [(m.role, m.content) for m in session.turns.conversation.messages("", None)]


def wait_until(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_the_greeting_starts_at_once_and_its_mark_comes_back_once_played(
    phone: ServerThread,
) -> None:
    with CarrierClient(phone.url("/twilio")) as call:
        first = call.wait_for("media")
        assert first.t - call.started_at < 0.3  # the greeting starts within 300 ms of start
        mark = call.wait_for("mark")
        media = call.events("media")
        assert all(len(m.data["media"]["payload"]) == 216 for m in media[:-1])  # 160 bytes
        assert media[0].data["streamSid"] == call.stream_id
        wait_until(lambda: call.echoed)
        player = link_of(phone).player
        assert player is not None
        wait_until(lambda: player.heard == ["Hello caller."])
        assert mark.data["mark"]["name"] == "s1"
        # paced at real time: ~1 s of greeting is not all sent at once
        spread = media[-1].t - media[0].t
        assert spread >= 0.8 * 0.02 * len(media) - 0.15, (spread, len(media))


def test_a_turn_and_a_barge_in_clear_the_carriers_buffer(phone: ServerThread) -> None:
    with CarrierClient(phone.url("/twilio")) as call:
        call.wait_for("mark")  # the greeting, sent
        call.silence(0.3)
        spoken = call.stream(tone(1.0))
        call.silence(0.8)
        reply = call.wait_for("media", after=spoken + 1.0)
        onset = call.stream(tone(0.4))  # the caller talks over the reply
        clear = call.wait_for("clear", after=reply.t)
        assert clear.t - onset < 0.5, clear.t - onset
        call.silence(1.0)
        wait_until(lambda: len([r for r, _ in said(phone) if r == "user"]) >= 2)
        user = [text for role, text in said(phone) if role == "user"]
        assert user[0].startswith("I heard"), user


def test_a_key_press_reaches_the_agent(phone: ServerThread) -> None:
    with CarrierClient(phone.url("/twilio")) as call:
        call.wait_for("mark")
        call.dtmf("3")
        wait_until(lambda: ("user", "The caller pressed 3 on the keypad.") in said(phone))
        wait_until(lambda: any("pressed 3" in t for r, t in said(phone) if r == "assistant"))


def test_a_profile_with_a_token_refuses_a_stream_without_it(phone: ServerThread) -> None:
    with CarrierClient(phone.url("/twilio"), {"agent": "secure"}) as call:
        wait_until(lambda: call.closed_code is not None)
        assert call.closed_code == 1008 and not call.events("media")
    with CarrierClient(phone.url("/twilio"), {"agent": "secure", "token": "s3cret"}) as call:
        call.wait_for("media")
    with CarrierClient(phone.url("/twilio"), {"agent": "nobody"}) as call:
        wait_until(lambda: call.closed_code is not None)
        assert call.closed_code == 1008


def test_a_telnyx_stream(phone: ServerThread) -> None:
    with CarrierClient(
        phone.url("/telnyx"), {"agent": "secure", "token": "s3cret"}, carrier="telnyx"
    ) as call:
        first = call.wait_for("media")
        assert "streamSid" not in first.data
        assert first.t - call.started_at < 0.3
        call.wait_for("mark")
        wait_until(lambda: call.echoed)


def test_stop_ends_the_session(phone: ServerThread) -> None:
    with CarrierClient(phone.url("/twilio")) as call:
        call.wait_for("media")
        call.stop()
        wait_until(lambda: call.closed_code is not None)
    wait_until(lambda: phone.session_count() == 0)


def test_profiles_are_checked_at_config_load() -> None:
    weather = {"name": "get_weather", "description": "the weather", "parameters": {}}
    client_side = {"agent": {"think": {"provider": {"type": "open_ai"}, "functions": [weather]}}}
    with pytest.raises(ConfigError, match="get_weather have no endpoint"):
        parse_profiles("phone_profiles", {"x": client_side})
    with pytest.raises(ConfigError, match="unknown key"):
        parse_profiles("phone_profiles", {"x": {"greeting": "Hi"}})
    with pytest.raises(ConfigError, match="not a JSON object"):
        parse_profiles("HARKEN_PHONE_PROFILES", "{")
    with pytest.raises(ConfigError, match=r"phone_profiles\.x"):
        parse_profiles("phone_profiles", {"x": {"agent": {"speak": 5}}})
    (loaded,) = parse_profiles("HARKEN_PHONE_PROFILES", json.dumps({"x": {"token": "t"}}))
    settings = json.loads(loaded.settings)
    assert settings["audio"]["input"] == {"encoding": "mulaw", "sample_rate": 8000}
    assert settings["agent"]["listen"]  # filled in from the default phone agent
    with pytest.raises(ConfigError, match="phone_dtmf_message"):
        harken_config(phone_dtmf_message="pressed")
    with pytest.raises(ConfigError, match="twilio_path"):
        harken_config(twilio_path="/agent")


def test_choosing_a_profile() -> None:
    profiles = parse_profiles("p", PROFILES)
    assert choose(profiles, "default", {})[0] == profiles[0]
    assert choose(profiles, "missing", {})[0] == profiles[0]  # the first, if the default is gone
    assert choose((), "default", {})[0] is not None  # none configured: the built-in one
    assert "token" in choose(profiles, "default", {"agent": "secure", "token": "no"})[1]


@pytest.mark.models
def test_a_call_with_the_embedded_models(
    embedded: ServerThread, speech: dict[str, Utterance]
) -> None:
    """A real recording, as a phone line carries it (μ-law at 8 kHz): transcribed, answered
    with speech, the reply's sentences marked and heard."""
    utterance = speech["0880"]  # "he was not an ill disposed young man"
    with CarrierClient(embedded.url("/twilio")) as call:
        greeting = call.wait_for("media", timeout=30)
        assert greeting.t - call.started_at < 1.0
        call.wait_for("mark", timeout=30)
        call.silence(0.5)
        ended = call.stream(at_rate(utterance.samples, 8000)) + utterance.seconds
        call.silence(2.0)
        reply = call.wait_for("media", after=ended + 0.3, timeout=60)
        assert reply.t - ended < 5.0
        wait_until(lambda: len([r for r, _ in said(embedded) if r == "assistant"]) >= 2, 60)
        history = said(embedded)
    user = [text for role, text in history if role == "user"]
    assert len(user) == 1 and wer(utterance.text, user[0]) <= 0.3, user
