"""Forwarding reads to a storage node: which answers reach the client, and how failures look."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, replace
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.types import Message

from repodepot.db.models import NodeState
from repodepot.exceptions import InvalidInput, NotFound, TooManyRequests
from repodepot.gitserver.reads import Commit
from repodepot.nodes.forward import (
    MAX_ANSWER,
    OUTPUT_CAP,
    Forwarder,
    NodeDirectory,
    NodeUnavailable,
)
from repodepot.nodes.registry import NodeRecord

SECRET = "internal-secret-" + "y" * 32
AT = datetime(2026, 12, 1, tzinfo=UTC)


def record(name: str, state: NodeState = NodeState.active, url: str | None = None) -> NodeRecord:
    return NodeRecord(
        name=name,
        url=url if url is not None else f"http://{name}.internal:8100/",
        state=state,
        weight=1.0,
        repositories=0,
        free_bytes=None,
        heartbeat_at=AT,
        registered_at=AT,
    )


class Chunks(httpx.AsyncByteStream):
    """A node's answer as it streams, chunk by chunk (a `content=` answer is read already)."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


SIGNED = {"x-repodepot-node": "gs-1"}


def answer(
    status: int, *chunks: bytes, headers: dict[str, str] | None = None, node: str | None = "gs-1"
) -> httpx.Response:
    """Node `node`'s answer, signed as its internal API signs (None: unsigned)."""
    signed = {"x-repodepot-node": node} if node is not None else {}
    return httpx.Response(status, stream=Chunks(*chunks), headers={**signed, **(headers or {})})


class Registry:
    """The nodes as the registry lists them, and how many times it was asked."""

    def __init__(self, *nodes: NodeRecord) -> None:
        self.nodes = list(nodes)
        self.reads = 0

    async def load(self) -> list[NodeRecord]:
        self.reads += 1
        return self.nodes


def forwarder(
    handler: Callable[[httpx.Request], httpx.Response],
    registry: Registry,
    secret: str | None = SECRET,
) -> Forwarder:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return Forwarder(client=client, directory=NodeDirectory(registry.load), secret=secret)


async def relayed(response: Any) -> list[Message]:
    """What the client is sent, message by message (the response run as ASGI)."""
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await response.stream_response(send)
    return sent


def client_request(body: list[bytes], headers: dict[str, str]) -> Request:
    chunks = iter(body)

    async def receive() -> Message:
        chunk = next(chunks, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.request", "body": chunk, "more_body": True}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/git/acme/app/git-upload-pack",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "query_string": b"",
    }
    return Request(scope, receive)


