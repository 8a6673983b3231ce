"""Phone calls' agent profiles: which agent answers a call, checked when the config loads.

A carrier's media stream (``/twilio``, ``/telnyx``) carries no Settings: the agent that answers
is a named *profile* from the server config, chosen by the stream's ``agent`` custom parameter
(``<Parameter name="agent" value="support"/>``), else ``phone_default_profile``. A profile is
the ``agent`` object of a Settings message (listen, think with its prompt and functions, speak,
greeting; what it leaves out comes from :data:`DEFAULT_AGENT`), plus an optional ``token`` the
stream must carry as its ``token`` custom parameter. The call's audio format is the phone's
(μ-law at 8 kHz both ways), whatever the profile says.

A phone call has no client to run a function, so every function of a profile must be
server-side (have an ``endpoint``); a client-side one is refused here, at config load.

In TOML::

    [phone_profiles.support]
    token = "s3cret"
    agent = { greeting = "Hello, support here.", think = { prompt = "...",
              provider = { type = "open_ai", model = "gpt-4o-mini" } } }
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from harken.errors import ConfigError, RemoteProtocolError
from harken.protocol.codec import parse_client
from harken.protocol.messages import Generation, Settings
from harken.session.session import Catalog

PHONE_AUDIO: Final = {
    "input": {"encoding": "mulaw", "sample_rate": 8000},
    "output": {"encoding": "mulaw", "sample_rate": 8000, "container": "none"},
}
DEFAULT_AGENT: Final[dict[str, Any]] = {
    "listen": {"provider": {"type": "deepgram", "model": "nova-3"}},
    "think": {
        "provider": {"type": "open_ai", "model": "gpt-4o-mini"},
        "prompt": "You are a friendly voice assistant answering a phone call. Answer in one or "
        "two short spoken sentences, without lists or markdown.",
    },
    "speak": {"provider": {"type": "deepgram", "model": "aura-2-thalia-en"}},
    "greeting": "Hello! How can I help you today?",
}
DEFAULT_DTMF: Final = "The caller pressed {digit} on the keypad."


@dataclass(frozen=True, slots=True)
class PhoneProfile:
    name: str
    settings: str  # the Settings message a call of this profile starts with (JSON text)
    token: str = ""  # the stream's "token" custom parameter must equal it (empty: open)


def profile(name: str, table: object) -> PhoneProfile:
    """One profile from its config table: ``agent`` (a Settings ``agent`` object), ``token``."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"phone_profiles.{name}: expected a table with agent (and token)")
    unknown = sorted(set(table) - {"agent", "token"})
    if unknown:
        raise ConfigError(f"phone_profiles.{name}: unknown key(s) {', '.join(unknown)}")
    token = table.get("token", "")
    if not isinstance(token, str):
        raise ConfigError(f"phone_profiles.{name}.token: expected a string")
    given = table.get("agent", {})
    if not isinstance(given, Mapping):
        raise ConfigError(f"phone_profiles.{name}.agent: expected a table (a Settings agent)")
    agent = _merged(given)
    text = json.dumps({"type": "Settings", "audio": PHONE_AUDIO, "agent": agent})
    try:
        parsed = parse_client(text, Generation.GA).message
    except RemoteProtocolError as exc:
        raise ConfigError(f"phone_profiles.{name}: {exc}") from exc
    assert isinstance(parsed, Settings)
    for think in parsed.agent.think:
        client_side = [f.name for f in think.functions if f.client_side]
        if client_side:
            raise ConfigError(
                f"phone_profiles.{name}: function(s) {', '.join(client_side)} have no endpoint; "
                "a phone call has no client to run them, so only server-side functions can be used"
            )
    return PhoneProfile(name, text, token)


def _merged(given: Mapping[str, Any]) -> dict[str, Any]:
    """The profile's agent over the default phone agent: what it leaves out, the default has,
    one level down too (a ``think`` with only a prompt keeps the default provider)."""
    agent = {**DEFAULT_AGENT, **given}
    for part in ("listen", "think", "speak"):
        mine = given.get(part)
        if isinstance(mine, Mapping):
            agent[part] = {**DEFAULT_AGENT[part], **mine}
    return agent


def check_servable(profiles: tuple[PhoneProfile, ...], catalog: Catalog) -> None:
    """Every profile's models are served here (checked once the providers are loaded): a
    profile that could not answer a single call stops the server, like a bad config."""
    for item in profiles:
        settings = parse_client(item.settings, Generation.GA).message
        assert isinstance(settings, Settings)  # checked by profile()
        agent = settings.agent
        parts = (*agent.think, *agent.speak, *((agent.listen,) if agent.listen else ()))
        for part in parts:
            problem = catalog.problem(part)
            if problem is not None:
                raise ConfigError(f"phone_profiles.{item.name}: {problem}")


def parse_profiles(key: str, raw: object) -> tuple[PhoneProfile, ...]:
    """``phone_profiles``: a table of tables (TOML), or the same as a JSON object (env)."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise ConfigError(f"{key}: not a JSON object: {exc}") from None
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{key}: expected a table of profiles")
    return tuple(profile(str(name), table) for name, table in raw.items())


def choose(
    profiles: tuple[PhoneProfile, ...], default: str, parameters: Mapping[str, str]
) -> tuple[PhoneProfile | None, str]:
    """The profile a stream's custom parameters ask for, or why it is refused."""
    chosen, name = named(profiles, default, parameters.get("agent"))
    if chosen is None:
        return None, f"no phone profile named {name[:40]!r}"
    if chosen.token and parameters.get("token") != chosen.token:
        return None, f"the stream did not carry profile {name!r}'s token"
    return chosen, ""


def named(
    profiles: tuple[PhoneProfile, ...], default: str, name: str | None
) -> tuple[PhoneProfile | None, str]:
    """The profile called ``name`` (``None``: the default one), and the name looked up; its
    token is not checked (Twilio's voice webhook hands the token to the stream)."""
    known = {p.name: p for p in profiles} or {"default": profile("default", {})}
    wanted = name if name is not None else default if default in known else next(iter(known))
    return known.get(wanted), wanted
