"""The manager bot: joins every conversation (``CHAT_BOT_MANAGER``), sees every message, bot
messages included, and carries out commands of the room's owner and moderators:

    /help                          what follows
    /pending                       bot messages waiting for approval (pre-moderated rooms)
    /approve <id>|all              let a pending message in (or quote it and say /approve)
    /reject <id>                   refuse a pending message (or quote it)
    /redirect <bot> [<bot> ...] [-- text]
                                   hand the quoted message to those bots only, optionally with
                                   another text (``/redirect <message id> <bot> ...`` works too)

Optional kwargs: ``routes`` ({regex: [bot, ...]}: a human message that matches and mentions
no bot is redirected to those bots), ``approve_bots`` (bot names whose messages it approves by
itself) and ``announce_pending`` (tell the room when a bot message waits; default on).

Anything it refuses (a malformed command, an unknown bot, a message that is missing or in
another conversation, a member who is not a moderator) is logged and answered, never raised.
"""

from __future__ import annotations

import logging
import re
import uuid

from bots.base import Bot, BotMessage, BotStatus, Context, mentions
from conversations.errors import ChatError
from conversations.models import Message, Participant

logger = logging.getLogger(__name__)

HELP = (
    "Commands (owner and moderators): /pending, /approve <id>|all, /reject <id>, "
    "/redirect <bot> [<bot> ...] [-- text] (quote the message to redirect)."
)


class Refused(Exception):
    """A command the manager will not carry out; the message is the reason."""


class ManagerBot(Bot):
    accepts_bot_messages = True

    def __init__(
        self,
        routes: dict[str, list[str]] | None = None,
        approve_bots: list[str] | tuple[str, ...] = (),
        announce_pending: bool = True,
    ) -> None:
        super().__init__()
        self.routes = [(re.compile(pattern, re.IGNORECASE), list(names)) for pattern, names in (routes or {}).items()]
        self.approve_bots = set(approve_bots)
        self.announce_pending = announce_pending

    # ---- messages ------------------------------------------------------------------------------

    def on_message(self, message: BotMessage, context: Context):
        if message.from_bot or message.sender is None:
            return None  # it watches bots (the Context records them) but takes no orders from them
        text = message.text.strip()
        if text.startswith("/"):
            try:
                return self.command(message, text)
            except (Refused, ChatError) as error:
                reason = getattr(error, "detail", None) or str(error)
                logger.warning("manager refused %r from %s: %s", text[:80], message.sender_name, reason)
                return f"Refused: {reason}"
        self.route(message)
        return None

    def route(self, message: BotMessage) -> None:
        chat = self.chat()
        bots = {p.bot_name for p in chat._active_bots()} - {self.name}
        if any(mentions(message.text, name) for name in bots):
            return  # addressed explicitly: the trigger delivers it
        for pattern, targets in self.routes:
            if pattern.search(message.text):
                present = [t for t in targets if t in bots]
                if not present:
                    logger.warning("manager route %r: none of %s is in this room", pattern.pattern, targets)
                    continue
                chat._redirect_message(Message.objects.get(pk=message.id), present)
                return

    def command(self, message: BotMessage, text: str):
        self._check_moderator(message)
        name, _, rest = text[1:].partition(" ")
        name, rest = name.lower(), rest.strip()
        if name == "help":
            return HELP
        if name == "pending":
            return self._pending()
        if name == "approve":
            return self._approve(message, rest)
        if name == "reject":
            target = self._message(rest or message.quoted_message_id, "reject")
            self.chat().reject_message(self.participant(), target, reason=f"rejected for {message.sender_name}")
            return f"Rejected the message of {target.sender.name if target.sender else 'the system'}."
        if name == "redirect":
            return self._redirect(message, rest)
        raise Refused(f"unknown command /{name}; /help lists them")

    def _check_moderator(self, message: BotMessage) -> None:
        sender_id = (message.sender or {}).get("id")
        sender = Participant.objects.filter(pk=sender_id, conversation_id=self.conversation_id).first()
        if sender is None or sender.role not in (Participant.Role.OWNER, Participant.Role.MODERATOR):
            raise Refused("only the owner and moderators can give me commands")

    def _message(self, ref: str | None, verb: str) -> Message:
        if not ref:
            raise Refused(f"/{verb} needs a message id, or quote the message")
        try:
            pk = uuid.UUID(str(ref).split()[0])
        except ValueError:
            raise Refused(f"{ref!r} is not a message id") from None
        message = Message.objects.select_related("sender").filter(pk=pk, conversation_id=self.conversation_id).first()
        if message is None:
            raise Refused("no such message in this conversation")
        return message

    def _pending_messages(self) -> list[Message]:
        return list(
            Message.objects.select_related("sender")
            .filter(conversation_id=self.conversation_id, approval=Message.Approval.PENDING)
            .order_by("created_at")[:20]
        )

    def _pending(self) -> str:
        waiting = self._pending_messages()
        if not waiting:
            return "Nothing is waiting for approval."
        return "\n".join(f"{m.id} {m.sender.name}: {m.text[:80]}" for m in waiting)

    def _approve(self, message: BotMessage, rest: str) -> str:
        chat, me = self.chat(), self.participant()
        if rest.lower() == "all":
            targets = self._pending_messages()
        else:
            targets = [self._message(rest or message.quoted_message_id, "approve")]
        approved = [t for t in targets if chat.approve_message(me, t, reason=f"approved for {message.sender_name}")]
        return f"Approved {len(approved)} message(s)." if approved else "Nothing to approve."

    def _redirect(self, message: BotMessage, rest: str) -> str:
        names, _, override = rest.partition("--")
        words = names.split()
        quoted = message.quoted_message_id
        if words and re.fullmatch(r"[0-9a-fA-F-]{32,36}", words[0]):
            quoted, words = words[0], words[1:]
        targets = [w.lstrip("@") for w in words]
        if not targets:
            raise Refused("/redirect needs at least one bot name")
        target_message = self._message(quoted, "redirect")
        if not target_message.is_visible:
            raise Refused("only a visible message can be redirected")
        overrides = {"text": override.strip()} if override.strip() else None
        chosen = self.chat()._redirect_message(target_message, targets, overrides)
        return f"Redirected to {', '.join(p.name for p in chosen)}."

    # ---- statuses ------------------------------------------------------------------------------

    def on_status(self, status: BotStatus, context: Context):
        if status.event != "pending":
            return None
        pending = status.data.get("message") or {}
        sender = (pending.get("sender") or {}).get("name", "?")
        if sender in self.approve_bots:
            try:
                self.chat().approve_message(self.participant(), pending.get("id"), reason=f"{sender} is trusted")
            except ChatError as error:
                logger.warning("manager could not approve %s: %s", pending.get("id"), error.detail)
            return None
        if self.announce_pending:
            return f"{sender} wants to say: {pending.get('text', '')[:80]!r}. /approve {pending.get('id')} or /reject."
        return None