async def test_the_node_gets_the_secret_the_protocol_and_the_body_as_sent() -> None:
    seen: list[httpx.Request] = []
    body = gzip.compress(b"0032want " + b"a" * 40 + b"\n00000009done\n")

    def node(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(
            200,
            b"PA",
            b"CK...",
            headers={"content-type": "application/x-git-upload-pack-result", "server": "x"},
        )

    forward = forwarder(node, Registry(record("gs-1")))
    request = client_request(
        [body[:10], body[10:]],
        {
            "authorization": "Bearer rdp_the-callers-own-token",
            "content-type": "application/x-git-upload-pack-request",
            "content-encoding": "gzip",
        },
    )
    response = await forward.upload_pack("gs-1", 1, "acme/app", request, "version=2")
    sent = await relayed(response)

    (call,) = seen
    assert str(call.url) == "http://gs-1.internal:8100/internal/repos/1/git-upload-pack"
    assert call.headers["authorization"] == f"Bearer {SECRET}"  # never the caller's token
    assert call.headers["git-protocol"] == "version=2"
    assert call.headers["content-encoding"] == "gzip"
    assert call.content == body  # as it came: the node inflates and bounds it
    assert sent[0]["status"] == 200
    assert dict(sent[0]["headers"]) == {b"content-type": b"application/x-git-upload-pack-result"}
    assert b"".join(m.get("body", b"") for m in sent[1:]) == b"PACK..."
    assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    await forward.close()


@pytest.mark.parametrize(
    ("node", "secret", "logged", "shown"),
    [
        (record("gs-1", NodeState.dead), SECRET, "is down", "which is down now"),
        (record("gs-1", url=""), SECRET, "has no internal URL", "which cannot be reached"),
        (record("gs-2"), SECRET, "is not registered", "which cannot be reached"),
        (record("gs-1"), None, "has no REPODEPOT_INTERNAL_SECRET", "which cannot be reached"),
    ],
    ids=["dead", "no-url", "unknown", "no-secret"],
)
async def test_a_node_that_cannot_be_called_is_unavailable_without_a_request(
    node: NodeRecord,
    secret: str | None,
    logged: str,
    shown: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"no request should be sent: {request.url}")

    forward = forwarder(refuse, Registry(node), secret)
    with pytest.raises(NodeUnavailable) as raised:
        await forward.advertise("gs-1", 7, "acme/app", None)
    assert shown in raised.value.message
    assert raised.value.retry_after > 0
    assert logged in caplog.text  # the reason is the administrator's, in the log


async def test_an_unreachable_node_is_unavailable_and_the_nodes_are_read_again() -> None:
    registry = Registry(record("gs-1"))

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    forward = forwarder(down, registry)
    for _ in range(2):
        with pytest.raises(NodeUnavailable, match="which cannot be reached now"):
            await forward.advertise("gs-1", 7, "acme/app", None)
    assert registry.reads == 2  # a failure drops the kept addresses: a new URL is seen


async def test_the_addresses_are_read_once_while_they_are_fresh() -> None:
    registry = Registry(record("gs-1"))
    forward = forwarder(lambda _: answer(200, b"refs"), registry)
    for _ in range(3):
        await relayed(await forward.advertise("gs-1", 7, "acme/app", "version=2"))
    assert registry.reads == 1


@pytest.mark.parametrize(
    ("status", "raised"),
    [(404, NotFound), (403, NodeUnavailable), (500, NodeUnavailable), (502, NodeUnavailable)],
)
async def test_the_node_s_errors_become_not_found_or_unavailable(
    status: int, raised: type[Exception]
) -> None:
    forward = forwarder(
        lambda _: httpx.Response(status, text="no", headers=SIGNED), Registry(record("gs-1"))
    )
    with pytest.raises(raised):
        await forward.advertise("gs-1", 7, "acme/app", None)


async def test_git_s_refusal_reaches_the_client_as_the_node_gave_it() -> None:
    def refused(_: httpx.Request) -> httpx.Response:
        return answer(400, b"git refused the request: bad line\n")

    forward = forwarder(refused, Registry(record("gs-1")))
    sent = await relayed(await forward.advertise("gs-1", 7, "acme/app", None))
    assert sent[0]["status"] == 400
    assert b"".join(m.get("body", b"") for m in sent[1:]) == b"git refused the request: bad line\n"


class Breaking(httpx.AsyncByteStream):
    """A node's answer that breaks off after its first chunk."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"0008NAK\n"
        raise httpx.ReadError("connection reset by peer")


async def test_an_answer_the_node_breaks_off_is_never_ended_as_if_whole() -> None:
    forward = forwarder(
        lambda _: httpx.Response(200, stream=Breaking(), headers=SIGNED), Registry(record("gs-1"))
    )
    sent = await relayed(await forward.advertise("gs-1", 7, "acme/app", None))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[-1] == {"type": "http.response.body", "body": b"0008NAK\n", "more_body": True}


COMMIT = Commit(
    sha="a" * 40,
    author_name="Ada",
    author_email="ada@example.com",
    authored_at="2026-12-01T00:00:00+00:00",
    subject="Fix the thing",
    fetched=True,
)


async def test_ensure_revision_asks_the_node_with_the_secret_and_the_revision_quoted() -> None:
    seen: list[httpx.Request] = []

    def node(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=asdict(COMMIT), headers=SIGNED)

    forward = forwarder(node, Registry(record("gs-1")))
    assert await forward.ensure_revision("gs-1", 7, "acme/app", "release/v1~2") == COMMIT
    (call,) = seen
    assert call.url.raw_path == b"/internal/repos/7/commits/release%2Fv1~2"
    assert call.headers["authorization"] == f"Bearer {SECRET}"


@pytest.mark.parametrize(
    ("status", "text", "raised", "message"),
    [
        (
            404,
            "no commit 'deadbeef' in 'repository 7', even after a fetch\n",
            NotFound,
            "no commit 'deadbeef' in 'acme/app', even after a fetch",
        ),
        (
            404,
            "'repository 7' is not cloned yet; try again shortly\n",
            NotFound,
            "'acme/app' is not cloned yet; try again shortly",
        ),
        (422, "'x' is not a plain revision\n", InvalidInput, "'x' is not a plain revision"),
        (403, "internal calls need ...\n", NodeUnavailable, "which cannot answer now"),
        (500, "internal error\n", NodeUnavailable, "which cannot answer now"),
        (200, '{"sha": "abc"}', NodeUnavailable, "which cannot answer now"),
        (
            200,  # a commit, but past the bound: not read whole
            json.dumps(asdict(replace(COMMIT, subject="x" * MAX_ANSWER))),
            NodeUnavailable,
            "which cannot answer now",
        ),
    ],
    ids=["no-commit", "not-cloned", "invalid", "refused", "failed", "not-a-commit", "too-long"],
)
async def test_ensure_revision_maps_the_node_s_answers(
    status: int, text: str, raised: type[Exception], message: str
) -> None:
    forward = forwarder(lambda _: answer(status, text.encode()), Registry(record("gs-1")))
    with pytest.raises(raised) as error:
        await forward.ensure_revision("gs-1", 7, "acme/app", "deadbeef")
    assert message in str(error.value)
    if isinstance(error.value, InvalidInput):
        assert error.value.field == "rev"


async def test_ensure_revision_refuses_a_revision_that_is_not_plain_without_a_request() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"no request should be sent: {request.url}")

    forward = forwarder(refuse, Registry(record("gs-1", NodeState.dead)))
    with pytest.raises(InvalidInput) as error:
        await forward.ensure_revision("gs-1", 7, "acme/app", "--upload-pack=x")
    assert error.value.field == "rev"


async def test_exec_sends_the_arguments_and_the_user_and_relays_the_output() -> None:
    seen: list[httpx.Request] = []

    def node(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        headers = {"content-type": "application/octet-stream", OUTPUT_CAP: "100", "server": "x"}
        return answer(200, b"abc ", b"def\n", headers=headers)

    forward = forwarder(node, Registry(record("gs-1")))
    response = await forward.exec("gs-1", 7, "acme/app", ["log", "-1"], user_id=3, max_bytes=100)
    sent = await relayed(response)

    (call,) = seen
    assert call.method == "POST"
    assert call.url.path == "/internal/repos/7/exec"
    assert call.headers["authorization"] == f"Bearer {SECRET}"
    assert json.loads(call.content) == {"args": ["log", "-1"], "user_id": 3, "max_bytes": 100}
    assert sent[0]["status"] == 200
    assert dict(sent[0]["headers"]) == {
        b"content-type": b"application/octet-stream",
        OUTPUT_CAP.encode(): b"100",
    }
    assert b"".join(m.get("body", b"") for m in sent[1:]) == b"abc def\n"


async def test_exec_refuses_an_argument_without_a_request() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"no request should be sent: {request.url}")

    forward = forwarder(refuse, Registry(record("gs-1")))
    with pytest.raises(InvalidInput) as error:
        await forward.exec(
            "gs-1", 7, "acme/app", ["log", "--output=/tmp/x"], user_id=3, max_bytes=9
        )
    assert error.value.field == "args.1"


@pytest.mark.parametrize(
    ("status", "body", "headers", "raised", "message"),
    [
        (
            422,
            b'{"error": {"code": "invalid", "message": "bad revision in \'repository 7\'", '
            b'"field": "args"}}',
            {},
            InvalidInput,
            "bad revision in 'acme/app'",
        ),
        (
            429,
            b"too many git commands at once; try again shortly\n",
            {"retry-after": "6"},
            TooManyRequests,
            "too many git commands at once",
        ),
        (422, b"not json\n", {}, NodeUnavailable, "which cannot answer now"),
        (404, b"no mirror\n", {}, NotFound, "'acme/app' is not cloned yet"),
        (500, b"internal error\n", {}, NodeUnavailable, "which cannot answer now"),
    ],
    ids=["git-refused", "too-many", "422-not-an-error", "no-mirror", "failed"],
)
async def test_exec_maps_the_node_s_refusals_to_the_errors_a_local_exec_raises(
    status: int, body: bytes, headers: dict[str, str], raised: type[Exception], message: str
) -> None:
    forward = forwarder(lambda _: answer(status, body, headers=headers), Registry(record("gs-1")))
    with pytest.raises(raised) as error:
        await forward.exec("gs-1", 7, "acme/app", ["log"], user_id=3, max_bytes=9)
    assert message in str(error.value)
    if isinstance(error.value, InvalidInput):
        assert error.value.field == "args"
    if isinstance(error.value, TooManyRequests):
        assert error.value.retry_after == 6


async def test_goproxy_relays_the_node_s_answer_with_its_etag_and_the_client_s_condition() -> None:
    seen: list[httpx.Request] = []

    def node(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        headers = {
            "content-type": "application/zip",
            "etag": '"abc"',
            "cache-control": "public, max-age=31536000, immutable",
            "x-request-id": "the-node-s",
        }
        return answer(200, b"PK\x03\x04", b"...", headers=headers)

    forward = forwarder(node, Registry(record("gs-1")))
    rest = "example.com/!acme/lib/@v/v2.0.0+incompatible.zip"
    sent = await relayed(await forward.goproxy("gs-1", 7, "acme/lib", rest, '"old"'))

    (call,) = seen
    assert call.url.raw_path == (
        b"/internal/goproxy/7/example.com/!acme/lib/@v/v2.0.0+incompatible.zip"
    )
    assert call.headers["authorization"] == f"Bearer {SECRET}"
    assert call.headers["if-none-match"] == '"old"'
    assert dict(sent[0]["headers"]) == {
        b"content-type": b"application/zip",
        b"cache-control": b"public, max-age=31536000, immutable",
        b"etag": b'"abc"',
    }
    assert b"".join(m.get("body", b"") for m in sent[1:]) == b"PK\x03\x04..."


@pytest.mark.parametrize("status", [304, 404, 410, 422])
async def test_goproxy_s_own_answers_reach_the_go_command_as_the_node_gave_them(
    status: int,
) -> None:
    text = b"" if status == 304 else b"example.com/acme/lib@v9.0.0: not here\n"
    forward = forwarder(lambda _: answer(status, text), Registry(record("gs-1")))
    sent = await relayed(await forward.goproxy("gs-1", 7, "acme/lib", "x/@v/list", None))
    assert sent[0]["status"] == status
    assert b"".join(m.get("body", b"") for m in sent[1:]) == text


@pytest.mark.parametrize("status", [403, 500, 503])
async def test_goproxy_is_unavailable_when_the_node_cannot_answer(status: int) -> None:
    forward = forwarder(
        lambda _: httpx.Response(status, text="no", headers=SIGNED), Registry(record("gs-1"))
    )
    with pytest.raises(NodeUnavailable, match="which cannot answer now"):
        await forward.goproxy("gs-1", 7, "acme/lib", "x/@v/list", None)


@pytest.mark.parametrize(
    ("signed", "status"),
    [(None, 404), (None, 200), ("gs-2", 200), ("gs-2", 404), ("GS-1", 200)],
)
async def test_an_answer_not_signed_by_the_node_is_never_taken_for_its_own(
    signed: str | None, status: int
) -> None:
    # An older node without the route (404), another process or node at its URL: never
    # "not cloned yet", never its refs; unavailable, and the URL asked for again.
    registry = Registry(record("gs-1"))
    forward = forwarder(
        lambda _: answer(status, b"001e# service=git-upload-pack\n", node=signed), registry
    )
    for reads in (1, 2):
        with pytest.raises(NodeUnavailable) as caught:
            await forward.advertise("gs-1", 7, "acme/app", None)
        assert "which cannot answer now" in caught.value.message
        assert registry.reads == reads  # its address is read again at the next call


@pytest.mark.parametrize(
    "rest",
    [
        "example.com/m/@v/../../../repos/9/commits/main.info",
        "example.com/m/@v/v1/../../../../repos/9/commits/x.zip",
        "example.com/m/@v/./v1.0.0.info",
    ],
)
async def test_a_path_the_url_library_would_rewrite_is_never_sent(rest: str) -> None:
    # Dot segments collapse on the way out: the call would reach another route, with the
    # secret. Whoever builds the path, nothing is sent.
    sent: list[httpx.Request] = []

    def node(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return answer(200, b"{}")

    forward = forwarder(node, Registry(record("gs-1")))
    with pytest.raises(NotFound):
        await forward.goproxy("gs-1", 7, "acme/mod", rest, None)
    assert sent == []
