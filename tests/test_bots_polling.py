"""Polling bots on a real daphne: long poll, Telegram-style offsets, replies, bad input, tokens."""

from __future__ import annotations

import asyncio
import io

import httpx
import pytest
from django.core.management import call_command

from bots.models import Bot, BotContext, BotDelivery
from bots.worker import db
from tests import external_bots
from tests.external_bots import bearer, bot_messages, say, token_for
from tests.wsclient import Room

ext_server = external_bots.ext_server

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_long_poll_returns_the_message_and_a_reply_lands_in_the_room(ext_server):
    room = await Room.create(ext_server, bots=["poller"])
    token = await token_for("poller")
    async with httpx.AsyncClient(base_url=ext_server.http_url, headers=bearer(token), timeout=30) as http:
        [joined] = (await http.get("/api/bot/updates")).json()["updates"]  # alice joined (statuses too)
        assert joined["type"] == "status" and joined["status"]["event"] == "joined"
        assert joined["status"]["participant"]["name"] == "alice" and "message" not in joined
        offset = {"offset": joined["update_id"] + 1}
        assert (await http.get("/api/bot/updates", params=offset)).json() == {"updates": []}
        poll = asyncio.create_task(http.get("/api/bot/updates", params={"timeout": 20}))
        sent = await say(room, "alice", "hello bot", "c1")  # the poll is woken by this message
        updates = (await poll).json()["updates"]
        assert len(updates) == 1
        update = updates[0]
        assert update["type"] == "message"
        assert update["conversation_id"] == room.id
        assert update["message"]["id"] == sent["id"] and update["message"]["text"] == "hello bot"
        assert update["message"]["sender"]["name"] == "alice"
        assert update["context"]["current_turn_id"] == 1
        assert update["context"]["requests"]["1"]["text"] == "hello bot"

        body = {"delivery_id": update["update_id"], "replies": [{"kind": "text", "text": "hi alice"}]}
        r = await http.post(f"/api/bot/conversations/{room.id}/messages", json=body)
        assert r.status_code == 201, r.text
        assert [m["text"] for m in r.json()["messages"]] == ["hi alice"]
        again = await http.post(f"/api/bot/conversations/{room.id}/messages", json=body)
        assert again.status_code == 200 and again.json()["messages"][0]["id"] == r.json()["messages"][0]["id"]

        # Answering with the delivery id acknowledged it: nothing left to poll.
        assert (await http.get("/api/bot/updates")).json() == {"updates": []}
        me = (await http.get("/api/bot/me")).json()
        assert me["bot"] == "poller" and me["conversations"][0]["conversation_id"] == room.id
    assert [m["text"] for m in await bot_messages(room)] == ["hi alice"]
    context = await db(lambda: BotContext.objects.get(participant_id=update["participant_id"]))
    assert context.current_turn_id == 1 and context.responses["1"][0]["text"] == "hi alice"


async def test_unacknowledged_updates_come_again_until_an_offset_passes_them(ext_server):
    room = await Room.create(ext_server, bots=["poller"])
    token = await token_for("poller")
    for i in range(3):
        await say(room, "alice", f"m{i}", f"c{i}")
    async with httpx.AsyncClient(base_url=ext_server.http_url, headers=bearer(token)) as http:
        joined, *first = (await http.get("/api/bot/updates")).json()["updates"]
        assert joined["type"] == "status"
        assert [u["message"]["text"] for u in first] == ["m0", "m1", "m2"]
        assert [u["context"]["current_turn_id"] for u in first] == [1, 2, 3]  # each opens the next turn
        again = (await http.get("/api/bot/updates")).json()["updates"][1:]
        assert [u["update_id"] for u in again] == [u["update_id"] for u in first]  # a lost answer loses nothing
        rest = (await http.get("/api/bot/updates", params={"offset": first[1]["update_id"] + 1})).json()["updates"]
        assert [u["message"]["text"] for u in rest] == ["m2"]
        done = (await http.get("/api/bot/updates", params={"offset": rest[0]["update_id"] + 1})).json()
        assert done == {"updates": []}
    statuses = await db(lambda: list(BotDelivery.objects.order_by("id").values_list("status", flat=True)))
    assert statuses == ["done", "done", "done", "done"]
    context = await db(lambda: BotContext.objects.get(participant_id=first[0]["participant_id"]))
    assert context.current_turn_id == 3
    assert [context.requests[str(t)]["text"] for t in (1, 2, 3)] == ["m0", "m1", "m2"]


