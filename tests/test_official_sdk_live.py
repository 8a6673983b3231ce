"""The official SDKs people install today, against harken with the real embedded models.

``deepgram-sdk`` 7.x (Python, in ``.venv-dg7``) and ``@deepgram/sdk`` 5.x (JavaScript, on Node,
in ``tests/official/js/node_modules``), both from ``make sdk-venvs``, point at harken by URL
only (PROTOCOL.md section 10) and run one conversation each, as a subprocess that prints a JSON
report (``tests/official/dg7_flow.py``, ``tests/official/js/agent_flow.mjs``):

1. ``Settings`` → ``SettingsApplied``;
2. an injected user turn (``InjectUserMessage``) answered with text and audio;
3. a client-side function call answered with ``FunctionCallResponse``, then the spoken answer;
4. a spoken turn: real recorded speech streamed in real time, ended by the server's own end of
   turn (the client keeps streaming silence, as a microphone does);
5. a turn ended by ``ForceEndTurn``, sent right after the last speech sample; no audio follows
   it, so the server's silence-based end of turn cannot be what ends this turn.

The JavaScript SDK reconnects on any close code but 1000 and does not resend Settings: its
driver asks for ``reconnectAttempts: 0`` and reports how many times it opened and how it
closed, and it also checks the ``baseUrl`` recipe with a second, short session.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import ServerThread
from speech import RATE, Utterance, need, utterances, wer
from voice_client import acoustic_span

pytestmark = [
    pytest.mark.models,
    pytest.mark.loopback,
    pytest.mark.official,
    pytest.mark.timeout(420),
]

ROOT = Path(__file__).resolve().parent.parent
DRIVERS = Path(__file__).resolve().parent / "official"
JS = DRIVERS / "js"

PROMPT = (
    "You are a friendly voice assistant. Answer in one short sentence. "
    "Call get_weather only when the user asks about the weather."
)
WEATHER: dict[str, Any] = {
    "name": "get_weather",
    "description": "Get the current weather for a city.",
    "parameters": {
        "type": "object",
        "properties": {"location": {"type": "string", "description": "The city"}},
        "required": ["location"],
    },
}
INJECTED = "What is two plus two?"
FUNCTION_QUESTION = "What is the weather in Paris?"
FUNCTION_RESULT = {"location": "Paris", "conditions": "sunny", "temperature_c": 18}
REPLY_TIMEOUT = 90.0  # seconds for one reply on a shared two-core machine
OUTPUT_RATE = 24000
SPOKEN = "0930"  # "he might even have been made amiable himself"
FORCED = "goforward"  # "go forward ten meters"


# ----------------------------------------------------------------------------- the plan


def pcm(samples: np.ndarray[Any, Any]) -> bytes:
    return np.asarray(samples, dtype="<i2").tobytes()


@pytest.fixture(scope="module")
def speech() -> dict[str, Utterance]:
    return {u.name: u for u in need(utterances)}


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory, speech: dict[str, Utterance]) -> Path:
    """What both drivers do, as JSON, with the two recordings as raw linear16 at 16 kHz."""
    folder = tmp_path_factory.mktemp("official-live")
    silence = np.zeros(int(0.5 * RATE), dtype=np.int16)
    spoken = speech[SPOKEN].samples  # its own trailing room noise, then the client's silence
    forced = speech[FORCED].samples
    end = acoustic_span(forced).end  # the last speech sample: ForceEndTurn goes right after
    (folder / "spoken.raw").write_bytes(pcm(np.concatenate((silence, spoken))))
    (folder / "forced.raw").write_bytes(pcm(np.concatenate((silence, forced[:end]))))
    path = folder / "plan.json"
    path.write_text(
        json.dumps(
            {
                "prompt": PROMPT,
                "function": WEATHER,
                "injected": INJECTED,
                "function_question": FUNCTION_QUESTION,
                "function_result": FUNCTION_RESULT,
                "spoken": str(folder / "spoken.raw"),
                "forced": str(folder / "forced.raw"),
                "input_rate": RATE,
                "output_rate": OUTPUT_RATE,
                "reply_timeout": REPLY_TIMEOUT,
            }
        )
    )
    return path


def base_url(server: ServerThread) -> str:
    """harken's address as the SDKs take it: no path (they add ``/v1/agent/converse``)."""
    return f"ws://127.0.0.1:{server.port}"


