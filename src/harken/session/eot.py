"""When a turn ends: fixed silence, or two end-of-turn signals asked at each pause. Pure.

With ``semantic`` on, two signals are asked at every pause of the user's speech:

* **acoustic**: the end-of-turn model (Smart Turn) on the turn's audio so far, pause included,
  once the silence reaches ``floor_ms`` (a ``TurnJob``);
* **text**: the LLM's probability that the user's message is complete, read from the held
  reply's own prompt (a ``ThinkJob`` with ``end_score``): the speculation started at the short
  pause (the listener's ``pause``, 128 ms) transcribes the turn so far and prefills the reply,
  and the score costs no extra evaluation (``BENCHMARKS.md``: on 45 real mid-sentence pauses
  Smart Turn alone cuts 58 %, the LLM alone 9 %, the two together none).

The turn ends there and then (``Listener.complete``) when the acoustic score reaches
``threshold`` and the text score reaches ``text_threshold``, while the user is still silent;
else when the silence reaches the timeout (the listener's ``eot_frames``). The text score is
waited for only while it can come (a held reply is on its way); when it cannot (speculation off,
an empty transcript, a think provider that cannot score), the acoustic score decides alone.

With ``eager`` (Deepgram's ``eager_eot_threshold``), speculation itself waits for the acoustic
score and starts only when it reaches ``eager``: fewer wasted replies, ~35 ms later.

Deepgram's Flux settings map onto it (PROTOCOL.md §10): a listen provider with
``version: "v2"`` or a ``flux-*`` model asks for it, and ``eot_threshold``,
``eager_eot_threshold`` and ``eot_timeout_ms`` (in Settings or ``UpdateListen``) override the
server's defaults for any listen provider.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from harken.protocol.settings import ListenConfig
from harken.session.listener import FRAME_SECONDS, ListenerConfig


@dataclass(frozen=True, slots=True)
class TurnPolicy:
    """The server's defaults; a session's listen options may change them."""

    semantic: bool = False  # ask the end-of-turn signals at each pause
    threshold: float = 0.7  # acoustic P(complete) that ends the turn at the pause
    timeout_ms: float = 1500.0  # silence that ends the turn whatever the signals say (semantic)
    text_threshold: float = 0.3  # and the LLM's P(complete); 0: the acoustic score alone
    eager: float | None = None  # speculate only from this acoustic P(complete)
    floor_ms: float = 192.0  # the silence at which the end-of-turn model is asked

    @property
    def floor_frames(self) -> int:
        return max(1, round(self.floor_ms / 1000 / FRAME_SECONDS))

    @property
    def scores_text(self) -> bool:
        return self.semantic and self.text_threshold > 0


@dataclass(slots=True)
class Verdict:
    """The signals' answers at the current pause (None: not yet)."""

    acoustic: float | None = None
    text: float | None = None
    no_text: bool = False  # the think provider said it cannot score this text
    asked: bool = False  # the end-of-turn model was asked at this pause

    def complete(self, policy: TurnPolicy, text_coming: bool) -> bool:
        """Do the answers so far end the turn? ``text_coming``: a held reply may still score."""
        if self.acoustic is None or self.acoustic < policy.threshold:
            return False
        if self.text is not None:
            return self.text >= policy.text_threshold
        return not (policy.scores_text and text_coming and not self.no_text)


def wants_semantic(listen: ListenConfig) -> bool:
    """A Flux listen provider (``version: "v2"``, or a ``flux-*`` model) asks for it."""
    provider = listen.provider
    version = provider.options.get("version")
    return version == "v2" or (provider.model or "").startswith("flux")


def _number(value: object, default: float | None) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return float(value)


def session_policy(listen: ListenConfig | None, server: TurnPolicy) -> TurnPolicy:
    """The server's policy with the session's listen options applied."""
    if listen is None:
        return server
    options = listen.provider.options
    threshold = _number(options.get("eot_threshold"), server.threshold)
    timeout = _number(options.get("eot_timeout_ms"), server.timeout_ms)
    assert threshold is not None and timeout is not None
    eager = _number(options.get("eager_eot_threshold"), server.eager)
    return replace(
        server,
        semantic=server.semantic or wants_semantic(listen),
        threshold=threshold,
        timeout_ms=timeout,
        eager=None if eager is None else min(eager, threshold),
    )


def listener_config(policy: TurnPolicy, base: ListenerConfig) -> ListenerConfig:
    """With the semantic signal the listener's end of turn is the timeout; else unchanged."""
    if not policy.semantic:
        return base
    first = max(base.pause_frames, policy.floor_frames)
    frames = max(first + 1, round(policy.timeout_ms / 1000 / FRAME_SECONDS))
    return replace(base, eot_frames=frames)
