"""The outbox: which bot gets what, recorded as ``BotDelivery`` rows, and how a delivery ends.

``enqueue`` is registered with ``conversations.events`` as the bot sink (``BotsConfig.ready``):
Chat's ``send_to_bots(payload)`` calls it after the message committed, in the process that
committed it. It applies the trigger and the hop limit, writes one row, and wakes a worker (the
local one directly, otherwise a ``bot.wake`` on the channel layer). The row is the truth; the
wake-up only saves waiting for the next sweep.

Everything here is synchronous ORM code; the worker calls it from threads.
"""

from __future__ import annotations

import functools
import logging
import uuid
from contextvars import ContextVar
from datetime import timedelta
from typing import Any

import orjson
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.utils import timezone

from chatroom import publish
from conversations import protocol, rows
from conversations.events import BOT_CHANNEL
from conversations.models import Message, Participant

from . import conf, registry
from .base import mentions
from .models import BotDelivery

logger = logging.getLogger(__name__)

#: Hop of whatever a bot sends right now: the worker sets it to (delivery hop + 1) while a bot
#: runs and its replies are saved. Unset (None) for humans; a bot message sent outside a
#: delivery (proactive, or approved later by a moderator) counts as hop 1.
current_hop: ContextVar[int | None] = ContextVar("bot_hop", default=None)
#: The delivery the worker is running right now (transports read its id and attempt number).
current_delivery: ContextVar[BotDelivery | None] = ContextVar("bot_delivery", default=None)
#: Kinds whose deliveries wait as "sent" until the external bot fetches and acknowledges them:
#: no worker runs them (bots/transports/external.py).
QUEUED_KINDS = ("websocket", "polling")

Status = BotDelivery.Status


# ---- the sink -----------------------------------------------------------------------------------


class NeedsDatabase(Exception):
    """``plan(no_queries=True)``: deciding this delivery would read the database."""


def enqueue(
    payload: dict[str, Any],
    *,
    bot: Participant | None = None,
    message: Message | None = None,
    room_bots: list[Participant] | None = None,
) -> BotDelivery | None:
    """Record one delivery for one bot participant if its trigger wants it; wake a worker.

    ``bot``, ``message`` and ``room_bots``, when the caller has them (``Chat``'s fan-out has
    just read the room's active bots and stored the message), spare a query each per bot and
    message; the worker reads the participant again before it runs the delivery
    (``BotWorker._prepare``)."""
    delivery = plan(payload, bot=bot, message=message, room_bots=room_bots)
    if delivery is None:
        return None
    rows.insert(delivery)  # as .objects.create(), without its compiler (bench/)
    transaction.on_commit(lambda: written([delivery]))
    return delivery


