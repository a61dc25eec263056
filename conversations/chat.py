"""The Chat controller: the single door for every change of a conversation.

A human over WebSocket, a bot, the admin and the HTTP API all call these methods. Each one
writes the database in one transaction and sends its events after commit (the Zulip
``do_*`` pattern), so nobody ever sees an event for a row that was rolled back.

``Chat`` holds no state beyond the conversation row: any process can build one from an id
(``Chat.get_chat``), and the database is the only source of truth.
"""

from __future__ import annotations

import logging
import re
import secrets
import uuid
from collections.abc import Iterable, Mapping
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from typing import Any

from channels.db import database_sync_to_async
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from chatroom.postgresql import loop as on_loop

from . import bot_directory, events, protocol, room_bots, send_sql, sender_state
from .errors import (
    Banned,
    ChatError,
    ConversationEnded,
    ConversationFull,
    Forbidden,
    InvalidInput,
    Muted,
    NotFound,
    NotParticipant,
    RateLimited,
    TextTooLong,
    UnknownBot,
)
from .limits import ChatLimits, get_limits
from .models import Attachment, Conversation, Message, Participant
from .moderation import ModerationMixin
from .tokens import new_token

logger = logging.getLogger(__name__)

MAX_NICKNAME = 64
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")

# Kinds a participant may send with free-form ``data``; attachment kinds come from the files.
HUMAN_KINDS = {Message.Kind.TEXT, Message.Kind.LOCATION}
BOT_KINDS = set(Message.Kind.values) - {Message.Kind.SYSTEM}
ATTACHMENT_KINDS = {"file", "image", "audio", "video", "voice"}


#: Set (``sends_without_savepoints``) by a caller that retries its whole transaction when a
#: send in it conflicts (a bot's turn): its sends take no savepoint, two round trips each.
_WITHOUT_SAVEPOINTS: ContextVar[bool] = ContextVar("sends_without_savepoints", default=False)


@contextmanager
def sends_without_savepoints():
    """Sends nested in the caller's transaction take no savepoint. A resent client id then
    raises the ``IntegrityError`` (the transaction is aborted) instead of being answered with
    the stored message: the caller rolls back and runs the transaction again without this."""
    token = _WITHOUT_SAVEPOINTS.set(True)
    try:
        yield
    finally:
        _WITHOUT_SAVEPOINTS.reset(token)


#: Set (``stores_in_one_statement``) by a caller whose own writes go into the statement that
#: stores the next message (a bot's turn: its reply, its Context, its delivery done).
_ONE_STATEMENT: ContextVar[send_sql.Also | None] = ContextVar("stores_in_one_statement", default=None)


class NotStoredInOneStatement(Exception):
    """``stores_in_one_statement``: the message could not be stored with the caller's writes
    by one statement; nothing was written. The caller stores it the ordinary way."""


@contextmanager
def stores_in_one_statement(also: send_sql.Also):
    """The next ``save_message`` (PostgreSQL, no attachments) stores its message and runs
    ``also`` in one statement, in autocommit: one round trip where a transaction around the
    message and the caller's writes takes four. Any other outcome (refused, premoderated, a
    resent client id, another database) raises ``NotStoredInOneStatement`` with nothing
    written, before any error of the message's own."""
    token = _ONE_STATEMENT.set(also)
    try:
        yield also
    finally:
        _ONE_STATEMENT.reset(token)


def _savepoint():
    """Nested in a caller's transaction a failed INSERT must not abort it: a savepoint."""
    if connection.in_atomic_block and not _WITHOUT_SAVEPOINTS.get():
        return transaction.atomic()
    return nullcontext()


def clean_nickname(nickname: str | None) -> str:
    """Trim and strip control characters; an empty nickname gets a generated one."""
    name = _CONTROL_CHARS.sub("", (nickname or "")).strip()[:MAX_NICKNAME]
    return name or f"Guest-{secrets.token_hex(2)}"


