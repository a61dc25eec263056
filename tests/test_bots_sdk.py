"""The SDK (bots/sdk) against a real daphne: a polling bot and a WebSocket bot written with it,
Chatsky-shaped (``connect(runner)``, ``on_request``), talking with a person in a room."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from bots.models import BotDelivery
from bots.sdk import PollingClient, Request, WebSocketClient, sign, verify_signature
from bots.worker import db
from tests import external_bots
from tests.external_bots import say, token_for
from tests.wsclient import Room

pytestmark = pytest.mark.django_db(transaction=True)

ext_server = external_bots.ext_server


def from_bot(frame: dict) -> bool:
    return frame["message"]["sender"] is not None and frame["message"]["sender"]["kind"] == "bot"


async def test_a_polling_bot_written_with_the_sdk(ext_server):
    room = await Room.create(ext_server, bots=["poller"])
    token = await token_for("poller")
    statuses: list[str] = []
    stop = threading.Event()

    def runner(request: Request, conversation_id: str):
        assert conversation_id == room.id == request.conversation_id
        turn = request.context["current_turn_id"]
        return [f"{request.sender_name} said {request.text!r}", {"kind": "markdown", "text": f"turn **{turn}**"}]

    client = PollingClient(
        ext_server.http_url, token, poll_timeout=1, on_status=lambda r, c: statuses.append(r.status["event"])
    )
    thread = threading.Thread(target=client.connect, args=(runner,), kwargs={"loop": lambda: not stop.is_set()})
    thread.start()
    alice = await room.connect("alice")
    try:
        await say(room, "alice", "one", "c1")
        first = [await alice.expect("message.new", from_bot) for _ in range(2)]
        await say(room, "alice", "two", "c2")
        second = [await alice.expect("message.new", from_bot) for _ in range(2)]
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 30)
        await alice.close()
        client.close()
    assert not thread.is_alive()
    assert [f["message"]["text"] for f in first + second] == [
        "alice said 'one'",
        "turn **1**",
        "alice said 'two'",
        "turn **2**",
    ]
    assert [f["message"]["kind"] for f in second] == ["text", "markdown"]
    assert statuses == ["joined"]
    assert await db(lambda: set(BotDelivery.objects.values_list("status", flat=True))) == {"done"}


async def test_a_websocket_bot_written_with_the_sdk_survives_a_server_restart(ext_server):
    room = await Room.create(ext_server, bots=["sock"])
    token = await token_for("sock")

    async def runner(request: Request, conversation_id: str):
        if request.text == "quiet":
            return None
        return {"kind": "text", "text": f"echo {request.text}"}

    client = WebSocketClient(ext_server.ws_url, token, reconnect_delay=0.2)
    serving = asyncio.create_task(client.connect(runner))
    try:
        alice = await room.connect("alice")
        await say(room, "alice", "before", "c1")
        assert (await alice.expect("message.new", from_bot))["message"]["text"] == "echo before"
        await alice.close()

        await asyncio.to_thread(ext_server.restart)  # the socket drops; the client reconnects by itself
        alice = await room.connect("alice")
        await say(room, "alice", "quiet", "c2")  # acknowledged without an answer
        await say(room, "alice", "after", "c3")
        assert (await alice.expect("message.new", from_bot))["message"]["text"] == "echo after"
        await alice.close()
        await asyncio.wait_for(client.connected.wait(), 20)
        await client.send(room.id, "proactive hello", client_id="hello-1")
        alice = await room.connect("alice", after_seq=0)
        assert await alice.expect("message.new", lambda f: f["message"]["text"] == "proactive hello")
        await alice.close()
    finally:
        await client.close()
        await asyncio.wait_for(serving, 20)
    assert client.errors == []
    assert await db(lambda: set(BotDelivery.objects.values_list("status", flat=True))) == {"done"}


def test_webhook_signatures_round_trip():
    body = b'{"bot": "hook"}'
    signature = sign("key", "1700000000", body)
    assert signature.startswith("sha256=")
    assert not verify_signature("key", "1700000000", body, signature)  # too old: a replay
    now = str(int(time.time()))
    assert verify_signature("key", now, body, sign("key", now, body))
    assert not verify_signature("other", now, body, sign("key", now, body))
    assert not verify_signature("key", now, body + b" ", sign("key", now, body))
