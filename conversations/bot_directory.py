"""Which bots can join a conversation, as the bots app tells us.

``conversations`` never imports bot code: the ``bots`` app registers a provider here when it
starts (``BotsConfig.ready``), the way a plug-in registers with a host. Without one, no bot is
installed and conversations are humans only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypedDict


class BotInfo(TypedDict):
    name: str
    description: str
    kind: str  # python, webhook, websocket, polling, besser, ...
    trigger: str  # "all" (every human message) or "mention"


_provider: Callable[[], dict[str, BotInfo]] = dict


def register(provider: Callable[[], dict[str, BotInfo]]) -> None:
    global _provider
    _provider = provider


def installed_bots() -> dict[str, BotInfo]:
    return _provider()
