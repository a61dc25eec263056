"""The Redis pub/sub channel layer, with a ``group_add`` that returns only once Redis has
confirmed the subscription.

channels-redis's pub/sub layer fans a group message out inside each process (one PUBLISH,
one read per process, however many sockets of the group it holds), where its core layer
queues one copy per socket and pops them one round trip at a time (bench/: the N = 200
rooms). But its ``group_add`` only *writes* SUBSCRIBE: a message published before Redis has
read it is not delivered. The consumer takes its baseline seq right after ``group_add``
(docs/protocol.md), so the subscription must be live by then; this layer waits for Redis's
confirmation (once per group and process: later sockets of the group find it live).

Pub/sub keeps nothing for a process that is not subscribed: the bot worker's wake-ups are
also found by its sweep, and a socket that misses a frame (Redis restarting) fills the gap
by seq from the database on the next one, or on its client's resume.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from channels_redis.pubsub import (
    RedisPubSubChannelLayer,
    RedisPubSubLoopLayer,
    RedisSingleShardConnection,
)
from channels_redis.utils import _wrap_close  # private, but the layer's own close hook (pinned)

from .inbox import Inbox
from .publisher import Publisher

logger = logging.getLogger(__name__)

#: How long a subscription may take before ``group_add`` gives up (the socket then fails to
#: connect and its client retries) rather than pretending to be subscribed.
SUBSCRIBE_TIMEOUT = 10.0


class ConfirmedShardConnection(RedisSingleShardConnection):
    """One Redis connection of the layer; resolves a future per channel on its confirmation."""

    def __init__(self, host, channel_layer) -> None:
        super().__init__(host, channel_layer)
        self._confirmed: dict[str, asyncio.Future] = {}
        self._publisher = Publisher.for_host(host)

    def publish_now(self, channel: str, data: bytes) -> bool:
        """``PUBLISH`` written at once on the loop (``chatroom/publisher.py``); False: use
        ``publish``."""
        return self._publisher is not None and self._publisher.publish(channel, data)

    async def subscribe(self, channel: str, *, confirmed: bool = True) -> None:
        async with self._lock:
            confirmed = self._confirmed.get(channel)
            if confirmed is None:
                confirmed = self._confirmed[channel] = asyncio.get_running_loop().create_future()
            if channel not in self._subscribed_to:
                self._ensure_redis()
                self._ensure_receiver()
                await self._pubsub.subscribe(channel)
                self._subscribed_to.add(channel)
        if not confirmed:
            return
        try:
            async with asyncio.timeout(SUBSCRIBE_TIMEOUT):
                await asyncio.shield(confirmed)
        except TimeoutError:
            raise ConnectionError(f"Redis did not confirm the subscription to {channel!r}") from None

    async def unsubscribe(self, channel: str) -> None:
        async with self._lock:
            self._confirmed.pop(channel, None)
            if channel in self._subscribed_to:
                self._ensure_redis()
                self._ensure_receiver()
                await self._pubsub.unsubscribe(channel)
                self._subscribed_to.remove(channel)

    async def flush(self) -> None:
        await super().flush()
        self._confirmed = {}
        if self._publisher is not None:
            self._publisher.close()
            self._publisher = Publisher.for_host(self.host)

    async def _do_receiving(self) -> None:
        while True:
            try:
                if self._pubsub and self._pubsub.subscribed:
                    message = await self._pubsub.get_message(ignore_subscribe_messages=False, timeout=0.1)
                    if message is None:
                        continue
                    if message["type"] == "message":
                        self._receive_message(message)
                    elif message["type"] == "subscribe":
                        self._confirm(message["channel"])
                else:
                    await asyncio.sleep(0.1)
            except (asyncio.CancelledError, GeneratorExit):
                raise
            except Exception:  # the stock loop lets a TimeoutError end it: nothing arrives again
                logger.exception("pub/sub receive failed; reading on (redis-py reconnects and resubscribes)")
                await asyncio.sleep(1)

    def _receive_message(self, message) -> None:
        """channels-redis's own, but a group message for sockets that read straight from
        their inboxes (``_Into``) is decoded once for all of them, not once per socket, and
        each may take it at once (``SocketInbox.offer``). They share the one dict: handlers
        do not change an event."""
        name, data = message["channel"], message["data"]
        if isinstance(name, bytes):
            name = name.decode()
        layer = self.channel_layer
        queue = layer.channels.get(name)
        if queue is not None:
            queue.put_nowait(data)
            return
        decoded = None
        for channel in list(layer.groups.get(name, ())):  # a handler may leave the group
            queue = layer.channels.get(channel)
            if queue is None:
                continue
            if type(queue) is not _Into:
                queue.put_nowait(data)
                continue
            if decoded is None:
                decoded = queue.decode(data)
                if decoded is None:
                    return
            queue.put_message(decoded)

    def _confirm(self, name: bytes | str) -> None:
        if isinstance(name, bytes):
            name = name.decode()
        confirmed = self._confirmed.get(name)
        if confirmed is not None and not confirmed.done():
            confirmed.set_result(None)


class _Into:
    """A channel's queue that is someone else's inbox: messages go in deserialised, and to a
    ``SocketInbox``'s idle consumer at once."""

    __slots__ = ("deserialize", "inbox", "offer")

    def __init__(self, inbox: Inbox, deserialize) -> None:
        self.inbox, self.deserialize = inbox, deserialize
        self.offer = getattr(inbox, "offer", None)

    def decode(self, data: bytes) -> dict | None:
        try:
            return self.deserialize(data)
        except Exception:  # never in the shared receive loop: it would stall every socket
            logger.exception("undecodable channel-layer message dropped")
            return None

    def put_nowait(self, data: bytes) -> None:
        message = self.decode(data)
        if message is not None:
            self.put_message(message)

    def put_message(self, message: dict) -> None:
        offer = self.offer
        if offer is None or not offer(message):
            self.inbox.put_nowait(message)


