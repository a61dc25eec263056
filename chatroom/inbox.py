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
from collections.abc import Callable
from typing import Any

from autobahn.exception import Disconnected


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

    def idle(self) -> bool:
        """Its reader waits for the next item and nothing is queued: whatever it took before
        has been handled (a consumer handles one event at a time)."""
        return not self._items and self._waiter is not None and not self._waiter.done()


class SocketInbox(Inbox):
    """A WebSocket connection's inbox under ``chatroom.serve``, which can also take an event
    straight to its idle consumer (``handler``, set by the consumer) and a text frame straight
    to its socket (``write_text``). A group message fanned out to many sockets then costs each
    socket a function call instead of a task switch, a dispatch and the ASGI send path
    (bench/: CPU per delivery)."""

    __slots__ = ("_protocol", "_server", "handler")

    def __init__(self, server: Any, protocol: Any) -> None:
        super().__init__()
        self._server, self._protocol = server, protocol
        self.handler: Callable[[dict, SocketInbox], bool] | None = None

    def offer(self, event: dict) -> bool:
        """True if the consumer's ``handler(event, inbox)`` took ``event`` now; False: queue
        it (the consumer is busy, or something is queued before it, or the handler declined)."""
        handler = self.handler
        return handler is not None and self.idle() and handler(event, self)

    def write_text(self, data: bytes, frame: bytes | None = None) -> bool:
        """daphne's ``handle_reply`` for a ``websocket.send`` of UTF-8 ``data``, done now;
        False if the connection has gone (the client resumes by seq when it comes back).

        ``frame``: ``text_frame(data)``, made once for every socket of the process. It is
        written as it is where autobahn's ``sendMessage`` would write exactly those bytes (an
        open connection without compression, fragmentation, masking, debug logging or
        anything queued before it), with the same counters; anything else goes through
        ``sendMessage``."""
        connection = self._server.connections.get(self._protocol)
        if connection is None or connection.get("disconnected"):
            return False
        protocol = self._protocol
        if frame is not None and _sends_plainly(protocol, len(data)):
            stats = protocol.trafficStats
            stats.outgoingWebSocketMessages += 1
            stats.outgoingWebSocketFrames += 1
            stats.outgoingOctetsAppLevel += len(data)
            stats.outgoingOctetsWebSocketLevel += len(data)
            protocol.transport.write(frame)
            return True
        try:
            protocol.sendMessage(data, False)
        except Disconnected:
            return False
        return True


def text_frame(data: bytes) -> bytes:
    """A server's WebSocket text frame of UTF-8 ``data``: final, unmasked, in one piece (RFC
    6455, section 5.2), byte for byte what autobahn's ``sendFrame`` builds for it."""
    size = len(data)
    if size <= 125:
        return bytes((0x81, size)) + data
    if size <= 0xFFFF:
        return bytes((0x81, 126)) + size.to_bytes(2, "big") + data
    return bytes((0x81, 127)) + size.to_bytes(8, "big") + data


def _sends_plainly(protocol: Any, size: int) -> bool:
    """autobahn's ``sendMessage`` of ``size`` bytes would write one unmasked frame at once."""
    return (
        protocol.state == protocol.STATE_OPEN
        and protocol._perMessageCompress is None
        and not protocol.send_queue
        and not protocol.autoFragmentSize
        and not protocol.maskServerFrames
        and not protocol.logFrames
        and protocol.trackedTimings is None
        and not 0 < protocol.maxMessagePayloadSize < size
    )
