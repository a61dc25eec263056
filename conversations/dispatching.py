"""A consumer's event loop with one task per source instead of one task per event.

Channels' ``await_many_dispatch`` creates a task for the next event of each source and
``asyncio.wait``s on them, again after every event: per frame delivered to a socket that is a
task, a wait with its callbacks and their removal (bench/: ~15 % of daphne's CPU at N = 200).
Here one pump task per source (the client's socket, the channel layer) reads events as they
come into one queue, and the consumer handles them one at a time, in arrival order, exactly as
Channels does. A source that fails ends the consumer with its error, as in Channels.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable
from typing import Any

from channels.exceptions import StopConsumer
from channels.layers import get_channel_layer

from chatroom.inbox import Inbox


class _Failed:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


async def dispatch_many(
    sources: list[Callable[[], Awaitable[Any]]], dispatch: Callable[[Any], Awaitable[None]]
) -> None:
    """Hand every event of every source to ``dispatch``, one at a time, until it raises."""
    inbox = Inbox()  # one reader: the loop below

    async def pump(source: Callable[[], Awaitable[Any]]) -> None:
        try:
            while True:
                inbox.put_nowait(await source())
        except asyncio.CancelledError:
            raise
        except BaseException as error:  # handed to the loop below, which raises it
            inbox.put_nowait(_Failed(error))

    pumps = [asyncio.ensure_future(pump(source)) for source in sources]
    try:
        while True:
            event = await inbox.get()
            if isinstance(event, _Failed):
                raise event.error
            await dispatch(event)
    finally:
        for task in pumps:
            task.cancel()
        for task in pumps:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def dispatch_from(inbox: Inbox, dispatch: Callable[[Any], Awaitable[None]]) -> None:
    """Hand every event of one inbox that every source fills to ``dispatch``, one at a time."""
    while True:
        await dispatch(await inbox.get())


class PumpedConsumerMixin:
    """For an ``AsyncConsumer``: its ``__call__`` with ``dispatch_many`` for Channels' loop.

    Under ``chatroom.serve`` the socket's events arrive in an ``Inbox``, and the pub/sub layer
    can put the consumer's channel messages into that same inbox (``new_channel_into``):
    then no pump task runs at all (bench/: a task hop per frame, two tasks per idle socket).
    A consumer with a synchronous ``handle_now(event, inbox) -> bool`` gets a channel message there
    at once while it waits for events (``SocketInbox.offer``); False queues it as usual."""

    async def __call__(self, scope, receive, send) -> None:
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.base_send = send
        inbox = getattr(receive, "__self__", None)
        into = getattr(self.channel_layer, "new_channel_into", None) if isinstance(inbox, Inbox) else None
        if into is not None:
            self.channel_name = await into(inbox)
            handle_now = getattr(self, "handle_now", None)
            if handle_now is not None and hasattr(inbox, "handler"):
                inbox.handler = handle_now  # chatroom.inbox.SocketInbox.offer
            try:
                with contextlib.suppress(StopConsumer):
                    await dispatch_from(inbox, self.dispatch)
            finally:
                await self.channel_layer.close_channel(self.channel_name)
            return
        sources = [receive]
        if self.channel_layer is not None:
            self.channel_name = await self.channel_layer.new_channel()
            self.channel_receive = functools.partial(self.channel_layer.receive, self.channel_name)
            sources.append(self.channel_receive)
        with contextlib.suppress(StopConsumer):
            await dispatch_many(sources, self.dispatch)
