"""deepgram-sdk 3.10.1 (early access), sync client, against harken's /agent. Usage: URL"""

from __future__ import annotations

import json
import sys
from typing import Any

from deepgram import (
    AgentKeepAlive,
    AgentWebSocketEvents,
    DeepgramClient,
    FunctionCallResponse,
    InjectAgentMessageOptions,
    SettingsConfigurationOptions,
    UpdateInstructionsOptions,
    UpdateSpeakOptions,
)
from recorder import Recorder

url = sys.argv[1]
rec = Recorder()
deepgram = DeepgramClient("dummy-api-key-for-local-test")
conn = deepgram.agent.websocket.v("1")
conn._websocket_url = url
for event in AgentWebSocketEvents:
    conn.on(event, rec.handler(event.value))


def on_function_call(client: Any, function_call_request: Any, **kwargs: Any) -> None:
    args = json.loads(function_call_request.input)  # harken sends input as a JSON string
    output = json.dumps({"location": args.get("location"), "temp_c": 18})
    call_id = function_call_request.function_call_id
    client.send(str(FunctionCallResponse(function_call_id=call_id, output=output)))


conn.on(AgentWebSocketEvents.FunctionCallRequest, on_function_call)

options = SettingsConfigurationOptions()
options.agent.listen.model = "nova-3"
options.agent.listen.keyterms = ["Deepgram"]
options.agent.think.provider.type = "open_ai"
options.agent.think.model = "gpt-4o-mini"
options.agent.think.instructions = "You are a helpful agent."
options.agent.think.functions = [
    {
        "name": "get_weather",
        "description": "Weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
    }
]
options.agent.speak.model = "aura-asteria-en"
options.context = {"messages": [{"role": "user", "content": "Hi"}], "replay": False}

steps: dict[str, bool] = {"started": conn.start(options)}
steps["welcome"] = rec.wait("Welcome", "session_id")
steps["applied"] = rec.wait("SettingsApplied")
conn.send(b"\x00" * 640)
conn.send(str(UpdateInstructionsOptions(instructions="Talk like a pirate.")))
steps["instructions_updated"] = rec.wait("Unhandled", "InstructionsUpdated")
conn.send(str(UpdateSpeakOptions(model="aura-luna-en")))
steps["speak_updated"] = rec.wait("Unhandled", "SpeakUpdated")
conn.send(str(InjectAgentMessageOptions(message="Ahoy there.")))
steps["spoken"] = rec.wait("AgentAudioDone")
steps["text"] = rec.wait("ConversationText", "Ahoy there.")
response = FunctionCallResponse(function_call_id="fc_abc123", output=json.dumps({"temp_c": 21}))
conn.send(str(response))
steps["unknown_call_warned"] = rec.wait("Unhandled", "fc_abc123")
# InjectUserMessage is GA-only on Deepgram; harken accepts it on /agent too (lenient)
conn.send(json.dumps({"type": "InjectUserMessage", "content": "What is the weather in Paris?"}))
steps["function_call"] = rec.wait("FunctionCallRequest", "get_weather")
steps["reply_after_call"] = rec.wait("ConversationText", "18", n=1)
steps["keep_alive"] = conn.send(str(AgentKeepAlive()))
steps["still_connected"] = conn.is_connected()
steps["finished"] = conn.finish()
rec.report(steps=steps, audio=rec.count("AudioData"))
