"""BESSER bots: a BESSER Bot Framework bot (or BESSER Agentic Framework agent) joins a room unchanged.

Such a bot serves its ``WebSocketPlatform`` (default ``ws://localhost:8765``). Kind ``"besser"``
is its client: one connection per bot participant (one BESSER session per room bot), opened at
the first delivery, kept open across deliveries and opened again when it dropped::

    {"helpdesk": {"kind": "besser", "url": "ws://127.0.0.1:8765", "description": "..."}}

The protocol, as BESSER's source has it (``besser/bot/platforms/payload.py`` and
``websocket/websocket_platform.py`` of https://github.com/BESSER-PEARL/BESSER-Bot-Framework;
``besser/agent/platforms/...`` of https://github.com/BESSER-PEARL/BESSER-Agentic-Framework).
Every frame is ``{"action": <PayloadAction value>, "message": ...}``; the Agentic Framework adds
``"user_id"`` and ``"history"``, and keys its sessions by the ``X-User-ID`` header (sent here, so a
reconnect finds the same session there; the older framework starts a new session per connection).

client -> bot (what we send):
  ``user_message``  message: the text (a chosen option sends its value, as BESSER's UI does)
  ``user_file``     message: a JSON *string* ``{"name", "type", "base64"}`` (``File.decode``)

bot -> client (``bot_reply_*``, or ``agent_reply_*`` from the Agentic Framework), mapped to:
  ``str``        message: str                                   -> text
  ``markdown``   message: str                                   -> markdown
  ``html``       message: str                                   -> text, tags stripped (no raw HTML here)
  ``options``    message: ``json.dumps({0: "a", 1: "b"})``        -> options (label = value)
  ``file``       message: ``{"name", "type", "base64"}``          -> file
  ``image``      message: base64 of a JPEG (``cv2.imencode``)     -> image
  ``dataframe``  message: ``DataFrame.to_json()`` (``{col: {row: v}}``) -> table
  ``plotly``     message: ``plotly.io.to_json(figure)``           -> chart
  ``location``   message: ``{"latitude", "longitude"}``           -> location
  ``rag``        message: ``RAGMessage.to_dict()``                -> markdown of its ``answer``
  ``audio``      message: ``{"audio_data_base64", "metadata": {"sample_rate", "dtype", "shape"}}`` -> audio (WAV)

Replies come when the bot sends them: none, one or several per message, possibly later. A reader
task stores each as it arrives (``Chat.save_message`` as the bot participant, through
``bots.delivery.save_replies``) with the client id ``besser-<delivery>-<n>``: the n-th reply after
delivery <delivery> was sent, so a delivery sent twice stores its replies once. The delivery itself
is done once its payloads are sent; a bot that cannot be reached is retried with back-off.
"""

from __future__ import annotations

import array
import asyncio
import base64
import binascii
import io
import json
import logging
import sys
import wave
from collections.abc import Mapping
from typing import Any

from django.utils.html import strip_tags

from conversations.errors import ChatError

from .. import delivery, outbox
from ..base import Bot, BotMessage, BotStatus
from ..context import Context
from ..replies import MAX_OPTIONS, Reply, ReplyError, coerce
from ..replies import chart as chart_reply
from ..replies import file as file_reply
from ..replies import location as location_reply
from ..replies import markdown as markdown_reply
from ..replies import options as options_reply
from ..replies import table as table_reply
from ..replies import text as text_reply
from ..worker import db
from . import RetryLater

logger = logging.getLogger(__name__)

DEFAULT_URL = "ws://localhost:8765"
CONNECT_TIMEOUT = 5.0
MAX_FRAME = 32 * 1024 * 1024  # bytes of one frame from the bot (files and images travel base64)
DEFAULT_ATTEMPTS = 5
DEFAULT_BACKOFF = 1.0
MAX_BACKOFF = 300.0
PREFIXES = ("bot_reply_", "agent_reply_")


class BesserError(Exception):
    """A BESSER bot that stays unreachable after its attempts (the delivery fails)."""


# ---- payloads: ours -> BESSER --------------------------------------------------------------------


