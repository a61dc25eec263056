"""``python -m chatroom.serve [daphne options] chatroom.asgi:application``: daphne on uvloop.

daphne runs Twisted on an asyncio loop that it creates when ``daphne.server`` is imported, with
the policy in force then; setting uvloop's policy first puts every socket's reads and writes on
libuv (bench/: each frame written to a socket is an epoll registration on the stock loop).
``CHAT_UVLOOP=0`` (or uvloop missing) runs the stock loop; the arguments are daphne's own.
"""

from __future__ import annotations

import asyncio
import os


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


def main() -> None:
    use_uvloop()
    from daphne.cli import CommandLineInterface  # imports daphne.server: after the policy

    CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
