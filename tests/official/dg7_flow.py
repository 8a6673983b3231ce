"""deepgram-sdk 7.x (the current, Fern-generated client), sync, against harken's real models.

Usage: dg7_flow.py BASE_WS_URL PLAN.json

``BASE_WS_URL`` is harken's address without a path (``ws://127.0.0.1:PORT``): the SDK appends
``/v1/agent/converse`` to ``DeepgramClientEnvironment.agent`` itself. ``PLAN.json`` (written by
tests/test_official_sdk_live.py) holds the prompt, the function, the texts to inject and two
files of real recorded speech, linear16 mono at 16 kHz: ``spoken`` ends with the speaker's
silence (the server ends that turn by itself); ``forced`` stops at the last speech sample, the
flow sends ``ForceEndTurn`` right after it and no more audio (push-to-talk released).

The flow: Settings; an injected user turn answered with text and audio; a client-side function
call answered with FunctionCallResponse; a spoken turn; a turn ended by ForceEndTurn. The last
stdout line is a JSON report (see live_flow.py).
"""

from __future__ import annotations

import json
import sys
import threading
from importlib.metadata import version
from pathlib import Path
from typing import Any

from deepgram import (
    DeepgramClient,
    DeepgramClientEnvironment,
    SpeakSettingsV1,
    SpeakSettingsV1Provider_Deepgram,
    ThinkSettingsV1,
    ThinkSettingsV1FunctionsItem,
    ThinkSettingsV1Provider_OpenAi,
)
from deepgram.agent.v1 import (
    AgentV1InjectUserMessage,
    AgentV1KeepAlive,
    AgentV1SendFunctionCallResponse,
    AgentV1Settings,
    AgentV1SettingsAgent,
    AgentV1SettingsAgentListen,
    AgentV1SettingsAgentListenProvider_V1,
    AgentV1SettingsAudio,
    AgentV1SettingsAudioInput,
    AgentV1SettingsAudioOutput,
)
from live_flow import Log, Microphone

base = sys.argv[1]
plan: dict[str, Any] = json.loads(Path(sys.argv[2]).read_text())
timeout = float(plan["reply_timeout"])

http_base = base.replace("ws://", "http://", 1)
environment = DeepgramClientEnvironment(
    base=http_base, production=base, agent=base, agent_rest=http_base
)
client = DeepgramClient(api_key="harken-test-key", environment=environment)

settings = AgentV1Settings(
    audio=AgentV1SettingsAudio(
        input=AgentV1SettingsAudioInput(encoding="linear16", sample_rate=plan["input_rate"]),
        output=AgentV1SettingsAudioOutput(
            encoding="linear16", sample_rate=plan["output_rate"], container="none"
        ),
    ),
    agent=AgentV1SettingsAgent(
        listen=AgentV1SettingsAgentListen(
            provider=AgentV1SettingsAgentListenProvider_V1(model="nova-3")
        ),
        think=ThinkSettingsV1(
            provider=ThinkSettingsV1Provider_OpenAi(model="gpt-4o-mini"),
            prompt=plan["prompt"],
            functions=[ThinkSettingsV1FunctionsItem(**plan["function"])],
        ),
        speak=SpeakSettingsV1(provider=SpeakSettingsV1Provider_Deepgram(model="aura-2-thalia-en")),
    ),
)

log = Log(sdk=f"deepgram-sdk {version('deepgram-sdk')}")
steps = log.steps
classes: dict[str, str] = {}  # wire type -> the class the SDK parsed it into
receive_error: list[str] = []


def receive(conn: Any) -> None:
    """Iterate the connection as the SDK documents it: bytes, typed models, or plain dicts."""
    try:
        for message in conn:
            if isinstance(message, bytes):
                log.audio(len(message))
                continue
            if isinstance(message, dict):  # a type this SDK version does not know
                payload = message
                classes.setdefault(str(payload.get("type")), "dict")
            else:
                payload = message.dict()
                classes.setdefault(str(payload.get("type")), type(message).__name__)
            log.message(payload)
    except Exception as exc:  # reported: the pytest side fails on it
        receive_error.append(f"{type(exc).__name__}: {exc}")
    finally:
        log.closed()


log.mark("settings")  # before connecting: Welcome comes at once
with client.agent.v1.connect() as conn:
    receiver = threading.Thread(target=receive, args=(conn,), daemon=True)
    receiver.start()
    mic = Microphone(
        send_audio=conn.send_media,
        send_keep_alive=lambda: conn.send_keep_alive(AgentV1KeepAlive()),
        rate=plan["input_rate"],
    )

    steps["welcome"] = log.wait("Welcome")
    conn.send_settings(settings)
    steps["settings_applied"] = log.wait("SettingsApplied")
    mic.start()  # a microphone from here on: silence until there is speech to play

    log.mark("inject")
    conn.send_inject_user_message(AgentV1InjectUserMessage(content=plan["injected"]))
    # a function call here would be the model's mistake: stop waiting, the pytest side says so
    steps["inject_answered"] = log.wait_first(("AgentAudioDone", "FunctionCallRequest"), timeout)

    log.mark("function")
    conn.send_inject_user_message(AgentV1InjectUserMessage(content=plan["function_question"]))
    request = log.wait_message("FunctionCallRequest", timeout)
    steps["function_requested"] = request is not None
    log.mark("function_response")
    for call in (request or {}).get("functions", []):
        response = AgentV1SendFunctionCallResponse(
            id=call["id"], name=call["name"], content=json.dumps(plan["function_result"])
        )
        conn.send_function_call_response(response)
    steps["function_answered"] = log.wait("AgentAudioDone", timeout)

    log.mark("spoken")
    mic.play(Path(plan["spoken"]).read_bytes())
    steps["spoken_heard"] = log.wait_user_text(timeout)
    steps["spoken_answered"] = log.wait("AgentAudioDone", timeout)

    log.mark("forced")
    mic.fill_silence(False)  # push-to-talk: after the speech, only ForceEndTurn
    played = mic.play(Path(plan["forced"]).read_bytes())
    steps["forced_played"] = played.wait(60)
    log.stamp("speech_end")
    conn.send_force_end_turn()
    log.stamp("force_end_turn")
    steps["forced_heard"] = log.wait_user_text(timeout)
    steps["forced_answered"] = log.wait("AgentAudioDone", timeout)

    log.mark("end")
    mic.stop()
    steps["open_until_the_end"] = not log.is_closed()
# leaving the block closed the socket (code 1000); the receiving loop ends with it
receiver.join(10)
steps["receiver_ended"] = not receiver.is_alive()
log.report(classes=classes, receive_error=receive_error, mic_errors=mic.errors)
