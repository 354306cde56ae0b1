"""Calling a code host's REST API politely: paced, retried, rate-limit aware and conditional.

- Pacing: at most `requests_per_second` to one connection, and at most
  `max_concurrent` calls in flight site-wide (one semaphore shared by all connections).
- Rate limits (GitHub's documented rules, which GitLab's and Gitea's headers fit):
  on 403/429 wait `Retry-After` seconds if given, else until `X-RateLimit-Reset`
  (or `RateLimit-Reset`) when the remaining count is 0, else a minute; a successful
  answer with nothing remaining makes the next call wait for the reset. A wait longer
  than `max_rate_limit_wait` fails the sync with the reset time instead.
- 5xx and connection errors are retried with exponential backoff and full jitter.
- 401, and 403 without rate-limit signs, stop at once: the token is wrong.
- Conditional requests: each page's ETag is remembered with what the page yielded, and
  sent back as `If-None-Match`; a 304 reuses the page (on GitHub it costs no quota).
- Outbound: every request goes to an address the outbound policy checked
  (`GuardedTransport`); the token goes to the API's origin only: a redirect or a
  next-page link to another origin fails the sync instead of being followed.
- Bounded: the host is not trusted with our memory or our time. Each answer is read
  as a stream and refused past `max_response_bytes` (counted after inflating gzip, a
  step at a time); its JSON may nest 64 levels at most; each call, body included, has
  `timeout` seconds in all (a host dripping one byte at a time is a timeout, retried);
  a listing ends at an empty page and fails past `max_items` items.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx

from repodepot import __version__
from repodepot.exceptions import InvalidInput, RepodepotError
from repodepot.inflate import gzip_stream, steps
from repodepot.jsonbound import loads
from repodepot.outbound import GuardedTransport, OutboundRefused, Policy, origin
from repodepot.settings import Settings

_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="?([^";]+)"?')
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_GZIP = ("gzip", "x-gzip")
SECONDARY_WAIT = 60.0
MAX_REDIRECTS = 5
T = TypeVar("T")


class CodeHostError(RepodepotError):
    """The code host could not be listed."""

    code = "code_host_error"


class BadCredentials(CodeHostError):
    """The code host refused the token."""

    code = "code_host_bad_credentials"

    def __init__(self, message: str | None = None, *, answer: str = "") -> None:
        self.answer = answer  # the host's status and message, e.g. "401 Bad credentials"
        super().__init__(message)


class RateLimited(CodeHostError):
    """The code host's rate limit is exhausted for longer than we wait."""

    code = "code_host_rate_limited"


class HostUnavailable(CodeHostError):
    """The code host did not answer after retries."""

    code = "code_host_unavailable"


class ApiNotFound(CodeHostError):
    """The code host has no such resource."""

    code = "code_host_not_found"


class OtherOrigin(CodeHostError):
    """The code host sent us to another origin, which does not get its token."""

    code = "code_host_other_origin"


class AnswerTooLarge(CodeHostError):
    """The code host's answer is larger than we read."""

    code = "code_host_answer_too_large"


class MalformedAnswer(CodeHostError):
    """The code host's answer is not what its API documents."""

    code = "code_host_malformed_answer"


class MalformedItem(ValueError):
    """What in a page or resource does not have the shape the host's API documents."""


class ListingTooLong(CodeHostError):
    """The code host listed more repositories than the site holds."""

    code = "code_host_listing_too_long"


@dataclass(frozen=True, slots=True)
class Answer:
    """One API answer, its body read whole (within the byte cap)."""

    status: int
    headers: httpx.Headers
    body: bytes

    @property
    def redirect(self) -> str | None:
        """Where a redirect points, if this is one."""
        return self.headers.get("location") if self.status in _REDIRECTS else None


@dataclass(slots=True)
class CachedPage:
    """What a page yielded the last time, under its ETag."""

    etag: str
    value: Any
    next_url: str | None


@dataclass(slots=True)
class ApiStats:
    """What one sync spent."""

    calls: int = 0
    not_modified: int = 0
    retries: int = 0
    rate_limit_waits: int = 0


@dataclass(slots=True)
class Pacer:
    """At most `rate` requests per second, spaced evenly."""

    rate: float
    _next: float = 0.0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def wait(self) -> None:
        """Return when the next request may go."""
        async with self._lock:
            now = time.monotonic()
            delay = self._next - now
            self._next = max(now, self._next) + 1.0 / self.rate
        if delay > 0:
            await asyncio.sleep(delay)


