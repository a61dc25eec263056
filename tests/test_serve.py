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


def _log_helper_calls(module) -> list[tuple[str, int, bool]]:
    """Each call of ``pformat``, ``hltype`` or ``hlval`` in a module's source: (name, line,
    whether it is an argument of a ``<something>.log.<level>(...)`` call)."""
    import ast

    tree = ast.parse(inspect.getsource(module))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id not in ("pformat", "hltype", "hlval"):
                continue
            parent, in_log = parents.get(node), False
            while parent is not None and not isinstance(parent, ast.FunctionDef):
                func = getattr(parent, "func", None)
                logger = getattr(func, "value", None)
                if isinstance(func, ast.Attribute) and isinstance(logger, ast.Attribute) and logger.attr == "log":
                    in_log = True
                    break
                parent = parents.get(parent)
            found.append((node.func.id, node.lineno, in_log))
    return found


def test_autobahns_helpers_made_lazy_build_nothing_but_log_arguments():
    """``lazy_debug_arguments`` is safe only while the installed autobahn calls these helpers
    for log lines alone (and ``Timings.__str__``, which it gives the real ``pformat``)."""
    import importlib

    from autobahn.websocket.protocol import Timings

    from chatroom.serve import AUTOBAHN_LOGGING_MODULES

    timings_line = inspect.getsourcelines(Timings.__str__)[1]
    for name in AUTOBAHN_LOGGING_MODULES:
        module = importlib.import_module(name)
        calls = _log_helper_calls(module)
        assert calls, f"{name} calls none of them any more: update chatroom/serve.py"
        for helper, line, in_log in calls:
            if name == "autobahn.websocket.protocol" and helper == "pformat" and line == timings_line + 1:
                continue
            assert in_log, f"{name}:{line} uses {helper}() outside a log line: update chatroom/serve.py"


def test_lazy_debug_arguments_format_only_when_written_and_read_the_same(monkeypatch):
    import pprint

    from autobahn import util
    from autobahn.twisted import websocket as twisted_websocket
    from autobahn.websocket import protocol
    from twisted.logger import formatEvent

    from chatroom.serve import lazy_debug_arguments

    for module in (protocol, twisted_websocket):  # put back after the test
        for helper in ("pformat", "hltype", "hlval"):
            if hasattr(module, helper):
                monkeypatch.setattr(module, helper, getattr(module, helper))
    monkeypatch.setattr(protocol.Timings, "__str__", protocol.Timings.__str__)

    formatted = []

    class Option:
        def __repr__(self) -> str:
            formatted.append(self)
            return "Option()"

    def on_connect() -> None:
        pass

    options = [("openHandshakeTimeout", 5, "WebSocketServerFactory"), Option()]
    eager = {"attrs": pprint.pformat(options), "func": util.hltype(on_connect), "peer": util.hlval("tcp:1")}
    formatted.clear()

    lazy_debug_arguments()
    lazy = {
        "attrs": protocol.pformat(options),
        "func": protocol.hltype(on_connect),
        "peer": twisted_websocket.hlval("tcp:1"),
    }
    assert formatted == []  # built for a line nobody writes: nothing formatted
    text = "{attrs} {func} {peer:>9}"
    assert formatEvent({"log_format": text, **lazy}) == formatEvent({"log_format": text, **eager})
    assert formatted  # and formatted when the line is written

    timings = protocol.Timings()
    timings.track("open")
    assert type(str(timings)) is str and str(timings) == pprint.pformat(timings._timings)


def test_the_asgi_application_imports_the_urlconf_before_the_first_request():
    """A process just started answers its first request without importing the views and the
    API (~0.2 s here; under load, seconds: a first request timed out in a test once)."""
    import os
    import subprocess
    import sys

    code = (
        "import sys; import chatroom.asgi;"
        " print(all(m in sys.modules for m in ('chatroom.urls', 'conversations.api', 'conversations.views')))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "chatroom.settings"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "True", out.stdout + out.stderr
