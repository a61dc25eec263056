"""The chat domain in the Django admin: browse rooms, people, messages and files, and moderate.

Every change of a conversation goes through ``Chat`` (the single door), so the admin is a
window plus a set of moderation actions, not a second door: nothing can be added from an "add"
page, and what a participant said or what state they are in cannot be rewritten through a form.
Moderation (hide, approve, mute, kick, ban, end, settings, reports) runs as admin actions on the
changelists and as buttons on the change pages; each asks for an optional reason on an
intermediate form, calls ``Chat`` (which checks the permission again, writes the
``ModerationAction`` audit row and tells the room live) and needs the permission named in
``conversations.moderation.PERMISSIONS``: without it the request gets 403.

The one thing editable in place is a conversation's name: plain configuration that no client
has seen an event for. Its settings (join policy, pre-moderation) change through the
"settings" action, because clients are told (``conversation.updated``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Count, F, IntegerField, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404, HttpResponseRedirect, JsonResponse
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator

from . import protocol
from .chat import Chat
from .errors import ChatError, Forbidden
from .models import (
    Attachment,
    Conversation,
    Message,
    ModerationAction,
    Participant,
    PendingMessage,
    Report,
)
from .moderation import MAX_REASON, PERMISSIONS

#: How many messages a conversation's change page shows (the newest ones, in seq order).
TRANSCRIPT_LIMIT = 500


def count_of(model, field: str = "conversation") -> Coalesce:
    """``COUNT(*)`` of ``model`` rows pointing at the outer row, as a correlated subquery.

    Two ``Count`` joins on one query would multiply the rows (participants x messages); one
    subquery per count stays linear and needs no DISTINCT.
    """
    counted = (
        model.objects.filter(**{field: OuterRef("pk")}).order_by().values(field).annotate(n=Count("pk")).values("n")
    )
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


def admin_link(obj, label=None):
    """A link to ``obj``'s admin change page (escaped label), or a dash for None."""
    if obj is None:
        return "-"
    url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, label if label is not None else str(obj))


def reading_order(messages: list[Message]) -> list[Message]:
    """Messages in the order readers saw them: visible ones by ``seq``; a pending or rejected
    one (no seq) where it was written, after the numbered messages written before it."""
    numbered = sorted((m for m in messages if m.seq is not None), key=lambda m: m.seq)
    unnumbered = sorted((m for m in messages if m.seq is None), key=lambda m: m.created_at)
    ordered: list[Message] = []
    for message in numbered:
        while unnumbered and unnumbered[0].created_at < message.created_at:
            ordered.append(unnumbered.pop(0))
        ordered.append(message)
    ordered.extend(unnumbered)
    return ordered


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


# ---- moderation: forms, operations, the shared admin machinery -------------------------------


class ReasonForm(forms.Form):
    """The intermediate form of every moderation action: an optional reason for the record."""

    reason = forms.CharField(
        required=False,
        max_length=MAX_REASON,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Optional. Kept in the audit log; kicks, bans and ends also show it in the room.",
    )


class MuteForm(ReasonForm):
    until = forms.DateTimeField(
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="Muted until this time (UTC).",
    )

    def clean_until(self):
        until = self.cleaned_data["until"]
        if until <= timezone.now():
            raise forms.ValidationError("Pick a time in the future.")
        return until


class SettingsForm(ReasonForm):
    premoderation = forms.ChoiceField(choices=Conversation.Premoderation.choices, label="Pre-moderation")
    join_policy = forms.ChoiceField(choices=Conversation.JoinPolicy.choices, label="Join policy")


def _reported(run: Callable[[Chat, Any, Report, dict], Any]) -> Callable[[Chat, Any, Report, dict], Any]:
    """Act on a report's message or sender, then resolve every open report of that message."""

    def perform(chat: Chat, user, report: Report, data: dict):
        record = run(chat, user, report, data)
        for other in Report.objects.filter(message_id=report.message_id, status=Report.Status.OPEN):
            chat.resolve_report(user, other, reason=data["reason"])
        return record

    return perform


