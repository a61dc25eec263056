"""ChatLimits: the sizes and rates a conversation enforces, with overridable defaults."""

from __future__ import annotations

from functools import lru_cache
from types import MappingProxyType
from typing import Any, TypedDict

from django.conf import settings


class ChatLimits(TypedDict):
    MAX_ATTACHMENT_SIZE: int  # bytes, any file that is not one of the kinds below
    MAX_IMAGE_SIZE: int
    MAX_VIDEO_SIZE: int
    MAX_AUDIO_SIZE: int
    MAX_VOICE_SIZE: int
    MAX_TEXT_LENGTH: int  # characters
    MAX_ATTACHMENTS_PER_MESSAGE: int
    MAX_PARTICIPANTS: int  # per conversation, bots included
    RATE_LIMIT_MESSAGES: int  # messages per participant ...
    RATE_LIMIT_WINDOW: int  # ... per this many seconds
    MAX_FRAME_SIZE: int  # bytes of one WebSocket frame
    FRAME_RATE: int  # frames of any type per second per socket, steady ...
    FRAME_BURST: int  # ... after a burst of this many
    TYPING_TTL: int  # seconds a typing indicator lives without a refresh


MB = 1024 * 1024

DEFAULT_LIMITS: ChatLimits = {
    "MAX_ATTACHMENT_SIZE": 10 * MB,
    "MAX_IMAGE_SIZE": 5 * MB,
    "MAX_VIDEO_SIZE": 50 * MB,
    "MAX_AUDIO_SIZE": 20 * MB,
    "MAX_VOICE_SIZE": 5 * MB,
    "MAX_TEXT_LENGTH": 4000,
    "MAX_ATTACHMENTS_PER_MESSAGE": 10,
    "MAX_PARTICIPANTS": 200,
    "RATE_LIMIT_MESSAGES": 30,
    "RATE_LIMIT_WINDOW": 10,
    "MAX_FRAME_SIZE": 64 * 1024,
    "FRAME_RATE": 20,
    "FRAME_BURST": 60,
    "TYPING_TTL": 6,
}

SIZE_LIMIT_BY_KIND = {
    "file": "MAX_ATTACHMENT_SIZE",
    "image": "MAX_IMAGE_SIZE",
    "video": "MAX_VIDEO_SIZE",
    "audio": "MAX_AUDIO_SIZE",
    "voice": "MAX_VOICE_SIZE",
}


def get_limits() -> ChatLimits:
    """The limits in force: defaults overridden by ``settings.CHAT_LIMITS`` (unknown keys refused).

    One read-only mapping per distinct setting, shared by every ``Chat``: a socket holds a
    Chat, and a dict of limits each was ~300 bytes per idle socket (bench/)."""
    overrides = getattr(settings, "CHAT_LIMITS", {}) or {}
    return _limits(tuple(sorted(overrides.items())))


@lru_cache(maxsize=8)
def _limits(overrides: tuple[tuple[str, Any], ...]) -> ChatLimits:
    unknown = {key for key, _ in overrides} - set(DEFAULT_LIMITS)
    if unknown:
        raise ValueError(f"Unknown CHAT_LIMITS keys: {sorted(unknown)}")
    limits = dict(DEFAULT_LIMITS)
    limits.update({key: int(value) for key, value in overrides})
    return MappingProxyType(limits)  # type: ignore[return-value]


def max_upload_size(limits: ChatLimits) -> int:
    """The largest file any kind accepts: bigger uploads are refused before they are sniffed."""
    return max(limits[key] for key in SIZE_LIMIT_BY_KIND.values())
