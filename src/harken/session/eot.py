"""When a turn ends: fixed silence, or a semantic end-of-turn signal asked at each pause. Pure.

With ``semantic`` on, the session asks the end-of-turn model (a ``TurnJob``) at every pause of
the user's speech (the listener's ``pause``, its silence floor); if it answers ``threshold`` or
more while the user is still silent, the turn ends there and then (``Listener.complete``), else
it ends when the silence reaches the timeout (the listener's ``eot_frames``). The speculation
started at the same pause (transcript, held reply) is what makes the early end pay off.

Deepgram's Flux settings map onto it (PROTOCOL.md §10): a listen provider with
``version: "v2"`` or a ``flux-*`` model asks for it, and ``eot_threshold`` and ``eot_timeout_ms``
(in Settings or ``UpdateListen``) override the server's defaults for any listen provider.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from harken.protocol.settings import ListenConfig
from harken.session.listener import FRAME_SECONDS, ListenerConfig


@dataclass(frozen=True, slots=True)
class TurnPolicy:
    """The server's defaults; a session's listen options may change them."""

    semantic: bool = False  # ask the end-of-turn model at each pause
    threshold: float = 0.7  # P(complete) that ends the turn at the pause
    timeout_ms: float = 1500.0  # silence that ends the turn whatever the model says (semantic)


def wants_semantic(listen: ListenConfig) -> bool:
    """A Flux listen provider (``version: "v2"``, or a ``flux-*`` model) asks for it."""
    provider = listen.provider
    version = provider.options.get("version")
    return version == "v2" or (provider.model or "").startswith("flux")


def session_policy(listen: ListenConfig | None, server: TurnPolicy) -> TurnPolicy:
    """The server's policy with the session's listen options applied."""
    if listen is None:
        return server
    options = listen.provider.options
    threshold = options.get("eot_threshold", server.threshold)
    timeout = options.get("eot_timeout_ms", server.timeout_ms)
    return TurnPolicy(
        semantic=server.semantic or wants_semantic(listen),
        threshold=float(threshold) if isinstance(threshold, int | float) else server.threshold,
        timeout_ms=float(timeout) if isinstance(timeout, int | float) else server.timeout_ms,
    )


def listener_config(policy: TurnPolicy, base: ListenerConfig) -> ListenerConfig:
    """With the semantic signal the listener's end of turn is the timeout; else unchanged."""
    if not policy.semantic:
        return base
    frames = max(base.pause_frames + 1, round(policy.timeout_ms / 1000 / FRAME_SECONDS))
    return replace(base, eot_frames=frames)
