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
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, PlainTextResponse, Response, StreamingResponse

from repodepot.accounts import Principal
from repodepot.exceptions import NotAuthenticated, NotFound
from repodepot.goproxy.records import ModuleUnservable, VersionGone
from repodepot.goproxy.versions import BadPath, unescape
from repodepot.web.deps import services
from repodepot.web.smarthttp import request_caller

router = APIRouter(include_in_schema=False)
SUMDB = (
    "repodepot does not proxy checksum databases: the go command asks sum.golang.org "
    "itself. For modules it cannot know, set GONOSUMDB to their paths.\n"
)
IMMUTABLE = "max-age=31536000, immutable"


def _text(message: str, status: int) -> PlainTextResponse:
    return PlainTextResponse(message.rstrip("\n") + "\n", status_code=status)


@router.get("/goproxy/{rest:path}")
async def goproxy(request: Request, rest: str) -> Response:
    """One GOPROXY request; see the module docstring."""
    if rest.startswith("sumdb/"):
        return _text(SUMDB, 404)
    if rest.endswith("/@latest"):
        escaped_module, what, escaped_version = rest.removesuffix("/@latest"), "latest", ""
    elif "/@v/" in rest:
        escaped_module, _, tail = rest.rpartition("/@v/")
        if tail == "list":
            what, escaped_version = "list", ""
        else:
            escaped_version, dot, what = tail.rpartition(".")
            if not dot or what not in ("info", "mod", "zip"):
                return _text(f"not a GOPROXY request: /goproxy/{rest}", 404)
    else:
        return _text(f"not a GOPROXY request: /goproxy/{rest}", 404)
    try:
        path, version = unescape(escaped_module), unescape(escaped_version)
        caller = await request_caller(request)
        return await _answer(request, caller, path, what, version)
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


async def _answer(
    request: Request, caller: Principal, path: str, what: str, version: str
) -> Response:
    proxy = services(request).goproxy
    module = await proxy.resolve(caller, path)
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
    answer = await proxy.zip(module, version)
    headers = {
        "ETag": answer.etag,
        "Cache-Control": ("public, " if module.public else "private, ") + IMMUTABLE,
    }
    if request.headers.get("if-none-match") == answer.etag:
        return Response(status_code=304, headers=headers)
    if answer.path is not None:
        return FileResponse(answer.path, media_type="application/zip", headers=headers)
    assert answer.stream is not None
    return StreamingResponse(answer.stream, media_type="application/zip", headers=headers)
