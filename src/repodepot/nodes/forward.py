"""Reads forwarded to the storage node holding the mirror: smart HTTP, EnsureRevision, exec, Go.

Every web process answers every repository's URL. When the mirror lives on another node
(or this process has no gitserver role), `Forwarder` sends the read to that node's
internal API (`nodes.internal`) with the internal secret, and relays the node's answer
as it arrives; the client's body goes to the node as it arrives too, so neither a pack
nor a negotiation is ever whole in this process. The caller's own token never leaves:
who may read was decided here, before forwarding. `node_of` says which reads go where.
EnsureRevision's answer is a small JSON document, read whole (at most `MAX_ANSWER`).
An exec's output and a Go proxy answer (a module zip among them) are relayed as they
arrive, as a pack is; an exec's refusals come back as the errors a local one raises.

A node's address and state come from the registry (`NodeDirectory`, kept `ADDRESS_TTL`).
Its URL is an admin's setting (REPODEPOT_NODE_URL), not user input, so these calls do
not go through the policy for user-given URLs (`outbound.py`); the client ignores proxy
variables and `.netrc`, which could send them, and their secret, elsewhere.

A node that is dead, unknown, without a URL, unreachable or slower than `CONNECT_TIMEOUT`
to connect is `NodeUnavailable` (503 with Retry-After). A node's answer that breaks off
after it began is cut short at the HTTP level (no end of body, the connection closed),
so a client never takes part of an answer for the whole.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import anyio
import httpx
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Send

from repodepot import jsonbound
from repodepot.db.models import NodeState
from repodepot.exceptions import InvalidInput, NotFound, TooManyRequests, Unavailable
from repodepot.git.revisions import check_plain_revision
from repodepot.gitserver.allowlist import check_exec
from repodepot.gitserver.reads import Commit
from repodepot.logs import request_id
from repodepot.nodes.registry import NodeRecord
from repodepot.settings import Settings

if TYPE_CHECKING:
    from repodepot.services import Services

logger = logging.getLogger(__name__)
ADDRESS_TTL = 2.0
"""Seconds the nodes' addresses and states are kept: a node marked dead is seen within this."""
CONNECT_TIMEOUT = 5.0
UPLOAD_PACK = "git-upload-pack"
OUTPUT_CAP = "x-repodepot-output-cap"
"""The header of an exec's answer naming its output's cap in bytes."""
NODE_HEADER = "x-repodepot-node"
"""Every answer of a node's internal API names the node (`web.middleware`)."""
MAX_ANSWER = 64 << 10
"""The most of a node's EnsureRevision answer read: a commit's JSON is far smaller."""
# What of a node's answer reaches the client; the rest (its request id, its server's
# headers) describes the node, not the answer.
_RELAYED_HEADERS = ("content-type", "cache-control")
# The node's answers a client gets as they are: git's words on a request it refuses, and
# the body limits. Anything else but 200 and 404 means the node cannot answer.
_CLIENT_ERRORS = frozenset({400, 413, 415})
_STREAMED = frozenset({200}) | _CLIENT_ERRORS
# EnsureRevision's: the commit, none, or a revision the node refuses.
_ENSURED = frozenset({200, 404, 422})
# An exec's: its output, git's refusal, or past the node's share of execs at once.
_EXECUTED = frozenset({200, 422, 429})
# The Go proxy's answers, each the go command's to read as the node gave it (its 404s
# and 410s are the protocol's "not here" and "gone").
_GOPROXY = frozenset({200, 304, 404, 410, 422})
_COMMIT_FIELDS: dict[str, type] = {
    "sha": str,
    "author_name": str,
    "author_email": str,
    "authored_at": str,
    "subject": str,
    "fetched": bool,
}

Addresses = Callable[[], Awaitable[list[NodeRecord]]]


class NodeUnavailable(Unavailable):
    """The storage node holding this repository cannot answer now; try again shortly."""

    code = "node_unavailable"


def internal_name(repository_id: int) -> str:
    """How a node names a repository it is asked about by id (in its errors' words)."""
    return f"repository {repository_id}"


