"""Client side for external bot programs (see docs/bots.md, "External bots").

``PollingClient`` and ``WebSocketClient`` take a ``runner(request, conversation_id)`` in
``connect(runner)``, in the shape of Chatsky's messenger interfaces; ``verify_signature`` checks
webhook requests. Only httpx and websockets are needed (no Django).
"""

from .client import BotAPIError, PollingClient, Request, WebSocketClient, normalize, sign, verify_signature

__all__ = ["BotAPIError", "PollingClient", "Request", "WebSocketClient", "normalize", "sign", "verify_signature"]
