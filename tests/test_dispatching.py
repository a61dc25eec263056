"""The consumers' event loop (conversations/dispatching.py): every event of every source, one at
a time, in each source's order; a failing source or handler ends it and stops the pumps."""

from __future__ import annotations

import asyncio

import pytest
from channels.exceptions import StopConsumer

from conversations.dispatching import dispatch_many


def source_of(events: list, then: BaseException | None = None):
    queue: asyncio.Queue = asyncio.Queue()
    for event in events:
        queue.put_nowait(event)

    async def receive():
        if queue.empty() and then is not None:
            raise then
        return await queue.get()

    return receive, queue


async def test_events_are_handled_one_at_a_time_in_each_sources_order():
    socket, _ = source_of([("socket", i) for i in range(50)])
    layer, _ = source_of([("layer", i) for i in range(50)])
    seen, busy = [], False

    async def dispatch(event):
        nonlocal busy
        assert not busy  # never two handlers at once
        busy = True
        await asyncio.sleep(0)  # a handler that awaits lets the pumps run meanwhile
        seen.append(event)
        busy = False
        if len(seen) == 100:
            raise StopConsumer

    with pytest.raises(StopConsumer):
        await dispatch_many([socket, layer], dispatch)
    assert [i for kind, i in seen if kind == "socket"] == list(range(50))
    assert [i for kind, i in seen if kind == "layer"] == list(range(50))


async def test_a_failing_source_ends_the_loop_with_its_error_and_stops_the_other_pump():
    socket, socket_queue = source_of([])  # waits forever
    layer, _ = source_of(["one"], then=ConnectionError("redis went away"))
    seen = []

    async def dispatch(event):
        seen.append(event)

    with pytest.raises(ConnectionError, match="redis went away"):
        await dispatch_many([socket, layer], dispatch)
    assert seen == ["one"]
    socket_queue.put_nowait("late")
    await asyncio.sleep(0)  # one turn of the loop: a live pump would take it now
    assert socket_queue.qsize() == 1  # the socket's pump was cancelled


async def test_a_consumer_on_an_inbox_gets_its_layer_messages_in_that_inbox():
    """Under ``chatroom.serve`` the socket's events come in an ``Inbox``: with the pub/sub
    layer (.ci/run's Redis pass) the consumer's channel messages go into that inbox directly
    and no pump runs; with another layer (the in-memory one) the pumps do it. Either way every
    event arrives, and the channel ends with the consumer."""
    from channels.consumer import AsyncConsumer
    from channels.layers import get_channel_layer

    from chatroom.inbox import Inbox
    from chatroom.layers import _Into
    from conversations.dispatching import PumpedConsumerMixin

    started: asyncio.Future = asyncio.get_running_loop().create_future()
    seen: list = []
    layer = get_channel_layer()
    direct = hasattr(layer, "_get_layer") and hasattr(layer._get_layer(), "new_channel_into")

    class Consumer(PumpedConsumerMixin, AsyncConsumer):
        async def hello(self, event):
            started.set_result(self.channel_name)

        async def note(self, event):
            seen.append(event["n"])
            if len(seen) == 2:
                raise StopConsumer

    inbox = Inbox()
    task = asyncio.ensure_future(Consumer.as_asgi()({"type": "websocket"}, inbox.get, None))
    inbox.put_nowait({"type": "hello"})
    async with asyncio.timeout(10):
        channel = await started
    if direct:
        assert isinstance(layer._get_layer().channels[channel], _Into)
    await layer.send(channel, {"type": "note", "n": "layer"})
    inbox.put_nowait({"type": "note", "n": "socket"})
    async with asyncio.timeout(10):
        await task
    assert sorted(seen) == ["layer", "socket"]
    if direct:
        assert channel not in layer._get_layer().channels
