"""System checks: a bad bot spec in settings is reported by ``manage.py check`` (and at start)."""

from __future__ import annotations

from django.core.checks import Error, register


@register()
def installed_bots_check(app_configs, **kwargs) -> list[Error]:
    from .registry import settings_errors

    return [
        Error(detail, hint="Fix its spec in CHAT_INSTALLED_BOTS (see docs/bots.md).", obj=name, id="bots.E001")
        for name, detail in settings_errors().items()
    ]
