"""The bot API (``/api/bot/...``): what external bots call with their bot token.

* ``GET /api/bot/updates?offset=&timeout=&limit=``: long poll for deliveries (polling bots;
  websocket bots may use it too). ``offset`` acknowledges every update below it (Telegram-style).
* ``POST /api/bot/conversations/<id>/messages``: replies, for every external kind (a webhook bot
  that answers later, a polling bot, a socket bot that prefers HTTP).
* ``GET /api/bot/me``: the bot and the conversations it is in.

The long poll is an async view: a waiting request holds no thread, only a channel on the layer
(group ``bot.<name>``), woken when a delivery for the bot commits; it looks at the database again
every ``RECHECK`` seconds in case a wake-up was lost. Mounted on the main API by ``chatroom/urls.py``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.http import HttpRequest
from ninja import Router, Schema, Status

from conversations import protocol
from conversations.api import ERRORS, MessageOut, api
from conversations.errors import Forbidden, InvalidInput, TooLarge, Unauthenticated
from conversations.models import Participant

from .auth import QUEUED_KINDS, bot_from_token, token_from
from .registry import BotSpec
from .transports import external

MAX_POLL = 50.0  # seconds a long poll may wait
RECHECK = 5.0  # seconds between database looks while waiting (a lost wake-up costs at most this)

router = Router(tags=["bot API"])


class BotMessagesOut(Schema):
    messages: list[MessageOut]


class UpdatesOut(Schema):
    updates: list[dict[str, Any]]


def authenticate(request: HttpRequest) -> BotSpec:
    """The bot behind ``Authorization: Bearer <bot token>`` (or ``?token=``), else 401."""
    spec = bot_from_token(token_from(request.headers, request.GET.get("token", "")))
    if spec is None:
        raise Unauthenticated("send Authorization: Bearer <bot token> (see docs/bots.md)")
    return spec


@router.get("/me", response={200: dict, **ERRORS})
def me(request: HttpRequest) -> dict[str, Any]:
    """The bot this token belongs to and the conversations it takes part in."""
    spec = authenticate(request)
    rooms = Participant.objects.filter(
        kind=Participant.Kind.BOT, bot_name=spec.name, left_at__isnull=True, banned=False
    ).values_list("conversation_id", "pk")
    return {
        "bot": spec.name,
        "kind": spec.kind,
        "conversations": [{"conversation_id": str(c), "participant_id": str(p)} for c, p in rooms],
    }


@router.get("/updates", response={200: UpdatesOut, **ERRORS})
async def updates(request: HttpRequest, offset: int | None = None, timeout: float = 0, limit: int = 100):  # noqa: ASYNC109
    """Unacknowledged deliveries, oldest first: ``{"updates": [{"update_id", "delivery_id",
    "conversation_id", "participant_id", "type": "message"|"status", "message"|"status",
    "context"}]}``. Waits up to ``timeout`` seconds (max 50) when there are none."""
    spec = await database_sync_to_async(authenticate)(request)
    if spec.kind not in QUEUED_KINDS:
        raise Forbidden(f"bot {spec.name!r} is a {spec.kind} bot: its deliveries are pushed, not polled")
    limit = max(1, min(int(limit), external.MAX_UPDATES))
    wait = max(0.0, min(float(timeout), MAX_POLL))
    layer = get_channel_layer() if wait else None
    channel = None
    if layer is not None:
        channel = await layer.new_channel()
        await layer.group_add(external.group_name(spec.name), channel)  # before looking: no wake-up lost
    try:
        if offset is not None:
            await database_sync_to_async(external.acknowledge_below)(spec.name, offset)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            found = await database_sync_to_async(external.pending_updates)(spec.name, limit=limit)
            left = deadline - loop.time()
            if found or channel is None or left <= 0:
                return {"updates": found}
            try:
                async with asyncio.timeout(min(left, RECHECK)):
                    await layer.receive(channel)
            except TimeoutError:
                pass
    finally:
        if channel is not None:
            await layer.group_discard(external.group_name(spec.name), channel)


@router.post("/conversations/{conversation_id}/messages", response={201: BotMessagesOut, 200: BotMessagesOut, **ERRORS})
def post_messages(request: HttpRequest, conversation_id: str):
    """Replies into a conversation the bot is in: ``{"replies": [reply, ...]}`` (or one reply
    object), optional ``delivery_id`` (acknowledges it; ``update_id`` is the same) and
    ``client_id`` (idempotency). 201 with ``{"messages": [...]}``; a resend answers 200."""
    spec = authenticate(request)
    if len(request.body) > external.MAX_BODY:
        raise TooLarge(f"at most {external.MAX_BODY} bytes per call")
    try:
        body = json.loads(request.body or b"null")
    except ValueError:
        raise InvalidInput("the request body must be one JSON object", code="bad_json") from None
    if not isinstance(body, dict):
        raise InvalidInput("the request body must be one JSON object", code="bad_json")
    single = body if "kind" in body or "text" in body else None
    raw = body["replies"] if "replies" in body else body.get("reply", single)
    messages, created = external.store_replies(
        spec.name,
        conversation_id,
        raw,
        delivery_id=body.get("delivery_id", body.get("update_id")),
        client_id=body.get("client_id"),
    )
    return Status(201 if created else 200, {"messages": [protocol.message_to_dict(m) for m in messages]})


api.add_router("/bot", router)