def plan(
    payload: dict[str, Any],
    *,
    bot: Participant | None = None,
    message: Message | None = None,
    room_bots: list[Participant] | None = None,
    stored_with_it: bool = False,
    no_queries: bool = False,
) -> BotDelivery | None:
    """The delivery ``enqueue`` would record (unsaved), or None if the bot does not get it.
    ``stored_with_it``: ``message`` is not stored yet but will be by the statement that writes
    the delivery. ``no_queries``: raise ``NeedsDatabase`` rather than read the database (the
    caller is on an event loop)."""
    try:
        participant_id = uuid.UUID(str(payload.get("participant_id")))
    except ValueError:
        logger.warning("bot delivery without a valid participant_id dropped: %r", payload.get("type"))
        return None
    if bot is not None and bot.pk == participant_id and bot.kind == Participant.Kind.BOT:
        participant = bot
    elif no_queries:
        raise NeedsDatabase
    else:
        participant = Participant.objects.filter(pk=participant_id, kind=Participant.Kind.BOT).first()
    if participant is None or not participant.is_active:
        return None
    spec = registry.get_spec(participant.bot_name, read_database=not no_queries)
    if spec is None:
        if no_queries:
            raise NeedsDatabase  # an admin-installed bot, or none
        logger.warning("bot %r is not installed any more; delivery dropped", participant.bot_name)
        return None
    kind = payload.get("type")
    message_id = None
    if kind == "bot.message":
        if no_queries and _may_query(payload.get("message") or {}):
            raise NeedsDatabase
        hop = _message_hop(payload, participant, spec, room_bots)
        message_id = (payload.get("message") or {}).get("id")
        delivery_type = BotDelivery.Type.MESSAGE
    elif kind == "bot.status":
        hop = 0 if _wants_status(spec, (payload.get("status") or {}).get("event", "")) else None
        delivery_type = BotDelivery.Type.STATUS
    else:
        logger.warning("unknown bot delivery type %r dropped", kind)
        return None
    if hop is None:
        return None
    stored = stored_with_it or (
        message is not None and not message._state.adding and str(message.pk) == str(message_id)
    )
    if message_id and not stored:
        if no_queries:
            raise NeedsDatabase
        if not Message.objects.filter(pk=message_id).exists():
            message_id = None
    return BotDelivery(
        participant=participant,
        conversation_id=participant.conversation_id,
        bot_name=participant.bot_name,
        type=delivery_type,
        message_id=message_id,
        payload=payload,
        hop=hop,
        status=Status.SENT if spec.kind in QUEUED_KINDS else Status.PENDING,
    )


def _may_query(message: dict[str, Any]) -> bool:
    """Whether ``_message_hop`` may read the database for this message (a quote; a command
    in a room that may have a manager)."""
    return bool(message.get("quoted_message_id")) or (
        bool(conf.manager()) and (message.get("text") or "").lstrip().startswith("/")
    )


def written(deliveries: list[BotDelivery]) -> None:
    """After the deliveries' commit: wake whoever runs them (a worker, or the external bot's
    sockets and long polls)."""
    for delivery in deliveries:
        if delivery.status == Status.SENT:
            from .transports.external import notify_bot

            notify_bot(delivery.bot_name)
        else:
            wake(delivery.participant_id, delivery)


def insert_sql(deliveries: list[BotDelivery], seq_sql: str, condition: str) -> tuple[str, list[Any]]:
    """An ``INSERT`` of planned ``deliveries`` of one message for a statement that stores the
    message too (a CTE's body, PostgreSQL): each payload's message gets the seq ``seq_sql``
    (an expression of that statement), and rows are written only where ``condition`` holds.
    Parameters: each delivery's values, in order, then ``condition``'s."""
    fields, _sql = rows.insert_statement(BotDelivery, "postgresql")
    conn = connections[DEFAULT_DB_ALIAS]  # once: each use of the proxy looks it up (bench/)
    params = [f.get_db_prep_save(f.pre_save(d, True), conn) for d in deliveries for f in fields]
    return _insert_sql(len(deliveries), seq_sql, condition), params


@functools.cache
def _insert_sql(count: int, seq_sql: str, condition: str) -> str:
    fields, _sql = rows.insert_statement(BotDelivery, "postgresql")
    payload = BotDelivery._meta.get_field("payload")
    casts = []
    for field in fields:
        cast = f"CAST(%s AS {field.db_type(connection)})"
        if field is payload:
            cast = f"jsonb_set({cast}, '{{message,seq}}', to_jsonb({seq_sql}))"
        casts.append(cast)
    one = f"SELECT {', '.join(casts)}"
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    return (
        f"INSERT INTO {BotDelivery._meta.db_table} ({columns})"
        f" SELECT * FROM ({' UNION ALL '.join([one] * count)}) AS planned WHERE {condition}"
        f" RETURNING {connection.ops.quote_name(BotDelivery._meta.pk.column)},"
        f" {connection.ops.quote_name(BotDelivery._meta.get_field('participant').column)}"
    )


