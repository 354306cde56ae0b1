"""Publish/subscribe of small JSON events: in-process, and across processes via PostgreSQL.

Events are latest-value snapshots; a subscriber that misses one loses nothing, because
the next one is complete. Each subscription orders its topic's events by a key the
publisher's module gives (`Order`; by default the event's `seq`) and drops those not
newer than the last it delivered, so an event arriving twice (locally and again through
NOTIFY) is delivered once. The broker knows nothing of what the events are about.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

logger = logging.getLogger(__name__)

Event = dict[str, Any]
CHANNEL = "repodepot_events"
QUEUE_SIZE = 64


Order = Callable[[Event], tuple[int, ...]]


async def notify_in(session: AsyncSession, topic: str, data: Event) -> None:
    """On PostgreSQL, publish `data` on `topic` in every process when `session` commits.

    Delivered at commit, never if the transaction rolls back, to each process's broker
    (`PostgresRelay`), this one's included. On SQLite (one process) nothing is sent: the
    caller wakes its own listeners.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    payload = json.dumps({"topic": topic, "data": data})
    await session.execute(
        text("SELECT pg_notify(:channel, :payload)"), {"channel": CHANNEL, "payload": payload}
    )


def by_seq(event: Event) -> tuple[int, ...]:
    """The default order: the event's `seq` (-1 without one)."""
    seq = event.get("seq")
    return (seq if isinstance(seq, int) else -1,)


class Subscription:
    """One subscriber's queue; only the newest events are kept when it falls behind."""

    def __init__(self, topic: str, order: Order = by_seq) -> None:
        self.topic = topic
        self.order = order
        self._queue: asyncio.Queue[Event] = asyncio.Queue(QUEUE_SIZE)
        self._last: dict[Any, tuple[int, ...]] = {}  # per entity (the event's id)

    def offer(self, event: Event) -> None:
        """Queue `event` if newer than what was delivered; drop the oldest when full."""
        key, entity = self.order(event), event.get("id")
        if entity in self._last and key <= self._last[entity]:
            return
        self._last[entity] = key
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(event)

    async def get(self, timeout: float | None = None) -> Event | None:
        """The next event, or None after `timeout` seconds."""
        try:
            async with asyncio.timeout(timeout):
                return await self._queue.get()
        except TimeoutError:
            return None

    def seen(self, event: Event) -> None:
        """Skip events not newer than `event` (the caller already has that state)."""
        entity, key = event.get("id"), self.order(event)
        self._last[entity] = max(self._last[entity], key) if entity in self._last else key


class Broker:
    """In-process fan-out by topic."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[Subscription]] = defaultdict(set)
        self._listeners: dict[str, list[Callable[[Any], None]]] = defaultdict(list)

    def publish(self, topic: str, event: Any) -> None:
        """Deliver `event` to this process's subscribers and listeners of `topic`."""
        for subscription in list(self._subscribers.get(topic, ())):
            subscription.offer(event)
        for listener in self._listeners.get(topic, ()):
            listener(event)

    def listen(self, topic: str, callback: Callable[[Any], None]) -> None:
        """Call `callback(event)` for every event of `topic`, for as long as the process runs."""
        self._listeners[topic].append(callback)

    def open(self, topic: str, order: Order = by_seq) -> Subscription:
        """Start receiving `topic`'s events in `order`; `close()` the subscription when done."""
        subscription = Subscription(topic, order)
        self._subscribers[topic].add(subscription)
        return subscription

    def close(self, subscription: Subscription) -> None:
        """Stop delivering to `subscription` (idempotent)."""
        subscribers = self._subscribers.get(subscription.topic)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[subscription.topic]

    @contextlib.contextmanager
    def subscribe(self, topic: str, order: Order = by_seq) -> Iterator[Subscription]:
        """`with broker.subscribe(topic) as sub:` then `await sub.get()`."""
        subscription = self.open(topic, order)
        try:
            yield subscription
        finally:
            self.close(subscription)

    def subscriber_count(self, topic: str) -> int:
        """How many subscribers `topic` has here."""
        return len(self._subscribers.get(topic, ()))


class PostgresRelay:
    """Feed NOTIFYs on `repodepot_events` (sent by table triggers) into a local Broker.

    One dedicated connection per process; it reconnects when the connection drops.
    """

    def __init__(self, dsn: str, broker: Broker) -> None:
        self._dsn = dsn
        self._broker = broker
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        """Connect and listen; returns once listening."""
        self._task = asyncio.create_task(self._run(), name="postgres-relay")
        async with asyncio.timeout(30):
            await self._ready.wait()

    async def stop(self) -> None:
        """Stop listening."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        import asyncpg

        while True:
            try:
                connection = await asyncpg.connect(self._dsn)
                try:
                    closed = asyncio.Event()
                    connection.add_termination_listener(_setter(closed))
                    await connection.add_listener(CHANNEL, self._on_notify)
                    self._ready.set()
                    await closed.wait()
                finally:
                    with contextlib.suppress(Exception):
                        await connection.close()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning(
                    "event relay lost its connection; reconnecting",
                    exc_info=True,
                    extra={"action": "events.reconnect"},
                )
                await asyncio.sleep(1)

    def _on_notify(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            message = json.loads(payload)
            self._broker.publish(message["topic"], message["data"])
        except (ValueError, KeyError, TypeError):
            logger.warning("malformed event ignored", extra={"action": "events.malformed"})


def _setter(event: asyncio.Event) -> Any:
    return lambda *_: event.set()


def asyncpg_dsn(sqlalchemy_url: str) -> str:
    """The plain `postgresql://` DSN asyncpg wants, from a SQLAlchemy URL."""
    from sqlalchemy.engine import make_url

    url = make_url(sqlalchemy_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)
