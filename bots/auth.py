"""Bot API tokens: ``<bot name>.<secret>``, stored as a sha256 hash on the ``Bot`` row.

Every external bot (webhook, websocket, polling) has one; it authenticates the bot API
(``/api/bot/...``) and the bot socket (``/ws/bots/``). The name prefix makes lookup a unique-key
fetch; the secret has 256 bits, so a fast hash is enough (as for participant tokens). A
settings-defined bot keeps its hash in a disabled ``Bot`` row (``manage.py bottoken <name>``):
settings still win for everything else.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping

from conversations.auth import bearer_token
from conversations.tokens import hash_token, token_matches

from . import registry
from .models import Bot

EXTERNAL_KINDS = ("webhook", "websocket", "polling")
QUEUED_KINDS = ("websocket", "polling")  # deliveries wait in the outbox for the bot to fetch/ack


def new_token(name: str) -> tuple[str, str]:
    """Return (token, token_hash) for a bot."""
    token = f"{name}.{secrets.token_urlsafe(32)}"
    return token, hash_token(token)


def issue_token(name: str) -> str:
    """Give ``name`` a new token (the old one stops working) and return it; it is not stored.

    An admin row keeps its hash; a bot known only from settings gets a disabled row to hold it."""
    token, digest = new_token(name)
    row = Bot.objects.filter(name=name).first()
    if row is None:
        spec = registry.get_spec(name)
        if spec is None:
            raise ValueError(f"no installed bot named {name!r}")
        row = Bot(
            name=name,
            kind=spec.kind,
            enabled=False,
            description="Holds the API token of the bot defined in settings (settings win for the rest).",
        )
    row.token_hash = digest
    row.save()
    return token


def bot_from_token(token: str) -> registry.BotSpec | None:
    """The installed external bot a token belongs to, or None (unknown, wrong secret, disabled)."""
    name, sep, _ = (token or "").strip().partition(".")
    if not sep or not name:
        return None
    row = Bot.objects.filter(name=name).only("token_hash").first()
    if row is None or not token_matches(token.strip(), row.token_hash):
        return None
    spec = registry.get_spec(name)
    if spec is None or spec.kind not in EXTERNAL_KINDS:
        return None
    return spec


def token_from(headers: Mapping[str, str], query_token: str = "") -> str:
    """``Authorization: Bearer <token>`` wins over ``?token=``."""
    return bearer_token(headers) or query_token
