"""Fan-out after commit: frames to the conversation's group, deliveries to the bot channel.

The channel layer is the only bus between processes. A frame is serialised once here and the
same text goes to every socket in the group (consumers forward it as is).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from channels.layers import get_channel_layer

from chatroom import publish

from . import presence, protocol, room_list
from .models import Message, Participant

#: Channel the bot worker consumes (``bots`` subscribes here; see bots/worker.py).
BOT_CHANNEL = "bots"


def group_name(conversation_id) -> str:
    return f"conv.{conversation_id}"


def send_frame(
    conversation_id, frame: dict[str, Any] | str, *, seq: int | None = None, not_to: str | None = None
) -> None:
    """Send one server->client frame (a dict, or its JSON text) to every socket of the
    conversation (but ``not_to``'s: a participant's id).

    ``seq`` travels beside the text so a socket that is replaying history can drop a live
    frame it has already sent without parsing it.
    """
    if get_channel_layer() is None:
        return
    event = {"type": "chat.frame", "text": frame if isinstance(frame, str) else protocol.dumps(frame)}
    if seq is not None:
        event["seq"] = seq
    if not_to is not None:
        event["not_to"] = not_to
    # Queued, not awaited, on a database thread (chatroom/publish.py); a lost frame is found
    # again by seq (a gap, a resume).
    publish.group_send(group_name(conversation_id), event, failure=f"frame for conversation {conversation_id}")


def message_created(message: Message) -> None:
    send_frame(
        message.conversation_id, {"type": "message.new", "message": protocol.message_to_dict(message)}, seq=message.seq
    )


def message_updated(message: Message) -> None:
    send_frame(message.conversation_id, {"type": "message.updated", "message": protocol.message_to_dict(message)})


#: Set by the bots app (``register_bot_sink``): records each delivery in its outbox and wakes
#: a worker, ``sink(payload, bot=..., message=...)``. Without one, deliveries go straight to the
#: channel as before.
_bot_sink: Callable[..., Any] | None = None
#: Set beside the sink: plans a message's deliveries before the message is stored, so that
#: the statement storing it writes them too (``Chat.save_message_on_loop``). It offers
#: ``plan(payload, bot=, message=, room_bots=, stored_with_it=True, no_queries=True)`` (an
#: unsaved delivery, None for none, or ``NeedsDatabase``), ``insert_sql(deliveries, seq_sql,
#: condition)`` and ``written(deliveries)`` for after their commit (bots/outbox.py).
_bot_planner: Any | None = None


def register_bot_sink(sink: Callable[..., Any] | None, planner: Any | None = None) -> None:
    global _bot_sink, _bot_planner
    _bot_sink, _bot_planner = sink, planner


def bot_planner() -> Any | None:
    """The planner registered with the bot sink, if any (see ``_bot_planner``)."""
    return _bot_planner


def send_to_bots(
    payload: dict[str, Any],
    *,
    bot: Participant | None = None,
    message: Message | None = None,
    room_bots: list[Participant] | None = None,
) -> None:
    """Hand one delivery to the bot worker(s). ``bot`` (the bot participant as just read),
    ``message`` (the stored message) and ``room_bots`` (the room's active bots, as just read)
    spare the sink reading them again (bench/)."""
    if _bot_sink is not None:
        _bot_sink(payload, bot=bot, message=message, room_bots=room_bots)
        return
    if get_channel_layer() is None:
        return
    publish.send(BOT_CHANNEL, payload, failure=f"{payload.get('type')} to bot {payload.get('participant_id')}")


def room_fields(conversation_id, snapshot: presence.Snapshot | None = None) -> str:
    """The room's list with its ``online`` flags and the presence version they are at, as the
    JSON text of two fields, ``"participants":[...],"presence_version":N``, for a frame to
    end with (``snapshot``: presence as just read, else read now)."""
    if snapshot is None:
        snapshot = presence.store().snapshot(conversation_id)
    people = room_list.json_text(conversation_id, snapshot.online)
    return f'"participants":{people},"presence_version":{snapshot.version:d}'


def with_fields(frame: dict[str, Any], fields: str) -> str:
    """The JSON text of ``frame`` with ``fields`` (JSON text of more fields) added at its end."""
    return f"{protocol.dumps(frame)[:-1]},{fields}}}"


def participants_changed(conversation_id) -> None:
    """The room's membership changed (a join, a leave, a kick, a role): everyone gets the list."""
    if get_channel_layer() is not None:
        send_frame(conversation_id, with_fields({"type": "participants"}, room_fields(conversation_id)))


def presence_changed(conversation_id, changes: dict[str, tuple[bool, int]]) -> None:
    """Sockets came or went: only the flags they turned, each with its presence version
    (``conversations/presence.py``), not the whole room. A change of one participant skips
    that participant's sockets: the one that came has it in its ``welcome``, and one that went
    has none left."""
    frame = {
        "type": "presence",
        "changes": [
            {"participant_id": pid, "online": online, "version": version} for pid, (online, version) in changes.items()
        ],
    }
    send_frame(conversation_id, frame, not_to=next(iter(changes)) if len(changes) == 1 else None)


# Frames for one participant travel in the conversation's group with a "to", and every other
# socket drops them: a group per participant cost each socket a second subscription (memory,
# a Redis round trip per connect) for events as rare as a kick.


def send_to_participant(conversation_id, participant_id, frame: dict[str, Any]) -> None:
    """Send one frame to every socket of one participant only (e.g. their message was rejected)."""
    if get_channel_layer() is None:
        return
    publish.group_send(
        group_name(conversation_id), {"type": "chat.frame", "text": protocol.dumps(frame), "to": str(participant_id)}
    )


def close_participant(conversation_id, participant_id, code: int, reason: str = "") -> None:
    """Close every socket of one participant (kick, ban), in every process."""
    if get_channel_layer() is None:
        return
    publish.group_send(
        group_name(conversation_id), {"type": "chat.close", "code": code, "reason": reason, "to": str(participant_id)}
    )
