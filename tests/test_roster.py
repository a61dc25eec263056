"""Presence at scale: a socket's coming or going sends only the flags it turned (a ``presence``
frame), the first change at once and the rest of a burst folded into one frame; the room's list
goes to the socket that connects; one heartbeat task per process keeps every socket's presence
entry fresh; the store says whose flag an operation turned, at which version, atomically."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid

import pytest
from channels.layers import get_channel_layer

from conversations import events, presence, roster


async def test_a_burst_of_presence_changes_sends_two_frames_the_newest_flags():
    conversation_id = uuid.uuid4()
    group = events.group_name(conversation_id)
    layer = get_channel_layer()
    listener = await layer.new_channel()
    await layer.group_add(group, listener)

    async def next_frame() -> dict:
        async with asyncio.timeout(10):
            return json.loads((await layer.receive(listener))["text"])

    roster.presence_changed(conversation_id, {"alice": True}, 1)
    assert await next_frame() == {
        "type": "presence",
        "changes": [{"participant_id": "alice", "online": True, "version": 1}],
    }
    # Inside the window: alice goes and comes back, bob comes; a change of no flag sends nothing.
    roster.presence_changed(conversation_id, {"alice": False}, 2)
    roster.presence_changed(conversation_id, {"bob": True}, 4)
    roster.presence_changed(conversation_id, {"alice": True}, 5)
    roster.presence_changed(conversation_id, {"alice": False}, 3)  # older than 5: it lost the race
    roster.presence_changed(conversation_id, {}, 6)
    key = (asyncio.get_running_loop(), str(conversation_id))
    await roster._running[key]
    assert key not in roster._running and key not in roster._pending
    await layer.group_send(group, {"type": "chat.frame", "text": json.dumps({"type": "sentinel"})})

    second = await next_frame()
    assert second["type"] == "presence"
    assert sorted(second["changes"], key=lambda c: c["participant_id"]) == [
        {"participant_id": "alice", "online": True, "version": 5},
        {"participant_id": "bob", "online": True, "version": 4},
    ]
    assert (await next_frame())["type"] == "sentinel"  # and nothing else was sent

    roster.presence_changed(conversation_id, {}, 7)  # nothing turned, nothing sent, no window
    assert key not in roster._running


def _stores() -> list:
    url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    return [presence.MemoryPresence(), presence.RedisPresence(url)]


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_the_store_says_whose_flag_turned_at_which_version(kind):
    store = _stores()[kind == "redis"]
    room, bob, carol = uuid.uuid4(), str(uuid.uuid4()), str(uuid.uuid4())
    first = store.came(room, bob, "tab-1")
    assert (first.online, first.changes, first.version) == ({bob}, {bob: True}, 1)
    second_tab = store.came(room, bob, "tab-2")  # bob was online already: nothing turned
    assert (second_tab.changes, second_tab.version) == ({}, 1)
    assert store.came(room, carol, "tab-3").changes == {carol: True}
    assert store.went(room, bob, "tab-1").changes == {}  # tab-2 is still open
    gone = store.went(room, bob, "tab-2")
    assert (gone.online, gone.changes, gone.version) == ({carol}, {bob: False}, 3)
    assert store.snapshot(room) == (frozenset({carol}), 3, {})
    assert store.went(room, carol, "tab-3").online == frozenset()
    assert store.went(room, carol, "tab-3").changes == {}  # closing twice turns nothing


def _expired_then_came(store, monkeypatch) -> tuple[uuid.UUID, str, str, presence.Snapshot]:
    """In a new room, one person's entry ("tab-a") expires unrefreshed, then another person
    comes ("tab-b"): the room, the two people, and what the coming returned."""
    room, gone, newcomer = uuid.uuid4(), str(uuid.uuid4()), str(uuid.uuid4())
    store.came(room, gone, "tab-a")
    later = time.time() + presence.TTL_SECONDS + 1
    monkeypatch.setattr(presence.time, "time", lambda: later)
    return room, gone, newcomer, store.came(room, newcomer, "tab-b")


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_entries_that_expired_turn_their_flags_with_the_next_operation(kind, monkeypatch):
    """A process that died leaves its entries to expire: whoever touches the room next tells
    everyone those people went."""
    _room, ghost, alice, came = _expired_then_came(_stores()[kind == "redis"], monkeypatch)
    assert (came.online, came.changes, came.version) == ({alice}, {alice: True, ghost: False}, 2)


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_an_entry_that_ran_out_while_its_socket_lived_comes_back_at_the_refresh(kind, monkeypatch):
    """Alice's entry expired (her process could not refresh it in time) and Bob's connect told
    the room she went: her next refresh brings her back, at the next version, and says so;
    Bob's live entry is refreshed without a word."""
    store = _stores()[kind == "redis"]
    room, alice, bob, seen = _expired_then_came(store, monkeypatch)
    assert (seen.changes, seen.version) == ({bob: True, alice: False}, 2)

    back = store.touch_many([(room, alice, "tab-a"), (room, bob, "tab-b")])

    assert back == [(str(room), presence.Snapshot(frozenset({alice, bob}), 3, {alice: True}))]
    assert store.touch_many([(room, alice, "tab-a"), (room, bob, "tab-b")]) == []  # both live now
    assert store.snapshot(room) == (frozenset({alice, bob}), 3, {})


async def test_the_heartbeat_tells_the_room_of_an_entry_it_brought_back(monkeypatch):
    from conversations import heartbeat

    store = presence.store()
    room, alice = uuid.uuid4(), str(uuid.uuid4())
    store.came(room, alice, "sock-a")
    heartbeat.register("sock-a", room, alice)
    told = []
    monkeypatch.setattr(roster, "presence_changed", lambda *args: told.append(args))
    try:
        assert await heartbeat.refresh_now() == 1
        assert told == []  # refreshed: nothing turned
        store.went(room, alice, "sock-a")  # as an expiry noticed by another socket's operation
        version = store.snapshot(room).version
        assert await heartbeat.refresh_now() == 1
        assert told == [(str(room), {alice: True}, version + 1)]
    finally:
        heartbeat.unregister("sock-a")
        store.went(room, alice, "sock-a")


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
    assert store.snapshot(rooms[0]).online == set()  # register writes nothing: the consumer's connect does
    for channel, room, person in sockets:
        store.came(room, person, channel)
    entries = [store.snapshot(room) for room in rooms]

    assert await heartbeat.refresh_now() == 3
    assert [store.snapshot(room) for room in rooms] == entries  # refreshed: nothing turned
    assert store.snapshot(rooms[0]).online == {str(sockets[0][2]), str(sockets[2][2])}
    assert store.snapshot(rooms[1]).online == {str(sockets[1][2])}

    for channel, room, person in sockets:
        heartbeat.unregister(channel)
        store.went(room, person, channel)
    assert await heartbeat.refresh_now() == 0  # a closed socket is never refreshed back online
    assert store.snapshot(rooms[0]).online == set()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert loop not in heartbeat._tasks and loop not in heartbeat._sockets
