"""The bot socket (``/ws/bots/``): one WebSocket per external bot carries the deliveries of all
its conversations, and its acks and replies. Thin: authenticate, read the outbox, call
``transports.external``.

Nothing is lost across reconnects because the outbox is the truth: a delivery stays ``sent``
until the bot acknowledges it, and a new socket first gets every unacknowledged one, oldest first
(so in order per conversation), then new ones as their wake-ups arrive (group ``bot.<name>``).
A socket remembers what it has sent, so a wake-up never sends a delivery twice on one socket.

The route sits outside the browser origin check (``route_bot_sockets``): bot programs send no
``Origin``, and a bot token in a header, never a cookie, is what authenticates them.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from conversations.errors import ChatError, InvalidInput

from .auth import QUEUED_KINDS, bot_from_token, token_from
from .transports import external

logger = logging.getLogger(__name__)

PATH = "/ws/bots/"
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403


def route_bot_sockets(app):
    """ASGI: ``/ws/bots/`` to the bot socket, every other WebSocket path to ``app``."""
    bot_socket = BotSocketConsumer.as_asgi()

    async def router(scope, receive, send):
        if scope["type"] == "websocket" and scope.get("path") == PATH:
            return await bot_socket(scope, receive, send)
        return await app(scope, receive, send)

    return router


class BotSocketConsumer(AsyncWebsocketConsumer):
    spec = None

    async def connect(self) -> None:
        self.sent: set[int] = set()  # delivery ids sent on this socket and not acknowledged yet
        await self.accept()  # first: a close code sent before the handshake never arrives
        headers = {k.decode("latin1"): v.decode("latin1") for k, v in self.scope.get("headers", [])}
        query = parse_qs(self.scope.get("query_string", b"").decode())
        token = token_from(headers, (query.get("token") or [""])[0])
        spec = await database_sync_to_async(bot_from_token)(token) if token else None
        if spec is None:
            await self._error("unauthenticated", "send Authorization: Bearer <bot token> (or ?token=)")
            await self.close(CLOSE_UNAUTHENTICATED)
            return
        if spec.kind not in QUEUED_KINDS:
            await self._error("forbidden", f"bot {spec.name!r} is a {spec.kind} bot: its deliveries are pushed")
            await self.close(CLOSE_FORBIDDEN)
            return
        self.spec = spec
        self.group = external.group_name(spec.name)
        await self.channel_layer.group_add(self.group, self.channel_name)  # before reading: no gap
        await self._send({"type": "welcome", "bot": spec.name, "kind": spec.kind})
        await self.push()

    async def disconnect(self, code: int) -> None:
        if self.spec is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    # ---- server -> bot ------------------------------------------------------------------------

    async def bot_deliveries(self, event: dict[str, Any]) -> None:
        """A wake-up: new deliveries for this bot were committed (any process)."""
        await self.push()

    async def push(self) -> None:
        """Send every unacknowledged delivery this socket has not sent yet, oldest first."""
        while True:
            updates = await database_sync_to_async(external.pending_updates)(self.spec.name, exclude=self.sent)
            for update in updates:
                self.sent.add(update["delivery_id"])
                await self._send(update)  # {"type": "message"|"status", "delivery_id", ...}
            if len(updates) < external.MAX_UPDATES:
                return

    # ---- bot -> server ------------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.spec is None:
            return
        frame: dict[str, Any] = {}
        try:
            raw = text_data if text_data is not None else (bytes_data or b"").decode("utf-8", "replace")
            if len(raw) > external.MAX_BODY:
                raise InvalidInput(f"a frame is at most {external.MAX_BODY} bytes", code="too_large")
            try:
                frame = json.loads(raw)
            except ValueError:
                raise InvalidInput("a frame is one JSON object", code="bad_json") from None
            if not isinstance(frame, dict):
                frame = {}
                raise InvalidInput("a frame is one JSON object", code="bad_json")
            handler = {"ack": self.on_ack, "reply": self.on_reply, "ping": self.on_ping}.get(frame.get("type"))
            if handler is None:
                raise InvalidInput(f"unknown frame type {frame.get('type')!r}: ack, reply or ping", code="unknown_type")
            await handler(frame)
        except ChatError as error:
            await self._error(error.code, error.detail, frame)
        except Exception:
            logger.exception("frame from bot %s failed", self.spec.name)
            await self._error("internal", "the server could not do that", frame)

    async def on_ack(self, frame: dict[str, Any]) -> None:
        ids = frame.get("delivery_ids") if "delivery_ids" in frame else [frame.get("delivery_id")]
        if not isinstance(ids, list) or not ids or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise InvalidInput("ack needs delivery_id (an integer) or delivery_ids (a list of them)")
        await database_sync_to_async(external.acknowledge)(self.spec.name, ids)
        self.sent.difference_update(ids)
        await self._send({"type": "acked", "delivery_ids": ids})

    async def on_reply(self, frame: dict[str, Any]) -> None:
        replies = frame["replies"] if "replies" in frame else frame.get("reply")
        messages, created = await database_sync_to_async(external.store_replies)(
            self.spec.name,
            frame.get("conversation_id"),
            replies,
            delivery_id=frame.get("delivery_id"),
            client_id=frame.get("client_id"),
        )
        if frame.get("delivery_id") is not None:
            self.sent.discard(frame["delivery_id"])
        await self._send(
            {
                "type": "reply.ok",
                **_echo(frame),
                "created": created,
                "messages": [{"id": str(m.pk), "seq": m.seq} for m in messages],
            }
        )

    async def on_ping(self, frame: dict[str, Any]) -> None:
        await self._send({"type": "pong"})

    # ---- helpers --------------------------------------------------------------------------------

    async def _send(self, frame: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(frame, ensure_ascii=False, default=str))

    async def _error(self, code: str, detail: str, frame: dict[str, Any] | None = None) -> None:
        await self._send({"type": "error", "code": code, "detail": detail, **_echo(frame or {})})


def _echo(frame: dict[str, Any]) -> dict[str, Any]:
    """The keys of a bot's frame that tell it which of its requests an answer is about."""
    return {k: frame[k] for k in ("conversation_id", "delivery_id", "client_id") if frame.get(k) is not None}