@functools.cache
def inserted_ids_sql(cte: str) -> str:
    """An expression of the statement of ``insert_sql`` (as the CTE ``cte``): the ids of the
    rows it wrote, as JSON by participant id (``numbered``)."""
    pk = connection.ops.quote_name(BotDelivery._meta.pk.column)
    participant = connection.ops.quote_name(BotDelivery._meta.get_field("participant").column)
    return f"(SELECT json_object_agg({participant}, {pk}) FROM {cte})"


def numbered(deliveries: list[BotDelivery], ids: dict[str, int] | None, seq: int) -> None:
    """Deliveries written by a message's statement (``insert_sql``), told their ids (by
    participant, ``inserted_ids_sql``) and their message's seq, as the rows have them: the
    wake-up carries them (``wake``)."""
    for delivery in deliveries:
        delivery.pk = (ids or {}).get(str(delivery.participant_id))
        message = delivery.payload.get("message")
        if isinstance(message, dict):
            message["seq"] = seq


def _message_hop(
    payload: dict[str, Any], participant: Participant, spec: registry.BotSpec, room_bots: list[Participant] | None
) -> int | None:
    """The hop of this delivery, or None if this bot should not get the message."""
    message = payload.get("message") or {}
    sender = message.get("sender") or None
    redirected = bool(payload.get("redirected"))
    from_bot = sender is not None and sender.get("kind") == Participant.Kind.BOT
    hop = (current_hop.get() or 1) if from_bot else 0
    if redirected:
        hop = max(hop, current_hop.get() or 0)
    if hop >= conf.hop_limit():
        logger.info("hop limit %d: message %s not delivered to %s", conf.hop_limit(), message.get("id"), spec.name)
        return None
    if redirected:
        return hop  # the manager chose this bot: no trigger applies
    if sender is None:
        return None  # system messages reach bots as statuses
    if from_bot and not _accepts_bot_messages(spec):
        return None
    if _is_manager_command(message, participant):
        return None  # "/..." in a managed room is for the manager only
    if spec.trigger == "all":
        return hop
    addressed = mentions(message.get("text", ""), participant.name) or _quotes_bot(message, participant)
    if spec.trigger == "mention":
        return hop if addressed else None
    # "auto": every message when it is the room's only bot (the manager aside), else @mentions.
    return hop if addressed or _only_bot(participant, room_bots) else None


def _is_manager_command(message: dict[str, Any], participant: Participant) -> bool:
    manager = conf.manager()
    if not manager or participant.bot_name == manager or not (message.get("text") or "").lstrip().startswith("/"):
        return False
    return Participant.objects.filter(
        conversation_id=participant.conversation_id, bot_name=manager, left_at__isnull=True
    ).exists()


def _accepts_bot_messages(spec: registry.BotSpec) -> bool:
    if spec.bot_messages is not None:
        return spec.bot_messages
    try:
        cls = registry.bot_class(spec)
    except ImportError:
        return False
    return bool(getattr(cls, "accepts_bot_messages", False))


def _wants_status(spec: registry.BotSpec, event: str) -> bool:
    if spec.kind != "python":
        return event != "typing"
    try:
        cls = registry.bot_class(spec)
    except ImportError:
        return False
    if cls is None or not getattr(cls, "overrides_on_status", lambda: False)():
        return False
    return event != "typing" or bool(getattr(cls, "wants_typing", False))


def _quotes_bot(message: dict[str, Any], participant: Participant) -> bool:
    """A reply to the bot's own message (an option choice, a quote) addresses the bot."""
    quoted = message.get("quoted_message_id")
    return bool(quoted) and Message.objects.filter(pk=quoted, sender_id=participant.pk).exists()


