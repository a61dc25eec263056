"""The pub/sub channel layer (chatroom/layers.py) against the real Redis: a ``group_add`` is
live when it returns, and a group message reaches every socket of every process exactly once.

Each layer object stands for one process (its own Redis connections)."""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest
from redis import asyncio as aioredis

from chatroom.layers import ConfirmedPubSubChannelLayer

REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"


@pytest.fixture
async def layers():
    made: list[ConfirmedPubSubChannelLayer] = []
    prefix = f"test-layers-{uuid.uuid4().hex[:8]}"

    def make() -> ConfirmedPubSubChannelLayer:
        layer = ConfirmedPubSubChannelLayer(hosts=[{"address": REDIS_URL}], prefix=prefix)
        made.append(layer)
        return layer

    yield make
    for layer in made:
        await layer.flush()


async def subscribers(channel: str) -> int:
    client = aioredis.from_url(REDIS_URL)
    try:
        [(_, count)] = await client.pubsub_numsub(channel)
        return count
    finally:
        await client.aclose()


async def test_group_add_returns_once_redis_has_the_subscription(layers):
    layer = layers()
    channel = await layer.new_channel()
    await layer.group_add("room", channel)
    # Asked at once, on another connection: Redis already counts the subscriber.
    assert await subscribers(layer._get_layer()._get_group_channel_name("room")) == 1


async def test_a_message_sent_right_after_group_add_arrives(layers):
    here, there = layers(), layers()
    for i in range(20):  # a fresh group each time: every add is a new subscription
        channel = await here.new_channel()
        await here.group_add(f"room-{i}", channel)
        await there.group_send(f"room-{i}", {"type": "chat.frame", "text": f"hello {i}"})
        async with asyncio.timeout(5):
            assert await here.receive(channel) == {"type": "chat.frame", "text": f"hello {i}"}


async def test_one_publish_reaches_every_socket_of_every_process_once(layers):
    first, second = layers(), layers()
    mine = [await first.new_channel() for _ in range(3)]
    theirs = [await second.new_channel()]
    for layer, channels in ((first, mine), (second, theirs)):
        for channel in channels:
            await layer.group_add("room", channel)
    for n in range(5):
        await first.group_send("room", {"type": "chat.frame", "n": n})
    for layer, channels in ((first, mine), (second, theirs)):
        for channel in channels:
            async with asyncio.timeout(5):
                got = [(await layer.receive(channel))["n"] for _ in range(5)]
            assert got == [0, 1, 2, 3, 4]
    # Nothing twice: a message published after them by the other process is the next thing
    # every socket reads.
    await second.group_send("room", {"type": "chat.frame", "n": "last"})
    for layer, channels in ((first, mine), (second, theirs)):
        for channel in channels:
            async with asyncio.timeout(5):
                assert (await layer.receive(channel))["n"] == "last"
            assert layer._get_layer().channels[channel].empty()


async def test_the_last_socket_leaving_unsubscribes_and_a_new_one_subscribes_again(layers):
    layer = layers()
    group_channel = layer._get_layer()._get_group_channel_name("room")
    a, b = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("room", a)
    await layer.group_add("room", b)
    await layer.group_discard("room", a)
    assert await subscribers(group_channel) == 1  # b still listens
    await layer.group_discard("room", b)
    await layer.group_send("room", {"type": "chat.frame", "text": "nobody"})
    c = await layer.new_channel()
    await layer.group_add("room", c)
    assert await subscribers(group_channel) == 1
    await layer.group_send("room", {"type": "chat.frame", "text": "for c"})
    async with asyncio.timeout(5):
        assert (await layer.receive(c))["text"] == "for c"


async def test_a_group_message_is_decoded_once_and_taken_at_once_by_idle_sockets(layers):
    """Sockets whose inbox the layer fills (``new_channel_into``, as under chatroom.serve):
    one decode for all of them, and an idle consumer's handler takes the message at once,
    while a busy consumer, or a handler that declines, gets it queued in order."""
    from chatroom.inbox import SocketInbox

    layer = layers()
    taken: list = []
    both_taken = asyncio.Event()

    def accept(event, inbox):
        taken.append((inbox, event))
        if len(taken) == 2:
            both_taken.set()
        return True

    idle, declining, busy = (SocketInbox(None, None) for _ in range(3))
    idle.handler, declining.handler, busy.handler = accept, lambda event, inbox: False, accept
    readers = [asyncio.ensure_future(inbox.get()) for inbox in (idle, declining)]
    await asyncio.sleep(0)  # both wait; nobody reads ``busy``
    for inbox in (idle, declining, busy):
        await layer.group_add("room", await layer._get_layer().new_channel_into(inbox))
    await layer.group_send("room", {"type": "chat.frame", "text": "one"})
    await layer.group_send("room", {"type": "chat.frame", "text": "two"})
    async with asyncio.timeout(5):
        await both_taken.wait()
        assert (await readers[1])["text"] == "one"
        assert (await declining.get())["text"] == "two"
        queued = [await busy.get() for _ in range(2)]
    assert [(inbox, event["text"]) for inbox, event in taken] == [(idle, "one"), (idle, "two")]
    assert [event["text"] for event in queued] == ["one", "two"]
    assert not readers[0].done() and idle.empty()  # taken at once, never queued
    readers[0].cancel()
    # Decoded once per message for every socket of the process: they share the dict.
    assert queued[0] is taken[0][1] and queued[1] is taken[1][1]
