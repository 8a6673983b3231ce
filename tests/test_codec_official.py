"""Every server frame we encode, fed to the official SDK's own parser (``_process_text``).

4.8.1 (GA) and 3.10.1 (early access) live in their own virtualenvs (``make sdk-venvs``); the
test is skipped when they are missing. A frame the SDK cannot parse makes it emit ``Error``
(and close the connection), so no frame but our ``Error`` may produce that event.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from harken.protocol.codec import encode_server
from harken.protocol.messages import Generation
from test_codec_server import CASES

ROOT = Path(__file__).resolve().parents[1]
PROBE = """
import json, logging, sys
from deepgram import AgentWebSocketEvents, DeepgramClient
conn = DeepgramClient("key").agent.websocket.v("1")
conn._logger.setLevel(logging.CRITICAL)
conn._kwargs = {}
conn._signal_exit = lambda *args, **kwargs: None
events = []
for event in AgentWebSocketEvents.__members__.values():
    def record(client, *args, _event=str(event), **kwargs):
        events.append([_event, {k: str(v) for k, v in kwargs.items()}])
    conn.on(event, record)
out = []
for frame in json.load(sys.stdin):
    events.clear()
    conn._process_text(frame)
    out.append(list(events))
print(json.dumps(out))
"""
# server message types each SDK turns into an event of the same name (the rest are Unhandled)
KNOWN = {
    Generation.GA: {
        "Welcome",
        "SettingsApplied",
        "ConversationText",
        "UserStartedSpeaking",
        "AgentThinking",
        "FunctionCallRequest",
        "AgentStartedSpeaking",
        "AgentAudioDone",
        "InjectionRefused",
        "Error",
    },
    Generation.EA: {
        "Welcome",
        "SettingsApplied",
        "ConversationText",
        "UserStartedSpeaking",
        "AgentThinking",
        "FunctionCalling",
        "FunctionCallRequest",
        "AgentStartedSpeaking",
        "AgentAudioDone",
        "InjectionRefused",
        "Error",
    },
}
VENVS = {Generation.GA: ROOT / ".venv-dg4", Generation.EA: ROOT / ".venv-dg3"}


@pytest.mark.official
@pytest.mark.parametrize("generation", [Generation.GA, Generation.EA])
def test_official_sdk_parses_every_frame(generation: Generation) -> None:
    python = VENVS[generation] / "bin" / "python"
    if not python.exists():
        pytest.skip(f"{python} missing (make sdk-venvs)")
    frames = [frame for message, _, _ in CASES for frame in encode_server(message, generation)]
    result = subprocess.run(
        [str(python), "-c", PROBE],
        input=json.dumps(frames),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for frame, events in zip(frames, json.loads(result.stdout), strict=True):
        kind = json.loads(frame)["type"]
        assert len(events) == 1, (frame, events)
        name, payload = events[0]
        assert name == (kind if kind in KNOWN[generation] else "Unhandled"), (frame, events)
        if name == "Error":
            assert '"description": "bad"' in payload["error"]
