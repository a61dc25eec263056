"""Installed bots: ``settings.CHAT_INSTALLED_BOTS`` (name -> spec). See docs/bots.md."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from conversations.bot_directory import BotInfo

TRIGGERS = ("all", "mention")


def bot_specs() -> dict[str, dict[str, Any]]:
    """The raw specs by name, as configured."""
    return dict(getattr(settings, "CHAT_INSTALLED_BOTS", {}) or {})


def installed_bots() -> dict[str, BotInfo]:
    """Public facts about each installed bot, for the lobby and ``GET /api/bots``."""
    bots: dict[str, BotInfo] = {}
    for name, spec in bot_specs().items():
        trigger = spec.get("trigger", "all")
        if trigger not in TRIGGERS:
            raise ValueError(f"bot {name!r}: trigger must be one of {TRIGGERS}")
        bots[name] = {
            "name": name,
            "description": spec.get("description", ""),
            "kind": spec.get("kind", "python"),
            "trigger": trigger,
        }
    return bots
