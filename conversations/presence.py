"""Who is online: the live sockets of each conversation, shared by every server process.

Each socket is one entry ``<participant id>|<channel name>`` with an expiry time; a socket
refreshes its entry while it lives, so the entries of a process that died fade out by
themselves. With ``REDIS_URL`` the entries are a sorted set per conversation in Redis (every
process sees them); without it, a dict in this process (the embedded default is one process).
"""

from __future__ import annotations

import threading
import time
from functools import lru_cache

from django.conf import settings

TTL_SECONDS = 60  # an entry lives this long without a refresh
REFRESH_SECONDS = 20  # how often a socket refreshes its entry


def _key(conversation_id) -> str:
    return (
        f"{settings.CHANNEL_LAYERS['default'].get('CONFIG', {}).get('prefix', 'chatroom')}:presence:{conversation_id}"
    )


class MemoryPresence:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, dict[str, float]] = {}

    def touch(self, conversation_id, participant_id, channel_name: str) -> None:
        with self._lock:
            self._entries.setdefault(str(conversation_id), {})[f"{participant_id}|{channel_name}"] = (
                time.time() + TTL_SECONDS
            )

    def touch_many(self, sockets) -> None:
        """Refresh many ``(conversation_id, participant_id, channel_name)`` entries at once."""
        for conversation_id, participant_id, channel_name in sockets:
            self.touch(conversation_id, participant_id, channel_name)

    def remove(self, conversation_id, participant_id, channel_name: str) -> None:
        with self._lock:
            entries = self._entries.get(str(conversation_id), {})
            entries.pop(f"{participant_id}|{channel_name}", None)
            if not entries:
                self._entries.pop(str(conversation_id), None)

    def online(self, conversation_id) -> set[str]:
        now = time.time()
        with self._lock:
            entries = self._entries.get(str(conversation_id), {})
            for member in [m for m, expiry in entries.items() if expiry <= now]:
                del entries[member]
            return {member.split("|", 1)[0] for member in entries}


class RedisPresence:
    def __init__(self, url: str) -> None:
        import redis

        self._redis = redis.Redis.from_url(url)

    def touch(self, conversation_id, participant_id, channel_name: str) -> None:
        key = _key(conversation_id)
        pipe = self._redis.pipeline(transaction=False)
        pipe.zadd(key, {f"{participant_id}|{channel_name}": time.time() + TTL_SECONDS})
        pipe.expire(key, TTL_SECONDS * 2)
        pipe.execute()

    def touch_many(self, sockets) -> None:
        """Refresh many ``(conversation_id, participant_id, channel_name)`` entries in one round trip."""
        expiry = time.time() + TTL_SECONDS
        rooms: dict[str, dict[str, float]] = {}
        for conversation_id, participant_id, channel_name in sockets:
            rooms.setdefault(_key(conversation_id), {})[f"{participant_id}|{channel_name}"] = expiry
        pipe = self._redis.pipeline(transaction=False)
        for key, members in rooms.items():
            pipe.zadd(key, members)
            pipe.expire(key, TTL_SECONDS * 2)
        pipe.execute()

    def remove(self, conversation_id, participant_id, channel_name: str) -> None:
        self._redis.zrem(_key(conversation_id), f"{participant_id}|{channel_name}")

    def online(self, conversation_id) -> set[str]:
        key = _key(conversation_id)
        pipe = self._redis.pipeline(transaction=False)
        pipe.zremrangebyscore(key, "-inf", time.time())
        pipe.zrange(key, 0, -1)
        _, members = pipe.execute()
        return {m.decode().split("|", 1)[0] for m in members}


@lru_cache(maxsize=1)
def _store_for(url: str) -> MemoryPresence | RedisPresence:
    return RedisPresence(url) if url else MemoryPresence()


def store() -> MemoryPresence | RedisPresence:
    """The presence store for the current settings (one per process)."""
    return _store_for(getattr(settings, "REDIS_URL", ""))
