"""`/goproxy`: the GOPROXY protocol (go help goproxy), answered from the mirrors.

`GOPROXY=http://HOST/goproxy` makes the go command ask, for a module path and version
in `!`-case-encoding:
- `/goproxy/{module}/@v/list`: the tagged versions, one a line (200, empty if none);
- `/goproxy/{module}/@v/{version}.info`: `{"Version", "Time", "Origin"}` for a version,
  a pseudo-version, a tag, a branch or a commit hash;
- `/goproxy/{module}/@v/{version}.mod`: the go.mod at that version;
- `/goproxy/{module}/@v/{version}.zip`: the module zip (immutable, with an ETag);
- `/goproxy/{module}/@latest`: the version `go get M` would take.

Errors are plain text the go command shows: 404 for what is not here, 410 for a version
whose content is gone, 422 for a module the go command would refuse to zip. A private
module the caller may not read (no token, which is the basic-auth password as `.netrc`
sends it, or a member's who is not its owner) answers exactly as a missing one, status
and words, for all five requests.
`/goproxy/sumdb/…` is 404, so the go command asks its checksum database directly.

The caller's access and the repository are decided here, from the database; a mirror
another storage node holds is served there (`nodes.forward`, `nodes.internal`) and its
answer relayed as it arrives, a zip included; 503 with Retry-After while it cannot answer.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, PlainTextResponse, Response, StreamingResponse

from repodepot.exceptions import NotAuthenticated, NotFound, Unavailable
from repodepot.goproxy.records import Module, ModuleUnservable, VersionGone
from repodepot.goproxy.versions import BadPath, unescape
from repodepot.nodes.forward import node_of
from repodepot.web.deps import services
from repodepot.web.smarthttp import request_caller

router = APIRouter(include_in_schema=False)
SUMDB = (
    "repodepot does not proxy checksum databases: the go command asks sum.golang.org "
    "itself. For modules it cannot know, set GONOSUMDB to their paths.\n"
)
IMMUTABLE = "max-age=31536000, immutable"


def _text(message: str, status: int, headers: dict[str, str] | None = None) -> PlainTextResponse:
    return PlainTextResponse(message.rstrip("\n") + "\n", status_code=status, headers=headers)


Finder = Callable[[str], Awaitable[Module | Response]]
"""Module path → the module to serve here, or the answer of the node that serves it."""


@router.get("/goproxy/{rest:path}")
async def goproxy(request: Request, rest: str) -> Response:
    """One GOPROXY request; see the module docstring."""
    if rest.startswith("sumdb/"):
        return _text(SUMDB, 404)

    async def find(path: str) -> Module | Response:
        svc = services(request)
        proxy = svc.goproxy
        repo = await proxy.repository(await request_caller(request), path)
        node = await node_of(svc, repo.id)
        if node is None:
            return proxy.module(repo, path)
        etag = request.headers.get("if-none-match")
        return await svc.forwarder.goproxy(node, repo.id, repo.name, rest, etag)

    return await answer(request, rest, find)


async def answer(request: Request, rest: str, find: Finder) -> Response:
    """The answer to GOPROXY request `/goproxy/{rest}`, with the module `find` gives.

    Errors are the protocol's plain text (the module docstring's statuses); 401 for a
    token that is not valid, 503 with Retry-After while the node holding the mirror
    cannot answer. A storage node answers a web process's forwarded request with this,
    its `find` trusting the repository the web process chose.
    """
    parsed = _parse(rest)
    if parsed is None:
        return _text(f"not a GOPROXY request: /goproxy/{rest}", 404)
    escaped_module, what, escaped_version = parsed
    try:
        path, version = unescape(escaped_module), unescape(escaped_version)
        found = await find(path)
        if isinstance(found, Response):
            return found
        return await _answer(request, found, what, version)
    except BadPath as error:
        return _text(str(error), 404)
    except NotAuthenticated:
        return _text("that token is not valid", 401)
    except NotFound as error:
        return _text(error.message, 404)
    except VersionGone as error:
        return _text(error.message, 410)
    except ModuleUnservable as error:
        return _text(error.message, 422)
    except Unavailable as error:
        return _text(error.message, 503, headers={"Retry-After": str(error.retry_after)})


def _parse(rest: str) -> tuple[str, str, str] | None:
    """The escaped module path, the request (`list`, `info`, ...) and the escaped version.

    None for a path with an empty, `.` or `..` element, or a version with a `/`: no
    GOPROXY request has one, and such a path would climb out of its route wherever it is
    passed on (a storage node's `/internal/goproxy/{id}/…`).
    """
    if any(element in ("", ".", "..") for element in rest.split("/")):
        return None
    if rest.endswith("/@latest"):
        return rest.removesuffix("/@latest"), "latest", ""
    if "/@v/" not in rest:
        return None
    escaped_module, _, tail = rest.rpartition("/@v/")
    if tail == "list":
        return escaped_module, "list", ""
    escaped_version, dot, what = tail.rpartition(".")
    if not dot or what not in ("info", "mod", "zip") or "/" in escaped_version:
        return None
    return escaped_module, what, escaped_version


async def _answer(request: Request, module: Module, what: str, version: str) -> Response:
    proxy = services(request).goproxy
    if what == "list":
        listed = await proxy.versions(module)
        return PlainTextResponse("".join(f"{v}\n" for v in listed))
    if what in ("latest", "info"):
        found = await (proxy.latest(module) if what == "latest" else proxy.info(module, version))
        body = json.dumps(found.to_json(module.source_url)) + "\n"
        return Response(body, media_type="application/json")
    if what == "mod":
        data = await proxy.go_mod(module, version)
        return Response(data, media_type="text/plain; charset=utf-8")
    zipped = await proxy.zip(module, version)
    headers = {
        "ETag": zipped.etag,
        "Cache-Control": ("public, " if module.public else "private, ") + IMMUTABLE,
    }
    if request.headers.get("if-none-match") == zipped.etag:
        return Response(status_code=304, headers=headers)
    if zipped.path is not None:
        return FileResponse(zipped.path, media_type="application/zip", headers=headers)
    assert zipped.stream is not None
    return StreamingResponse(zipped.stream, media_type="application/zip", headers=headers)
