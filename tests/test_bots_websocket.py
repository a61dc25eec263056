"""WebSocket bots on a real daphne: one socket for every conversation, acks, replies, resume
after a reconnect without losing anything, and clear errors for bad input."""

from __future__ import annotations

import pytest
import websockets

from bots.models import BotContext, BotDelivery
from bots.worker import db
from tests import external_bots
from tests.external_bots import bot_messages, say, token_for
from tests.wsclient import Room, Socket

pytestmark = pytest.mark.django_db(transaction=True)

ext_server = external_bots.ext_server


async def bot_socket(server, token: str, *, in_query: bool = False) -> Socket:
    """A bot program's socket: no Origin header, the token in Authorization (or ?token=)."""
    if in_query:
        ws = await websockets.connect(f"{server.ws_url}/ws/bots/?token={token}", ping_interval=None)
    else:
        ws = await websockets.connect(
            f"{server.ws_url}/ws/bots/", additional_headers={"Authorization": f"Bearer {token}"}, ping_interval=None
        )
    socket = Socket(ws)
    welcome = await socket.recv()
    assert welcome["type"] == "welcome", welcome
    return socket


def texts(frames: list[dict]) -> list[str]:
    return [f["message"]["text"] for f in frames]


async def test_one_socket_carries_every_conversation_and_replies_reach_the_rooms(ext_server):
    token = await token_for("sock")
    one = await Room.create(ext_server, bots=["sock"], name="one")
    two = await Room.create(ext_server, bots=["sock"], name="two")
    bot = await bot_socket(ext_server, token)
    alice = await one.connect("alice")
    try:
        joined = [await bot.expect("status") for _ in range(2)]  # alice joined, in each room
        assert {f["conversation_id"] for f in joined} == {one.id, two.id}
        await bot.send({"type": "ack", "delivery_ids": [f["delivery_id"] for f in joined]})
        assert (await bot.expect("acked"))["delivery_ids"] == [f["delivery_id"] for f in joined]

        await say(one, "alice", "hello one", "c1")
        await say(two, "alice", "hello two", "c2")
        frames = [await bot.expect("message") for _ in range(2)]
        assert {(f["conversation_id"], f["message"]["text"]) for f in frames} == {
            (one.id, "hello one"),
            (two.id, "hello two"),
        }
        for frame in frames:
            assert (
                frame["context"]["requests"][str(frame["context"]["current_turn_id"])]["text"]
                == frame["message"]["text"]
            )
            await bot.send(
                {
                    "type": "reply",
                    "conversation_id": frame["conversation_id"],
                    "delivery_id": frame["delivery_id"],
                    "replies": [{"kind": "text", "text": "echo: " + frame["message"]["text"]}],
                }
            )
            ok = await bot.expect("reply.ok", lambda f, d=frame["delivery_id"]: f.get("delivery_id") == d)
            assert ok["created"] and len(ok["messages"]) == 1
        live = await alice.expect("message.new", lambda f: f["message"]["sender"]["kind"] == "bot")
        assert live["message"]["text"] == "echo: hello one"  # the person sees it in real time

        # The same reply again (a bot unsure it arrived) stores nothing new.
        await bot.send(
            {
                "type": "reply",
                "conversation_id": frames[0]["conversation_id"],
                "delivery_id": frames[0]["delivery_id"],
                "replies": [{"kind": "text", "text": "echo: " + frames[0]["message"]["text"]}],
            }
        )
        assert not (await bot.expect("reply.ok"))["created"]
    finally:
        await bot.close()
        await alice.close()
    assert [m["text"] for m in await bot_messages(one)] == ["echo: hello one"]
    assert [m["text"] for m in await bot_messages(two)] == ["echo: hello two"]
    assert await db(lambda: set(BotDelivery.objects.values_list("status", flat=True))) == {"done"}
    contexts = await db(lambda: list(BotContext.objects.values_list("current_turn_id", flat=True)))
    assert contexts == [1, 1]


