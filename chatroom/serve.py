"""``python -m chatroom.serve [daphne options] chatroom.asgi:application``: daphne on uvloop.

daphne runs Twisted on an asyncio loop that it creates when ``daphne.server`` is imported, with
the policy in force then; setting uvloop's policy first puts every socket's reads and writes on
libuv (bench/: each frame written to a socket is an epoll registration on the stock loop).
``CHAT_UVLOOP=0`` (or uvloop missing) runs the stock loop; the arguments are daphne's own.

Each WebSocket connection's input queue is an ``Inbox`` (chatroom/inbox.py) instead of an
``asyncio.Queue``: its one reader is the consumer, and an idle socket holds ~2.5 KB less
(bench/: memory per connection). HTTP requests keep daphne's queue.

Its TCP connections write at once (``eager_tcp_writes``): Twisted buffers every write and sends
it when the loop next reports the socket writable, which costs each frame two ``epoll_ctl``
calls and a pass through the loop; asyncio's own transports try the socket first.

What start-up built is frozen out of the garbage collector's reach before serving
(``freeze_startup_objects``), here and in the bot worker.

autobahn's debug lines get their arguments formatted only if they are written
(``lazy_debug_arguments``).
"""

from __future__ import annotations

import asyncio
import gc
import os
from functools import partial
from typing import Any


def freeze_startup_objects() -> None:
    """Move what start-up built (modules, classes, Django's and Twisted's tables: ~120,000
    objects) to the collector's permanent generation, after collecting start-up's garbage: a
    full collection then walks only what came later (bench/: 62-80 ms per full collection of
    the start-up heap here, a pause of every socket and every bot lane of the process). Those
    objects live as long as the process anyway. ``CHAT_GC_FREEZE=0`` leaves them in."""
    if os.environ.get("CHAT_GC_FREEZE", "1").lower() in ("0", "false", "no", "off"):
        return
    gc.collect()
    gc.freeze()


#: autobahn's modules whose ``pformat``, ``hltype`` and ``hlval`` build nothing but the
#: arguments of log lines, ``Timings.__str__`` aside (tests/test_serve.py checks the installed
#: autobahn).
AUTOBAHN_LOGGING_MODULES = ("autobahn.websocket.protocol", "autobahn.twisted.websocket")


class _Formatted:
    """``func(*args)``, computed when a log line that names it is written, never before."""

    __slots__ = ("args", "func", "kwargs")

    def __init__(self, func: Any, *args: Any, **kwargs: Any) -> None:
        self.func, self.args, self.kwargs = func, args, kwargs

    def __str__(self) -> str:
        return str(self.func(*self.args, **self.kwargs))

    __repr__ = __str__

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def lazy_debug_arguments() -> None:
    """autobahn formats the arguments of its debug lines before its logger drops them: each
    frame sent or received formats the method's name and the peer, each handshake
    pretty-prints its ~40 options (bench/: 7 % of daphne's CPU while sockets connect, ~2 us
    per frame). In the modules that do it those helpers now return a ``_Formatted``: a debug
    line that is written still reads the same."""
    import importlib
    import pprint

    from autobahn import util

    for name in AUTOBAHN_LOGGING_MODULES:
        module = importlib.import_module(name)
        for helper, real in (("pformat", pprint.pformat), ("hltype", util.hltype), ("hlval", util.hlval)):
            if hasattr(module, helper):
                setattr(module, helper, partial(_Formatted, real))
    from autobahn.websocket.protocol import Timings

    Timings.__str__ = lambda self: pprint.pformat(self._timings)  # its text, not a log argument


def use_uvloop() -> bool:
    """Install uvloop's event loop policy unless turned off; True if it is in force."""
    if os.environ.get("CHAT_UVLOOP", "1").lower() in ("0", "false", "no", "off"):
        return False
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def server_class():
    """daphne's ``Server`` with a lighter input queue per WebSocket connection."""
    from daphne.server import Server

    from .inbox import SocketInbox

    class ChatServer(Server):
        def run(self) -> None:
            """daphne's own, once the application is loaded and start-up's objects frozen."""
            freeze_startup_objects()
            super().run()

        def create_application(self, protocol, scope):
            """daphne's own (4.2), but for the queue's type."""
            assert "application_instance" not in self.connections[protocol]
            input_queue = SocketInbox(self, protocol) if scope.get("type") == "websocket" else asyncio.Queue()
            scope.setdefault("asgi", {"version": "3.0"})
            application_instance = self.application(
                scope=scope, receive=input_queue.get, send=partial(self.handle_reply, protocol)
            )
            if protocol not in self.connections:
                return None
            self.connections[protocol]["application_instance"] = asyncio.ensure_future(
                application_instance, loop=asyncio.get_event_loop()
            )
            return input_queue

    return ChatServer


def eager_tcp_writes() -> None:
    """Have Twisted's TCP servers send each write straight away when nothing is queued before
    it, as asyncio's transports do; the rest (a full socket buffer, TLS started on the
    connection, an error, a closing connection) takes Twisted's own path, which queues it."""
    from twisted.internet import tcp

    class EagerServer(tcp.Server):
        def write(self, data: bytes) -> None:
            if (
                type(data) is bytes
                and data
                and self.connected
                and not self.TLS
                and not self.disconnecting
                and not self._writeDisconnecting
                and not self._writeDisconnected
                and not self._tempDataBuffer
                and self.offset == len(self.dataBuffer)
            ):
                try:
                    sent = self.socket.send(data)
                except OSError:  # full (EAGAIN) or broken: Twisted's path queues or reports it
                    sent = 0
                if sent == len(data):
                    return
                data = data[sent:]
            super().write(data)

    tcp.Port.transport = EagerServer


def main() -> None:
    use_uvloop()
    eager_tcp_writes()
    from daphne.cli import CommandLineInterface  # imports daphne.server: after the policy

    lazy_debug_arguments()

    CommandLineInterface.server_class = server_class()
    CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
