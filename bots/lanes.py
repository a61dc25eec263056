"""Lanes: one worker at a time per bot participant, its deliveries claimed in ``id`` order.

A lane is a lease in ``BotLane``: while ``lease_until`` is in the future only ``owner`` claims
the participant's deliveries. The worker keeps its lease's end in memory, so a delivery that
follows another costs one statement (``claim_next``), and an idle lane one more
(``release_if_idle``); renewing and taking the lease happen only when needed (bench/: the echo
round trip was ~30 ORM statements per reply, each ~0.5-1 ms of Python on the machines here).

Every statement here is built once and runs in autocommit: each one is atomic on its own,
and none needs another's lock (the lease, not a row lock, is what makes the lane exclusive).
The same SQL runs on SQLite (3.35+, for ``RETURNING``) and PostgreSQL (prepared there once per
connection: ``conversations.rows.hot_cursor``).

On PostgreSQL a lane is taken and its deliveries claimed, each with what it needs, by one
statement (``take_and_claim``, ``claim_or_release_on_loop``) whose commit does not wait for the WAL to
reach the disk (``synchronous_commit`` off for that transaction: ~0.2-0.5 ms less per claim
here, bench/). Only a crash of the database server itself can lose such a commit, and then
the delivery is pending again with one attempt fewer counted, its lease gone: it runs again,
as at-least-once allows. The turn's commit, synchronous, flushes the claim with it.

Synchronous ORM code; the worker calls it from threads.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import cache
from typing import NamedTuple

from django.db import IntegrityError, connection
from django.db.models import Q
from django.utils import timezone

from chatroom.postgresql import loop as on_loop
from conversations.models import Conversation, Participant
from conversations.rows import Columns, column, hot_cursor

from . import conf
from .models import BotContext, BotDelivery, BotLane

Status = BotDelivery.Status

_LANE = BotLane._meta.db_table
_DELIVERY = BotDelivery._meta.db_table


def _col(model, name: str) -> str:
    return model._meta.get_field(name).column


class _SQL:
    """The lane statements, with column names from the models."""

    def __init__(self) -> None:
        lane_pk, owner, until = _col(BotLane, "participant"), _col(BotLane, "owner"), _col(BotLane, "lease_until")
        d_pk, d_part, d_status = _col(BotDelivery, "id"), _col(BotDelivery, "participant"), _col(BotDelivery, "status")
        available, attempts = _col(BotDelivery, "available_at"), _col(BotDelivery, "attempts")
        columns = ", ".join(f.column for f in BotDelivery._meta.concrete_fields)
        self.delivery = Columns(BotDelivery)  # a claimed row (``RETURNING {columns}``) read back
        # The oldest pending delivery of a participant: the only one that may run next.
        pending, running = Status.PENDING.value, Status.RUNNING.value  # plain words: no quoting needed
        oldest = f"SELECT MIN({d_pk}) FROM {_DELIVERY} WHERE {d_part} = %s AND {d_status} = '{pending}'"
        # The lane's row is created by its first take (an upsert: a bot's first delivery in a
        # room took ~2 ms more with a get_or_create); taken, it says whether the last holder
        # left deliveries running (one round trip less than a SELECT after it).
        self.take = (
            f"INSERT INTO {_LANE} ({lane_pk}, {owner}, {until}) VALUES (%s, %s, %s)"
            f" ON CONFLICT ({lane_pk}) DO UPDATE SET {owner} = excluded.{owner}, {until} = excluded.{until}"
            f" WHERE {_LANE}.{owner} = excluded.{owner} OR {_LANE}.{until} IS NULL OR {_LANE}.{until} < %s"
            f" RETURNING EXISTS (SELECT 1 FROM {_DELIVERY} WHERE {d_part} = %s AND {d_status} = '{running}')"
        )
        self.renew = f"UPDATE {_LANE} SET {until} = %s WHERE {lane_pk} = %s AND {owner} = %s AND {until} >= %s"
        self.claim = (
            f"UPDATE {_DELIVERY} SET {d_status} = '{running}', {attempts} = {attempts} + 1,"
            f" {_col(BotDelivery, 'started_at')} = %s, {_col(BotDelivery, 'worker')} = %s"
            f" WHERE {d_pk} = ({oldest}) AND {available} <= %s RETURNING {columns}"
        )
        # Released only if the next delivery is not runnable now (none, or waiting for a retry):
        # one statement, so a delivery committed meanwhile either is seen here or finds the lane
        # free (on PostgreSQL the taker's UPDATE waits for this row lock, then sees it released).
        self.release_if_idle = (
            f"UPDATE {_LANE} SET {owner} = '', {until} = NULL WHERE {lane_pk} = %s AND {owner} = %s"
            f" AND NOT EXISTS (SELECT 1 FROM {_DELIVERY} WHERE {d_pk} = ({oldest}) AND {available} <= %s)"
        )
        # PostgreSQL: take, claim (unless the last holder left deliveries running) and read the
        # participant, its conversation and its Context, in one statement (take_and_claim).
        participant = Participant._meta.db_table
        self.read = Columns(BotDelivery, Participant, Conversation, BotContext)
        claimed = ", ".join(f"claimed.{f.column}" for f in BotDelivery._meta.concrete_fields)
        what_it_needs = (
            f" LEFT JOIN {participant} ON {column(Participant, 'id')} = claimed.{d_part}"
            f" LEFT JOIN {Conversation._meta.db_table}"
            f" ON {column(Conversation, 'id')} = {column(Participant, 'conversation')}"
            f" LEFT JOIN {BotContext._meta.db_table}"
            f" ON {column(BotContext, 'participant')} = {column(Participant, 'id')}"
            f" AND {column(BotContext, 'updated_at')} IS DISTINCT FROM %s"
        )
        # The Context is read only if it is not the one the worker kept from its last turn
        # (the parameter above: its updated_at, or NULL), and a last column says it was.
        kept_current = (
            f"EXISTS (SELECT 1 FROM {BotContext._meta.db_table} AS kept"
            f" WHERE {column(BotContext, 'participant', 'kept')} = claimed.{d_part}"
            f" AND {column(BotContext, 'updated_at', 'kept')} = %s)"
        )
        # Their commit does not wait for the WAL's flush (see the module): the statement sets
        # synchronous_commit for its own transaction only.
        lazily = " CROSS JOIN (SELECT set_config('synchronous_commit', 'off', true)) AS lazily"
        needs = Columns(Participant, Conversation, BotContext).sql
        self.take_and_claim = (
            f"WITH lane(stale) AS ({self.take}),"
            f" claimed AS ({self.claim.removesuffix(f' RETURNING {columns}')}"
            f" AND EXISTS (SELECT 1 FROM lane WHERE NOT lane.stale) RETURNING {columns})"
            f" SELECT lane.stale, {claimed}, {needs}, {kept_current}"
            f" FROM lane LEFT JOIN claimed ON TRUE{what_it_needs}{lazily}"
        )
        # PostgreSQL: claim_next, read with what the delivery needs, or, where nothing was
        # claimed, release_if_idle: one statement, one row saying which (neither: ask again).
        self.claim_or_release = (
            f"WITH claimed AS ({self.claim}),"
            f" released AS ({self.release_if_idle} AND NOT EXISTS (SELECT 1 FROM claimed) RETURNING 1)"
            f" SELECT EXISTS (SELECT 1 FROM released), {claimed}, {needs}, {kept_current}"
            f" FROM (SELECT 1) AS one LEFT JOIN claimed ON TRUE{what_it_needs}{lazily}"
        )


@cache
def _sql() -> _SQL:
    return _SQL()


def _pk(participant_id) -> object:
    return Participant._meta.pk.get_db_prep_value(participant_id, connection)


def _at(moment: datetime) -> object:
    return connection.ops.adapt_datetimefield_value(moment)


def _execute(sql: str, params: list) -> int:
    with hot_cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def take(participant_id: str, owner: str, seconds: float) -> datetime | None:
    """Take the lane if it is free, expired or already ours; return the lease's end, or None
    if another worker holds it (or the participant is gone). Deliveries its last holder left
    running go back to pending (or fail after ``max_attempts``): whoever held the lane before
    us is not running them."""
    now = timezone.now()
    until = now + timedelta(seconds=seconds)
    pk = _pk(participant_id)
    try:
        with hot_cursor() as cursor:
            cursor.execute(_sql().take, [pk, owner[:100], _at(until), _at(now), pk])
            row = cursor.fetchone()
    except IntegrityError:  # the participant was deleted
        return None
    if row is None:
        return None
    if row[0]:
        _recover_stale(participant_id, now)
    return until


class Taken(NamedTuple):
    """A lane just taken: the lease's end, the delivery claimed (None: none runnable, or the
    last holder's deliveries were recovered first), and, when read with it, the claimed
    delivery's participant (with its conversation) and stored Context row. ``kept_current``:
    the stored Context is the one the caller kept (its ``updated_at`` was passed as ``kept``),
    so its row was not read (None in ``read``)."""

    until: datetime
    item: BotDelivery | None
    read: tuple[Participant | None, BotContext | None] | None = None
    kept_current: bool = False


def take_and_claim(participant_id: str, owner: str, seconds: float, kept: datetime | None = None) -> Taken | None:
    """``take``, then ``claim_next`` if taken; None if not taken. On PostgreSQL one statement
    that also reads what the delivery needs (``Taken.read``; the Context only if its
    ``updated_at`` is not ``kept``): a lane is taken for most deliveries of a bot that answers
    people, so this is two round trips fewer on the way to its reply (bench/: the echo round
    trip)."""
    if connection.vendor != "postgresql":
        until = take(participant_id, owner, seconds)
        return None if until is None else Taken(until, claim_next(participant_id, owner))
    now, until, params = _take_and_claim_params(participant_id, owner, seconds, kept)
    try:
        with hot_cursor() as cursor:
            cursor.execute(_sql().take_and_claim, params)
            row = cursor.fetchone()
    except IntegrityError:  # the participant was deleted
        return None
    if row is None:
        return None
    stale, *values = row
    if stale:
        _recover_stale(participant_id, now)
        return Taken(until, None)
    return _read(until, values) or Taken(until, None)


async def take_and_claim_on_loop(
    participant_id: str, owner: str, seconds: float, kept: datetime | None = None
) -> Taken | None:
    """``take_and_claim``'s common outcome on the event loop's own connection
    (``chatroom.postgresql.loop``): the lane taken and a delivery claimed, read with what it
    needs. None for any other outcome (not taken, nothing to run, deliveries its last holder
    left running, an error): the caller then takes the thread's way, which tells them apart
    and recovers. (bench/: each database call of a lane was two thread hops, ~0.4 ms each after
    an idle moment, on the echo's way.)"""
    _, until, params = _take_and_claim_params(participant_id, owner, seconds, kept)
    row = await on_loop.fetchone(_sql().take_and_claim, params)
    if row is None or row[0]:
        return None
    return _read(until, row[1:])


async def claim_or_release_on_loop(
    participant_id: str, owner: str, until: datetime, kept: datetime | None = None
) -> Taken | bool | None:
    """For a lane we hold, on the event loop's own connection: ``claim_next``, read with what
    the delivery needs (as ``take_and_claim``), or, if nothing can run now, ``release_if_idle``,
    by one statement. A ``Taken``; True: the lane was given up; None: neither (a delivery
    became runnable meanwhile, an error), the thread's way then decides."""
    now, pk, name = _at(timezone.now()), _pk(participant_id), owner[:100]
    version = None if kept is None else _at(kept)
    row = await on_loop.fetchone(_sql().claim_or_release, [now, name, pk, now, pk, name, pk, now, version, version])
    if row is None:
        return None
    return True if row[0] else _read(until, row[1:])


def _take_and_claim_params(
    participant_id: str, owner: str, seconds: float, kept: datetime | None
) -> tuple[datetime, datetime, list]:
    """The time now, the lease's end, and ``take_and_claim``'s parameters (both ways run it)."""
    now = timezone.now()
    until = now + timedelta(seconds=seconds)
    pk, at, name = _pk(participant_id), _at(now), owner[:100]
    version = None if kept is None else _at(kept)
    return now, until, [pk, name, _at(until), at, pk, at, name, pk, at, version, version]


def _read(until: datetime, values) -> Taken | None:
    *values, kept_current = values
    item, participant, conversation, context = _sql().read.instances(values)
    if item is None:
        return None
    if participant is not None:
        participant.conversation = conversation
    return Taken(until, item, (participant, context), bool(kept_current))


def _recover_stale(participant_id: str, now: datetime) -> None:
    stale = BotDelivery.objects.filter(participant_id=participant_id, status=Status.RUNNING)
    stale.filter(attempts__gte=conf.max_attempts()).update(
        status=Status.FAILED, finished_at=now, last_error="the worker stopped while running it; no tries left"
    )
    stale.update(status=Status.PENDING, last_error="the worker stopped while running it; tried again")


def renew(participant_id: str, owner: str, seconds: float) -> datetime | None:
    """Extend a lease we still hold; None if it has expired (another worker may have it now)."""
    now = timezone.now()
    until = now + timedelta(seconds=seconds)
    params = [_at(until), _pk(participant_id), owner[:100], _at(now)]
    return until if _execute(_sql().renew, params) else None


def claim_next(participant_id: str, owner: str) -> BotDelivery | None:
    """Mark the oldest pending delivery running and return it; None if there is none or it
    waits for its retry time (it blocks the ones after it: order before speed). Only the
    lane's holder may call this."""
    now = _at(timezone.now())
    sql = _sql()
    with hot_cursor() as cursor:  # prepared: every delivery of a busy lane runs it
        cursor.execute(sql.claim, [now, owner[:100], _pk(participant_id), now])
        row = cursor.fetchone()
    return None if row is None else sql.delivery.instances(row)[0]


def release_if_idle(participant_id: str, owner: str) -> bool:
    """Give the lane up unless a delivery can run now; False: claim again."""
    pk = _pk(participant_id)
    params = [pk, owner[:100], pk, _at(timezone.now())]
    return bool(_execute(_sql().release_if_idle, params))


def release(participant_id: str, owner: str) -> None:
    """Give the lane up whatever waits (a stopping or failing worker); a sweep finds the rest."""
    BotLane.objects.filter(participant_id=participant_id, owner=owner[:100]).update(owner="", lease_until=None)


def extend(participant_id: str, owner: str, seconds: float) -> None:
    """A bot with a longer timeout than the default keeps its lease as long."""
    BotLane.objects.filter(participant_id=participant_id, owner=owner[:100]).update(
        lease_until=timezone.now() + timedelta(seconds=seconds)
    )


def to_sweep(limit: int = 1000) -> list[str]:
    """Participants with work and no live lease: lost wake-ups, dead workers, retries now due."""
    now = timezone.now()
    busy = BotLane.objects.filter(lease_until__gt=now).values("participant_id")
    rows = (
        BotDelivery.objects.filter(Q(status=Status.PENDING, available_at__lte=now) | Q(status=Status.RUNNING))
        .exclude(participant_id__in=busy)
        .values_list("participant_id", flat=True)
        .distinct()[:limit]
    )
    return [str(pk) for pk in rows]
