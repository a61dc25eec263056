"""A room's active bots, read for every message to a room with bots (its bot deliveries), and
everyone in it, read for every socket that connects (its ``welcome``) and every change of the
room's membership (a ``participants`` frame).

Built by the ORM the query cost ~0.4 ms of Python per message on the machines here (bench/);
its SQL never changes, so it is written once and its rows are converted as the ORM would
(``conversations/rows.py``), in the model's order (``joined_at``).
"""

from __future__ import annotations

from functools import cache

from django.db import connection

from .models import Participant
from .rows import Columns, column, hot_cursor


def from_where(bots_only: bool, alias: str = "") -> str:
    """The rooms' people (or bots), oldest first: ``FROM`` to ``ORDER BY`` of the statements
    (``alias``: a name for the table, whose columns are then to be read by it)."""
    table = Participant._meta.db_table

    def col(name: str) -> str:
        return column(Participant, name, alias)

    kind = f" AND {col('kind')} = %s" if bots_only else ""
    return (
        f" FROM {table}{f' AS {alias}' if alias else ''}"
        f" WHERE {col('conversation')} = %s{kind}"
        f" AND {col('left_at')} IS NULL AND NOT {col('banned')}"
        f" ORDER BY {col('joined_at')}, {col('id')}"
    )


@cache
def _statement(vendor: str, bots_only: bool = True) -> tuple[Columns, str]:
    columns = Columns(Participant)
    return columns, f"SELECT {columns.sql}{from_where(bots_only)}"


def active(conversation_id) -> list[Participant]:
    """The bots of a conversation that have not left and are not banned, oldest first."""
    return _read(conversation_id, bots_only=True)


def people(conversation_id) -> list[Participant]:
    """Everyone in a conversation who has not left and is not banned, oldest first."""
    return _read(conversation_id, bots_only=False)


def _read(conversation_id, *, bots_only: bool) -> list[Participant]:
    columns, sql = _statement(connection.vendor, bots_only)
    params = [Participant._meta.pk.get_db_prep_value(conversation_id, connection)]
    if bots_only:
        params.append(Participant.Kind.BOT)
    with hot_cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return [columns.instances(row)[0] for row in rows]
