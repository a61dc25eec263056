"""The chat domain's tables.

Invariants that clients rely on are enforced by the database, not only in Python: ``seq`` is
unique per conversation, a system message has no sender and every other message has one, a
sender belongs to the message's conversation (composite foreign key on PostgreSQL, a trigger on
SQLite; see migration 0002), and ``(sender, client_id)`` is unique so a resend is idempotent.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Conversation(models.Model):
    class Status(models.TextChoices):
        OPEN = "open"
        ENDED = "ended"

    class JoinPolicy(models.TextChoices):
        LINK = "link", "anyone with the link"
        INVITE = "invite", "invited people only"

    class Premoderation(models.TextChoices):
        NONE = "none"
        BOTS = "bots", "bot messages"
        ALL = "all", "all messages"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OPEN)
    ended_at = models.DateTimeField(null=True, blank=True)
    join_policy = models.CharField(max_length=8, choices=JoinPolicy.choices, default=JoinPolicy.LINK)
    premoderation = models.CharField(max_length=8, choices=Premoderation.choices, default=Premoderation.NONE)
    # The seq the next visible message gets; incremented under the row lock in Chat.
    next_seq = models.PositiveBigIntegerField(default=1, editable=False)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.CheckConstraint(condition=Q(next_seq__gte=1), name="conversation_next_seq_positive")]

    def __str__(self) -> str:
        return self.name or str(self.id)

    @property
    def is_open(self) -> bool:
        return self.status == self.Status.OPEN


class Participant(models.Model):
    class Kind(models.TextChoices):
        HUMAN = "human"
        BOT = "bot"

    class Role(models.TextChoices):
        MEMBER = "member"
        MODERATOR = "moderator"
        OWNER = "owner"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="participants")
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.HUMAN)
    name = models.CharField(max_length=64)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="chat_participants"
    )
    # The installed bot's name (bots/ resolves it); conversations/ never imports bot code.
    bot_name = models.CharField(max_length=64, blank=True, db_index=True)
    role = models.CharField(max_length=12, choices=Role.choices, default=Role.MEMBER)
    joined_at = models.DateTimeField(default=timezone.now)
    left_at = models.DateTimeField(null=True, blank=True)
    muted_until = models.DateTimeField(null=True, blank=True)
    banned = models.BooleanField(default=False)
    # sha256 of the participant's bearer token; the token itself is shown once and never stored.
    token_hash = models.CharField(max_length=64, blank=True, editable=False)
    last_read_seq = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["joined_at"]
        constraints = [
            # Target of the composite foreign key Message(sender, conversation).
            models.UniqueConstraint(fields=["id", "conversation"], name="participant_id_conversation_unique"),
            models.CheckConstraint(
                condition=Q(kind="human", bot_name="") | (Q(kind="bot") & ~Q(bot_name="")),
                name="participant_bot_name_iff_bot",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"

    @property
    def is_bot(self) -> bool:
        return self.kind == self.Kind.BOT

    @property
    def is_active(self) -> bool:
        """In the room: joined, not left, not banned."""
        return self.left_at is None and not self.banned

    def is_muted(self, now=None) -> bool:
        return self.muted_until is not None and self.muted_until > (now or timezone.now())


class Message(models.Model):
    class Kind(models.TextChoices):
        TEXT = "text"
        MARKDOWN = "markdown"
        SYSTEM = "system"
        FILE = "file"
        IMAGE = "image"
        AUDIO = "audio"
        VIDEO = "video"
        VOICE = "voice"
        LOCATION = "location"
        CONTACT = "contact"
        POLL = "poll"
        OPTIONS = "options"
        TABLE = "table"
        CHART = "chart"

    class Approval(models.TextChoices):
        AUTO = "auto"
        PENDING = "pending"
        APPROVED = "approved"
        REJECTED = "rejected"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    # Assigned when the message becomes visible; pending and rejected messages have none, so
    # the visible stream has no gaps and an approved message appears in seq order.
    seq = models.PositiveBigIntegerField(null=True, blank=True)
    sender = models.ForeignKey(Participant, null=True, blank=True, on_delete=models.PROTECT, related_name="messages")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.TEXT)
    text = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    quoted_message = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="quoted_by"
    )
    client_id = models.CharField(max_length=64, null=True, blank=True)
    approval = models.CharField(max_length=10, choices=Approval.choices, default=Approval.AUTO)
    hidden = models.BooleanField(default=False)
    edited_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["conversation", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["conversation", "seq"], name="message_seq_unique_per_conversation"),
            models.UniqueConstraint(
                fields=["sender", "client_id"],
                condition=Q(client_id__isnull=False),
                name="message_client_id_unique_per_sender",
            ),
            models.CheckConstraint(
                condition=(Q(kind="system") & Q(sender__isnull=True)) | (~Q(kind="system") & Q(sender__isnull=False)),
                name="message_system_iff_no_sender",
            ),
            models.CheckConstraint(
                condition=Q(seq__isnull=False) | Q(approval__in=["pending", "rejected"]),
                name="message_visible_has_seq",
            ),
        ]
        indexes = [models.Index(fields=["sender", "created_at"], name="message_sender_created")]

    def __str__(self) -> str:
        return f"#{self.seq} {self.kind}: {self.text[:40]}"

    @property
    def is_visible(self) -> bool:
        return self.seq is not None and not self.hidden


def attachment_path(instance: Attachment, filename: str) -> str:
    """Store under the conversation with a random name: the original name is metadata only."""
    return f"attachments/{instance.conversation_id}/{uuid.uuid4().hex}"


class Attachment(models.Model):
    class Kind(models.TextChoices):
        FILE = "file"
        IMAGE = "image"
        AUDIO = "audio"
        VIDEO = "video"
        VOICE = "voice"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="attachments")
    uploader = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="uploads")
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="attachments")
    file = models.FileField(upload_to=attachment_path, max_length=200)
    name = models.CharField(max_length=255)
    size = models.PositiveBigIntegerField()
    mime = models.CharField(max_length=100)
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.FILE)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.mime}, {self.size} B)"


class PendingMessage(Message):
    """The pre-moderation queue in the admin: messages waiting for approval (no seq yet)."""

    class Meta:
        proxy = True
        verbose_name = "pending message"
        verbose_name_plural = "pending messages (queue)"


class Report(models.Model):
    """A participant's complaint about a message; staff or moderators resolve or dismiss it."""

    class Status(models.TextChoices):
        OPEN = "open"
        RESOLVED = "resolved"
        DISMISSED = "dismissed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="reports")
    reporter = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="reports_made")
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="reports")
    reason = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN, db_index=True)
    created_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolved_by_participant = models.ForeignKey(
        Participant, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # Reporting a message twice is one report: the second call returns the first.
            models.UniqueConstraint(fields=["reporter", "message"], name="report_once_per_reporter_message"),
        ]

    def __str__(self) -> str:
        return f"report on {self.message_id} ({self.status})"


