"""Clients for bot programs that run outside the server: polling and WebSocket.

Pure client side (httpx and websockets only; no Django), so a bot program can copy this file.
The shapes follow Chatsky's messenger interfaces, so a Chatsky author feels at home:

* ``connect(runner)``: serve forever; ``runner(request, conversation_id)`` answers one request
  (``None``, a ``str``, a reply dict ``{"kind", "text", "data", ...}`` or a list of them; plain
  function or coroutine), like Chatsky's pipeline runner taking ``(message, ctx_id)``.
* ``on_request(request, conversation_id)``: the callback interface; runs the runner on one
  request and returns the normalised replies.
* ``PollingClient._request() -> [(request, conversation_id)]`` and ``_respond(responses)`` are
  Chatsky's ``PollingMessengerInterface`` steps.

Delivery is at least once: a request is acknowledged only after its answer is stored (with the
``delivery_id``, so a repeat stores nothing twice). A runner that raises is logged and its
request acknowledged without an answer, so one bad message does not stop the bot.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import inspect
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

logger = logging.getLogger("chatroom.sdk")

Runner = Callable[["Request", str], Any]


@dataclass
class Request:
    """One delivery: a message (``type == "message"``) or a status event of a conversation."""

    update_id: int
    conversation_id: str
    participant_id: str
    type: str
    message: dict[str, Any] = field(default_factory=dict)
    status: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_update(cls, update: dict[str, Any]) -> Request:
        return cls(
            update_id=int(update["update_id"]),
            conversation_id=update["conversation_id"],
            participant_id=update.get("participant_id", ""),
            type=update["type"],
            message=update.get("message") or {},
            status=update.get("status") or {},
            context=update.get("context") or {},
            raw=update,
        )

    @property
    def delivery_id(self) -> int:
        return self.update_id

    @property
    def text(self) -> str:
        return self.message.get("text") or ""

    @property
    def sender_name(self) -> str:
        return (self.message.get("sender") or {}).get("name", "")


def normalize(result: Any) -> list[dict[str, Any]]:
    """What a runner returned -> reply dicts (the server validates them)."""
    if result is None:
        return []
    items = result if isinstance(result, (list, tuple)) else [result]
    return [{"kind": "text", "text": item} if isinstance(item, str) else dict(item) for item in items if item]


async def _call(func: Callable, *args: Any) -> Any:
    result = func(*args)
    return await result if inspect.isawaitable(result) else result


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``X-Chatroom-Signature`` of a webhook request: ``sha256=<hex>`` over ``"<timestamp>." + body``."""
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, timestamp: str, body: bytes, signature: str, *, max_age: float = 300) -> bool:
    """For webhook receivers: the request is ours and recent (a replayed old one fails)."""
    try:
        fresh = abs(time.time() - int(timestamp)) <= max_age
    except (TypeError, ValueError):
        return False
    return fresh and hmac.compare_digest(sign(secret, timestamp, body), signature or "")


