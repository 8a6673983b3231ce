# ruff: noqa: E501  (the seed's examples are kept verbatim, long lines included)
"""Seed 003's usage examples, verbatim except ``from deepgram import`` → ``from harken import``.

Each example runs against the scripted GA agent (``HARKEN_URL`` points the SDK at it) and the
test checks what it did: the Settings on the wire, handlers firing with the flat-style aliases
(``welcome.message``, ``text_event.text``, ``request.function_call.name/.arguments``,
``refusal.message``), function call ids filled in, and the error paths.
``test_examples_are_verbatim`` checks the copies against the seed file when it is present.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harken import SettingsOptions

try:
    from test_client_fakeserver import FakeAgentServer
except ImportError:  # pragma: no cover - when tests/ is imported as a package
    from tests.test_client_fakeserver import FakeAgentServer

SEED = Path("/work/shared/seeds/003_6bb37ecd28c538f1.txt")
HEADINGS = [
    "Basic Conversational Agent",
    "Agent with Function Calling",
    "Dynamic Agent Updates",
    "Multi-Agent Conversation",
    "Error Handling and Recovery",
]

BASIC = """\
from harken import DeepgramClient, SettingsOptions, Agent, Listen, Speak, Think, Provider, AgentWebSocketEvents
import threading

client = DeepgramClient(api_key="your-api-key")

def on_open(self, open_event, **kwargs):
    print("Agent connection opened")

def on_welcome(self, welcome, **kwargs):
    print(f"Agent welcome: {welcome.message}")

def on_conversation_text(self, text_event, **kwargs):
    print(f"{text_event.role}: {text_event.text}")

def on_user_started_speaking(self, event, **kwargs):
    print("User started speaking")

def on_agent_thinking(self, event, **kwargs):
    print("Agent is thinking...")

def on_agent_started_speaking(self, event, **kwargs):
    print("Agent started speaking")

def on_agent_audio_done(self, event, **kwargs):
    print("Agent finished speaking")

def on_audio_data(self, audio_data, **kwargs):
    # Handle agent's speech audio
    # In a real application, you'd play this audio
    print(f"Received {len(audio_data)} bytes of audio")

def on_error(self, error, **kwargs):
    print(f"Agent error: {error}")

# Configure agent settings
agent_settings = SettingsOptions(
    agent=Agent(
        listen=Listen(
            model="nova-2",
            language="en-US",
            smart_format=True,
            encoding="linear16",
            sample_rate=16000,
            interim_results=True,
            vad_events=True
        ),
        think=Think(
            provider=Provider(type="open_ai"),
            model="gpt-4",
            instructions="You are a helpful AI assistant. Be conversational and friendly."
        ),
        speak=Speak(
            model="aura-asteria-en",
            encoding="linear16",
            sample_rate=24000
        )
    )
)

# Create connection
dg_connection = client.agent.websocket.v("1")

# Set up event handlers
dg_connection.on(AgentWebSocketEvents.Open, on_open)
dg_connection.on(AgentWebSocketEvents.Welcome, on_welcome)
dg_connection.on(AgentWebSocketEvents.ConversationText, on_conversation_text)
dg_connection.on(AgentWebSocketEvents.UserStartedSpeaking, on_user_started_speaking)
dg_connection.on(AgentWebSocketEvents.AgentThinking, on_agent_thinking)
dg_connection.on(AgentWebSocketEvents.AgentStartedSpeaking, on_agent_started_speaking)
dg_connection.on(AgentWebSocketEvents.AgentAudioDone, on_agent_audio_done)
dg_connection.on(AgentWebSocketEvents.AudioData, on_audio_data)
dg_connection.on(AgentWebSocketEvents.Error, on_error)

# Start connection
if dg_connection.start(agent_settings):
    print("Agent connection started")

    # Send audio data (typically from microphone)
    # audio_data = get_microphone_data()
    # dg_connection.send_audio(audio_data)

    # Keep connection alive
    # dg_connection.keep_alive()

    # Close when done
    dg_connection.close()
