"""Phone calls (issue 12, first part): a carrier's media stream on ``/twilio`` and ``/telnyx``
is an ordinary harken session with a profile's agent. The carrier side is
:class:`phone_client.CarrierClient` (Twilio's and Telnyx's documented messages, real-time audio
both ways, marks echoed when played); the server runs the testing providers here (energy VAD,
"I heard N ms" STT, echo LLM, tone TTS), so these check the plumbing and its timing, not models.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from conftest import ServerThread, harken_config, serving
from harken.errors import ConfigError
from harken.phone import choose, parse_profiles
from harken.server.phone import CarrierLink, Keypad
from phone_client import CarrierClient
from speech import asterisk, need, wer

pytestmark = [pytest.mark.loopback, pytest.mark.timeout(120)]

GREETING = (  # three sentences of ~0.7 s each with the testing TTS (10 ms per character)
    "This first sentence of the greeting is played in full to the caller.",
    "The caller talks over this second sentence, so it is never heard whole.",
    "And this third sentence of the greeting is never played at all.",
)
PROFILES: dict[str, Any] = {
    "default": {"agent": {"greeting": "Hello caller."}},
    "secure": {"token": "s3cret", "agent": {"greeting": "This is the secure line."}},
    "long": {"agent": {"greeting": " ".join(GREETING)}},
}


@pytest.fixture(scope="module")
def phone() -> Iterator[ServerThread]:
    with serving(harken_config(phone_profiles=PROFILES)) as running:
        yield running


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


def test_a_barge_in_keeps_in_history_exactly_the_sentences_whose_marks_came_back(
    phone: ServerThread,
) -> None:
    with CarrierClient(phone.url("/twilio"), {"agent": "long"}) as call:
        wait_until(lambda: "s1" in call.echoed)  # the caller heard the first sentence
        onset = call.stream(tone(0.4))  # and talks over the second
        clear = call.wait_for("clear", after=onset)
        call.silence(1.0)
        wait_until(lambda: any(role == "user" for role, _ in said(phone)))
        history = said(phone)
        sent = [m.data["mark"]["name"] for m in call.events("mark")]
    assert history[0] == ("assistant", GREETING[0]), history
    # sentence 2's mark was never sent (it was queued behind its audio when the caller spoke)
    assert sent[0] == "s1" and "s2" not in sent and "s2" not in call.echoed
    # the carrier dropped its buffer right after the caller's speech began
    print(f"clear {1000 * (clear.t - onset):.0f} ms after the onset")  # 101 ms when quiet
    assert clear.t - onset < 0.3, clear.t - onset  # the 150 ms goal: BENCHMARKS.md, not here
    assert not [m for m in call.events("media") if clear.t < m.t < clear.t + 0.5]


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


def test_keys_pressed_together_are_one_entry_and_pound_completes_it(phone: ServerThread) -> None:
    with CarrierClient(phone.url("/twilio")) as call:
        call.wait_for("mark")
        for key in "1234#":
            call.dtmf(key)
            time.sleep(0.15)
        pressed = time.monotonic()
        wait_until(lambda: ("user", "The caller pressed 1234 on the keypad.") in said(phone))
        assert time.monotonic() - pressed < 0.5  # "#" ends the entry: no timeout waited for
        users = [text for role, text in said(phone) if role == "user"]
        assert users == ["The caller pressed 1234 on the keypad."]


def test_a_server_side_function_runs_on_a_call() -> None:
    """The profile's function has an HTTP endpoint: the call's agent uses it (the testing LLM
    asks for a function its user message names; the keypad message names it here)."""
    requests: list[bytes] = []

    class Orders(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            requests.append(self.rfile.read(int(self.headers["Content-Length"])))
            body = b'{"status": "shipped"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Orders)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    order = {
        "name": "order_status",
        "description": "The status of an order",
        "parameters": {"type": "object", "properties": {"order": {"type": "string"}}},
        "endpoint": {"url": f"http://127.0.0.1:{http.server_port}/orders", "method": "post"},
    }
    profiles = {"shop": {"agent": {"think": {"functions": [order]}}}}  # the default provider
    config = harken_config(
        phone_profiles=profiles,
        allow_loopback_functions=True,
        phone_dtmf_message="Check the order_status of order {digit}.",
    )
    with serving(config) as server, CarrierClient(server.url("/twilio"), {"agent": "shop"}) as call:
        call.wait_for("mark")
        call.dtmf("7")
        call.dtmf("#")
        wait_until(lambda: any("shipped" in t for r, t in said(server) if r == "assistant"))
        reply = call.wait_for("media", after=time.monotonic())
        assert reply.data["media"]["payload"]
    http.shutdown()
    assert len(requests) == 1 and "order" in json.loads(requests[0])


def test_the_keypad() -> None:
    keypad = Keypad("pressed {digit}", timeout=1.0)
    assert keypad.press("7", 10.0) is None and keypad.due == 11.0
    assert keypad.press("*", 10.5) is None and keypad.due == 11.5
    assert json.loads(keypad.complete())["content"] == "pressed 7*"
    assert keypad.due is None
    assert json.loads(keypad.press("#", 12.0) or "")["content"] == "pressed #"


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


def test_a_profile_whose_models_are_not_served_stops_the_server() -> None:
    nope = {"think": {"provider": {"type": "open_ai", "model": "no-such-model"}}}
    server = ServerThread(harken_config(phone_profiles={"broken": {"agent": nope}}))
    with pytest.raises(ConfigError, match=r"phone_profiles\.broken: .*no-such-model"):
        server.start()
    server.stop()


def test_choosing_a_profile() -> None:
    profiles = parse_profiles("p", PROFILES)
    assert choose(profiles, "default", {})[0] == profiles[0]
    assert choose(profiles, "missing", {})[0] == profiles[0]  # the first, if the default is gone
    assert choose((), "default", {})[0] is not None  # none configured: the built-in one
    assert "token" in choose(profiles, "default", {"agent": "secure", "token": "no"})[1]


@pytest.mark.models
def test_a_call_with_the_embedded_models(embedded: ServerThread) -> None:
    """Real telephone speech (an Asterisk prompt, 8 kHz) as the line carries it (μ-law):
    transcribed, answered with speech, the reply's sentences marked and heard."""
    (utterance,) = need(asterisk, ("vm-rec-name",))  # "After the tone say your name and ..."
    with CarrierClient(embedded.url("/twilio")) as call:
        greeting = call.wait_for("media", timeout=30)
        assert greeting.t - call.started_at < 0.3  # the greeting's speech goes first
        wait_until(lambda: len(call.echoed) >= 2, 30)  # "Hello!", "How can I help you today?"
        ended = call.stream(utterance.samples) + utterance.seconds
        reply = call.wait_for("media", after=ended, timeout=60)
        assert reply.t - ended < 5.0
        wait_until(lambda: len([r for r, _ in said(embedded) if r == "assistant"]) >= 2, 60)
        history = said(embedded)
        call.wait_quiet(0.5)
        marks = {m.data["mark"]["name"] for m in call.events("mark")}
        wait_until(lambda: marks <= set(call.echoed))  # the caller heard the reply to the end
        assert said(embedded) == history  # and history keeps all of it
    user = [text for role, text in history if role == "user"]
    assert len(user) == 1 and wer(utterance.text, user[0]) <= 0.2, user
