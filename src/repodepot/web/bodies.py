"""Request bodies read as bounded streams: a byte cap before and after inflating, bounded JSON.

Three walls, so that no request can make the server hold more than it allows:

- FastAPI's `max_body_size` counts the bytes that arrive (`settings.request_max_bytes`
  for the app, a larger cap on the routes that read their own bodies) and answers 413,
  at once when `Content-Length` already says too much;
- `chunks()` inflates `Content-Encoding: gzip` a step at a time (never an unbounded
  `flush()`) and stops past the same cap: a 1 MB gzip bomb costs at most the cap;
- `loads()` refuses JSON nested deeper than 64 levels, before it can exhaust the stack
  of whoever walks it next; `JsonRoute` makes every JSON route parse with it.
"""

from __future__ import annotations

import asyncio
import tempfile
import zlib
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import IO, Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY

from repodepot.exceptions import RepodepotError
from repodepot.inflate import gzip_stream, steps
from repodepot.jsonbound import loads as loads  # webhooks.py reads it here

SPOOL_IN_MEMORY = 1 << 20


class BodyTooLarge(RepodepotError):
    """The request body is too large."""

    code = "too_large"

    def __init__(self, limit: int, *, inflated: bool = False) -> None:
        self.limit = limit
        after = " once inflated" if inflated else ""
        super().__init__(f"the request body is larger than {limit} bytes{after}")


class MalformedBody(RepodepotError):
    """The request body cannot be read."""

    code = "malformed"


class UnsupportedEncoding(RepodepotError):
    """The request's Content-Encoding is not supported: send gzip or none."""

    code = "unsupported_encoding"


async def chunks(request: Request, *, limit: int) -> AsyncIterator[bytes]:
    """The body as it arrives, inflated when gzipped, at most `limit` bytes before and after.

    Raises BodyTooLarge past `limit` (at once when `Content-Length` says so),
    MalformedBody for broken gzip, UnsupportedEncoding for another coding.
    """
    if _content_length(request) > limit:
        raise BodyTooLarge(limit)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip", "x-gzip"):
        raise UnsupportedEncoding(
            f"Content-Encoding {encoding[:40]!r} is not supported: send gzip or none"
        )
    inflate = gzip_stream() if encoding != "identity" else None
    received = produced = 0
    async for raw in request.stream():
        received += len(raw)
        if received > limit:
            raise BodyTooLarge(limit)
        for chunk in _inflated(inflate, raw) if inflate else (raw,):
            produced += len(chunk)
            if produced > limit:
                raise BodyTooLarge(limit, inflated=True)
            yield chunk
    if inflate is not None and not inflate.eof:
        raise MalformedBody("the gzip request body ends early")


def _inflated(inflate: zlib._Decompress, data: bytes) -> Iterator[bytes]:
    try:
        yield from steps(inflate, data)
    except zlib.error as error:
        raise MalformedBody(f"the request body is not valid gzip: {error}") from None
    if inflate.unused_data:
        raise MalformedBody("the request body has data after its gzip stream")


def _content_length(request: Request) -> int:
    try:
        return int(request.headers.get("content-length", "0"))
    except ValueError:
        raise MalformedBody("Content-Length is not a number") from None


async def read(request: Request, *, limit: int) -> bytes:
    """The whole body (see `chunks`), held in memory: for small caps only."""
    return b"".join([chunk async for chunk in chunks(request, limit=limit)])


async def spool(request: Request, *, limit: int, directory: Path) -> IO[bytes]:
    """The whole body (see `chunks`) in a temporary file at its start; close it after use.

    The first SPOOL_IN_MEMORY bytes stay in memory, the rest go to an unnamed file in
    `directory`: a body at its cap costs the disk, not the memory, of the server.
    """
    # Closed here when reading fails, else by the caller.
    file = tempfile.SpooledTemporaryFile(SPOOL_IN_MEMORY, dir=str(directory))  # noqa: SIM115
    try:
        async for chunk in chunks(request, limit=limit):
            await asyncio.to_thread(file.write, chunk)
        file.seek(0)
    except BaseException:
        file.close()
        raise
    return file


class _BoundedJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads(await self.body())
        return self._json


class JsonRoute(APIRoute):
    """An API route whose JSON body is parsed by `loads` (422 past the depth bound).

    A `Content-Length` past the cap is 413 before the route runs, also where it reads no
    body: Starlette answers such a request 413 whatever the route does, so the route must
    not act on it. (Starlette words that answer itself, in plain text.)
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """FastAPI's handler, given a request whose `json()` bounds the depth."""
        handler = super().get_route_handler()

        async def bounded(request: Request) -> Response:
            limit = request.scope.get(MAX_BODY_SIZE_SCOPE_KEY)
            if limit is not None and _content_length(request) > limit:
                raise BodyTooLarge(limit)
            return await handler(_BoundedJsonRequest(request.scope, request.receive))

        return bounded