"""


FUNCTION_CALLING = '''\
from harken import (
    DeepgramClient, SettingsOptions, Agent, Think, Provider, Function,
    Parameters, Properties, FunctionCallResponse, AgentWebSocketEvents
)
import json

client = DeepgramClient(api_key="your-api-key")

def on_function_call_request(self, request, **kwargs):
    """Handle function call requests from the agent"""
    print(f"Function call: {request.function_call.name}")
    print(f"Arguments: {request.function_call.arguments}")

    # Execute the function based on name
    if request.function_call.name == "get_weather":
        location = request.function_call.arguments.get("location")
        weather_data = get_weather(location)  # Your weather function

        # Send response back to agent
        response = FunctionCallResponse(
            name=request.function_call.name,
            result=json.dumps(weather_data)
        )
        dg_connection.send_function_call_response(response)

    elif request.function_call.name == "set_reminder":
        reminder = request.function_call.arguments.get("reminder")
        time = request.function_call.arguments.get("time")
        result = set_reminder(reminder, time)  # Your reminder function

        response = FunctionCallResponse(
            name=request.function_call.name,
            result=json.dumps({"success": result})
        )
        dg_connection.send_function_call_response(response)

def get_weather(location):
    """Mock weather function"""
    return {
        "location": location,
        "temperature": 72,
        "condition": "sunny",
        "humidity": 45
    }

def set_reminder(reminder, time):
    """Mock reminder function"""
    print(f"Setting reminder: {reminder} at {time}")
    return True

# Define available functions
weather_function = Function(
    name="get_weather",
    description="Get current weather information for a location",
    parameters=Parameters(
        type="object",
        properties={
            "location": {"type": "string", "description": "City name or location"}
        },
        required=["location"]
    )
)

reminder_function = Function(
    name="set_reminder",
    description="Set a reminder for the user",
    parameters=Parameters(
        type="object",
        properties={
            "reminder": {"type": "string", "description": "Reminder text"},
            "time": {"type": "string", "description": "Time for the reminder"}
        },
        required=["reminder", "time"]
    )
)

# Configure agent with functions
agent_settings = SettingsOptions(
    agent=Agent(
        think=Think(
            provider=Provider(type="open_ai"),
            model="gpt-4",
            instructions="You are a helpful assistant with access to weather and reminder functions. Use them when appropriate.",
            functions=[weather_function, reminder_function]
        )
        # ... other agent configuration
    )
)

dg_connection = client.agent.websocket.v("1")
dg_connection.on(AgentWebSocketEvents.FunctionCallRequest, on_function_call_request)

if dg_connection.start(agent_settings):
    # Agent can now call functions during conversation
    pass
'''


DYNAMIC_UPDATES = """\
from harken import (
    DeepgramClient, UpdatePromptOptions, UpdateSpeakOptions,
    InjectAgentMessageOptions, InjectUserMessageOptions, Speak
)

client = DeepgramClient(api_key="your-api-key")
dg_connection = client.agent.websocket.v("1")

# Start with initial settings
if dg_connection.start(initial_settings):

    # Update the agent's personality/instructions
    new_prompt = UpdatePromptOptions(
        prompt="You are now a cheerful children's storyteller. Use simple language and be very enthusiastic."
    )
    dg_connection.update_prompt(new_prompt)

    # Change the voice model
    new_speak_options = UpdateSpeakOptions(
        speak=Speak(
            model="aura-luna-en",  # Different voice
            encoding="linear16",
            sample_rate=24000
        )
    )
    dg_connection.update_speak_options(new_speak_options)

    # Inject context into the conversation
    agent_message = InjectAgentMessageOptions(
        text="I just switched to storytelling mode! What kind of story would you like to hear?"
    )
    dg_connection.inject_agent_message(agent_message)

    # Inject user context
    user_message = InjectUserMessageOptions(
        text="The user mentioned they like adventure stories about pirates."
    )
    dg_connection.inject_user_message(user_message)
