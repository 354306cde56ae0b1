"""gzip inflated a bounded step at a time, so a bomb never makes more than one step at once.

Pure; the callers (request bodies, code host answers) count what comes out against
their own caps and turn `zlib.error` into their own errors.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

STEP = 1 << 16
"""Inflated bytes per `decompress()` call, at most."""


def gzip_stream() -> zlib._Decompress:
    """A decompressor of one gzip member."""
    return zlib.decompressobj(16 + zlib.MAX_WBITS)


def steps(inflate: zlib._Decompress, data: bytes) -> Iterator[bytes]:
    """What `data` inflates to, at most STEP bytes at a time; raises zlib.error.

    Ends at the end of the gzip stream; whatever follows it is in `inflate.unused_data`.
    """
    while True:
        piece = inflate.decompress(data, STEP)
        data = inflate.unconsumed_tail
        if piece:
            yield piece
        if inflate.eof or (not data and len(piece) < STEP):
            return  # a full step may leave output inside zlib: only a short one is the end