class BotAPIError(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status, self.code, self.detail = status, code, detail


class PollingClient:
    """A polling bot: long-polls ``GET /api/bot/updates`` and posts replies (synchronous)."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        poll_timeout: float = 25,
        on_status: Callable[[Request, str], Any] | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        self.poll_timeout = poll_timeout
        self.on_status = on_status
        self.offset: int | None = None  # the next update id to ask for; everything below is acknowledged
        self.http = http or httpx.Client(
            base_url=base_url.rstrip("/"), headers={"Authorization": f"Bearer {token}"}, timeout=poll_timeout + 10
        )
        self.runner: Runner | None = None
        self._next_offset: int | None = None

    def _check(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                error = {"code": "http", "detail": response.text[:200]}
            raise BotAPIError(response.status_code, error.get("code", ""), str(error.get("detail", "")))
        return response.json()

    def get_updates(self, timeout: float | None = None) -> list[Request]:
        """The unacknowledged updates (waiting up to ``timeout`` s for one); they stay
        unacknowledged until ``commit()`` (or the next ``_respond``)."""
        params: dict[str, Any] = {"timeout": self.poll_timeout if timeout is None else timeout}
        if self.offset is not None:
            params["offset"] = self.offset
        updates = self._check(self.http.get("/api/bot/updates", params=params))["updates"]
        requests = [Request.from_update(u) for u in updates]
        if requests:
            self._next_offset = max(r.update_id for r in requests) + 1
        return requests

    def commit(self) -> None:
        """Acknowledge everything fetched so far (sent with the next poll, Telegram-style)."""
        if self._next_offset is not None:
            self.offset = self._next_offset

    def send(
        self, conversation_id: str, replies: Any, *, delivery_id: int | None = None, client_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Store replies in a conversation (``delivery_id``: answering that update)."""
        body: dict[str, Any] = {"replies": normalize(replies)}
        if delivery_id is not None:
            body["delivery_id"] = delivery_id
        if client_id is not None:
            body["client_id"] = client_id
        return self._check(self.http.post(f"/api/bot/conversations/{conversation_id}/messages", json=body))["messages"]

    # ---- Chatsky's shape ------------------------------------------------------------------------

    def _request(self) -> list[tuple[Request, str]]:
        """Chatsky's ``PollingMessengerInterface._request``: [(message, conversation id)]."""
        out = []
        for request in self.get_updates():
            if request.type == "message":
                out.append((request, request.conversation_id))
            elif self.on_status is not None:
                self._safely(self.on_status, request)
        return out

    def _respond(self, responses: list[tuple[Request, Any]]) -> None:
        """Chatsky's ``_respond``: store each answer, then acknowledge the batch."""
        for request, result in responses:
            replies = normalize(result)
            if replies:
                self.send(request.conversation_id, replies, delivery_id=request.update_id)
        self.commit()

    def on_request(self, request: Request, conversation_id: str) -> list[dict[str, Any]]:
        """The callback interface: run the runner on one request; return its replies."""
        assert self.runner is not None, "connect(runner) first"
        return normalize(self._safely(self.runner, request))

    def _safely(self, func: Callable, request: Request) -> Any:
        try:
            result = func(request, request.conversation_id)
            return asyncio.run(result) if inspect.isawaitable(result) else result
        except Exception:
            logger.exception("the bot failed on update %s; acknowledged without an answer", request.update_id)
            return None

    def connect(self, runner: Runner, *, loop: Callable[[], bool] = lambda: True) -> None:
        """Serve until ``loop()`` is false (checked between polls), like Chatsky's ``connect``."""
        self.runner = runner
        while loop():
            requests = self._request()
            self._respond(
                [(request, self.on_request(request, conversation_id)) for request, conversation_id in requests]
            )
        self.flush()

    def flush(self) -> None:
        """Hand the last acknowledgements in now (otherwise they travel with the next poll)."""
        if self.offset is not None:
            self.get_updates(timeout=0)  # what it returns is not acknowledged: it comes again
            self._next_offset = self.offset

    def close(self) -> None:
        self.http.close()


class WebSocketClient:
    """A WebSocket bot: one socket for all its conversations; acknowledges each delivery after
    answering it and reconnects (resuming from the last acknowledged) when the socket drops."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        on_status: Callable[[Request, str], Any] | None = None,
        reconnect_delay: float = 1.0,
        max_reconnect_delay: float = 30.0,
    ) -> None:
        self.url = url if url.rstrip("/").endswith("/ws/bots") else url.rstrip("/") + "/ws/bots/"
        if not self.url.endswith("/"):
            self.url += "/"
        self.token = token
        self.on_status = on_status
        self.reconnect_delay, self.max_reconnect_delay = reconnect_delay, max_reconnect_delay
        self.runner: Runner | None = None
        self.ws: Any = None
        self.connected = asyncio.Event()  # set while a socket is open (tests, health checks)
        self.errors: list[dict[str, Any]] = []  # error frames from the server, newest last
        self._closing = False

    async def connect(self, runner: Runner) -> None:
        """Serve until ``close()``: handle deliveries one at a time, in order."""
        import websockets

        self.runner = runner
        delay = self.reconnect_delay
        while not self._closing:
            try:
                async with websockets.connect(
                    self.url, additional_headers={"Authorization": f"Bearer {self.token}"}, max_size=None
                ) as ws:
                    self.ws, delay = ws, self.reconnect_delay
                    self.connected.set()
                    async for raw in ws:
                        await self._handle(json.loads(raw))
            except (OSError, websockets.ConnectionClosed, websockets.InvalidHandshake) as error:
                logger.warning("bot socket lost (%s); reconnecting", error)
            finally:
                self.connected.clear()
                self.ws = None
            if self._closing:
                return
            await asyncio.sleep(delay)  # back-off between reconnects
            delay = min(delay * 2, self.max_reconnect_delay)

    async def _handle(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "message":
            request = Request.from_update(frame)
            replies = await self.on_request(request, request.conversation_id)
            if replies:  # a reply naming the delivery acknowledges it
                await self._send(
                    {
                        "type": "reply",
                        "conversation_id": request.conversation_id,
                        "delivery_id": request.update_id,
                        "replies": replies,
                    }
                )
            else:
                await self._send({"type": "ack", "delivery_id": request.update_id})
        elif kind == "status":
            request = Request.from_update(frame)
            if self.on_status is not None:
                try:
                    await _call(self.on_status, request, request.conversation_id)
                except Exception:
                    logger.exception("on_status failed on delivery %s", request.update_id)
            await self._send({"type": "ack", "delivery_id": request.update_id})
        elif kind == "error":
            logger.error("the server refused a frame: %s", frame)
            self.errors.append(frame)

    async def on_request(self, request: Request, conversation_id: str) -> list[dict[str, Any]]:
        """The callback interface: run the runner on one request; return its replies."""
        assert self.runner is not None, "connect(runner) first"
        try:
            return normalize(await _call(self.runner, request, conversation_id))
        except Exception:
            logger.exception("the bot failed on delivery %s; acknowledged without an answer", request.update_id)
            return []

    async def send(self, conversation_id: str, replies: Any, *, client_id: str | None = None) -> None:
        """Say something on the bot's own initiative (the socket must be open)."""
        frame: dict[str, Any] = {"type": "reply", "conversation_id": conversation_id, "replies": normalize(replies)}
        if client_id is not None:
            frame["client_id"] = client_id
        await self._send(frame)

    async def _send(self, frame: dict[str, Any]) -> None:
        if self.ws is None:
            raise ConnectionError("the bot socket is not open")
        await self.ws.send(json.dumps(frame))

    async def close(self) -> None:
        self._closing = True
        if self.ws is not None:
            await self.ws.close()
