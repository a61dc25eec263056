"""Channel-layer sends from synchronous code, without making the database thread wait.

Every event leaves after a commit, from the code that committed it: synchronous code on a
database thread. ``async_to_sync(layer.group_send)`` there blocks that thread until the event
loop has run the send and Redis has answered, and daphne has one database thread per process:
every message's save waited for the previous message's publish (bench/: the N = 10 rooms).

Here a thread that runs for an event loop (``sync_to_async``, which daphne's consumers and
views use) hands the send to that loop and goes on. One queue per loop, drained by one task,
keeps the sends of a process in the order they were made, as the blocking calls did. With
the pub/sub layer a send with nothing queued before it is written at once instead, on the
process's publishing connection (``chatroom/publisher.py``): no task and no wait for Redis.
The row is committed before the send is queued, so nothing a client can resume is lost with
a send: a socket fills a gap by ``seq`` and the bot worker's sweep finds its rows.

Code on the loop's own thread queues its send the same way, without the hand-over. Code with
no loop to hand to (a management command, a plain thread) sends as before.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import SyncToAsync, async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

#: A send: the layer method's name and its arguments, plus what to log if it fails.
_Send = tuple[str, tuple[Any, ...], str]


class _Queue:
    """The sends handed to one loop, in order; one task drains it while it is not empty (held
    here: the loop keeps only a weak reference to a task)."""

    __slots__ = ("items", "task")

    def __init__(self) -> None:
        self.items: deque[_Send] = deque()
        self.task: asyncio.Task | None = None


_queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Queue] = weakref.WeakKeyDictionary()


def group_send(group: str, message: dict[str, Any], *, failure: str = "") -> None:
    """``layer.group_send(group, message)`` from synchronous code (see the module)."""
    _submit(("group_send", (group, message), failure or f"group_send to {group}"))


def send(channel: str, message: dict[str, Any], *, failure: str = "") -> None:
    """``layer.send(channel, message)`` from synchronous code (see the module)."""
    _submit(("send", (channel, message), failure or f"send to {channel}"))


def _submit(item: _Send) -> None:
    if _on_a_running_loop():  # a send from the loop's own thread (``Chat.save_message_on_loop``)
        _enqueue(item)
        return
    loop = _loop_of_this_thread()
    if loop is not None:
        try:
            loop.call_soon_threadsafe(_enqueue, item)
            return
        except RuntimeError:  # the loop closed after the check: send from here instead
            pass
    async_to_sync(_call)(item)


def _loop_of_this_thread() -> asyncio.AbstractEventLoop | None:
    """The running loop this thread works for through ``sync_to_async``, if any (asgiref sets
    it in the thread before each call; on a loop's own thread there is nothing to hand to)."""
    loop = getattr(SyncToAsync.threadlocal, "main_event_loop", None)
    if loop is None or loop.is_closed() or not loop.is_running():
        return None
    if getattr(loop, "_thread_id", None) == threading.get_ident():
        return None
    return loop


def _on_a_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _enqueue(item: _Send) -> None:
    """On the loop: send now if nothing waits before it and the layer can (``_call_now``),
    else queue the send and start the drain if none runs."""
    loop = asyncio.get_running_loop()
    queue = _queues.get(loop)
    if queue is None:
        queue = _queues[loop] = _Queue()
    if queue.task is None and _call_now(item):
        return
    queue.items.append(item)
    if queue.task is None:
        queue.task = loop.create_task(_drain(queue))


async def _drain(queue: _Queue) -> None:
    try:
        while queue.items:
            item = queue.items.popleft()
            if not _call_now(item):
                await _call(item)
    finally:
        queue.task = None


def _call_now(item: _Send) -> bool:
    """One send done at once on the loop by a layer that can (``group_send_now``, ``send_now``:
    the pub/sub layer's publisher, chatroom/publisher.py); False: it must be awaited. A
    failure is logged, as in ``_call``."""
    name, args, failure = item
    now = getattr(get_channel_layer(), name + "_now", None)
    if now is None:
        return False
    try:
        return now(*args)
    except Exception:
        logger.exception("channel layer: %s failed", failure)
        return True


async def _call(item: _Send) -> None:
    """One send; a failure is logged, not raised: the row is committed, and the reader of a
    lost event finds it (a gap by seq, the bot worker's sweep)."""
    name, args, failure = item
    layer = get_channel_layer()
    if layer is None:
        return
    method: Callable[..., Awaitable[None]] = getattr(layer, name)
    try:
        await method(*args)
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.exception("channel layer: %s failed", failure)
