"""``ConversationConsumer.handle_now``: under chatroom.serve a live frame that is next by seq,
or has no seq and is for this socket, goes straight to the socket while the consumer waits for
events, and a frame for someone else is dropped there; anything else is declined and takes the
consumer's handlers (``chat_frame``: gap fills, closes).
The sockets here are autobahn's own server protocol on Twisted's ``StringTransport``; the
ordering is exercised end to end by tests/test_realtime.py on Redis."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet.testing import StringTransport

from chatroom.inbox import SocketInbox, text_frame
from conversations.consumers import ConversationConsumer


def open_socket() -> tuple[WebSocketServerProtocol, StringTransport]:
    """An autobahn server connection after its handshake, writing into a string."""
    factory = WebSocketServerFactory()
    factory.protocol = WebSocketServerProtocol
    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.state, protocol.websocket_version = protocol.STATE_OPEN, 13
    return protocol, transport


def socket_inbox() -> tuple[SocketInbox, StringTransport]:
    protocol, transport = open_socket()
    return SocketInbox(SimpleNamespace(connections={protocol: {}}), protocol), transport


def consumer_at(seq: int) -> ConversationConsumer:
    consumer = ConversationConsumer()
    consumer.chat, consumer.last_seq_sent = SimpleNamespace(), seq  # connected: authorized, welcomed
    return consumer


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70001])
def test_a_text_frame_is_byte_for_byte_what_autobahn_sends(size):
    data = ("\u00e9" * (size // 2) + "x" * (size % 2)).encode()
    protocol, transport = open_socket()
    protocol.sendMessage(data, False)
    assert text_frame(data) == transport.value()


def test_the_next_frame_by_seq_is_written_once_made_for_every_socket():
    frame = {"type": "chat.frame", "seq": 5, "text": '{"text": "h\u00e9"}'}
    (first_inbox, first_out), (second_inbox, second_out) = socket_inbox(), socket_inbox()
    first, second = consumer_at(4), consumer_at(4)
    assert first.handle_now(frame, first_inbox)
    assert second.handle_now(frame, second_inbox)
    assert first_out.value() == second_out.value() == text_frame('{"text": "h\u00e9"}'.encode())
    assert frame["frame"] is not None and frame["utf8"] == '{"text": "h\u00e9"}'.encode()  # made once, shared
    assert first.last_seq_sent == second.last_seq_sent == 5


def test_the_frame_and_the_counters_are_autobahns_and_anything_unusual_goes_through_it():
    data = b'{"type": "message.new"}'
    (inbox, out), (twin, twin_out) = socket_inbox(), open_socket()
    assert inbox.write_text(data, text_frame(data))
    twin.sendMessage(data, False)
    assert out.value() == twin_out.value()
    stats, expected = inbox._protocol.trafficStats, twin.trafficStats
    for counter in ("outgoingWebSocketMessages", "outgoingWebSocketFrames", "outgoingOctetsAppLevel"):
        assert getattr(stats, counter) == getattr(expected, counter), counter
    # Fragmenting on: sendMessage's own frames, not the prepared one.
    (inbox, out), (twin, twin_out) = socket_inbox(), open_socket()
    inbox._protocol.autoFragmentSize = twin.autoFragmentSize = 8
    assert inbox.write_text(data, text_frame(data))
    twin.sendMessage(data, False)
    assert out.value() == twin_out.value() != text_frame(data)


def test_everything_else_is_left_to_the_handlers():
    inbox, out = socket_inbox()
    consumer = consumer_at(4)
    for event in (
        {"type": "chat.frame", "seq": 4, "text": "sent already (a replay)"},
        {"type": "chat.frame", "seq": 6, "text": "overtook seq 5: a gap to fill first"},
        {"type": "chat.close", "code": 4403, "to": "p1"},
    ):
        assert not consumer.handle_now(event, inbox)
    unauthorized = ConversationConsumer()
    assert not unauthorized.handle_now({"type": "chat.frame", "seq": 1, "text": "x"}, inbox)
    assert out.value() == b"" and consumer.last_seq_sent == 4


def test_frames_without_a_seq_are_written_if_they_are_for_this_socket_and_dropped_if_not():
    """Presence, typing and read marks (no seq) take the same shared frame; a frame "to"
    someone else, or about this participant for everyone else ("not_to"), is dropped."""
    inbox, out = socket_inbox()
    consumer = consumer_at(4)
    consumer.me = "me"
    typing = {"type": "chat.frame", "text": '{"type":"typing"}'}
    assert consumer.handle_now(typing, inbox) and out.value() == typing["frame"] == text_frame(b'{"type":"typing"}')
    for elsewhere in (
        {"type": "chat.frame", "text": '{"type":"presence"}', "not_to": "me"},
        {"type": "chat.frame", "text": '{"type":"error"}', "to": "you"},
    ):
        assert consumer.handle_now(elsewhere, inbox)
    assert out.value() == typing["frame"]
    assert consumer.handle_now({"type": "chat.frame", "text": '{"type":"error"}', "to": "me"}, inbox)
    assert out.value() == typing["frame"] + text_frame(b'{"type":"error"}')
    assert consumer.last_seq_sent == 4  # frames without a seq move no seq
    assert consumer.handle_now({"type": "chat.frame", "seq": 5, "text": "next"}, inbox)
    assert consumer.last_seq_sent == 5


def test_a_frame_for_a_socket_that_has_gone_counts_as_sent():
    """As ``send`` does for autobahn's Disconnected: the client resumes by seq."""
    inbox, out = socket_inbox()
    consumer = consumer_at(1)
    inbox._server.connections[inbox._protocol]["disconnected"] = True
    assert consumer.handle_now({"type": "chat.frame", "seq": 2, "text": "late"}, inbox)
    assert out.value() == b"" and consumer.last_seq_sent == 2
    closing, out = socket_inbox()
    closing._protocol.state = closing._protocol.STATE_CLOSING
    assert consumer.handle_now({"type": "chat.frame", "seq": 3, "text": "closing"}, closing)
    assert out.value() == b"" and consumer.last_seq_sent == 3