@dataclass(frozen=True, slots=True)
class ApiLimits:
    """The knobs, from the settings."""

    requests_per_second: float
    max_concurrent: int
    timeout: float
    retries: int
    retry_base: float
    max_rate_limit_wait: float
    max_response_bytes: int
    max_items: int  # per listing, counted before deduplication

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiLimits:
        """The settings' `codehost_*` limits; a listing is bounded by `max_repos_per_site`."""
        return cls(
            requests_per_second=settings.codehost_requests_per_second,
            max_concurrent=settings.codehost_max_concurrent_requests,
            timeout=settings.codehost_request_timeout,
            retries=settings.codehost_retries,
            retry_base=settings.codehost_retry_base,
            max_rate_limit_wait=settings.codehost_max_rate_limit_wait,
            max_response_bytes=settings.codehost_max_response_bytes,
            max_items=settings.max_repos_per_site,
        )


def next_link(headers: Mapping[str, str]) -> str | None:
    """The `rel="next"` URL of a `Link` header, if any."""
    for url, rel in _LINK.findall(headers.get("link", "")):
        if "next" in rel.split():
            return str(url)
    return None


def _number(headers: Mapping[str, str], *names: str) -> float | None:
    for name in names:
        value = headers.get(name)
        if value is not None:
            try:
                return float(value)
            except ValueError:
                continue
    return None


def _remaining(headers: Mapping[str, str]) -> float | None:
    return _number(headers, "x-ratelimit-remaining", "ratelimit-remaining")


def _reset_in(headers: Mapping[str, str], now: float) -> float | None:
    reset = _number(headers, "x-ratelimit-reset", "ratelimit-reset")
    return None if reset is None else max(0.0, reset - now)


def _message(answer: Answer) -> str:
    try:
        body = loads(answer.body)
    except ValueError:
        return answer.body[:200].decode(errors="replace").strip()
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error") or "")[:200]
    return ""