def user_message(text: str, user_id: str | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {"action": "user_message", "message": text}
    if user_id:
        payload["user_id"] = user_id
    return payload


def user_file(name: str, mime: str, content: bytes, user_id: str | None = None) -> dict[str, Any]:
    """BESSER's ``File.decode`` reads ``message`` as a JSON string, not an object."""
    encoded = base64.b64encode(content).decode()
    payload: dict[str, Any] = {
        "action": "user_file",
        "message": json.dumps({"name": name, "type": mime or "file", "base64": encoded}),
    }
    if user_id:
        payload["user_id"] = user_id
    return payload


def _read_attachment(attachment_id: str) -> tuple[str, str, bytes] | None:
    from conversations.models import Attachment

    row = Attachment.objects.filter(pk=attachment_id).first()
    if row is None:
        return None
    with row.file.open("rb") as handle:
        return row.name, row.mime, handle.read()


def payloads_for(message: BotMessage, user_id: str | None = None) -> list[dict[str, Any]]:
    """What one delivered message becomes on the wire (sync: reads attachments from storage)."""
    out = []
    data = message.data or {}
    if message.option is not None:
        out.append(user_message(str(message.option), user_id))
    elif message.text.strip():
        out.append(user_message(message.text, user_id))
    elif message.kind == "location" and "latitude" in data:
        out.append(user_message(f"{data['latitude']}, {data['longitude']}", user_id))
    for item in message.attachments:
        found = _read_attachment(str(item.get("id")))
        if found is not None:
            out.append(user_file(*found, user_id=user_id))
    return out


# ---- payloads: BESSER -> ours --------------------------------------------------------------------


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def _b64(value: Any) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        raise ReplyError("content is not base64") from None


def _options(message: Any) -> Reply:
    parsed = _json(message)
    if isinstance(parsed, Mapping):
        labels = [parsed[k] for k in sorted(parsed, key=lambda k: int(k) if str(k).isdigit() else str(k))]
    elif isinstance(parsed, list):
        labels = parsed
    else:
        raise ReplyError("options are a JSON object {index: label} or a list")
    unique = list(dict.fromkeys(str(label) for label in labels if str(label).strip()))
    if len(unique) > MAX_OPTIONS:
        logger.warning("BESSER options cut to %d of %d", MAX_OPTIONS, len(unique))
    return options_reply("", unique[:MAX_OPTIONS])


def _table(message: Any) -> Reply:
    """``DataFrame.to_json()``: orient "columns" by default (``{col: {index: value}}``); the
    "split" and "records" orients are read too."""
    parsed = _json(message)
    if isinstance(parsed, Mapping) and "columns" in parsed and "data" in parsed:
        return table_reply(parsed["data"], columns=parsed["columns"])
    if isinstance(parsed, list):
        return table_reply(parsed)
    if not isinstance(parsed, Mapping) or not all(isinstance(c, Mapping) for c in parsed.values()):
        raise ReplyError("a dataframe is DataFrame.to_json() output")
    columns = list(parsed)
    index = list(dict.fromkeys(i for column in parsed.values() for i in column))
    return table_reply([[parsed[c].get(i) for c in columns] for i in index], columns=columns)


def _wav(message: Any) -> bytes:
    """BESSER's speech reply is raw samples (numpy ``tobytes()``) and their dtype/shape: wrap them in
    a 16-bit PCM WAV file, so every client can play it."""
    meta = message.get("metadata") or {}
    raw, dtype = _b64(message.get("audio_data_base64")), str(meta.get("dtype") or "float32")
    codes = {"float32": "f", "float64": "d", "int16": "h", "int32": "i"}
    if dtype not in codes:
        raise ReplyError(f"audio samples of dtype {dtype} are not supported")
    samples = array.array(codes[dtype])
    samples.frombytes(raw[: len(raw) - len(raw) % samples.itemsize])
    if sys.byteorder == "big":
        samples.byteswap()
    if dtype.startswith("float"):
        pcm = array.array("h", (int(max(-1.0, min(1.0, s)) * 32767) for s in samples))
    elif dtype == "int32":
        pcm = array.array("h", (s >> 16 for s in samples))
    else:
        pcm = samples
    shape = meta.get("shape") or [len(pcm)]
    channels = 1
    if len(shape) == 2:
        first, second = int(shape[0]), int(shape[1])
        if first <= second:  # (channels, frames), as librosa keeps them: interleave
            channels = first
            pcm = array.array("h", (pcm[c * second + f] for f in range(second) for c in range(first)))
        else:
            channels = second
    if sys.byteorder == "big":
        pcm.byteswap()
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(max(1, channels))
        writer.setsampwidth(2)
        writer.setframerate(int(meta.get("sample_rate") or 16000))
        writer.writeframes(pcm.tobytes())
    return out.getvalue()


def replies_from_payload(payload: Mapping[str, Any]) -> list[Reply]:
    """One frame from the bot as our replies (usually one; none for what has no counterpart).
    Raises ReplyError for a frame of a known action whose message is malformed."""
    action = str(payload.get("action") or "")
    kind = next((action[len(p) :] for p in PREFIXES if action.startswith(p)), None)
    if kind is None or payload.get("history"):
        return []  # user_message echoes of a history replay, or actions for other clients
    message = payload.get("message")
    try:
        if kind == "str":
            return [text_reply(str(message))] if str(message or "").strip() else []
        if kind == "markdown":
            return [markdown_reply(str(message))] if str(message or "").strip() else []
        if kind == "html":
            plain = strip_tags(str(message or "")).strip()
            return [text_reply(plain)] if plain else []
        if kind == "options":
            return [_options(message)]
        if kind == "file":
            item = _json(message)
            return [file_reply(_b64(item["base64"]), str(item.get("name") or "file"))]
        if kind == "image":
            item = _json(message) if isinstance(message, str) and message.lstrip().startswith("{") else message
            if isinstance(item, Mapping):
                return [file_reply(_b64(item["base64"]), str(item.get("name") or "image.jpg"), kind="image")]
            return [file_reply(_b64(item), "image.jpg", kind="image")]
        if kind == "dataframe":
            return [_table(message)]
        if kind == "plotly":
            figure = _json(message)
            return [chart_reply({"data": figure.get("data") or [], "layout": figure.get("layout") or {}})]
        if kind == "location":
            item = _json(message)
            return [location_reply(float(item["latitude"]), float(item["longitude"]))]
        if kind == "rag":
            item = _json(message)
            answer = item.get("answer") if isinstance(item, Mapping) else None
            return [markdown_reply(str(answer))] if answer else []
        if kind == "audio":
            return [file_reply(_wav(_json(message)), "speech.wav", kind="audio")]
    except ReplyError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ReplyError(f"malformed {action}: {type(error).__name__}: {error}") from None
    logger.info("BESSER action %s has no counterpart here; ignored", action)
    return []


# ---- the bot -------------------------------------------------------------------------------------


class BesserBot(Bot):
    """The worker's side of a BESSER bot: one WebSocket client per bot participant."""

    timeout_margin = 0.0

    def __init__(self, spec: Any) -> None:
        super().__init__()
        extra = spec.extra
        self.url: str = extra.get("url") or DEFAULT_URL
        if not self.url.startswith(("ws://", "wss://")):
            raise ValueError(f"bot {spec.name!r}: a besser bot's url is ws:// or wss://")
        self.fixed_user_id: str | None = extra.get("user_id")
        self.connect_timeout = float(extra.get("connect_timeout") or CONNECT_TIMEOUT)
        self.max_attempts = int(extra.get("max_attempts") or DEFAULT_ATTEMPTS)
        self.backoff = float(extra.get("retry_backoff") or DEFAULT_BACKOFF)
        self._ws: Any = None
        self._reader: asyncio.Task | None = None
        self._lock: asyncio.Lock | None = None
        self._changed: asyncio.Condition | None = None
        self._origin: tuple[int, int] | None = None  # (delivery id, hop of its replies)
        self._count = 0  # replies received for the current origin
        self.received = 0  # frames handled (stored, refused or ignored): tests wait on it
        self.connections = 0  # connections opened so far

    @property
    def user_id(self) -> str:
        """The BESSER session key (``X-User-ID``): one per bot participant unless configured."""
        return self.fixed_user_id or f"chatroom-{self.participant_id}"

    @classmethod
    def overrides_on_status(cls) -> bool:
        return True

    # ---- deliveries ---------------------------------------------------------------------------

    async def on_message(self, message: BotMessage, context: Context) -> None:
        payloads = await db(payloads_for, message, self.user_id)
        if not payloads:
            return None
        item = outbox.current_delivery.get()
        hop = outbox.current_hop.get()
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if item is not None:
                self._origin, self._count = (item.id, hop or 1), 0
            await self._send(payloads, item.attempts if item is not None else 1)
        return None  # the replies arrive on the reader, whenever the bot sends them

    async def on_status(self, status: BotStatus, context: Context) -> None:
        leaving = status.event in ("left", "removed") and (status.participant or {}).get("id") == self.participant_id
        if status.event == "ended" or leaving:
            await self.aclose()
        return None

    async def _send(self, payloads: list[dict[str, Any]], attempt: int) -> None:
        from websockets.exceptions import ConnectionClosed

        for retry in (False, True):
            ws = await self._connection(attempt)
            try:
                for payload in payloads:
                    await ws.send(json.dumps(payload))
                return
            except ConnectionClosed:
                await self._drop(ws)  # dropped since the last delivery: open a new one, once
                if retry:
                    self._again(attempt, f"{self.url} closed the connection while sending")

    async def _connection(self, attempt: int) -> Any:
        from websockets.asyncio.client import connect

        ws = self._ws
        if ws is not None and ws.state.name == "OPEN":
            return ws
        if ws is not None:
            await self._drop(ws)
        try:
            ws = await connect(
                self.url,
                additional_headers={"X-User-ID": self.user_id},
                open_timeout=self.connect_timeout,
                max_size=MAX_FRAME,
                proxy=None,
            )
        except Exception as error:  # refused, DNS, handshake, time-out: all worth another try
            self._again(attempt, f"could not connect to {self.url}: {type(error).__name__}: {error}")
        self._ws = ws
        self.connections += 1
        self._reader = asyncio.create_task(self._read(ws), name=f"besser-{self.participant_id}")
        return ws

    def _again(self, attempt: int, reason: str) -> None:
        if attempt >= self.max_attempts:
            raise BesserError(f"{reason}; gave up after {attempt} attempts")
        raise RetryLater(reason, min(self.backoff * 2 ** (attempt - 1), MAX_BACKOFF))

    async def _drop(self, ws: Any) -> None:
        if self._ws is ws:
            self._ws = None
        await ws.close()

    async def aclose(self) -> None:
        """Close the connection and stop reading (the worker forgets this bot, or it left)."""
        ws, reader = self._ws, self._reader
        self._ws = self._reader = None
        if ws is not None:
            await ws.close()
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    # ---- replies ------------------------------------------------------------------------------

    async def _read(self, ws: Any) -> None:
        """Store every reply as it arrives, until the connection closes (the next delivery
        opens a new one)."""
        from websockets.exceptions import ConnectionClosed

        try:
            async for frame in ws:
                await self._handle(frame)
        except ConnectionClosed:
            pass
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("BESSER bot %s: reading from %s failed", self.name, self.url)
        finally:
            if self._ws is ws:
                self._ws = None
            logger.info("BESSER bot %s: connection to %s closed", self.name, self.url)

    async def _handle(self, frame: str | bytes) -> None:
        try:
            payload = json.loads(frame)
            if not isinstance(payload, dict):
                raise ReplyError("a frame is a JSON object")
            replies = coerce(replies_from_payload(payload))
            for reply in replies:
                await self._store(reply)
        except (ValueError, ChatError) as error:  # ReplyError is a ValueError; so is bad JSON
            logger.warning("BESSER bot %s: reply refused: %s", self.name, error)
        except Exception:
            logger.exception("BESSER bot %s: could not store a reply", self.name)
        finally:
            self.received += 1
            await self._notify()

    async def _store(self, reply: Reply) -> None:
        prefix = None
        if self._origin is not None:
            prefix = f"besser-{self._origin[0]}-{self._count}"
            self._count += 1
        token = outbox.current_hop.set(self._origin[1] if self._origin else None)
        try:
            await db(delivery.save_replies, self.participant_id, [reply], client_prefix=prefix)
        finally:
            outbox.current_hop.reset(token)

    async def _notify(self) -> None:
        if self._changed is None:
            self._changed = asyncio.Condition()
        async with self._changed:
            self._changed.notify_all()

    async def wait_received(self, count: int) -> None:
        """Return once ``count`` frames from the bot have been handled (tests; no polling)."""
        if self._changed is None:
            self._changed = asyncio.Condition()
        async with self._changed:
            await self._changed.wait_for(lambda: self.received >= count)