class ConfirmedPubSubLoopLayer(RedisPubSubLoopLayer):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._shards = [ConfirmedShardConnection(shard.host, self) for shard in self._shards]

    def group_send_now(self, group: str, message: dict) -> bool:
        """``group_send`` done now, without waiting for Redis (``chatroom/publisher.py``), if
        this process's publishing connection is up; False: nothing sent, await ``group_send``."""
        channel = self._get_group_channel_name(group)
        return self._get_shard(channel).publish_now(channel, self.channel_layer.serialize(message))

    def send_now(self, channel: str, message: dict) -> bool:
        """``send`` done now (see ``group_send_now``)."""
        return self._get_shard(channel).publish_now(channel, self.channel_layer.serialize(message))

    async def new_channel(self, prefix: str = "specific.") -> str:
        """A consumer's own channel: its one reader is the consumer, so its queue is an
        ``Inbox``, not an ``asyncio.Queue`` (~2.5 KB less per idle socket)."""
        return await self._own_channel(Inbox(), prefix)

    async def new_channel_into(self, inbox: Inbox, prefix: str = "specific.") -> str:
        """A consumer's own channel whose messages go straight into ``inbox``, the one its
        loop reads (daphne's input queue under ``chatroom.serve``): no reader task per socket
        and one hop less per frame (``conversations/dispatching.py``). End it with
        ``close_channel``."""
        return await self._own_channel(_Into(inbox, self.channel_layer.deserialize), prefix)

    async def _own_channel(self, queue: Inbox | _Into, prefix: str) -> str:
        channel = f"{self.prefix}{prefix}{uuid.uuid4().hex}"
        await self._subscribe_to_channel(channel, queue)
        return channel

    async def close_channel(self, channel: str) -> None:
        """What a cancelled ``receive`` does for its channel: forget it, unsubscribe."""
        if self.channels.pop(channel, None) is not None:
            await self._get_shard(channel).unsubscribe(channel)

    async def _subscribe_to_channel(self, channel: str, queue: Inbox | asyncio.Queue | _Into | None = None) -> None:
        """A consumer's own channel (``new_channel``) is a fresh random name nobody can have
        sent to yet, and named channels (the bot worker's) carry wake-ups its sweep also
        finds: neither waits for the confirmation (one round trip less per socket). A named
        channel may have several readers in a process: an ``asyncio.Queue``."""
        self.channels[channel] = queue if queue is not None else asyncio.Queue()
        await self._get_shard(channel).subscribe(channel, confirmed=False)


class ConfirmedPubSubChannelLayer(RedisPubSubChannelLayer):
    """``channels_redis.pubsub.RedisPubSubChannelLayer`` whose subscriptions are live on return."""

    def group_send_now(self, group: str, message: dict) -> bool:
        """On the running loop: see ``ConfirmedPubSubLoopLayer.group_send_now``."""
        return self._get_layer().group_send_now(group, message)

    def send_now(self, channel: str, message: dict) -> bool:
        """On the running loop: see ``ConfirmedPubSubLoopLayer.send_now``."""
        return self._get_layer().send_now(channel, message)

    def _get_layer(self) -> RedisPubSubLoopLayer:
        loop = asyncio.get_running_loop()
        layer = self._layers.get(loop)
        if layer is None:
            layer = ConfirmedPubSubLoopLayer(*self._args, **self._kwargs, channel_layer=self)
            self._layers[loop] = layer
            _wrap_close(self, loop)
        return layer