@dataclass(frozen=True)
class Op:
    """One moderation operation as the admin offers it."""

    name: str
    label: str
    effect: str  # what the room sees; shown on the intermediate form
    run: Callable[[Chat, Any, Any, dict], Any]
    applies: Callable[[Any], bool] = lambda obj: True
    form: type[ReasonForm] = ReasonForm
    permissions: tuple[str, ...] = field(default=())


def _is_open_message(m: Message) -> bool:
    return m.seq is not None and not m.hidden and m.kind != Message.Kind.SYSTEM


OPS: dict[str, Op] = {
    op.name: op
    for op in [
        Op(
            "hide",
            "Hide",
            "Clients remove the message (message.deleted); it keeps its seq.",
            lambda c, u, m, d: c.hide_message(u, m, d["reason"]),
            _is_open_message,
        ),
        Op(
            "unhide",
            "Unhide",
            "Clients show the message again (message.updated).",
            lambda c, u, m, d: c.unhide_message(u, m, d["reason"]),
            lambda m: m.hidden,
        ),
        Op(
            "approve",
            "Approve",
            "The message takes the next seq and appears for everyone (message.new).",
            lambda c, u, m, d: c.approve_message(u, m, d["reason"]),
            lambda m: m.approval == "pending",
        ),
        Op(
            "reject",
            "Reject",
            "The message never appears; its sender gets message.updated (rejected).",
            lambda c, u, m, d: c.reject_message(u, m, d["reason"]),
            lambda m: m.approval == "pending",
        ),
        Op(
            "mute",
            "Mute",
            "Their messages are refused with an error frame (code muted) until then.",
            lambda c, u, p, d: c.mute(u, p, d["until"], d["reason"]),
            lambda p: p.is_active,
            MuteForm,
        ),
        Op(
            "unmute",
            "Unmute",
            "They may send again.",
            lambda c, u, p, d: c.unmute(u, p, d["reason"]),
            lambda p: p.is_muted(),
        ),
        Op(
            "kick",
            "Kick",
            "A system message (kicked); their sockets close with 4403. They may join again.",
            lambda c, u, p, d: c.kick(u, p, d["reason"]),
            lambda p: p.is_active,
        ),
        Op(
            "ban",
            "Ban",
            "Like a kick, and they cannot come back: not by token, user or browser session.",
            lambda c, u, p, d: c.ban(u, p, d["reason"]),
            lambda p: not p.banned,
        ),
        Op(
            "unban",
            "Unban",
            "They may join again by link, as a new participant.",
            lambda c, u, p, d: c.unban(u, p, d["reason"]),
            lambda p: p.banned,
        ),
        Op(
            "end",
            "End",
            "A system message, conversation.ended; the room is read-only from then on.",
            lambda c, u, conv, d: c.end_conversation(u, d["reason"]),
            lambda conv: conv.is_open,
        ),
        Op(
            "settings",
            "Change settings",
            "Clients get conversation.updated with the new settings.",
            lambda c, u, conv, d: c.change_settings(
                u, premoderation=d["premoderation"], join_policy=d["join_policy"], reason=d["reason"]
            ),
            lambda conv: conv.is_open,
            SettingsForm,
        ),
        # From the report queue: each also resolves every open report of the message.
        Op(
            "report_hide",
            "Hide the messages",
            "Clients remove the reported messages; their reports are resolved.",
            _reported(lambda c, u, r, d: c.hide_message(u, r.message, d["reason"])),
            lambda r: r.status == "open",
            permissions=(PERMISSIONS["hide"], PERMISSIONS["resolve_report"]),
        ),
        Op(
            "report_ban",
            "Ban the senders",
            "The senders are banned and removed; the reports are resolved.",
            _reported(lambda c, u, r, d: c.ban(u, r.message.sender, d["reason"]) if r.message.sender else None),
            lambda r: r.status == "open",
            permissions=(PERMISSIONS["ban"], PERMISSIONS["resolve_report"]),
        ),
        Op(
            "resolve",
            "Resolve",
            "The reports are closed as handled; nothing changes in the room.",
            lambda c, u, r, d: c.resolve_report(u, r, reason=d["reason"]),
            lambda r: r.status == "open",
        ),
        Op(
            "dismiss",
            "Dismiss",
            "The reports are closed as unfounded; nothing changes in the room.",
            lambda c, u, r, d: c.resolve_report(u, r, dismiss=True, reason=d["reason"]),
            lambda r: r.status == "open",
            permissions=(PERMISSIONS["dismiss_report"],),
        ),
    ]
}


