"""deepgram-sdk 4.8.1 with agent.think.endpoint pointed at a chat-completions server.

Usage: URL CHAT_URL MODEL. Exactly what the README shows: only the URL of the socket and the
think endpoint change; the reply must come from the server behind CHAT_URL.
"""

from __future__ import annotations

import sys

from deepgram import (
    AgentWebSocketEvents,
    DeepgramClient,
    Endpoint,
    InjectUserMessageOptions,
    SettingsOptions,
)
from recorder import Recorder

rec = Recorder()
conn = DeepgramClient("dummy-api-key-for-local-test").agent.websocket.v("1")
conn._websocket_url = sys.argv[1]
for event in AgentWebSocketEvents:
    conn.on(event, rec.handler(event.value))
options = SettingsOptions()
options.agent.think.provider.type = "open_ai"
options.agent.think.provider.model = sys.argv[3]
options.agent.think.provider.temperature = 0
options.agent.think.prompt = "You are a friendly voice assistant. Answer in one short sentence."
options.agent.think.endpoint = Endpoint(
    url=sys.argv[2], headers={"authorization": "Bearer sk-local-test"}
)
steps: dict[str, bool] = {"started": conn.start(options)}
steps["applied"] = rec.wait("SettingsApplied")
conn.inject_user_message(InjectUserMessageOptions(content="What is the capital of France?"))
steps["answered"] = rec.wait("ConversationText", "assistant", timeout=60)
steps["spoken"] = rec.wait("AgentAudioDone", timeout=60)
steps["finished"] = conn.finish()
said = [p for n, p in rec.events if n == "ConversationText" and "assistant" in p]
rec.report(steps=steps, audio=rec.count("AudioData"), said=said)
