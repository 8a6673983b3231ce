"""What the OpenAI-compatible HTTP providers share: vendor presets, the guarded request, errors.

One :class:`HTTPEndpoint` per configured server or Settings ``endpoint``. :meth:`HTTPEndpoint.open`
is the only place that talks to the network: for an endpoint a *client* named it resolves the host
through the SSRF guard and connects to the vetted address; it applies the connect and read
timeouts; and it translates every failure, once, into one :class:`ProviderError` with
``retryable=True`` (so the session moves on to its next fallback): connection refused, DNS
failure, timeouts, HTTP 4xx/5xx (with the vendor's own error message), a stream cut in the
middle. Header values go only to that endpoint: they are never logged nor put in a message; URLs
appear in messages without their query string (:func:`~harken.providers.guard.redact`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Final

import httpx

from harken.errors import ProviderError
from harken.providers.base import SPECULATIVE
from harken.providers.guard import redact, vet_target

log = logging.getLogger("harken.remote")

ERROR_BODY_BYTES: Final = 4096
LOCAL_FLAG: Final = "allow_loopback_endpoints"


@dataclass(frozen=True, slots=True)
class Preset:
    """How one vendor's server differs from OpenAI's API (and nothing else)."""

    max_tokens_field: str = "max_tokens"
    llm_extra: Mapping[str, Any] = field(default_factory=dict)  # added to each chat request
    prime: bool = False  # warm the server's prompt cache with the system prompt (1 token)
    tts_format: str = "pcm"
    tts_rate: int = 24000  # the sample rate of its raw ``pcm`` speech
    stt_format: str = "json"


PRESETS: Final[dict[str, Preset]] = {
    # OpenAI: reasoning models take max_completion_tokens; prompt caching is automatic (and a
    # priming request would cost money), speech pcm is 24 kHz s16le.
    "openai": Preset(max_tokens_field="max_completion_tokens"),
    "groq": Preset(max_tokens_field="max_completion_tokens"),
    # vLLM caches prefixes automatically (APC): a 1-token request with the prompt warms it.
    "vllm": Preset(prime=True),
    # Ollama keeps the last prompt's KV cache per loaded model.
    "ollama": Preset(prime=True),
    # llama.cpp's llama-server and llama-cpp-python's server: keep the prompt in the slot cache.
    "llama.cpp": Preset(llm_extra={"cache_prompt": True}, prime=True),
}


class HTTPPool:
    """The connection pool every remote provider of a registry shares: one client per event loop.

    Proxy variables (``HTTP_PROXY``...) are ignored: the guard vets the address that is actually
    connected to, and a model server is normally reached directly.
    """

    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._client.is_closed or self._loop is not loop:
            limits = httpx.Limits(max_connections=None, max_keepalive_connections=32)
            self._client = httpx.AsyncClient(trust_env=False, follow_redirects=False, limits=limits)
            self._loop = loop
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._loop is asyncio.get_running_loop():
            await client.aclose()


class HTTPEndpoint:
    """One OpenAI-compatible URL, its headers and timeouts, reached through a shared pool."""

    def __init__(
        self,
        pool: HTTPPool,
        url: str,
        headers: Mapping[str, str],
        *,
        what: str,
        trusted: bool,
        allow_local: bool = False,
        timeout: float = 10.0,
        connect_timeout: float = 3.0,
        slots: int = 0,
    ) -> None:
        self.pool, self.url, self.what = pool, url, what
        self.headers = dict(headers)
        self.trusted, self.allow_local = trusted, allow_local
        self.timeout = httpx.Timeout(timeout, connect=connect_timeout)
        self.shown = redact(url)
        self.slots = slots
        self.busy = 0  # requests holding a slot now
        self._freed = asyncio.Event()

    def __repr__(self) -> str:  # never the headers
        return f"HTTPEndpoint({self.shown!r}, trusted={self.trusted})"

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the server's ``slots`` (its ``--parallel``) for a request. A guess (a
        held reply's LLM, :data:`~harken.providers.base.SPECULATIVE`) waits while fewer than
        two are free, until one frees or its turn is final: the last slot is kept for a
        committed turn, which never waits behind another session's guess. ``slots = 0``: no
        accounting."""
        guess = SPECULATIVE.get()
        if self.slots and guess is not None:
            while not guess.is_set() and self.busy >= self.slots - 1:
                self._freed.clear()
                waits = [asyncio.ensure_future(e.wait()) for e in (self._freed, guess)]
                try:
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for wait in waits:
                        wait.cancel()
        self.busy += 1
        try:
            yield
        finally:
            self.busy -= 1
            self._freed.set()

    @asynccontextmanager
    async def open(
        self,
        *,
        json_body: Mapping[str, Any] | None = None,
        files: Mapping[str, tuple[str, bytes, str]] | None = None,
        data: Mapping[str, str] | None = None,
    ) -> AsyncIterator[httpx.Response]:
        """POST to the endpoint; yield the streaming response of a 2xx answer.

        Every network or HTTP failure, in the request or while the body is read inside the
        ``async with``, leaves as one retryable :class:`ProviderError`.
        """
        request = await self._request(json_body, files, data)
        try:
            response = await self.pool.client.send(request, stream=True, follow_redirects=False)
        except httpx.HTTPError as exc:
            raise self._failure(exc) from exc
        try:
            if response.status_code >= 400:
                raise await self._status_error(response)
            yield response
        except httpx.HTTPError as exc:
            raise self._failure(exc, started=True) from exc
        finally:
            await response.aclose()  # an unfinished body closes the connection: generation stops

    async def _request(
        self,
        json_body: Mapping[str, Any] | None,
        files: Mapping[str, tuple[str, bytes, str]] | None,
        data: Mapping[str, str] | None,
    ) -> httpx.Request:
        try:
            url = httpx.URL(self.url)
        except httpx.InvalidURL as exc:
            raise ProviderError(f"{self.what} {self.shown} is not a valid URL") from exc
        headers, extensions, target = dict(self.headers), {}, url
        if not self.trusted:  # a client's URL: connect only to the address the guard vetted
            address = await vet_target(
                url,
                self.allow_local,
                allow_private=self.allow_local,
                what=self.what,
                flag=LOCAL_FLAG,
            )
            headers["Host"] = url.netloc.decode("ascii")
            target = url.copy_with(host=address)
            extensions["sni_hostname"] = url.host
        try:
            return self.pool.client.build_request(
                "POST",
                target,
                headers=headers,
                json=json_body,
                files=files,
                data=data,
                timeout=self.timeout,
                extensions=extensions,
            )
        except (httpx.HTTPError, ValueError, TypeError) as exc:  # e.g. a header httpx refuses
            raise ProviderError(f"{self.what} {self.shown}: cannot build the request") from exc

    def _failure(self, exc: httpx.HTTPError, *, started: bool = False) -> ProviderError:
        where = f"{self.what} {self.shown}"
        if isinstance(exc, httpx.ConnectTimeout):
            text = f"{where} did not accept a connection within {self.timeout.connect:g} s"
        elif isinstance(exc, httpx.TimeoutException):
            text = f"{where} sent nothing for {self.timeout.read:g} s"
        elif isinstance(exc, httpx.ConnectError):
            text = f"cannot connect to {where} ({_reason(exc)})"
        elif started:
            text = f"{where} cut the stream before it was complete ({_reason(exc)})"
        else:
            text = f"{where} failed ({_reason(exc)})"
        log.info("%s", text)
        return ProviderError(text, retryable=True)

    async def _status_error(self, response: httpx.Response) -> ProviderError:
        body = bytearray()
        try:
            async for chunk in response.aiter_bytes():
                body.extend(chunk)
                if len(body) >= ERROR_BODY_BYTES:
                    break
        except httpx.HTTPError:
            pass  # the status says enough
        detail = vendor_message(bytes(body[:ERROR_BODY_BYTES]))
        text = f"{self.what} {self.shown} answered HTTP {response.status_code}"
        return ProviderError(f"{text}: {detail}" if detail else text, retryable=True)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text[:200] if text else type(exc).__name__


def vendor_message(body: bytes) -> str:
    """The error message in a vendor's error body (OpenAI, Ollama, FastAPI shapes), or its text."""
    text = body.decode("utf-8", "replace").strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        return " ".join(text.split())[:300]
    found: object = parsed
    for key in ("error", "message", "detail"):
        if isinstance(found, dict) and key in found:
            found = found[key]
            if isinstance(found, dict) and "message" in found:
                found = found["message"]
            break
    if not isinstance(found, str):
        found = json.dumps(found)
    return " ".join(found.split())[:300]
