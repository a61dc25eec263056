"""Bots that fetch their deliveries: WebSocket bots (``/ws/bots/``) and polling bots
(``GET /api/bot/updates``). Shared by both doors.

Their deliveries are written to the outbox as ``sent`` (no worker runs them) and stay there
until the bot acknowledges them: an ``ack`` frame, an ``offset`` past them, or a reply that
names the ``delivery_id``. Only then are they ``done``, so a bot that disconnects, crashes or
polls from another host gets every unacknowledged delivery again, in order. A wake-up goes to
the channel-layer group ``bot.<name>`` (every socket and waiting long poll of that bot).

The Context is kept here as for Python bots: an update carries it with the delivered message as
the current turn; acknowledging stores that turn, and replies naming the delivery are recorded
as its responses.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from typing import Any

from channels.layers import get_channel_layer
from django.db import transaction
from django.utils import timezone

from chatroom import publish
from conversations.errors import InvalidInput, NotFound, NotParticipant, TooLarge
from conversations.models import Message, Participant

from .. import delivery as store
from .. import outbox
from ..context import Context
from ..models import BotDelivery
from ..replies import ReplyError, coerce

Status = BotDelivery.Status
MAX_UPDATES = 100  # per poll / per socket batch
MAX_REPLIES = 20  # per reply call
MAX_BODY = 16 * 1024 * 1024  # bytes of one reply call (files travel base64-encoded)


def group_name(bot_name: str) -> str:
    """Every socket and long poll of one bot (all its conversations)."""
    return f"bot.{bot_name}"


def notify_bot(bot_name: str) -> None:
    """Wake the bot's sockets and long polls, in every process (after the outbox row committed)."""
    if get_channel_layer() is None:
        return
    # The row is there if this is lost: the next poll or reconnect finds it.
    publish.group_send(group_name(bot_name), {"type": "bot.deliveries"}, failure=f"wake-up of bot {bot_name}'s sockets")


# ---- updates ------------------------------------------------------------------------------------


def update_dict(item: BotDelivery, context: Context | None) -> dict[str, Any]:
    """One delivery as a bot sees it (polling update and WebSocket frame alike)."""
    kind = "message" if item.type == BotDelivery.Type.MESSAGE else "status"
    update: dict[str, Any] = {
        "update_id": item.id,
        "delivery_id": item.id,
        "conversation_id": str(item.conversation_id),
        "participant_id": str(item.participant_id),
        "type": kind,
        kind: item.payload.get(kind) or {},
    }
    if item.payload.get("redirected"):
        update["redirected"] = True
    if context is not None:
        if kind == "message":
            context.add_request(dict(item.payload.get("message") or {}))  # the turn this update opens
        update["context"] = json.loads(context.to_json())
    return update


def pending_updates(bot_name: str, *, exclude: Iterable[int] = (), limit: int = MAX_UPDATES) -> list[dict[str, Any]]:
    """Unacknowledged deliveries of a bot, oldest first (so in order per participant)."""
    rows = list(
        BotDelivery.objects.filter(bot_name=bot_name, status=Status.SENT)
        .exclude(pk__in=list(exclude))
        .select_related("participant")
        .order_by("id")[:limit]
    )
    contexts: dict[Any, Context | None] = {}
    updates = []
    for item in rows:
        if item.participant_id not in contexts:
            contexts[item.participant_id] = store.load_context(item.participant)
        # Several updates of one participant: each opens the turn after the previous one.
        context = contexts[item.participant_id]
        updates.append(update_dict(item, Context.from_dict(context.to_dict(), **_where(item.participant))))
        if item.type == BotDelivery.Type.MESSAGE:
            context.add_request(dict(item.payload.get("message") or {}))
    return updates


def _where(participant: Participant) -> dict[str, str]:
    return {
        "participant_id": str(participant.pk),
        "conversation_id": str(participant.conversation_id),
        "bot_name": participant.bot_name,
    }


# ---- acknowledgements -----------------------------------------------------------------------


def _ack(item: BotDelivery, responses: list[dict[str, Any]] | None = None) -> bool:
    """Mark one sent delivery done and store its turn (in the caller's transaction).
    False if it was already acknowledged (a repeated ack changes nothing)."""
    done = BotDelivery.objects.filter(pk=item.pk, status=Status.SENT).update(
        status=Status.DONE, finished_at=timezone.now(), attempts=item.attempts + 1
    )
    if not done:
        return False
    if item.type == BotDelivery.Type.MESSAGE:
        context = store.load_context(item.participant)
        context.add_request(dict(item.payload.get("message") or {}))
        if responses is not None:
            context.add_response(responses)
        store.save_context(context)
    return True


