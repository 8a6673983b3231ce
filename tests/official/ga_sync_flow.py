"""deepgram-sdk 4.8.1, sync client, full GA flow against harken. Usage: ga_sync_flow.py WS_URL"""

from __future__ import annotations

import json
import sys
from typing import Any

from deepgram import (
    AgentKeepAlive,
    AgentWebSocketEvents,
    DeepgramClient,
    DeepgramClientOptions,
    Endpoint,
    Function,
    FunctionCallResponse,
    InjectAgentMessageOptions,
    InjectUserMessageOptions,
    SettingsOptions,
    Speak,
    UpdatePromptOptions,
    UpdateSpeakOptions,
)
from recorder import Recorder

url = sys.argv[1]
rec = Recorder()
config = DeepgramClientOptions(
    api_key="dummy-api-key-for-local-test", options={"keepalive": "true"}
)
deepgram = DeepgramClient("", config)
conn = deepgram.agent.websocket.v("1")
conn._websocket_url = url

for event in AgentWebSocketEvents:
    conn.on(event, rec.handler(event.value))


def on_function_call(client: Any, function_call_request: Any, **kwargs: Any) -> None:
    for call in function_call_request.functions:
        args = json.loads(call.arguments)
        content = json.dumps({"location": args.get("location", "?"), "temp_c": 21})
        resp = FunctionCallResponse(id=call.id, name=call.name, content=content)
        client.send(resp.to_json())


conn.on(AgentWebSocketEvents.FunctionCallRequest, on_function_call)

options = SettingsOptions()
options.experimental = True
options.tags = ["capture", "local"]
options.audio.input.encoding = "linear16"
options.audio.input.sample_rate = 24000
options.audio.output.encoding = "linear16"
options.audio.output.sample_rate = 24000
options.audio.output.container = "none"
options.agent.language = "en"
options.agent.listen.provider.type = "deepgram"
options.agent.listen.provider.model = "nova-3"
options.agent.listen.provider.keyterms = ["Deepgram"]
options.agent.think.provider.type = "open_ai"
options.agent.think.provider.model = "gpt-4o-mini"
options.agent.think.provider.temperature = 0.7
options.agent.think.prompt = "You are a friendly AI assistant."
options.agent.think.functions = [
    Function(
        name="get_weather",
        description="Get the weather for a city",
        url="",
        method="",
        parameters={
            "type": "object",
            "properties": {"location": {"type": "string", "description": "City"}},
            "required": ["location"],
        },
    )
]
primary = Speak()
primary.provider.type = "deepgram"
primary.provider.model = "aura-2-thalia-en"
fallback = Speak()  # as captured in PROTOCOL.md 7.3: a hosted OpenAI fallback
fallback.provider.type = "open_ai"
fallback.provider.model = "tts-1"
fallback.provider.voice = "shimmer"
fallback.endpoint = Endpoint(
    url="https://api.openai.com/v1/audio/speech", headers={"authorization": "Bearer x"}
)
# harken serves OpenAI-compatible speech endpoints, so that fallback is kept; one on a vendor's
# own API (ElevenLabs) is not, and is dropped with a Warning instead of sinking the session
unservable = Speak()
unservable.provider.type = "eleven_labs"
unservable.provider.model = "eleven_turbo_v2_5"
unservable.endpoint = Endpoint(
    url="https://api.elevenlabs.io/v1/text-to-speech/voice", headers={"xi-api-key": "x"}
)
options.agent.speak = [primary, fallback, unservable]
options.agent.greeting = "Hello! How can I help you today?"

ok = conn.start(options)
steps: dict[str, bool] = {"started": ok}
steps["welcome"] = rec.wait("Welcome", "request_id")
steps["applied"] = rec.wait("SettingsApplied")
steps["fallback_dropped"] = rec.wait("Unhandled", "speak fallback 3")
for _ in range(3):
    conn.send(b"\x00" * 960)
steps["greeting"] = rec.wait("AgentAudioDone")
conn.send(str(UpdatePromptOptions(prompt="You are now a pirate.")))
steps["prompt_updated"] = rec.wait("Unhandled", "PromptUpdated")
new_voice = Speak()
new_voice.provider.type = "deepgram"
new_voice.provider.model = "aura-2-luna-en"
conn.send(str(UpdateSpeakOptions(speak=new_voice)))
steps["speak_updated"] = rec.wait("Unhandled", "SpeakUpdated")
conn.inject_user_message(InjectUserMessageOptions(content="What is the weather in Paris?"))
steps["function_call"] = rec.wait("FunctionCallRequest")
steps["reply_started"] = rec.wait("AgentStartedSpeaking")
steps["reply_done"] = rec.wait("AgentAudioDone", n=2)
# a long message: while its sentences are still being spoken, a second one is refused
long_message = " ".join(f"Sentence number {i} is here." for i in range(1, 30))
conn.inject_agent_message(InjectAgentMessageOptions(message=long_message))
steps["long_started"] = rec.wait("ConversationText", "Sentence number 1 ")
conn.inject_agent_message(InjectAgentMessageOptions(message="Still there?"))
steps["refused"] = rec.wait("InjectionRefused")
steps["injected_spoken"] = rec.wait("AgentAudioDone", n=3)
steps["keep_alive"] = conn.keep_alive()
steps["keep_alive_str"] = conn.send(str(AgentKeepAlive()))
conn.send(json.dumps({"type": "FunctionCallResponse", "id": "nope", "name": "x", "content": "y"}))
steps["warning"] = rec.wait("Unhandled", "UNKNOWN_FUNCTION_CALL_ID")
steps["still_connected"] = conn.is_connected()
steps["finished"] = conn.finish()
rec.report(steps=steps, audio=rec.count("AudioData"))
