"""Size limits on what a client may ask the models to read or say. Pure.

A client's text ends up as work on the shared compute lane (a prompt to prefill, a context to
tokenize, an injection to synthesise), so its size is bounded before the session acts on it,
each with a code the client can read:

* a **prompt** (``think.prompt`` in Settings or UpdateThink, the prompt UpdatePrompt grows) is
  cut to ``prompt_chars`` with ``Warning{PROMPT_TOO_LONG}``, as Deepgram does above 25,000
  characters for its managed LLMs;
* a **context** (``agent.context.messages``) keeps its newest ``context_messages`` messages, and
  of those the newest that fit ``context_chars``, also with ``Warning{PROMPT_TOO_LONG}``;
* an **injection** (InjectAgentMessage, InjectUserMessage) longer than ``message_chars`` is
  refused with ``InjectionRefused``: nothing is said or asked;
* a **greeting** or **function result** longer than ``message_chars`` is cut to it with
  ``Warning{MESSAGE_TOO_LONG}`` (the conversation must go on: a call's round waits for it).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from harken.protocol import codes
from harken.protocol import messages as m
from harken.protocol.settings import ContextConfig, HistoryItem, ThinkConfig


@dataclass(frozen=True, slots=True)
class SizeLimits:
    prompt_chars: int = 25_000
    context_messages: int = 1_000
    context_chars: int = 200_000
    message_chars: int = 20_000


@dataclass(frozen=True, slots=True)
class Bounded:
    """The message to act on (``None``: refused) and what to tell the client about it."""

    message: m.ClientMessage | None
    notes: tuple[m.ServerMessage, ...] = ()


def bound(message: m.ClientMessage, limits: SizeLimits, prompt: str) -> Bounded:
    """``message`` within ``limits``; ``prompt`` is the session's prompt so far."""
    match message:
        case m.Settings():
            return _settings(message, limits)
        case m.UpdateThink():
            think, notes = _thinks(message.think, limits.prompt_chars)
            return Bounded(replace(message, think=think), tuple(notes))
        case m.UpdatePrompt():
            return _update_prompt(message, limits.prompt_chars, prompt)
        case m.InjectAgentMessage() | m.InjectUserMessage():
            text = message.message if isinstance(message, m.InjectAgentMessage) else message.content
            if len(text) <= limits.message_chars:
                return Bounded(message)
            refused = m.InjectionRefused(
                message=f"{message.type} refused: {len(text)} characters, more than the "
                f"{limits.message_chars} this server accepts in one message."
            )
            return Bounded(None, (refused,))
        case m.FunctionCallResponse() if len(message.content) > limits.message_chars:
            cut = message.content[: limits.message_chars]
            return Bounded(replace(message, content=cut), (_message_note("function result"),))
        case _:
            return Bounded(message)


def _settings(settings: m.Settings, limits: SizeLimits) -> Bounded:
    agent, notes = settings.agent, []
    think, said = _thinks(agent.think, limits.prompt_chars)
    notes += said
    greeting = agent.greeting
    if greeting is not None and len(greeting) > limits.message_chars:
        greeting = greeting[: limits.message_chars]
        notes.append(_message_note("greeting"))
    context = agent.context
    if context is not None:
        given = context.messages
        kept = _newest(given, limits)
        if len(kept) < len(given):
            context = ContextConfig(messages=kept, replay=context.replay)
            notes.append(
                m.Warning(
                    code=codes.PROMPT_TOO_LONG,
                    description=f"agent.context.messages: kept the newest {len(kept)} of "
                    f"{len(given)} messages (at most {limits.context_messages} "
                    f"messages and "
                    f"{limits.context_chars} characters).",
                )
            )
    if not notes:
        return Bounded(settings)
    agent = replace(agent, think=think, greeting=greeting, context=context)
    return Bounded(replace(settings, agent=agent), tuple(notes))


def _thinks(
    thinks: tuple[ThinkConfig, ...], limit: int
) -> tuple[tuple[ThinkConfig, ...], list[m.ServerMessage]]:
    if all(len(t.prompt) <= limit for t in thinks):
        return thinks, []
    cut = tuple(replace(t, prompt=t.prompt[:limit]) for t in thinks)
    return cut, [_prompt_note(limit)]


def _update_prompt(message: m.UpdatePrompt, limit: int, prompt: str) -> Bounded:
    room = limit - (len(prompt) + 1 if prompt else 0)
    if len(message.prompt) <= room:
        return Bounded(message)
    return Bounded(replace(message, prompt=message.prompt[: max(room, 0)]), (_prompt_note(limit),))


def _newest(items: tuple[HistoryItem, ...], limits: SizeLimits) -> tuple[HistoryItem, ...]:
    """The newest ``context_messages`` items, and of those the newest that fit
    ``context_chars`` (a function call counts its arguments and response)."""
    kept = items[-limits.context_messages :] if limits.context_messages > 0 else ()
    total, start = 0, len(kept)
    while start > 0:
        total += _chars(kept[start - 1])
        if total > limits.context_chars:
            break
        start -= 1
    return kept[start:]


def _chars(item: HistoryItem) -> int:
    calls = sum(len(c.arguments) + len(c.response) for c in item.function_calls)
    return len(item.content or "") + calls


def _prompt_note(limit: int) -> m.Warning:
    return m.Warning(
        code=codes.PROMPT_TOO_LONG,
        description=f"The prompt was cut to {limit} characters, the most this server accepts.",
    )


def _message_note(what: str) -> m.Warning:
    return m.Warning(
        code=codes.MESSAGE_TOO_LONG,
        description=f"The {what} was cut to the most characters this server accepts in one "
        "message.",
    )
