"""Fan-out after commit: frames to the conversation's group, deliveries to the bot channel.

The channel layer is the only bus between processes. A frame is serialised once here and the
same text goes to every socket in the group (consumers forward it as is).
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer

from . import protocol
from .models import Message

logger = logging.getLogger(__name__)

#: Channel the bot worker consumes (``bots`` subscribes here; see bots/worker.py).
BOT_CHANNEL = "bots"


def group_name(conversation_id) -> str:
    return f"conv.{conversation_id}"


def send_frame(conversation_id, frame: dict[str, Any]) -> None:
    """Send one server->client frame to every socket of the conversation."""
    layer = get_channel_layer()
    if layer is None:
        return
    text = protocol.dumps(frame)
    try:
        async_to_sync(layer.group_send)(group_name(conversation_id), {"type": "chat.frame", "text": text})
    except ChannelFull:  # pragma: no cover - capacity is sized for bursts; clients resume by seq
        logger.error("channel layer full for conversation %s; clients will resume by seq", conversation_id)


def message_created(message: Message) -> None:
    send_frame(message.conversation_id, {"type": "message.new", "message": protocol.message_to_dict(message)})


def message_updated(message: Message) -> None:
    send_frame(message.conversation_id, {"type": "message.updated", "message": protocol.message_to_dict(message)})


def send_to_bots(payload: dict[str, Any]) -> None:
    """Hand one delivery to the bot worker(s)."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.send)(BOT_CHANNEL, payload)
    except ChannelFull:
        logger.error("bot channel full: delivery %s to %s dropped", payload.get("type"), payload.get("participant_id"))
