"""Bots in the admin: define bots, watch deliveries (failures with their reason), read Contexts.

Deliveries and Contexts are records of what happened, so they are read-only here; staff may
send failed deliveries back to the queue ("retry").
"""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.db import models
from django.utils import timezone
from django.utils.html import format_html

from .auth import EXTERNAL_KINDS
from .auth import new_token as new_bot_token
from .context import Context
from .delivery import load_context
from .models import Bot, BotContext, BotDelivery
from .outbox import wake


@admin.register(Bot)
class BotAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "trigger", "bot_messages", "enabled", "failures", "updated_at"]
    list_filter = ["kind", "trigger", "enabled"]
    search_fields = ["name", "description", "class_path"]
    readonly_fields = ["created_at", "updated_at", "has_token"]
    actions = ["rotate_token"]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}  # webhook URL (Django 6 default)

    @admin.display(description="failed deliveries")
    def failures(self, obj: Bot) -> int:
        return BotDelivery.objects.filter(bot_name=obj.name, status=BotDelivery.Status.FAILED).count()

    @admin.display(description="API token", boolean=True)
    def has_token(self, obj: Bot) -> bool:
        return bool(obj.token_hash)

    def save_model(self, request, obj: Bot, form, change) -> None:
        """An external bot gets its API token when first saved; it is shown this once."""
        super().save_model(request, obj, form, change)
        if obj.kind in EXTERNAL_KINDS and not obj.token_hash:
            self._show_token(request, obj)

    def _show_token(self, request, obj: Bot) -> None:
        token, obj.token_hash = new_bot_token(obj.name)
        Bot.objects.filter(pk=obj.pk).update(token_hash=obj.token_hash)
        self.message_user(request, f"API token of {obj.name} (shown once, copy it now): {token}", messages.WARNING)

    @admin.action(description="Rotate the API token of the selected bots (the old one stops working)")
    def rotate_token(self, request, queryset) -> None:
        for obj in queryset:
            self._show_token(request, obj)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(BotDelivery)
class BotDeliveryAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "bot_name",
        "type",
        "status",
        "attempts",
        "hop",
        "last_status",
        "available_at",
        "conversation",
        "short_error",
        "created_at",
    ]
    list_filter = ["status", "type", "bot_name"]
    search_fields = ["bot_name", "last_error", "conversation__name"]
    list_select_related = ["conversation"]
    readonly_fields = [f.name for f in BotDelivery._meta.fields]
    actions = ["retry"]

    @admin.display(description="error")
    def short_error(self, obj: BotDelivery) -> str:
        return obj.last_error.strip().splitlines()[-1][:120] if obj.last_error.strip() else ""

    @admin.action(description="Retry the selected failed deliveries")
    def retry(self, request, queryset) -> None:
        failed = queryset.filter(status=BotDelivery.Status.FAILED)
        participants = set(failed.values_list("participant_id", flat=True))
        count = failed.update(status=BotDelivery.Status.PENDING, available_at=timezone.now(), finished_at=None)
        for participant_id in participants:
            wake(participant_id)
        self.message_user(request, f"{count} deliveries queued again.", messages.SUCCESS)

    def has_change_permission(self, request, obj=None) -> bool:
        # The retry action needs change permission; the form itself stays read-only.
        return request.user.has_perm("bots.change_botdelivery")


@admin.register(BotContext)
class BotContextAdmin(ReadOnlyAdmin):
    list_display = ["participant", "current_turn_id", "updated_at"]
    search_fields = ["participant__name", "participant__conversation__name"]
    list_select_related = ["participant"]
    fields = ["participant", "current_turn_id", "created_at", "updated_at", "exported"]
    readonly_fields = fields

    @admin.display(description="Context (JSON export)")
    def exported(self, obj: BotContext) -> str:
        context: Context = load_context(obj.participant)
        return format_html("<pre style='white-space:pre-wrap'>{}</pre>", json.dumps(context.to_dict(), indent=2))
