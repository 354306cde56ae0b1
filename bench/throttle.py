"""A TCP proxy on 127.0.0.1 that makes a loopback server look far away.

Each direction of each connection is a link with a propagation delay of half the
round trip and a bandwidth cap: a chunk read at time `a` leaves the link when the
link has sent what came before it plus `len / rate`, and arrives `rtt / 2` later.
Connection set-up itself is not delayed (the TCP handshake to the proxy is local).
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType


class Throttle:
    """`http://127.0.0.1:{port}` reaches `127.0.0.1:{target}` through a slow link."""

    def __init__(self, target: int, *, rtt: float, rate: float) -> None:
        self.target = target
        self.delay = rtt / 2
        self.rate = rate
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Throttle:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _connection(self, client: asyncio.StreamReader, back: asyncio.StreamWriter) -> None:
        try:
            server, forth = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            back.close()
            return
        try:
            await asyncio.gather(self._link(client, forth), self._link(server, back))
        finally:
            forth.close()
            back.close()

    async def _link(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def read() -> None:
            free = 0.0  # when the link has sent everything read so far
            while True:
                try:
                    chunk = await source.read(16 << 10)
                except ConnectionError:
                    chunk = b""
                now = loop.time()
                free = max(free, now) + len(chunk) / self.rate
                queue.put_nowait((free + self.delay, chunk))
                if not chunk:
                    return

        reader = asyncio.create_task(read())
        try:
            while True:
                due, chunk = await queue.get()
                await asyncio.sleep(max(0.0, due - loop.time()))
                if not chunk:
                    break
                sink.write(chunk)
                await sink.drain()
        except ConnectionError:
            pass
        finally:
            reader.cancel()
            with contextlib.suppress(OSError, RuntimeError):
                if sink.can_write_eof():
                    sink.write_eof()
                else:
                    sink.close()
