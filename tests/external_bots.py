"""Helpers of the external-bot tests (webhook, WebSocket, polling, SDK): a daphne with external
bots installed, a person who talks over HTTP, tokens."""

from __future__ import annotations

import json

import httpx
import pytest

from bots.auth import issue_token
from bots.worker import db
from tests.wsclient import Room

BOTS = {
    "echo": {"class": "bots.builtin.echo.EchoBot"},
    "poller": {"kind": "polling", "description": "An external polling bot.", "trigger": "all"},
    "sock": {"kind": "websocket", "description": "An external WebSocket bot.", "trigger": "all"},
    "hook": {"kind": "webhook", "url": "http://127.0.0.1:9/", "trigger": "all"},
}


@pytest.fixture
def ext_server(start_daphne, settings):
    """A daphne that knows the external bots (the test process knows them too, for tokens)."""
    settings.CHAT_INSTALLED_BOTS = BOTS
    server = start_daphne({"CHAT_INSTALLED_BOTS": json.dumps(BOTS)})
    yield server
    print("".join(server.log))
    assert not server.tracebacks(), "".join(server.log)


async def token_for(name: str) -> str:
    return await db(issue_token, name)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def say(room: Room, who: str, text: str, client_id: str) -> dict:
    """A person's message over HTTP; returns the stored message."""
    async with httpx.AsyncClient(base_url=room.server.http_url) as http:
        r = await http.post(
            f"/api/conversations/{room.id}/messages",
            json={"text": text, "client_id": client_id},
            headers=bearer(room.tokens[who]),
        )
        assert r.status_code == 201, r.text
        return r.json()


async def bot_messages(room: Room, who: str = "alice") -> list[dict]:
    history = await room.history(who, limit=500)
    return [m for m in history["messages"] if m["sender"] and m["sender"]["kind"] == "bot"]
