"""``python -m chatroom.serve``'s daphne Server: its ``create_application`` is daphne's own but
for the queue type, so it must still match the daphne that is installed."""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path

import pytest
from daphne.server import Server

from chatroom.inbox import SocketInbox
from chatroom.serve import server_class

ROOT = Path(__file__).resolve().parents[1]


def test_the_copied_create_application_matches_the_installed_daphne():
    source = inspect.getsource(Server.create_application)
    for line in (
        "input_queue = asyncio.Queue()",
        "receive=input_queue.get,",
        "send=partial(self.handle_reply, protocol),",
        'self.connections[protocol]["application_instance"] = asyncio.ensure_future(',
        "return input_queue",
    ):
        assert line in source, f"daphne changed create_application: {line!r} (update chatroom/serve.py)"


async def test_websockets_get_an_inbox_and_http_keeps_daphnes_queue():
    received = []

    async def application(scope, receive, send):
        received.append(await receive())

    server = server_class()(application=application, endpoints=["tcp:port=0:interface=127.0.0.1"])  # not started
    server.connections = {}  # what run() sets up
    for kind, queue_type in (("websocket", SocketInbox), ("http", asyncio.Queue)):
        protocol = object()
        server.connections[protocol] = {}
        queue = server.create_application(protocol, {"type": kind})
        assert type(queue) is queue_type
        queue.put_nowait({"type": f"{kind}.connect"})
        await server.connections[protocol]["application_instance"]
    assert received == [{"type": "websocket.connect"}, {"type": "http.connect"}]


BURST_SERVER = """
import sys
from chatroom.serve import eager_tcp_writes, use_uvloop
use_uvloop()
from twisted.internet import asyncioreactor
asyncioreactor.install()
eager_tcp_writes()
from twisted.internet import protocol, reactor

def chunk(i):
    return bytes([i % 251]) * (1 + i * 7 % 3000)

class Burst(protocol.Protocol):
    def connectionMade(self):
        for i in range(int(sys.argv[1])):  # in one go: the loop runs nothing in between
            self.transport.write(chunk(i))
        queued = bool(self.transport._tempDataBuffer or self.transport.dataBuffer)
        print(type(self.transport).__name__, "queued" if queued else "all-sent", flush=True)
        self.transport.loseConnection()  # after what is queued is written

    def connectionLost(self, reason):
        reactor.stop()

factory = protocol.Factory.forProtocol(Burst)
print(reactor.listenTCP(0, factory, interface="127.0.0.1").getHost().port, flush=True)
reactor.run()
"""


def test_eager_writes_keep_order_when_the_socket_fills():
    """~22 MB written in one go to a client that reads nothing yet: the kernel takes a few MB,
    so writes go out directly, then partly, then through Twisted's queue; every byte must
    arrive once, in order."""
    import socket
    import subprocess
    import sys

    chunks = 15_000
    expected = b"".join(bytes([i % 251]) * (1 + i * 7 % 3000) for i in range(chunks))
    server = subprocess.Popen(
        [sys.executable, "-c", BURST_SERVER, str(chunks)], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        port = int(server.stdout.readline())
        with socket.create_connection(("127.0.0.1", port), timeout=20) as client:
            assert server.stdout.readline().split() == ["EagerServer", "queued"]
            received = bytearray()
            while data := client.recv(1 << 20):
                received += data
        assert len(received) == len(expected)
        assert received == expected
        assert server.wait(timeout=20) == 0
    finally:
        server.kill()


@pytest.mark.parametrize("setting", [None, "0"])
def test_startup_objects_are_frozen_out_of_the_collectors_reach(monkeypatch, setting):
    """What start-up built goes to the permanent generation (a full collection no longer
    walks it), its garbage collected first; ``CHAT_GC_FREEZE=0`` leaves everything in."""
    import gc
    import weakref

    from chatroom.serve import freeze_startup_objects

    if setting is not None:
        monkeypatch.setenv("CHAT_GC_FREEZE", setting)

    class Node:
        pass

    gc.unfreeze()
    node = Node()
    node.me = node  # garbage only a collection finds
    garbage = weakref.ref(node)
    del node
    try:
        freeze_startup_objects()
        frozen = gc.get_freeze_count()
    finally:
        gc.unfreeze()
    if setting == "0":
        assert frozen == 0
    else:
        assert frozen > 10_000 and garbage() is None  # collected, not kept for ever