async def node_of(svc: Services, repository_id: int) -> str | None:
    """The storage node to forward a read of the repository to; None to read this disk.

    The owner is the mirror row's (kept a second, `Gitserver.state`). This process reads
    the mirrors of its own node (`node_name`); without the gitserver role only those on
    its disk (web and gitserver processes sharing one data dir on one host), so a web
    process that merely has the same name as a node forwards. A repository with no row
    yet is looked for here: there is nowhere else to look. Raises NodeUnavailable while
    the mirror is cloned again after its node was lost (`MirrorState.relocating`).
    """
    settings = svc.settings
    state = await svc.gitserver.state(repository_id)
    if state is None:
        return None
    if state.relocating:
        # Its node was lost: the copy being cloned on its new node answers once it is
        # whole; until then no node has it, and the old one's answer may be stale.
        raise NodeUnavailable(
            "the repository is being cloned again on storage node "
            f"{state.node!r} after node {state.moved_from!r} was lost; try again shortly"
        )
    if state.node == settings.node_name and (
        "gitserver" in settings.roles or svc.storage.path(repository_id).is_dir()
    ):
        return None
    return state.node


class NodeDirectory:
    """The storage nodes' addresses and states, read at most once per `ttl` seconds."""

    def __init__(self, load: Addresses, *, ttl: float = ADDRESS_TTL) -> None:
        self._load = load
        self._ttl = ttl
        self._nodes: dict[str, NodeRecord] = {}
        self._read_at: float | None = None
        self._reading = asyncio.Lock()  # one read when they expire, not one per request

    async def get(self, name: str) -> NodeRecord | None:
        """Node `name` as the registry had it at most `ttl` ago; None when not registered."""
        if self._stale():
            async with self._reading:
                if self._stale():
                    self._nodes = {node.name: node for node in await self._load()}
                    self._read_at = time.monotonic()
        return self._nodes.get(name)

    def forget(self) -> None:
        """Read the nodes again at the next `get` (a node failed: it may be dead, or moved)."""
        self._read_at = None

    def _stale(self) -> bool:
        return self._read_at is None or time.monotonic() - self._read_at >= self._ttl


