"""The one-reader queue (chatroom/inbox.py) that every idle socket holds twice."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from autobahn.exception import Disconnected

from chatroom.inbox import Inbox, SocketInbox


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


def _socket_inbox(connections: dict | None = None, send=None) -> SocketInbox:
    """A SocketInbox on stand-ins for daphne's server (its ``connections``) and protocol."""
    protocol = type("Protocol", (), {"sendMessage": staticmethod(send or (lambda data, binary: None))})()
    server = SimpleNamespace(connections={protocol: {}} if connections is None else connections)
    return SocketInbox(server, protocol)


async def test_a_socket_inbox_offers_an_event_only_to_a_reader_that_waits_with_nothing_queued():
    inbox, seen = _socket_inbox(), []
    inbox.handler = lambda event, where: seen.append((event, where)) or True
    assert not inbox.offer("early")  # nobody reads yet: queue it
    inbox.put_nowait("early")
    reader = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    assert await reader == "early"
    reader = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    assert inbox.offer("now") and seen == [("now", inbox)]
    inbox.put_nowait("queued")
    assert not inbox.offer("behind")  # never ahead of what waits in the queue
    assert await reader == "queued"
    inbox.handler = None
    reader = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    assert not inbox.offer("no handler")
    reader.cancel()


def test_write_text_sends_while_connected_and_reports_a_gone_connection():
    sent = []
    inbox = _socket_inbox(send=lambda data, binary: sent.append((data, binary)))
    assert inbox.write_text(b"hello") and sent == [(b"hello", False)]
    inbox._server.connections[inbox._protocol]["disconnected"] = True
    assert not inbox.write_text(b"late") and len(sent) == 1

    def closed(data, binary):
        raise Disconnected("Attempt to send on a closed protocol")

    assert not _socket_inbox(send=closed).write_text(b"closing")
    assert not _socket_inbox(connections={}).write_text(b"unknown")
