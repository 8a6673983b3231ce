"""The embedded LLM's prompts (Qwen ChatML) and its grammar-constrained tool choice.

Native tool templates make small models call a tool even for chit-chat (``MODELS.md``), so a
turn with functions runs in two contexts, each with its own system message:

1. **The choice.** The system message lists the tools and asks for one line of JSON, with
   ``{"tool": "none"}`` for everything else (and a few generic examples of it). The prompt ends
   with ``{"tool": "`` (:data:`DECIDE`); the model writes the rest under the GBNF of
   :func:`grammar`: ``none"}`` or a tool name and arguments that follow its JSON schema.
   :class:`Choice` follows the decoded text: "none" counts as soon as no tool name fits, and
   once only one tool fits, the rest of its name is appended and decoding goes on under a
   grammar for its arguments alone (accepting appended tokens into a llama.cpp grammar would
   abort the process if they ever did not fit).
2. **The answer.** A plain chat prompt (the agent's prompt and :data:`VOICE_NOTE`) that the
   model answers in words. It is used after "none", and directly when the last message is a
   tool result, so the model answers with the result instead of calling the tool again.

A tool result becomes a system message naming the call ("The function get_weather was called
with {...} and returned: ..."). The answer context leaves the assistant's call itself out: in
Qwen's native ``<tool_call>``/``<tool_response>`` form the 0.5B answers a result by writing JSON
again, in this form it answers in words. The choice context shows past calls as the JSON it
wrote, an example for a follow-up ("And in London?"). Both system messages start with the same
text, so the choice context reuses the cached prefix of the answer context.

Rendering yields pieces ``(text, special)``: template markup may hold special tokens, message
contents never do (a user cannot inject ``<|im_start|>``).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Sequence
from typing import Any, Final, Literal, Protocol, cast

from harken.protocol.settings import FunctionDef
from harken.session.effects import ChatMessage, ToolCall

VOICE_NOTE: Final = (
    "You are talking with the user by voice. Answer in one to three short spoken sentences of "
    "plain text: no markdown, lists, code or emoji. Be correct and careful: if something the "
    "user asks about is dangerous, say clearly that it is not safe and why. The user's words "
    "come from speech recognition, so they may be a fragment or something overheard from a "
    "phone or a TV: then answer briefly or ask what they meant. Never refuse an ordinary "
    "request."
)
DECIDE: Final = '{"tool": "'
NONE: Final = "none"
TOOLS_NOTE: Final = (
    "Reply with one line of JSON only. Call a tool only if the user's last message asks for "
    'exactly what that tool does: {"tool": "<tool name>", "arguments": {...}}. Otherwise '
    "(chat, questions, general knowledge, numbers, fragments, anything else) reply "
    '{"tool": "none"}.'
)
EXAMPLES: Final = "Examples:\n" + "\n".join(
    f'User: {text}\n{{"tool": "none"}}'
    for text in (
        "How are you?",
        "What is the capital of Italy?",
        "How many seconds are there in a minute?",
        "Tell me a story about a dog.",
        "So what is it in",
        "Thanks, that is all.",
    )
)
RESULT_NOTE: Final = "Tell the user the result."
Piece = tuple[str, bool]  # (text, may contain special tokens)


def system_text(prompt: str, functions: Sequence[FunctionDef] = ()) -> str:
    """The system message: the agent's prompt, the voice note and, to choose a tool, the tools."""
    parts = [prompt.strip(), VOICE_NOTE] if prompt.strip() else [VOICE_NOTE]
    if functions:
        specs = "\n".join(
            json.dumps({"name": f.name, "description": f.description, "parameters": f.parameters})
            for f in functions
        )
        parts += [f"You can use these tools:\n{specs}", TOOLS_NOTE, EXAMPLES]
    return "\n\n".join(parts)


def needs_choice(messages: Sequence[ChatMessage], functions: Sequence[FunctionDef]) -> bool:
    """Offer the tools unless there are none or a tool result is waiting for its answer."""
    return bool(functions) and not (messages and messages[-1].role == "tool")


def _block(role: str, content: str) -> list[Piece]:
    return [(f"<|im_start|>{role}\n", True), (content, False), ("<|im_end|>\n", True)]


def _arguments(call: ToolCall) -> str:
    try:
        return json.dumps(json.loads(call.arguments or "{}"))
    except ValueError:
        return json.dumps(call.arguments)


def _result(call: ToolCall | None, content: str) -> str:
    what = f"The function {call.name} was called with {_arguments(call)}" if call else "A function"
    return f"{what} and returned: {content}\n{RESULT_NOTE}"


