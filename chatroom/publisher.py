"""One Redis connection per shard and event loop that writes ``PUBLISH`` without waiting.

Every message leaves a process as a ``PUBLISH`` (``chatroom/publish.py`` queues them in
order). Through redis-py each one took a connection from the pool, wrote, waited for
Redis's reply (the number of subscribers, which nobody reads) and gave the connection back:
~15 % of daphne's CPU at N = 10 (bench/), plus a task per message to await it. Here the
command is written to this connection's transport at once, in the caller's order; the
replies are read as they come and only errors are logged. One connection in order means
Redis receives the publishes in the order they were written.

What a write does not wait for, a lost connection can lose: the publishes written after
Redis's last reply. As with a failed publish before, each row is committed already, so a
socket fills the gap by seq at its next frame (or its client's resume), and the bot worker's
sweep finds an undelivered wake-up's row. While not connected, ``publish`` returns False and
the caller sends through redis-py, which reconnects in its own way; this connection is
opened again in the background.

Only a plain address is handled (``redis://``, ``rediss://``, ``unix://``, with a password
and a user name if given); a Sentinel configuration keeps redis-py's path for every publish.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from urllib.parse import unquote, urlsplit

logger = logging.getLogger(__name__)

RECONNECT_DELAY = 1.0  # seconds between failed connection attempts
NAME = "chatroom-publisher"


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def command(*parts: bytes) -> bytes:
    """A command in RESP, Redis's request format."""
    return b"*%d\r\n" % len(parts) + b"".join(_bulk(part) for part in parts)


class Publisher(asyncio.Protocol):
    """``publish(channel, data)`` on a connection of its own, replies read in the background."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.transport: asyncio.Transport | None = None
        self.unanswered = 0  # commands written whose reply has not come yet
        self._buffer = b""
        self._connecting: asyncio.Task | None = None
        self._closed = False

    @classmethod
    def for_host(cls, host: dict) -> Publisher | None:
        """A publisher for a channels-redis host entry, or None if it is not a plain address."""
        address = host.get("address")
        if isinstance(address, str) and urlsplit(address).scheme in ("redis", "rediss", "unix"):
            return cls(address)
        return None

    # ---- writing ---------------------------------------------------------------------------

    def publish(self, channel: str, data: bytes) -> bool:
        """Write ``PUBLISH channel data`` now (on the loop); False if not connected (the caller
        sends another way; a connection is being opened)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            self.connect_soon()
            return False
        transport.write(b"*3\r\n$7\r\nPUBLISH\r\n" + _bulk(channel.encode()) + _bulk(data))
        self.unanswered += 1
        return True

    # ---- the connection --------------------------------------------------------------------

    def connect_soon(self) -> None:
        if self._connecting is None and not self._closed:
            self._connecting = asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        url = urlsplit(self.address)
        try:
            if url.scheme == "unix":
                await loop.create_unix_connection(lambda: self, url.path)
            else:
                context = ssl.create_default_context() if url.scheme == "rediss" else None
                await loop.create_connection(lambda: self, url.hostname or "127.0.0.1", url.port or 6379, ssl=context)
        except OSError as error:
            logger.warning("publisher: cannot connect to Redis (%s); publishing through redis-py", error)
            await asyncio.sleep(RECONNECT_DELAY)
        finally:
            self._connecting = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        url = urlsplit(self.address)
        if url.password is not None:  # pipelined before the first publish: Redis answers in order
            auth = [unquote(url.username)] if url.username else []
            transport.write(command(b"AUTH", *(part.encode() for part in [*auth, unquote(url.password)])))
            self.unanswered += 1
        transport.write(command(b"CLIENT", b"SETNAME", NAME.encode()))  # CLIENT LIST shows whose it is
        self.unanswered += 1
        self._buffer, self.transport = b"", transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        """Replies: ``:n`` to a publish, ``+OK`` to AUTH, ``-ERR ...`` logged."""
        lines = (self._buffer + data).split(b"\r\n")
        self._buffer = lines.pop()
        for line in lines:
            self.unanswered -= 1
            if line.startswith(b"-"):
                logger.error("publisher: Redis refused a command: %s", line[1:].decode(errors="replace"))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.unanswered > 0 and not self._closed:
            logger.warning("publisher: Redis connection lost with %d publishes unanswered", self.unanswered)
        self.transport, self.unanswered = None, 0

    def close(self) -> None:
        self._closed = True
        if self._connecting is not None:
            self._connecting.cancel()
        if self.transport is not None:
            self.transport.close()
