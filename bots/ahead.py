"""A pure bot's turn run from its wake-up, its claim made by the statement that stores it.

A delivery's usual way to a reply is three statements in a row: the person's message (which
writes the delivery), the lane's take with the delivery's claim (which reads the Context),
and the turn (the reply, the Context, the delivery done). Each wakes a process that may have
idled (bench/: the echo round trip). Here the middle one goes:

* a wake-up carries the delivery it is for (``outbox.ahead_of``: its id, type, hop, payload);
* a worker keeps, per bot participant, the Context its last turn stored and when (``Kept``);
* a bot that says it is pure (``Bot.pure``: its replies and its Context are all it does) runs
  at once on the kept Context, and its turn's statement takes the lane and claims the
  delivery too (``Claim.also``). It stores nothing unless, when it runs:

  - the lane is free, expired or this worker's (its row locked for the statement: a worker
    taking it meanwhile waits, then finds it taken);
  - the stored Context is the kept one (its row locked, its ``updated_at`` the kept one);
  - the delivery is pending, runnable now, the participant's oldest pending, and none of
    the participant's deliveries is running (its row locked).

Otherwise nothing is written, and the worker takes the usual way, where the bot runs again on
the stored Context: only a pure bot may have run for nothing. The claim counts the attempt
with the turn. A worker that dies during such a run leaves the delivery pending with that
attempt uncounted; only the wake-up of a new delivery runs ahead, so the sweep that picks it
up again takes the usual way, which counts each attempt (``CHAT_BOT_MAX_ATTEMPTS``).

PostgreSQL only (the turn's statement, ``delivery.save_turn_on_loop``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from django.db import connection

from conversations import send_sql
from conversations.models import Participant

from .context import Context
from .models import BotContext, BotDelivery, BotLane


@dataclass
class Kept:
    """A bot participant as its last turn left it: the participant (with its conversation),
    the Context that turn stored, and the stored row's ``updated_at``."""

    participant: Participant
    context: Context
    version: datetime


@dataclass
class Claim:
    """What a turn run ahead claims with its statement: the lane for ``owner`` until
    ``until``, on the Context stored at ``version``."""

    owner: str
    until: datetime
    version: datetime

    def also(self, participant_id: str, delivery_id: int, now: datetime) -> send_sql.Also:
        """The checks before the reply's seq is taken, and the lane kept after it is stored
        (the delivery's end records the claim: ``delivery.context_and_finish_with_reply``)."""
        pk = Participant._meta.pk.get_db_prep_value(participant_id, connection)
        at, until, version = (connection.ops.adapt_datetimefield_value(t) for t in (now, self.until, self.version))
        owner = self.owner[:100]
        before, only_if, kept = _sql()
        return send_sql.Also(
            kept,
            [owner, until, pk],
            before,
            [pk, owner, at, pk, version, delivery_id, at, pk, pk],
            only_if,
        )


def delivery_from_wake(participant_id: str, wake: Any) -> BotDelivery | None:
    """The delivery a wake-up carries (``outbox.ahead_of``), unsaved; None if it carries none
    or not one of this participant's."""
    if not isinstance(wake, dict):
        return None
    pk, kind, payload, hop = wake.get("id"), wake.get("type"), wake.get("payload"), wake.get("hop")
    if not isinstance(pk, int) or kind not in BotDelivery.Type.values or not isinstance(payload, dict):
        return None
    if payload.get("participant_id") != participant_id or not isinstance(hop, int):
        return None
    item = BotDelivery(
        id=pk,
        participant_id=participant_id,
        conversation_id=payload.get("conversation_id"),
        bot_name=str(wake.get("bot") or ""),
        type=kind,
        payload=payload,
        hop=hop,
    )
    item._state.adding = False
    return item


@cache
def _sql() -> tuple[str, str, str]:
    """The checks (CTEs before the seq is taken), the condition on them, and the lane kept."""
    quote = connection.ops.quote_name
    lane, context, delivery = BotLane._meta, BotContext._meta, BotDelivery._meta

    def col(meta, name: str) -> str:
        return quote(meta.get_field(name).column)

    lane_pk, owner, until = col(lane, "participant"), col(lane, "owner"), col(lane, "lease_until")
    d_pk, d_part, status = col(delivery, "id"), col(delivery, "participant"), col(delivery, "status")
    pending, running = BotDelivery.Status.PENDING.value, BotDelivery.Status.RUNNING.value
    # Each check runs only if the one before it passed (an uncorrelated EXISTS is evaluated
    # first, once), so a row is locked only where the lane is to be had.
    before = (
        f"ahead_lane AS (SELECT 1 FROM {lane.db_table} WHERE {lane_pk} = %s"
        f" AND ({owner} = %s OR {until} IS NULL OR {until} < %s) FOR UPDATE),"
        f" ahead_context AS (SELECT 1 FROM {context.db_table} WHERE {col(context, 'participant')} = %s"
        f" AND {col(context, 'updated_at')} = %s AND EXISTS (SELECT 1 FROM ahead_lane) FOR UPDATE),"
        f" ahead_delivery AS (SELECT 1 FROM {delivery.db_table} WHERE {d_pk} = %s AND {status} = '{pending}'"
        f" AND {col(delivery, 'available_at')} <= %s AND EXISTS (SELECT 1 FROM ahead_context)"
        f" AND {d_pk} = (SELECT MIN({d_pk}) FROM {delivery.db_table} WHERE {d_part} = %s AND {status} = '{pending}')"
        f" AND NOT EXISTS (SELECT 1 FROM {delivery.db_table} WHERE {d_part} = %s AND {status} = '{running}')"
        " FOR UPDATE)"
    )
    kept = (
        f"ahead_lane_kept AS (UPDATE {lane.db_table} SET {owner} = %s, {until} = %s"
        f" WHERE {lane_pk} = %s AND EXISTS (SELECT 1 FROM stored))"
    )
    return before, "EXISTS (SELECT 1 FROM ahead_delivery)", kept