def _only_bot(participant: Participant, room_bots: list[Participant] | None = None) -> bool:
    """No other active bot in the room (the manager aside); ``room_bots``: the room's active
    bots as the caller just read them."""
    manager = conf.manager()
    if room_bots is not None:
        return not any(
            b.pk != participant.pk and b.is_bot and b.left_at is None and not b.banned and b.bot_name != manager
            for b in room_bots
        )
    others = Participant.objects.filter(
        conversation_id=participant.conversation_id, kind=Participant.Kind.BOT, left_at__isnull=True, banned=False
    ).exclude(pk=participant.pk)
    if manager:
        others = others.exclude(bot_name=manager)
    return not others.exists()


def enqueue_status(participant: Participant, status: dict[str, Any]) -> BotDelivery | None:
    """A status from the bots side itself (e.g. "pending" for the manager)."""
    return enqueue(
        {
            "type": "bot.status",
            "conversation_id": str(participant.conversation_id),
            "participant_id": str(participant.pk),
            "bot": participant.bot_name,
            "status": status,
        }
    )


def notify_pending(message: Message) -> None:
    """Tell the manager of a pre-moderated room that a bot message awaits approval."""
    manager = conf.manager()
    if not manager or message.approval != Message.Approval.PENDING:
        return
    target = Participant.objects.filter(
        conversation_id=message.conversation_id, kind=Participant.Kind.BOT, bot_name=manager, left_at__isnull=True
    ).first()
    if target is not None and target.pk != message.sender_id:
        enqueue_status(
            target,
            {
                "event": "pending",
                "participant": protocol.sender_to_dict(message.sender),
                "message": protocol.message_to_dict(message),
            },
        )


# ---- wake-ups -------------------------------------------------------------------------------------


def wake(participant_id: uuid.UUID | str, delivery: BotDelivery | None = None) -> None:
    """Have a worker look at this participant's lane: this process's own if it runs one,
    else any worker, through the channel layer. ``delivery``, just written, goes with the
    wake-up (``ahead_of``): a worker may run a pure bot on it before its claim (``bots.ahead``)."""
    from .worker import local_workers

    ahead = ahead_of(delivery)
    woken = False
    for worker in local_workers():
        # A copy of the payload: its dicts become the bot's (through the layer they are anyway).
        own = None if ahead is None else {**ahead, "payload": orjson.loads(rows.json_to_db(ahead["payload"]))}
        woken = worker.wake_threadsafe(str(participant_id), own) or woken
    if woken:
        return
    layer = get_channel_layer()
    if layer is None or isinstance(layer, InMemoryChannelLayer):
        return  # nobody else can hear it; the sweep of this process's worker will find the row
    # The row stays pending if this is lost: a sweep finds it.
    message = {"type": "bot.wake", "participant_id": str(participant_id)}
    if ahead is not None:
        message["delivery"] = ahead
    publish.send(BOT_CHANNEL, message, failure=f"wake-up for {participant_id}")


def ahead_of(delivery: BotDelivery | None) -> dict[str, Any] | None:
    """What a wake-up carries of a delivery just written and runnable now (its row's id, type,
    hop and payload); None for none."""
    if delivery is None or delivery.pk is None or delivery.status != Status.PENDING:
        return None
    if delivery.available_at is not None and delivery.available_at > timezone.now():
        return None
    return {
        "id": delivery.pk,
        "type": delivery.type,
        "bot": delivery.bot_name,
        "hop": delivery.hop,
        "payload": delivery.payload,
    }


# ---- a delivery's end (lanes: bots/lanes.py) ---------------------------------------------------


def finish(delivery_id: int, status: str, error: str = "") -> None:
    BotDelivery.objects.filter(pk=delivery_id).update(
        status=status, last_error=error[:10000], finished_at=timezone.now()
    )


def retry_later(delivery_id: int, seconds: float, error: str, status: int | None = None) -> None:
    """Back to the queue after a failure worth retrying (a webhook's 5xx or time-out); the lane
    waits for it (order before speed)."""
    BotDelivery.objects.filter(pk=delivery_id).update(
        status=Status.PENDING,
        available_at=timezone.now() + timedelta(seconds=seconds),
        last_error=error[:10000],
        last_status=status,
    )
