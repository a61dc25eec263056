"""``ConversationConsumer.handle_now``: under chatroom.serve a live frame that is next by seq
goes straight to the socket while the consumer waits for events; anything else is declined
and takes the consumer's handlers (``chat_frame``: gap fills, frames "to" someone, closes).
The ordering it keeps is exercised end to end by tests/test_realtime.py on Redis."""

from __future__ import annotations

from types import SimpleNamespace

from chatroom.inbox import SocketInbox
from conversations.consumers import ConversationConsumer


def socket_inbox(written: list) -> SocketInbox:
    protocol = type("Protocol", (), {"sendMessage": staticmethod(lambda data, binary: written.append(data))})()
    return SocketInbox(SimpleNamespace(connections={protocol: {}}), protocol)


def consumer_at(seq: int) -> ConversationConsumer:
    consumer = ConversationConsumer()
    consumer.chat, consumer.last_seq_sent = SimpleNamespace(), seq  # connected: authorized, welcomed
    return consumer


def test_the_next_frame_by_seq_is_written_once_encoded_for_every_socket():
    written: list = []
    frame = {"type": "chat.frame", "seq": 5, "text": '{"text": "h\u00e9"}'}
    first, second = consumer_at(4), consumer_at(4)
    assert first.handle_now(frame, socket_inbox(written))
    assert second.handle_now(frame, socket_inbox(written))
    assert written == ['{"text": "h\u00e9"}'.encode()] * 2
    assert written[0] is written[1]  # encoded once, for every socket of the process
    assert first.last_seq_sent == second.last_seq_sent == 5


def test_everything_else_is_left_to_the_handlers():
    written: list = []
    inbox, consumer = socket_inbox(written), consumer_at(4)
    for event in (
        {"type": "chat.frame", "seq": 4, "text": "sent already (a replay)"},
        {"type": "chat.frame", "seq": 6, "text": "overtook seq 5: a gap to fill first"},
        {"type": "chat.frame", "text": "for one participant", "to": "p1"},
        {"type": "chat.close", "code": 4403, "to": "p1"},
    ):
        assert not consumer.handle_now(event, inbox)
    unauthorized = ConversationConsumer()
    assert not unauthorized.handle_now({"type": "chat.frame", "seq": 1, "text": "x"}, inbox)
    assert written == [] and consumer.last_seq_sent == 4


def test_a_frame_for_a_socket_that_has_gone_counts_as_sent():
    """As ``send`` does for autobahn's Disconnected: the client resumes by seq."""
    written: list = []
    inbox, consumer = socket_inbox(written), consumer_at(1)
    inbox._server.connections[inbox._protocol]["disconnected"] = True
    assert consumer.handle_now({"type": "chat.frame", "seq": 2, "text": "late"}, inbox)
    assert written == [] and consumer.last_seq_sent == 2
