"""Bots in the admin: define bots, watch deliveries (failures with their reason), read Contexts.

Deliveries and Contexts are records of what happened, so they are read-only here; staff may
send failed deliveries back to the queue ("retry").
"""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.utils import timezone
from django.utils.html import format_html

from .context import Context
from .delivery import load_context
from .models import Bot, BotContext, BotDelivery
from .outbox import wake


@admin.register(Bot)
class BotAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "trigger", "bot_messages", "enabled", "failures", "updated_at"]
    list_filter = ["kind", "trigger", "enabled"]
    search_fields = ["name", "description", "class_path"]
    readonly_fields = ["created_at", "updated_at"]

    @admin.display(description="failed deliveries")
    def failures(self, obj: Bot) -> int:
        return BotDelivery.objects.filter(bot_name=obj.name, status=BotDelivery.Status.FAILED).count()


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(BotDelivery)
class BotDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["id", "bot_name", "type", "status", "attempts", "hop", "conversation", "short_error", "created_at"]
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
