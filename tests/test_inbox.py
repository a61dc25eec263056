"""The one-reader queue (chatroom/inbox.py) that every idle socket holds twice."""

from __future__ import annotations

import asyncio

import pytest

from chatroom.inbox import Inbox


async def test_items_come_out_in_order_and_a_waiting_reader_wakes():
    inbox = Inbox()
    reader = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    assert not reader.done()
    inbox.put_nowait("a")
    inbox.put_nowait("b")
    assert await reader == "a"
    assert inbox.qsize() == 1 and not inbox.empty()
    assert await inbox.get() == "b"
    assert inbox.empty() and inbox._items is None  # an idle inbox keeps no deque


async def test_a_cancelled_reader_loses_nothing_and_leaves_no_waiter():
    inbox = Inbox()
    reader = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    inbox.put_nowait("kept")
    assert await inbox.get() == "kept"


async def test_a_second_reader_at_once_is_refused():
    inbox = Inbox()
    first = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError):
        await inbox.get()
    inbox.put_nowait(1)
    assert await first == 1
