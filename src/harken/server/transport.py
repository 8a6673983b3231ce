"""harken's websockets connection class: per-connection state set during the handshake, and a
receive call that reports bad frames as values instead of failing the connection.

websockets answers a text frame with invalid UTF-8, or a message in too many fragments, by
closing the connection itself (1007/1009), so the client never learns why. :meth:`recv_frame`
returns :data:`INVALID_UTF8` / :data:`TOO_MANY_FRAGMENTS` instead, and the pump answers with a
proper ``Error``. It relies on ``Connection.recv_messages`` (websockets 17, pinned).

The first request's bytes go through a :class:`~harken.server.post_body.BodyReader` before
websockets parses them, so that a ``POST`` with a body (Twilio's voice webhook) reaches the
routes: :attr:`HarkenConnection.form_body` and :attr:`HarkenConnection.body_error`.
"""

from __future__ import annotations

import asyncio
import enum
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import TooManyFragments

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
