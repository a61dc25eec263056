"""The wire format, in one place: how conversations, participants, messages and frames look
in JSON, over HTTP and over WebSockets alike (see docs/protocol.md)."""

from __future__ import annotations

import datetime
import json
from typing import Any

import orjson
from django.core import signing
from django.core.serializers.json import DjangoJSONEncoder
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from .errors import ChatError
from .models import Attachment, Conversation, Message, ModerationAction, Participant, Report

ATTACHMENT_SALT = "conversations.attachment"


_ENCODER = DjangoJSONEncoder()


def dumps(obj: Any) -> str:
    """Compact JSON; datetimes as ISO 8601, UUIDs as strings.

    orjson (several times faster; bench/) with Django's encoder for what it does not know
    (datetimes go there too, so the text is the same as ``json.dumps`` gives); ``json`` for
    the rest orjson refuses (integers past 64 bits, non-string keys)."""
    try:
        return orjson.dumps(obj, default=_ENCODER.default, option=orjson.OPT_PASSTHROUGH_DATETIME).decode()
    except TypeError:
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
        "last_read_seq": participant.last_read_seq,
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


def report_to_dict(report: Report) -> dict[str, Any]:
    return {
        "id": str(report.id),
        "conversation_id": str(report.conversation_id),
        "message_id": str(report.message_id),
        "reason": report.reason,
        "status": report.status,
        "created_at": isoformat(report.created_at),
    }


def moderation_ack(action: str, target: str | None, record: ModerationAction | None) -> dict[str, Any]:
    """The answer to a ``moderate`` frame; ``changed`` is false when there was nothing to do."""
    return {
        "type": "moderate.ack",
        "action": action,
        "target": target,
        "changed": record is not None,
        "id": record.pk if record is not None else None,
    }


# ---- client -> server frames ---------------------------------------------------------------


class ProtocolError(ChatError):
    """A frame that cannot be understood; the socket stays open."""

    code = "bad_frame"
    status = 400


# type -> {field: (types, required)}; anything else in a frame is ignored.
CLIENT_FRAMES: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "message.send": {
        "client_id": ((str,), True),
        "text": ((str,), False),
        "kind": ((str,), False),
        "data": ((dict,), False),
        "attachments": ((list,), False),
        "quoted_message_id": ((str,), False),
    },
    "resume": {"after_seq": ((int,), True)},
    "typing": {"active": ((bool,), True)},
    "read": {"seq": ((int,), True)},
    "option.choose": {
        "message_id": ((str,), True),
        "value": ((str, int, float, bool), True),
        "client_id": ((str,), False),
    },
    "ping": {},
    "report": {"message_id": ((str,), True), "reason": ((str,), False)},
    # target: a message id (hide, unhide, approve, reject) or a participant id (mute, unmute,
    # kick, ban, unban); none for end and settings. until: ISO 8601, for mute.
    "moderate": {
        "action": ((str,), True),
        "target": ((str,), False),
        "reason": ((str,), False),
        "until": ((str,), False),
        "premoderation": ((str,), False),
        "join_policy": ((str,), False),
    },
}


def parse_until(value: str) -> Any:
    """An ISO 8601 date-time (a naive one is taken as UTC) -> aware datetime."""
    try:
        until = parse_datetime(value)
    except ValueError:
        until = None
    if until is None:
        raise ProtocolError("'until' must be an ISO 8601 date-time", code="invalid_field")
    return until if timezone.is_aware(until) else timezone.make_aware(until, datetime.UTC)


def parse(text: str | None, max_size: int) -> dict[str, Any]:
    """Validate one client frame and return it as a dict; raise ProtocolError with a code."""
    if text is None:
        raise ProtocolError("frames are JSON text, not binary", code="bad_json")
    if len(text) > max_size:
        raise ProtocolError(f"a frame may be at most {max_size} bytes", code="frame_too_large")
    try:
        frame = json.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolError("a frame is one JSON object", code="bad_json") from None
    if not isinstance(frame, dict):
        raise ProtocolError("a frame is one JSON object", code="bad_json")
    kind = frame.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("every frame has a string 'type'", code="missing_field")
    spec = CLIENT_FRAMES.get(kind)
    if spec is None:
        raise ProtocolError(f"unknown frame type {kind!r}", code="unknown_type")
    for field, (types, required) in spec.items():
        if field not in frame or frame[field] is None:
            if required:
                raise ProtocolError(f"{kind} needs '{field}'", code="missing_field")
            continue
        value = frame[field]
        # bool is an int in Python; a seq of true is still not a number.
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            names = " or ".join(t.__name__ for t in types)
            raise ProtocolError(f"'{field}' must be {names}", code="invalid_field")
    if kind == "moderate" and frame.get("until") is not None:
        frame["until"] = parse_until(frame["until"])
    return frame


def error_frame(error: ChatError, client_id: str | None = None) -> dict[str, Any]:
    frame = {"type": "error", "code": error.code, "detail": error.detail}
    if getattr(error, "until", None) is not None:  # Muted: when sending is allowed again
        frame["until"] = isoformat(error.until)
    if client_id is not None:
        frame["client_id"] = client_id
    return frame
