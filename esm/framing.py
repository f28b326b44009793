"""The runner ↔ worker wire: length-prefixed frames (4-byte big-endian length, then bytes)."""

from __future__ import annotations

import struct
from typing import BinaryIO

FRAME_HEADER = struct.Struct(">I")


def write_frame(stream: BinaryIO, payload: bytes) -> None:
    stream.write(FRAME_HEADER.pack(len(payload)) + payload)
    stream.flush()


def read_frame(stream: BinaryIO) -> bytes | None:
    """The next frame, or None at end of stream."""
    header = stream.read(FRAME_HEADER.size)
    if len(header) < FRAME_HEADER.size:
        return None
    (length,) = FRAME_HEADER.unpack(header)
    payload = stream.read(length)
    if len(payload) < length:
        return None
    return payload
