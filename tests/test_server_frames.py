"""The connection's own cut of audio frames (``HarkenConnection.data_received``): whole masked
binary frames at a frame boundary go to the session without websockets' parser; everything
else (text, control frames, a frame cut across reads, fragments, frames too large) goes
through websockets. Unit tests on websockets' own protocol objects, then the real server fed
raw bytes on its socket, so that the reads split and merge frames as a test chooses."""

from __future__ import annotations

import json
import random
import re
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.sync.client import ClientConnection
from websockets.uri import parse_uri

from conftest import SETTINGS, ServerThread, recv_json, recv_until, start_session
from harken.server import transport
from harken.server.transport import at_frame_start, binary_frame

pytestmark = pytest.mark.loopback

FRAME = 640  # 20 ms of 16 kHz linear16


def wire(opcode: Opcode, data: bytes, *, fin: bool = True, rsv1: bool = False) -> bytes:
    """A frame as a client puts it on the wire (masked); ``rsv1``: with an extension's bit."""
    frame = Frame(opcode, data, fin=fin).serialize(mask=True)
    return bytes([frame[0] | 0x40]) + frame[1:] if rsv1 else frame


def open_protocol() -> ServerProtocol:
    """A server-side protocol past its handshake, its parser at the first frame."""
    protocol = ServerProtocol()
    protocol.state = State.OPEN
    protocol.parser = protocol.parse()
    next(protocol.parser)
    return protocol


# ------------------------------------------------------------------------------- the cut


@pytest.mark.parametrize("size", [0, 1, 125, 126, 640, 65535])
def test_binary_frame_finds_the_payload_of_a_whole_masked_frame(size: int) -> None:
    payload = bytes(random.Random(size).randbytes(size))
    data = wire(Opcode.BINARY, payload)
    found = binary_frame(data, 0, None)
    assert found is not None and found[1] == len(data)
    start, end = found
    assert transport.apply_mask(data[start:end], data[start - 4 : start]) == payload
    # the next frame in the same read is found where this one ends
    twice = data + wire(Opcode.BINARY, b"next")
    assert binary_frame(twice, end, None) is not None


@pytest.mark.parametrize(
    "data",
    [
        wire(Opcode.TEXT, b"{}"),  # text: websockets checks its UTF-8
        wire(Opcode.PING, b""),
        wire(Opcode.BINARY, b"a" * 10, fin=False),  # the first of several fragments
        wire(Opcode.BINARY, b"a" * 10, rsv1=True),  # an extension's bit
        Frame(Opcode.BINARY, b"a" * 10).serialize(mask=False),  # a client must mask
        wire(Opcode.BINARY, b"a" * 65536),  # 64-bit length
        wire(Opcode.BINARY, b"a" * 640)[:-1],  # the last byte not read yet
        wire(Opcode.BINARY, b"a" * 640)[:3],  # nor the 16-bit length
        b"",
    ],
)
def test_binary_frame_leaves_every_other_frame_to_websockets(data: bytes) -> None:
    assert binary_frame(data, 0, None) is None


def test_binary_frame_leaves_a_frame_over_max_size_to_websockets() -> None:
    data = wire(Opcode.BINARY, b"a" * 641)
    assert binary_frame(data, 0, 640) is None and binary_frame(data, 0, 641) is not None


def test_at_frame_start_follows_websockets_parser() -> None:
    protocol = open_protocol()
    assert at_frame_start(protocol)
    audio = wire(Opcode.BINARY, b"a" * FRAME)
    protocol.receive_data(audio[:4])  # the header read, the payload awaited: mid-frame
    assert not at_frame_start(protocol)
    protocol.receive_data(audio[4:])
    assert at_frame_start(protocol) and protocol.events_received()[0].data == b"a" * FRAME
    protocol.receive_data(wire(Opcode.BINARY, b"first", fin=False))  # a fragmented message
    assert not at_frame_start(protocol)
    protocol.receive_data(wire(Opcode.CONT, b" last"))
    assert at_frame_start(protocol)
    protocol.receive_data(wire(Opcode.CLOSE, b"\x03\xe8"))  # closing: all goes to websockets
    assert not at_frame_start(protocol)


def test_at_frame_start_is_false_on_a_parser_of_another_shape() -> None:
    """Should websockets' internals change, every frame takes the library's way."""
    protocol = open_protocol()
    protocol.parser = iter(())  # type: ignore[assignment]
    assert not at_frame_start(protocol)
    client = ClientProtocol(parse_uri("ws://localhost/"))  # still in its handshake
    assert not at_frame_start(client)


# ------------------------------------------------------------------------------- end to end

SQUARE = np.tile(np.array([8000, -8000], dtype="<i2"), 4000).tobytes()  # 0.5 s, all loud
QUIET = bytes(16000 * 2 * 2)  # 2 s of silence: ends the turn
SPOKEN = SQUARE + QUIET
HEARD = "I heard 500 milliseconds of sound."


@pytest.fixture
def cuts(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[int, int]]]:
    """(bytes cut by harken, bytes read) of every read that started at a frame boundary."""
    seen: list[tuple[int, int]] = []
    cut = transport.HarkenConnection._binary_frames

    def spy(self: transport.HarkenConnection, data: bytes) -> int:
        used = cut(self, data)
        seen.append((used, len(data)))
        return used

    monkeypatch.setattr(transport.HarkenConnection, "_binary_frames", spy)
    yield seen


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def user_says(ws: ClientConnection) -> str:
    while True:
        message = recv_json(ws, 10)
        if message.get("type") == "ConversationText" and message.get("role") == "user":
            return str(message["content"])