class Chat(ModerationMixin):
    """Controller of one conversation. Cheap to build; its caches, the room's bots as its last
    send found them and the sender as it was then, are checked against the database at every
    send (``_room_bots_for``, ``_planned_deliveries``).

    Moderation (hide, approve, mute, kick, ban, reports, ...) lives in ``moderation.py``."""

    def __init__(self, conversation: Conversation, limits: ChatLimits | None = None) -> None:
        self.conversation = conversation
        self.limits = limits or get_limits()
        self._room_bots: tuple[tuple[Any, str], list[Participant]] | None = None
        self._last_sender: Participant | None = None  # as the last send on the loop read it

    # ---- lookup and creation ---------------------------------------------------------------

    @classmethod
    def get_chat(cls, conversation_id: uuid.UUID | str) -> Chat | None:
        """The controller for a conversation, or None for an unknown id (any process)."""
        try:
            pk = conversation_id if isinstance(conversation_id, uuid.UUID) else uuid.UUID(str(conversation_id))
        except ValueError:
            return None
        conversation = Conversation.objects.filter(pk=pk).first()
        return cls(conversation) if conversation is not None else None

    @classmethod
    def create(
        cls, name: str, nickname: str | None, bots: Iterable[str] = (), *, user=None
    ) -> tuple[Chat, list[Participant]]:
        """Create a conversation with its creator and bots; see ``on_create_conversation``."""
        name = _CONTROL_CHARS.sub("", name or "").strip()[:200] or "Conversation"
        with transaction.atomic():
            conversation = Conversation.objects.create(name=name, created_by=user)
            participants = cls.on_create_conversation(nickname, list(bots), conversation, user=user)
        return cls(conversation), participants

    @classmethod
    def on_create_conversation(
        cls, nickname: str | None, bots: Iterable[str], conversation: Conversation, *, user=None
    ) -> list[Participant]:
        """Fill a new conversation: a "created" message, the human owner, then one participant
        per bot (the configured manager bot included), each followed by its "joined" message.

        Returns the participants, human first; each carries its one-time ``token``.
        """
        from django.conf import settings

        installed = bot_directory.installed_bots()
        bot_names = list(dict.fromkeys(bots))  # keep order, drop repeats
        manager = getattr(settings, "CHAT_BOT_MANAGER", None)
        if manager and manager not in bot_names:
            bot_names.append(manager)
        unknown = [b for b in bot_names if b not in installed]
        if unknown:
            raise UnknownBot(f"unknown bot(s): {', '.join(unknown)}; see GET /api/bots")
        chat = cls(conversation)
        if 1 + len(bot_names) > chat.limits["MAX_PARTICIPANTS"]:
            raise ConversationFull(f"at most {chat.limits['MAX_PARTICIPANTS']} participants")
        with transaction.atomic():
            human = chat._new_participant(
                clean_nickname(nickname), Participant.Kind.HUMAN, user=user, role=Participant.Role.OWNER, announce=False
            )
            chat._system_message("created", human, f"{human.name} created the conversation")
            chat.generate_participant_joined_system_message(human.id)
            participants = [human]
            for bot_name in bot_names:
                role = Participant.Role.MODERATOR if bot_name == manager else Participant.Role.MEMBER
                bot = chat._new_participant(
                    bot_name, Participant.Kind.BOT, bot_name=bot_name, role=role, announce=False
                )
                chat.generate_participant_joined_system_message(bot.id)
                participants.append(bot)
        return participants

    # ---- membership -----------------------------------------------------------------------

    def join(self, nickname: str | None, *, user=None, session=None) -> Participant:
        """Add a human by link; the returned participant carries its one-time ``token``.

        A banned person stays out: by their user, or by the browser ``session`` that held
        the banned participant (see ``moderation.check_not_banned``)."""
        if self.conversation.join_policy == Conversation.JoinPolicy.INVITE:
            raise Forbidden("this conversation is by invitation only", code="invite_only")
        self.check_not_banned(session)
        if (
            user is not None
            and user.is_authenticated
            and self.conversation.participants.filter(user=user, banned=True).exists()
        ):
            raise Banned("you are banned from this conversation")
        with transaction.atomic():
            participant = self._new_participant(clean_nickname(nickname), Participant.Kind.HUMAN, user=user)
            self._participants_changed()
        return participant

    def add_bot(self, bot_name: str) -> Participant:
        """Bring an installed bot into the conversation."""
        if bot_name not in bot_directory.installed_bots():
            raise UnknownBot(f"unknown bot: {bot_name}")
        with transaction.atomic():
            participant = self._new_participant(bot_name, Participant.Kind.BOT, bot_name=bot_name)
            self._participants_changed()
        return participant

    def generate_participant_joined_system_message(self, participant_id: uuid.UUID) -> Message:
        participant = Participant.objects.get(pk=participant_id, conversation=self.conversation)
        message = self._system_message("joined", participant, f"{participant.name} joined")
        self._status_to_bots("joined", participant, exclude=participant)
        return message

    def leave(self, participant: Participant, *, event: str = "left", reason: str = "") -> Message | None:
        """Mark a participant as gone (also used for kicks). Leaving twice does nothing."""
        self._check_member_of_conversation(participant)
        with transaction.atomic():
            updated = Participant.objects.filter(pk=participant.pk, left_at__isnull=True).update(left_at=timezone.now())
            if not updated:
                return None
            participant.refresh_from_db()
            text = f"{participant.name} left" if event == "left" else f"{participant.name} was removed"
            message = self._system_message(event, participant, text, extra={"reason": reason} if reason else None)
            self._status_to_bots(event, participant, exclude=participant)
            self._participants_changed()
        return message

    def end(self, *, by: Participant | None = None, reason: str = "") -> Message | None:
        """End the conversation: an "ended" message, then read-only. Ending twice does nothing."""
        with transaction.atomic():
            conv = Conversation.objects.select_for_update().get(pk=self.conversation.pk)
            if conv.status == Conversation.Status.ENDED:
                self.conversation = conv
                return None
            message = self._system_message(
                "ended", by, "The conversation ended", extra={"reason": reason} if reason else None
            )
            now = timezone.now()
            Conversation.objects.filter(pk=conv.pk).update(status=Conversation.Status.ENDED, ended_at=now)
            self.conversation.status, self.conversation.ended_at = Conversation.Status.ENDED, now
            self._status_to_bots("ended", by)
            conv_id = conv.pk
            transaction.on_commit(lambda: events.send_frame(conv_id, {"type": "conversation.ended"}))
        return message

    # ---- messages -------------------------------------------------------------------------

    def save_message(self, participant: Participant, message_data: Mapping[str, Any]) -> Message:
        """Validate, number and store one message from a participant, then fan it out.

        Idempotent on ``client_id``: a resend returns the stored message (``created`` False)
        and sends nothing again. Refusals raise a typed ``ChatError``.
        """
        also = _ONE_STATEMENT.get()
        if also is not None:
            return self._save_in_one_statement(participant, message_data, also)
        self._check_member_of_conversation(participant)
        data = self._validate_message_data(participant, message_data)
        client_id = data["client_id"]
        try:
            if self._one_statement_send(data):
                # The sender's state and the insert in one statement, if the state lets it
                # through (bench/).
                message = self._new_numbered(participant, data)
                with _savepoint():
                    fresh, seq = send_sql.state_and_insert(
                        participant.pk, self._rate_since(), timezone.now(), self.limits["RATE_LIMIT_MESSAGES"], message
                    )
                fresh = self._refreshed(fresh)
                if seq is not None:
                    return self._numbered(message, fresh, seq)
            else:
                # The participant, its conversation and its rate count in one query (bench/).
                fresh = self._refresh_participant(participant, count_since=self._rate_since())
            # Not stored yet: say why, or store it the way its case needs.
            self._check_can_send(fresh)
            self._check_rate(fresh)
            if self._one_statement_insert(fresh, data):
                with _savepoint():
                    return self._insert_numbered(fresh, data)
            with transaction.atomic():
                return self._insert_message(fresh, data)
        except (ChatError, IntegrityError) as error:
            if isinstance(error, IntegrityError) and connection.in_atomic_block and _WITHOUT_SAVEPOINTS.get():
                raise  # the transaction is aborted: its owner runs it again (sends_without_savepoints)
            # The idempotency lookup runs only here, not before every insert (bench/): a resend
            # of a stored client_id fails the unique (sender, client_id) INSERT, and the
            # atomic block rolls back with it the seq it took (no gap); a concurrent resend
            # waits on that index until the first commits. A resend is answered with the
            # stored message whatever would refuse a new one now (muted, left, rate, ended).
            existing = self._existing(participant, client_id) if client_id is not None else None
            if existing is None:
                raise
            return existing

    def _save_in_one_statement(
        self, participant: Participant, message_data: Mapping[str, Any], also: send_sql.Also
    ) -> Message:
        """``save_message`` under ``stores_in_one_statement``: stored with ``also`` by one
        statement in autocommit, or ``NotStoredInOneStatement`` with nothing written."""
        try:
            self._check_member_of_conversation(participant)
            data = self._validate_message_data(participant, message_data)
        except ChatError as error:
            raise NotStoredInOneStatement from error
        if not self._one_statement_send(data) or connection.in_atomic_block:
            raise NotStoredInOneStatement
        message = self._new_numbered(participant, data)
        try:
            fresh, seq = send_sql.state_and_insert(
                participant.pk, self._rate_since(), timezone.now(), self.limits["RATE_LIMIT_MESSAGES"], message, also
            )
        except IntegrityError as error:  # a resent client id: the ordinary way answers it
            raise NotStoredInOneStatement from error
        if fresh is None or seq is None:
            raise NotStoredInOneStatement
        return self._numbered(message, self._refreshed(fresh), seq)

    async def save_message_on_loop(
        self, participant: Participant, message_data: Mapping[str, Any], *, also: send_sql.Also | None = None
    ) -> Message | None:
        """``save_message``'s common case without leaving the event loop: on PostgreSQL a
        message without attachments or quote, checked, numbered and stored by one statement on
        the loop's own connection (``chatroom.postgresql.loop``), then fanned out; only a room
        with bots takes the database thread, for their deliveries. None when that does not
        apply or stored nothing (refused, premoderated, a resent client id, a database error):
        the caller then calls ``save_message``, which stores or answers as it always has.
        ``also``: the caller's writes, done by the same statement if the message is stored (as
        under ``stores_in_one_statement``: a bot's turn, ``bots.delivery.save_turn_on_loop``)."""
        if not on_loop.available() or not isinstance(message_data, Mapping) or _ONE_STATEMENT.get() is not None:
            return None
        if message_data.get("attachments") or message_data.get("quoted_message_id") is not None:
            return None  # their checks read the database
        if participant.conversation_id != self.conversation.pk:
            return None
        try:
            data = self._validate_message_data(participant, message_data)
        except ChatError:
            return None
        message = self._new_numbered(participant, data)
        self._as_stored(message, [])
        planned = self._planned_deliveries(participant, message)
        joined = send_sql.Also.joined(planned.also if planned is not None else None, also)
        sql, params = send_sql.state_and_insert_statement(
            participant.pk, self._rate_since(), timezone.now(), self.limits["RATE_LIMIT_MESSAGES"], message, joined
        )
        row = await on_loop.fetchone(sql, params)
        extra = 0 if joined is None else len(joined.result)
        fresh, seq = send_sql.state_and_seq(row, extra)
        if fresh is None or seq is None:
            return None
        message.seq, message.sender = seq, self._refreshed(fresh)
        message._state.adding, message._state.db = False, connection.alias
        self._last_sender = fresh
        no_bots, bot_ids = self._bots_known(fresh, seq)
        # Committed: the statement ran in autocommit. The room's bots and the sender's name were
        # the planned ones: the statement wrote the deliveries (the same test, in its
        # condition). Their wake-ups leave before the frame is built and published: a bot's
        # reply waits on its worker, the frame on nothing else (bench/: the echo).
        written = planned is not None and bot_ids == planned.bot_ids and fresh.name == planned.sender_name
        if written:
            planner = events.bot_planner()
            planner.numbered(planned.deliveries, row[len(row) - extra] if planned.also else None, seq)
            planner.written(planned.deliveries)
        events.message_created(message)
        if not written and not no_bots:
            await database_sync_to_async(self._to_room_bots)(message, bot_ids)
        return message

    def _planned_deliveries(self, participant: Participant, message: Message) -> _Plan | None:
        """The deliveries of ``message`` to the room's bots as this Chat saw them at its last
        send, planned before it is stored, for its statement to write (and the ``Also`` that
        writes them where the room's bots, the seq and the sender's name are the ones planned
        with: the outbox row commits with the message, and no thread hop or second round trip
        comes before the bot's wake-up, bench/). None when there is nothing to plan with (no
        bots seen yet, none but the sender) or a delivery needs the database to decide."""
        planner, cached = events.bot_planner(), self._room_bots
        if planner is None or cached is None or cached[0][0] != participant.pk or not cached[0][1]:
            return None
        key, bots = cached[0][1], cached[1]
        last = self._last_sender  # the sender as the last send read it (the socket's may be older)
        if last is not None and last.pk == participant.pk:
            message.sender = last
        deliveries = []
        for bot in bots:
            if bot.pk == participant.pk:
                continue
            payload = self._bot_payload(message, bot)
            try:
                delivery = planner.plan(
                    payload, bot=bot, message=message, room_bots=bots, stored_with_it=True, no_queries=True
                )
            except planner.NeedsDatabase:
                return None
            if delivery is not None:
                deliveries.append(delivery)
        name = message.sender.name
        if not deliveries:
            return _Plan(key, name, deliveries, None)
        sql, params = planner.insert_sql(deliveries, "(SELECT seq FROM stored)", _planned_condition(connection.vendor))
        ids = planner.inserted_ids_sql("delivered")
        return _Plan(key, name, deliveries, send_sql.Also(f"delivered AS ({sql})", [*params, key, name], result=(ids,)))

    def deliver_message_to_bot(
        self,
        message: Message,
        bot: Participant,
        *,
        extra: Mapping[str, Any] | None = None,
        room_bots: list[Participant] | None = None,
    ) -> None:
        """Hand a message to one bot participant over the channel layer (the bot worker acts)."""
        payload = self._bot_payload(message, bot)
        if extra:
            payload.update(extra)
        events.send_to_bots(payload, bot=bot, message=message, room_bots=room_bots)

    def _bot_payload(self, message: Message, bot: Participant) -> dict[str, Any]:
        return {
            "type": "bot.message",
            "conversation_id": str(self.conversation.pk),
            "participant_id": str(bot.pk),
            "bot": bot.bot_name,
            "message": protocol.message_to_dict(message),
        }

    def deliver_status_to_bot(self, status: Mapping[str, Any], bot: Participant) -> None:
        """Hand a status event (joined, left, ended, typing, ...) to one bot participant."""
        events.send_to_bots(
            {
                "type": "bot.status",
                "conversation_id": str(self.conversation.pk),
                "participant_id": str(bot.pk),
                "bot": bot.bot_name,
                "status": dict(status),
            },
            bot=bot,
        )

    def _redirect_message(
        self, message: Message, targets: Iterable[str | Participant], field_overrides: Mapping[str, Any] | None = None
    ) -> list[Participant]:
        """Deliver one message of this conversation to chosen bots only (the manager's redirect).

        ``targets`` are bot names or bot participants of this conversation; ``field_overrides``
        replace fields of the delivered copy (e.g. ``text``). Nothing is stored.
        """
        if message.conversation_id != self.conversation.pk:
            raise InvalidInput("the message belongs to another conversation", code="wrong_conversation")
        bots = {p.bot_name: p for p in self._active_bots()}
        chosen: list[Participant] = []
        for target in targets:
            name = target.bot_name if isinstance(target, Participant) else str(target)
            if name not in bots:
                raise UnknownBot(f"no bot named {name!r} in this conversation")
            chosen.append(bots[name])
        if not chosen:
            raise InvalidInput("no target bots given", code="no_targets")
        overrides = dict(field_overrides or {})
        for bot in chosen:
            payload = {"message": {**protocol.message_to_dict(message), **overrides}, "redirected": True}
            transaction.on_commit(lambda bot=bot, payload=payload: self._send_redirect(message, bot, payload))
        return chosen

    def _send_redirect(self, message: Message, bot: Participant, payload: dict[str, Any]) -> None:
        events.send_to_bots(
            {
                "type": "bot.message",
                "conversation_id": str(self.conversation.pk),
                "participant_id": str(bot.pk),
                "bot": bot.bot_name,
                **payload,
            },
            bot=bot,
            message=message,
        )

    def mark_read(self, participant: Participant, seq: int) -> int:
        """Record that a participant has read up to ``seq`` (never moves back, never past the
        newest message); tell the room. Returns the stored read mark."""
        self._check_member_of_conversation(participant)
        if seq < 0:
            raise InvalidInput("seq must not be negative", code="invalid_field")
        # Clamp to the newest seq: a client's larger number (even past bigint) reads nothing more.
        newest = Conversation.objects.values_list("next_seq", flat=True).get(pk=self.conversation.pk) - 1
        seq = min(seq, newest)
        updated = Participant.objects.filter(pk=participant.pk, last_read_seq__lt=seq).update(last_read_seq=seq)
        if updated:
            participant.last_read_seq = seq
            events.send_frame(self.conversation.pk, {"type": "read", "participant_id": str(participant.pk), "seq": seq})
            return seq
        # Not moved: answer what is stored (the caller's object may be stale).
        participant.last_read_seq = Participant.objects.values_list("last_read_seq", flat=True).get(pk=participant.pk)
        return participant.last_read_seq

    def set_typing(self, participant: Participant, active: bool) -> None:
        """Tell the room (and its bots) that someone is typing; ``ttl`` seconds without a
        refresh and clients drop the indicator by themselves (the server also sends the end)."""
        self._check_member_of_conversation(participant)
        ttl = self.limits["TYPING_TTL"]
        events.send_frame(
            self.conversation.pk,
            {"type": "typing", "participant_id": str(participant.pk), "active": bool(active), "ttl": ttl},
        )
        status = {"event": "typing", "participant": protocol.sender_to_dict(participant), "active": bool(active)}
        for bot in self._active_bots():
            if bot.pk != participant.pk:
                self.deliver_status_to_bot(status, bot)

    def choose_option(
        self, participant: Participant, message_id: str, value: Any, client_id: str | None = None
    ) -> Message:
        """Answer an options message: the choice is a message that quotes the offer."""
        try:
            offer = Message.objects.get(pk=message_id, conversation=self.conversation, kind=Message.Kind.OPTIONS)
        except (Message.DoesNotExist, ValueError, ValidationError):
            raise InvalidInput("no options message with that id here", code="invalid_option") from None
        options = offer.data.get("options") or []
        chosen = next((o for o in options if isinstance(o, dict) and o.get("value") == value), None)
        if chosen is None:
            raise InvalidInput("that value is not one of the options", code="invalid_option")
        return self.save_message(
            participant,
            {
                "client_id": client_id,
                "text": str(chosen.get("label", value)),
                "data": {"option": {"message_id": str(offer.pk), "value": value}},
                "quoted_message_id": str(offer.pk),
            },
        )

    # ---- queries --------------------------------------------------------------------------

    def participant_for(self, participant_id: uuid.UUID | str) -> Participant:
        try:
            return self.conversation.participants.get(pk=participant_id)
        except (Participant.DoesNotExist, ValueError, ValidationError):
            raise NotFound("no such participant in this conversation") from None

    def history(self, *, after_seq: int | None = None, before_seq: int | None = None, limit: int = 50):
        """Visible messages in seq order, as (messages, has_more).

        With ``after_seq``: the oldest ``limit`` after it (catching up). Otherwise the newest
        ``limit`` before ``before_seq``, or the newest of all (opening a room, scroll-back).
        """
        limit = max(1, min(int(limit), 500))
        qs = (
            Message.objects.filter(conversation=self.conversation, seq__isnull=False)
            .select_related("sender")
            .prefetch_related("attachments")
        )
        if before_seq is not None:
            qs = qs.filter(seq__lt=before_seq)
        if after_seq is not None:
            rows = list(qs.filter(seq__gt=after_seq).order_by("seq")[: limit + 1])
            return rows[:limit], len(rows) > limit
        rows = list(qs.order_by("-seq")[: limit + 1])
        return list(reversed(rows[:limit])), len(rows) > limit

    # ---- internals ------------------------------------------------------------------------

    def _new_participant(
        self,
        name: str,
        kind: str,
        *,
        user=None,
        bot_name: str = "",
        role: str = Participant.Role.MEMBER,
        announce: bool = True,
    ) -> Participant:
        conv = Conversation.objects.select_for_update().get(pk=self.conversation.pk)
        if conv.status != Conversation.Status.OPEN:
            raise ConversationEnded("this conversation has ended")
        active = conv.participants.filter(left_at__isnull=True, banned=False).count()
        if active >= self.limits["MAX_PARTICIPANTS"]:
            raise ConversationFull(f"at most {self.limits['MAX_PARTICIPANTS']} participants")
        participant = Participant(
            conversation=conv,
            name=name,
            kind=kind,
            bot_name=bot_name,
            role=role,
            user=user if user is not None and getattr(user, "is_authenticated", False) else None,
        )
        token, participant.token_hash = new_token(participant.id)
        participant.save(force_insert=True)
        participant.token = token  # shown once, never stored
        if announce:
            self.generate_participant_joined_system_message(participant.id)
        return participant

    def _check_member_of_conversation(self, participant: Participant) -> None:
        if participant.conversation_id != self.conversation.pk:
            raise NotParticipant("not a participant of this conversation")

    def _refresh_participant(self, participant: Participant, *, count_since=None) -> Participant:
        """Mute, ban, leave and the conversation's settings may have changed in another process
        (the admin, a moderator): read them now, in one query. With ``count_since`` the same
        query counts the participant's messages since then (``recent_messages``, for the rate)."""
        if count_since is not None:
            # ``has_active_bots`` is read in the same snapshot as next_seq (see _stored: it
            # spares the bot lookup of a message to a room without bots).
            fresh = sender_state.load(participant.pk, count_since)
        else:
            fresh = Participant.objects.select_related("conversation").filter(pk=participant.pk).first()
        return self._refreshed(fresh)

    def _refreshed(self, fresh: Participant | None) -> Participant:
        if fresh is None:
            raise NotParticipant("not a participant of this conversation")
        self.conversation = fresh.conversation
        return fresh

    def _participants_changed(self) -> None:
        conversation_id = self.conversation.pk
        transaction.on_commit(lambda: events.participants_changed(conversation_id))

    def _check_can_send(self, participant: Participant) -> None:
        if participant.banned:
            raise Banned("you are banned from this conversation")
        if participant.left_at is not None:
            raise NotParticipant("you have left this conversation", code="left")
        if participant.is_muted():
            raise Muted(f"you are muted until {participant.muted_until.isoformat()}", until=participant.muted_until)

    def _rate_since(self):
        return timezone.now() - timedelta(seconds=self.limits["RATE_LIMIT_WINDOW"])

    def _check_rate(self, participant: Participant) -> None:
        window = self.limits["RATE_LIMIT_WINDOW"]
        allowed = self.limits["RATE_LIMIT_MESSAGES"]
        recent = getattr(participant, "recent_messages", None)  # counted by _refresh_participant
        if recent is None:
            recent = Message.objects.filter(sender=participant, created_at__gte=self._rate_since()).count()
        if recent >= allowed:
            raise RateLimited(f"at most {allowed} messages per {window} s; slow down")

    def _existing(self, participant: Participant, client_id: str) -> Message | None:
        message = (
            Message.objects.filter(sender=participant, client_id=client_id)
            .select_related("sender")
            .prefetch_related("attachments")
            .first()
        )
        if message is not None:
            message.created = False
        return message

    def _validate_message_data(self, participant: Participant, raw: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(raw, Mapping):
            raise InvalidInput("a message is a JSON object")
        text = raw.get("text", "") or ""
        if not isinstance(text, str):
            raise InvalidInput("text must be a string", code="invalid_text")
        if len(text) > self.limits["MAX_TEXT_LENGTH"]:
            raise TextTooLong(f"text is {len(text)} characters; the limit is {self.limits['MAX_TEXT_LENGTH']}")
        client_id = raw.get("client_id")
        if client_id is not None and (not isinstance(client_id, str) or not 0 < len(client_id) <= 64):
            raise InvalidInput("client_id must be a string of 1 to 64 characters", code="invalid_client_id")
        attachment_ids = raw.get("attachments") or []
        if not isinstance(attachment_ids, list) or not all(isinstance(a, str) for a in attachment_ids):
            raise InvalidInput("attachments must be a list of attachment ids", code="invalid_attachments")
        if len(attachment_ids) > self.limits["MAX_ATTACHMENTS_PER_MESSAGE"]:
            raise InvalidInput(
                f"at most {self.limits['MAX_ATTACHMENTS_PER_MESSAGE']} attachments per message",
                code="too_many_attachments",
            )
        try:
            attachment_ids = list(dict.fromkeys(uuid.UUID(a) for a in attachment_ids))
        except ValueError:
            raise InvalidInput("attachments must be a list of attachment ids", code="invalid_attachments") from None
        kind = raw.get("kind") or Message.Kind.TEXT
        allowed = BOT_KINDS if participant.is_bot else HUMAN_KINDS | ATTACHMENT_KINDS
        if kind not in allowed:
            raise InvalidInput(f"kind {kind!r} cannot be sent by a {participant.kind}", code="invalid_kind")
        payload = raw.get("data") or {}
        if not isinstance(payload, dict):
            raise InvalidInput("data must be a JSON object", code="invalid_data")
        if kind == Message.Kind.LOCATION:
            _check_location(payload)
        quoted = raw.get("quoted_message_id")
        quoted_id = None
        if quoted is not None:
            try:
                quoted_id = uuid.UUID(str(quoted))
            except ValueError:
                raise InvalidInput("quoted_message_id is not a message id", code="invalid_quote") from None
            if not Message.objects.filter(pk=quoted_id, conversation=self.conversation).exists():
                raise InvalidInput("the quoted message is not in this conversation", code="invalid_quote")
        if not text.strip() and not attachment_ids and not payload:
            raise InvalidInput("an empty message", code="empty_message")
        return {
            "text": text,
            "client_id": client_id,
            "attachments": attachment_ids,
            "kind": kind,
            "data": payload,
            "quoted_message_id": quoted_id,
        }

    def _needs_approval(self, participant: Participant) -> bool:
        mode = self.conversation.premoderation
        if participant.role in (Participant.Role.MODERATOR, Participant.Role.OWNER) and participant.is_bot:
            return False
        if mode == Conversation.Premoderation.ALL:
            return participant.role == Participant.Role.MEMBER
        if mode == Conversation.Premoderation.BOTS:
            return participant.is_bot
        return False

    def _one_statement_send(self, data: dict[str, Any]) -> bool:
        """On PostgreSQL a message without attachments may be checked, numbered and stored by
        one statement (``send_sql.state_and_insert``): 1 round trip instead of 2 (bench/)."""
        return connection.vendor == "postgresql" and not data["attachments"]

    def _one_statement_insert(self, participant: Participant, data: dict[str, Any]) -> bool:
        """On PostgreSQL a numbered message without attachments that the one-statement send
        did not store (its state said no, yet the checks let it through: a mute that ended
        between the two, an ended room) is taken and stored by one statement
        (``_insert_numbered``) rather than 4."""
        return self._one_statement_send(data) and not self._needs_approval(participant)

    def _new_numbered(self, participant: Participant, data: dict[str, Any]) -> Message:
        """The unsaved message of ``_insert_numbered`` and ``send_sql.state_and_insert``."""
        return Message(
            conversation_id=self.conversation.pk,
            sender=participant,
            kind=data["kind"],
            text=data["text"],
            data=data["data"],
            quoted_message_id=data["quoted_message_id"],
            client_id=data["client_id"],
            approval=Message.Approval.AUTO,
        )

    def _insert_numbered(self, participant: Participant, data: dict[str, Any]) -> Message:
        """Take the next seq and insert the message in one statement (``send_sql``)."""
        message = self._new_numbered(participant, data)
        pk = Conversation._meta.pk.get_db_prep_value(self.conversation.pk, connection)
        params = [pk, Conversation.Status.OPEN, *send_sql.message_params(message)]
        with connection.cursor() as cursor:
            cursor.execute(send_sql.numbered_insert_sql(connection.vendor), params)
            row = cursor.fetchone()
        if row is None:
            raise ConversationEnded("this conversation has ended")
        return self._numbered(message, participant, row[0])

    def _numbered(self, message: Message, participant: Participant, seq: int) -> Message:
        """``message`` as stored with ``seq`` by one statement, sent by (the fresh) ``participant``."""
        message.seq, message.sender = seq, participant
        message._state.adding, message._state.db = False, connection.alias
        return self._stored(message, participant, [], pending=False)

    def _insert_message(self, participant: Participant, data: dict[str, Any]) -> Message:
        pending = self._needs_approval(participant)
        seq = self._allocate_seq() if not pending else self._check_open()
        kind = data["kind"]
        attachments = []
        if data["attachments"]:
            attachments = list(
                Attachment.objects.select_for_update().filter(
                    pk__in=data["attachments"], uploader=participant, message__isnull=True
                )
            )
            if len(attachments) != len(data["attachments"]):
                raise InvalidInput("unknown or already used attachment", code="invalid_attachments")
            if kind == Message.Kind.TEXT:
                kind = attachments[0].kind
        message = Message.objects.create(
            conversation_id=self.conversation.pk,
            seq=seq,
            sender=participant,
            kind=kind,
            text=data["text"],
            data=data["data"],
            quoted_message_id=data["quoted_message_id"],
            client_id=data["client_id"],
            approval=Message.Approval.PENDING if pending else Message.Approval.AUTO,
        )
        if attachments:
            Attachment.objects.filter(pk__in=[a.pk for a in attachments]).update(message=message)
        return self._stored(message, participant, attachments, pending=pending)

    def _stored(self, message: Message, participant: Participant, attachments: list, *, pending: bool) -> Message:
        """A message just written: no query to serialise it, its fan-out after the commit."""
        self._as_stored(message, attachments)
        if not pending:
            no_bots, bot_ids = self._bots_known(participant, message.seq)
            transaction.on_commit(lambda: self._fan_out(message, no_bots=no_bots, bot_ids=bot_ids))
        return message

    @staticmethod
    def _as_stored(message: Message, attachments: list) -> None:
        # We know its attachments: serialising it for the fan-out needs no query (bench/).
        # (none() for no attachments: exact, and it skips building a filter, ~0.1 ms of CPU.)
        known = Attachment.objects.filter(message=message) if attachments else Attachment.objects.none()
        known._result_cache, known._prefetch_done = attachments, True
        message._prefetched_objects_cache = {"attachments": known}
        message.created = True

    @staticmethod
    def _bots_known(participant: Participant, seq: int) -> tuple[bool, str | None]:
        """What the sender's state (``sender_state``) tells of the room's bots for a message
        stored with ``seq``: (no bot to tell, the other active bots' ids or None). It tells
        only when nothing took a seq since the state was read: every join, leave, kick or ban
        takes one under the row lock that the message's seq was taken under."""
        if getattr(participant, "has_active_bots", None) is None or seq != participant.conversation.next_seq:
            return False, None
        return not participant.has_active_bots, getattr(participant, "active_bot_ids", None)

    def _check_open(self) -> None:
        status = Conversation.objects.filter(pk=self.conversation.pk).values_list("status", flat=True).first()
        if status != Conversation.Status.OPEN:
            raise ConversationEnded("this conversation has ended")

    def _allocate_seq(self) -> int:
        """Take the next seq under the conversation's row lock (held until commit), so numbers
        are gap-free and unique under any concurrency; refuse if the conversation has ended."""
        pk = Conversation._meta.pk.get_db_prep_value(self.conversation.pk, connection)
        with connection.cursor() as cursor:
            cursor.execute(send_sql.TAKE_SEQ_SQL, [pk, Conversation.Status.OPEN])
            row = cursor.fetchone()
        if row is None:
            raise ConversationEnded("this conversation has ended")
        return row[0]

    def _system_message(
        self, event: str, participant: Participant | None, text: str, extra: Mapping[str, Any] | None = None
    ) -> Message:
        data: dict[str, Any] = {"event": event}
        if participant is not None:
            data["participant"] = protocol.sender_to_dict(participant)
        if extra:
            data.update(extra)
        message = Message.objects.create(
            conversation_id=self.conversation.pk,
            seq=self._allocate_seq(),
            sender=None,
            kind=Message.Kind.SYSTEM,
            text=text,
            data=data,
        )
        message.created = True
        transaction.on_commit(lambda: events.message_created(message))
        return message

    def _active_bots(self) -> list[Participant]:
        """The room's bots that have not left and are not banned, in joining order (read for
        every message to a room with bots: by a statement built once, bench/)."""
        return room_bots.active(self.conversation.pk)

    def _room_bots_for(self, sender_id: Any, bot_ids: str | None) -> list[Participant]:
        """The room's active bots for a message of ``sender_id``: those this Chat read for its
        last message if the send's statement found the same ones (``bot_ids``: the ids of the
        active bots but the sender, sorted, as ``sender_state.ACTIVE_BOT_IDS_SQL`` makes them;
        a socket's Chat sends many messages), else read now."""
        cached = self._room_bots
        if bot_ids is not None and cached is not None and cached[0] == (sender_id, bot_ids):
            return cached[1]
        bots = self._active_bots()
        key = ",".join(sorted(str(bot.pk) for bot in bots if bot.pk != sender_id))
        self._room_bots = ((sender_id, key), bots)
        return bots

    def _fan_out(self, message: Message, *, no_bots: bool = False, bot_ids: str | None = None) -> None:
        events.message_created(message)
        if not no_bots:
            self._to_room_bots(message, bot_ids)

    def _to_room_bots(self, message: Message, bot_ids: str | None) -> None:
        """A delivery of ``message`` to each active bot of the room but its sender."""
        bots = self._room_bots_for(message.sender_id, bot_ids)
        for bot in bots:
            if bot.pk != message.sender_id:
                self.deliver_message_to_bot(message, bot, room_bots=bots)

    def _status_to_bots(
        self, event: str, participant: Participant | None, *, exclude: Participant | None = None
    ) -> None:
        status = {"event": event, "participant": protocol.sender_to_dict(participant)}

        def send() -> None:
            for bot in self._active_bots():
                if exclude is None or bot.pk != exclude.pk:
                    self.deliver_status_to_bot(status, bot)

        transaction.on_commit(send)


@cache
def _planned_condition(vendor: str) -> str:
    """Where a plan still holds in the send's statement (``state_and_insert``): the room's bot
    ids and the sender's name are the planned ones (the two parameters), and the message's seq
    is the one the state saw next (nobody joined or left in between)."""
    next_seq = sender_state.conversation_column_name(vendor, "next_seq")
    name = sender_state.participant_column_name(vendor, "name")
    return (
        "(SELECT has_active_bots FROM state) = %s"
        f" AND (SELECT seq FROM stored) = (SELECT {next_seq} FROM state) AND (SELECT {name} FROM state) = %s"
    )


@dataclass
class _Plan:
    """A message's deliveries planned before its statement (``Chat._planned_deliveries``)."""

    bot_ids: str  # the room's other active bots planned with (sender_state.ACTIVE_BOT_IDS_SQL)
    sender_name: str
    deliveries: list
    also: send_sql.Also | None  # their INSERT, None for none


def _check_location(payload: Mapping[str, Any]) -> None:
    lat, lon = payload.get("latitude"), payload.get("longitude")
    ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lat, lon))
    if not ok or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise InvalidInput(
            "a location needs numeric latitude (-90..90) and longitude (-180..180)", code="invalid_location"
        )
