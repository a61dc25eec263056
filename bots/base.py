"""What a Python bot author needs: subclass ``Bot``, implement ``on_message``. See docs/bots.md.

    from bots.base import Bot

    class Shout(Bot):
        def on_message(self, message, context):
            return message.text.upper()

``on_message`` and ``on_status`` may be plain functions or coroutines; plain ones run in a
thread, so they may block or use the ORM. They return ``None``, one reply or a list (a ``str``,
a builder's ``Reply`` from ``bots.replies`` or a reply dict). The worker builds one instance
per bot participant (one room) and keeps it, so attributes survive between messages of the
same process; what must survive restarts belongs in ``context.misc``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async

from . import replies
from .context import Context
from .replies import Reply, ReplyError

__all__ = ["Bot", "BotMessage", "BotStatus", "Context", "Reply", "ReplyError", "replies"]


@dataclass
class BotMessage:
    """A delivered message, read-only for the bot. ``raw`` is the wire dict (docs/protocol.md)."""

    id: str
    conversation_id: str
    seq: int | None
    kind: str
    text: str
    data: dict[str, Any]
    sender: dict[str, Any] | None  # {"id", "name", "kind"}
    attachments: list[dict[str, Any]] = field(default_factory=list)
    quoted_message_id: str | None = None
    redirected: bool = False  # handed over by the manager, not by the trigger
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], *, redirected: bool = False) -> BotMessage:
        return cls(
            id=raw.get("id", ""),
            conversation_id=raw.get("conversation_id", ""),
            seq=raw.get("seq"),
            kind=raw.get("kind", "text"),
            text=raw.get("text", "") or "",
            data=raw.get("data") or {},
            sender=raw.get("sender"),
            attachments=raw.get("attachments") or [],
            quoted_message_id=raw.get("quoted_message_id"),
            redirected=redirected,
            raw=raw,
        )

    @property
    def sender_name(self) -> str:
        return (self.sender or {}).get("name", "")

    @property
    def from_bot(self) -> bool:
        return (self.sender or {}).get("kind") == "bot"

    @property
    def option(self) -> Any:
        """The value of the chosen option when this message answers an options message."""
        return (self.data.get("option") or {}).get("value") if isinstance(self.data.get("option"), dict) else None

    def mentions(self, name: str) -> bool:
        return mentions(self.text, name)


@dataclass
class BotStatus:
    """A status event: joined, left, removed, ended, typing (``active``), pending (manager)."""

    event: str
    participant: dict[str, Any] | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> BotStatus:
        rest = {k: v for k, v in raw.items() if k not in ("event", "participant")}
        return cls(event=raw.get("event", ""), participant=raw.get("participant"), data=rest)


def mentions(text: str, name: str) -> bool:
    """Whether ``text`` @mentions ``name`` (case-insensitive, a whole name)."""
    return re.search(rf"(?<![\w@])@{re.escape(name)}(?![\w-])", text or "", re.IGNORECASE) is not None


class Bot:
    """Base class of Python bots. Override ``on_message`` (and ``on_status`` to get statuses)."""

    #: Also receive other bots' messages (loops are cut by the hop limit). Spec "bot_messages" overrides.
    accepts_bot_messages: bool = False
    #: Also receive typing statuses (only when ``on_status`` is overridden).
    wants_typing: bool = False
    #: Label of turn 0 in a new Context.
    start_label: str = "start"
    #: Its replies and its Context are all it does (no database, no network, no state of its
    #: own that matters): the worker may then run a delivery as soon as it is woken for it,
    #: before the delivery is claimed, and drop what it returned if the delivery turns out not
    #: to be its to run then (bots/ahead.py: one round trip less before the reply).
    pure: bool = False

    # Set by the worker before the first delivery (``_bind``).
    name: str = ""
    participant_id: str = ""
    conversation_id: str = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs

    def on_message(self, message: BotMessage, context: Context) -> Any:
        """Answer a message: return None, a reply or a list of replies."""
        return None

    def on_status(self, status: BotStatus, context: Context) -> Any:
        """React to a status event; may also return replies. Only delivered when overridden."""
        return None

    # ---- proactive messages -----------------------------------------------------------------

    def send(self, *items: Any, conversation_id: str | None = None) -> list:
        """Post replies now, outside any delivery (a timer, a thread, a later task).

        Synchronous; from a coroutine use ``await self.asend(...)``. ``conversation_id``
        defaults to this instance's room; another room works if this bot is a participant there.
        """
        from .delivery import send_proactive

        return send_proactive(self, replies.coerce(list(items)), conversation_id or self.conversation_id)

    async def asend(self, *items: Any, conversation_id: str | None = None) -> list:
        return await sync_to_async(self.send, thread_sensitive=False)(*items, conversation_id=conversation_id)

    # ---- plumbing -----------------------------------------------------------------------------

    def _bind(self, name: str, participant_id: str, conversation_id: str) -> None:
        self.name, self.participant_id, self.conversation_id = name, participant_id, conversation_id

    def participant(self):
        """This bot's Participant row (sync; the ORM)."""
        from conversations.models import Participant

        return Participant.objects.get(pk=self.participant_id)

    def chat(self, conversation_id: str | None = None):
        """The ``Chat`` controller of this bot's room (sync), for moderation and redirects."""
        from conversations.chat import Chat

        return Chat.get_chat(conversation_id or self.conversation_id)

    @classmethod
    def overrides_on_status(cls) -> bool:
        return cls.on_status is not Bot.on_status
