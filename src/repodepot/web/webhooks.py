"""Push webhooks: a push on a code host puts that repository's mirror at the head of the queue.

Each connection may have a `webhookSecret` (sealed like its token). A delivery is
accepted when it proves one of the secrets of its kind's connections:

- `POST /webhooks/github`: `X-Hub-Signature-256: sha256=` + hex HMAC-SHA256(secret,
  body); the repository is `repository.node_id` (else `repository.id`).
- `POST /webhooks/gitlab`: `X-Gitlab-Token: secret`; `project.id` (or `project_id`).
- `POST /webhooks/gitea`: `X-Gitea-Signature:` hex HMAC-SHA256(secret, body);
  `repository.id`.

The body is read up to 25 MiB (GitHub's cap), inflated too when gzipped: 413 past it.
Bad or missing proof: 401. A push whose payload is not JSON or lacks those fields: 400.
A valid delivery answers 202, with `queued` false and a `reason` when the repository is
unknown here, the event is not a push (GitHub's `ping` included), or the delivery was
already received (by its delivery id or its payload: see codehosts/deliveries.py).
Errors are the API's JSON.
"""

from __future__ import annotations

import hashlib
import hmac
import json

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from repodepot.db.models import CodeHostKind
from repodepot.gitserver.schedule import QueueReason
from repodepot.web import bodies
from repodepot.web.bodies import MalformedBody
from repodepot.web.deps import services
from repodepot.web.errors import error_responses
from repodepot.web.schemas import GiteaPush, GitHubPush, GitLabPush, PushPayload

router = APIRouter(tags=["webhooks"], responses=error_responses(400, 401, 413, 415))
MAX_BODY = 25 << 20  # GitHub caps payloads at 25 MB
PAYLOADS: dict[CodeHostKind, type[PushPayload]] = {
    CodeHostKind.github: GitHubPush,
    CodeHostKind.gitlab: GitLabPush,
    CodeHostKind.gitea: GiteaPush,
}
DELIVERY_HEADERS = {
    CodeHostKind.github: "x-github-delivery",
    CodeHostKind.gitlab: "x-gitlab-event-uuid",
    CodeHostKind.gitea: "x-gitea-delivery",
}
PUSH_EVENTS = {
    CodeHostKind.github: ("x-github-event", {"push"}),
    CodeHostKind.gitlab: ("x-gitlab-event", {"Push Hook", "Tag Push Hook"}),
    CodeHostKind.gitea: ("x-gitea-event", {"push"}),
}


def _signature(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _proves(kind: CodeHostKind, secret: str, request: Request, body: bytes) -> bool:
    # Compared as bytes: compare_digest refuses str with non-ASCII characters (a header of
    # `\xff` was a 500), and headers arrive as latin-1.
    headers = request.headers
    if kind is CodeHostKind.github:
        given = headers.get("x-hub-signature-256", "")
        expected = "sha256=" + _signature(secret, body)
    elif kind is CodeHostKind.gitlab:
        given, expected = headers.get("x-gitlab-token", ""), secret
    else:
        given, expected = headers.get("x-gitea-signature", ""), _signature(secret, body)
    return hmac.compare_digest(given.encode("latin-1"), expected.encode())


def _payload(kind: CodeHostKind, body: bytes) -> PushPayload:
    """The push payload's fields we read; raises MalformedBody naming what is wrong."""
    try:
        return PAYLOADS[kind].model_validate(bodies.loads(body))
    except json.JSONDecodeError as error:
        raise MalformedBody(f"the payload is not JSON we accept: {error.msg}") from None
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "payload"
        raise MalformedBody(f"the payload's {where}: {first['msg']}", field=where) from None


def _delivery_keys(kind: CodeHostKind, request: Request, body: bytes) -> list[str]:
    keys = [f"body:{hashlib.sha256(body).hexdigest()}"]
    delivery = request.headers.get(DELIVERY_HEADERS[kind], "").strip()
    if delivery:
        keys.append(f"id:{delivery[:200]}")
    return keys


async def _deliver(kind: CodeHostKind, request: Request) -> Response:
    body = await bodies.read(request, limit=MAX_BODY)
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
        return _not_queued("not a push event")
    external_id = _payload(kind, body).external_id
    keys = _delivery_keys(kind, request, body)
    if not svc.codehosts.deliveries.first_time(kind.value, keys):
        return _not_queued("this delivery was already received")
    try:
        for _, host in matched:
            repository_id = await svc.repositories.find_external(kind.value, host, external_id)
            if repository_id is not None and await svc.gitserver.enqueue_existing(
                repository_id, QueueReason.webhook
            ):
                return JSONResponse({"queued": True}, status_code=202)
    except BaseException:
        svc.codehosts.deliveries.forget(kind.value, keys)  # not handled: a retry may come
        raise
    return _not_queued("unknown repository")


def _not_queued(reason: str) -> Response:
    return JSONResponse({"queued": False, "reason": reason}, status_code=202)


@router.post(
    "/webhooks/github", status_code=202, summary="GitHub push webhook", max_body_size=MAX_BODY
)
async def github(request: Request) -> Response:
    """A GitHub `push` delivery (JSON content type), signed with the connection's secret."""
    return await _deliver(CodeHostKind.github, request)


@router.post(
    "/webhooks/gitlab", status_code=202, summary="GitLab push webhook", max_body_size=MAX_BODY
)
async def gitlab(request: Request) -> Response:
    """A GitLab `Push Hook` or `Tag Push Hook` with the connection's secret token."""
    return await _deliver(CodeHostKind.gitlab, request)


@router.post(
    "/webhooks/gitea", status_code=202, summary="Gitea push webhook", max_body_size=MAX_BODY
)
async def gitea(request: Request) -> Response:
    """A Gitea or Forgejo `push` delivery, signed with the connection's secret."""
    return await _deliver(CodeHostKind.gitea, request)
