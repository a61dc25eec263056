"""The wire format, in one place: how conversations, participants, messages and frames look
in JSON, over HTTP and over WebSockets alike (see docs/protocol.md)."""

from __future__ import annotations

import json
from typing import Any

from django.core import signing
from django.core.serializers.json import DjangoJSONEncoder
from django.urls import reverse

from .models import Attachment, Conversation, Message, Participant

ATTACHMENT_SALT = "conversations.attachment"


def dumps(obj: Any) -> str:
    """Compact JSON; datetimes as ISO 8601, UUIDs as strings."""
    return json.dumps(obj, cls=DjangoJSONEncoder, separators=(",", ":"), ensure_ascii=False)


def isoformat(value) -> str | None:
    return value.isoformat() if value is not None else None


def conversation_to_dict(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": str(conversation.id),
        "name": conversation.name,
        "status": conversation.status,
        "created_at": isoformat(conversation.created_at),
        "ended_at": isoformat(conversation.ended_at),
        "join_policy": conversation.join_policy,
        "premoderation": conversation.premoderation,
    }


def participant_to_dict(participant: Participant, *, online: bool | None = None) -> dict[str, Any]:
    data = {
        "id": str(participant.id),
        "name": participant.name,
        "kind": participant.kind,
        "role": participant.role,
        "bot": participant.bot_name or None,
        "joined_at": isoformat(participant.joined_at),
        "left_at": isoformat(participant.left_at),
        "muted_until": isoformat(participant.muted_until),
        "banned": participant.banned,
    }
    if online is not None:
        data["online"] = online
    return data


def attachment_url(attachment: Attachment) -> str:
    """A capability URL: only participants ever see it, and it cannot be guessed or altered."""
    signature = signing.Signer(salt=ATTACHMENT_SALT).signature(str(attachment.id))
    return reverse("attachment-download", args=[attachment.id, signature])


def attachment_to_dict(attachment: Attachment) -> dict[str, Any]:
    return {
        "id": str(attachment.id),
        "name": attachment.name,
        "size": attachment.size,
        "mime": attachment.mime,
        "kind": attachment.kind,
        "url": attachment_url(attachment),
    }


def sender_to_dict(participant: Participant | None) -> dict[str, Any] | None:
    if participant is None:
        return None
    return {"id": str(participant.id), "name": participant.name, "kind": participant.kind}


def message_to_dict(message: Message) -> dict[str, Any]:
    """A message as clients see it. A hidden message keeps its seq (no gap) but not its content."""
    hidden = message.hidden
    return {
        "id": str(message.id),
        "seq": message.seq,
        "conversation_id": str(message.conversation_id),
        "sender": sender_to_dict(message.sender),
        "kind": message.kind,
        "text": "" if hidden else message.text,
        "data": {} if hidden else message.data,
        "attachments": [] if hidden else [attachment_to_dict(a) for a in message.attachments.all()],
        "quoted_message_id": str(message.quoted_message_id) if message.quoted_message_id else None,
        "client_id": message.client_id,
        "approval": message.approval,
        "hidden": hidden,
        "created_at": isoformat(message.created_at),
        "edited_at": isoformat(message.edited_at),
    }
