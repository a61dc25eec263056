"""chatroom/publish.py: channel-layer sends from a database thread are queued on its loop.

Run on whatever layer the settings give (in-memory, or Redis pub/sub in .ci/run's second pass).
"""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from chatroom import publish

pytestmark = pytest.mark.asyncio

WAIT = 10  # seconds: an upper bound on waiting for an event, never reached when all is well


async def _member(group: str) -> str:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(group, channel)
    return channel


async def _receive(channel: str) -> dict:
    async with asyncio.timeout(WAIT):
        return await get_channel_layer().receive(channel)


async def test_sends_from_a_database_thread_arrive_in_order():
    channel = await _member("publish.order")

    def save_and_publish() -> None:
        for i in range(30):
            publish.group_send("publish.order", {"type": "chat.frame", "n": i})

    await sync_to_async(save_and_publish)()
    received = [(await _receive(channel))["n"] for _ in range(30)]
    assert received == list(range(30))


async def test_the_thread_goes_on_while_its_loop_is_busy():
    """The old ``async_to_sync(group_send)`` waited for the loop: with the loop held until the
    thread has sent, the thread would never get past the send."""
    channel = await _member("publish.busy")
    loop = asyncio.get_running_loop()
    loop_held, thread_sent = threading.Event(), threading.Event()
    outcome: dict[str, bool] = {}

    def hold_the_loop() -> None:  # runs on the loop, which does nothing else meanwhile
        loop_held.set()
        outcome["sent_while_held"] = thread_sent.wait(WAIT)

    def database_work() -> None:
        loop.call_soon_threadsafe(hold_the_loop)
        assert loop_held.wait(WAIT)
        publish.group_send("publish.busy", {"type": "chat.frame", "n": 1})
        thread_sent.set()

    await sync_to_async(database_work)()
    assert outcome == {"sent_while_held": True}
    assert (await _receive(channel))["n"] == 1


async def test_a_failed_send_is_logged_and_the_next_ones_still_go(caplog):
    channel = await _member("publish.failure")

    def publish_three() -> None:
        publish.group_send("publish.failure", {"type": "chat.frame", "n": 1})
        # Refused by every layer: the in-memory one checks the name, Redis's cannot serialise it.
        bad = {"type": "chat.frame", "value": object()}
        publish.group_send("not a valid group name", bad, failure="the bad one")
        publish.group_send("publish.failure", {"type": "chat.frame", "n": 2})

    with caplog.at_level(logging.ERROR, logger="chatroom.publish"):
        await sync_to_async(publish_three)()
        assert [(await _receive(channel))["n"] for _ in range(2)] == [1, 2]
    assert [r.getMessage() for r in caplog.records] == ["channel layer: the bad one failed"]


async def test_a_thread_without_a_loop_sends_before_it_returns():
    """A plain thread (a management command's) has no loop to hand to: it sends itself, so
    the message is out when the call returns."""
    channel = await _member("publish.plain")
    await asyncio.to_thread(publish.send, channel, {"type": "chat.frame", "n": 7})
    assert (await _receive(channel))["n"] == 7
