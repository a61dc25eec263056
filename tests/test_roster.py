"""Presence at scale: a burst of sockets coming and going costs the room two ``participants``
frames (the first change at once, the rest folded into one built after them), not one frame per
socket; one heartbeat task per process keeps every socket's presence entry fresh."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from conversations import events, presence, roster
from conversations.chat import Chat


@pytest.mark.django_db(transaction=True)
async def test_a_burst_of_presence_changes_sends_two_frames_the_last_one_current():
    chat, (alice,) = await database_sync_to_async(Chat.create)("Roster", "alice", [])
    conversation_id = chat.conversation.pk
    group = events.group_name(conversation_id)
    layer = get_channel_layer()
    listener = await layer.new_channel()
    await layer.group_add(group, listener)

    async def next_frame() -> dict:
        async with asyncio.timeout(10):
            return json.loads((await layer.receive(listener))["text"])

    roster.presence_changed(conversation_id)
    first = await next_frame()
    assert [p["online"] for p in first["participants"]] == [False]

    await database_sync_to_async(presence.store().touch)(conversation_id, alice.pk, "tab-1")
    for _ in range(4):  # four more sockets came or went inside the window
        roster.presence_changed(conversation_id)
    await roster._running[(asyncio.get_running_loop(), str(conversation_id))]
    assert not roster._running and not roster._dirty
    await layer.group_send(group, {"type": "chat.frame", "text": json.dumps({"type": "sentinel"})})

    second = await next_frame()
    assert second["type"] == "participants"
    assert [p["online"] for p in second["participants"]] == [True]  # built after the changes
    assert (await next_frame())["type"] == "sentinel"  # and nothing else was sent


async def test_one_heartbeat_task_refreshes_every_socket_of_the_process():
    from conversations import heartbeat

    store = presence.store()
    rooms = [uuid.uuid4(), uuid.uuid4()]
    sockets = [(f"sock-{i}", rooms[i % 2], uuid.uuid4()) for i in range(3)]
    for channel, room, person in sockets:
        heartbeat.register(channel, room, person)
    loop = asyncio.get_running_loop()
    task = heartbeat._tasks[loop]
    assert not task.done() and len(heartbeat._tasks) == 1  # one task, however many sockets
    assert store.online(rooms[0]) == set()  # register writes nothing: the consumer's connect does

    assert await heartbeat.refresh_now() == 3
    assert store.online(rooms[0]) == {str(sockets[0][2]), str(sockets[2][2])}
    assert store.online(rooms[1]) == {str(sockets[1][2])}

    for channel, room, person in sockets:
        heartbeat.unregister(channel)
        store.remove(room, person, channel)
    assert await heartbeat.refresh_now() == 0  # a closed socket is never refreshed back online
    assert store.online(rooms[0]) == set()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert loop not in heartbeat._tasks and loop not in heartbeat._sockets