"""


MULTI_AGENT = '''\
from harken import DeepgramClient, SettingsOptions, Agent, Think, Provider
import asyncio

async def create_agent(client, agent_id, instructions):
    """Create and configure an agent"""
    settings = SettingsOptions(
        agent=Agent(
            think=Think(
                provider=Provider(type="open_ai"),
                model="gpt-4",
                instructions=f"Agent {agent_id}: {instructions}"
            )
            # ... other configuration
        )
    )

    connection = client.agent.asyncwebsocket.v("1")
    await connection.start(settings)
    return connection

async def multi_agent_example():
    client = DeepgramClient(api_key="your-api-key")

    # Create multiple agents with different roles
    moderator = await create_agent(
        client, "Moderator",
        "You are a meeting moderator. Keep discussions on track and summarize key points."
    )

    expert1 = await create_agent(
        client, "Expert1",
        "You are a technical expert. Provide detailed technical insights."
    )

    expert2 = await create_agent(
        client, "Expert2",
        "You are a business expert. Focus on practical business implications."
    )

    # Coordinate conversation between agents
    # This would involve managing turn-taking and message passing
    # between the different agent connections

    # Close connections when done
    await moderator.close()
    await expert1.close()
    await expert2.close()

# Run multi-agent example
asyncio.run(multi_agent_example())
'''


ERROR_HANDLING = '''\
from harken import DeepgramClient, DeepgramApiError, SettingsOptions, AgentWebSocketEvents

client = DeepgramClient(api_key="your-api-key")

def on_error(self, error, **kwargs):
    """Handle various error types"""
    print(f"Agent error: {error}")

    # Implement error-specific recovery logic
    if "connection" in str(error).lower():
        print("Connection error - attempting to reconnect...")
        # Implement reconnection logic
    elif "authentication" in str(error).lower():
        print("Authentication error - check API key")
    else:
        print("Unknown error - logging for investigation")

def on_injection_refused(self, refusal, **kwargs):
    """Handle message injection refusals"""
    print(f"Message injection refused: {refusal.message}")
    # Implement fallback logic

try:
    settings = SettingsOptions(
        # ... agent configuration
    )

    dg_connection = client.agent.websocket.v("1")
    dg_connection.on(AgentWebSocketEvents.Error, on_error)
    dg_connection.on(AgentWebSocketEvents.InjectionRefused, on_injection_refused)

    if dg_connection.start(settings):
        # Connection successful
        print("Agent started successfully")

        # Implement connection health monitoring
        # dg_connection.keep_alive()  # Send periodically

    else:
        print("Failed to start agent connection")

except DeepgramApiError as e:
    print(f"API Error: {e}")
except Exception as e:
    print(f"Unexpected error: {e}")
finally:
    if 'dg_connection' in locals():
        dg_connection.close()
'''


EXAMPLES = [BASIC, FUNCTION_CALLING, DYNAMIC_UPDATES, MULTI_AGENT, ERROR_HANDLING]


class Printed:
    """Stands in for ``print`` inside an example (handlers print from other threads)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.cond = threading.Condition()

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        with self.cond:
            self.lines.append(" ".join(str(a) for a in args))
            self.cond.notify_all()

    def wait_for(self, line: str, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while line not in self.lines:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"never printed {line!r}; printed {self.lines}")
                self.cond.wait(left)


def run(example: str, **predefined: Any) -> tuple[dict[str, Any], Printed]:
    printed = Printed()
    namespace: dict[str, Any] = {"__name__": "seed_example", "print": printed, **predefined}
    exec(compile(example, "<seed 003 example>", "exec"), namespace)
    return namespace, printed


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAgentServer]:
    with FakeAgentServer() as srv:
        monkeypatch.setenv("HARKEN_URL", srv.url)
        yield srv


def test_examples_are_verbatim() -> None:
    if not SEED.exists():
        pytest.skip("seed 003 is not available")
    text = SEED.read_text()
    body = text[text.index("Usage Examples") : text.index("Install with Tessl CLI")]
    for k, heading in enumerate(HEADINGS):
        start = body.index(heading) + len(heading)
        end = body.index(HEADINGS[k + 1]) if k + 1 < len(HEADINGS) else len(body)
        code = "\n".join(line.rstrip() for line in body[start:end].strip("\n").splitlines())
        assert code.replace("from deepgram import", "from harken import") + "\n" == EXAMPLES[k]


def test_basic_conversational_agent(server: FakeAgentServer) -> None:
    ns, printed = run(BASIC)
    assert printed.lines[:1] == ["Agent connection opened"]
    assert "Agent connection started" in printed.lines
    wire = server.connection()
    assert wire.closed.wait(5) and wire.close_code == 1000
    [settings] = wire.messages("Settings")
    assert settings["audio"]["input"] == {"encoding": "linear16", "sample_rate": 16000}
    assert settings["audio"]["output"] == {
        "encoding": "linear16",
        "sample_rate": 24000,
        "container": "none",
    }
    assert settings["agent"]["listen"] == {
        "provider": {
            "type": "deepgram",
            "model": "nova-2",
            "language": "en-US",
            "smart_format": True,
        }
    }
    assert settings["agent"]["think"] == {
        "provider": {"type": "open_ai", "model": "gpt-4"},
        "prompt": "You are a helpful AI assistant. Be conversational and friendly.",
    }
    assert settings["agent"]["speak"] == {
        "provider": {"type": "deepgram", "model": "aura-asteria-en"}
    }

    # the example closes at once; drive a whole turn through its own handlers
    connection = ns["client"].agent.websocket.v("1")
    events = ns["AgentWebSocketEvents"]
    for event, handler in [
        (events.Welcome, "on_welcome"),
        (events.ConversationText, "on_conversation_text"),
        (events.UserStartedSpeaking, "on_user_started_speaking"),
        (events.AgentStartedSpeaking, "on_agent_started_speaking"),
        (events.AgentAudioDone, "on_agent_audio_done"),
        (events.AudioData, "on_audio_data"),
        (events.Error, "on_error"),
    ]:
        connection.on(event, ns[handler])
    assert connection.start(ns["agent_settings"])
    printed.wait_for("Agent welcome: req-0001")
    connection.inject_user_message("hello")
    printed.wait_for("Agent finished speaking")
    connection.close()
    for line in [
        "User started speaking",
        "user: hello",
        "assistant: You said: hello",
        "Agent started speaking",
        "Received 960 bytes of audio",
    ]:
        assert line in printed.lines
    assert not any(line.startswith("Agent error") for line in printed.lines)