class Forwarder:
    """Sends smart HTTP reads to the node that holds the mirror and relays its answers."""

    def __init__(
        self, *, client: httpx.AsyncClient, directory: NodeDirectory, secret: str | None
    ) -> None:
        self._client = client
        self._directory = directory
        self._secret = secret

    @classmethod
    def from_settings(cls, settings: Settings, addresses: Addresses) -> Forwarder:
        """A forwarder with its own connection pool; `addresses` lists the nodes."""
        client = httpx.AsyncClient(
            # Reading waits on git at the node (counting, compressing a pack) as long as a
            # git command may run; connecting to a node that is up takes milliseconds.
            timeout=httpx.Timeout(settings.git_timeout, connect=CONNECT_TIMEOUT),
            follow_redirects=False,
            trust_env=False,
        )
        secret = settings.internal_secret
        return cls(
            client=client,
            directory=NodeDirectory(addresses),
            secret=secret.get_secret_value() if secret is not None else None,
        )

    @property
    def secret(self) -> str | None:
        """The internal secret this process sends (None: it has none, and forwards nothing)."""
        return self._secret

    async def close(self) -> None:
        """Close the connections to the nodes."""
        await self._client.aclose()

    async def advertise(
        self, node: str, repository_id: int, name: str, protocol: str | None
    ) -> Response:
        """Node `node`'s ref advertisement of repository `name`, relayed as it arrives.

        Raises NodeUnavailable when the node cannot answer, NotFound when it has no
        mirror of the repository (not cloned yet).
        """
        path = f"/internal/repos/{repository_id}/info/refs?service={UPLOAD_PACK}"
        upstream = await self.open(
            node, "GET", path, _headers(protocol), name=name, passed=_STREAMED
        )
        return _Relayed(upstream, node=node)

    async def ensure_revision(self, node: str, repository_id: int, name: str, rev: str) -> Commit:
        """The commit `rev` names in repository `name`, as node `node` finds it (or fetches).

        Raises InvalidInput (field `rev`) for anything but a plain revision, before any
        call, as the node would; NotFound in the words a local read gives (naming `name`)
        when the node has no such commit even after a fetch, or no mirror yet;
        NodeUnavailable when the node cannot answer, or answers more than `MAX_ANSWER`
        or not a commit.
        """
        check_plain_revision(rev)
        # Quoted whole: a revision's "/" and any other character reach the node as sent.
        path = f"/internal/repos/{repository_id}/commits/{quote(rev, safe='')}"
        headers = _headers(None)
        headers["accept"] = "application/json"
        upstream = await self.open(node, "GET", path, headers, name=name, passed=_ENSURED)
        body = await self.read_small(upstream, node, name)
        if upstream.status_code == 200:
            return _commit(body, node, name)
        # The node's words, naming the repository as the caller knows it, not by its id.
        message = body.decode(errors="replace").strip()
        message = message.replace(repr(internal_name(repository_id)), repr(name))
        if upstream.status_code == 422:
            raise InvalidInput(message, field="rev")
        raise NotFound(message)

    async def exec(
        self,
        node: str,
        repository_id: int,
        name: str,
        args: list[str],
        *,
        user_id: int,
        max_bytes: int,
    ) -> Response:
        """`git ARGS` run by node `node` in repository `name`'s mirror, its output relayed.

        The node counts it against `user_id`'s share and its own, and sends at most
        `max_bytes` (its `X-Repodepot-Output-Cap` says so, as a local exec's does).
        Raises InvalidInput naming the argument `check_exec` refuses, before any call;
        InvalidInput (field `args`) with git's words when git fails before any output;
        TooManyRequests when the node runs too many at once; NotFound when it has no
        mirror yet; NodeUnavailable when it cannot answer.
        """
        check_exec(args)
        headers = _headers(None)
        headers["content-type"] = "application/json"
        content = json.dumps({"args": args, "user_id": user_id, "max_bytes": max_bytes})
        path = f"/internal/repos/{repository_id}/exec"
        upstream = await self.open(
            node, "POST", path, headers, name=name, passed=_EXECUTED, content=content.encode()
        )
        if upstream.status_code == 200:
            # Capped here too: the node's cap is its own word, this one is ours.
            return _Relayed(upstream, node=node, also=(OUTPUT_CAP,), limit=max_bytes)
        retry_after = _retry_after(upstream.headers)
        body = await self.read_small(upstream, node, name)
        if upstream.status_code == 429:  # the node's words, in plain text
            raise TooManyRequests(body.decode(errors="replace").strip(), retry_after=retry_after)
        refused = _refusal(body)
        if refused is None:
            _log_failure(node, "answered 422 without an error", None)
            raise _unavailable(name, node, "cannot answer")
        message, field = refused
        raise InvalidInput(
            message.replace(repr(internal_name(repository_id)), repr(name)), field=field
        )

    async def goproxy(
        self, node: str, repository_id: int, name: str, rest: str, if_none_match: str | None
    ) -> Response:
        """Node `node`'s answer to GOPROXY request `/goproxy/{rest}`, relayed as it arrives.

        The node serves the module from repository `name` (chosen here, for the caller:
        the node checks no access), with its status, content type, cache control and
        ETag; `if_none_match` is the client's. Raises NodeUnavailable when it cannot answer.
        """
        headers = _headers(None)
        if if_none_match is not None:
            headers["if-none-match"] = if_none_match
        path = f"/internal/goproxy/{repository_id}/{quote(rest, safe='/!@+~')}"
        upstream = await self.open(node, "GET", path, headers, name=name, passed=_GOPROXY)
        return _Relayed(upstream, node=node, also=("etag",))

    async def read_small(
        self, upstream: httpx.Response, node: str, name: str, *, limit: int = MAX_ANSWER
    ) -> bytes:
        """The node's whole answer, at most `limit` bytes; raises NodeUnavailable."""
        body = bytearray()
        try:
            async for chunk in upstream.aiter_bytes():
                body += chunk
                if len(body) > limit:
                    _log_failure(node, f"answered more than {limit} bytes", None)
                    raise _unavailable(name, node, "cannot answer")
        except httpx.HTTPError as error:
            self._directory.forget()
            _log_failure(node, f"broke off its answer ({type(error).__name__})", error)
            raise _unavailable(name, node, "cannot be reached") from error
        finally:
            await upstream.aclose()
        return bytes(body)

    async def upload_pack(
        self, node: str, repository_id: int, name: str, request: Request, protocol: str | None
    ) -> Response:
        """Node `node`'s answer to the client's negotiation (`request`'s body, streamed to it).

        The body goes as it came (a gzipped one stays gzipped: the node inflates and
        bounds it as for its own clients). Raises NodeUnavailable when the node cannot
        answer, NotFound when it has no mirror of the repository.
        """
        headers = _headers(protocol)
        headers["content-type"] = f"application/x-{UPLOAD_PACK}-request"
        if encoding := request.headers.get("content-encoding"):
            headers["content-encoding"] = encoding
        path = f"/internal/repos/{repository_id}/{UPLOAD_PACK}"
        upstream = await self.open(
            node, "POST", path, headers, name=name, content=request.stream(), passed=_STREAMED
        )
        return _Relayed(upstream, node=node)

    async def open(
        self,
        node: str,
        method: str,
        path: str,
        headers: dict[str, str],
        *,
        name: str,
        passed: frozenset[int],
        content: AsyncIterator[bytes] | bytes | None = None,
    ) -> httpx.Response:
        """The node's answer, its body not read yet, when its status is one of `passed`.

        Raises NotFound for another 404 (no mirror there yet), NodeUnavailable otherwise.
        """
        url = await self.url(node, name)
        headers["authorization"] = f"Bearer {self._secret}"
        request = self._client.build_request(method, url + path, headers=headers, content=content)
        if request.url.raw_path.decode("ascii", "replace") != path:
            # The URL library rewrote the path (dot segments collapsed): it would reach
            # another route than the one decided for, with the secret. Never sent.
            raise NotFound(f"{name!r} has no such path")
        try:
            upstream = await self._client.send(request, stream=True)
        except httpx.TransportError as error:  # refused, timed out, cut, pool full
            self._directory.forget()
            _log_failure(node, f"cannot be reached ({type(error).__name__})", error)
            raise _unavailable(name, node, "cannot be reached") from error
        signed = upstream.headers.get(NODE_HEADER)
        if signed != node:
            # Not node `node`'s answer: its URL now reaches another process (a node of an
            # older version without this route, another node, something else); a 404 from
            # it must not read as "not cloned", nor its 200 as the mirror.
            await upstream.aclose()
            self._directory.forget()
            said = f"as {signed[:64]!r}" if signed else "without a storage node's signature"
            _log_failure(
                node,
                f"answered {upstream.status_code} {said}: is REPODEPOT_NODE_URL right, and "
                "does it run this version?",
                None,
            )
            raise _unavailable(name, node, "cannot answer")
        if upstream.status_code in passed:
            return upstream
        await upstream.aclose()
        if upstream.status_code == 404:
            raise NotFound(f"{name!r} is not cloned yet; try again shortly")
        if upstream.status_code == 403:
            logger.error(
                "storage node %s refused the internal secret: REPODEPOT_INTERNAL_SECRET "
                "must be the same in every process",
                node,
                extra={"action": "nodes.forward_refused", "node": node},
            )
        else:
            _log_failure(node, f"answered {upstream.status_code}", None)
        raise _unavailable(name, node, "cannot answer")

    async def url(self, node: str, name: str) -> str:
        """The base URL to reach `node` at; NodeUnavailable when it cannot be used now."""
        found = await self._directory.get(node)
        if found is None:
            why = "is not registered"
        elif found.state is NodeState.dead:
            why = "is down"
        elif not found.url:
            why = "has no internal URL (REPODEPOT_NODE_URL)"
        elif self._secret is None:
            why = "cannot be called: this process has no REPODEPOT_INTERNAL_SECRET"
        else:
            return found.url.rstrip("/")
        _log_failure(node, why, None)
        # The client is told whether the node is down, not how this cluster is set up.
        shown = why if found is not None and found.state is NodeState.dead else "cannot be reached"
        raise _unavailable(name, node, shown)