def run_driver(command: list[str], cwd: Path) -> dict[str, Any]:
    proc = subprocess.run(
        command,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=360,
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0 and lines, (proc.returncode, proc.stderr[-3000:])
    try:
        report: dict[str, Any] = json.loads(lines[-1])
    except json.JSONDecodeError:
        pytest.fail(f"no JSON report: {proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    report["stderr"] = proc.stderr
    return report


# ----------------------------------------------------------------------------- checks


def phase(report: dict[str, Any], start: str, end: str) -> list[dict[str, Any]]:
    marks = report["marks"]
    return list(report["events"][marks[start] : marks[end]])


def timeline(events: list[dict[str, Any]]) -> list[str]:
    """Event types, with texts and audio sizes (for assertion messages)."""
    out = []
    for event in events:
        if event["type"] == "audio":
            out.append(f"{event['t']:.2f} audio {event['bytes']} B")
        elif event["type"] == "ConversationText":
            message = event["msg"]
            out.append(f"{event['t']:.2f} CT({message['role']}: {message['content'][:50]})")
        else:
            out.append(f"{event['t']:.2f} {event['type']}")
    return out


def index(events: list[dict[str, Any]], kind: str, role: str | None = None) -> int:
    for i, event in enumerate(events):
        if event["type"] == kind and (role is None or event["msg"].get("role") == role):
            return i
    raise AssertionError(f"no {kind} {role or ''} in {timeline(events)}")


def texts(events: list[dict[str, Any]], role: str) -> list[str]:
    return [
        e["msg"]["content"]
        for e in events
        if e["type"] == "ConversationText" and e["msg"].get("role") == role
    ]


def audio_bytes(events: list[dict[str, Any]]) -> int:
    return sum(e["bytes"] for e in events if e["type"] == "audio")


def spoken_reply(events: list[dict[str, Any]], after: int) -> None:
    """From ``after`` on: the agent's text, then its audio (≥ 0.3 s), then AgentAudioDone."""
    shown = timeline(events)
    rest = events[after:]
    answer = index(rest, "ConversationText", "assistant")
    started = index(rest, "AgentStartedSpeaking")
    audio = index(rest, "audio")
    done = index(rest, "AgentAudioDone")
    assert answer < audio < done and started < audio, shown
    assert audio_bytes(rest[:done]) >= OUTPUT_RATE * 2 * 0.3, shown


def check_flow(report: dict[str, Any], speech: dict[str, Utterance]) -> None:
    """The five parts of the conversation, the same for every SDK."""
    failed = [name for name, ok in report["steps"].items() if not ok]
    events = report["events"]
    assert failed == [], (failed, timeline(events), report["stderr"][-2000:])
    problems = [e["msg"] for e in events if e["type"] in ("Error", "Warning")]
    assert [p for p in problems if p.get("code") != "SLOW_THINK_REQUEST"] == [], problems

    # 1. Settings
    settings = phase(report, "settings", "inject")
    assert [e["type"] for e in settings] == ["Welcome", "SettingsApplied"], timeline(settings)

    # 2. an injected user turn, answered with text and audio
    injected = phase(report, "inject", "function")
    assert texts(injected, "user") == [INJECTED], timeline(injected)
    spoken_reply(injected, index(injected, "ConversationText", "user"))
    assert "FunctionCallRequest" not in [e["type"] for e in injected], timeline(injected)
    answer = " ".join(texts(injected, "assistant")).lower()
    assert re.search(r"\bfour\b|\b4\b", answer), timeline(injected)

    # 3. a client-side function call, answered with FunctionCallResponse
    asked = phase(report, "function", "function_response")
    request = asked[index(asked, "FunctionCallRequest")]["msg"]
    calls = request["functions"]
    assert len(calls) == 1 and calls[0]["name"] == "get_weather", calls
    assert calls[0]["client_side"] is True and calls[0]["id"], calls
    assert "paris" in str(json.loads(calls[0]["arguments"]).get("location", "")).lower(), calls
    answered = phase(report, "function_response", "spoken")
    spoken_reply(answered, 0)
    answer = " ".join(texts(answered, "assistant")).lower()
    assert re.search(r"sunny|\b18\b|eighteen", answer), timeline(answered)

    # 4. a spoken turn, ended by the server's end of turn
    spoken = phase(report, "spoken", "forced")
    heard = texts(spoken, "user")
    assert len(heard) == 1, timeline(spoken)
    assert wer(speech[SPOKEN].text, heard[0]) <= 0.20, heard
    said = index(spoken, "ConversationText", "user")
    assert index(spoken, "UserStartedSpeaking") < said, timeline(spoken)
    spoken_reply(spoken, said)

    # 5. ForceEndTurn right after the speech, with no silence after it
    forced = phase(report, "forced", "end")
    heard = texts(forced, "user")
    assert len(heard) == 1, timeline(forced)
    assert wer(speech[FORCED].text, heard[0]) <= 0.25, heard
    said = index(forced, "ConversationText", "user")
    assert index(forced, "UserStartedSpeaking") < said, timeline(forced)
    # the turn ended when the client said so, not before
    sent = report["stamps"]["force_end_turn"]
    assert forced[said]["t"] >= sent, (sent, timeline(forced))
    spoken_reply(forced, said)
    if "AgentThinking" in [e["type"] for e in forced]:
        assert said < index(forced, "AgentThinking"), timeline(forced)
    assert report["mic_errors"] == [], report["mic_errors"]


# ----------------------------------------------------------------------------- the SDKs


def test_deepgram_sdk_7_python(
    embedded: ServerThread, plan: Path, speech: dict[str, Utterance]
) -> None:
    python = ROOT / ".venv-dg7" / "bin" / "python"
    if not python.exists():
        pytest.fail(".venv-dg7 is missing: run `make sdk-venvs` (make test does)")
    report = run_driver(
        [str(python), str(DRIVERS / "dg7_flow.py"), base_url(embedded), str(plan)], DRIVERS
    )
    assert report["sdk"].startswith("deepgram-sdk 7."), report["sdk"]
    check_flow(report, speech)
    assert report["receive_error"] == [], report["receive_error"]
    # every message came back as the SDK's own class, not as an unknown dict
    classes = report["classes"]
    assert [kind for kind, name in classes.items() if name == "dict"] == [], classes
    assert classes["ConversationText"] == "AgentV1ConversationText", classes
    assert classes["FunctionCallRequest"] == "AgentV1FunctionCallRequest", classes
    assert "Traceback" not in report["stderr"], report["stderr"][-3000:]


def test_deepgram_js_sdk_5_node(
    embedded: ServerThread, plan: Path, speech: dict[str, Utterance]
) -> None:
    node = shutil.which("node")
    if node is None or not (JS / "node_modules" / "@deepgram" / "sdk").is_dir():
        pytest.fail("node or tests/official/js/node_modules is missing: run `make sdk-venvs`")
    report = run_driver([node, "agent_flow.mjs", base_url(embedded), str(plan)], JS)
    assert report["sdk"].startswith("@deepgram/sdk 5."), report["sdk"]
    check_flow(report, speech)
    # one connection each, closed cleanly with 1000, no reconnect, no socket error
    for connection in (report["connection"], report["base_url_connection"]):
        assert connection == {"opens": 1, "closes": [1000], "errors": []}, connection
    assert "Error" not in report["stderr"], report["stderr"][-3000:]
