"""harken's websockets connection class: per-connection state set during the handshake, and a
receive call that reports bad frames as values instead of failing the connection.

websockets answers a text frame with invalid UTF-8, or a message in too many fragments, by
closing the connection itself (1007/1009), so the client never learns why. :meth:`recv_frame`
returns :data:`INVALID_UTF8` / :data:`TOO_MANY_FRAGMENTS` instead, and the pump answers with a
proper ``Error``. It relies on ``Connection.recv_messages`` (websockets 17, pinned).
"""

from __future__ import annotations

import enum
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import TooManyFragments

from harken.protocol.messages import Generation


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
