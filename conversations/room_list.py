"""A room's list of people (``protocol.participant_to_dict`` of each, with ``online``) as JSON
text, for the ``welcome`` of every socket that connects and the ``participants`` frame of a
membership change.

On PostgreSQL the server writes each person's JSON (one statement, prepared once): building
100 model instances, their dicts and their JSON in Python cost ~1 ms of daphne's CPU per
connect in a room of 100 (bench/: the connect rate). Only the ``online`` flag, which comes from
the presence store, is added in Python, as text. Timestamps are written as Python's
``isoformat`` writes them (6 digits of fraction, none when it is zero), so the text reads as the
same values the rest of the API gives (``tests/test_sender_state.py`` compares the two ways).
Elsewhere (SQLite) the list is built in Python.
"""

from __future__ import annotations

from functools import cache

from django.db import connection

from . import protocol, room_bots
from .models import Participant
from .rows import column, hot_cursor

_BOT = Participant.Kind.BOT.value


def _col(name: str) -> str:
    """A participant's column, as the statement names its table (``p``)."""
    return column(Participant, name, "p")


def _timestamp(name: str) -> str:
    """SQL for a timestamp column as ``datetime.isoformat`` gives it in UTC, or NULL."""
    column = _col(name)
    utc = f"({column} AT TIME ZONE 'UTC')"
    return (
        f"CASE WHEN {column} IS NULL THEN NULL"
        f" WHEN CAST(EXTRACT(MICROSECONDS FROM {column}) AS bigint) %% 1000000 = 0"
        f""" THEN to_char({utc}, 'YYYY-MM-DD"T"HH24:MI:SS"+00:00"')"""
        f""" ELSE to_char({utc}, 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"') END"""
    )


@cache
def _statement(vendor: str) -> str:
    entry = ", ".join(
        [
            f"'id', {_col('id')}",
            f"'name', {_col('name')}",
            f"'kind', {_col('kind')}",
            f"'role', {_col('role')}",
            f"'bot', NULLIF({_col('bot_name')}, '')",
            f"'joined_at', {_timestamp('joined_at')}",
            f"'left_at', {_timestamp('left_at')}",
            f"'muted_until', {_timestamp('muted_until')}",
            f"'banned', {_col('banned')}",
            f"'last_read_seq', {_col('last_read_seq')}",
        ]
    )
    where = room_bots.from_where(bots_only=False, alias="p")
    return f"SELECT CAST({_col('id')} AS text), {_col('kind')}, CAST(json_build_object({entry}) AS text){where}"


def json_text(conversation_id, online: frozenset[str] | set[str]) -> str:
    """Everyone in the room (not left, not banned), oldest first, as a JSON array; bots are
    always online, people while one of their sockets is (``online``: their ids)."""
    if connection.vendor != "postgresql":
        return protocol.dumps(
            [
                protocol.participant_to_dict(p, online=p.is_bot or str(p.pk) in online)
                for p in room_bots.people(conversation_id)
            ]
        )
    with hot_cursor() as cursor:
        cursor.execute(
            _statement(connection.vendor), [Participant._meta.pk.get_db_prep_value(conversation_id, connection)]
        )
        rows = cursor.fetchall()
    return (
        "["
        + ",".join(
            entry[:-1] + (',"online":true}' if kind == _BOT or pid in online else ',"online":false}')
            for pid, kind, entry in rows
        )
        + "]"
    )
