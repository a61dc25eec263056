"""A small test client for the chat server: HTTP with httpx, sockets with websockets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import websockets

WAIT = 20  # seconds: an upper bound on waiting for an event, never a sleep


def turned(participant_id: str, online: bool) -> Callable[[dict], bool]:
    """For ``expect("presence", ...)``: a frame that turns one participant's ``online`` flag."""
    return lambda f: any(c["participant_id"] == participant_id and c["online"] is online for c in f["changes"])


class Room:
    """A conversation created over HTTP on a live server, with tokens to connect as."""

    def __init__(self, server, conversation: dict, tokens: dict[str, str], participants: dict[str, dict]) -> None:
        self.server = server
        self.id = conversation["id"]
        self.conversation = conversation
        self.tokens = tokens
        self.participants = participants

    @classmethod
    async def create(cls, server, owner: str = "alice", bots: list[str] | None = None, name: str = "Room") -> Room:
        async with httpx.AsyncClient(base_url=server.http_url) as http:
            r = await http.post("/api/conversations", json={"name": name, "nickname": owner, "bots": bots or []})
            r.raise_for_status()
            body = r.json()
        return cls(server, body["conversation"], {owner: body["token"]}, {owner: body["participant"]})

    async def join(self, nickname: str) -> str:
        async with httpx.AsyncClient(base_url=self.server.http_url) as http:
            r = await http.post(f"/api/conversations/{self.id}/join", json={"nickname": nickname})
            r.raise_for_status()
            body = r.json()
        self.tokens[nickname] = body["token"]
        self.participants[nickname] = body["participant"]
        return body["token"]

    async def connect(self, nickname: str, *, server=None, after_seq: int | None = None) -> Socket:
        return await Socket.connect(server or self.server, self.id, self.tokens[nickname], after_seq=after_seq)

    async def history(self, nickname: str, **params) -> dict:
        async with httpx.AsyncClient(base_url=self.server.http_url) as http:
            r = await http.get(
                f"/api/conversations/{self.id}/messages",
                params=params,
                headers={"Authorization": f"Bearer {self.tokens[nickname]}"},
            )
            r.raise_for_status()
            return r.json()


class Socket:
    def __init__(self, ws) -> None:
        self.ws = ws
        self.backlog: list[dict] = []  # frames read while looking for another

    @classmethod
    async def connect(cls, server, conversation_id: str, token: str | None, *, after_seq: int | None = None) -> Socket:
        query = []
        if token is not None:
            query.append(f"token={token}")
        if after_seq is not None:
            query.append(f"after_seq={after_seq}")
        url = f"{server.ws_url}/ws/conversations/{conversation_id}/?{'&'.join(query)}"
        # No client keepalive: on a loaded test machine a late pong is not what is under test.
        ws = await websockets.connect(url, origin=server.http_url, max_size=None, max_queue=None, ping_interval=None)
        socket = cls(ws)
        # The server accepts first, then authorises and subscribes: the first frame (welcome,
        # or the error before a close) says it is ready. It stays in the backlog for the test.
        socket.backlog.append(await socket.recv())
        return socket

    async def send(self, frame: dict[str, Any] | str) -> None:
        await self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    async def recv(self, timeout: float = WAIT) -> dict:
        if self.backlog:
            return self.backlog.pop(0)
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))

    async def expect(self, type_: str, where: Callable[[dict], bool] | None = None, timeout: float = WAIT) -> dict:
        """The next frame of ``type_`` (matching ``where``); other frames stay in the backlog."""
        for i, frame in enumerate(self.backlog):
            if frame["type"] == type_ and (where is None or where(frame)):
                return self.backlog.pop(i)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame = json.loads(await asyncio.wait_for(self.ws.recv(), max(0.01, deadline - loop.time())))
            if frame["type"] == type_ and (where is None or where(frame)):
                return frame
            self.backlog.append(frame)

    async def next_message(self, timeout: float = WAIT) -> dict:
        return (await self.expect("message.new", timeout=timeout))["message"]

    async def messages(self, count: int, timeout: float = WAIT) -> list[dict]:
        return [await self.next_message(timeout) for _ in range(count)]

    async def send_text(self, text: str, client_id: str, **extra) -> dict:
        """Send a message and return its ack."""
        await self.send({"type": "message.send", "client_id": client_id, "text": text, **extra})
        return await self.expect("message.ack", lambda f: f.get("client_id") == client_id)

    async def closed_with(self, timeout: float = WAIT) -> int:
        """Wait for the server to close the socket; return the close code."""
        try:
            while True:
                await asyncio.wait_for(self.ws.recv(), timeout)
        except websockets.ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else closed.code

    async def close(self) -> None:
        await self.ws.close()
