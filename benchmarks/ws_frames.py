"""The server-to-client WebSocket frames at the front of a buffer (RFC 6455, unmasked): the
minimal parser the benchmarks' light clients share, so that 50-400 sessions cost little CPU."""

from __future__ import annotations

from collections.abc import Iterator


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
