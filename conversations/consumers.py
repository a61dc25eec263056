"""The conversation WebSocket (``/ws/conversations/<id>/``). Thin: parse, call Chat, send.

Order and completeness: the socket joins the conversation's group before it reads history, and
Channels hands a consumer one event at a time, so live frames that arrive during a replay wait
until it ends; a live frame whose ``seq`` the replay already sent is dropped. The client sees
every message once, in ``seq`` order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any
from urllib.parse import parse_qs

from autobahn.exception import Disconnected
from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from chatroom.inbox import SocketInbox, text_frame

from . import events, heartbeat, presence, protocol, roster, socket_reads
from .auth import authorize, session_of_socket, socket_participant
from .chat import Chat
from .dispatching import PumpedConsumerMixin
from .errors import ChatError, NotFound, NotParticipant, RateLimited

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
REPLAY_PAGE = 500


class ConversationConsumer(PumpedConsumerMixin, AsyncWebsocketConsumer):
    chat: Chat | None = None
    participant = None
    me = ""  # the participant id, once authorized

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Channels' own dispatch hops to the one sync thread (``close_old_connections``) before
        *every* handler: each ``chat.frame`` delivery then queued behind the database work of
        every socket of the process (bench/: ~2x the CPU and seconds of latency at N=200).
        Every database call here goes through ``database_sync_to_async``, which closes old
        connections itself, so the hop is skipped."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def connect(self) -> None:
        # Every seq up to this one is on the client, or was history when it connected.
        self.last_seq_sent = 0
        self.typing_task: asyncio.Task | None = None
        # Accept first: a close code sent before the handshake completes never reaches the client.
        await self.accept()
        query = parse_qs(self.scope.get("query_string", b"").decode())
        token = (query.get("token") or [""])[0]
        try:
            self.chat, self.participant = await self._authorize(
                self.scope["url_route"]["kwargs"]["conversation_id"], token
            )
        except ChatError as error:
            code = {401: CLOSE_UNAUTHENTICATED, 404: CLOSE_NOT_FOUND}.get(error.status, CLOSE_FORBIDDEN)
            await self.send_frame(protocol.error_frame(error))
            await self.close(code)
            return
        self.tokens, self.tokens_at = float(self.chat.limits["FRAME_BURST"]), time.monotonic()
        self.group = events.group_name(self.chat.conversation.pk)
        self.me = str(self.participant.pk)  # frames "to" someone else are dropped (events.py)
        # Waits for Redis's confirmation of the subscription (chatroom/layers.py).
        await self.channel_layer.group_add(self.group, self.channel_name)
        # The newest seq is read only now, after subscribing: what is older is history (the
        # client resumes from it), what is newer arrives as frames; nothing falls in between.
        # The same database-thread hop marks the socket online and reads the room for it: the
        # room's list goes to this socket alone, the others hear of its flag alone (roster.py).
        self.last_seq_sent, room, online = await database_sync_to_async(self._came_online)()
        welcome = {
            "type": "welcome",
            "conversation": protocol.conversation_to_dict(self.chat.conversation),
            "participant": protocol.participant_to_dict(self.participant),
            "last_seq": self.last_seq_sent,
        }
        await self.send(text_data=events.with_fields(welcome, room))
        roster.presence_changed(self.chat.conversation.pk, online.changes, online.version)
        heartbeat.register(self.channel_name, self.chat.conversation.pk, self.participant.pk)
        after = (query.get("after_seq") or [None])[0]
        if after is not None and after.isdigit():
            await self.replay(int(after))

    async def disconnect(self, code: int) -> None:
        was_typing = self.typing_task is not None
        if self.typing_task is not None:
            self.typing_task.cancel()
        heartbeat.unregister(self.channel_name)  # before the entry goes: no refresh brings it back
        if self.chat is None or self.participant is None:
            return
        if was_typing:  # a client that vanishes does not stay "typing"
            await database_sync_to_async(self.chat.set_typing)(self.participant, False)
        await self.channel_layer.group_discard(self.group, self.channel_name)
        try:
            gone = await database_sync_to_async(self._went_offline)()
        except Exception:  # never let a presence hiccup turn a close into a crash
            logger.exception("presence update failed on disconnect")
            return
        roster.presence_changed(self.chat.conversation.pk, gone.changes, gone.version)

    # ---- client frames --------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.chat is None:
            return
        client_id = None
        try:
            self._spend_token()
            frame = protocol.parse(text_data, self.chat.limits["MAX_FRAME_SIZE"])
            client_id = frame.get("client_id") if isinstance(frame.get("client_id"), str) else None
            handler = getattr(self, "on_" + frame["type"].replace(".", "_"))
            await handler(frame)
        except ChatError as error:
            await self.send_frame(protocol.error_frame(error, client_id))
        except Exception:
            logger.exception("frame from participant %s failed", getattr(self.participant, "pk", None))
            await self.send_frame(
                {
                    "type": "error",
                    "code": "internal",
                    "detail": "the server could not do that",
                    **({"client_id": client_id} if client_id else {}),
                }
            )

    async def on_message_send(self, frame: dict[str, Any]) -> None:
        # The common send stays on the event loop; anything else, or a refusal, takes the
        # database thread, which stores or answers it as always (Chat.save_message_on_loop).
        message = await self.chat.save_message_on_loop(self.participant, frame)
        if message is None:
            message = await database_sync_to_async(self.chat.save_message)(self.participant, frame)
        await self.send_frame(
            {
                "type": "message.ack",
                "client_id": frame["client_id"],
                "id": str(message.id),
                "seq": message.seq,
                "approval": message.approval,
            }
        )
        if self.typing_task is not None:
            await self.on_typing({"active": False})

    async def on_option_choose(self, frame: dict[str, Any]) -> None:
        message = await database_sync_to_async(self.chat.choose_option)(
            self.participant, frame["message_id"], frame["value"], frame.get("client_id")
        )
        await self.send_frame(
            {
                "type": "message.ack",
                "client_id": frame.get("client_id"),
                "id": str(message.id),
                "seq": message.seq,
                "approval": message.approval,
            }
        )

    async def on_resume(self, frame: dict[str, Any]) -> None:
        await self.replay(max(0, frame["after_seq"]))

    async def on_typing(self, frame: dict[str, Any]) -> None:
        active = frame["active"]
        if self.typing_task is not None:
            self.typing_task.cancel()
            self.typing_task = None
        await database_sync_to_async(self.chat.set_typing)(self.participant, active)
        if active:
            self.typing_task = asyncio.create_task(self._typing_expires())

    async def on_read(self, frame: dict[str, Any]) -> None:
        await database_sync_to_async(self.chat.mark_read)(self.participant, frame["seq"])

    async def on_ping(self, frame: dict[str, Any]) -> None:
        await self.send_frame({"type": "pong"})

    async def on_report(self, frame: dict[str, Any]) -> None:
        report = await database_sync_to_async(self.chat.report_message)(
            self.participant, frame["message_id"], frame.get("reason") or ""
        )
        await self.send_frame({"type": "report.ack", **protocol.report_to_dict(report)})

    async def on_moderate(self, frame: dict[str, Any]) -> None:
        record = await database_sync_to_async(self.chat.moderate)(
            self.participant,
            frame["action"],
            frame.get("target"),
            reason=frame.get("reason") or "",
            until=frame.get("until"),
            premoderation=frame.get("premoderation"),
            join_policy=frame.get("join_policy"),
        )
        await self.send_frame(protocol.moderation_ack(frame["action"], frame.get("target"), record))

    # ---- replay ---------------------------------------------------------------------------

    async def replay(self, after_seq: int) -> None:
        """Send every message after ``after_seq`` from the database, oldest first (also ones
        sent before: the client asked), then let live frames continue after the newest."""
        cursor = max(after_seq, 0)
        while True:
            messages, has_more = await database_sync_to_async(self._history_page)(cursor)
            for text, seq in messages:
                await self.send(text_data=text)
                self.last_seq_sent = max(self.last_seq_sent, seq)
                cursor = seq
            if not has_more:
                break

    def _newest_seq(self) -> int:
        return socket_reads.newest_seq(self.chat.conversation.pk)

    def _history_page(self, after_seq: int) -> tuple[list[tuple[str, int]], bool]:
        messages, has_more = self.chat.history(after_seq=after_seq, limit=REPLAY_PAGE)
        return [
            (protocol.dumps({"type": "message.new", "message": protocol.message_to_dict(m)}), m.seq) for m in messages
        ], has_more

    # ---- group events ---------------------------------------------------------------------

    def handle_now(self, event: dict[str, Any], inbox: SocketInbox) -> bool:
        """``chat_frame`` for the common frames, while this consumer waits for events (nothing
        queued before them): the next message by seq, and any frame without a seq (presence,
        typing, read marks) for this socket, written straight to it
        (``chatroom.inbox.SocketInbox``). Anything else (an overtaking message, other events)
        returns False and is queued for the handlers, behind nothing. Its UTF-8 and its
        WebSocket frame are made once per message for every socket of the process (they share
        the event): a room's presence and typing frames went through Channels' whole send for
        each socket (bench/: the connect rate in rooms of 100)."""
        if event.get("type") != "chat.frame" or self.chat is None:
            return False
        seq = event.get("seq")
        if seq is None:
            if not self._for_me(event):
                return True  # dropped
        elif seq != self.last_seq_sent + 1:
            return False
        data, frame = event.get("utf8"), event.get("frame")
        if data is None:  # made once for every socket of the process: they share the event
            data = event["utf8"] = event["text"].encode()
            frame = event["frame"] = text_frame(data)
        inbox.write_text(data, frame)  # a client that has just gone resumes by seq, as after send()
        if seq is not None:
            self.last_seq_sent = seq
        return True

    def _for_me(self, event: dict[str, Any]) -> bool:
        """Not a frame for someone else (events.send_to_participant), nor news of this
        participant for everyone else (events.presence_changed)."""
        return event.get("to", self.me) == self.me and event.get("not_to") != self.me

    async def chat_frame(self, event: dict[str, Any]) -> None:
        seq = event.get("seq")
        if seq is None:
            if self._for_me(event):
                await self.send(text_data=event["text"])
            return
        if seq <= self.last_seq_sent:
            return  # already sent by a replay or a gap fill
        if seq > self.last_seq_sent + 1:
            # This frame overtook an earlier one (frames come from several processes: daphne
            # and bot workers). A seq is taken under the conversation's row lock, so every
            # smaller one is committed already: fill the gap from the database, in order.
            await self.replay(self.last_seq_sent)
            if seq <= self.last_seq_sent:
                return
        await self.send(text_data=event["text"])
        self.last_seq_sent = seq

    async def chat_close(self, event: dict[str, Any]) -> None:
        if event.get("to", self.me) != self.me:
            return
        if event.get("reason"):
            await self.send_frame({"type": "error", "code": "removed", "detail": event["reason"]})
        await self.close(event.get("code", CLOSE_FORBIDDEN))

    # ---- helpers --------------------------------------------------------------------------

    async def send_frame(self, frame: dict[str, Any]) -> None:
        await self.send(text_data=protocol.dumps(frame))

    async def send(self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False) -> None:
        """A frame for a client that has just gone (its close is still on the way to us) is
        dropped: it resumes by seq when it comes back. daphne raises autobahn's Disconnected."""
        try:
            await super().send(text_data=text_data, bytes_data=bytes_data, close=close)
        except Disconnected:
            pass

    def _spend_token(self) -> None:
        now = time.monotonic()
        limits = self.chat.limits
        self.tokens = min(limits["FRAME_BURST"], self.tokens + (now - self.tokens_at) * limits["FRAME_RATE"])
        self.tokens_at = now
        if self.tokens < 1:
            raise RateLimited("too many frames; slow down")
        self.tokens -= 1

    @database_sync_to_async
    def _authorize(self, conversation_id: str, token: str):
        session = session_of_socket(self.scope)
        participant = socket_participant(conversation_id, token, session)
        if participant is not None:
            return Chat(participant.conversation), participant
        chat = Chat.get_chat(conversation_id)
        if chat is None:
            raise NotFound("no such conversation")
        participant = authorize(chat.conversation, token, session)
        if participant.left_at is not None:
            raise NotParticipant("you have left this conversation", code="left")
        participant.conversation = chat.conversation  # the same row: hold one copy per socket
        return chat, participant

    def _came_online(self) -> tuple[int, str, presence.Snapshot]:
        """Mark this socket online; return the conversation's newest seq (see connect), the
        room's list for its ``welcome`` (``events.room_fields``) and the presence after its
        coming."""
        conversation_id = self.chat.conversation.pk
        online = presence.store().came(conversation_id, self.participant.pk, self.channel_name)
        return self._newest_seq(), events.room_fields(conversation_id, online), online

    def _went_offline(self) -> presence.Snapshot:
        return presence.store().went(self.chat.conversation.pk, self.participant.pk, self.channel_name)

    async def _typing_expires(self) -> None:
        await asyncio.sleep(self.chat.limits["TYPING_TTL"])
        self.typing_task = None
        await database_sync_to_async(self.chat.set_typing)(self.participant, False)
