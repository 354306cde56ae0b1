"""No request body can grow the server: 1 GiB plain bodies and gzip bombs are 413 within a cap.

The server is a real `repodepot serve` process; its memory is read from /proc (the peak
is reset before each request, so the growth measured is that request's).
"""

from __future__ import annotations

import asyncio
import struct
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from repodepot.db.models import Visibility
from repodepot.services import Services
from repodepot.settings import Settings
from tests.e2e.conftest import Server
from tests.support.repogen import Spec
from tests.support.seed import seed_mirror

TOKEN = "rdp_bodies-admin-token-0123456789"
GIB = 1 << 30
MIB = 1 << 20
ALLOWED_GROWTH = 64 * MIB
UPLOAD_PACK = "/git/acme/open.git/git-upload-pack"
UPLOAD_PACK_TYPE = {"Content-Type": "application/x-git-upload-pack-request"}
WEBHOOK = "/webhooks/github"
JSON_API = "/api/users"


@pytest.fixture
async def server(tmp_path: Path, serve: type[Server]) -> Server:
    """A web-only server with one public mirror, `acme/open`: nothing else runs in it."""
    settings = Settings(data_dir=tmp_path / "data", roles=["web"])
    services = await Services.open(settings)
    try:
        await seed_mirror(services, "acme/open", spec=Spec(commits=3), visibility=Visibility.public)
    finally:
        await services.close()
    return serve(tmp_path / "data", {"REPODEPOT_ROLES": "web", "REPODEPOT_ADMIN_TOKEN": TOKEN})


def _status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (the peak since the last reset) of a process, in bytes."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return fields


def _reset_peak(pid: int) -> int:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # proc(5): resets VmHWM to VmRSS
    return _status(pid)["VmRSS"]


async def _zeros(total: int) -> AsyncIterator[bytes]:
    chunk = bytes(MIB)
    for _ in range(total // MIB):
        yield chunk


def _gzip_bomb(inflated: int) -> Iterator[bytes]:
    """A valid gzip member of `inflated` zero bytes, about 1/1000 of that, made in a blink.

    After a full flush deflate forgets what came before, so every further MiB of zeros
    compresses to the same bytes: the stream is one block repeated, then a trailer with
    the CRC and size of the whole.
    """
    deflate = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(MIB)
    yield deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)  # the header, 1 MiB
    block = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    crc = zlib.crc32(zeros)
    for _ in range(inflated // MIB - 1):
        crc = zlib.crc32(zeros, crc)
        yield block
    yield deflate.flush()[:-8] + struct.pack("<II", crc, inflated & 0xFFFFFFFF)


async def _streamed(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def _bomb_is_what_it_claims() -> None:
    stream = b"".join(_gzip_bomb(8 * MIB))
    assert zlib.decompress(stream, 16 + zlib.MAX_WBITS) == bytes(8 * MIB)
    assert len(b"".join(_gzip_bomb(GIB))) < 2 * MIB


async def _send(
    server: Server, path: str, body: AsyncIterator[bytes], headers: dict[str, str]
) -> httpx.Response:
    async with httpx.AsyncClient(timeout=120) as http:
        return await http.post(server.url + path, content=body, headers=headers)


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        (UPLOAD_PACK, UPLOAD_PACK_TYPE),
        (WEBHOOK, {"X-GitHub-Event": "push", "Content-Type": "application/json"}),
        (JSON_API, {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}),
    ],
    ids=["upload-pack", "webhook", "api"],
)
async def test_a_gibibyte_of_plain_body_is_413_and_costs_no_memory(
    server: Server, path: str, headers: dict[str, str]
) -> None:
    before = _reset_peak(server.process.pid)

    answer = await _send(server, path, _zeros(GIB), headers)

    assert answer.status_code == 413, answer.text
    assert _status(server.process.pid)["VmHWM"] - before < ALLOWED_GROWTH
    assert "larger than" in answer.text


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        (UPLOAD_PACK, UPLOAD_PACK_TYPE),
        (WEBHOOK, {"X-GitHub-Event": "push", "Content-Type": "application/json"}),
    ],
    ids=["upload-pack", "webhook"],
)
async def test_a_gzip_bomb_is_413_once_inflated_and_costs_no_memory(
    server: Server, path: str, headers: dict[str, str]
) -> None:
    _bomb_is_what_it_claims()
    before = _reset_peak(server.process.pid)

    answer = await _send(
        server, path, _streamed(_gzip_bomb(GIB)), {**headers, "Content-Encoding": "gzip"}
    )

    assert answer.status_code == 413, answer.text
    assert _status(server.process.pid)["VmHWM"] - before < ALLOWED_GROWTH
    assert "once inflated" in answer.text


@pytest.mark.parametrize("path", [UPLOAD_PACK, WEBHOOK, JSON_API])
async def test_a_content_length_past_the_cap_is_413_before_any_body(
    server: Server, path: str
) -> None:
    host, _, port = server.url.removeprefix("http://").partition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {TOKEN}\r\n"
            "Content-Type: application/x-git-upload-pack-request\r\n"
            f"Content-Length: {GIB}\r\n\r\n".encode()
        )
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout=20)
    finally:
        writer.close()
    assert status_line.split()[1] == b"413", status_line
