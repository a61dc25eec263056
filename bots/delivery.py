"""Steps of a delivery: load and save a Context, store a bot's replies through Chat (synchronous
ORM code, but for ``save_turn_on_loop``).

Replies go through the one door (``Chat.save_message``; files through ``store_upload``, so
ChatLimits and content sniffing apply to bots as to people). A reply to a delivery gets the
client id ``bot-<delivery id>-<n>``: a delivery run twice (at-least-once) stores each reply once.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from functools import cache
from typing import Any

from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.db.models import JSONField
from django.utils import timezone
from psycopg.types.json import Jsonb

from chatroom.postgresql import loop as on_loop
from conversations import send_sql
from conversations.chat import Chat, NotStoredInOneStatement, stores_in_one_statement
from conversations.models import Attachment, Conversation, Message, Participant
from conversations.rows import Columns, column, hot_cursor, json_to_db
from conversations.uploads import store_upload

from . import ahead, outbox
from .context import Context
from .models import BotContext, BotDelivery
from .replies import Reply, ReplyError

logger = logging.getLogger(__name__)


def load_context(participant: Participant, start_label: str | None = "start") -> Context | None:
    """The stored Context; a new one starting at ``start_label`` (None: return None instead)."""
    row = BotContext.objects.filter(participant=participant).first()
    if row is None:
        return Context.start(start_label, **_where(participant)) if start_label is not None else None
    return context_from_row(participant, row)


@cache
def _delivery_statement(vendor: str) -> tuple[Columns, str]:
    columns = Columns(Participant, Conversation, BotContext)
    participant_id, conversation_id = column(Participant, "id"), column(Participant, "conversation")
    sql = (
        f"SELECT {columns.sql} FROM {Participant._meta.db_table}"
        f" INNER JOIN {Conversation._meta.db_table} ON {column(Conversation, 'id')} = {conversation_id}"
        f" LEFT OUTER JOIN {BotContext._meta.db_table} ON {column(BotContext, 'participant')} = {participant_id}"
        f" WHERE {participant_id} = %s"
    )
    return columns, sql


def participant_and_context(participant_id) -> tuple[Participant | None, Context | None]:
    """A bot participant with its conversation, and its stored Context (or None), by one
    statement built once (``conversations/rows.py``): the worker reads them for every
    delivery, and the ORM's ``select_related`` of the same cost ~2 ms of Python (bench/)."""
    columns, sql = _delivery_statement(connection.vendor)
    with hot_cursor() as cursor:
        cursor.execute(sql, [Participant._meta.pk.get_db_prep_value(participant_id, connection)])
        row = cursor.fetchone()
    if row is None:
        return None, None
    participant, conversation, context_row = columns.instances(row)
    participant.conversation = conversation
    return participant, (context_from_row(participant, context_row) if context_row is not None else None)


def _where(participant: Participant) -> dict[str, str]:
    return {
        "participant_id": str(participant.pk),
        "conversation_id": str(participant.conversation_id),
        "bot_name": participant.bot_name,
    }


def context_from_row(participant: Participant, row: BotContext) -> Context:
    """The Context of a stored row of a participant."""
    return Context.from_dict(
        {
            "current_turn_id": row.current_turn_id,
            "requests": row.requests,
            "responses": row.responses,
            "labels": row.labels,
            "misc": row.misc,
            "created_at": row.created_at,
            "updated_at": row.updated_at,
        },
        **_where(participant),
    )


#: What a Context stores (``Context.to_dict``'s keys), then the row's own times.
_CONTEXT_FIELDS = ("current_turn_id", "requests", "responses", "labels", "misc")
_TIMES = ("updated_at", "created_at")


def save_context(context: Context) -> None:
    """One UPDATE when the row exists (every turn but the first), else create it."""
    data = context.to_dict()
    fields = {k: data[k] for k in _CONTEXT_FIELDS}
    if not BotContext.objects.filter(participant_id=context.participant_id).update(**fields, updated_at=timezone.now()):
        BotContext.objects.update_or_create(participant_id=context.participant_id, defaults=fields)


