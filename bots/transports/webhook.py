"""Webhook bots: the worker POSTs each delivery to the bot's URL and stores the answer.

Request (JSON, signed)::

    POST <url>
    X-Chatroom-Timestamp: <unix seconds>
    X-Chatroom-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + raw body)>
    X-Chatroom-Delivery: <delivery id>
    {"bot", "delivery_id", "attempt", "conversation": {"id", "name"}, "participant_id",
     "type": "message" | "status", "message" | "status", "context"}

The timestamp is inside the signed string, so a captured request cannot be replayed later
(receivers refuse timestamps older than a few minutes). Answer ``{"replies": [...]}`` (reply
dicts of docs/bots.md; optional ``"misc"`` replaces ``context.misc``, ``"label"`` records a
label), or 204/empty for no reply now. 5xx, time-outs and connection errors are tried again
with exponential back-off (at least once: use ``delivery_id`` to drop repeats); 4xx or a
malformed answer fails the delivery at once.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from django.conf import settings

from .. import outbox
from ..base import Bot, BotMessage, BotStatus
from ..context import Context
from ..models import BotDelivery
from ..sdk.client import sign  # the SDK's is the one receivers use to verify (pure, no Django)
from . import RetryLater

SIGNATURE_HEADER = "X-Chatroom-Signature"
TIMESTAMP_HEADER = "X-Chatroom-Timestamp"
DELIVERY_HEADER = "X-Chatroom-Delivery"
DEFAULT_TIMEOUT = 10.0
DEFAULT_ATTEMPTS = 5
DEFAULT_BACKOFF = 1.0  # seconds before the 2nd attempt; doubles each time
MAX_BACKOFF = 300.0
MAX_RESPONSE = 8 * 1024 * 1024


class WebhookBot(Bot):
    """The worker's side of a webhook bot (one object per bot participant, like any bot)."""

    timeout_margin = 5.0  # the HTTP timeout fires first, so a slow bot is retried, not failed

    def __init__(self, spec: Any) -> None:
        super().__init__()
        extra = spec.extra
        self.url: str = extra["url"]
        self.secret: str = extra.get("secret") or ""
        self.http_timeout = float(spec.timeout or extra.get("timeout") or DEFAULT_TIMEOUT)
        self.max_attempts = int(extra.get("max_attempts") or DEFAULT_ATTEMPTS)
        self.backoff = float(extra.get("retry_backoff") or DEFAULT_BACKOFF)
        self.conversation_name = ""

    @classmethod
    def overrides_on_status(cls) -> bool:
        return True

    async def on_message(self, message: BotMessage, context: Context) -> Any:
        return await self._post({"type": "message", "message": message.raw}, context)

    async def on_status(self, status: BotStatus, context: Context) -> Any:
        return await self._post(
            {"type": "status", "status": {"event": status.event, "participant": status.participant, **status.data}},
            context,
        )

    async def _post(self, event: dict[str, Any], context: Context) -> Any:
        item: BotDelivery | None = outbox.current_delivery.get()
        delivery_id = item.id if item else None
        attempt = item.attempts if item else 1
        body = json.dumps(
            {
                "bot": self.name,
                "delivery_id": delivery_id,
                "attempt": attempt,
                "conversation": {"id": self.conversation_id},
                "participant_id": self.participant_id,
                **event,
                "context": json.loads(context.to_json()),
            },
            ensure_ascii=False,
            default=str,
        ).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"chatroom-webhook/{getattr(settings, 'CHAT_VERSION', '1')}",
            TIMESTAMP_HEADER: timestamp,
            DELIVERY_HEADER: str(delivery_id or ""),
        }
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, timestamp, body)
        try:
            async with httpx.AsyncClient(timeout=self.http_timeout, follow_redirects=False) as http:
                response = await http.post(self.url, content=body, headers=headers)
        except httpx.TimeoutException:
            self._again(attempt, f"no answer within {self.http_timeout:g} s", None)
        except httpx.HTTPError as error:
            self._again(attempt, f"could not reach {self.url}: {type(error).__name__}: {error}", None)
        status = response.status_code
        await _record_status(delivery_id, status)
        if status >= 500:
            self._again(attempt, f"HTTP {status}: {response.text[:500]}", status)
        if status >= 300:
            raise WebhookError(f"HTTP {status} (not retried): {response.text[:500]}")
        return self._replies(response, context)

    def _again(self, attempt: int, reason: str, status: int | None) -> None:
        if attempt >= self.max_attempts:
            raise WebhookError(f"{reason}; gave up after {attempt} attempts")
        delay = min(self.backoff * 2 ** (attempt - 1), MAX_BACKOFF)
        raise RetryLater(reason, delay, status)

    @staticmethod
    def _replies(response: httpx.Response, context: Context) -> Any:
        if response.status_code == 204 or not response.content.strip():
            return None
        if len(response.content) > MAX_RESPONSE:
            raise WebhookError(f"the answer is larger than {MAX_RESPONSE} bytes")
        try:
            answer = response.json()
        except ValueError:
            raise WebhookError('the answer is not JSON (expected {"replies": [...]})') from None
        if not isinstance(answer, dict):
            raise WebhookError('the answer is not a JSON object (expected {"replies": [...]})')
        if isinstance(answer.get("misc"), dict):
            context.misc = answer["misc"]
        if isinstance(answer.get("label"), str):
            context.add_label(answer["label"])
        replies = answer.get("replies")
        if replies is not None and not isinstance(replies, list):
            raise WebhookError('"replies" must be a list')
        return replies or None


class WebhookError(Exception):
    """A webhook answer that will not get better by trying again (the delivery fails)."""


async def _record_status(delivery_id: int | None, status: int) -> None:
    if delivery_id is None:
        return
    from ..worker import db

    await db(lambda: BotDelivery.objects.filter(pk=delivery_id).update(last_status=status))
