"""git's smart HTTP protocol, read-only: `git clone http://HOST/git/NAME` from the mirrors.

The two requests of a fetch (gitprotocol-http(5)):
- `GET /git/NAME/info/refs?service=git-upload-pack`: the ref advertisement, from
  `git upload-pack --stateless-rpc --advertise-refs`, after a `# service=` pkt-line
  unless the client asked for protocol v2 (`Git-Protocol: version=2`);
- `POST /git/NAME/git-upload-pack`: the negotiation (read whole, inflated when
  gzipped, at most 64 MiB before and after inflating, else 413) into
  `git upload-pack --stateless-rpc`, whose answer, the pack, is streamed back as git
  writes it; a request git refuses outright (not pkt-lines) is 400 with git's words.

A mirror another storage node owns (or, in a process without the gitserver role, one
not on this process's disk) is read there: the request goes to that node's internal
API and its answer streams back (`nodes.forward`, whose `node_of` decides which); 503
with Retry-After while the node cannot answer. The internal API (`nodes.internal`)
answers with this module's `advertisement` and `pack`.

Pushes (`git-receive-pack`) get 403. Authentication is a token as the basic-auth
password (what git sends from a credential helper or `.netrc`) or a Bearer header;
without one only public repositories answer, and the rest ask for credentials with
401, whether or not they exist. Visibility is the API's.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator
from typing import IO

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from starlette.requests import ClientDisconnect

from repodepot.accounts import ANONYMOUS, Principal
from repodepot.exceptions import NotAuthenticated, NotFound
from repodepot.git.errors import GitCommandError, GitError
from repodepot.gitserver.reads import Reads
from repodepot.nodes.forward import node_of
from repodepot.web import bodies
from repodepot.web.deps import services

logger = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)
_PROTOCOL = re.compile(r"version=[0-9](:[A-Za-z0-9_=.-]+)*")
UPLOAD_PACK = "git-upload-pack"
RECEIVE_PACK = "git-receive-pack"
MAX_REQUEST = 64 << 20
READ_ONLY = "repodepot mirrors are read-only: push to the upstream repository instead\n"


def pkt_line(text: str) -> bytes:
    """One pkt-line: four hex digits of length (themselves included), then the data."""
    data = text.encode()
    return f"{len(data) + 4:04x}".encode() + data


def _request_token(request: Request) -> str | None:
    """The token of a Basic (as the password) or Bearer authorization; "" if malformed."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(value.strip()).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return ""
        return password or user  # a token as the password, or alone as the user name
    return ""


def _ask_for_credentials(message: str) -> Response:
    return PlainTextResponse(
        message, status_code=401, headers={"WWW-Authenticate": 'Basic realm="repodepot"'}
    )


async def request_caller(request: Request) -> Principal:
    """Who sent a git or go request: ANONYMOUS without a token; raises NotAuthenticated."""
    token = _request_token(request)
    if token is None:
        return ANONYMOUS
    return await services(request).accounts.authenticate(token)


async def _mirror(request: Request, name: str) -> tuple[int, str] | Response:
    """The id and name of the repository the caller may read, or the answer to give instead."""
    svc = services(request)
    try:
        caller = await request_caller(request)
    except NotAuthenticated:
        return _ask_for_credentials("that token is not valid\n")
    name = name.removesuffix(".git")
    try:
        repo = await svc.repositories.get(caller, name)
    except NotFound:
        if caller.is_anonymous:
            return _ask_for_credentials("authentication required\n")
        return PlainTextResponse(f"repository {name!r} not found\n", status_code=404)
    return repo.id, name


def _not_cloned(error: NotFound) -> Response:
    return PlainTextResponse(f"repository {error.message}\n", status_code=404)


def git_protocol(request: Request) -> str | None:
    """The client's `Git-Protocol` header when well-formed (passed to git), else None."""
    value = request.headers.get("git-protocol")
    return value if value and _PROTOCOL.fullmatch(value) else None


@router.get("/git/{name:path}/info/refs")
async def advertise(request: Request, name: str, service: str | None = None) -> Response:
    """The ref advertisement for git-upload-pack."""
    if service == RECEIVE_PACK:
        return PlainTextResponse(READ_ONLY, status_code=403)
    if service != UPLOAD_PACK:
        return PlainTextResponse(
            "only git's smart HTTP protocol is served: use git 1.6.6 or newer\n", status_code=403
        )
    found = await _mirror(request, name)
    if isinstance(found, Response):
        return found
    repository_id, name = found
    svc = services(request)
    protocol = git_protocol(request)
    try:
        node = await node_of(svc, repository_id)
        if node is not None:
            return await svc.forwarder.advertise(node, repository_id, name, protocol)
        return advertisement(svc.reads, repository_id, name, protocol)
    except NotFound as error:  # not cloned yet
        return _not_cloned(error)


