"""harken's websockets connection class: per-connection state set during the handshake, and a
receive call that reports bad frames as values instead of failing the connection.

websockets answers a text frame with invalid UTF-8, or a message in too many fragments, by
closing the connection itself (1007/1009), so the client never learns why. :meth:`recv_frame`
returns :data:`INVALID_UTF8` / :data:`TOO_MANY_FRAGMENTS` instead, and the pump answers with a
proper ``Error``. It relies on ``Connection.recv_messages`` (websockets 17, pinned).

A whole binary message that arrives while the receiver waits with nothing queued ahead of it is
handed to :attr:`HarkenConnection.on_binary` at once, from the protocol callback: the pump's hot
path (an audio frame every 20 ms per session) then costs no queue, no future and no task
wake-up. It is only taken when it cannot reorder anything, and the pump may decline it (no
room for effects), in which case the frame takes the library's way. It relies on the
``Assembler``'s queue (``recv_messages.frames``) of websockets 17 as well.

The first request's bytes go through a :class:`~harken.server.post_body.BodyReader` before
websockets parses them, so that a ``POST`` with a body (Twilio's voice webhook) reaches the
routes: :attr:`HarkenConnection.form_body` and :attr:`HarkenConnection.body_error`.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import TooManyFragments
from websockets.frames import Frame, Opcode
from websockets.protocol import Event

from harken.protocol.messages import Generation
from harken.server.post_body import BodyReader


class BadFrame(enum.Enum):
    INVALID_UTF8 = "invalid_utf8"
    TOO_MANY_FRAGMENTS = "too_many_fragments"


INVALID_UTF8 = BadFrame.INVALID_UTF8
TOO_MANY_FRAGMENTS = BadFrame.TOO_MANY_FRAGMENTS


class HarkenConnection(ServerConnection):
    """A server connection that carries the agent session's request id and generation."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.request_id = ""
        self.generation = Generation.GA
        self.carrier = ""  # a phone carrier's media stream ("twilio", "telnyx"), not the agent API
        self.form_body: bytes | None = None  # the body of a POST (the first request only)
        self.body_error: tuple[int, str] | None = None  # a POST's body refused: (status, why)
        self._body_reader: BodyReader | None = BodyReader()
        self.last_data_at = 0.0  # the event loop's time when the client's last bytes arrived
        self._loop_time = asyncio.get_running_loop().time
        self.on_binary: Callable[[bytes], bool] | None = None  # True: handled (see the module)

    def data_received(self, data: bytes) -> None:
        self.last_data_at = self._loop_time()  # bytes arrived, whether read yet or not
        reader = self._body_reader
        if reader is not None:
            data = reader.feed(data)
            if reader.interim:
                self.transport.write(reader.interim)
                reader.interim = b""
            self.form_body, self.body_error = reader.body, reader.error
            if reader.passing:
                self._body_reader = None
            if not data:
                return
        super().data_received(data)

    def process_event(self, event: Event) -> None:
        handler = self.on_binary
        if (
            handler is not None
            and isinstance(event, Frame)
            and event.opcode is Opcode.BINARY
            and event.fin
            and self._receiver_waits()
            and handler(bytes(event.data))
        ):
            return
        super().process_event(event)

    def _receiver_waits(self) -> bool:
        """The receiver waits for the next message, and none is queued or handed to it yet:
        a message handled now is handled in order."""
        frames = self.recv_messages.frames
        waiter = frames.get_waiter
        return waiter is not None and not waiter.done() and not frames.queue

    async def recv_frame(self) -> str | bytes | BadFrame:
        """The next message: ``str`` (text), ``bytes`` (binary) or a :class:`BadFrame`.

        Raises ``ConnectionClosed`` once the connection is closed, like ``recv()``.
        """
        try:
            return await self.recv_messages.get()
        except UnicodeDecodeError:
            return INVALID_UTF8
        except TooManyFragments:
            return TOO_MANY_FRAGMENTS
        except EOFError:
            pass
        return await self.recv()  # closed: raises ConnectionClosed the library's way
