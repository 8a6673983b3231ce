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

Such frames are not even parsed by websockets when the bytes read off the socket start at a
frame boundary: :meth:`HarkenConnection.data_received` cuts the whole, unfragmented, masked
binary frames at their start itself (two header bytes, the length, the mask: the audio every
client sends) and hands their payloads over, and gives websockets only what follows. That is
taken only while websockets' parser is known to wait for the first byte of a frame with nothing
buffered (its generator suspended in ``StreamReader.at_eof``), the connection is open, no
fragmented message or extension is in play and the frame is within ``max_size``; anything
else (text, control frames, a frame cut across reads, a frame too large) goes through
websockets unchanged, so its checks and its close codes stay the library's. Should websockets'
internals ever change shape, the check fails and every frame takes the library's way.

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
from websockets.protocol import Event, Protocol, State
from websockets.streams import StreamReader

try:
    from websockets.speedups import apply_mask  # websockets' C unmasking, as its parser uses
except ImportError:  # pragma: no cover - a websockets built without its C extension
    from websockets.utils import apply_mask

from harken.protocol.messages import Generation
from harken.server.post_body import BodyReader


class BadFrame(enum.Enum):
    INVALID_UTF8 = "invalid_utf8"
    TOO_MANY_FRAGMENTS = "too_many_fragments"


INVALID_UTF8 = BadFrame.INVALID_UTF8
TOO_MANY_FRAGMENTS = BadFrame.TOO_MANY_FRAGMENTS


_AT_EOF = StreamReader.at_eof.__code__
_BINARY_FIN = 0x82  # FIN, no reserved bits, opcode 2
_MASKED = 0x80


def at_frame_start(protocol: Protocol) -> bool:
    """websockets' parser waits for the first byte of a frame, with nothing buffered, on an
    open connection with no fragmented message, extension or debug logging in play."""
    if (
        protocol.reader.buffer
        or protocol.state is not State.OPEN
        or protocol.current_size is not None
        or protocol.extensions
        or protocol.debug
    ):
        return False
    parser: Any = protocol.parser
    while (inner := getattr(parser, "gi_yieldfrom", None)) is not None:
        parser = inner
    return getattr(parser, "gi_code", None) is _AT_EOF


def binary_frame(data: bytes, at: int, limit: int | None) -> tuple[int, int] | None:
    """The (payload start, end) of the whole, unfragmented, masked binary frame at ``at``
    (length within ``limit``); None if there is none (another kind, or not all here)."""
    end = len(data)
    if end - at < 6 or data[at] != _BINARY_FIN or data[at + 1] < _MASKED:
        return None
    length, start = data[at + 1] & 0x7F, at + 6
    if length == 126:
        if end - at < 8:
            return None
        length, start = int.from_bytes(data[at + 2 : at + 4], "big"), at + 8
    elif length == 127:
        return None  # 64 KiB or more: not an audio frame; websockets judges it
    if (limit is not None and length > limit) or start + length > end:
        return None
    return start, start + length


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
        if self.on_binary is not None and at_frame_start(self.protocol):
            used = self._binary_frames(data)
            if used == len(data):
                return
            data = data[used:]
        super().data_received(data)

    def _binary_frames(self, data: bytes) -> int:
        """Hand the whole binary frames at the start of ``data`` to :attr:`on_binary`, while
        it takes them; the bytes used."""
        at, limit = 0, self.protocol.max_message_size
        while (frame := binary_frame(data, at, limit)) is not None:
            handler, (start, end) = self.on_binary, frame
            payload = apply_mask(data[start:end], data[start - 4 : start])
            if handler is None or not self._receiver_waits() or not handler(payload):
                break
            at = end
        return at

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