async def test_after_a_reconnect_every_unacknowledged_delivery_comes_again_in_order(ext_server):
    token = await token_for("sock")
    room = await Room.create(ext_server, bots=["sock"])
    bot = await bot_socket(ext_server, token)
    joined = await bot.expect("status")
    await bot.send({"type": "ack", "delivery_id": joined["delivery_id"]})
    await bot.expect("acked")
    for i in range(3):
        await say(room, "alice", f"m{i}", f"c{i}")
    first = [await bot.expect("message") for _ in range(3)]
    assert texts(first) == ["m0", "m1", "m2"]
    await bot.send({"type": "ack", "delivery_id": first[0]["delivery_id"]})
    await bot.expect("acked")
    await bot.close()  # m1 and m2 were received but never acknowledged

    for i in range(3, 5):
        await say(room, "alice", f"m{i}", f"c{i}")  # while the bot is away
    again = await bot_socket(ext_server, token, in_query=True)
    try:
        frames = [await again.expect("message") for _ in range(4)]
        assert texts(frames) == ["m1", "m2", "m3", "m4"]
        assert [f["delivery_id"] for f in frames] == sorted(f["delivery_id"] for f in frames)
        await again.send({"type": "ack", "delivery_ids": [f["delivery_id"] for f in frames]})
        await again.expect("acked")
        await again.send({"type": "ping"})
        await again.expect("pong")
        assert not [f for f in again.backlog if f["type"] == "message"]  # nothing sent twice on one socket
    finally:
        await again.close()
    statuses = await db(lambda: list(BotDelivery.objects.values_list("status", flat=True)))
    assert statuses == ["done"] * 6
    context = await db(BotContext.objects.get)
    assert [context.requests[str(t)]["text"] for t in range(1, 6)] == [f"m{i}" for i in range(5)]


async def test_wrong_tokens_are_closed_and_bad_frames_get_clear_errors(ext_server):
    async def closed_with(headers=None, query="") -> int:
        ws = await websockets.connect(
            f"{ext_server.ws_url}/ws/bots/{query}", additional_headers=headers or {}, ping_interval=None
        )
        socket = Socket(ws)
        error = await socket.recv()
        assert error["type"] == "error"
        return await socket.closed_with()

    assert await closed_with() == 4401
    assert await closed_with({"Authorization": "Bearer sock.wrong"}) == 4401
    assert await closed_with(query="?token=nobody.x") == 4401
    assert await closed_with({"Authorization": f"Bearer {await token_for('hook')}"}) == 4403

    token = await token_for("sock")
    room = await Room.create(ext_server, bots=["sock"])
    elsewhere = await Room.create(ext_server, bots=["echo"])
    bot = await bot_socket(ext_server, token)
    try:
        await bot.send("{nope")
        assert (await bot.expect("error"))["code"] == "bad_json"
        await bot.send({"type": "dance"})
        assert (await bot.expect("error"))["code"] == "unknown_type"
        await bot.send({"type": "ack", "delivery_id": "one"})
        assert (await bot.expect("error"))["code"] == "invalid"
        await bot.send({"type": "reply", "conversation_id": elsewhere.id, "client_id": "x1", "reply": {"text": "hi"}})
        error = await bot.expect("error")
        assert error["code"] == "not_participant" and error["client_id"] == "x1"
        await bot.send(
            {
                "type": "reply",
                "conversation_id": room.id,
                "replies": [{"kind": "text", "text": "fine"}, {"kind": "bogus"}],
            }
        )
        error = await bot.expect("error")
        assert error["code"] == "invalid_reply" and "bogus" in error["detail"]
        joined = await bot.expect("status")
        await bot.send(
            {
                "type": "reply",
                "conversation_id": elsewhere.id,
                "delivery_id": joined["delivery_id"],
                "reply": {"text": "x"},
            }
        )
        assert (await bot.expect("error"))["code"] == "not_participant"
        await bot.send({"type": "reply", "conversation_id": room.id, "delivery_id": 10**9, "reply": {"text": "x"}})
        assert (await bot.expect("error"))["code"] == "unknown_delivery"
    finally:
        await bot.close()
    assert await bot_messages(room) == []
    assert await db(lambda: BotDelivery.objects.get(bot_name="sock").status) == "sent"  # still waiting for an ack
