"""What a socket reads when it connects, by statements written once (``conversations/rows.py``).

A connect read the conversation, then the participant with its conversation again, then the
newest seq, and each connect or disconnect rebuilt the room's ``participants`` frame
(``room_bots.listed`` now, for the socket that connects): four queries the ORM compiled afresh every time, about half of
daphne's Python time while sockets connect (bench/: the connect rate). Their SQL never
changes; here it is written once, prepared where the database can, and its rows are
converted exactly as the ORM would convert them.
"""

from __future__ import annotations

import uuid
from functools import cache

from django.db import connection

from .models import Conversation, Participant
from .rows import Columns, column, hot_cursor


@cache
def _participant_statement(vendor: str) -> tuple[Columns, str]:
    columns = Columns(Participant, Conversation)
    sql = (
        f"SELECT {columns.sql} FROM {Participant._meta.db_table} JOIN {Conversation._meta.db_table}"
        f" ON {column(Conversation, 'id')} = {column(Participant, 'conversation')}"
        f" WHERE {column(Participant, 'id')} = %s"
    )
    return columns, sql


@cache
def _seq_statement(vendor: str) -> str:
    table, pk = Conversation._meta.db_table, column(Conversation, "id")
    return f"SELECT {column(Conversation, 'next_seq')} FROM {table} WHERE {pk} = %s"


def participant(participant_id: uuid.UUID | str) -> Participant | None:
    """A participant with its conversation (``select_related``), or None."""
    columns, sql = _participant_statement(connection.vendor)
    pk = Participant._meta.pk.get_db_prep_value(participant_id, connection)
    with hot_cursor() as cursor:
        cursor.execute(sql, [pk])
        row = cursor.fetchone()
    if row is None:
        return None
    found, conversation = columns.instances(row)
    found.conversation = conversation
    return found


def newest_seq(conversation_id: uuid.UUID | str) -> int:
    """The seq of a conversation's newest message (0 for none); ``Conversation.DoesNotExist``
    if it is gone."""
    with hot_cursor() as cursor:
        cursor.execute(
            _seq_statement(connection.vendor), [Conversation._meta.pk.get_db_prep_value(conversation_id, connection)]
        )
        row = cursor.fetchone()
    if row is None:
        raise Conversation.DoesNotExist(f"no conversation {conversation_id}")
    return row[0] - 1
