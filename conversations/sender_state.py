"""A sender's state for one send, read by one precompiled statement.

``Chat.save_message`` must see mute, ban, leave and the room's settings as they are now (the
admin or a moderator in another process may have changed them), the sender's message count in
the rate window, and whether the room has an active bot. Built by the ORM (``select_related``
with two annotations) the query cost ~0.9 ms of CPU per message, on the one database thread
that every socket of a process shares (bench/); its SQL is the same for every send, so it is
built once per database vendor and the rows are converted exactly as the ORM would
(``conversations/rows.py``). On PostgreSQL a common send reads it in the statement that stores
the message (``send_sql.state_and_insert``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections

from .models import Conversation, Message, Participant
from .rows import Columns, hot_cursor
from .rows import column as _column

# Both refer to the outer participant row by its table name.
RECENT_MESSAGES_SQL = (
    f"SELECT COUNT(*) FROM {Message._meta.db_table} m"
    f" WHERE m.{Message._meta.get_field('sender').column} = {_column(Participant, 'id')}"
    f" AND m.{Message._meta.get_field('created_at').column} >= %s"
)
# Bots other than the sender: a bot's reply in a room where it is the only bot needs no bot
# lookup after commit either (bench/: the echo round trip).
_OTHER_ACTIVE_BOTS = (
    f" FROM {Participant._meta.db_table} b"
    f" WHERE b.{Participant._meta.get_field('conversation').column} = {_column(Participant, 'conversation')}"
    f" AND b.{Participant._meta.pk.column} <> {_column(Participant, 'id')}"
    f" AND b.{Participant._meta.get_field('kind').column} = %s"
    f" AND b.{Participant._meta.get_field('left_at').column} IS NULL"
    f" AND NOT b.{Participant._meta.get_field('banned').column}"
)
HAS_ACTIVE_BOTS_SQL = f"EXISTS (SELECT 1{_OTHER_ACTIVE_BOTS})"
# PostgreSQL: their ids, sorted and comma-separated ('' for none), so that a sender's Chat
# holding the room's bots from its last message knows whether they are still the ones
# (``Chat._room_bots_for``: one query less per message to a room with bots, bench/).
ACTIVE_BOT_IDS_SQL = (
    f"COALESCE((SELECT string_agg(b.{Participant._meta.pk.column}::text, ','"
    f" ORDER BY b.{Participant._meta.pk.column}){_OTHER_ACTIVE_BOTS}), '')"
)


@cache
def _columns(vendor: str) -> Columns:
    """The participant's and its conversation's columns (their converters depend on the vendor)."""
    return Columns(Participant, Conversation)


@cache
def select_sql(vendor: str, extra: str = "", aliased: bool = False) -> str:
    """The state's ``SELECT`` (columns, then ``recent_messages`` and ``has_active_bots``, then
    ``extra`` columns if any; ``aliased``: the columns named by ``column_names``); its
    parameters are ``select_params``."""
    columns = _columns(vendor)
    return (
        f"SELECT {columns.aliased_sql if aliased else columns.sql}, ({RECENT_MESSAGES_SQL}) AS recent_messages,"
        f" {ACTIVE_BOT_IDS_SQL if vendor == 'postgresql' else HAS_ACTIVE_BOTS_SQL} AS has_active_bots"
        f"{', ' + extra if extra else ''}"
        f" FROM {Participant._meta.db_table} INNER JOIN {Conversation._meta.db_table}"
        f" ON {_column(Conversation, 'id')} = {_column(Participant, 'conversation')}"
        f" WHERE {_column(Participant, 'id')} = %s"
    )


def column_names(vendor: str) -> list[str]:
    """The names of the state's columns in an ``aliased`` select, in order."""
    return [*_columns(vendor).names, "recent_messages", "has_active_bots"]


def participant_column_name(vendor: str, field: str) -> str:
    """The name of a participant's column in an ``aliased`` select."""
    fields = list(Participant._meta.concrete_fields)
    return _columns(vendor).names[fields.index(Participant._meta.get_field(field))]


def conversation_column_name(vendor: str, field: str) -> str:
    """The name of the conversation's column in an ``aliased`` select."""
    fields = list(Conversation._meta.concrete_fields)
    start = len(Participant._meta.concrete_fields)
    return _columns(vendor).names[start + fields.index(Conversation._meta.get_field(field))]


def select_params(participant_id, rate_since: datetime, *extra: Any) -> list[Any]:
    """``select_sql``'s parameters; ``extra`` are those of its ``extra`` columns."""
    conn = connections[DEFAULT_DB_ALIAS]
    return [
        conn.ops.adapt_datetimefield_value(rate_since),
        Participant.Kind.BOT,
        *extra,
        Participant._meta.pk.get_db_prep_value(participant_id, conn),
    ]


def from_row(values: Sequence[Any]) -> Participant:
    """The participant of a ``select_sql`` row (without its extra columns)."""
    *values, recent, has_bots = values
    participant, conversation = _columns(connections[DEFAULT_DB_ALIAS].vendor).instances(values)
    participant.conversation = conversation
    participant.recent_messages = int(recent)
    participant.has_active_bots = bool(has_bots)
    # PostgreSQL: the ids of those bots (see ACTIVE_BOT_IDS_SQL); elsewhere unknown.
    participant.active_bot_ids = has_bots if isinstance(has_bots, str) else None
    return participant


def load(participant_id, rate_since: datetime) -> Participant | None:
    """The participant with its conversation, ``recent_messages`` (sent since ``rate_since``)
    and ``has_active_bots`` (active bots in the room other than this participant), or None if
    there is no such participant."""
    with hot_cursor() as cursor:
        cursor.execute(select_sql(connection.vendor), select_params(participant_id, rate_since))
        row = cursor.fetchone()
    return None if row is None else from_row(row)
