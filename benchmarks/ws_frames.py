"""The minimal WebSocket framing (RFC 6455) the benchmarks' light clients share, so that
50-400 sessions cost little CPU: masked client frames out, unmasked server frames in."""

from __future__ import annotations

from collections.abc import Iterator

MASK = b"\x5a\xa5\x3c\xc3"  # one fixed key: the server unmasks, nobody else reads loopback


def masked(payload: bytes) -> bytes:
    n = len(payload)
    if n == 0:
        return b""
    key = (MASK * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One masked, unfragmented client frame."""
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, 0x80 | n])
    elif n < 65536:
        head = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
    return head + MASK + masked(payload)


def split_frames(buf: bytearray) -> Iterator[tuple[int, bytes]]:
    """Yield ``(opcode, payload)`` of each complete frame, removing it from ``buf``."""
    while len(buf) >= 2:
        opcode, n, offset = buf[0] & 0x0F, buf[1] & 0x7F, 2
        if n == 126:
            if len(buf) < 4:
                return
            n, offset = int.from_bytes(buf[2:4], "big"), 4
        elif n == 127:
            if len(buf) < 10:
                return
            n, offset = int.from_bytes(buf[2:10], "big"), 10
        if len(buf) < offset + n:
            return
        payload = bytes(buf[offset : offset + n])
        del buf[: offset + n]
        yield opcode, payload
