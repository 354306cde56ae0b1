"""A gitserver process's internal API: reads of the mirrors on its disk.

Mounted only in a process with the gitserver role (`web.app`); web processes forward
their clients' reads here (`nodes.forward`) once they have decided who may read what,
so a repository is named by its id and no caller's token comes with it:

- `GET /internal/repos/{id}/info/refs?service=git-upload-pack`
- `POST /internal/repos/{id}/git-upload-pack`

answered as the public smart HTTP routes answer (`web.smarthttp.advertisement`, `pack`:
the same streaming, the same body bounds). A mirror this node does not hold is 404.

- `GET /internal/repos/{id}/commits/{rev}`: EnsureRevision (`Reads.ensure_revision`),
  the commit as JSON; 422 for a revision that is not plain, 404 for no commit or no
  mirror, in the app's words (plain text), naming the repository `forward.internal_name`.
- `POST /internal/repos/{id}/exec` with `{"args", "user_id", "max_bytes"}`: a read-only
  git command's output (`web.api.repos.exec_output`), streamed, at most `max_bytes`,
  counted against `user_id`'s and this process's share (429, plain text, Retry-After);
  a refusal is 422 with the API's JSON error (its message and field), no mirror 404.
- `GET /internal/goproxy/{id}/{rest}`: GOPROXY request `/goproxy/{rest}` answered as the
  public route answers it (`web.goproxy.answer`), from repository `id`, which the web
  process chose for its caller: no access is checked here.

Every request carries `Authorization: Bearer <REPODEPOT_INTERNAL_SECRET>`, compared in
constant time; without it, with another, or when this process has no secret, the answer
is 403 before anything else is looked at: not even whether the repository exists.
"""

from __future__ import annotations

import hmac
from dataclasses import asdict

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field, ValidationError

from repodepot.exceptions import InvalidInput, NotFound
from repodepot.goproxy.records import Module
from repodepot.nodes.forward import internal_name
from repodepot.web.deps import services
from repodepot.web.errors import error_body
from repodepot.web.execs import exec_output
from repodepot.web.goproxy import answer
from repodepot.web.smarthttp import MAX_REQUEST, UPLOAD_PACK, advertisement, git_protocol, pack

router = APIRouter(prefix="/internal", include_in_schema=False)
NO_SECRET = "internal calls are refused: this node has no REPODEPOT_INTERNAL_SECRET\n"
WRONG_SECRET = "internal calls need 'Authorization: Bearer <REPODEPOT_INTERNAL_SECRET>'\n"
MAX_EXEC_REQUEST = 1 << 20
"""An exec request's body, at most: 64 arguments of 4 KiB (`allowlist`) fit four times."""


class ExecCall(BaseModel):
    """What a web process sends to run an exec here (`Forwarder.exec`)."""

    args: list[str]
    user_id: int
    max_bytes: int = Field(ge=1)


def refusal(request: Request) -> Response | None:
    """403 unless the request carries this process's internal secret; None when it does."""
    secret = services(request).settings.internal_secret
    if secret is None:
        return PlainTextResponse(NO_SECRET, status_code=403)
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    expected = secret.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        return PlainTextResponse(WRONG_SECRET, status_code=403)
    return None


def admitted(request: Request, repository_id: str) -> int | Response:
    """The repository id an internal call names, once it carries the secret.

    Otherwise the answer to give: 403 (`refusal`) before anything else, then 404 for an
    id that is not one (a str in the route, parsed here: a malformed id gets the 403 first,
    like any other).
    """
    if (refused := refusal(request)) is not None:
        return refused
    ok = repository_id.isascii() and repository_id.isdigit() and len(repository_id) <= 18
    return int(repository_id) if ok else not_here(request, None)


def not_here(request: Request, key: int | None) -> Response:
    """404: this node has no mirror of repository `key` (None: of an id that is not one)."""
    node = services(request).settings.node_name
    which = "that repository" if key is None else internal_name(key)
    return PlainTextResponse(f"no mirror of {which} on node {node}\n", status_code=404)


@router.get("/repos/{repository_id}/info/refs")
async def advertise(request: Request, repository_id: str, service: str | None = None) -> Response:
    """The ref advertisement of a mirror on this node, for git-upload-pack."""
    if (refused := refusal(request)) is not None:
        return refused
    if service != UPLOAD_PACK:
        return PlainTextResponse(f"only {UPLOAD_PACK} is served\n", status_code=403)
    key = admitted(request, repository_id)
    if isinstance(key, Response):
        return key
    try:
        reads = services(request).reads
        return advertisement(reads, key, internal_name(key), git_protocol(request))
    except NotFound:
        return not_here(request, key)


@router.post("/repos/{repository_id}/git-upload-pack", max_body_size=MAX_REQUEST)
async def upload_pack(request: Request, repository_id: str) -> Response:
    """The pack a mirror on this node answers to a negotiation, streamed."""
    if (refused := refusal(request)) is not None:
        return refused
    if request.headers.get("content-type") != f"application/x-{UPLOAD_PACK}-request":
        return PlainTextResponse(f"expected a {UPLOAD_PACK} request\n", status_code=415)
    key = admitted(request, repository_id)
    if isinstance(key, Response):
        return key
    try:
        reads = services(request).reads
        return await pack(request, reads, key, internal_name(key), git_protocol(request))
    except NotFound:
        return not_here(request, key)


@router.get("/repos/{repository_id}/commits/{rev:path}")
async def ensure_revision(request: Request, repository_id: str, rev: str) -> Response:
    """The commit `rev` names in a mirror on this node, fetched first when it is missing.

    Its errors are the app's (InvalidInput 422, NotFound 404), as plain text.
    """
    key = admitted(request, repository_id)
    if isinstance(key, Response):
        return key
    commit = await services(request).reads.ensure_revision(key, internal_name(key), rev)
    return JSONResponse(asdict(commit))


@router.post("/repos/{repository_id}/exec", max_body_size=MAX_EXEC_REQUEST)
async def exec_git(request: Request, repository_id: str) -> Response:
    """A read-only git command's output from a mirror on this node, streamed.

    Its body is read after the secret is checked (a declared body would be validated
    before). Errors: 400 for a body that is not an `ExecCall`, 422 as the API's JSON
    error, 429 and 404 in plain text.
    """
    key = admitted(request, repository_id)
    if isinstance(key, Response):
        return key
    try:
        call = ExecCall.model_validate_json(await request.body())
    except ValidationError as error:
        return PlainTextResponse(f"not an exec request: {error}\n", status_code=400)
    reads = services(request).reads
    try:
        return await exec_output(
            reads, key, internal_name(key), call.args, user_id=call.user_id, cap=call.max_bytes
        )
    except InvalidInput as error:
        return JSONResponse(error_body(error.code, error.message, error.field), status_code=422)
    except NotFound:
        return not_here(request, key)


@router.get("/goproxy/{repository_id}/{rest:path}")
async def goproxy(request: Request, repository_id: str, rest: str) -> Response:
    """GOPROXY request `/goproxy/{rest}` served from repository `repository_id` on this node."""
    key = admitted(request, repository_id)
    if isinstance(key, Response):
        return key
    proxy = services(request).goproxy

    async def find(path: str) -> Module:
        return await proxy.resolve_in(path, key)

    return await answer(request, rest, find)
