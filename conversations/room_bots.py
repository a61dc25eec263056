"""A room's active bots, read for every message to a room with bots (its bot deliveries).

Built by the ORM the query cost ~0.4 ms of Python per message on the machines here (bench/);
its SQL never changes, so it is written once and its rows are converted as the ORM would
(``conversations/rows.py``), in the model's order (``joined_at``).
"""

from __future__ import annotations

from functools import cache

from django.db import connection

from .models import Participant
from .rows import Columns, column, hot_cursor


@cache
def _statement(vendor: str) -> tuple[Columns, str]:
    columns = Columns(Participant)
    sql = (
        f"SELECT {columns.sql} FROM {Participant._meta.db_table}"
        f" WHERE {column(Participant, 'conversation')} = %s AND {column(Participant, 'kind')} = %s"
        f" AND {column(Participant, 'left_at')} IS NULL AND NOT {column(Participant, 'banned')}"
        f" ORDER BY {column(Participant, 'joined_at')}, {column(Participant, 'id')}"
    )
    return columns, sql


def active(conversation_id) -> list[Participant]:
    """The bots of a conversation that have not left and are not banned, oldest first."""
    columns, sql = _statement(connection.vendor)
    params = [Participant._meta.pk.get_db_prep_value(conversation_id, connection), Participant.Kind.BOT]
    with hot_cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return [columns.instances(row)[0] for row in rows]