def relayed(upstream: httpx.Response, node: str, *, also: tuple[str, ...] = ()) -> Response:
    """`upstream` (from `Forwarder.open`) relayed to the client as it arrives.

    Cut short when the node breaks it off; only its content type and cache control are
    passed on, and the headers named in `also`.
    """
    return _Relayed(upstream, node=node, also=also)


def request_headers() -> dict[str, str]:
    """The headers every forwarded call starts from: identity encoding, the request id."""
    return _headers(None)


class Malformed(ValueError):
    """A node's JSON answer is not of the shape asked for."""


def fields_of(found: Any, kinds: Mapping[str, type | tuple[type, ...]]) -> dict[str, Any]:
    """`found`'s `kinds` keys, each of its kind (a bool is never an int); Malformed if not."""
    if not isinstance(found, dict):
        raise Malformed
    for key, kind in kinds.items():
        value = found.get(key)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise Malformed
    return {key: found[key] for key in kinds}


def cannot_answer(name: str, node: str) -> NodeUnavailable:
    """NodeUnavailable for an answer of node `node` about `name` that is not one (503)."""
    return _unavailable(name, node, "cannot answer")


def _commit(body: bytes, node: str, name: str) -> Commit:
    """The commit in a node's JSON answer; NodeUnavailable when it is not one."""
    try:
        return Commit(**fields_of(jsonbound.loads(body), _COMMIT_FIELDS))
    except ValueError:
        _log_failure(node, "answered something other than a commit", None)
        raise cannot_answer(name, node) from None


