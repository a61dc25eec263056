"""``python -m chatroom.serve``'s daphne Server: its ``create_application`` is daphne's own but
for the queue type, so it must still match the daphne that is installed."""

from __future__ import annotations

import asyncio
import inspect

from daphne.server import Server

from chatroom.inbox import Inbox
from chatroom.serve import server_class


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
    for kind, queue_type in (("websocket", Inbox), ("http", asyncio.Queue)):
        protocol = object()
        server.connections[protocol] = {}
        queue = server.create_application(protocol, {"type": kind})
        assert type(queue) is queue_type
        queue.put_nowait({"type": f"{kind}.connect"})
        await server.connections[protocol]["application_instance"]
    assert received == [{"type": "websocket.connect"}, {"type": "http.connect"}]
