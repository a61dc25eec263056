"""Helpers for the moderation tests: an in-process socket client and admin form posts.

Sockets are ``channels.testing.WebsocketCommunicator`` on ``chatroom.asgi.application`` in the
test's own process, so they work with the in-memory layer and with Redis alike. Every wait has
an upper bound (``WAIT``) and returns as soon as the frame arrives; nothing sleeps.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

WAIT = 10  # seconds: an upper bound on waiting for a frame, never a sleep
HEADERS = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]


class SocketClosed(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"socket closed with {code}")
        self.code = code


class Ws:
    """One conversation socket of one participant."""

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.communicator = communicator
        self.backlog: list[dict] = []
        self.closed_code: int | None = None

    @classmethod
    async def connect(cls, conversation_id, token: str | None = None, *, cookie: str | None = None) -> Ws:
        from chatroom.asgi import application

        headers = list(HEADERS)
        if cookie:
            headers.append((b"cookie", cookie.encode()))
        query = f"?token={token}" if token else ""
        communicator = WebsocketCommunicator(application, f"/ws/conversations/{conversation_id}/{query}", headers)
        connected, _ = await communicator.connect(timeout=WAIT)
        assert connected
        socket = cls(communicator)
        # The server accepts first, then authorises and subscribes: the first frame (welcome,
        # or the error before a close) says it is ready. Kept for the test to read.
        socket.backlog.append(json.loads((await communicator.receive_output(WAIT))["text"]))
        return socket

    async def recv(self, timeout: float = WAIT) -> dict:
        if self.backlog:
            return self.backlog.pop(0)
        output = await self.communicator.receive_output(timeout)
        if output["type"] == "websocket.close":
            self.closed_code = output.get("code", 1000)
            raise SocketClosed(self.closed_code)
        return json.loads(output["text"])

    async def expect(self, type_: str, where: Callable[[dict], bool] | None = None) -> dict:
        """The next frame of ``type_`` (matching ``where``); frames passed over are kept."""
        for i, frame in enumerate(self.backlog):
            if frame["type"] == type_ and (where is None or where(frame)):
                return self.backlog.pop(i)
        while True:
            output = await self.communicator.receive_output(WAIT)
            if output["type"] == "websocket.close":
                self.closed_code = output.get("code", 1000)
                raise SocketClosed(self.closed_code)
            frame = json.loads(output["text"])
            if frame["type"] == type_ and (where is None or where(frame)):
                return frame
            self.backlog.append(frame)

    async def next_message(self, where: Callable[[dict], bool] | None = None) -> dict:
        """The next ``message.new`` (matching ``where`` on its message)."""
        frame = await self.expect("message.new", (lambda f: where(f["message"])) if where else None)
        return frame["message"]

    async def closed_with(self) -> int:
        """Read until the server closes the socket; return the close code."""
        self.backlog.clear()
        while True:
            try:
                await self.recv()
            except SocketClosed as closed:
                return closed.code

    async def send(self, frame: dict[str, Any]) -> None:
        await self.communicator.send_json_to(frame)

    async def close(self) -> None:
        await self.communicator.disconnect()


async def connect_expecting_close(conversation_id, token: str | None = None, *, cookie: str | None = None) -> tuple:
    """Connect and return (error frame, close code) for a socket the server refuses."""
    ws = await Ws.connect(conversation_id, token, cookie=cookie)
    error = await ws.recv()
    code = await ws.closed_with()
    await ws.close()
    return error, code


def admin_url(model: str, view: str, *args) -> str:
    from django.urls import reverse

    return reverse(f"admin:conversations_{model}_{view}", args=args)


def run_admin_action(client: Client, model: str, action: str, ids: list, reason: str = "", **fields):
    """Post a changelist action the way the admin does: the action (answered by the reason
    form), then the filled-in form. Returns (form response, final response)."""
    url = admin_url(model, "changelist")
    selected = [str(pk) for pk in ids]
    first = client.post(url, {"action": action, "_selected_action": selected, "index": 0})
    if first.status_code != 200:
        return first, first
    final = client.post(url, {"action": action, "_selected_action": selected, "apply": "1", "reason": reason, **fields})
    return first, final


def run_admin_button(client: Client, model: str, pk, op: str, reason: str = "", **fields):
    """Open an object's moderation button (the reason form), then post it. Returns both."""
    url = admin_url(model, "moderate", pk, op)
    form = client.get(url)
    if form.status_code != 200:
        return form, form
    return form, client.post(url, {"reason": reason, **fields})


admin_action = sync_to_async(run_admin_action)
admin_button = sync_to_async(run_admin_button)


# ---- fixtures (imported by the test modules) ----------------------------------------------------


def ensure_moderators_group():
    """The group from migration 0004 (a transactional test before this one may have flushed it)."""
    import importlib

    from django.contrib.auth.models import Group, Permission

    migration = importlib.import_module("conversations.migrations.0004_moderators_group")
    group, _ = Group.objects.get_or_create(name=migration.GROUP)
    if not group.permissions.exists():
        group.permissions.set(
            Permission.objects.filter(content_type__app_label="conversations", codename__in=migration.codenames())
        )
    return group


class Room:
    """A conversation made through Chat: alice (owner), bob and carol (members), with tokens."""

    def __init__(self) -> None:
        from conversations.chat import Chat

        self.chat, people = Chat.create("Room", "alice")
        self.alice = people[0]
        self.bob = self.chat.join("bob")
        self.carol = self.chat.join("carol")
        self.id = self.chat.conversation.pk

    def say(self, participant, text: str):
        return self.chat.save_message(participant, {"client_id": text, "text": text})


@pytest.fixture
def moderator(db):
    from django.contrib.auth.models import User

    user = User.objects.create_user("mod", is_staff=True)
    user.groups.add(ensure_moderators_group())
    return user


@pytest.fixture
def staff_client(moderator) -> Client:
    client = Client()
    client.force_login(moderator)
    return client


@pytest.fixture
def room(db) -> Room:
    return Room()
