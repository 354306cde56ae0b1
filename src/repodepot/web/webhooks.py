"""Push webhooks: a push on a code host puts that repository's mirror at the head of the queue.

Each connection may have a `webhookSecret` (sealed like its token). A delivery is
accepted when it proves one of the secrets of its kind's connections:

- `POST /webhooks/github`: `X-Hub-Signature-256: sha256=` + hex HMAC-SHA256(secret,
  body); the repository is `repository.node_id`.
- `POST /webhooks/gitlab`: `X-Gitlab-Token: secret`; `project.id` (or `project_id`).
- `POST /webhooks/gitea`: `X-Gitea-Signature:` hex HMAC-SHA256(secret, body);
  `repository.id`.

Bad or missing proof: 401. A valid delivery answers 202, with `queued` false when the
repository is unknown here or the event is not a push (GitHub's `ping` included).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from repodepot.db.models import CodeHostKind
from repodepot.web.deps import services

router = APIRouter(tags=["webhooks"])
MAX_BODY = 25 << 20  # GitHub caps payloads at 25 MB
PUSH_EVENTS = {
    CodeHostKind.github: ("x-github-event", {"push"}),
    CodeHostKind.gitlab: ("x-gitlab-event", {"Push Hook", "Tag Push Hook"}),
    CodeHostKind.gitea: ("x-gitea-event", {"push"}),
}


def _signature(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _proves(kind: CodeHostKind, secret: str, request: Request, body: bytes) -> bool:
    headers = request.headers
    if kind is CodeHostKind.github:
        given = headers.get("x-hub-signature-256", "")
        return hmac.compare_digest(given, "sha256=" + _signature(secret, body))
    if kind is CodeHostKind.gitlab:
        return hmac.compare_digest(headers.get("x-gitlab-token", ""), secret)
    given = headers.get("x-gitea-signature", "")
    return hmac.compare_digest(given, _signature(secret, body))


def _external_id(kind: CodeHostKind, payload: dict[str, Any]) -> str | None:
    if kind is CodeHostKind.gitlab:
        project = payload.get("project") or {}
        value = project.get("id", payload.get("project_id"))
    else:
        repository = payload.get("repository") or {}
        value = repository.get("node_id") if kind is CodeHostKind.github else None
        value = value or repository.get("id")
    return None if value is None else str(value)


async def _deliver(kind: CodeHostKind, request: Request) -> Response:
    body = await request.body()
    if len(body) > MAX_BODY:
        return JSONResponse({"error": {"code": "too_large", "message": "payload too large"}}, 413)
    svc = services(request)
    matched = [
        (host_id, host)
        for host_id, host, secret in await svc.codehosts.webhook_secrets(kind)
        if _proves(kind, secret, request, body)
    ]
    if not matched:
        return JSONResponse(
            {"error": {"code": "bad_signature", "message": "the delivery's signature is wrong"}},
            status_code=401,
        )
    header, pushes = PUSH_EVENTS[kind]
    if request.headers.get(header) not in pushes:
        return JSONResponse({"queued": False, "reason": "not a push event"}, status_code=202)
    try:
        payload = json.loads(body)
    except ValueError:
        return JSONResponse(
            {"error": {"code": "invalid", "message": "the payload is not JSON"}}, status_code=400
        )
    external_id = _external_id(kind, payload) if isinstance(payload, dict) else None
    for _, host in matched:
        repository_id = (
            await svc.gitserver.find(kind.value, host, external_id) if external_id else None
        )
        if repository_id is not None and await svc.gitserver.enqueue(repository_id, "webhook"):
            return JSONResponse({"queued": True}, status_code=202)
    return JSONResponse({"queued": False, "reason": "unknown repository"}, status_code=202)


@router.post("/webhooks/github", status_code=202, summary="GitHub push webhook")
async def github(request: Request) -> Response:
    """A GitHub `push` delivery (JSON content type), signed with the connection's secret."""
    return await _deliver(CodeHostKind.github, request)


@router.post("/webhooks/gitlab", status_code=202, summary="GitLab push webhook")
async def gitlab(request: Request) -> Response:
    """A GitLab `Push Hook` or `Tag Push Hook` with the connection's secret token."""
    return await _deliver(CodeHostKind.gitlab, request)


@router.post("/webhooks/gitea", status_code=202, summary="Gitea push webhook")
async def gitea(request: Request) -> Response:
    """A Gitea or Forgejo `push` delivery, signed with the connection's secret."""
    return await _deliver(CodeHostKind.gitea, request)
