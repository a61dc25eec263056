"""Moderation of a conversation: the part of the ``Chat`` door that staff, moderator
participants and the manager bot use (``class Chat(ModerationMixin)``).

Every action is one method that checks the actor, writes the change and its
``ModerationAction`` audit row in one transaction, and sends its events after commit. The
admin, the socket's ``moderate`` frame and bots all call these same methods, so an action has
one meaning and one record whoever does it. See docs/moderation.md.

An actor is either a staff ``User`` (who needs the Django permission the action names in
``PERMISSIONS``) or a ``Participant`` of this conversation with the moderator or owner role
(a bot included: the manager bot approves through here). A participant may only act on
participants of a lower role; staff may act on anyone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from . import events, protocol
from .auth import SESSION_KEY
from .errors import Banned, ConversationEnded, Forbidden, InvalidInput, NotFound, NotParticipant
from .models import Conversation, Message, ModerationAction, Participant, Report

Action = ModerationAction.Action

#: The Django permission a staff user needs for each action (the "Moderators" group has them).
PERMISSIONS: dict[str, str] = {
    Action.HIDE: "conversations.change_message",
    Action.UNHIDE: "conversations.change_message",
    Action.APPROVE: "conversations.change_message",
    Action.REJECT: "conversations.change_message",
    Action.MUTE: "conversations.change_participant",
    Action.UNMUTE: "conversations.change_participant",
    Action.KICK: "conversations.change_participant",
    Action.BAN: "conversations.change_participant",
    Action.UNBAN: "conversations.change_participant",
    Action.END: "conversations.change_conversation",
    Action.SETTINGS: "conversations.change_conversation",
    Action.RESOLVE_REPORT: "conversations.change_report",
    Action.DISMISS_REPORT: "conversations.change_report",
}

#: Close code for the sockets of a kicked or banned participant (as for "not a participant").
CLOSE_REMOVED = 4403
MAX_REASON = 1000
RANK = {Participant.Role.MEMBER: 0, Participant.Role.MODERATOR: 1, Participant.Role.OWNER: 2}

# Socket ``moderate`` actions -> (what the target is, method name).
SOCKET_ACTIONS: dict[str, tuple[str | None, str]] = {
    Action.HIDE: ("message", "hide_message"),
    Action.UNHIDE: ("message", "unhide_message"),
    Action.APPROVE: ("message", "approve_message"),
    Action.REJECT: ("message", "reject_message"),
    Action.MUTE: ("participant", "mute"),
    Action.UNMUTE: ("participant", "unmute"),
    Action.KICK: ("participant", "kick"),
    Action.BAN: ("participant", "ban"),
    Action.UNBAN: ("participant", "unban"),
    Action.END: (None, "end_conversation"),
    Action.SETTINGS: (None, "change_settings"),
}


@dataclass(frozen=True)
class Actor:
    """Who acts, resolved and checked: exactly one of ``user`` and ``participant``."""

    name: str
    user: Any = None
    participant: Participant | None = None

    @property
    def rank(self) -> int:
        """Staff outrank everyone in a room."""
        return RANK[self.participant.role] if self.participant is not None else len(RANK)


def clean_reason(reason: str | None) -> str:
    reason = (reason or "").strip()
    if len(reason) > MAX_REASON:
        raise InvalidInput(f"a reason is at most {MAX_REASON} characters", code="reason_too_long")
    return reason


def describe_message(message: Message) -> str:
    sender = message.sender.name if message.sender_id else "system"
    number = f"#{message.seq}" if message.seq is not None else "(no seq)"
    return f"message {number} by {sender}: {message.text[:60]}"[:200]


class ModerationMixin:
    """Moderation methods of ``Chat`` (which supplies ``conversation``, ``leave``, ``end``, ...)."""

    conversation: Conversation

    # ---- messages -------------------------------------------------------------------------

    def hide_message(self, actor, message: Message | str, reason: str = "") -> ModerationAction | None:
        """Hide a visible message: it keeps its seq, clients drop it (``message.deleted``)."""
        who, reason = self._actor(actor, Action.HIDE), clean_reason(reason)
        message = self._message(message)
        if message.kind == Message.Kind.SYSTEM:
            raise InvalidInput("system messages cannot be hidden", code="system_message")
        with transaction.atomic():
            if not Message.objects.filter(pk=message.pk, hidden=False, seq__isnull=False).update(hidden=True):
                return None
            message.hidden = True
            record = self._record(who, Action.HIDE, reason, message=message)
            frame = {"type": "message.deleted", "id": str(message.pk), "seq": message.seq}
            transaction.on_commit(lambda: events.send_frame(message.conversation_id, frame))
        return record

    def unhide_message(self, actor, message: Message | str, reason: str = "") -> ModerationAction | None:
        """Show a hidden message again (``message.updated`` with its content)."""
        who, reason = self._actor(actor, Action.UNHIDE), clean_reason(reason)
        message = self._message(message)
        with transaction.atomic():
            if not Message.objects.filter(pk=message.pk, hidden=True).update(hidden=False):
                return None
            message.hidden = False
            record = self._record(who, Action.UNHIDE, reason, message=message)
            if message.seq is not None:
                transaction.on_commit(lambda: events.message_updated(message))
        return record

    def approve_message(self, actor, message: Message | str, reason: str = "") -> ModerationAction | None:
        """Let a pending message in: it takes the next seq now, so every client sees it appear
        as ``message.new`` in seq order (and bots get it like any other message)."""
        who, reason = self._actor(actor, Action.APPROVE), clean_reason(reason)
        message = self._message(message)
        with transaction.atomic():
            locked = Message.objects.select_for_update().filter(pk=message.pk).first()
            if locked is None or locked.approval != Message.Approval.PENDING:
                return None
            seq = self._allocate_seq()  # locks the conversation; refuses if it has ended
            Message.objects.filter(pk=message.pk).update(seq=seq, approval=Message.Approval.APPROVED)
            message.seq, message.approval = seq, Message.Approval.APPROVED
            record = self._record(who, Action.APPROVE, reason, message=message)
            transaction.on_commit(lambda: self._fan_out(message))
        return record

    def reject_message(self, actor, message: Message | str, reason: str = "") -> ModerationAction | None:
        """Refuse a pending message: it never gets a seq; only its sender hears about it."""
        who, reason = self._actor(actor, Action.REJECT), clean_reason(reason)
        message = self._message(message)
        with transaction.atomic():
            if not Message.objects.filter(pk=message.pk, approval=Message.Approval.PENDING).update(
                approval=Message.Approval.REJECTED
            ):
                return None
            message.approval = Message.Approval.REJECTED
            record = self._record(who, Action.REJECT, reason, message=message)
            frame = {"type": "message.updated", "message": protocol.message_to_dict(message)}
            transaction.on_commit(lambda: events.send_to_participant(message.conversation_id, message.sender_id, frame))
        return record

    # ---- participants ---------------------------------------------------------------------

    def mute(self, actor, participant: Participant | str, until: datetime, reason: str = "") -> ModerationAction:
        """Refuse the participant's messages until ``until`` (their sends get ``error`` "muted")."""
        who, reason = self._actor(actor, Action.MUTE), clean_reason(reason)
        target = self._target(who, participant)
        if not isinstance(until, datetime) or until <= timezone.now():
            raise InvalidInput("a mute needs an 'until' in the future", code="invalid_until")
        with transaction.atomic():
            Participant.objects.filter(pk=target.pk).update(muted_until=until)
            target.muted_until = until
            record = self._record(who, Action.MUTE, reason, participant=target, data={"until": until.isoformat()})
            self._participants_changed()
        return record

    def unmute(self, actor, participant: Participant | str, reason: str = "") -> ModerationAction | None:
        who, reason = self._actor(actor, Action.UNMUTE), clean_reason(reason)
        target = self._target(who, participant)
        with transaction.atomic():
            if not Participant.objects.filter(pk=target.pk, muted_until__gt=timezone.now()).update(muted_until=None):
                return None
            target.muted_until = None
            record = self._record(who, Action.UNMUTE, reason, participant=target)
            self._participants_changed()
        return record

    def kick(self, actor, participant: Participant | str, reason: str = "") -> ModerationAction | None:
        """Remove someone from the room: a system message (event "kicked"), their sockets close
        with 4403. They may join again by link as a new participant (a ban stops that)."""
        who, reason = self._actor(actor, Action.KICK), clean_reason(reason)
        target = self._target(who, participant)
        with transaction.atomic():
            if self.leave(target, event="kicked", reason=reason) is None:
                return None
            record = self._record(who, Action.KICK, reason, participant=target)
            self._close_sockets(target, "you were removed from this conversation")
        return record

    def ban(self, actor, participant: Participant | str, reason: str = "") -> ModerationAction | None:
        """Remove someone for good: their token, user and browser session cannot come back."""
        who, reason = self._actor(actor, Action.BAN), clean_reason(reason)
        target = self._target(who, participant)
        with transaction.atomic():
            if not Participant.objects.filter(pk=target.pk, banned=False).update(banned=True):
                return None
            target.banned = True
            if target.left_at is None:
                self.leave(target, event="banned", reason=reason)
            else:
                self._participants_changed()
            record = self._record(who, Action.BAN, reason, participant=target)
            self._close_sockets(target, "you are banned from this conversation")
        return record

    def unban(self, actor, participant: Participant | str, reason: str = "") -> ModerationAction | None:
        """Lift a ban; the person may join again by link (as a new participant)."""
        who, reason = self._actor(actor, Action.UNBAN), clean_reason(reason)
        target = self._target(who, participant)
        with transaction.atomic():
            if not Participant.objects.filter(pk=target.pk, banned=True).update(banned=False):
                return None
            target.banned = False
            return self._record(who, Action.UNBAN, reason, participant=target)

    def check_not_banned(self, session) -> None:
        """Refuse a join from a browser whose session holds a banned participant of this room."""
        if session is None:
            return
        pid = (session.get(SESSION_KEY) or {}).get(str(self.conversation.pk))
        if pid and Participant.objects.filter(pk=pid, conversation_id=self.conversation.pk, banned=True).exists():
            raise Banned("you are banned from this conversation")

    # ---- the conversation -----------------------------------------------------------------

    def end_conversation(self, actor, reason: str = "") -> ModerationAction | None:
        """End the room (system message, ``conversation.ended``, read-only from then on)."""
        who, reason = self._actor(actor, Action.END), clean_reason(reason)
        with transaction.atomic():
            if self.end(by=who.participant, reason=reason) is None:
                return None
            return self._record(who, Action.END, reason)

    def change_settings(
        self, actor, *, premoderation: str | None = None, join_policy: str | None = None, reason: str = ""
    ) -> ModerationAction | None:
        """Change pre-moderation and join policy; clients get ``conversation.updated``.

        Messages already pending stay pending when pre-moderation is turned off: someone
        approves or rejects them."""
        who, reason = self._actor(actor, Action.SETTINGS), clean_reason(reason)
        wanted = {"premoderation": premoderation, "join_policy": join_policy}
        choices = {"premoderation": Conversation.Premoderation.values, "join_policy": Conversation.JoinPolicy.values}
        for field, value in wanted.items():
            if value is not None and value not in choices[field]:
                raise InvalidInput(f"{field} must be one of {', '.join(choices[field])}", code="invalid_field")
        with transaction.atomic():
            conv = Conversation.objects.select_for_update().get(pk=self.conversation.pk)
            if conv.status != Conversation.Status.OPEN:
                raise ConversationEnded("this conversation has ended")
            before = {f: getattr(conv, f) for f in wanted}
            after = {f: v if v is not None else before[f] for f, v in wanted.items()}
            if after == before:
                self.conversation = conv
                return None
            Conversation.objects.filter(pk=conv.pk).update(**after)
            for field, value in after.items():
                setattr(conv, field, value)
            self.conversation = conv
            changed = {f: {"before": before[f], "after": after[f]} for f in wanted if before[f] != after[f]}
            record = self._record(who, Action.SETTINGS, reason, data=changed)
            frame = {"type": "conversation.updated", "conversation": protocol.conversation_to_dict(conv)}
            transaction.on_commit(lambda: events.send_frame(conv.pk, frame))
        return record

    # ---- reports --------------------------------------------------------------------------

    def report_message(self, participant: Participant, message_id: str, reason: str = "") -> Report:
        """A participant flags a message they can see; reporting it again returns the same
        report (``created`` False). Staff see it in the admin's report queue."""
        self._check_member_of_conversation(participant)
        reason = clean_reason(reason)
        fresh = self._refresh_participant(participant)
        if fresh.banned:
            raise Banned("you are banned from this conversation")
        if fresh.left_at is not None:
            raise NotParticipant("you have left this conversation", code="left")
        try:
            message = Message.objects.get(pk=message_id, conversation_id=self.conversation.pk, seq__isnull=False)
        except (Message.DoesNotExist, ValueError, ValidationError):
            raise NotFound("no such message in this conversation") from None
        report, created = Report.objects.get_or_create(
            reporter=fresh, message=message, defaults={"conversation_id": self.conversation.pk, "reason": reason}
        )
        report.created = created
        return report

    def resolve_report(
        self, actor, report: Report, *, dismiss: bool = False, reason: str = ""
    ) -> ModerationAction | None:
        """Close an open report: resolved (acted on) or dismissed (nothing wrong)."""
        action = Action.DISMISS_REPORT if dismiss else Action.RESOLVE_REPORT
        who, reason = self._actor(actor, action), clean_reason(reason)
        if report.conversation_id != self.conversation.pk:
            raise NotFound("no such report in this conversation")
        status = Report.Status.DISMISSED if dismiss else Report.Status.RESOLVED
        with transaction.atomic():
            if not Report.objects.filter(pk=report.pk, status=Report.Status.OPEN).update(
                status=status,
                resolved_at=timezone.now(),
                resolved_by=who.user,
                resolved_by_participant=who.participant,
            ):
                return None
            report.status = status
            return self._record(who, action, reason, message=report.message, report=report)

    # ---- from the socket ------------------------------------------------------------------

    def moderate(
        self,
        actor: Participant,
        action: str,
        target: str | None = None,
        *,
        reason: str = "",
        until: datetime | None = None,
        premoderation: str | None = None,
        join_policy: str | None = None,
    ) -> ModerationAction | None:
        """One ``moderate`` frame: dispatch to the method of ``action`` (same checks, same log)."""
        if action not in SOCKET_ACTIONS:
            raise InvalidInput(f"unknown moderation action {action!r}", code="unknown_action")
        # Refuse a member before telling them anything about the target.
        self._actor(actor, action)
        kind, method_name = SOCKET_ACTIONS[action]
        method = getattr(self, method_name)
        if kind is None:
            if action == Action.SETTINGS:
                return method(actor, premoderation=premoderation, join_policy=join_policy, reason=reason)
            return method(actor, reason=reason)
        if not target:
            raise InvalidInput(f"{action} needs a 'target' ({kind} id)", code="missing_field")
        if action == Action.MUTE:
            if until is None:
                raise InvalidInput("mute needs 'until' (ISO 8601)", code="missing_field")
            return method(actor, target, until, reason=reason)
        return method(actor, target, reason=reason)

    # ---- internals ------------------------------------------------------------------------

    def _actor(self, actor, action: str) -> Actor:
        """Check that ``actor`` may do ``action`` here; raise Forbidden otherwise."""
        if isinstance(actor, Participant):
            fresh = Participant.objects.filter(pk=actor.pk).first()
            if fresh is None or fresh.conversation_id != self.conversation.pk or not fresh.is_active:
                raise Forbidden("not a participant of this conversation")
            if fresh.role not in (Participant.Role.MODERATOR, Participant.Role.OWNER):
                raise Forbidden("only moderators and owners of this conversation can moderate")
            return Actor(name=fresh.name, participant=fresh)
        user = actor
        if user is None or not getattr(user, "is_authenticated", False) or not user.is_active or not user.is_staff:
            raise Forbidden("only staff users and room moderators can moderate")
        if not user.has_perm(PERMISSIONS[action]):
            raise Forbidden(f"{action} needs the permission {PERMISSIONS[action]}")
        return Actor(name=user.get_username(), user=user)

    def _target(self, who: Actor, participant: Participant | str) -> Participant:
        """The participant acted on, fresh; a participant actor only acts below their role."""
        pk = participant.pk if isinstance(participant, Participant) else participant
        target = self.participant_for(pk)
        if who.participant is not None and (target.pk == who.participant.pk or RANK[target.role] >= who.rank):
            raise Forbidden("you can only moderate participants with a lower role than yours")
        return target

    def _message(self, message: Message | str) -> Message:
        pk = message.pk if isinstance(message, Message) else message
        try:
            return Message.objects.select_related("sender").get(pk=pk, conversation_id=self.conversation.pk)
        except (Message.DoesNotExist, ValueError, ValidationError):
            raise NotFound("no such message in this conversation") from None

    def _close_sockets(self, participant: Participant, reason: str) -> None:
        conversation_id, pk = participant.conversation_id, participant.pk
        transaction.on_commit(lambda: events.close_participant(conversation_id, pk, CLOSE_REMOVED, reason))

    def _record(
        self,
        who: Actor,
        action: str,
        reason: str,
        *,
        message: Message | None = None,
        participant: Participant | None = None,
        report: Report | None = None,
        data: dict[str, Any] | None = None,
    ) -> ModerationAction:
        if participant is not None:
            target = f"{participant.name} ({participant.kind})"
        elif message is not None:
            target = describe_message(message)
        else:
            target = f"conversation {self.conversation.name}"
        return ModerationAction.objects.create(
            conversation_id=self.conversation.pk,
            actor_user=who.user,
            actor_participant=who.participant,
            actor_name=who.name[:150],
            action=action,
            target_message=message,
            target_participant=participant,
            target_report=report,
            target_repr=target[:200],
            reason=reason,
            data=data or {},
        )
