"""Property-based fuzzing of the whole API, as anonymous, a member and an admin.

schemathesis reads `/openapi.json` and sends each operation generated requests, valid and
invalid, to a real uvicorn: no answer may be a 5xx, and every answer must be one the
schema declares (status, media type, body). The budget is fixed and the requests are the
same on every run (derandomized, no shrinking). SQLite only: the point is the API's
answers, and the two databases are the other tests' business.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from repodepot.settings import Settings
from tests.conftest import ADMIN_TOKEN
from tests.support.fuzz import fuzz
from tests.support.servers import LiveApp

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
EXAMPLES = 30  # per operation, per generation mode, per identity


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"


async def test_no_generated_request_gets_a_5xx_or_an_answer_outside_the_schema(
    settings: Settings, live_server: Callable[..., Awaitable[LiveApp]]
) -> None:
    live = await live_server(settings.model_copy(update={"roles": ["web"]}))
    async with httpx.AsyncClient(base_url=live.url, headers=AUTH, timeout=30) as admin:
        document = (await admin.get("/openapi.json")).json()
        assert (await admin.post("/api/users", json={"name": "member"})).status_code == 201
        member = (await admin.post("/api/tokens", json={"user": "member"})).json()["token"]
    identities = {
        "anonymous": {},
        "member": {"Authorization": f"Bearer {member}"},
        "admin": AUTH,
    }
    findings = await asyncio.to_thread(fuzz, document, live.url, identities, examples=EXAMPLES)
    assert not findings, f"{len(findings)} findings:\n" + "\n".join(map(str, findings))
