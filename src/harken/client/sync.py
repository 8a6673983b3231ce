"""``AgentWebSocketClient``: the threaded shell around ``AgentCore``.

``start()`` connects on the caller's thread, emits ``Open`` there, starts a listener thread that
runs every other handler, sends ``Settings`` and (with ``keepalive``) starts a thread that sends
``KeepAlive`` every 5 s. ``finish()``/``close()`` closes with code 1000, stops the threads and
returns once ``Close`` has fired (exactly once). It is idempotent and may be called from a handler.

A handler that raises does not kill the connection: the exception is logged and reported as an
``Error`` event (``type="HandlerError"``); with ``options={"termination_exception": True}``
the connection is then closed, as 4.8.1 did.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from harken.client.config import DeepgramClientOptions
from harken.client.core import AgentCore, Event, logger
from harken.client.events import AgentWebSocketEvents
from harken.errors import DeepgramApiError

__all__ = ["AgentWebSocketClient"]


class AgentWebSocketClient:
    """Synchronous Voice Agent connection (``client.agent.websocket.v("1")``)."""

    def __init__(self, config: DeepgramClientOptions | None = None) -> None:
        self._core = AgentCore(config or DeepgramClientOptions())
        self._lock = threading.RLock()  # guards the core
        self._send_lock = threading.Lock()
        self._socket: ClientConnection | None = None
        self._stop = threading.Event()
        self._listener: threading.Thread | None = None
        self._keepalive: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The agent endpoint this client connects to."""
        return self._core.url

    def on(self, event: AgentWebSocketEvents | str, handler: Callable[..., Any]) -> None:
        """Register ``handler(client, payload, **start_kwargs)`` for ``event``."""
        with self._lock:
            self._core.on(event, handler)

    def start(
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
        ``options=None`` connects without sending Settings (use ``send_settings`` later).
        """
        with self._lock:
            request, settings = self._core.begin_start(options, addons, headers, kwargs)
        if members:
            self.__dict__.update(members)
        try:
            socket = connect(
                request.url,
                additional_headers=request.headers,
                user_agent_header=request.user_agent,
                open_timeout=request.open_timeout,
                legacy=True,  # we own the connection's lifetime (no context manager)
            )
        except Exception as exc:  # every handshake failure is reported alike
            status = exc.response.status_code if isinstance(exc, InvalidStatus) else None
            with self._lock:
                event, error = self._core.connect_failed(status, f"{type(exc).__name__}: {exc}")
            self._dispatch([event])
            if error is not None:
                raise error from exc
            return False
        return self._run(socket, settings)

    def _run(self, socket: ClientConnection, settings: str | None) -> bool:
        self._socket = socket
        self._stop.clear()
        with self._lock:
            opened = self._core.connected()
        self._dispatch([opened])
        self._listener = threading.Thread(
            target=self._listen, args=(socket,), name="harken-agent-listener", daemon=True
        )
        self._listener.start()
        if settings is not None and not self._send_frame(settings, "Settings"):
            self.finish()
            return False
        if self._core.keepalive_enabled:
            self._keepalive = threading.Thread(
                target=self._keepalive_loop, name="harken-agent-keepalive", daemon=True
            )
            self._keepalive.start()
        return True

    # ------------------------------------------------------------------------- sending

    def send(self, data: str | bytes) -> bool:
        """Send one text or binary frame. False if not connected or the send failed."""
        return self._send_frame(data, "a message")

    def _send_frame(self, data: str | bytes | bytearray | memoryview, what: str) -> bool:
        socket = self._socket
        if socket is None or not self._core.is_open:
            return False
        if isinstance(data, str):
            with self._lock:
                self._core.note_outgoing(data)
        else:
            data = bytes(data)
        try:
            with self._send_lock:
                socket.send(data)
        except (ConnectionClosed, OSError) as exc:
            if self._core.raise_on_send_error:
                raise DeepgramApiError(f"Could not send {what}: {exc}") from exc
            if what == "Settings":
                self._dispatch([self._core.send_failed(what, str(exc))])
            return False
        return True

    def send_settings(self, settings: Any) -> bool:
        """Send a Settings message (the server accepts one per session)."""
        return self._send_frame(self._core.encode_settings(settings), "Settings")

    def update_prompt(self, options: Any) -> bool:
        """Send ``UpdatePrompt`` (UpdatePromptOptions, dict or the prompt text)."""
        return self.send(self._core.encode_update_prompt(options))

    def update_speak_options(self, options: Any) -> bool:
        """Send ``UpdateSpeak`` (UpdateSpeakOptions or dict)."""
        return self.send(self._core.encode_update_speak(options))

    def update_think(self, options: Any) -> bool:
        """Send ``UpdateThink`` (UpdateThinkOptions or dict)."""
        return self.send(self._core.encode_update_think(options))

    def inject_agent_message(self, options: Any) -> bool:
        """Send ``InjectAgentMessage`` (InjectAgentMessageOptions, dict or the text)."""
        return self.send(self._core.encode_inject_agent_message(options))

    def inject_user_message(self, options: Any) -> bool:
        """Send ``InjectUserMessage`` (InjectUserMessageOptions, dict or the text)."""
        return self.send(self._core.encode_inject_user_message(options))

    def send_function_call_response(self, response: Any) -> bool:
        """Answer a FunctionCallRequest; an empty ``id`` is filled from the oldest pending call
        with the same name. Raises ``DeepgramApiError`` if no pending call matches."""
        with self._lock:
            text = self._core.encode_function_call_response(response)
        return self.send(text)

    def keep_alive(self) -> bool:
        """Send one ``KeepAlive``."""
        return self.send(self._core.encode_keep_alive())

    def force_end_turn(self) -> bool:
        """Send ``ForceEndTurn``: the user's turn ends now (``/v1/agent/converse`` only)."""
        return self.send(self._core.encode_force_end_turn())

    def send_audio(self, data: bytes | bytearray | memoryview) -> bool:
        """Send user audio (one binary frame, in the format declared in ``audio.input``)."""
        return self._send_frame(data, "audio")

    def is_connected(self) -> bool:
        return self._core.is_open

    # ------------------------------------------------------------------------- closing

    def finish(self) -> bool:
        """Close with code 1000 and wait for the threads; idempotent. Always True."""
        with self._lock:
            must_close = self._core.begin_close()
        self._stop.set()
        socket = self._socket
        if must_close and socket is not None:
            try:
                socket.close()
            except Exception:  # closing must not fail
                logger.exception("closing the socket failed")
        current = threading.current_thread()
        for thread in (self._keepalive, self._listener):
            if thread is not None and thread is not current:
                thread.join(timeout=10)
        return True

    def close(self) -> bool:
        """Same as ``finish()``."""
        return self.finish()

    # ------------------------------------------------------------------------- threads

    def _listen(self, socket: ClientConnection) -> None:
        try:
            for message in socket:
                received = time.time()
                with self._lock:
                    if isinstance(message, str):
                        events = self._core.receive_text(message, received)
                    else:
                        events = self._core.receive_bytes(message)
                self._dispatch(events)
        except ConnectionClosed:
            pass
        except Exception:  # report instead of dying silently
            logger.exception("the listener failed")
            socket.close(1011)
        self._stop.set()
        if self._socket is socket:
            self._socket = None
        with self._lock:
            events = self._core.connection_lost(socket.close_code, socket.close_reason)
        self._dispatch(events)

    def _keepalive_loop(self) -> None:
        while not self._stop.wait(self._core.keepalive_interval):
            if not self.keep_alive():
                return

    def _dispatch(self, events: list[Event]) -> None:
        for event in events:
            with self._lock:
                invocations = self._core.invocations(event, self)
            for invocation in invocations:
                try:
                    invocation()
                except Exception as exc:  # a handler bug must be reported
                    logger.exception("the %s handler raised", event.name)
                    if event.name is AgentWebSocketEvents.Error:
                        continue
                    with self._lock:
                        failure = self._core.handler_failed(invocation, exc)
                    self._dispatch([failure])
                    if self._core.close_on_handler_error:
                        self.finish()
