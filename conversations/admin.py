"""The chat domain in the Django admin: browse and search rooms, people, messages and files.

Every change of a conversation goes through ``Chat`` (the single door), so the admin here is
a window, not a second door: nothing can be added from an "add" page, and what a participant
said or what state they are in cannot be rewritten through a form. Moderation (hide, approve,
mute, ban, end, ...) arrives as admin actions that call ``Chat`` and write the audit log; the
``ChatStateAdmin`` base below keeps the change permission so such actions can hang off it.

The one thing editable in place is a conversation's name and settings (join policy,
pre-moderation): plain configuration that no client has seen an event for.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.db.models import Count, F, IntegerField, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils.html import format_html
from django.utils.text import Truncator

from .models import Attachment, Conversation, Message, Participant

#: How many messages a conversation's change page shows (the newest ones, in seq order).
TRANSCRIPT_LIMIT = 500


def count_of(model, field: str = "conversation") -> Coalesce:
    """``COUNT(*)`` of ``model`` rows pointing at the outer row, as a correlated subquery.

    Two ``Count`` joins on one query would multiply the rows (participants x messages); one
    subquery per count stays linear and needs no DISTINCT.
    """
    counted = (
        model.objects.filter(**{field: OuterRef("pk")})
        .order_by()
        .values(field)
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


def admin_link(obj, label=None):
    """A link to ``obj``'s admin change page (escaped label), or a dash for None."""
    if obj is None:
        return "-"
    url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, label if label is not None else str(obj))


class ChatStateAdmin(admin.ModelAdmin):
    """Read-only model admin for rows that only ``Chat`` may create or change.

    The change permission is kept (admin actions declared with ``permissions=["change"]``
    need it); every field is read-only and the save buttons are hidden instead.
    """

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_readonly_fields(self, request, obj=None):
        return self.get_fields(request, obj)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
        }
        return super().change_view(request, object_id, form_url, extra_context)


class ParticipantInline(admin.TabularInline):
    """Who is in the room, read-only (joining, leaving, mutes and bans go through Chat)."""

    model = Participant
    fields = ["name", "kind", "bot_name", "role", "joined_at", "left_at", "muted_until", "banned", "user"]
    readonly_fields = fields
    ordering = ["joined_at"]
    extra = 0
    can_delete = False
    show_change_link = True

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user")

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "status",
        "join_policy",
        "premoderation",
        "created_at",
        "participant_count",
        "message_count",
    ]
    list_filter = ["status", "join_policy", "premoderation", "created_at"]
    search_fields = ["name", "id"]
    date_hierarchy = "created_at"
    list_select_related = ["created_by"]
    fields = [
        "id",
        "name",
        "status",
        "join_policy",
        "premoderation",
        "created_at",
        "created_by",
        "ended_at",
        "next_seq",
        "participant_count",
        "message_count",
    ]
    # Status changes through Chat.end (a system message and a live event), never a form.
    readonly_fields = [
        "id",
        "status",
        "created_at",
        "created_by",
        "ended_at",
        "next_seq",
        "participant_count",
        "message_count",
    ]
    inlines = [ParticipantInline]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(_participant_count=count_of(Participant), _message_count=count_of(Message))
        )

    def has_add_permission(self, request) -> bool:
        # A conversation is born through Chat.create: owner, "created" and "joined" messages.
        return False

    @admin.display(description="participants", ordering="_participant_count")
    def participant_count(self, obj: Conversation) -> int:
        return obj._participant_count

    @admin.display(description="messages", ordering="_message_count")
    def message_count(self, obj: Conversation) -> int:
        return obj._message_count

    def transcript(self, conversation: Conversation) -> tuple[list[Message], int]:
        """The conversation's newest ``TRANSCRIPT_LIMIT`` messages, in the order readers saw them.

        Visible messages go by ``seq``; a pending or rejected one (no seq) sits where it was
        written, after the numbered messages written before it. Returns (messages, total).
        Senders come joined and attachments prefetched: two queries however long the page.
        """
        qs = Message.objects.filter(conversation=conversation)
        newest = list(
            qs.select_related("sender")
            .prefetch_related("attachments")
            .order_by(F("seq").desc(nulls_first=True), "-created_at")[:TRANSCRIPT_LIMIT]
        )
        numbered = sorted((m for m in newest if m.seq is not None), key=lambda m: m.seq)
        unnumbered = sorted((m for m in newest if m.seq is None), key=lambda m: m.created_at)
        ordered: list[Message] = []
        for message in numbered:
            while unnumbered and unnumbered[0].created_at < message.created_at:
                ordered.append(unnumbered.pop(0))
            ordered.append(message)
        ordered.extend(unnumbered)
        total = len(newest) if len(newest) < TRANSCRIPT_LIMIT else qs.count()
        return ordered, total

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = dict(extra_context or {})
        conversation = self.get_object(request, unquote(object_id))
        if conversation is not None:
            messages, total = self.transcript(conversation)
            extra_context.update(
                transcript=messages,
                transcript_total=total,
                transcript_truncated=total > len(messages),
                messages_url=reverse("admin:conversations_message_changelist") + f"?conversation={conversation.pk}",
            )
        return super().change_view(request, object_id, form_url, extra_context)


@admin.register(Participant)
class ParticipantAdmin(ChatStateAdmin):
    list_display = [
        "name",
        "kind",
        "bot_name",
        "role",
        "conversation",
        "joined_at",
        "left_at",
        "muted_until",
        "banned",
    ]
    list_filter = ["kind", "role", "banned"]
    search_fields = ["name", "bot_name", "conversation__name"]
    list_select_related = ["conversation"]
    # token_hash is deliberately absent: a secret's hash is never shown, searched or edited.
    fields = [
        "id",
        "conversation",
        "name",
        "kind",
        "bot_name",
        "user",
        "role",
        "joined_at",
        "left_at",
        "muted_until",
        "banned",
        "last_read_seq",
    ]


@admin.register(Message)
class MessageAdmin(ChatStateAdmin):
    list_display = ["conversation", "seq", "sender_name", "kind", "short_text", "approval", "hidden", "created_at"]
    list_filter = ["kind", "approval", "hidden"]
    search_fields = ["text", "sender__name"]
    list_select_related = ["conversation", "sender"]
    date_hierarchy = "created_at"
    # What was said is never rewritten from a form; approval and hiding become Chat actions.
    fields = [
        "id",
        "conversation",
        "seq",
        "sender",
        "kind",
        "text",
        "data",
        "quoted_message",
        "client_id",
        "approval",
        "hidden",
        "edited_at",
        "created_at",
    ]

    @admin.display(description="sender", ordering="sender__name")
    def sender_name(self, obj: Message) -> str:
        if obj.sender is None:
            return "(system)"
        return f"{obj.sender.name} [bot]" if obj.sender.is_bot else obj.sender.name

    @admin.display(description="text")
    def short_text(self, obj: Message) -> str:
        return Truncator(obj.text).chars(80)


@admin.register(Attachment)
class AttachmentAdmin(ChatStateAdmin):
    list_display = ["name", "kind", "mime", "file_size", "conversation", "uploader", "created_at"]
    list_filter = ["kind"]
    search_fields = ["name", "mime"]
    list_select_related = ["conversation", "uploader"]
    fields = ["id", "name", "kind", "mime", "size", "file", "conversation", "uploader", "message", "created_at"]

    @admin.display(description="size", ordering="size")
    def file_size(self, obj: Attachment) -> str:
        return filesizeformat(obj.size)