@cache
def _context_and_finish_parts(vendor: str, condition: str = "TRUE", claimed: bool = False) -> tuple[str, str]:
    """The Context's upsert and the delivery's end, each writing only if ``condition`` (SQL)
    holds; parameters: ``_context_and_finish_params``. The values are cast: a ``SELECT``
    list, unlike ``VALUES`` in an ``INSERT``, does not take its parameters' types from the
    columns. ``claimed``: the end also records the claim (its attempt, start and worker), for
    a turn claimed by its own statement (``bots.ahead``)."""
    quote = connection.ops.quote_name
    context, item = BotContext._meta, BotDelivery._meta
    key = quote(context.pk.column)
    fields = [context.pk, *(context.get_field(name) for name in (*_CONTEXT_FIELDS, *_TIMES))]
    columns = [quote(f.column) for f in fields]
    values = ", ".join(f"CAST(%s AS {f.cast_db_type(connection)})" for f in fields)
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns[1:-1])  # not the key, not created_at
    column = item.get_field
    upsert = (
        f"INSERT INTO {context.db_table} ({', '.join(columns)}) SELECT {values} WHERE {condition}"
        f" ON CONFLICT ({key}) DO UPDATE SET {updates}"
    )
    done = (
        f"UPDATE {item.db_table} SET {quote(column('status').column)} = %s,"
        f" {quote(column('last_error').column)} = '', {quote(column('finished_at').column)} = %s"
    )
    if claimed:
        attempts = quote(column("attempts").column)
        done += (
            f", {attempts} = {attempts} + 1, {quote(column('started_at').column)} = %s,"
            f" {quote(column('worker').column)} = %s"
        )
    done += f" WHERE {quote(item.pk.column)} = %s AND {condition}"
    return upsert, done


@cache
def _context_and_finish_sql(vendor: str) -> str:
    upsert, done = _context_and_finish_parts(vendor)
    return f"WITH saved AS ({upsert}) {done}"


def save_context_and_finish(context: Context, delivery_id: int) -> None:
    """A turn's end: its Context saved (created on the first turn) and its delivery done. On
    PostgreSQL one statement (bench/: on the echo's path, the first turn of a bot in a room
    took ~2 ms more than the others for creating its Context by ``update_or_create``)."""
    if connection.vendor != "postgresql":
        save_context(context)
        outbox.finish(delivery_id, BotDelivery.Status.DONE)
        return
    with hot_cursor() as cursor:
        cursor.execute(_context_and_finish_sql(connection.vendor), _context_and_finish_params(context, delivery_id))


@cache
def _context_and_finish_with_reply_sql(vendor: str, claimed: bool = False) -> str:
    """The turn's end as CTEs of the reply's statement, writing only if the reply was stored
    (``send_sql.Also``)."""
    upsert, done = _context_and_finish_parts(vendor, "EXISTS (SELECT 1 FROM stored)", claimed)
    return f"turn_context AS ({upsert}), turn_done AS ({done})"


def context_and_finish_with_reply(
    context: Context, delivery_id: int, now: datetime | None = None, claimed_by: str | None = None
) -> send_sql.Also:
    """A turn's end (``save_context_and_finish``) written by the statement that stores its
    one reply (``conversations.chat.stores_in_one_statement``): a turn is then one round trip
    instead of four (a transaction around two statements; bench/: the echo round trip).
    ``now``: the Context's new ``updated_at``; ``claimed_by``: the worker whose claim the end
    records (``bots.ahead``)."""
    claimed = claimed_by is not None
    return send_sql.Also(
        _context_and_finish_with_reply_sql(connection.vendor, claimed),
        _context_and_finish_params(context, delivery_id, now, claimed_by),
    )


def save_turn_in_one_statement(
    participant: Participant, replies: list[Reply], context: Context, delivery_id: int, *, client_prefix: str
) -> bool:
    """A turn of at most one reply without files, ended by one statement on PostgreSQL (its
    reply, Context and delivery: all or nothing, as the transaction of ``BotWorker._commit``).
    False, with nothing written, when it cannot be (another database, more replies, files, a
    reply the chat does not store at once): the caller then runs the turn the ordinary way."""
    if connection.vendor != "postgresql" or len(replies) > 1 or any(reply.files for reply in replies):
        return False
    if not replies:
        save_context_and_finish(context, delivery_id)
        return True
    try:
        with stores_in_one_statement(context_and_finish_with_reply(context, delivery_id)):
            save_replies(participant, replies, client_prefix=client_prefix)
    except NotStoredInOneStatement:
        return False
    return True


async def save_turn_on_loop(
    participant: Participant,
    replies: list[Reply],
    context: Context,
    delivery_id: int,
    *,
    client_prefix: str,
    claim: ahead.Claim | None = None,
) -> datetime | None:
    """``save_turn_in_one_statement``'s turn of one reply, stored by its one statement on the
    event loop's own connection (``Chat.save_message_on_loop``): no thread hop to end a turn
    (bench/: the echo round trip). The stored Context's new ``updated_at``; None, with nothing
    written, when it cannot be (SQLite, no reply or more, files, a quote, a reply the chat does
    not store at once, a database error): the caller then ends the turn in a thread, which
    stores or refuses as it always has. ``claim``: the statement also takes the lane and
    claims the delivery, and stores nothing unless both are still to be had (``bots.ahead``)."""
    if not on_loop.available() or len(replies) != 1 or replies[0].files:
        return None
    now = timezone.now()
    also = context_and_finish_with_reply(context, delivery_id, now, None if claim is None else claim.owner)
    if claim is not None:
        also = send_sql.Also.joined(claim.also(context.participant_id, delivery_id, now), also)
    data = _message_data(replies[0], f"{client_prefix}-0", [])
    stored = await Chat(participant.conversation).save_message_on_loop(participant, data, also=also)
    return None if stored is None else now


