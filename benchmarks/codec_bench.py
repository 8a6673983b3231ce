"""Codec throughput: parse + encode per message type and for a typical mix.

Run ``python benchmarks/codec_bench.py [seconds-per-case]``. Prints numbers only; no assertions.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable

from harken.protocol.codec import encode_client, encode_server, parse_client, parse_server
from harken.protocol.messages import (
    AgentStartedSpeaking,
    ConversationText,
    Generation,
    History,
    ServerMessage,
)

GA = Generation.GA

SETTINGS_481 = {
    "experimental": True,
    "type": "Settings",
    "tags": ["capture", "local"],
    "audio": {
        "input": {"encoding": "linear16", "sample_rate": 24000},
        "output": {"encoding": "linear16", "sample_rate": 24000, "container": "none"},
    },
    "agent": {
        "language": "en",
        "listen": {"provider": {"type": "deepgram", "model": "nova-3", "keyterms": ["Deepgram"]}},
        "think": {
            "provider": {"type": "open_ai", "model": "gpt-4o-mini", "temperature": 0.7},
            "functions": [
                {
                    "name": "get_weather",
                    "description": "Get the weather for a city",
                    "parameters": {
                        "type": "object",
                        "properties": {"location": {"type": "string", "description": "City"}},
                        "required": ["location"],
                    },
                },
                {
                    "name": "lookup_order",
                    "description": "Look up an order",
                    "url": "",
                    "method": "",
                    "parameters": {
                        "type": "object",
                        "properties": {"order_id": {"type": "string", "description": "Order id"}},
                        "required": ["order_id"],
                    },
                    "endpoint": {
                        "method": "post",
                        "url": "https://example.invalid/orders",
                        "headers": {"authorization": "Bearer x"},
                    },
                },
            ],
            "prompt": "You are a friendly AI assistant.",
        },
        "speak": [
            {"provider": {"type": "deepgram", "model": "aura-2-thalia-en"}},
            {
                "provider": {"type": "open_ai", "model": "tts-1", "voice": "shimmer"},
                "endpoint": {
                    "method": "POST",
                    "url": "https://api.openai.com/v1/audio/speech",
                    "headers": {"authorization": "Bearer x"},
                },
            },
        ],
        "greeting": "Hello! How can I help you today?",
    },
    "mip_opt_out": False,
}

# client frames as the 4.8.1 SDK sends them (pretty-printed, except the function response)
CLIENT_FRAMES = {
    "Settings (4.8.1)": json.dumps(SETTINGS_481, indent=4),
    "KeepAlive": '{"type": "KeepAlive"}',
    "InjectUserMessage": json.dumps({"type": "InjectUserMessage", "content": "Hi there"}, indent=4),
    "FunctionCallResponse": json.dumps(
        {
            "type": "FunctionCallResponse",
            "id": "call_abc123",
            "name": "get_weather",
            "content": '{"temp_c": 21}',
        }
    ),
}
SERVER_MESSAGES: dict[str, ServerMessage] = {
    "ConversationText": ConversationText(role="assistant", content="Sure, one moment please."),
    "AgentStartedSpeaking": AgentStartedSpeaking(
        total_latency=1.06, tts_latency=0.31, ttt_latency=0.75
    ),
    "History": History(role="assistant", content="Sure, one moment please."),
}
# a plausible session minute: keepalives, a few turns, one function call, settings once
MIX = {
    "Settings (4.8.1)": 1,
    "KeepAlive": 12,
    "InjectUserMessage": 2,
    "FunctionCallResponse": 1,
    "ConversationText": 10,
    "AgentStartedSpeaking": 4,
    "History": 10,
}


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``fn`` over about ``seconds``."""
    calls, start = 0, time.perf_counter()
    batch = 100
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(batch):
            fn()
        calls += batch
    return calls / elapsed


def cases() -> dict[str, tuple[Callable[[], object], Callable[[], object]]]:
    """name -> (parse, encode) closures."""
    out: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {}
    for name, frame in CLIENT_FRAMES.items():
        message = parse_client(frame, GA).message
        out[name] = (
            lambda f=frame: parse_client(f, GA),
            lambda m=message: encode_client(m, GA),
        )
    for name, server_message in SERVER_MESSAGES.items():
        (text,) = encode_server(server_message, GA)
        out[name] = (
            lambda t=text: parse_server(t, GA),
            lambda m=server_message: encode_server(m, GA),
        )
    return out


def main(seconds: float = 0.5) -> None:
    table = cases()
    print(f"{'message':<24}{'parse µs':>10}{'encode µs':>11}{'parse+encode msg/s':>21}")
    both_us: dict[str, float] = {}
    for name, (parse, encode) in table.items():
        parse_us = 1e6 / rate(parse, seconds)
        encode_us = 1e6 / rate(encode, seconds)
        both_us[name] = parse_us + encode_us
        print(f"{name:<24}{parse_us:>10.2f}{encode_us:>11.2f}{1e6 / both_us[name]:>21,.0f}")
    count = sum(MIX.values())
    mix_us = sum(both_us[name] * n for name, n in MIX.items()) / count
    print(f"\nmix of {count} messages {MIX}")
    print(f"  {mix_us:.2f} µs per message (parse + encode), {1e6 / mix_us:,.0f} messages/second")


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 0.5)
