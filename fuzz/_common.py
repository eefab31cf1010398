"""Shared by the fuzz targets: chunked feeding, so partial reads are exercised too."""

from __future__ import annotations

from collections.abc import Iterator


def chunks(data: bytes, first_byte_is_size: bool = True) -> Iterator[bytes]:
    """Split ``data`` into pieces whose size is taken from its first byte (1..256), so the
    fuzzer also explores how a stream is cut into reads."""
    if not data:
        return
    size = data[0] + 1 if first_byte_is_size else len(data)
    body = data[1:] if first_byte_is_size else data
    for start in range(0, len(body), size):
        yield body[start : start + size]
