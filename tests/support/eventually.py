"""Wait for something to happen by checking it, never by sleeping a guessed time.

A sleep long enough on a quiet laptop is too short on a loaded CI machine, and every
sleep is paid in full on each run. `eventually()` checks at once, then every `interval`,
and returns as soon as the check holds.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")


@overload
async def eventually(
    check: Callable[[], Awaitable[T]], *, timeout: float = ..., interval: float = ...
) -> T: ...


@overload
async def eventually(
    check: Callable[[], T], *, timeout: float = ..., interval: float = ...
) -> T: ...


async def eventually(
    check: Callable[[], Any], *, timeout: float = 10.0, interval: float = 0.02
) -> Any:
    """Call `check` (sync or async) until it holds, and return what it returned.

    It holds when it returns without raising AssertionError and its result is not false:
    a function of asserts returns None (holds), a condition returns a value (holds when
    truthy). A lookup that answers None for "not yet" must say so: `lambda: x is not None`.
    On timeout the last AssertionError is raised again, with a note of how long it waited.
    """
    started = time.monotonic()
    while True:
        try:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result is None or result:
                return result
            raise AssertionError(f"still false: {check_name(check)} returned {result!r}")
        except AssertionError as failure:
            waited = time.monotonic() - started
            if waited >= timeout:
                failure.add_note(f"eventually() waited {waited:.1f} s for it")
                raise
        await asyncio.sleep(interval)


def check_name(check: Callable[..., object]) -> str:
    """The check's source line when it is a lambda, else its name (for failure messages)."""
    if getattr(check, "__name__", "") == "<lambda>":
        try:
            return inspect.getsource(check).strip()
        except (OSError, TypeError):
            pass
    return getattr(check, "__qualname__", repr(check))