def shared(pieces: Sequence[Piece]) -> tuple[int, ...]:
    """The piece counts before which nothing said has begun: after the system block, and after
    the markup that opens the next message (other sessions may reuse such a prefix whole)."""
    system = len(_block("system", ""))
    if len(pieces) < system:
        return ()
    return (system, system + 1) if len(pieces) > system and pieces[system][1] else (system,)


def render(
    messages: Sequence[ChatMessage], functions: Sequence[FunctionDef] = (), *, reply: bool = True
) -> list[Piece]:
    """The choice prompt (with ``functions``) or the answer prompt (without) for ``messages``.

    With ``reply`` it ends by opening the assistant's turn (and :data:`DECIDE` for a choice).
    """
    rest = list(messages)
    prompt = rest.pop(0).content if rest and rest[0].role == "system" else ""
    calls = {call.id: call for message in rest for call in message.tool_calls}
    pieces = _block("system", system_text(prompt, functions))
    for message in rest:
        if message.role == "tool":
            call = calls.get(message.tool_call_id or "")
            pieces += _block("system", _result(call, message.content))
        elif message.tool_calls and functions:  # the choice sees its own past choices
            choices = [f"{DECIDE}{head(c.name)}{_arguments(c)}}}" for c in message.tool_calls]
            pieces += _block("assistant", "\n".join(choices))
        elif message.content or not message.tool_calls:
            pieces += _block(message.role, message.content)
    if reply:
        pieces.append(("<|im_start|>assistant\n", True))
        if functions:
            pieces.append((DECIDE, False))
    return pieces


# ------------------------------------------------------------------------------- the choice


class _Converter(Protocol):
    """The part of llama-cpp-python's (untyped) JSON-schema → GBNF converter used here."""

    def resolve_refs(self, schema: dict[str, Any], url: str) -> dict[str, Any]: ...
    def visit(self, schema: dict[str, Any], name: str) -> str: ...
    def format_grammar(self) -> str: ...


def _converter() -> _Converter:
    from llama_cpp import llama_grammar

    make = cast(Callable[..., _Converter], llama_grammar.SchemaConverter)
    return make(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)


def _literal(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return '"' + escaped.replace("\r", "\\r") + '"'


def head(name: str) -> str:
    """What the model writes after :data:`DECIDE` before any arguments."""
    return NONE + '"}' if name == NONE else f'{name}", "arguments": '


def grammar(functions: Sequence[FunctionDef], tool: str | None = None) -> str:
    """GBNF for what follows :data:`DECIDE`: ``none"}`` or a tool name and its arguments.

    With ``tool``: only that tool's arguments and the closing brace (what follows its
    :func:`head`). A tool whose parameter schema the converter cannot handle takes any object.
    """
    loose: set[int] = set()
    while True:
        converter, alternatives = _converter(), [] if tool else [_literal(head(NONE))]
        try:
            for i, function in enumerate(functions):
                if function.name == NONE or tool not in (None, function.name):
                    continue
                params = function.parameters
                schema = params if params.get("properties") and i not in loose else {}
                schema = json.loads(json.dumps(schema or {"type": "object"}))
                rule = converter.visit(converter.resolve_refs(schema, f"t{i}"), f"t{i}-args")
                name = "" if tool else _literal(head(function.name))
                alternatives.append(f'{name} {rule} "}}"'.strip())
        except Exception:  # the converter raises anything (assert, KeyError, ValueError)
            if i in loose:
                raise
            loose.add(i)
            continue
        return f"root ::= {' | '.join(alternatives)}\n{converter.format_grammar()}\n"


class Choice:
    """Follows the choice as the model writes it after :data:`DECIDE` (in ``text``)."""

    def __init__(self, functions: Sequence[FunctionDef]) -> None:
        self.names = [NONE, *(f.name for f in functions if f.name != NONE)]
        self.text = ""

    def _fits(self) -> list[str]:
        heads = {name: head(name) for name in self.names}
        return [n for n, h in heads.items() if h.startswith(self.text) or self.text.startswith(h)]

    def rest(self) -> tuple[str, str]:
        """Once only one tool fits: it and the rest of its :func:`head` (else ``("", "")``)."""
        fits = self._fits()
        if len(fits) != 1 or fits == [NONE] or len(self.text) >= len(head(fits[0])):
            return "", ""
        return fits[0], head(fits[0])[len(self.text) :]

    def result(self) -> ToolCall | Literal["none"] | None:
        """``"none"`` once no tool fits, the call once its JSON is complete, else None."""
        if self._fits() == [NONE]:
            return NONE
        try:
            value = json.loads(DECIDE + self.text)
        except ValueError:
            return None
        arguments = json.dumps(value.get("arguments", {})) if isinstance(value, dict) else "{}"
        name = str(value.get("tool", NONE)) if isinstance(value, dict) else NONE
        return NONE if name == NONE else ToolCall(f"call_{secrets.token_hex(6)}", name, arguments)
