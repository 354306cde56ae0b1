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

Every request carries `Authorization: Bearer <REPODEPOT_INTERNAL_SECRET>`, compared in
constant time; without it, with another, or when this process has no secret, the answer
is 403 before anything else is looked at: not even whether the repository exists.
"""

from __future__ import annotations

import hmac
from dataclasses import asdict

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from repodepot.exceptions import NotFound
from repodepot.nodes.forward import internal_name
from repodepot.web.deps import services
from repodepot.web.smarthttp import MAX_REQUEST, UPLOAD_PACK, advertisement, git_protocol, pack

router = APIRouter(prefix="/internal", include_in_schema=False)
NO_SECRET = "internal calls are refused: this node has no REPODEPOT_INTERNAL_SECRET\n"
WRONG_SECRET = "internal calls need 'Authorization: Bearer <REPODEPOT_INTERNAL_SECRET>'\n"


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


def _repository_id(text: str) -> int | None:
    # A str in the route, parsed here: a malformed id gets the 403 first, like any other.
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None


def _not_here(request: Request, key: int | None) -> Response:
    node = services(request).settings.node_name
    which = "that repository" if key is None else f"repository {key}"
    return PlainTextResponse(f"no mirror of {which} on node {node}\n", status_code=404)


@router.get("/repos/{repository_id}/info/refs")
async def advertise(request: Request, repository_id: str, service: str | None = None) -> Response:
    """The ref advertisement of a mirror on this node, for git-upload-pack."""
    if (refused := refusal(request)) is not None:
        return refused
    if service != UPLOAD_PACK:
        return PlainTextResponse(f"only {UPLOAD_PACK} is served\n", status_code=403)
    key = _repository_id(repository_id)
    if key is None:
        return _not_here(request, key)
    try:
        reads = services(request).reads
        return advertisement(reads, key, internal_name(key), git_protocol(request))
    except NotFound:
        return _not_here(request, key)


@router.post("/repos/{repository_id}/git-upload-pack", max_body_size=MAX_REQUEST)
async def upload_pack(request: Request, repository_id: str) -> Response:
    """The pack a mirror on this node answers to a negotiation, streamed."""
    if (refused := refusal(request)) is not None:
        return refused
    if request.headers.get("content-type") != f"application/x-{UPLOAD_PACK}-request":
        return PlainTextResponse(f"expected a {UPLOAD_PACK} request\n", status_code=415)
    key = _repository_id(repository_id)
    if key is None:
        return _not_here(request, key)
    try:
        reads = services(request).reads
        return await pack(request, reads, key, internal_name(key), git_protocol(request))
    except NotFound:
        return _not_here(request, key)


@router.get("/repos/{repository_id}/commits/{rev:path}")
async def ensure_revision(request: Request, repository_id: str, rev: str) -> Response:
    """The commit `rev` names in a mirror on this node, fetched first when it is missing.

    Its errors are the app's (InvalidInput 422, NotFound 404), as plain text.
    """
    if (refused := refusal(request)) is not None:
        return refused
    key = _repository_id(repository_id)
    if key is None:
        return _not_here(request, key)
    commit = await services(request).reads.ensure_revision(key, internal_name(key), rev)
    return JSONResponse(asdict(commit))