def acknowledge(bot_name: str, delivery_ids: Iterable[int]) -> int:
    """Acknowledge these deliveries of this bot (others' ids are ignored); returns how many."""
    ids = sorted({int(i) for i in delivery_ids})
    count = 0
    for item in (
        BotDelivery.objects.filter(bot_name=bot_name, pk__in=ids, status=Status.SENT)
        .select_related("participant")
        .order_by("id")
    ):
        with transaction.atomic():
            count += _ack(item)
    return count


def acknowledge_below(bot_name: str, offset: int) -> int:
    """Telegram-style: ``offset`` acknowledges every update with a smaller id."""
    ids = BotDelivery.objects.filter(bot_name=bot_name, status=Status.SENT, pk__lt=offset).values_list("pk", flat=True)
    return acknowledge(bot_name, list(ids))


# ---- replies ------------------------------------------------------------------------------------


def bot_participant(bot_name: str, conversation_id: Any) -> Participant:
    """The bot's active participant in a conversation, else a typed error (404 / 403)."""
    try:
        pk = uuid.UUID(str(conversation_id))
    except ValueError:
        raise NotFound("no such conversation") from None
    participant = (
        Participant.objects.select_related("conversation")
        .filter(conversation_id=pk, kind=Participant.Kind.BOT, bot_name=bot_name, left_at__isnull=True, banned=False)
        .first()
    )
    if participant is None:
        raise NotParticipant(f"bot {bot_name!r} is not a participant of conversation {conversation_id}")
    return participant


def store_replies(
    bot_name: str,
    conversation_id: Any,
    raw_replies: Any,
    *,
    delivery_id: Any = None,
    client_id: Any = None,
) -> tuple[list[Message], bool]:
    """Store an external bot's replies in a conversation it is in; return (messages, created).

    All or nothing: a malformed reply, a refusal by Chat (rate, mute, size) or a wrong
    conversation stores none of them. Idempotent: with ``client_id`` (or, without one, the
    ``delivery_id``) a repeated call returns the stored messages. Naming a ``delivery_id``
    acknowledges that delivery and records the replies as its turn's responses.
    """
    if isinstance(raw_replies, (dict, str)):
        raw_replies = [raw_replies]
    if not isinstance(raw_replies, list) or not raw_replies:
        raise InvalidInput("replies is a non-empty list of reply objects", code="invalid_reply")
    if len(raw_replies) > MAX_REPLIES:
        raise TooLarge(f"at most {MAX_REPLIES} replies per call")
    try:
        replies = coerce(raw_replies)
    except ReplyError as error:
        raise InvalidInput(f"malformed reply: {error}", code="invalid_reply") from None
    if client_id is not None and (not isinstance(client_id, str) or not 0 < len(client_id) <= 64):
        raise InvalidInput("client_id is a string of 1..64 characters")
    participant = bot_participant(bot_name, conversation_id)
    item = None
    if delivery_id is not None:
        try:
            item = BotDelivery.objects.select_related("participant").get(pk=int(delivery_id), bot_name=bot_name)
        except (BotDelivery.DoesNotExist, TypeError, ValueError):
            raise NotFound(f"no delivery {delivery_id} for bot {bot_name!r}", code="unknown_delivery") from None
        if item.participant_id != participant.pk:
            raise InvalidInput(f"delivery {delivery_id} belongs to another conversation", code="wrong_conversation")
    if client_id is not None:
        prefix = f"ext-{client_id}"
    elif item is not None:
        prefix = f"bot-{item.pk}"
    else:
        prefix = f"ext-{uuid.uuid4().hex}"
    hop = outbox.current_hop.set(item.hop + 1 if item is not None else None)
    try:
        with transaction.atomic():
            existing = Message.objects.filter(sender=participant, client_id=f"{prefix}-0").exists()
            messages = store.save_replies(str(participant.pk), replies, client_prefix=prefix)
            if item is not None:
                _ack(item, [r.to_dict() for r in replies])
    finally:
        outbox.current_hop.reset(hop)
    return messages, not existing
