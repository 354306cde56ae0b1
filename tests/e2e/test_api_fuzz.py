"""Property-based fuzzing of the whole API, as anonymous, a member and an admin.

schemathesis reads `/openapi.json` and sends each operation generated requests, valid and
invalid, to a real uvicorn: no answer may be a 5xx, and every answer must be one the
schema declares (status, media type, body). Path parameters also take the names and ids
of records made first (a public repository, the member's private one, a code host, an
import, the tokens), so that handlers past the lookup are fuzzed too. The budget is fixed
and the requests are the same on every run (derandomized, no shrinking). SQLite only: the
point is the API's answers, and the two databases are the other tests' business.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from repodepot.db.models import Visibility
from repodepot.settings import Settings
from tests.conftest import ADMIN_TOKEN
from tests.e2e.imports_helpers import events
from tests.support.fuzz import fuzz
from tests.support.repogen import Spec
from tests.support.seed import seed_mirror
from tests.support.servers import LiveApp

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
EXAMPLES = 30  # per operation, per generation mode, per identity


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"


# Its budget grows with the API (every operation, mode and identity): 245 s under
# coverage on 2 shared cores at 59 operations, near the suite's 300 s for a hung test.
@pytest.mark.timeout(900)
async def test_no_generated_request_gets_a_5xx_or_an_answer_outside_the_schema(
    settings: Settings, live_server: Callable[..., Awaitable[LiveApp]]
) -> None:
    # A worker, so that every import ends (its events stream ends with it); no updater.
    live = await live_server(settings.model_copy(update={"roles": ["web", "worker"]}))
    svc = live.services
    for name, owner, visibility in (
        ("acme/lib", None, Visibility.public),
        ("member/own", "member", Visibility.private),
    ):
        owner_id = None
        if owner is not None:
            owner_id = (await svc.accounts.create_user(owner)).id
        spec = Spec(commits=5, tags=1)
        await seed_mirror(svc, name, spec=spec, owner_id=owner_id, visibility=visibility)
    async with httpx.AsyncClient(base_url=live.url, headers=AUTH, timeout=30) as admin:
        document = (await admin.get("/openapi.json")).json()
        member = (await admin.post("/api/tokens", json={"user": "member"})).json()["token"]
        host = {"kind": "other", "name": "plain", "config": {"repos": ["http://127.0.0.1:9/x"]}}
        assert (await admin.post("/api/codehosts", json=host)).status_code == 201
        job = {"url": "http://127.0.0.1:9/x.git", "owner": "member", "slug": "queued"}
        queued = await admin.post("/api/imports", json=job)
        assert queued.status_code == 202
        await events(admin, live.url, queued.json()["id"])  # refused connection: failed
    known: dict[str, list[Any]] = {
        "name": ["acme/lib", "member/own", "member"],
        "rev": ["HEAD", "main", "v1.0.0"],
        "token_id": [1, 2],
        "job_id": [1],
        "host_id": [1],
    }
    identities = {
        "anonymous": {},
        "member": {"Authorization": f"Bearer {member}"},
        "admin": AUTH,
    }
    findings = await asyncio.to_thread(
        fuzz, document, live.url, identities, examples=EXAMPLES, known=known
    )
    assert not findings, f"{len(findings)} findings:\n" + "\n".join(map(str, findings))
