"""Installed bots: ``settings.CHAT_INSTALLED_BOTS`` (name -> spec) merged with the ``Bot`` rows
of the admin. A name configured in settings wins over an admin row of the same name.

A spec (see docs/bots.md)::

    {"class": "bots.builtin.echo.EchoBot", "args": [], "kwargs": {}, "trigger": "auto",
     "description": "...", "kind": "python", "bot_messages": false, "timeout": 10}
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import DatabaseError
from django.utils.module_loading import import_string

from conversations.bot_directory import BotInfo

logger = logging.getLogger(__name__)

TRIGGERS = ("auto", "all", "mention")
KINDS = ("python", "webhook", "websocket", "polling", "besser")
DEFAULT_TRIGGER = "auto"


@dataclass(frozen=True)
class BotSpec:
    """Everything the worker needs to run one installed bot."""

    name: str
    kind: str = "python"
    class_path: str = ""
    args: tuple = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    trigger: str = DEFAULT_TRIGGER
    description: str = ""
    bot_messages: bool | None = None  # None: the class decides (Bot.accepts_bot_messages)
    timeout: float | None = None
    source: str = "settings"  # settings, admin or local (tests, check_happy_path)
    version: str = ""  # changes when the spec changes, so the worker rebuilds cached instances
    extra: dict[str, Any] = field(default_factory=dict)  # kind-specific keys (part 2: url, ...)
    local: Any = None  # local bots only: a Bot subclass or a ready instance

    def info(self) -> BotInfo:
        return {"name": self.name, "description": self.description, "kind": self.kind, "trigger": self.trigger}


_KNOWN_KEYS = {"class", "args", "kwargs", "trigger", "description", "kind", "bot_messages", "timeout"}
# Bots registered in this process only (the test kit); never seen by other processes.
_local: dict[str, BotSpec] = {}


def spec_from_dict(name: str, raw: dict[str, Any], *, source: str = "settings") -> BotSpec:
    """Validate one configured spec; a bad one raises ValueError naming the bot."""
    if not isinstance(raw, dict):
        raise ValueError(f"bot {name!r}: a spec is a JSON object")
    trigger = raw.get("trigger") or DEFAULT_TRIGGER
    if trigger not in TRIGGERS:
        raise ValueError(f"bot {name!r}: trigger must be one of {TRIGGERS}")
    kind = raw.get("kind") or "python"
    if kind not in KINDS:
        raise ValueError(f"bot {name!r}: kind must be one of {KINDS}")
    if kind == "python" and not raw.get("class"):
        raise ValueError(f"bot {name!r}: a python bot needs 'class' (a dotted path)")
    if kind == "webhook" and not str(raw.get("url") or "").startswith(("http://", "https://")):
        raise ValueError(f"bot {name!r}: a webhook bot needs 'url' (http or https)")
    args, kwargs = raw.get("args") or [], raw.get("kwargs") or {}
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise ValueError(f"bot {name!r}: args is a list and kwargs an object")
    timeout = raw.get("timeout")
    return BotSpec(
        name=name,
        kind=kind,
        class_path=raw.get("class") or "",
        args=tuple(args),
        kwargs=dict(kwargs),
        trigger=trigger,
        description=raw.get("description") or "",
        bot_messages=raw.get("bot_messages"),
        timeout=float(timeout) if timeout is not None else None,
        source=source,
        version=repr(sorted(raw.items(), key=lambda kv: kv[0])),
        extra={k: v for k, v in raw.items() if k not in _KNOWN_KEYS},
    )


def settings_errors() -> dict[str, str]:
    """What is wrong with each bad spec of ``CHAT_INSTALLED_BOTS`` (the system check reports it)."""
    errors = {}
    for name, raw in (getattr(settings, "CHAT_INSTALLED_BOTS", {}) or {}).items():
        try:
            spec_from_dict(name, raw)
        except ValueError as error:
            errors[name] = str(error)
    return errors


def _settings_specs() -> dict[str, BotSpec]:
    """The valid specs of ``CHAT_INSTALLED_BOTS``: a bad one is left out (and logged) rather
    than taking the lobby, ``GET /api/bots`` and every other bot down with it."""
    specs = {}
    for name, raw in (getattr(settings, "CHAT_INSTALLED_BOTS", {}) or {}).items():
        try:
            specs[name] = spec_from_dict(name, raw)
        except ValueError as error:
            logger.error("CHAT_INSTALLED_BOTS: %s", error)
    return specs


def _admin_specs() -> dict[str, BotSpec]:
    from .models import Bot

    try:
        rows = list(Bot.objects.filter(enabled=True))
    except DatabaseError:  # before `migrate`: settings bots only
        return {}
    specs = {}
    for row in rows:
        raw = {
            "class": row.class_path,
            "args": row.args,
            "kwargs": row.kwargs,
            "trigger": row.trigger,
            "description": row.description,
            "kind": row.kind,
            "bot_messages": row.bot_messages,
            "timeout": row.timeout,
            **({"url": row.url} if row.url else {}),
            **({"secret": row.secret} if row.secret else {}),
        }
        try:
            spec = spec_from_dict(row.name, raw, source="admin")
        except ValueError as error:
            logger.warning("admin bot %s ignored: %s", row.name, error)
            continue
        specs[row.name] = BotSpec(**{**spec.__dict__, "version": f"admin:{row.pk}:{row.updated_at.isoformat()}"})
    return specs


def bot_specs() -> dict[str, BotSpec]:
    """Every installed bot by name: admin rows, then settings, then local ones (later wins)."""
    return {**_admin_specs(), **_settings_specs(), **_local}


def get_spec(name: str, *, read_database: bool = True) -> BotSpec | None:
    """The spec of an installed bot, or None. ``read_database=False``: a bot installed in the
    admin (a ``Bot`` row) is not looked up, and gives None too."""
    if name in _local:
        return _local[name]
    settings_specs = _settings_specs()
    if name in settings_specs:
        return settings_specs[name]
    return _admin_specs().get(name) if read_database else None


def installed_bots() -> dict[str, BotInfo]:
    """Public facts about each installed bot, for the lobby and ``GET /api/bots``."""
    return {name: spec.info() for name, spec in bot_specs().items()}


def register_local(name: str, bot: Any, **spec: Any) -> BotSpec:
    """Install a bot in this process only (tests, the test kit): ``bot`` is a Bot subclass
    (built with the spec's args/kwargs) or an instance (used as is)."""
    base = spec_from_dict(name, {"class": "local", **spec}, source="local")
    local = BotSpec(**{**base.__dict__, "class_path": "", "local": bot, "version": f"local:{id(bot)}"})
    _local[name] = local
    return local


def unregister_local(name: str) -> None:
    _local.pop(name, None)


def bot_class(spec: BotSpec) -> type | None:
    """The Python class of a python bot (for class attributes such as ``accepts_bot_messages``)."""
    if spec.local is not None:
        return spec.local if isinstance(spec.local, type) else type(spec.local)
    if spec.kind != "python" or not spec.class_path:
        return None
    return import_string(spec.class_path)


def build(spec: BotSpec) -> Any:
    """A new bot instance from its spec (the worker caches it per participant)."""
    if spec.local is not None:
        return spec.local(*spec.args, **spec.kwargs) if isinstance(spec.local, type) else spec.local
    if spec.kind != "python":
        from .transports import build_transport  # webhook, besser: Bot objects that speak a protocol

        return build_transport(spec)
    cls = import_string(spec.class_path)
    return cls(*spec.args, **spec.kwargs)
