"""Who is online: the live sockets of each conversation, shared by every server process.

Each socket is one entry ``<participant id>|<channel name>`` with an expiry time; a socket
refreshes its entry while it lives, so the entries of a process that died fade out by
themselves. With ``REDIS_URL`` the entries are a sorted set per conversation in Redis (every
process sees them); without it, a dict in this process (the embedded default is one process).

A socket's coming and going says whose ``online`` flag it turned (``Snapshot.changes``: the
first socket of a person, the last one, or entries that expired meanwhile), and every such
change takes the room's next *presence version*. Clients are told the changes alone (a
``presence`` frame, ``conversations/roster.py``) and the whole room only when they connect or
its membership changes (``participants``, at the version it was read at): frames from several
processes may arrive out of order, and a client keeps, per person, the flag of the highest
version it has seen. Each operation is atomic (a Lua script in Redis, a lock in memory), so two
sockets of one person coming and going at once on two processes cannot both be "the last".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from functools import lru_cache
from typing import NamedTuple

from django.conf import settings

TTL_SECONDS = 60  # an entry lives this long without a refresh
REFRESH_SECONDS = 20  # how often a socket refreshes its entry
KEEP_SECONDS = TTL_SECONDS * 2  # a room's keys outlive its last entry this long


class Snapshot(NamedTuple):
    """A room's presence after an operation."""

    online: frozenset[str]  # participant ids with a live socket
    version: int  # the room's presence version this state is at
    changes: dict[str, bool]  # the flags this operation turned: participant id -> online


def _prefix() -> str:
    return f"{settings.CHANNEL_LAYERS['default'].get('CONFIG', {}).get('prefix', 'chatroom')}:presence"


def _key(conversation_id) -> str:
    return f"{_prefix()}:{conversation_id}"


def _version_key(conversation_id) -> str:
    return f"{_prefix()}-version:{conversation_id}"


def _people(members: Iterable[str]) -> set[str]:
    return {member.split("|", 1)[0] for member in members}


def _changes(before: set[str], after: set[str]) -> dict[str, bool]:
    return {**{p: True for p in after - before}, **{p: False for p in before - after}}


class MemoryPresence:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, dict[str, float]] = {}
        self._versions: dict[str, int] = {}

    def _apply(self, conversation_id, member: str | None, came: bool) -> Snapshot:
        room = str(conversation_id)
        now = time.time()
        with self._lock:
            entries = self._entries.setdefault(room, {})
            before = _people(entries)
            for stale in [m for m, expiry in entries.items() if expiry <= now]:
                del entries[stale]
            if member is not None:
                if came:
                    entries[member] = now + TTL_SECONDS
                else:
                    entries.pop(member, None)
            after = _people(entries)
            if not entries:
                del self._entries[room]
            changes = _changes(before, after)
            if changes:
                self._versions[room] = self._versions.get(room, 0) + 1
            return Snapshot(frozenset(after), self._versions.get(room, 0), changes)

    def came(self, conversation_id, participant_id, channel_name: str) -> Snapshot:
        """A socket of the participant is open (or still is)."""
        return self._apply(conversation_id, f"{participant_id}|{channel_name}", True)

    def went(self, conversation_id, participant_id, channel_name: str) -> Snapshot:
        """A socket of the participant closed."""
        return self._apply(conversation_id, f"{participant_id}|{channel_name}", False)

    def snapshot(self, conversation_id) -> Snapshot:
        return self._apply(conversation_id, None, False)

    def touch_many(self, sockets) -> list[tuple[str, Snapshot]]:
        """Refresh many ``(conversation_id, participant_id, channel_name)`` entries at once; an
        entry that is gone comes back as ``came`` does (``RedisPresence.touch_many``)."""
        expiry = time.time() + TTL_SECONDS
        gone = []
        with self._lock:
            for conversation_id, participant_id, channel_name in sockets:
                entries = self._entries.get(str(conversation_id))
                member = f"{participant_id}|{channel_name}"
                if entries is not None and member in entries:
                    entries[member] = expiry
                else:
                    gone.append((conversation_id, participant_id, channel_name))
        return _turned((room, self.came(room, person, channel)) for room, person, channel in gone)


