"""A scripted driver for the sans-I/O session in virtual time (no sockets, no clock)."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from harken.protocol import messages as m
from harken.protocol.settings import ListenConfig, SpeakConfig, ThinkConfig
from harken.session.effects import (
    CancelJob,
    CloseConnection,
    Effect,
    Job,
    ProviderEvent,
    SendAudio,
    SendMessage,
    StartJob,
)
from harken.session.session import Session, SessionLimits

T = TypeVar("T")

SETTINGS: dict[str, Any] = {
    "type": "Settings",
    "audio": {
        "input": {"encoding": "linear16", "sample_rate": 16000},
        "output": {"encoding": "linear16", "sample_rate": 24000, "container": "none"},
    },
    "agent": {
        "listen": {"provider": {"type": "deepgram", "model": "nova-3"}},
        "think": {
            "provider": {"type": "open_ai", "model": "gpt-4o-mini"},
            "prompt": "You are terse.",
            "functions": [
                {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "parameters": {
                        "type": "object",
                        "properties": {"location": {"type": "string"}},
                        "required": ["location"],
                    },
                },
                {
                    "name": "lookup_order",
                    "description": "Look up an order",
                    "parameters": {"type": "object", "properties": {}},
                    "endpoint": {"url": "https://orders.example.com/x", "method": "post"},
                },
            ],
        },
        "speak": {"provider": {"type": "deepgram", "model": "aura-2-thalia-en"}},
    },
}


class DenyModel:
    """A catalog that refuses one model name."""

    def __init__(self, bad: str) -> None:
        self.bad = bad

    def problem(self, part: ListenConfig | ThinkConfig | SpeakConfig) -> str | None:
        if part.provider.model == self.bad:
            return f"Unknown model {self.bad}; available: nova-3, gpt-4o-mini, aura-2-thalia-en"
        return None


class Script:
    def __init__(
        self,
        generation: m.Generation = m.Generation.GA,
        limits: SessionLimits | None = None,
        catalog: DenyModel | None = None,
    ) -> None:
        self.now = 0.0
        self.session = Session(
            generation=generation, request_id="req-1", now=0.0, limits=limits, catalog=catalog
        )
        self.log: list[Effect] = []

    # ------------------------------------------------------------------ driving
    def drain(self) -> list[Effect]:
        effects = self.session.effects()
        self.log.extend(effects)
        return effects

    def text(self, payload: dict[str, Any] | str) -> list[Effect]:
        raw = payload if isinstance(payload, str) else json.dumps(payload)
        self.session.receive_text(raw, self.now)
        return self.drain()

    def settings(self, **agent_overrides: Any) -> list[Effect]:
        settings = json.loads(json.dumps(SETTINGS))
        for key, value in agent_overrides.items():
            if value is None:
                settings["agent"].pop(key, None)
            else:
                settings["agent"][key] = value
        return self.text(settings)

    def audio(self, data: bytes = b"\0\0" * 320) -> list[Effect]:
        self.session.receive_audio(data, self.now)
        return self.drain()

    def provider(self, event: ProviderEvent) -> list[Effect]:
        self.session.receive_provider(event, self.now)
        return self.drain()

    def advance(self, seconds: float) -> list[Effect]:
        """Move virtual time forward, ticking at every deadline on the way."""
        end = self.now + seconds
        out: list[Effect] = []
        while True:
            deadline = self.session.next_deadline()
            if deadline is None or deadline > end:
                break
            self.now = max(self.now, deadline)
            self.session.tick(self.now)
            out.extend(self.drain())
        self.now = end
        return out


# ---------------------------------------------------------------------- reading effects
def messages(effects: list[Effect]) -> list[m.ServerMessage]:
    return [e.message for e in effects if isinstance(e, SendMessage)]


def types(effects: list[Effect]) -> list[str]:
    """Message types in order; audio shows as 'audio', jobs as 'start:kind', 'cancel', 'close'."""
    out = []
    for e in effects:
        if isinstance(e, SendMessage):
            out.append(e.message.type)
        elif isinstance(e, SendAudio):
            out.append("audio")
        elif isinstance(e, StartJob):
            out.append(f"start:{e.job.kind}")
        elif isinstance(e, CancelJob):
            out.append("cancel")
        elif isinstance(e, CloseConnection):
            out.append("close")
    return out


def jobs(effects: list[Effect], kind: type[T]) -> list[T]:
    return [e.job for e in effects if isinstance(e, StartJob) and isinstance(e.job, kind)]


def job(effects: list[Effect], kind: type[T]) -> T:
    found = jobs(effects, kind)
    assert len(found) == 1, f"expected one {kind.__name__}, got {found}"
    return found[0]


def one(effects: list[Effect], kind: type[T]) -> T:
    found = [x for x in messages(effects) if isinstance(x, kind)]
    assert len(found) == 1, f"expected one {kind.__name__}, got {found}"
    return found[0]


def started(effects: list[Effect]) -> list[Job]:
    return [e.job for e in effects if isinstance(e, StartJob)]