def advertisement(reads: Reads, repository_id: int, name: str, protocol: str | None) -> Response:
    """The ref advertisement of the mirror on this node's disk, streamed.

    `protocol` is the client's checked `Git-Protocol`. Raises NotFound (naming `name`)
    when this node has no mirror of the repository.
    """
    output = reads.advertise_refs(repository_id, name, protocol)

    async def body() -> AsyncIterator[bytes]:
        if not (protocol or "").startswith("version=2"):
            yield pkt_line(f"# service={UPLOAD_PACK}\n") + b"0000"
        async for chunk in output:
            yield chunk

    return StreamingResponse(
        body(),
        media_type=f"application/x-{UPLOAD_PACK}-advertisement",
        headers={"Cache-Control": "no-cache"},
    )


@router.post("/git/{name:path}/git-upload-pack", max_body_size=MAX_REQUEST)
async def upload_pack(request: Request, name: str) -> Response:
    """The negotiation and the pack, streamed; 400 with git's words for a request it refuses."""
    if request.headers.get("content-type") != f"application/x-{UPLOAD_PACK}-request":
        return PlainTextResponse("expected a git-upload-pack request\n", status_code=415)
    found = await _mirror(request, name)
    if isinstance(found, Response):
        return found
    repository_id, name = found
    svc = services(request)
    protocol = git_protocol(request)
    try:
        node = await node_of(svc, repository_id)
        if node is not None:
            # Streamed to the node as it arrives: the node reads it whole before it
            # answers, so the relayed answer's disconnect watch takes none of it.
            return await svc.forwarder.upload_pack(node, repository_id, name, request, protocol)
        return await pack(request, svc.reads, repository_id, name, protocol)
    except NotFound as error:  # not cloned yet
        return _not_cloned(error)


async def pack(
    request: Request, reads: Reads, repository_id: int, name: str, protocol: str | None
) -> Response:
    """The answer to the negotiation in `request`'s body from this node's mirror: the pack.

    400 with git's words when git refuses the request. Raises NotFound (naming `name`)
    when this node has no mirror of the repository, before the body is read; the body's
    errors (BodyTooLarge, MalformedBody, UnsupportedEncoding) as `bodies.spool` does.
    """
    reads.mirror_dir(repository_id, name)
    # Read whole before answering: the streamed answer's disconnect watch would take the
    # body's messages otherwise. Past 1 MiB it waits on disk, never past MAX_REQUEST.
    try:
        negotiation = await bodies.spool(request, limit=MAX_REQUEST, directory=reads.spool_dir)
    except ClientDisconnect:
        # The client stopped sending before its body's end (it left, or the web process
        # forwarding it stopped at its own cap): no one waits for this answer.
        return PlainTextResponse("the request body ended early\n", status_code=400)

    async def request_body() -> AsyncIterator[bytes]:
        while chunk := await asyncio.to_thread(negotiation.read, 1 << 16):
            yield chunk

    try:
        output = reads.upload_pack(repository_id, name, request_body(), protocol)
    except NotFound:  # removed since the look above
        negotiation.close()
        raise
    return await _streamed(output, closing=negotiation)


async def _streamed(output: AsyncGenerator[bytes, None], *, closing: IO[bytes]) -> Response:
    """The answer as git writes it, once git accepts the request (400 with its words if not).

    A failure later ends the stream (git's client reports it) with a log line, no traceback.
    """
    try:
        first = await anext(output, b"")
    except GitCommandError as error:
        await output.aclose()
        closing.close()
        return PlainTextResponse(f"git refused the request: {error.message}\n", status_code=400)
    except BaseException:
        closing.close()
        raise

    async def rest() -> AsyncIterator[bytes]:
        try:
            if first:
                yield first
            async for chunk in output:
                yield chunk
        except GitError as error:
            logger.warning(
                "upload-pack ended early: %s", error.message, extra={"action": "smarthttp.failed"}
            )
        finally:
            await output.aclose()
            closing.close()

    return StreamingResponse(
        rest(),
        media_type=f"application/x-{UPLOAD_PACK}-result",
        headers={"Cache-Control": "no-cache"},
    )


@router.post("/git/{name:path}/git-receive-pack")
async def receive_pack(name: str) -> Response:
    """Pushes are refused: the mirrors follow their upstreams."""
    return PlainTextResponse(READ_ONLY, status_code=403)