#: KEYS: the room's sorted set, its version. ARGV: now, the entry's expiry, the keys' life,
#: "came" / "went" / "read", the entry. Returns the version, the participants online (their
#: ids in one string: one reply to read, not one per socket), the changes as alternating
#: participant ids and "1" / "0".
_APPLY = """
local key, vkey = KEYS[1], KEYS[2]
local op, member = ARGV[4], ARGV[5]
local function people(members)
  local set = {}
  for _, m in ipairs(members) do set[string.match(m, '^[^|]*')] = true end
  return set
end
local before = people(redis.call('ZRANGE', key, 0, -1))
redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[1])
if op == 'came' then
  redis.call('ZADD', key, ARGV[2], member)
elseif op == 'went' then
  redis.call('ZREM', key, member)
end
local entries = redis.call('ZRANGE', key, 0, -1)
local after = people(entries)
local online, changes = {}, {}
for p in pairs(after) do
  table.insert(online, p)
  if not before[p] then table.insert(changes, p); table.insert(changes, '1') end
end
for p in pairs(before) do if not after[p] then table.insert(changes, p); table.insert(changes, '0') end end
local version
if #changes > 0 then
  version = redis.call('INCR', vkey)
else
  version = tonumber(redis.call('GET', vkey) or '0')
end
if #entries > 0 then redis.call('EXPIRE', key, ARGV[3]) end
if version > 0 then redis.call('EXPIRE', vkey, ARGV[3]) end
return {version, table.concat(online, ' '), changes}
"""


class RedisPresence:
    def __init__(self, url: str) -> None:
        import redis

        self._redis = redis.Redis.from_url(url)
        self._script = self._redis.register_script(_APPLY)

    def _apply(self, conversation_id, op: str, member: str = "") -> Snapshot:
        now = time.time()
        version, online, flat = self._script(
            keys=[_key(conversation_id), _version_key(conversation_id)],
            args=[now, now + TTL_SECONDS, KEEP_SECONDS, op, member],
        )
        people = [p.decode() for p in flat[::2]]
        changes = {p: flag == b"1" for p, flag in zip(people, flat[1::2], strict=True)}
        return Snapshot(frozenset(online.decode().split()), int(version), changes)

    def came(self, conversation_id, participant_id, channel_name: str) -> Snapshot:
        """A socket of the participant is open (or still is)."""
        return self._apply(conversation_id, "came", f"{participant_id}|{channel_name}")

    def went(self, conversation_id, participant_id, channel_name: str) -> Snapshot:
        """A socket of the participant closed."""
        return self._apply(conversation_id, "went", f"{participant_id}|{channel_name}")

    def snapshot(self, conversation_id) -> Snapshot:
        return self._apply(conversation_id, "read")

    def touch_many(self, sockets) -> list[tuple[str, Snapshot]]:
        """Refresh many ``(conversation_id, participant_id, channel_name)`` entries in one round
        trip (the heartbeat: entries are there, so no flag turns). An entry that is gone (it
        expired while its socket lived: Redis out of reach, a stalled process; and the next
        operation in its room told everyone its person went) comes back as ``came`` does, and
        the flags that turns are returned, to be sent: ``(conversation_id, Snapshot)``."""
        expiry = time.time() + TTL_SECONDS
        rooms: dict[str, dict[str, float]] = {}  # by conversation id
        for conversation_id, participant_id, channel_name in sockets:
            rooms.setdefault(str(conversation_id), {})[f"{participant_id}|{channel_name}"] = expiry
        pipe = self._redis.pipeline(transaction=False)
        for room, members in rooms.items():
            pipe.zmscore(_key(room), list(members))
            pipe.zadd(_key(room), members, xx=True)  # only the entries still there
            pipe.expire(_key(room), KEEP_SECONDS)
            pipe.expire(_version_key(room), KEEP_SECONDS)
        replies = pipe.execute()
        gone = [
            (room, member.split("|", 1))
            for (room, members), scores in zip(rooms.items(), replies[::4], strict=True)
            for member, score in zip(members, scores, strict=True)
            if score is None
        ]
        return _turned((room, self.came(room, person, channel)) for room, (person, channel) in gone)


def _turned(snapshots: Iterable[tuple[str, Snapshot]]) -> list[tuple[str, Snapshot]]:
    return [(str(room), snapshot) for room, snapshot in snapshots if snapshot.changes]


@lru_cache(maxsize=1)
def _store_for(url: str) -> MemoryPresence | RedisPresence:
    return RedisPresence(url) if url else MemoryPresence()


def store() -> MemoryPresence | RedisPresence:
    """The presence store for the current settings (one per process)."""
    return _store_for(getattr(settings, "REDIS_URL", ""))