def op_permissions(op: Op) -> tuple[str, ...]:
    if op.permissions:
        return op.permissions
    return (PERMISSIONS["resolve_report" if op.name == "resolve" else op.name],)


def _bulk_action(name: str, description: str):
    """An admin changelist action that asks for a reason (and more) before running ``name``."""

    def action(modeladmin, request, queryset):
        return modeladmin.run_bulk(request, queryset, OPS[name], action.__name__)

    action.__name__ = f"{name}_selected"
    return admin.action(permissions=["change"], description=description)(action)


class ModerationAdmin(admin.ModelAdmin):
    """Moderation for one model admin: ``moderation_ops`` run as changelist actions (with an
    intermediate reason form) and as buttons on the change page (``<id>/moderate/<op>/``)."""

    moderation_ops: tuple[str, ...] = ()
    change_form_template = "admin/conversations/moderation_change_form.html"

    def conversation_of(self, obj) -> Conversation:
        return obj.conversation

    def check_op(self, request, op: Op) -> None:
        if not all(request.user.has_perm(p) for p in op_permissions(op)):
            raise PermissionDenied(f"{op.label} needs {', '.join(op_permissions(op))}")

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/moderate/<str:op_name>/",
                self.admin_site.admin_view(self.moderate_view),
                name="{}_{}_moderate".format(*info),
            ),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        # A moderation action the user may not run is a 403, not a silent "no action selected".
        action = request.POST.get("action", "") if request.method == "POST" else ""
        if action.endswith("_selected") and action.removesuffix("_selected") in self.moderation_ops:
            self.check_op(request, OPS[action.removesuffix("_selected")])
        return super().changelist_view(request, extra_context)

    def moderation_buttons(self, request, obj) -> list[tuple[str, str]]:
        """(label, url) of the operations that apply to ``obj`` and that the user may run."""
        info = self.opts.app_label, self.opts.model_name
        return [
            (OPS[name].label, reverse("admin:{}_{}_moderate".format(*info), args=[obj.pk, name]))
            for name in self.moderation_ops
            if OPS[name].applies(obj) and all(request.user.has_perm(p) for p in op_permissions(OPS[name]))
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, unquote(object_id))
        extra_context = dict(extra_context or {})
        if obj is not None:
            extra_context["moderation_buttons"] = self.moderation_buttons(request, obj)
        return super().change_view(request, object_id, form_url, extra_context)

    def moderate_view(self, request, object_id: str, op_name: str):
        """One operation on one object, from a change-page button: the reason form, then Chat."""
        if op_name not in self.moderation_ops:
            raise Http404("no such moderation action here")
        op = OPS[op_name]
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404("no such object")
        if not self.has_view_permission(request, obj):
            raise PermissionDenied
        self.check_op(request, op)
        back = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[obj.pk])
        form = op.form(request.POST or None, initial=self.initial_for(op, obj))
        if request.method == "POST" and form.is_valid():
            self.apply(request, op, [obj], form.cleaned_data)
            return HttpResponseRedirect(back)
        return self.render_op_form(request, op, [obj], form, back)

    def run_bulk(self, request, queryset, op: Op, action_name: str):
        """A changelist action: show the reason form first; run when it comes back valid."""
        self.check_op(request, op)
        objects = list(queryset)
        form = op.form(request.POST if "apply" in request.POST else None, initial=self.initial_for(op, objects[0]))
        if "apply" in request.POST and form.is_valid():
            self.apply(request, op, objects, form.cleaned_data)
            return HttpResponseRedirect(request.get_full_path())
        return self.render_op_form(request, op, objects, form, request.get_full_path(), action_name=action_name)

    def initial_for(self, op: Op, obj) -> dict[str, Any]:
        if op.form is SettingsForm:
            conv = self.conversation_of(obj)
            return {"premoderation": conv.premoderation, "join_policy": conv.join_policy}
        if op.form is MuteForm:
            return {"until": (timezone.now() + timedelta(hours=1)).replace(second=0, microsecond=0)}
        return {}

    def apply(self, request, op: Op, objects: list, data: dict) -> None:
        """Run ``op`` on each object through Chat and say what happened."""
        done, skipped, failed = 0, 0, []
        for obj in objects:
            chat = Chat(self.conversation_of(obj))
            try:
                record = op.run(chat, request.user, obj, data)
            except Forbidden as error:
                raise PermissionDenied(error.detail) from None
            except ChatError as error:
                failed.append(f"{obj}: {error.detail}")
                continue
            if record is None:
                skipped += 1
            else:
                done += 1
        if done:
            self.message_user(request, f"{op.label}: done for {done}.", messages.SUCCESS)
        if skipped:
            self.message_user(request, f"{op.label}: nothing to do for {skipped}.", messages.WARNING)
        for failure in failed:
            self.message_user(request, f"{op.label} failed for {failure}", messages.ERROR)

    def render_op_form(self, request, op: Op, objects: list, form, cancel_url: str, action_name: str = ""):
        names = self.opts.verbose_name if len(objects) == 1 else self.opts.verbose_name_plural
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"{op.label}: {len(objects)} {names}",
            "op": op,
            "objects": objects,
            "form": form,
            "action_name": action_name,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "cancel_url": cancel_url,
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/conversations/moderation_form.html", context)


