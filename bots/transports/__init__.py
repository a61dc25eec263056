"""Transports: how the worker reaches bots that are not Python classes in this process.

A transport is a ``bots.base.Bot`` subclass built from the spec (``build_transport``), so the
worker runs it like any bot: lanes, order, Context, timeouts and isolation stay in one place.
Kinds whose deliveries wait in the outbox for the bot to fetch them (websocket, polling) have no
transport: the worker never runs them (see ``bots/transports/external.py``).
"""

from __future__ import annotations

from typing import Any

from django.utils.module_loading import import_string

#: kind -> dotted path of a Bot subclass taking the spec as its only argument.
TRANSPORTS = {
    "webhook": "bots.transports.webhook.WebhookBot",
    "besser": "bots.transports.besser.BesserBot",
}


class RetryLater(Exception):
    """Raised by a transport for a failure worth trying again (5xx, timeout, connection):
    the worker puts the delivery back with ``available_at = now + delay`` instead of failing it."""

    def __init__(self, reason: str, delay: float, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.delay, self.status = reason, delay, status


def build_transport(spec: Any) -> Any:
    path = TRANSPORTS.get(spec.kind)
    if path is None:
        raise ValueError(f"bot {spec.name!r} is a {spec.kind} bot: the bot fetches its deliveries, no worker runs it")
    return import_string(path)(spec)
