"""Whose socket it is: a participant's token, or else the session of the browser that created or
joined the room (the web page connects without a token). The common case is read in one
statement (conversations/socket_reads.py); every refusal still names its reason."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.test import Client

from conversations.models import Participant
from tests.moderation_support import Ws, connect_expecting_close

pytestmark = pytest.mark.django_db(transaction=True)


def _create(browser: Client, nickname: str) -> dict:
    r = browser.post("/api/conversations", {"nickname": nickname}, content_type="application/json")
    assert r.status_code == 201, r.content
    return r.json()


def _leave(browser: Client, conversation_id: str) -> int:
    return browser.post(f"/api/conversations/{conversation_id}/leave", {}, content_type="application/json").status_code


async def test_a_browser_connects_by_its_session_to_its_own_rooms_only():
    browser, other_browser = Client(), Client()
    mine = await sync_to_async(_create)(browser, "alice")
    theirs = await sync_to_async(_create)(other_browser, "mallory")
    cookie = f"sessionid={browser.cookies['sessionid'].value}"

    ws = await Ws.connect(mine["conversation"]["id"], cookie=cookie)
    welcome = await ws.recv()
    assert welcome["type"] == "welcome"
    assert welcome["participant"]["id"] == mine["participant"]["id"]
    assert welcome["conversation"]["id"] == mine["conversation"]["id"]
    await ws.close()

    error, code = await connect_expecting_close(theirs["conversation"]["id"], cookie=cookie)
    assert (error["code"], code) == ("unauthenticated", 4401)
    # A token wins over the session, as before: mallory's token is hers, in her room only.
    error, code = await connect_expecting_close(mine["conversation"]["id"], theirs["token"], cookie=cookie)
    assert (error["code"], code) == ("not_participant", 4403)

    await sync_to_async(Participant.objects.filter(pk=mine["participant"]["id"]).update)(banned=True)
    error, code = await connect_expecting_close(mine["conversation"]["id"], cookie=cookie)
    assert (error["code"], code) == ("banned", 4403)
    await sync_to_async(Participant.objects.filter(pk=mine["participant"]["id"]).update)(banned=False)

    assert await sync_to_async(_leave)(browser, mine["conversation"]["id"]) == 200
    error, code = await connect_expecting_close(mine["conversation"]["id"], cookie=cookie)
    assert (error["code"], code) == ("left", 4403)