async def test_bad_input_gets_a_clear_error_and_changes_nothing(ext_server):
    room = await Room.create(ext_server, bots=["poller"])
    other = await Room.create(ext_server, bots=["echo"])
    token = await token_for("poller")
    await say(room, "alice", "hello", "c1")
    url = f"/api/bot/conversations/{room.id}/messages"
    async with httpx.AsyncClient(base_url=ext_server.http_url) as http:
        for headers in ({}, bearer("poller.wrong"), bearer(room.tokens["alice"]), bearer("nobody.x")):
            r = await http.get("/api/bot/updates", headers=headers)
            assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated"
            r = await http.post(url, json={"text": "x"}, headers=headers)
            assert r.status_code == 401, r.text
        auth = bearer(token)
        r = await http.post(url, content=b"{not json", headers=auth)
        assert r.status_code == 400 and r.json()["error"]["code"] == "bad_json"
        r = await http.post(url, json={"replies": [{"kind": "hologram", "text": "x"}]}, headers=auth)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_reply"
        assert "hologram" in r.json()["error"]["detail"]
        r = await http.post(url, json={"replies": [{"kind": "text", "text": "ok"}, {"kind": "options"}]}, headers=auth)
        assert r.status_code == 400  # all or nothing: the valid first reply is not stored either
        r = await http.post(f"/api/bot/conversations/{other.id}/messages", json={"text": "x"}, headers=auth)
        assert r.status_code == 403 and r.json()["error"]["code"] == "not_participant"
        r = await http.post("/api/bot/conversations/not-a-uuid/messages", json={"text": "x"}, headers=auth)
        assert r.status_code == 404
        r = await http.post(url, json={"text": "x", "delivery_id": 10**9}, headers=auth)
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_delivery"
        r = await http.post(url, json={"text": "x" * 5000}, headers=auth)
        assert r.status_code == 413 and r.json()["error"]["code"] == "text_too_long"
        flood = {"replies": [{"text": f"spam {i}"} for i in range(20)]}
        r = await http.post(url, json=flood, headers=auth)
        assert r.status_code == 201
        r = await http.post(url, json={**flood, "client_id": "flood-2"}, headers=auth)
        assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
        assert (await http.get("/api/bot/updates", headers=auth)).json()["updates"][1]["message"]["text"] == "hello"
    texts = [m["text"] for m in await bot_messages(room)]
    assert texts == [f"spam {i}" for i in range(20)]  # the refused call stored none of its replies


async def test_a_webhook_bot_cannot_poll(ext_server):
    token = await token_for("hook")
    async with httpx.AsyncClient(base_url=ext_server.http_url) as http:
        r = await http.get("/api/bot/updates", headers=bearer(token))
    assert r.status_code == 403 and "webhook" in r.json()["error"]["detail"]


async def test_bottoken_prints_a_token_once_and_rotating_it_revokes_the_old_one(ext_server):
    out = io.StringIO()
    await db(call_command, "bottoken", "poller", stdout=out)
    first = out.getvalue().strip()
    row = await db(Bot.objects.get, name="poller")
    assert first.startswith("poller.") and first not in row.token_hash and not row.enabled  # a hash holder only
    async with httpx.AsyncClient(base_url=ext_server.http_url) as http:
        assert (await http.get("/api/bot/me", headers=bearer(first))).status_code == 200
        out = io.StringIO()
        await db(call_command, "bottoken", "poller", stdout=out)
        second = out.getvalue().strip()
        assert (await http.get("/api/bot/me", headers=bearer(first))).status_code == 401
        assert (await http.get("/api/bot/me", headers=bearer(second))).status_code == 200
        assert (await http.get("/api/bot/me", params={"token": second})).status_code == 200