class ModerationAction(models.Model):
    """The audit log: one row per moderation action, whoever did it (staff user, moderator
    participant or the manager bot). Names are copied so the row stays readable after the
    people or messages it points at are gone."""

    class Action(models.TextChoices):
        HIDE = "hide"
        UNHIDE = "unhide"
        APPROVE = "approve"
        REJECT = "reject"
        MUTE = "mute"
        UNMUTE = "unmute"
        KICK = "kick"
        BAN = "ban"
        UNBAN = "unban"
        END = "end"
        SETTINGS = "settings"
        RESOLVE_REPORT = "resolve_report", "resolve report"
        DISMISS_REPORT = "dismiss_report", "dismiss report"

    conversation = models.ForeignKey(
        Conversation, null=True, on_delete=models.SET_NULL, related_name="moderation_actions"
    )
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_participant = models.ForeignKey(
        Participant, null=True, blank=True, on_delete=models.SET_NULL, related_name="moderation_actions"
    )
    actor_name = models.CharField(max_length=150)
    action = models.CharField(max_length=16, choices=Action.choices, db_index=True)
    target_message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    target_participant = models.ForeignKey(
        Participant, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    target_report = models.ForeignKey(Report, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    target_repr = models.CharField(max_length=200, blank=True)
    reason = models.TextField(blank=True)
    # Action details: mute's "until", settings' "before"/"after".
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(actor_user__isnull=False, actor_participant__isnull=False),
                name="moderation_action_one_actor",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.actor_name} {self.action} {self.target_repr}".strip()
