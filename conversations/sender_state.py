"""A sender's state for one send, read by one precompiled statement.

``Chat.save_message`` must see mute, ban, leave and the room's settings as they are now (the
admin or a moderator in another process may have changed them), the sender's message count in
the rate window, and whether the room has an active bot. Built by the ORM (``select_related``
with two annotations) the query cost ~0.9 ms of CPU per message, on the one database thread
that every socket of a process shares (bench/); its SQL is the same for every send, so it is
built once per database vendor and the rows are converted exactly as the ORM would
(``conversations/rows.py``).
"""

from __future__ import annotations

from datetime import datetime
from functools import cache

from django.db import connection

from .models import Conversation, Message, Participant
from .rows import Columns
from .rows import column as _column

# Both refer to the outer participant row by its table name.
RECENT_MESSAGES_SQL = (
    f"SELECT COUNT(*) FROM {Message._meta.db_table} m"
    f" WHERE m.{Message._meta.get_field('sender').column} = {_column(Participant, 'id')}"
    f" AND m.{Message._meta.get_field('created_at').column} >= %s"
)
# Bots other than the sender: a bot's reply in a room where it is the only bot needs no bot
# lookup after commit either (bench/: the echo round trip).
HAS_ACTIVE_BOTS_SQL = (
    f"EXISTS (SELECT 1 FROM {Participant._meta.db_table} b"
    f" WHERE b.{Participant._meta.get_field('conversation').column} = {_column(Participant, 'conversation')}"
    f" AND b.{Participant._meta.pk.column} <> {_column(Participant, 'id')}"
    f" AND b.{Participant._meta.get_field('kind').column} = %s"
    f" AND b.{Participant._meta.get_field('left_at').column} IS NULL"
    f" AND NOT b.{Participant._meta.get_field('banned').column})"
)


class _Statement:
    def __init__(self, vendor: str) -> None:
        self.vendor = vendor
        self.columns = Columns(Participant, Conversation)
        self.sql = (
            f"SELECT {self.columns.sql}, ({RECENT_MESSAGES_SQL}), {HAS_ACTIVE_BOTS_SQL}"
            f" FROM {Participant._meta.db_table} INNER JOIN {Conversation._meta.db_table}"
            f" ON {_column(Conversation, 'id')} = {_column(Participant, 'conversation')}"
            f" WHERE {_column(Participant, 'id')} = %s"
        )


@cache
def _statement(vendor: str) -> _Statement:
    return _Statement(vendor)


def load(participant_id, rate_since: datetime) -> Participant | None:
    """The participant with its conversation, ``recent_messages`` (sent since ``rate_since``)
    and ``has_active_bots`` (active bots in the room other than this participant), or None if
    there is no such participant."""
    statement = _statement(connection.vendor)
    params = [
        connection.ops.adapt_datetimefield_value(rate_since),
        Participant.Kind.BOT,
        Participant._meta.pk.get_db_prep_value(participant_id, connection),
    ]
    with connection.cursor() as cursor:
        cursor.execute(statement.sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    *values, recent, has_bots = row
    participant, conversation = statement.columns.instances(values)
    participant.conversation = conversation
    participant.recent_messages = int(recent)
    participant.has_active_bots = bool(has_bots)
    return participant