class HostApi:
    """One connection's API session for one sync: `get` a resource, or walk `pages`."""

    def __init__(
        self,
        *,
        base_url: str,
        headers: Mapping[str, str],
        policy: Policy,
        limits: ApiLimits,
        site_slots: asyncio.Semaphore,
        cache: dict[str, CachedPage],
        what: str,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.origin = origin(self.base_url)
        self.stats = ApiStats()
        self._limits = limits
        self._slots = site_slots
        self._cache = cache
        self._what = what
        self._sleep = sleep
        self._pacer = Pacer(limits.requests_per_second)
        self._blocked_until = 0.0
        self._client = httpx.AsyncClient(
            # Only gzip, which `_read` inflates a bounded step at a time.
            headers={
                "User-Agent": f"repodepot/{__version__}",
                "Accept-Encoding": "gzip",
                **headers,
            },
            timeout=limits.timeout,
            follow_redirects=False,  # `_request` follows the same origin only
            trust_env=False,
            transport=GuardedTransport(policy),
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    def url(self, path: str) -> str:
        """An absolute URL for an API path."""
        if "://" in path:
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    async def get(self, path: str, convert: Callable[[Any], T]) -> T:
        """One resource (not cached), converted from its JSON."""
        url = self.url(path)
        return self._converted(url, await self._request(url, etag=None), convert)

    async def pages(
        self, path: str, convert: Callable[[Any], list[Any]]
    ) -> AsyncIterator[list[Any]]:
        """Each page of a listing, converted; follows `Link: rel="next"` or `X-Next-Page`.

        An empty page ends the listing, and more than `max_items` items in all fail it
        (ListingTooLong): a host that links page after page never ends a sync otherwise.
        The pages cached from the last listing are revalidated all at once (each still
        paced and counted against the site-wide limit): an unchanged listing costs one
        round of conditional requests, not one round trip per page in turn.
        """
        url: str | None = self.url(path)
        ahead = {
            link: asyncio.ensure_future(self._fetch(link, convert)) for link in self._chain(url)
        }
        seen: set[str] = set()
        items = 0
        try:
            while url is not None and url not in seen:
                seen.add(url)
                task = ahead.pop(url, None)
                value, url = await (task if task is not None else self._fetch(url, convert))
                if not value:
                    return
                items += len(value)
                if items > self._limits.max_items:
                    raise ListingTooLong(
                        f"{self._what} listed more than max_repos_per_site "
                        f"({self._limits.max_items}) repositories under {_path(self.url(path))}; "
                        "nothing was changed. Raise REPODEPOT_MAX_REPOS_PER_SITE or narrow "
                        "the connection's query"
                    )
                yield value
        finally:
            for task in ahead.values():
                task.cancel()
            await asyncio.gather(*ahead.values(), return_exceptions=True)

    def _chain(self, url: str | None) -> list[str]:
        """The URLs the cached pages say follow `url`, `url` first (empty if it is not cached)."""
        chain: list[str] = []
        while url is not None and url in self._cache and url not in chain:
            chain.append(url)
            url = self._cache[url].next_url
        return chain

    async def _fetch(self, url: str, convert: Callable[[Any], list[Any]]) -> tuple[Any, str | None]:
        """One page's converted value and the URL of the next, from the cache on a 304."""
        cached = self._cache.get(url)
        response = await self._request(url, etag=cached.etag if cached else None)
        if response.status == 304 and cached is not None:
            self.stats.not_modified += 1
            return cached.value, cached.next_url
        value = self._converted(url, response, convert)
        following = self._following(url, response)
        etag = response.headers.get("etag")
        if etag:
            self._cache[url] = CachedPage(etag, value, following)
        else:
            self._cache.pop(url, None)
        return value, following

    def _converted(self, url: str, answer: Answer, convert: Callable[[Any], T]) -> T:
        """`convert` of the answer's JSON; MalformedAnswer for bad JSON or a bad shape."""
        try:
            value = loads(answer.body)
        except ValueError as error:  # also numbers past Python's 4300 digits
            message = error.msg if isinstance(error, json.JSONDecodeError) else str(error)
            raise MalformedAnswer(
                f"{self._what} answered {_path(url)} with invalid JSON: {message}"
            ) from None
        try:
            return convert(value)
        except MalformedItem as error:
            raise MalformedAnswer(
                f"{self._what} answered {_path(url)} with {error}: not as its API documents"
            ) from None

    def _following(self, url: str, response: Answer) -> str | None:
        link = next_link(response.headers)
        if link is not None:
            return self._same_origin(url, link, "its next page")
        page = response.headers.get("x-next-page", "").strip()
        if page.isdigit():
            return str(httpx.URL(url).copy_set_param("page", page))
        return None

    def _same_origin(self, url: str, target: str, what: str) -> str:
        """`target` (relative to `url`) when it is on the API's origin; else OtherOrigin."""
        absolute = str(httpx.URL(url).join(target))
        try:
            elsewhere = origin(absolute)
        except InvalidInput:
            raise CodeHostError(f"{self._what} answered {_path(url)} with a bad URL") from None
        if elsewhere != self.origin:
            raise OtherOrigin(
                f"{self._what} put {what} for {_path(url)} on {elsewhere}, another origin "
                f"than its API ({self.origin}): not followed, so the token stays with the host"
            )
        return absolute

    async def _request(self, url: str, *, etag: str | None) -> Answer:
        headers = {"If-None-Match": etag} if etag else {}
        failures = 0
        limited = 0
        redirects = 0
        while True:
            await self._wait_for_reset()
            await self._pacer.wait()
            try:
                async with self._slots:
                    self.stats.calls += 1
                    response = await self._exchange(url, headers)
            except httpx.TransportError as error:
                failures += 1
                await self._backoff(failures, f"{type(error).__name__}: {error}")
                continue
            except TimeoutError:
                failures += 1
                timeout = self._limits.timeout
                await self._backoff(failures, f"no whole answer within {timeout:g} s")
                continue
            except OutboundRefused as refused:
                raise CodeHostError(f"{self._what}: {refused.message}") from None
            status = response.status
            if response.redirect is not None and redirects < MAX_REDIRECTS:
                redirects += 1
                url = self._same_origin(url, response.redirect, "a redirect")
                continue
            if status < 300 or status == 304:
                self._note_quota(response)
                return response
            if status in (403, 429) and self._is_rate_limit(response):
                limited += 1
                await self._rate_limit_wait(response, limited)
                continue
            if status == 401 or status == 403:
                told = _message(response)  # GitLab's is "401 Unauthorized"
                answer = told if told.startswith(str(status)) else f"{status} {told}".strip()
                raise BadCredentials(
                    f"{self._what} refused the token ({answer}): "
                    "check that it is valid and has read access to the repositories",
                    answer=answer,
                )
            if status == 404:
                raise ApiNotFound(f"{self._what} answered 404 for {_path(url)}")
            if status >= 500:
                failures += 1
                await self._backoff(failures, f"HTTP {status}")
                continue
            raise CodeHostError(
                f"{self._what} answered {status} for {_path(url)}: {_message(response)}"
            )

    async def _exchange(self, url: str, headers: Mapping[str, str]) -> Answer:
        """One GET, its body included, within `timeout` seconds in all (else TimeoutError).

        httpx's own timeout bounds each read, not the answer: one byte every few
        seconds would hold a sync forever.
        """
        async with (
            asyncio.timeout(self._limits.timeout),
            self._client.stream("GET", url, headers=headers) as response,
        ):
            body = await self._read(url, response)
        return Answer(response.status_code, response.headers, body)

    async def _read(self, url: str, response: httpx.Response) -> bytes:
        """The body, inflated; AnswerTooLarge past `max_response_bytes`, before or after."""
        cap = self._limits.max_response_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise self._too_large(url, cap)
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("identity", *_GZIP):
            raise MalformedAnswer(
                f"{self._what} answered {_path(url)} with Content-Encoding "
                f"{encoding[:40]!r}, which was not asked for"
            )
        inflate = gzip_stream() if encoding in _GZIP else None
        body = bytearray()
        received = 0
        async for raw in response.aiter_raw():
            received += len(raw)
            if received > cap:
                raise self._too_large(url, cap)
            for chunk in self._inflated(url, inflate, raw) if inflate else (raw,):
                body += chunk
                if len(body) > cap:
                    raise self._too_large(url, cap)
        return bytes(body)

    def _inflated(self, url: str, inflate: zlib._Decompress, data: bytes) -> Iterator[bytes]:
        try:
            yield from steps(inflate, data)
        except zlib.error as error:
            raise MalformedAnswer(
                f"{self._what} answered {_path(url)} with broken gzip: {error}"
            ) from None

    def _too_large(self, url: str, cap: int) -> AnswerTooLarge:
        return AnswerTooLarge(
            f"{self._what} answered {_path(url)} with more than {cap} bytes, the most one "
            "answer may hold (REPODEPOT_CODEHOST_MAX_RESPONSE_BYTES): not read further"
        )

    def _is_rate_limit(self, response: Answer) -> bool:
        headers = response.headers
        return (
            response.status == 429
            or "retry-after" in headers
            or _remaining(headers) == 0
            or "rate limit" in _message(response).lower()
        )

    def _note_quota(self, response: Answer) -> None:
        if _remaining(response.headers) == 0:
            reset_in = _reset_in(response.headers, time.time())
            if reset_in is not None:
                self._blocked_until = time.monotonic() + reset_in

    async def _wait_for_reset(self) -> None:
        delay = self._blocked_until - time.monotonic()
        if delay > 0:
            self._check_wait(delay)
            self.stats.rate_limit_waits += 1
            await self._sleep(delay)

    async def _rate_limit_wait(self, response: Answer, attempt: int) -> None:
        headers = response.headers
        retry_after = _number(headers, "retry-after")
        if retry_after is not None:
            delay = retry_after
        elif _remaining(headers) == 0 and (reset := _reset_in(headers, time.time())) is not None:
            delay = reset
        else:
            # A secondary limit without a hint: a minute, doubling if it persists.
            delay = SECONDARY_WAIT * 2 ** (attempt - 1)
        if attempt > self._limits.retries + 1:
            raise RateLimited(f"{self._what} kept answering rate-limited after {attempt} waits")
        self._check_wait(delay)
        self.stats.rate_limit_waits += 1
        await self._sleep(delay + 0.05)

    def _check_wait(self, delay: float) -> None:
        if delay > self._limits.max_rate_limit_wait:
            until = datetime.fromtimestamp(time.time() + delay, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
            raise RateLimited(
                f"{self._what} is rate-limited until {until}, longer than the "
                f"{self._limits.max_rate_limit_wait:.0f} s we wait; the next sync resumes"
            )

    async def _backoff(self, failures: int, cause: str) -> None:
        if failures > self._limits.retries:
            raise HostUnavailable(
                f"{self._what} did not answer after {failures} attempts (last: {cause})"
            )
        self.stats.retries += 1
        # Full jitter: uniform in [0, base * 2^n], so retrying clients spread out.
        await self._sleep(random.uniform(0, self._limits.retry_base * 2 ** (failures - 1)))


def _path(url: str) -> str:
    return httpx.URL(url).path