def _context_and_finish_params(
    context: Context, delivery_id: int, now: datetime | None = None, claimed_by: str | None = None
) -> list[Any]:
    """PostgreSQL's parameters of the turn's end; the Context's JSON made by orjson
    (``rows.json_to_db``: ~1 ms less per turn once a Context holds 200 turns, bench/)."""
    now = now or timezone.now()
    data = {**context.to_dict(), "updated_at": now, "created_at": now}
    fields = [BotContext._meta.get_field(name) for name in (*_CONTEXT_FIELDS, *_TIMES)]
    params = [Participant._meta.pk.get_db_prep_value(context.participant_id, connection)]
    params += [
        Jsonb(data[field.name], dumps=json_to_db)
        if isinstance(field, JSONField)
        else field.get_db_prep_save(data[field.name], connection)
        for field in fields
    ]
    at = connection.ops.adapt_datetimefield_value(now)
    claim = [] if claimed_by is None else [at, claimed_by[:100]]
    return [*params, BotDelivery.Status.DONE, at, *claim, delivery_id]


def import_context(participant: Participant, exported: str | dict[str, Any]) -> Context:
    """Replace a bot participant's Context with an exported one (``Context.to_json``)."""
    where = {"participant_id": str(participant.pk), "conversation_id": str(participant.conversation_id)}
    if isinstance(exported, str):
        context = Context.from_json(exported, **where)
    else:
        context = Context.from_dict(exported, **where)
    save_context(context)
    return context


def save_replies(
    participant: Participant | str, replies: list[Reply], *, client_prefix: str | None = None
) -> list[Message]:
    """Store validated replies as messages of the bot participant, in order.

    ``participant``: the bot participant with its conversation (as the worker has it), or its
    id. A reply already stored under its client id (a delivery run again) is not stored twice:
    ``save_message`` answers a resent client id with the stored message, and a reply with files
    is looked up first, so that its files are not stored again."""
    if not isinstance(participant, Participant):
        participant = Participant.objects.select_related("conversation").get(pk=participant)
    chat = Chat(participant.conversation)
    saved: list[Message] = []
    for index, reply in enumerate(replies):
        client_id = f"{client_prefix}-{index}" if client_prefix else None
        if client_id is not None and reply.files:
            existing = Message.objects.filter(sender=participant, client_id=client_id).first()
            if existing is not None:
                saved.append(existing)
                continue
        attachment_ids = [str(_store_file(chat, participant, reply, f).pk) for f in reply.files]
        message = chat.save_message(participant, _message_data(reply, client_id, attachment_ids))
        if message.approval == Message.Approval.PENDING and getattr(message, "created", False):
            outbox.notify_pending(message)
        saved.append(message)
    return saved


def _message_data(reply: Reply, client_id: str | None, attachment_ids: list[str]) -> dict[str, Any]:
    """A reply as ``Chat.save_message`` takes a participant's message."""
    return {
        "client_id": client_id,
        "kind": reply.kind,
        "text": reply.text,
        "data": reply.data,
        "attachments": attachment_ids,
        "quoted_message_id": reply.quote,
    }


def _store_file(chat: Chat, participant: Participant, reply: Reply, source) -> Attachment:
    try:
        content = source.read()
    except OSError as error:
        raise ReplyError(f"cannot read {source.path}: {error.strerror}") from None
    attachment = store_upload(chat, participant, SimpleUploadedFile(source.name, content), voice=reply.kind == "voice")
    if reply.kind in ("image", "audio", "video") and attachment.kind != reply.kind:
        attachment.file.delete(save=False)
        attachment.delete()
        raise ReplyError(f"an {reply.kind} reply needs {reply.kind} content; {source.name!r} is {attachment.mime}")
    return attachment


def send_proactive(bot, replies: list[Reply], conversation_id: str) -> list[Message]:
    """A bot speaks on its own (no delivery): as its participant in ``conversation_id``."""
    if not conversation_id:
        raise ValueError("this bot has no conversation yet; pass conversation_id")
    if str(conversation_id) == str(bot.conversation_id) and bot.participant_id:
        participant_id = bot.participant_id
    else:
        participant = Participant.objects.filter(
            conversation_id=uuid.UUID(str(conversation_id)),
            kind=Participant.Kind.BOT,
            bot_name=bot.name,
            left_at__isnull=True,
        ).first()
        if participant is None:
            raise ValueError(f"bot {bot.name!r} is not in conversation {conversation_id}")
        participant_id = str(participant.pk)
    return save_replies(participant_id, replies)
