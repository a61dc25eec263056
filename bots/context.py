"""The Context a bot gets with every delivery (after Chatsky's ``chatsky.core.context``).

Turn-indexed: turn 0 holds the start label, the first request is turn 1. Each request is the
delivered message as a dict, ``sender`` included (a room has many people). Responses are the
list of replies the bot gave in that turn. ``misc`` is the bot's own free space. The worker
loads it from ``BotContext`` before the bot runs and saves it after a successful turn, so it
survives restarts of every process; a failed turn leaves the stored Context as it was.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

#: How many turns a Context keeps (oldest dropped; turn 0 always stays). Bounded on purpose.
MAX_TURNS = 200


def _int_keys(data: dict | None) -> dict[int, Any]:
    return {int(k): v for k, v in (data or {}).items()}


def _str_keys(data: dict[int, Any]) -> dict[str, Any]:
    return {str(k): v for k, v in sorted(data.items())}


@dataclass
class Context:
    current_turn_id: int = 0
    requests: dict[int, dict[str, Any]] = field(default_factory=dict)
    responses: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    labels: dict[int, str] = field(default_factory=dict)
    misc: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    # Where the context lives (not part of the export).
    participant_id: str = ""
    conversation_id: str = ""
    bot_name: str = ""

    @classmethod
    def start(cls, start_label: str = "start", **where: str) -> Context:
        return cls(labels={0: start_label}, **where)

    # ---- turns --------------------------------------------------------------------------------

    def add_request(self, request: dict[str, Any]) -> int:
        """Open a new turn with ``request`` (a message dict with its ``sender``)."""
        self.current_turn_id += 1
        self.requests[self.current_turn_id] = request
        self._trim()
        return self.current_turn_id

    def add_response(self, replies: list[dict[str, Any]]) -> None:
        self.responses[self.current_turn_id] = list(replies)

    def add_label(self, label: str) -> None:
        """Where the bot's script is after this turn (Chatsky's node label)."""
        self.labels[self.current_turn_id] = label

    @property
    def last_request(self) -> dict[str, Any] | None:
        return self.requests.get(self.current_turn_id)

    @property
    def last_response(self) -> list[dict[str, Any]] | None:
        return self.responses.get(self.current_turn_id)

    @property
    def last_label(self) -> str | None:
        return self.labels[max(self.labels)] if self.labels else None

    def _trim(self) -> None:
        oldest = self.current_turn_id - MAX_TURNS
        if oldest <= 0:
            return
        for turns in (self.requests, self.responses, self.labels):
            for turn in [t for t in turns if 0 < t <= oldest]:
                del turns[turn]

    # ---- export and import ------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "current_turn_id": self.current_turn_id,
            "requests": _str_keys(self.requests),
            "responses": _str_keys(self.responses),
            "labels": _str_keys(self.labels),
            "misc": self.misc,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, default=str)

    @classmethod
    def from_dict(cls, data: dict[str, Any], **where: str) -> Context:
        def when(value):
            return datetime.fromisoformat(value) if isinstance(value, str) else value

        return cls(
            current_turn_id=int(data.get("current_turn_id", 0)),
            requests=_int_keys(data.get("requests")),
            responses=_int_keys(data.get("responses")),
            labels=_int_keys(data.get("labels")),
            misc=dict(data.get("misc") or {}),
            created_at=when(data.get("created_at")),
            updated_at=when(data.get("updated_at")),
            **where,
        )

    @classmethod
    def from_json(cls, text: str, **where: str) -> Context:
        return cls.from_dict(json.loads(text), **where)
