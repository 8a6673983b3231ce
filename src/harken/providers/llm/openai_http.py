"""An LLM behind the OpenAI chat-completions API (vLLM, Ollama, llama.cpp, OpenAI, Groq, ...).

The session's messages go out as OpenAI messages (the prompt as ``system``, tool calls on the
assistant message, results as ``tool`` messages with their ``tool_call_id``), the functions as
``tools`` with ``tool_choice: "auto"``. The reply is read as server-sent events: text deltas are
yielded as they come; ``tool_calls`` deltas are put together by ``index`` (several calls in one
reply) and yielded once, when the stream says why it finished. A server that ignores
``stream: true`` and answers with one JSON body is read the same way.

Cancelling the consumer (barge-in, a voided speculation) closes the HTTP response at once, which
closes its connection, so the server stops generating. :meth:`OpenAILLM.prime` sends the system
prompt with ``max_tokens: 1`` where the preset says the server keeps a prompt cache.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from harken.errors import ProviderError
from harken.protocol.settings import FunctionDef, Provider
from harken.providers.base import Capabilities, LLMOutput, LLMText, LLMToolCalls
from harken.providers.remote import HTTPEndpoint, Preset
from harken.session.effects import ChatMessage, ToolCall


@dataclass(slots=True)
class _Call:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Reply:
    """What the stream said so far: the calls being assembled and whether it finished."""

    calls: dict[int, _Call] = field(default_factory=dict)
    finished: bool = False
    spoke: bool = False

    def tool_calls(self) -> tuple[ToolCall, ...]:
        return tuple(
            ToolCall(c.id or f"call_{secrets.token_hex(6)}", c.name, "".join(c.arguments) or "{}")
            for _, c in sorted(self.calls.items())
            if c.name
        )


class _Held:
    """Text that may be a tool call written as bare JSON, held back instead of spoken.

    Small models (Qwen2.5-Coder, Llama 3.2 1B/3B) often answer a tool question with
    ``{"name": "get_weather", "arguments": {...}}`` in the content, which servers that parse only
    their template's tags (llama.cpp's ``<tool_call>``) pass on as text. While functions are
    offered, a reply that starts with ``{`` or a code fence is held; at the end it becomes tool
    calls if it is only calls to offered functions, and is spoken as text otherwise.
    """

    def __init__(self, names: set[str]) -> None:
        self.names = names
        self.text = ""
        self.holding = bool(names)

    def feed(self, text: str) -> str:
        if not self.holding:
            return text
        self.text += text
        head = self.text.lstrip()
        if not head or head.startswith(("{", "```"[: len(head)])):
            return ""
        self.holding = False
        out, self.text = self.text, ""
        return out

    def calls(self) -> tuple[ToolCall, ...]:
        if not self.text:
            return ()
        return bare_tool_calls(self.text, self.names)


def bare_tool_calls(text: str, names: set[str]) -> tuple[ToolCall, ...]:
    """``text`` as tool calls if it is only JSON objects ``{name, arguments}`` naming ``names``."""
    body = text.strip()
    if body.startswith("```"):
        body = body.strip("`").removeprefix("json").strip()
    calls = _json_calls(body, names)
    if not calls and body.startswith("{{") and body.endswith("}}"):  # a template's braces echoed
        calls = _json_calls(body[1:-1], names)
    return calls


def _json_calls(body: str, names: set[str]) -> tuple[ToolCall, ...]:
    decoder, calls, at = json.JSONDecoder(), [], 0
    while at < len(body):
        try:
            value, at = decoder.raw_decode(body, at)
        except ValueError:
            return ()
        if not isinstance(value, dict) or value.get("name") not in names:
            return ()
        arguments = value.get("arguments", value.get("parameters", {}))
        if isinstance(arguments, dict):
            arguments = json.dumps(arguments)
        if not isinstance(arguments, str):
            return ()
        calls.append(ToolCall(f"call_{secrets.token_hex(6)}", value["name"], arguments))
        while at < len(body) and body[at] in " \t\r\n,;":
            at += 1
    return tuple(calls)


def to_openai(message: ChatMessage) -> dict[str, Any]:
    """One session message as an OpenAI chat message."""
    if message.role == "tool":
        return {
            "role": "tool",
            "tool_call_id": message.tool_call_id or "",
            "content": message.content,
        }
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["content"] = message.content or None
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
    return out


def tool_specs(functions: Sequence[FunctionDef]) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "function": {
                "name": f.name,
                "description": f.description,
                "parameters": f.parameters or {"type": "object", "properties": {}},
            },
        }
        for f in functions
    ]


class OpenAILLM:
    """The :class:`~harken.providers.base.LLM` for one chat-completions URL and model."""

    capabilities = Capabilities(streaming=True, tools=True)

    def __init__(
        self,
        endpoint: HTTPEndpoint,
        preset: Preset,
        *,
        model: str = "",
        max_tokens: int = 0,
        prime: bool | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.endpoint, self.preset, self.model = endpoint, preset, model
        self.max_tokens = max_tokens
        self.primes = preset.prime if prime is None else prime
        self.options = dict(options or {})

    def bind(self, provider: Provider) -> OpenAILLM:
        """This endpoint for one Settings provider: its model unless the operator set one."""
        bound = OpenAILLM(self.endpoint, self.preset, model=self.model or provider.model or "")
        bound.max_tokens, bound.primes = self.max_tokens, self.primes
        bound.options = {**provider.options, **self.options}
        return bound

    def body(
        self,
        messages: Sequence[ChatMessage],
        functions: Sequence[FunctionDef] = (),
        *,
        temperature: float | None = None,
        stream: bool = True,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"messages": [to_openai(m) for m in messages], "stream": stream}
        if self.model:
            body["model"] = self.model
        if temperature is not None:
            body["temperature"] = temperature
        limit = self.options.get("max_tokens") or self.max_tokens
        if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
            body[self.preset.max_tokens_field] = limit
        effort = self.options.get("reasoning_mode")
        if isinstance(effort, str) and effort:
            body["reasoning_effort"] = effort
        if functions:
            body["tools"], body["tool_choice"] = tool_specs(functions), "auto"
        body.update(self.preset.llm_extra)
        return body

    async def prime(
        self, messages: Sequence[ChatMessage], functions: Sequence[FunctionDef] = ()
    ) -> None:
        """Warm the server's prompt cache with the system prompt (and the tools), if it has one."""
        if not self.primes or not messages:
            return
        body = self.body(messages, functions, stream=False)
        body[self.preset.max_tokens_field] = 1
        async with self.endpoint.open(json_body=body) as response:
            await response.aread()

    async def stream(
        self,
        messages: Sequence[ChatMessage],
        functions: Sequence[FunctionDef] = (),
        *,
        temperature: float | None = None,
        end_score: bool = False,  # not offered (capabilities.end_score is False)
    ) -> AsyncIterator[LLMOutput]:
        body = self.body(messages, functions, temperature=temperature)
        reply = _Reply()
        held = _Held({f.name for f in functions})
        async with self.endpoint.slot(), self.endpoint.open(json_body=body) as response:
            if "json" in response.headers.get("content-type", ""):
                chunks: Any = [self._whole(await response.aread())]
            else:
                chunks = self._events(response)
            async for output in self._outputs(chunks, reply):
                text = held.feed(output.text)
                if text:
                    yield LLMText(text)
        if not reply.finished:
            raise ProviderError(
                f"{self.endpoint.what} {self.endpoint.shown} ended the stream before the reply "
                "was complete",
                retryable=True,
            )
        bare = held.calls()
        calls = reply.tool_calls() + bare
        if held.text and not bare:
            yield LLMText(held.text)
        if calls:
            yield LLMToolCalls(calls)

    async def _events(self, response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
        """The JSON payloads of the server-sent events; ``{"done": True}`` for ``[DONE]``."""
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue  # blank separators, comments, ``event:`` and ``id:`` lines
            data = line[5:].strip()
            if data == "[DONE]":
                yield {"done": True}
                return
            try:
                payload = json.loads(data)
            except ValueError:
                raise self._malformed(f"an event that is not JSON: {data[:80]!r}") from None
            if not isinstance(payload, dict):
                raise self._malformed(f"an event that is not an object: {data[:80]!r}")
            yield payload

    def _whole(self, raw: bytes) -> dict[str, Any]:
        """A non-streamed completion, reshaped as one final chunk."""
        try:
            payload = json.loads(raw)
        except ValueError:
            raise self._malformed("a body that is not JSON") from None
        if not isinstance(payload, dict):
            raise self._malformed("a body that is not an object")
        choices = payload.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            message = choices[0].get("message") or {}
            calls = message.get("tool_calls") or []
            deltas = [{**c, "index": i} for i, c in enumerate(calls) if isinstance(c, dict)]
            delta = {"content": message.get("content"), "tool_calls": deltas}
            finish = choices[0].get("finish_reason") or "stop"
            return {"choices": [{"delta": delta, "finish_reason": finish}]}
        return payload

    async def _outputs(self, chunks: Any, reply: _Reply) -> AsyncIterator[LLMText]:
        async for chunk in _aiter(chunks):
            if chunk.get("done"):
                reply.finished = True
                return
            if "error" in chunk:
                detail = chunk["error"]
                if isinstance(detail, dict):
                    detail = detail.get("message", detail)
                raise ProviderError(
                    f"{self.endpoint.what} {self.endpoint.shown} failed mid-reply: {detail}",
                    retryable=True,
                )
            text = self._apply(chunk, reply)
            if text:
                yield LLMText(text)

    def _apply(self, chunk: Mapping[str, Any], reply: _Reply) -> str:
        """Fold one chunk into ``reply``; return its text delta."""
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices:
            return ""  # e.g. the usage chunk
        choice = choices[0]
        if not isinstance(choice, dict):
            raise self._malformed("a choice that is not an object")
        if choice.get("finish_reason"):
            reply.finished = True
        delta = choice.get("delta") or {}
        if not isinstance(delta, dict):
            raise self._malformed("a delta that is not an object")
        for position, call in enumerate(delta.get("tool_calls") or []):
            self._fold_call(call, position, reply)
        text = delta.get("content")
        if not isinstance(text, str) or not text:
            return ""
        if not reply.spoke:
            text = text.lstrip()
            reply.spoke = bool(text)
        return text

    def _fold_call(self, call: object, position: int, reply: _Reply) -> None:
        if not isinstance(call, dict):
            raise self._malformed("a tool call that is not an object")
        index = call.get("index", position)
        entry = reply.calls.setdefault(index if isinstance(index, int) else position, _Call())
        if isinstance(call.get("id"), str) and call["id"]:
            entry.id = call["id"]
        function = call.get("function") or {}
        if isinstance(function, dict):
            if isinstance(function.get("name"), str) and function["name"]:
                entry.name = function["name"]
            arguments = function.get("arguments")
            if isinstance(arguments, str):
                entry.arguments.append(arguments)
            elif isinstance(arguments, dict):  # some servers send the object itself
                entry.arguments.append(json.dumps(arguments))

    def _malformed(self, what: str) -> ProviderError:
        return ProviderError(
            f"{self.endpoint.what} {self.endpoint.shown} sent a malformed stream ({what})",
            retryable=True,
        )


async def _aiter(chunks: Any) -> AsyncIterator[dict[str, Any]]:
    if isinstance(chunks, list):
        for chunk in chunks:
            yield chunk
        yield {"done": True}
    else:
        async for chunk in chunks:
            yield chunk
