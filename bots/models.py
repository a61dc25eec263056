"""Tables of the bots app: admin-defined bots, each bot participant's Context, and the outbox.

``BotDelivery`` is the outbox: one row per message or status event a bot participant should
handle, written by the process that committed the message. The channel-layer message that
follows is only a wake-up, so a lost wake-up or a crashed worker loses nothing: a sweep finds
pending rows again. ``BotLane`` is a lease that makes one worker, among many, the only one
handling a given bot participant's deliveries, in ``id`` order (see docs/bots.md).
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from conversations.models import Conversation, Message, Participant


class Bot(models.Model):
    """A bot defined in the admin; merged with ``settings.CHAT_INSTALLED_BOTS`` by the registry
    (a name configured in settings wins, so deploy-time config cannot be overridden from a form)."""

    class Kind(models.TextChoices):
        PYTHON = "python", "Python class (in the worker)"
        WEBHOOK = "webhook"
        WEBSOCKET = "websocket"
        POLLING = "polling"
        BESSER = "besser", "BESSER WebSocket bot"

    class Trigger(models.TextChoices):
        AUTO = "auto", "auto: every human message when it is the only bot, else @mention"
        ALL = "all", "every human message"
        MENTION = "mention", "only when @mentioned (or replied to)"

    name = models.SlugField(max_length=64, unique=True, help_text="How people @mention it; also the participant name.")
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.PYTHON)
    class_path = models.CharField(
        max_length=255, blank=True, help_text="Dotted path of a bots.base.Bot subclass (Python bots)."
    )
    args = models.JSONField(default=list, blank=True, help_text="JSON list of positional arguments.")
    kwargs = models.JSONField(default=dict, blank=True, help_text="JSON object of keyword arguments.")
    trigger = models.CharField(max_length=8, choices=Trigger.choices, default=Trigger.AUTO)
    bot_messages = models.BooleanField(
        default=False, help_text="Also receive other bots' messages (loops are cut by the hop limit)."
    )
    timeout = models.FloatField(null=True, blank=True, help_text="Seconds per delivery; empty: CHAT_BOT_TIMEOUT.")
    enabled = models.BooleanField(default=True)
    # External bots (webhook, websocket, polling): see docs/bots.md "External bots".
    url = models.URLField(blank=True, help_text="Webhook bots: where deliveries are POSTed.")
    secret = models.CharField(
        max_length=200, blank=True, help_text="Webhook bots: the HMAC-SHA256 key of X-Chatroom-Signature."
    )
    # sha256 of the bot's API token (<name>.<secret>); the token is shown once, never stored.
    token_hash = models.CharField(max_length=64, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class BotContext(models.Model):
    """The persisted Context of one bot participant (the Chatsky idea): turn-indexed requests,
    responses and labels, plus a free ``misc`` dict. JSON keys are turn numbers as strings."""

    participant = models.OneToOneField(
        Participant, primary_key=True, on_delete=models.CASCADE, related_name="bot_context"
    )
    current_turn_id = models.PositiveIntegerField(default=0)
    requests = models.JSONField(default=dict, blank=True)
    responses = models.JSONField(default=dict, blank=True)
    labels = models.JSONField(default=dict, blank=True)
    misc = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "bot context"

    def __str__(self) -> str:
        return f"context of {self.participant}"


class BotDelivery(models.Model):
    """One thing a bot participant must handle, in ``id`` order per participant (the outbox)."""

    class Type(models.TextChoices):
        MESSAGE = "message"
        STATUS = "status"

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        SENT = "sent", "sent (websocket/polling bots: waiting for the bot's ack)"
        DONE = "done"
        FAILED = "failed"
        SKIPPED = "skipped"

    id = models.BigAutoField(primary_key=True)  # the delivery id external bots use for idempotency
    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="bot_deliveries")
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="bot_deliveries")
    bot_name = models.CharField(max_length=64, db_index=True)
    type = models.CharField(max_length=8, choices=Type.choices)
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    payload = models.JSONField(default=dict)
    # How many bot replies separate this delivery from a human (0: a human's message).
    hop = models.PositiveSmallIntegerField(default=0)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    available_at = models.DateTimeField(default=timezone.now, help_text="Not tried before (retry back-off).")
    last_error = models.TextField(blank=True)
    last_status = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Webhooks: last HTTP status.")
    worker = models.CharField(max_length=100, blank=True, help_text="The worker that ran it last.")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "bot deliveries"
        indexes = [
            models.Index(fields=["participant", "status", "id"], name="botdelivery_lane"),
            models.Index(fields=["status", "available_at"], name="botdelivery_sweep", condition=Q(status="pending")),
        ]

    def __str__(self) -> str:
        return f"#{self.id} {self.type} to {self.bot_name}: {self.status}"


class BotLane(models.Model):
    """A lease: while ``lease_until`` is in the future only ``owner`` handles this participant's
    deliveries. Taken by one upsert (``INSERT ... ON CONFLICT DO UPDATE ... WHERE``), the same on
    SQLite and PostgreSQL."""

    participant = models.OneToOneField(Participant, primary_key=True, on_delete=models.CASCADE, related_name="+")
    owner = models.CharField(max_length=100, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"lane of {self.participant_id}: {self.owner or 'free'}"