def _refusal(body: bytes) -> tuple[str, str | None] | None:
    """The message and field of a node's JSON error (`web.errors.error_body`); None if not one."""
    try:
        found: Any = jsonbound.loads(body)
    except ValueError:
        return None
    error = found.get("error") if isinstance(found, dict) else None
    if not isinstance(error, dict) or not isinstance(error.get("message"), str):
        return None
    field = error.get("field")
    return error["message"], field if isinstance(field, str) else None


def _retry_after(headers: Mapping[str, str]) -> int:
    value = headers.get("retry-after", "")
    return int(value) if value.isascii() and value.isdigit() and len(value) < 6 else 1


def _headers(protocol: str | None) -> dict[str, str]:
    headers = {"accept-encoding": "identity"}  # relayed as sent: nothing to inflate here
    if protocol is not None:
        headers["git-protocol"] = protocol
    if (rid := request_id.get()) is not None:
        headers["x-request-id"] = rid  # one id in both processes' logs
    return headers


def _unavailable(name: str, node: str, why: str) -> NodeUnavailable:
    return NodeUnavailable(
        f"{name!r} is on storage node {node!r}, which {why} now; try again shortly"
    )


def _log_failure(node: str, what: str, error: BaseException | None) -> None:
    # The error's text names the node's URL, never the secret (a header).
    logger.warning(
        "storage node %s %s%s",
        node,
        what,
        f": {error}" if error is not None and str(error) else "",
        extra={"action": "nodes.forward_failed", "node": node},
    )


class _Cut(Exception):
    """The node's answer broke off after it began."""


class _Relayed(StreamingResponse):
    """A node's answer relayed as it arrives; cut short when the node's stream breaks.

    Cut short means no end of body: the server closes the connection and the client sees
    an unfinished answer (uvicorn logs that the response was not completed).
    """

    def __init__(
        self,
        upstream: httpx.Response,
        *,
        node: str,
        also: tuple[str, ...] = (),
        limit: int | None = None,
    ) -> None:
        super().__init__(
            _chunks(upstream, node, limit),
            status_code=upstream.status_code,
            headers=_relayed_headers(upstream.headers, _RELAYED_HEADERS + also),
        )
        self._upstream = upstream

    async def stream_response(self, send: Send) -> None:
        """Send the node's answer; without its end when the node broke it off."""
        try:
            await super().stream_response(send)
        except _Cut:
            return
        finally:
            # Shielded: a client that leaves cancels this, and the node's connection
            # must still be released.
            with anyio.CancelScope(shield=True):
                await self._upstream.aclose()


def _relayed_headers(headers: Mapping[str, str], names: tuple[str, ...]) -> dict[str, str]:
    return {key: headers[key] for key in names if key in headers}


async def _chunks(
    upstream: httpx.Response, node: str, limit: int | None = None
) -> AsyncIterator[bytes]:
    """The node's answer as it arrives; at most `limit` bytes, ended there as a whole."""
    sent = 0
    try:
        async for chunk in upstream.aiter_raw():
            if limit is not None:
                chunk = chunk[: limit - sent]
                sent += len(chunk)
            if chunk:
                yield chunk
            if limit is not None and sent >= limit:
                return  # the cap a local answer has too; the rest is not read
    except httpx.HTTPError as error:
        _log_failure(node, f"broke off its answer ({type(error).__name__})", error)
        raise _Cut from error
