"""deepgram-sdk 4.8.1, async client, GA flow against harken. Usage: ga_async_flow.py WS_URL"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from deepgram import (
    AgentWebSocketEvents,
    DeepgramClient,
    FunctionCallResponse,
    InjectUserMessageOptions,
    SettingsOptions,
    UpdatePromptOptions,
)
from recorder import Recorder


async def main(url: str) -> None:
    rec = Recorder()
    deepgram = DeepgramClient("dummy-api-key-for-local-test")
    conn = deepgram.agent.asyncwebsocket.v("1")
    conn._websocket_url = url
    for event in AgentWebSocketEvents:
        conn.on(event, rec.async_handler(event.value))

    async def on_function_call(client: Any, function_call_request: Any, **kwargs: Any) -> None:
        for call in function_call_request.functions:
            resp = FunctionCallResponse(id=call.id, name=call.name, content='{"temp_c": 19}')
            await client.send(resp.to_json())

    conn.on(AgentWebSocketEvents.FunctionCallRequest, on_function_call)
    options = SettingsOptions()
    options.agent.think.provider.type = "open_ai"
    options.agent.think.provider.model = "gpt-4o-mini"
    options.agent.think.prompt = "You are helpful."
    options.agent.think.functions = [
        {
            "name": "get_weather",
            "description": "Weather",
            "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
        }
    ]
    options.agent.speak.provider.type = "deepgram"
    options.agent.speak.provider.model = "aura-2-thalia-en"
    steps: dict[str, bool] = {"started": await conn.start(options)}

    async def wait(name: str, contains: str = "", n: int = 1) -> bool:
        return await asyncio.to_thread(rec.wait, name, contains, n)

    steps["welcome"] = await wait("Welcome", "request_id")
    steps["applied"] = await wait("SettingsApplied")
    await conn.send(b"\x00" * 640)
    await conn.send(str(UpdatePromptOptions(prompt="Be brief.")))
    steps["prompt_updated"] = await wait("Unhandled", "PromptUpdated")
    await conn.inject_user_message(InjectUserMessageOptions(content="weather in Oslo please"))
    steps["function_call"] = await wait("FunctionCallRequest")
    steps["reply_done"] = await wait("AgentAudioDone")
    steps["keep_alive"] = await conn.keep_alive()
    await conn.send(json.dumps(options.to_dict() | {"type": "Settings"}))  # a second Settings
    steps["error"] = await wait("Error", "already applied")
    steps["closed"] = await wait("Close")
    await conn.finish()
    rec.report(steps=steps, audio=rec.count("AudioData"))


asyncio.run(main(sys.argv[1]))
