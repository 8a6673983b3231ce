"""``AsyncAgentWebSocketClient``: the asyncio shell around ``AgentCore``.

Same behaviour as the threaded client, with tasks instead of threads. Handlers may be ``async
def`` or plain functions (a plain function runs on the event loop, so keep it short); handlers of
one event run one after another, in registration order. Every method is a coroutine except
``on()`` and ``is_connected()``; ``is_connected()`` returns a bool that can also be awaited, so
both ``conn.is_connected()`` and 4.8.1's ``await conn.is_connected()`` work.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Generator, Mapping
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from harken.client.config import DeepgramClientOptions
from harken.client.core import AgentCore, Event, logger
from harken.client.events import AgentWebSocketEvents
from harken.errors import DeepgramApiError

__all__ = ["AsyncAgentWebSocketClient", "AwaitableBool"]


class AwaitableBool:
    """A bool you may also ``await`` (4.8.1's async ``is_connected`` was a coroutine)."""

    __slots__ = ("_value",)

    def __init__(self, value: bool) -> None:
        self._value = value

    def __bool__(self) -> bool:
        return self._value

    def __await__(self) -> Generator[Any, None, bool]:
        return self._result().__await__()

    async def _result(self) -> bool:
        return self._value

    def __eq__(self, other: object) -> bool:
        return bool(self) == other

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return repr(self._value)


class AsyncAgentWebSocketClient:
    """Asynchronous Voice Agent connection (``client.agent.asyncwebsocket.v("1")``)."""

    def __init__(self, config: DeepgramClientOptions | None = None) -> None:
        self._core = AgentCore(config or DeepgramClientOptions())
        self._socket: ClientConnection | None = None
        self._listener: asyncio.Task[None] | None = None
        self._keepalive: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """The agent endpoint this client connects to."""
        return self._core.url

    def on(self, event: AgentWebSocketEvents | str, handler: Callable[..., Any]) -> None:
        """Register ``handler(client, payload, **start_kwargs)`` (async or plain) for ``event``."""
        self._core.on(event, handler)

    async def start(
        self,
        options: Any = None,
        addons: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        members: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> bool:
        """Connect and send ``options`` (SettingsOptions, dict or JSON text) as Settings.

        Returns False if the connection fails (after an ``Error`` event); raises
        ``DeepgramApiError`` instead when ``termination_exception_connect`` is set.
        """
        request, settings = self._core.begin_start(options, addons, headers, kwargs)
        if members:
            self.__dict__.update(members)
        try:
            socket = await connect(
                request.url,
                additional_headers=request.headers,
                user_agent_header=request.user_agent,
                open_timeout=request.open_timeout,
            )
        except Exception as exc:  # every handshake failure is reported alike
            status = exc.response.status_code if isinstance(exc, InvalidStatus) else None
            event, error = self._core.connect_failed(status, f"{type(exc).__name__}: {exc}")
            await self._dispatch([event])
            if error is not None:
                raise error from exc
            return False
        return await self._run(socket, settings)

    async def _run(self, socket: ClientConnection, settings: str | None) -> bool:
        self._socket = socket
        await self._dispatch([self._core.connected()])
        self._listener = asyncio.create_task(self._listen(socket), name="harken-agent-listener")
        if settings is not None and not await self._send_frame(settings, "Settings"):
            await self.finish()
            return False
        if self._core.keepalive_enabled:
            self._keepalive = asyncio.create_task(
                self._keepalive_loop(), name="harken-agent-keepalive"
            )
        return True

    # ------------------------------------------------------------------------- sending

    async def send(self, data: str | bytes) -> bool:
        """Send one text or binary frame. False if not connected or the send failed."""
        return await self._send_frame(data, "a message")

    async def _send_frame(self, data: str | bytes | bytearray | memoryview, what: str) -> bool:
        socket = self._socket
        if socket is None or not self._core.is_open:
            return False
        if isinstance(data, str):
            self._core.note_outgoing(data)
        else:
            data = bytes(data)
        try:
            await socket.send(data)
        except (ConnectionClosed, OSError) as exc:
            if self._core.raise_on_send_error:
                raise DeepgramApiError(f"Could not send {what}: {exc}") from exc
            if what == "Settings":
                await self._dispatch([self._core.send_failed(what, str(exc))])
            return False
        return True

    async def send_settings(self, settings: Any) -> bool:
        """Send a Settings message (the server accepts one per session)."""
        return await self._send_frame(self._core.encode_settings(settings), "Settings")

    async def update_prompt(self, options: Any) -> bool:
        """Send ``UpdatePrompt`` (UpdatePromptOptions, dict or the prompt text)."""
        return await self.send(self._core.encode_update_prompt(options))

    async def update_speak_options(self, options: Any) -> bool:
        """Send ``UpdateSpeak`` (UpdateSpeakOptions or dict)."""
        return await self.send(self._core.encode_update_speak(options))

    async def update_think(self, options: Any) -> bool:
        """Send ``UpdateThink`` (UpdateThinkOptions or dict)."""
        return await self.send(self._core.encode_update_think(options))

    async def inject_agent_message(self, options: Any) -> bool:
        """Send ``InjectAgentMessage`` (InjectAgentMessageOptions, dict or the text)."""
        return await self.send(self._core.encode_inject_agent_message(options))

    async def inject_user_message(self, options: Any) -> bool:
        """Send ``InjectUserMessage`` (InjectUserMessageOptions, dict or the text)."""
        return await self.send(self._core.encode_inject_user_message(options))

    async def send_function_call_response(self, response: Any) -> bool:
        """Answer a FunctionCallRequest; an empty ``id`` is filled from the oldest pending call
        with the same name. Raises ``DeepgramApiError`` if no pending call matches."""
        return await self.send(self._core.encode_function_call_response(response))

    async def keep_alive(self) -> bool:
        """Send one ``KeepAlive``."""
        return await self.send(self._core.encode_keep_alive())

    async def force_end_turn(self) -> bool:
        """Send ``ForceEndTurn``: the user's turn ends now (``/v1/agent/converse`` only)."""
        return await self.send(self._core.encode_force_end_turn())

    async def send_audio(self, data: bytes | bytearray | memoryview) -> bool:
        """Send user audio (one binary frame, in the format declared in ``audio.input``)."""
        return await self._send_frame(data, "audio")

    def is_connected(self) -> AwaitableBool:
        return AwaitableBool(self._core.is_open)

    # ------------------------------------------------------------------------- closing

    async def finish(self) -> bool:
        """Close with code 1000 and wait for the tasks; idempotent. Always True."""
        must_close = self._core.begin_close()
        if self._keepalive is not None:
            self._keepalive.cancel()
        socket = self._socket
        if must_close and socket is not None:
            try:
                await socket.close()
            except Exception:  # closing must not fail
                logger.exception("closing the socket failed")
        current = asyncio.current_task()
        for task in (self._keepalive, self._listener):
            if task is not None and task is not current:
                await asyncio.gather(task, return_exceptions=True)
        return True

    async def close(self) -> bool:
        """Same as ``finish()``."""
        return await self.finish()

    # ------------------------------------------------------------------------- tasks

    async def _listen(self, socket: ClientConnection) -> None:
        try:
            async for message in socket:
                if isinstance(message, str):
                    events = self._core.receive_text(message, time.time())
                else:
                    events = self._core.receive_bytes(message)
                await self._dispatch(events)
        except ConnectionClosed:
            pass
        except Exception:  # report instead of dying silently
            logger.exception("the listener failed")
            await socket.close(1011)
        if self._socket is socket:
            self._socket = None
        if self._keepalive is not None:
            self._keepalive.cancel()
        await self._dispatch(self._core.connection_lost(socket.close_code, socket.close_reason))

    async def _keepalive_loop(self) -> None:
        while True:
            await asyncio.sleep(self._core.keepalive_interval)
            if not await self.keep_alive():
                return

    async def _dispatch(self, events: list[Event]) -> None:
        for event in events:
            for invocation in self._core.invocations(event, self):
                try:
                    result = invocation()
                    if inspect.isawaitable(result):
                        await result
                except Exception as exc:  # a handler bug must be reported
                    logger.exception("the %s handler raised", event.name)
                    if event.name is AgentWebSocketEvents.Error:
                        continue
                    await self._dispatch([self._core.handler_failed(invocation, exc)])
                    if self._core.close_on_handler_error:
                        await self.finish()
