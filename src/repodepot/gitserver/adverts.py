"""Smart HTTP's ref advertisements, kept while the mirror's refs do not change.

Every clone and fetch starts with `GET info/refs`, and each cost a `git upload-pack
--advertise-refs` process (about 5 ms of forking before git reads a ref). Its answer
depends on the refs, HEAD, the repository's config and the client's protocol line,
nothing else: it is kept per (mirror, protocol) with the refs' on-disk signature
(`git.refstate`) and given again while that signature holds. The first answer after a
change streams from git as before and is kept once whole, unless it came less than a
second after the change (it could miss a second one in the same clock tick) or is
larger than MAX_ADVERT (a mirror with a huge number of refs streams every time).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import AsyncGenerator
from pathlib import Path

from repodepot.git import commands
from repodepot.git.refstate import SETTLED, refs_state
from repodepot.git.runner import GitRunner

MAX_ADVERT = 1 << 20
MAX_KEPT_BYTES = 64 << 20
Key = tuple[Path, str | None]


class Advertisements:
    """`git upload-pack --advertise-refs` answers by mirror and protocol, from memory when fresh."""

    def __init__(self, git: GitRunner) -> None:
        self._git = git
        self._kept: OrderedDict[Key, tuple[tuple[int, ...], bytes]] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def advertise(self, path: Path, protocol: str | None) -> AsyncGenerator[bytes, None]:
        """The advertisement of the mirror at `path` for a client speaking `protocol`."""
        key = (path, protocol)
        state, newest = refs_state(path, ("refs",), files=("HEAD", "config"))
        kept = self._kept.get(key)
        if kept is not None and kept[0] == state:
            self._kept.move_to_end(key)
            self.hits += 1
            return _once(kept[1])
        self.misses += 1
        settled = time.time() - newest > SETTLED
        output = commands.upload_pack_advertise(self._git, path, protocol=protocol)
        return self._keeping(key, state, output) if settled else output

    async def _keeping(
        self, key: Key, state: tuple[int, ...], output: AsyncGenerator[bytes, None]
    ) -> AsyncGenerator[bytes, None]:
        whole = bytearray()
        complete = True
        async for chunk in output:
            if complete:
                whole += chunk
                complete = len(whole) <= MAX_ADVERT
                if not complete:
                    whole = bytearray()
            yield chunk
        if complete:
            self._keep(key, state, bytes(whole))

    def _keep(self, key: Key, state: tuple[int, ...], advert: bytes) -> None:
        old = self._kept.pop(key, None)
        if old is not None:
            self._bytes -= len(old[1])
        self._kept[key] = (state, advert)
        self._bytes += len(advert)
        while self._bytes > MAX_KEPT_BYTES:
            _, (_, dropped) = self._kept.popitem(last=False)
            self._bytes -= len(dropped)


async def _once(advert: bytes) -> AsyncGenerator[bytes, None]:
    yield advert
