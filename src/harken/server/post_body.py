"""A POST's body taken off the first request of a connection, for websockets' HTTP parser.

websockets reads only a request's head: ``Request.parse`` refuses any non-zero
``Content-Length`` ("unsupported request body") and any ``Transfer-Encoding``. Twilio's voice
webhook is a ``POST`` with a form body, so :class:`BodyReader` sits in front of the parser for
the first request of a connection, sans-I/O: bytes in, the bytes websockets should see out.

* The first bytes do not start with ``POST ``: everything passes through untouched, at once
  and from then on (a WebSocket handshake, ``GET /healthz``).
* A ``POST``: held until its head (at most :data:`MAX_HEAD` bytes) and ``Content-Length`` bytes
  of body (at most :data:`MAX_BODY`) have arrived; websockets then gets the same head without
  ``Content-Length``, and :attr:`BodyReader.body` holds the body. A head that is too long, a
  body too large, a chunked body or a bad ``Content-Length`` hands websockets a head without a
  body too, and sets :attr:`BodyReader.error` for the route to answer (431, 413, 411, 400).
  Bytes after the request are dropped: a POST never becomes a WebSocket, and its response
  closes the connection.
* ``Expect: 100-continue`` is answered (:attr:`BodyReader.interim`) so that curl does not wait.
"""

from __future__ import annotations

import enum
from typing import Final

MAX_HEAD: Final = 16 * 1024
MAX_BODY: Final = 64 * 1024
CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
_END: Final = b"\r\n\r\n"
_POST: Final = b"POST "


class _State(enum.Enum):
    DECIDING = "deciding"  # fewer than 5 bytes, all of them a prefix of "POST "
    HEAD = "head"
    BODY = "body"
    PASSING = "passing"  # not a POST: everything goes to websockets
    DONE = "done"  # the POST's head went to websockets; what follows is dropped


class BodyReader:
    """Feed it every received byte; hand websockets what :meth:`feed` returns."""

    def __init__(self) -> None:
        self._state = _State.DECIDING
        self._buffer = bytearray()
        self._head = b""
        self._length = 0
        self.body: bytes | None = None  # a POST's body, once it has arrived whole
        self.error: tuple[int, str] | None = None  # (status, why): the route answers it
        self.interim = b""  # to write to the client now (100 Continue), then clear

    @property
    def passing(self) -> bool:
        """True once the first request turned out not to be a POST (nothing left to do)."""
        return self._state is _State.PASSING

    def feed(self, data: bytes) -> bytes:
        if self._state is _State.PASSING:
            return data
        if self._state is _State.DONE:
            return b""
        self._buffer += data
        if self._state is _State.DECIDING:
            if len(self._buffer) < len(_POST) and _POST.startswith(self._buffer):
                return b""
            if not self._buffer.startswith(_POST):
                self._state = _State.PASSING
                return self._take()
            self._state = _State.HEAD
        if self._state is _State.HEAD:
            return self._read_head()
        return self._read_body()

    def _read_head(self) -> bytes:
        end = self._buffer.find(_END)
        if end < 0:
            if len(self._buffer) > MAX_HEAD:
                return self._fail(431, "request header fields too large", b"POST / HTTP/1.1\r\n")
            return b""
        head = bytes(self._buffer[: end + 2])  # the request line and headers, each with CRLF
        del self._buffer[: end + len(_END)]
        if len(head) > MAX_HEAD:
            return self._fail(431, "request header fields too large", b"POST / HTTP/1.1\r\n")
        kept, lengths, chunked, expect = _split_head(head)
        if chunked:
            return self._fail(411, "a chunked body is not supported; send Content-Length", kept)
        if len(set(lengths)) > 1 or not all(v.isdigit() for v in lengths):
            return self._fail(400, "bad Content-Length", kept)
        self._length = int(lengths[0]) if lengths else 0
        if self._length > MAX_BODY:
            return self._fail(413, f"the body is larger than {MAX_BODY} bytes", kept)
        self._head = kept
        self._state = _State.BODY
        if expect and len(self._buffer) < self._length:
            self.interim = CONTINUE
        return self._read_body()

    def _read_body(self) -> bytes:
        if len(self._buffer) < self._length:
            return b""
        self.body = bytes(self._buffer[: self._length])
        self._state = _State.DONE
        self._buffer.clear()
        return self._head + b"\r\n"

    def _fail(self, status: int, why: str, head: bytes) -> bytes:
        self.error = (status, why)
        self._state = _State.DONE
        self._buffer.clear()
        return head + b"\r\n"

    def _take(self) -> bytes:
        data = bytes(self._buffer)
        self._buffer.clear()
        return data


def _split_head(head: bytes) -> tuple[bytes, list[str], bool, bool]:
    """The head without its body framing headers; the Content-Length values; chunked; 100?"""
    kept: list[bytes] = []
    lengths: list[str] = []
    chunked = expect = False
    for number, line in enumerate(head.split(b"\r\n")[:-1]):
        name, _, value = line.partition(b":")
        field = name.strip().lower() if number else b""
        text = value.strip().decode("latin-1")
        if field == b"content-length":
            lengths.append(text)
        elif field == b"transfer-encoding":
            chunked = True
        else:
            expect = expect or (field == b"expect" and text.lower() == "100-continue")
            kept.append(line + b"\r\n")
    return b"".join(kept), lengths, chunked, expect
