"""A queue for one reader, as small as an idle socket can hold.

Every idle socket holds queues: the channel layer's for the socket's own channel and the
consumer's inbox. ``asyncio.Queue`` keeps three deques and an Event (another deque), ~3 KB even
when empty (bench/: memory per idle connection). This one keeps a deque only while it holds
something, and one waiter: one reader (the layer's ``receive`` for a channel, a consumer's
loop) is all it serves.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any


class Inbox:
    """``put_nowait`` from anywhere on the loop, ``await get()`` from one reader at a time."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: deque | None = None
        self._waiter: asyncio.Future | None = None

    def put_nowait(self, item: Any) -> None:
        if self._items is None:
            self._items = deque()
        self._items.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self) -> Any:
        if self._waiter is not None:
            raise RuntimeError("an Inbox has one reader at a time")
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        item = self._items.popleft()
        if not self._items:
            self._items = None  # an idle socket keeps no deque (~600 bytes)
        return item

    def qsize(self) -> int:
        return len(self._items) if self._items else 0

    def empty(self) -> bool:
        return not self._items