# ---- the models --------------------------------------------------------------------------------


class ParticipantInline(admin.TabularInline):
    """Who is in the room, read-only (joining, leaving, mutes and bans go through Chat)."""

    model = Participant
    fields = ["name", "kind", "bot_name", "role", "joined_at", "left_at", "muted_until", "banned", "user", "moderate"]
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

    @admin.display(description="moderate")
    def moderate(self, obj: Participant) -> str:
        if obj.pk is None:
            return ""
        names = [n for n in ParticipantAdmin.moderation_ops if OPS[n].applies(obj)]
        return format_html_join(
            " ",
            '<a href="{}">{}</a>',
            ((reverse("admin:conversations_participant_moderate", args=[obj.pk, n]), n) for n in names),
        )


@admin.register(Conversation)
class ConversationAdmin(ModerationAdmin):
    list_display = [
        "name",
        "status",
        "join_policy",
        "premoderation",
        "created_at",
        "participant_count",
        "message_count",
        "pending_count",
        "open_report_count",
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
    # Status changes through Chat.end and settings through Chat.change_settings (a live event
    # and an audit row each), never a form.
    readonly_fields = [
        "id",
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
    inlines = [ParticipantInline]
    moderation_ops = ("end", "settings")
    actions = [
        _bulk_action("end", "End the selected conversations"),
        _bulk_action("settings", "Change settings of the selected conversations"),
    ]
    change_form_template = "admin/conversations/conversation/change_form.html"

    def conversation_of(self, obj: Conversation) -> Conversation:
        return obj

    def get_queryset(self, request):
        pending = Message.objects.filter(approval=Message.Approval.PENDING)
        return (
            super()
            .get_queryset(request)
            .annotate(
                _participant_count=count_of(Participant),
                _message_count=count_of(Message),
                _pending_count=_count_where(pending),
                _open_report_count=_count_where(Report.objects.filter(status=Report.Status.OPEN)),
            )
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

    @admin.display(description="pending", ordering="_pending_count")
    def pending_count(self, obj: Conversation) -> int:
        return obj._pending_count

    @admin.display(description="open reports", ordering="_open_report_count")
    def open_report_count(self, obj: Conversation) -> int:
        return obj._open_report_count

    def transcript(self, conversation: Conversation) -> tuple[list[Message], int]:
        """The conversation's newest ``TRANSCRIPT_LIMIT`` messages in reading order, and the total.
        Senders come joined and attachments prefetched: two queries however long the page."""
        qs = Message.objects.filter(conversation=conversation)
        newest = list(
            qs.select_related("sender")
            .prefetch_related("attachments")
            .order_by(F("seq").desc(nulls_first=True), "-created_at")[:TRANSCRIPT_LIMIT]
        )
        total = len(newest) if len(newest) < TRANSCRIPT_LIMIT else qs.count()
        return reading_order(newest), total

    def get_urls(self):
        return [
            path(
                "<path:object_id>/transcript.json",
                self.admin_site.admin_view(self.transcript_json_view),
                name="conversations_conversation_transcript_json",
            ),
            path(
                "<path:object_id>/transcript.html",
                self.admin_site.admin_view(self.transcript_html_view),
                name="conversations_conversation_transcript_html",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = dict(extra_context or {})
        conversation = self.get_object(request, unquote(object_id))
        if conversation is not None:
            messages_, total = self.transcript(conversation)
            pk = conversation.pk
            extra_context.update(
                transcript=messages_,
                transcript_total=total,
                transcript_truncated=total > len(messages_),
                messages_url=reverse("admin:conversations_message_changelist") + f"?conversation={pk}",
                can_moderate_messages=request.user.has_perm(PERMISSIONS["hide"]),
                links=[
                    ("Export JSON", reverse("admin:conversations_conversation_transcript_json", args=[pk])),
                    ("Export HTML", reverse("admin:conversations_conversation_transcript_html", args=[pk])),
                    ("Pending queue", reverse("admin:conversations_pendingmessage_changelist") + f"?conversation={pk}"),
                    ("Reports", reverse("admin:conversations_report_changelist") + f"?conversation={pk}"),
                    (
                        "Audit log",
                        reverse("admin:conversations_moderationaction_changelist") + f"?conversation__id__exact={pk}",
                    ),
                ],
            )
        return super().change_view(request, object_id, form_url, extra_context)

    # ---- transcript export --------------------------------------------------------------------

    def _export_source(self, request, object_id: str):
        conversation = self.get_object(request, unquote(object_id))
        if conversation is None:
            raise Http404("no such conversation")
        if not self.has_view_permission(request, conversation) or not request.user.has_perm(
            "conversations.view_message"
        ):
            raise PermissionDenied
        rows = list(
            Message.objects.filter(conversation=conversation).select_related("sender").prefetch_related("attachments")
        )
        return conversation, reading_order(rows)

    def transcript_json_view(self, request, object_id: str):
        """The whole conversation as JSON, for moderators: hidden messages keep their content,
        pending and rejected ones are included; each carries its ``marks``."""
        conversation, rows = self._export_source(request, object_id)
        body = {
            "conversation": protocol.conversation_to_dict(conversation),
            "exported_at": timezone.now().isoformat(),
            "exported_by": request.user.get_username(),
            "participants": [protocol.participant_to_dict(p) for p in conversation.participants.all()],
            "messages": [export_message(m) for m in rows],
            "moderation": [
                {
                    "at": a.created_at.isoformat(),
                    "actor": a.actor_name,
                    "actor_kind": "participant" if a.actor_participant_id else "staff",
                    "action": a.action,
                    "target": a.target_repr,
                    "reason": a.reason,
                    "data": a.data,
                }
                for a in ModerationAction.objects.filter(conversation=conversation).order_by("created_at", "id")
            ],
        }
        response = JsonResponse(body, json_dumps_params={"indent": 2, "ensure_ascii": False})
        response["Content-Disposition"] = f'attachment; filename="transcript-{conversation.pk}.json"'
        return response

    def transcript_html_view(self, request, object_id: str):
        """The whole conversation as one self-contained HTML page (printable, archivable)."""
        conversation, rows = self._export_source(request, object_id)
        response = TemplateResponse(
            request,
            "admin/conversations/conversation/transcript_export.html",
            {
                "conversation": conversation,
                "transcript": rows,
                "participants": conversation.participants.all(),
                "exported_at": timezone.now(),
                "exported_by": request.user.get_username(),
            },
        )
        response["Content-Disposition"] = f'attachment; filename="transcript-{conversation.pk}.html"'
        return response


def _count_where(qs) -> Coalesce:
    counted = qs.filter(conversation=OuterRef("pk")).order_by().values("conversation").annotate(n=Count("pk"))
    return Coalesce(Subquery(counted.values("n"), output_field=IntegerField()), 0)


def export_message(message: Message) -> dict[str, Any]:
    """A message as the wire shows it, but with a hidden message's content kept, and marks."""
    data = protocol.message_to_dict(message)
    if message.hidden:
        data["text"], data["data"] = message.text, message.data
        data["attachments"] = [protocol.attachment_to_dict(a) for a in message.attachments.all()]
    data["marks"] = [
        mark
        for mark, on in (
            ("hidden", message.hidden),
            ("pending", message.approval == Message.Approval.PENDING),
            ("rejected", message.approval == Message.Approval.REJECTED),
        )
        if on
    ]
    return data


@admin.register(Participant)
class ParticipantAdmin(ChatStateAdmin, ModerationAdmin):
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
    moderation_ops = ("mute", "unmute", "kick", "ban", "unban")
    actions = [
        _bulk_action("mute", "Mute the selected participants"),
        _bulk_action("unmute", "Unmute the selected participants"),
        _bulk_action("kick", "Kick the selected participants"),
        _bulk_action("ban", "Ban the selected participants"),
        _bulk_action("unban", "Unban the selected participants"),
    ]


@admin.register(Message)
class MessageAdmin(ChatStateAdmin, ModerationAdmin):
    list_display = ["conversation", "seq", "sender_name", "kind", "short_text", "approval", "hidden", "created_at"]
    list_filter = ["kind", "approval", "hidden"]
    search_fields = ["text", "sender__name"]
    list_select_related = ["conversation", "sender"]
    date_hierarchy = "created_at"
    # What was said is never rewritten from a form; approval and hiding are Chat actions.
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
    moderation_ops = ("hide", "unhide", "approve", "reject")
    actions = [
        _bulk_action("hide", "Hide the selected messages"),
        _bulk_action("unhide", "Unhide the selected messages"),
        _bulk_action("approve", "Approve the selected pending messages"),
        _bulk_action("reject", "Reject the selected pending messages"),
    ]

    @admin.display(description="sender", ordering="sender__name")
    def sender_name(self, obj: Message) -> str:
        if obj.sender is None:
            return "(system)"
        return f"{obj.sender.name} [bot]" if obj.sender.is_bot else obj.sender.name

    @admin.display(description="text")
    def short_text(self, obj: Message) -> str:
        return Truncator(obj.text).chars(80)


@admin.register(PendingMessage)
class PendingMessageAdmin(MessageAdmin):
    """The pre-moderation queue: pending messages, oldest first, to approve or reject.

    A view on messages, so it asks for the message permissions (not the proxy's own)."""

    list_display = ["created_at", "conversation", "sender_name", "kind", "short_text"]
    list_filter = ["kind", ("conversation", admin.RelatedOnlyFieldListFilter)]
    ordering = ["created_at"]
    date_hierarchy = None
    moderation_ops = ("approve", "reject")
    actions = [
        _bulk_action("approve", "Approve the selected messages"),
        _bulk_action("reject", "Reject the selected messages"),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).filter(approval=Message.Approval.PENDING)

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.has_perm("conversations.view_message") or self.has_change_permission(request, obj)

    def has_change_permission(self, request, obj=None) -> bool:
        return request.user.has_perm("conversations.change_message")


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


class ReportStatusFilter(admin.SimpleListFilter):
    """Open reports by default: the changelist is the queue; "all" shows the history."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [*Report.Status.choices, ("all", "All")]

    def current(self) -> str:
        return self.value() or Report.Status.OPEN

    def queryset(self, request, queryset):
        return queryset if self.current() == "all" else queryset.filter(status=self.current())

    def choices(self, changelist):
        for value, label in self.lookup_choices:
            yield {
                "selected": self.current() == value,
                "query_string": changelist.get_query_string({self.parameter_name: value}),
                "display": label,
            }


@admin.register(Report)
class ReportAdmin(ChatStateAdmin, ModerationAdmin):
    """The report queue: open reports, the most reported messages first, each with how many
    open reports its message has; act on the messages or their senders from here."""

    list_display = [
        "created_at",
        "message_link",
        "message_text",
        "sender",
        "reports_on_message",
        "reporter",
        "reason",
        "status",
        "conversation",
    ]
    list_filter = [ReportStatusFilter, ("conversation", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["reason", "message__text", "reporter__name"]
    list_select_related = ["conversation", "reporter", "message", "message__sender"]
    fields = [
        "id",
        "conversation",
        "message",
        "reporter",
        "reason",
        "status",
        "created_at",
        "resolved_at",
        "resolved_by",
        "resolved_by_participant",
    ]
    moderation_ops = ("report_hide", "report_ban", "resolve", "dismiss")
    actions = [
        _bulk_action("report_hide", "Hide the reported messages (and resolve)"),
        _bulk_action("report_ban", "Ban the senders of the reported messages (and resolve)"),
        _bulk_action("resolve", "Resolve the selected reports"),
        _bulk_action("dismiss", "Dismiss the selected reports"),
    ]

    def get_queryset(self, request):
        open_on_message = (
            Report.objects.filter(message=OuterRef("message"), status=Report.Status.OPEN)
            .order_by()
            .values("message")
            .annotate(n=Count("pk"))
            .values("n")
        )
        # Annotate before ordering: the default ordering is by the annotation.
        annotated = Report._default_manager.annotate(
            _reports_on_message=Coalesce(Subquery(open_on_message, output_field=IntegerField()), 0)
        )
        return annotated.order_by(*self.get_ordering(request))

    def get_ordering(self, request):
        return ["-_reports_on_message", "-created_at"]

    @admin.display(description="open reports on message", ordering="_reports_on_message")
    def reports_on_message(self, obj: Report) -> int:
        return obj._reports_on_message

    @admin.display(description="message")
    def message_link(self, obj: Report) -> str:
        return admin_link(obj.message, f"#{obj.message.seq}" if obj.message.seq is not None else "(pending)")

    @admin.display(description="text")
    def message_text(self, obj: Report) -> str:
        prefix = "[hidden] " if obj.message.hidden else ""
        return prefix + Truncator(obj.message.text).chars(80)

    @admin.display(description="sender")
    def sender(self, obj: Report) -> str:
        return obj.message.sender.name if obj.message.sender else "(system)"


class ActorKindFilter(admin.SimpleListFilter):
    title = "actor kind"
    parameter_name = "actor_kind"

    def lookups(self, request, model_admin):
        return [("staff", "staff user"), ("participant", "human participant"), ("bot", "bot")]

    def queryset(self, request, queryset):
        value = self.value()
        if value == "staff":
            return queryset.filter(actor_participant__isnull=True)
        if value == "participant":
            return queryset.filter(actor_participant__kind=Participant.Kind.HUMAN)
        if value == "bot":
            return queryset.filter(actor_participant__kind=Participant.Kind.BOT)
        return queryset


@admin.register(ModerationAction)
class ModerationActionAdmin(admin.ModelAdmin):
    """The audit log, read-only: nobody adds, edits or deletes a row here."""

    list_display = ["created_at", "action", "actor", "target_repr", "reason", "conversation_link"]
    list_filter = [
        "action",
        ActorKindFilter,
        ("conversation", admin.RelatedOnlyFieldListFilter),
        ("actor_user", admin.RelatedOnlyFieldListFilter),
        ("actor_participant", admin.RelatedOnlyFieldListFilter),
    ]
    search_fields = ["actor_name", "target_repr", "reason"]
    list_select_related = ["conversation", "actor_participant"]
    date_hierarchy = "created_at"
    fields = [
        "created_at",
        "conversation",
        "action",
        "actor_name",
        "actor_user",
        "actor_participant",
        "target_repr",
        "target_message",
        "target_participant",
        "target_report",
        "reason",
        "data",
    ]
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="actor", ordering="actor_name")
    def actor(self, obj: ModerationAction) -> str:
        if obj.actor_participant_id is None:
            return f"{obj.actor_name} (staff)"
        kind = "bot" if obj.actor_participant and obj.actor_participant.is_bot else "participant"
        return f"{obj.actor_name} ({kind})"

    @admin.display(description="conversation", ordering="conversation__name")
    def conversation_link(self, obj: ModerationAction) -> str:
        return admin_link(obj.conversation)