def test_function_calling(server: FakeAgentServer) -> None:
    ns, printed = run(FUNCTION_CALLING)
    connection = ns["dg_connection"]
    wire = server.connection()
    [settings] = wire.wait_for("Settings")
    functions = settings["agent"]["think"]["functions"]
    assert [f["name"] for f in functions] == ["get_weather", "set_reminder"]
    assert all("url" not in f and "method" not in f and "endpoint" not in f for f in functions)
    assert functions[0]["parameters"]["properties"]["location"]["type"] == "string"

    connection.inject_user_message("what's the weather?")
    [weather] = wire.wait_for("FunctionCallResponse")
    assert weather["id"] == "call_weather_1" and weather["name"] == "get_weather"
    assert json.loads(weather["content"]) == {
        "location": "Paris",
        "temperature": 72,
        "condition": "sunny",
        "humidity": 45,
    }
    assert "Function call: get_weather" in printed.lines
    assert "Arguments: {'location': 'Paris'}" in printed.lines

    connection.inject_user_message("remind me to buy milk")
    reminder = wire.wait_for("FunctionCallResponse", 2)[1]
    assert reminder["id"] == "call_reminder_1"
    assert json.loads(reminder["content"]) == {"success": True}
    assert "Setting reminder: buy milk at 5pm" in printed.lines
    connection.close()


def test_dynamic_agent_updates(server: FakeAgentServer) -> None:
    ns, _ = run(DYNAMIC_UPDATES, initial_settings=SettingsOptions())
    wire = server.connection()
    assert wire.wait_for("UpdatePrompt")[0]["prompt"].startswith("You are now a cheerful")
    assert wire.wait_for("UpdateSpeak")[0] == {
        "type": "UpdateSpeak",
        "speak": {"provider": {"type": "deepgram", "model": "aura-luna-en"}},
    }
    assert wire.wait_for("InjectAgentMessage")[0]["message"].startswith("I just switched")
    assert wire.wait_for("InjectUserMessage")[0]["content"].startswith("The user mentioned")
    ns["dg_connection"].close()
    assert wire.closed.wait(5) and wire.close_code == 1000


def test_multi_agent_conversation(server: FakeAgentServer) -> None:
    run(MULTI_AGENT)
    prompts = []
    for i in range(3):
        wire = server.connection(i)
        assert wire.closed.wait(5) and wire.close_code == 1000
        [settings] = wire.messages("Settings")
        prompts.append(settings["agent"]["think"]["prompt"])
    assert sorted(p.split(":")[0] for p in prompts) == [
        "Agent Expert1",
        "Agent Expert2",
        "Agent Moderator",
    ]


def _error_example(printed_check: Callable[[Printed], None]) -> dict[str, Any]:
    ns, printed = run(ERROR_HANDLING)
    printed_check(printed)
    return ns


def test_error_handling_success_and_injection_refused(server: FakeAgentServer) -> None:
    ns = _error_example(lambda p: p.wait_for("Agent started successfully"))
    wire = server.connection()
    assert wire.closed.wait(5) and wire.messages("Settings")
    # the refusal handler, on a connection that stays open long enough to be refused
    connection = ns["client"].agent.websocket.v("1")
    printed = Printed()
    ns["print"] = printed
    connection.on(ns["AgentWebSocketEvents"].InjectionRefused, ns["on_injection_refused"])
    connection.on(ns["AgentWebSocketEvents"].Error, ns["on_error"])
    assert connection.start(ns["settings"])
    assert connection.inject_agent_message("please refuse")
    printed.wait_for("Message injection refused: The agent is speaking.")
    connection.close()
    assert printed.lines == ["Message injection refused: The agent is speaking."]


def test_error_handling_bad_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeAgentServer(api_key="the-real-key") as server:
        monkeypatch.setenv("HARKEN_URL", server.url)

        def check(printed: Printed) -> None:
            assert printed.lines[1:] == [
                "Authentication error - check API key",
                "Failed to start agent connection",
            ]
            assert printed.lines[0].startswith("Agent error: ")
            assert "rejected the credentials" in printed.lines[0]

        _error_example(check)
        assert server.rejected == 1


def test_error_handling_unreachable_server(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeAgentServer() as server:
        url = server.url
    monkeypatch.setenv("HARKEN_URL", url)

    def check(printed: Printed) -> None:
        assert printed.lines[1:] == [
            "Connection error - attempting to reconnect...",
            "Failed to start agent connection",
        ]

    _error_example(check)
