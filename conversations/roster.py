"""``presence`` frames after sockets come and go: the first change at once, the changes that
follow within ``WINDOW`` seconds folded into one frame (per conversation and process).

A change is one person's ``online`` flag with its presence version (``conversations/
presence.py``); a socket that turns no flag (a second tab, a reconnect while another tab
stays) sends nothing. The whole room goes only to a socket that connects and, from
``events.participants_changed``, to everyone when its membership changes: sent for every
socket, the room's list cost a room of N people connecting at once (a deploy, a network blip)
N frames of N entries to each of N sockets (bench/: the connect rate). Folding keeps such a
burst to a few frames of the changes alone, built with no database and no Redis read.
"""

from __future__ import annotations

import asyncio
import logging

from . import events

logger = logging.getLogger(__name__)

WINDOW = 0.25  # seconds

_Key = tuple[asyncio.AbstractEventLoop, str]
_running: dict[_Key, asyncio.Task] = {}
_pending: dict[_Key, dict[str, tuple[bool, int]]] = {}


def presence_changed(conversation_id, changes: dict[str, bool], version: int) -> None:
    """Called on the event loop with the flags a socket's coming or going turned
    (``presence.Snapshot``); nothing to send for none."""
    if not changes:
        return
    loop = asyncio.get_running_loop()
    key = (loop, str(conversation_id))
    pending = _pending.setdefault(key, {})
    for participant_id, online in changes.items():
        if participant_id not in pending or pending[participant_id][1] < version:
            pending[participant_id] = (online, version)
    if key in _running:
        return  # the running window sends it when it ends
    _flush(key, conversation_id)
    _running[key] = loop.create_task(_window(key, conversation_id))


def _flush(key: _Key, conversation_id) -> bool:
    changes = _pending.pop(key, None)
    if not changes:
        return False
    try:
        events.presence_changed(conversation_id, changes)
    except Exception:  # a presence frame is not worth a crash; a reconnect reads the room again
        logger.exception("presence frame for conversation %s failed", conversation_id)
    return True


async def _window(key: _Key, conversation_id) -> None:
    try:
        while True:
            await asyncio.sleep(WINDOW)
            if not _flush(key, conversation_id):
                return
    finally:
        _running.pop(key, None)
