"""One task per process keeps the presence entries of all its sockets fresh.

A presence entry expires unless refreshed (``presence.TTL_SECONDS``), so that the sockets of a
process that died fade out. A sleeping task per socket to refresh it cost every idle socket a
task and its frame, and the process a database-thread hop per socket every 20 s (10,000 idle
sockets: 500 hops a second); here one task refreshes all of them in one batch (one Redis round
trip).
"""

from __future__ import annotations

import asyncio
import logging

from channels.db import database_sync_to_async

from . import presence, roster

logger = logging.getLogger(__name__)

_sockets: dict[asyncio.AbstractEventLoop, dict[str, tuple[str, str]]] = {}
_tasks: dict[asyncio.AbstractEventLoop, asyncio.Task] = {}


def register(channel_name: str, conversation_id, participant_id) -> None:
    """A socket came online (its entry is written by the caller); keep it fresh from now on."""
    loop = asyncio.get_running_loop()
    _sockets.setdefault(loop, {})[channel_name] = (str(conversation_id), str(participant_id))
    task = _tasks.get(loop)
    if task is None or task.done():
        _tasks[loop] = loop.create_task(_refresh_forever(loop))


def unregister(channel_name: str) -> None:
    _sockets.get(asyncio.get_running_loop(), {}).pop(channel_name, None)


async def refresh_now() -> int:
    """Refresh the entries of every socket of this process now; returns how many. Entries
    that had gone meanwhile come back, and their rooms are told (``presence.touch_many``)."""
    live = [(room, person, channel) for channel, (room, person) in _sockets.get(asyncio.get_running_loop(), {}).items()]
    if live:
        for room, snapshot in await database_sync_to_async(presence.store().touch_many)(live):
            roster.presence_changed(room, snapshot.changes, snapshot.version)
    return len(live)


async def _refresh_forever(loop: asyncio.AbstractEventLoop) -> None:
    try:
        while _sockets.get(loop):
            await asyncio.sleep(presence.REFRESH_SECONDS)
            try:
                await refresh_now()
            except Exception:  # the next round retries; an entry outlives three rounds
                logger.exception("presence refresh failed")
    finally:
        _tasks.pop(loop, None)
        if not _sockets.get(loop):
            _sockets.pop(loop, None)
