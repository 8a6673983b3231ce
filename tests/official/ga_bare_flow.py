"""deepgram-sdk 4.8.1 with a bare SettingsOptions() (server defaults). Usage: URL"""

from __future__ import annotations

import sys

from deepgram import (
    AgentWebSocketEvents,
    DeepgramClient,
    InjectAgentMessageOptions,
    SettingsOptions,
)
from recorder import Recorder

rec = Recorder()
conn = DeepgramClient("dummy-api-key-for-local-test").agent.websocket.v("1")
conn._websocket_url = sys.argv[1]
for event in AgentWebSocketEvents:
    conn.on(event, rec.handler(event.value))
steps: dict[str, bool] = {"started": conn.start(SettingsOptions())}
steps["applied"] = rec.wait("SettingsApplied")
conn.inject_agent_message(InjectAgentMessageOptions(message="Hello from the default voice."))
steps["spoken"] = rec.wait("AgentAudioDone")
steps["finished"] = conn.finish()
rec.report(steps=steps, audio=rec.count("AudioData"))
