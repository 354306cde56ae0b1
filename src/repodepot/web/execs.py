"""A read-only `git` in a mirror on this node's disk, as an HTTP answer.

The exec route's and a storage node's internal one (`nodes.internal`): both stream and
cap it alike.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi.responses import StreamingResponse

from repodepot.exceptions import InvalidInput
from repodepot.git.errors import GitError
from repodepot.gitserver.reads import Reads
from repodepot.nodes.forward import OUTPUT_CAP


async def exec_output(
    reads: Reads, repository_id: int, name: str, args: list[str], *, user_id: int, cap: int
) -> StreamingResponse:
    """The output of `git ARGS` in the mirror on this node's disk, streamed, at most `cap` bytes.

    Answered once git wrote its first bytes (or ended). Raises InvalidInput naming the
    argument refused, or (field `args`) with git's words when it fails before writing
    anything; NotFound (naming `name`) before the first clone; TooManyRequests past this
    process's or `user_id`'s share of execs at once.
    """
    output = reads.exec(repository_id, name, args, user_id=user_id)
    try:
        first = await anext(output, b"")
    except GitError as error:
        await output.aclose()
        raise InvalidInput(error.message, field="args") from None

    async def capped() -> AsyncIterator[bytes]:
        sent = 0
        try:
            chunk: bytes | None = first
            while chunk:
                chunk = chunk[: cap - sent]
                sent += len(chunk)
                yield chunk
                if sent >= cap:
                    return
                chunk = await anext(output, b"")
        except GitError:
            return  # already streaming: the output simply ends
        finally:
            await output.aclose()

    return StreamingResponse(
        capped(),
        media_type="application/octet-stream",
        headers={OUTPUT_CAP: str(cap)},
    )
