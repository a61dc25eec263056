"""Bot settings with safe defaults (each can be set in chatroom/settings.py or the environment)."""

from __future__ import annotations

from django.conf import settings


def embedded_worker() -> bool:
    """Run the worker inside the daphne process: on by default iff there is no Redis."""
    return bool(getattr(settings, "CHAT_EMBEDDED_BOT_WORKER", not getattr(settings, "REDIS_URL", "")))


def timeout() -> float:
    """Seconds one delivery may take before the bot is given up on (per bot: spec "timeout")."""
    return float(getattr(settings, "CHAT_BOT_TIMEOUT", 10.0))


def hop_limit() -> int:
    """Bot messages this many replies away from a human are not delivered to bots any more."""
    return int(getattr(settings, "CHAT_BOT_HOP_LIMIT", 3))


def sweep_interval() -> float:
    """Seconds between sweeps for deliveries whose wake-up was lost or whose worker died."""
    return float(getattr(settings, "CHAT_BOT_SWEEP_INTERVAL", 5.0))


def max_attempts() -> int:
    """Tries of one delivery interrupted by a dying worker (a bot's own error is not retried)."""
    return int(getattr(settings, "CHAT_BOT_MAX_ATTEMPTS", 3))


def threads() -> int:
    """Threads for synchronous bot code (a hung bot keeps one until it returns)."""
    return int(getattr(settings, "CHAT_BOT_THREADS", 32))


def manager() -> str | None:
    return getattr(settings, "CHAT_BOT_MANAGER", None) or None