def frames(data: bytes) -> list[bytes]:
    return [wire(Opcode.BINARY, data[at : at + FRAME]) for at in range(0, len(data), FRAME)]


def test_audio_cut_by_the_connection_is_heard_exactly(
    make_server: Any, cuts: list[tuple[int, int]]
) -> None:
    """One frame per write (a client's 20 ms frames): harken cuts them, and the session hears
    exactly the samples sent (unmasked right: 500 ms of loud samples, then silence)."""
    with start_session(make_server()) as ws:
        for frame in frames(SPOKEN):
            ws.socket.sendall(frame)
            time.sleep(0.001)
        assert user_says(ws) == HEARD
    whole = [used for used, size in cuts if used == size and used]
    assert len(whole) >= len(frames(SPOKEN)) // 2, cuts  # most reads: whole audio frames


def test_frames_split_and_merged_across_reads_keep_their_order(
    make_server: Any, cuts: list[tuple[int, int]]
) -> None:
    """The loud audio with text and a ping behind it, written in pieces of random sizes, then
    the silence a frame per write: frames cut across reads go through websockets, whole ones
    at a boundary are cut by harken, and the session gets them all in the order sent (the
    UpdatePrompt between the loud audio and the silence is answered before the turn ends, and
    the ping does not disturb the connection)."""
    server = make_server()
    with start_session(server) as ws:
        split = b"".join(frames(SQUARE))
        split += wire(Opcode.TEXT, json.dumps({"type": "UpdatePrompt", "prompt": "Hi."}).encode())
        split += wire(Opcode.PING, b"are you there")
        rng = random.Random(7)
        at = 0
        while at < len(split):
            size = rng.choice([1, 3, 500, 700, 1300, 4000])
            ws.socket.sendall(split[at : at + size])
            at += size
            time.sleep(0.001)
        for frame in frames(QUIET):
            ws.socket.sendall(frame)
            time.sleep(0.001)
        seen = recv_until(ws, "ConversationText", timeout=10)
        assert [m["type"] for m in seen].index("PromptUpdated") < len(seen) - 1, seen
        assert seen[-1]["role"] == "user" and seen[-1]["content"] == HEARD, seen
        assert ws.protocol.state is State.OPEN
    cut = sum(used for used, _ in cuts)
    assert 0 < cut < len(split) + len(QUIET), cuts  # some of each way


def test_a_fragmented_audio_message_goes_through_websockets(
    make_server: Any, cuts: list[tuple[int, int]]
) -> None:
    """Audio sent as one message in fragments (FIN clear, then continuation frames) is
    reassembled by websockets and heard whole; whole frames after it are cut again."""
    with start_session(make_server()) as ws:
        ws.socket.sendall(wire(Opcode.BINARY, SQUARE[:1000], fin=False))
        ws.socket.sendall(wire(Opcode.CONT, SQUARE[1000:], fin=True))
        time.sleep(0.1)
        before = len(cuts)
        for frame in frames(QUIET):
            ws.socket.sendall(frame)
            time.sleep(0.001)
        assert user_says(ws) == HEARD
    assert not any(used for used, _ in cuts[:before])
    assert any(used for used, _ in cuts[before:])


def test_a_text_agent_still_gets_its_warning_before_the_answer_to_later_text(
    make_server: Any,
) -> None:
    """A frame cut by harken and the text right behind it in the same read: in order."""
    settings = json.loads(json.dumps(SETTINGS))
    del settings["agent"]["listen"]
    with start_session(make_server(), settings=settings) as ws:
        prompt = json.dumps({"type": "UpdatePrompt", "prompt": "Be brief."}).encode()
        ws.socket.sendall(wire(Opcode.BINARY, b"\x00\x01" * 320) + wire(Opcode.TEXT, prompt))
        kinds = [(m["type"], m.get("code")) for m in recv_until(ws, "PromptUpdated")]
        assert kinds == [("Warning", "AUDIO_IGNORED"), ("PromptUpdated", None)], kinds


def test_a_binary_frame_over_max_size_is_closed_by_websockets(make_server: Any) -> None:
    """A frame over websockets' ``max_size`` (``hard_frame_bytes``) is not cut by harken,
    whole or not: websockets closes the connection with 1009, as it always did."""
    server: ServerThread = make_server(max_frame_bytes=4096, hard_frame_bytes=8192)
    with start_session(server) as ws:
        ws.socket.sendall(wire(Opcode.BINARY, b"\x00" * 1000))
        ws.socket.sendall(wire(Opcode.BINARY, b"\x00" * 10_000))
        with pytest.raises(ConnectionClosed):
            for _ in range(50):
                ws.recv(timeout=2)
        assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 1009


def test_nothing_after_a_tripped_limit_is_read_even_in_the_same_read(make_server: Any) -> None:
    """A frame over the frame limit among frames cut by harken in one read: the session stops
    with its Error, and the frames behind it in that read are not handled (not counted)."""
    server: ServerThread = make_server(max_frame_bytes=4096)
    with start_session(server) as ws:
        ok = wire(Opcode.BINARY, b"\x00\x01" * 320)
        ws.socket.sendall(ok + wire(Opcode.BINARY, b"\x00" * 8192) + ok * 5)
        error = recv_until(ws, "Error")[-1]
        assert error["code"] == "MESSAGE_TOO_LARGE", error
    metrics = http_get(server.http("/metrics"))
    counted = re.search(r'harken_client_messages_total\{type="audio"\} ([0-9.]+)', metrics)
    assert counted is not None and float(counted[1]) == 2.0, metrics  # the ok one and the big one
