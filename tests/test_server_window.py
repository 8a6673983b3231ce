"""A prompt within the session's size limit that does not fit the embedded LLM's window (issue
15): the client is told at once, with Deepgram's code, and each turn fails cleanly."""

from __future__ import annotations

import json

import pytest

from conftest import SETTINGS, ServerThread, open_ws, recv_json, recv_until

pytestmark = [pytest.mark.models, pytest.mark.loopback, pytest.mark.timeout(300)]


def test_a_prompt_too_long_for_the_window_is_told_at_settings(embedded: ServerThread) -> None:
    settings = json.loads(json.dumps(SETTINGS))
    prompt = "You are helpful. " * 1400  # 23,800 characters: under 25,000, ~5,600 tokens
    settings["agent"]["think"]["prompt"] = prompt
    with open_ws(embedded) as ws:
        assert recv_json(ws)["type"] == "Welcome"
        ws.send(json.dumps(settings))
        seen = recv_until(ws, "Warning", timeout=60)
        assert "SettingsApplied" in [m["type"] for m in seen]
        warning = seen[-1]
        assert warning["code"] == "PROMPT_TOO_LONG", warning
        assert "4096-token window" in warning["description"], warning
        ws.send(json.dumps({"type": "InjectUserMessage", "content": "Hello?"}))
        error = recv_until(ws, "Error", timeout=60)[-1]
        assert error["code"] == "FAILED_TO_THINK" and "does not fit" in error["description"]
        ws.send(json.dumps({"type": "UpdatePrompt", "prompt": "Be brief."}))  # still too long
        assert recv_until(ws, "PromptUpdated", timeout=10)
        ws.send(json.dumps({"type": "KeepAlive"}))
    with open_ws(embedded) as ws:  # the server and the model are fine for the next session
        assert recv_json(ws)["type"] == "Welcome"
        settings["agent"]["think"]["prompt"] = "You are a terse assistant."
        ws.send(json.dumps(settings))
        recv_until(ws, "SettingsApplied", timeout=60)
        ws.send(json.dumps({"type": "InjectUserMessage", "content": "Say hello."}))
        recv_until(ws, "AgentAudioDone", timeout=120)
