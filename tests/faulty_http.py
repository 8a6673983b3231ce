"""A real HTTP server on loopback that fails the way model servers fail, one way per path.

=================  ===========================================================================
path               answer
=================  ===========================================================================
``/status/N``      HTTP N with OpenAI's error body ``{"error": {"message": "vendor says N"}}``
``/malformed``     200 ``text/event-stream`` whose first event is not JSON
``/cut``           200, one text delta, then the connection closes mid-body
``/no-done``       200, one text delta, then a clean end without ``[DONE]`` or finish_reason
``/hang``          reads the request and never answers (the read timeout)
``/slow-words``    200, one text delta every 0.2 s for 60 s (a barge-in must close it)
``/empty-text``    200 JSON ``{"no": "text"}`` (a transcription server without ``text``)
=================  ===========================================================================

:func:`unaccepting_port` gives a port whose backlog is full, so a connection attempt hangs
(the connect timeout), and :func:`closed_port` one where nothing listens (refused).
"""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import threading
import time
from collections.abc import Iterator


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _event(payload: object) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


def _delta(text: str) -> dict[str, object]:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}


STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
)


class _Handler(socketserver.BaseRequestHandler):
    server: FaultyServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        path = self._read_request(sock)
        if path is None:
            return
        self.server.paths.append(path)
        with contextlib.suppress(OSError):
            self._answer(sock, path)

    def _read_request(self, sock: socket.socket) -> str | None:
        data = b""
        while b"\r\n\r\n" not in data:
            part = sock.recv(65536)
            if not part:
                return None
            data += part
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = next(
            (
                int(v)
                for k, _, v in (h.partition(":") for h in lines[1:])
                if k.lower() == "content-length"
            ),
            0,
        )
        while len(body) < length:
            part = sock.recv(65536)
            if not part:
                break
            body += part
        return lines[0].split(" ")[1]

    def _answer(self, sock: socket.socket, path: str) -> None:
        if path.startswith("/status/"):
            status = int(path.split("/")[2])
            body = json.dumps({"error": {"message": f"vendor says {status}", "type": "x"}}).encode()
            head = f"HTTP/1.1 {status} Oops\r\ncontent-type: application/json\r\n"
            head += f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
            sock.sendall(head.encode() + body)
        elif path.startswith("/malformed"):
            sock.sendall(STREAM_HEAD + _chunk(b"data: {not json\n\n") + _chunk(b""))
        elif path.startswith("/cut"):
            sock.sendall(STREAM_HEAD + _chunk(_event(_delta("Hello"))))
            time.sleep(0.05)  # then the connection drops without the last chunk
        elif path.startswith("/no-done"):
            sock.sendall(STREAM_HEAD + _chunk(_event(_delta("Hello"))) + _chunk(b""))
        elif path.startswith("/hang"):
            self.server.closed.wait(30)
        elif path.startswith("/slow-words"):
            sock.sendall(STREAM_HEAD)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not self.server.closed.is_set():
                sock.sendall(_chunk(_event(_delta("word "))))
                time.sleep(0.2)
        elif path.startswith("/empty-text"):
            body = b'{"no": "text"}'
            head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            sock.sendall(f"{head}content-length: {len(body)}\r\n\r\n".encode() + body)
        self.server.finished.append(path)


class FaultyServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.paths: list[str] = []  # requests received
        self.finished: list[str] = []  # answers that ran to their end (a closed stream raises)
        self.closed = threading.Event()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


@contextlib.contextmanager
def faulty_server() -> Iterator[FaultyServer]:
    server = FaultyServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.closed.set()
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def unaccepting_port() -> Iterator[int]:
    """A listening port that never accepts, its one-place backlog taken: connects hang."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port: int = listener.getsockname()[1]
    fillers = []
    for _ in range(4):  # the backlog holds listen(0)+1 connections on Linux
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
