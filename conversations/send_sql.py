"""The statements that number and store a message.

A seq is taken by an ``UPDATE`` of the conversation's row, whose lock is held until commit:
seqs are gap-free and unique under any concurrency. On PostgreSQL the ``UPDATE`` and the
``INSERT`` run as one statement (a data-modifying ``WITH``): the lock is held exactly as by
``BEGIN``, ``UPDATE``, ``INSERT``, ``COMMIT``, and a failed ``INSERT`` (a resent client id)
rolls the seq back with it.

``state_and_insert`` goes one step further for the common send: the sender's state
(``sender_state``) is read by the same statement, and the message is stored only if that
state lets it through without a question (not banned, not left, not muted, under the rate, no
premoderation). Otherwise nothing is written, and the caller decides from the state it got
back, as it would have after reading it alone. (bench/: at light load a round trip to
PostgreSQL costs ~0.9 ms here, most of it waking the other process.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections

from . import sender_state
from .models import Conversation, Message, Participant
from .rows import column, hot_cursor


def _take_seq(condition: str = "") -> str:
    """Take the next seq of an open conversation (no row: it has ended, or ``condition`` is
    false); parameters: the conversation's id, its open status, then ``condition``'s."""
    return (
        f"UPDATE {Conversation._meta.db_table} SET next_seq = next_seq + 1"
        f" WHERE id = %s AND status = %s{condition} RETURNING next_seq - 1"
    )


TAKE_SEQ_SQL = _take_seq()


def _insert_taken() -> str:
    """Insert the message with the seq of the ``taken`` query; parameters: ``message_params``."""
    fields = Message._meta.concrete_fields
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    values = ", ".join("taken.seq" if f.attname == "seq" else "%s" for f in fields)
    return f"INSERT INTO {Message._meta.db_table} ({columns}) SELECT {values} FROM taken RETURNING seq"


@cache
def numbered_insert_sql(vendor: str) -> str:
    """The seq taken and the message inserted with it; parameters: the conversation's id, its
    open status, then ``message_params``."""
    return f"WITH taken(seq) AS ({TAKE_SEQ_SQL}) {_insert_taken()}"


def message_params(message: Message) -> list[Any]:
    """Every field of an unsaved message but ``seq``, ready for the driver, in column order."""
    conn = connections[DEFAULT_DB_ALIAS]  # once: each use of the proxy looks it up (bench/)
    return [
        field.get_db_prep_save(getattr(message, field.attname), conn)
        for field in Message._meta.concrete_fields
        if field.attname != "seq"
    ]


@dataclass
class Also:
    """More for the statement that stores a message (``state_and_insert``). ``sql`` is one or
    more CTEs (``name AS (...)``, comma-separated) that write only when the message was stored
    (each tests ``EXISTS (SELECT 1 FROM stored)``), ``params`` their parameters. ``before``
    (with ``before_params``) are CTEs read before the seq is taken, and ``only_if`` a condition
    on them (no parameters): the message is stored only where it holds (a bot's turn claimed
    by its own statement, ``bots.ahead``). ``result``: expressions the statement returns after
    the seq (``state_and_seq``'s ``extra``). One statement is atomic: the message and
    these writes commit together or not at all."""

    sql: str = ""
    params: list[Any] = field(default_factory=list)
    before: str = ""
    before_params: list[Any] = field(default_factory=list)
    only_if: str = ""
    result: tuple[str, ...] = ()

    @staticmethod
    def joined(*parts: Also | None) -> Also | None:
        """The writes of several callers in one ``Also`` (their CTEs in order); None for none."""
        present = [part for part in parts if part is not None]
        if len(present) < 2:
            return present[0] if present else None

        def each(name: str, sep: str = ", ") -> str:
            return sep.join(getattr(part, name) for part in present if getattr(part, name))

        return Also(
            each("sql"),
            [p for part in present for p in part.params],
            each("before"),
            [p for part in present for p in part.before_params],
            each("only_if", " AND "),
            tuple(r for part in present for r in part.result),
        )

    def key(self) -> tuple[str, str, str, str]:
        """What the statement's text depends on."""
        return self.sql, self.before, self.only_if, ", ".join(self.result)


@cache
def _state_and_insert_sql(vendor: str, also: tuple[str, str, str, str]) -> str:
    writes, before, only_if, result = also
    muted_until = column(Participant, "muted_until")
    may_send = (
        f"(NOT {column(Participant, 'banned')} AND {column(Participant, 'left_at')} IS NULL"
        f" AND ({muted_until} IS NULL OR {muted_until} <= %s)"
        f" AND {column(Conversation, 'premoderation')} = %s) AS may_send"
    )
    # The state is the statement's snapshot, as a read just before it would be; the UPDATE
    # sees the conversation's newest row (it waits for a concurrent writer, then rechecks).
    sender_in_room = (
        f"state.{sender_state.participant_column_name(vendor, 'conversation')} = {Conversation._meta.db_table}.id"
    )
    take = _take_seq(
        f" AND EXISTS (SELECT 1 FROM state WHERE state.may_send AND state.recent_messages < %s AND {sender_in_room})"
        + (f" AND {only_if}" if only_if else "")
    )
    # The state's columns by name (not state.*): a prepared statement's result type must not
    # change when a migration adds a column.
    state = ", ".join(f"state.{name}" for name in sender_state.column_names(vendor))
    return (
        f"WITH state AS ({sender_state.select_sql(vendor, may_send, aliased=True)}),"
        f"{' ' + before + ',' if before else ''} taken(seq) AS ({take}),"
        f" stored AS ({_insert_taken()}){', ' + writes if writes else ''}"
        f" SELECT {state}, (SELECT seq FROM stored){', ' + result if result else ''} FROM state"
    )


def state_and_insert(
    participant_id: Any, rate_since: datetime, now: datetime, allowed: int, message: Message, also: Also | None = None
) -> tuple[Participant | None, int | None]:
    """PostgreSQL only. The sender's state (as ``sender_state.load``) and, if it may send
    unasked, ``message`` stored with the next seq of its open conversation (and ``also``'s
    writes done): ``(state, seq)``. ``seq`` is None when nothing was stored (the caller finds
    out why from the state); ``state`` is None for an unknown participant. A resent client id
    raises ``IntegrityError``."""
    sql, params = state_and_insert_statement(participant_id, rate_since, now, allowed, message, also)
    with hot_cursor() as cursor:
        cursor.execute(sql, params)
        return state_and_seq(cursor.fetchone(), 0 if also is None else len(also.result))


def state_and_insert_statement(
    participant_id: Any, rate_since: datetime, now: datetime, allowed: int, message: Message, also: Also | None = None
) -> tuple[str, list[Any]]:
    """``state_and_insert``'s SQL and parameters, for a caller that runs it on a connection of
    its own (``chatroom.postgresql.loop``); its row goes to ``state_and_seq``."""
    conn = connections[DEFAULT_DB_ALIAS]
    also = also or Also()
    params = sender_state.select_params(
        participant_id, rate_since, conn.ops.adapt_datetimefield_value(now), Conversation.Premoderation.NONE
    )
    params += [
        *also.before_params,
        Conversation._meta.pk.get_db_prep_value(message.conversation_id, conn),
        Conversation.Status.OPEN,
        allowed,
        *message_params(message),
        *also.params,
    ]
    return _state_and_insert_sql(conn.vendor, also.key()), params


def state_and_seq(row: Any, extra: int = 0) -> tuple[Participant | None, int | None]:
    """``state_and_insert``'s result from its row (None: no such participant); ``extra``: the
    number of ``Also.result`` columns after the seq, left to the caller."""
    if row is None:
        return None, None
    *state, seq = row[: len(row) - extra]
    return sender_state.from_row(state), seq
