"""atheris target: the Raft wire codec (frames and hello) on arbitrary bytes.

Properties checked on every input:
- ``FrameDecoder.feed`` and ``decode_hello`` raise nothing but ``CodecError``;
- every batch the decoder accepts re-encodes to a frame that decodes to the same batch;
- after a ``CodecError`` the decoder refuses everything (the stream position is lost).

Run by ``fuzz/run.py``; alone: ``python fuzz/codec_target.py -runs=100000 [corpus_dir]``.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import atheris  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

with atheris.instrument_imports(include=["raftlib"]):
    from raftlib.transport.codec import (
        HELLO_BYTES,
        CodecError,
        FrameDecoder,
        decode_hello,
        encode_frame,
    )

from fuzz._common import chunks

# Small limits reach the limit checks quickly; the large default is covered by the tests.
MAX_FRAME_BYTES = 4096
FRAME_MESSAGES_MAX = 64


def test_one_input(data: bytes) -> None:
    if len(data) >= HELLO_BYTES:
        with contextlib.suppress(CodecError):
            decode_hello(data[:HELLO_BYTES])
    decoder = FrameDecoder(max_frame_bytes=MAX_FRAME_BYTES, frame_messages_max=FRAME_MESSAGES_MAX)
    batches = []
    failed = False
    for piece in chunks(data):
        try:
            batches.extend(decoder.feed(piece))
        except CodecError:
            failed = True
            break
    if failed:
        try:
            decoder.feed(b"\x00")
        except CodecError:
            pass
        else:
            raise AssertionError("the decoder accepted input after an error")
    for batch in batches:
        if not batch or len(batch) > FRAME_MESSAGES_MAX:
            raise AssertionError(f"decoder returned a batch of {len(batch)} messages")
        again = FrameDecoder(max_frame_bytes=1 << 30).feed(encode_frame(batch))
        if again != [batch]:
            raise AssertionError(f"re-encoded batch decoded differently: {batch!r} {again!r}")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
