"""The ``participants`` frame after sockets come and go, at most one per conversation per
``WINDOW`` seconds and process.

Every connect and disconnect changes someone's ``online`` flag, and the frame lists the whole
room: sent once per change, a room of N people connecting at once (a deploy, a network blip)
costs N frames of N entries to each of N sockets, O(N^3) bytes (bench/: 200 sockets closing
took seconds of the process's time). Here the first change is sent at once and the changes that
follow within the window are folded into one frame built when the window ends, from the
database and the presence store as they are then: the last frame always shows the last state.
Joins, leaves, kicks and role changes are not throttled (``events.participants_changed``).
"""

from __future__ import annotations

import asyncio
import logging

from channels.db import database_sync_to_async

from . import events

logger = logging.getLogger(__name__)

WINDOW = 0.25  # seconds

_running: dict[tuple[asyncio.AbstractEventLoop, str], asyncio.Task] = {}
_dirty: set[tuple[asyncio.AbstractEventLoop, str]] = set()


def presence_changed(conversation_id) -> None:
    """Called on the event loop after a socket of the conversation came or went."""
    loop = asyncio.get_running_loop()
    key = (loop, str(conversation_id))
    if key in _running:
        _dirty.add(key)  # the running task sends again when its window ends
        return
    _running[key] = loop.create_task(_announce(key, conversation_id))


async def _announce(key: tuple[asyncio.AbstractEventLoop, str], conversation_id) -> None:
    try:
        while True:
            _dirty.discard(key)  # a change from now on is not in the frame built below
            try:
                await database_sync_to_async(events.participants_changed)(conversation_id)
            except Exception:  # a presence frame is not worth a crash; the next change resends
                logger.exception("participants frame for conversation %s failed", conversation_id)
            await asyncio.sleep(WINDOW)
            if key not in _dirty:
                return
    finally:
        _running.pop(key, None)
        _dirty.discard(key)
