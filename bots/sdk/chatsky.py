"""A Chatsky ``Pipeline`` as a bot of the room (the optional extra ``pip install chatsky==0.10.0``).

    {"toy": {"class": "bots.sdk.chatsky.ChatskyBot",
             "kwargs": {"pipeline": "mybots.pipelines.make_pipeline"}}}

``ChatskyBot`` plays the part of a Chatsky messenger interface: each delivered message becomes a
Chatsky ``Message`` and goes through the pipeline's runner (``Pipeline._run_pipeline``, what
Chatsky's own interfaces call); the response ``Message`` comes back as our replies. The mapping,
both ways (see docs/bots.md, "Chatsky pipelines"):

* text <-> text (``parse_mode="Markdown"``/``"MarkdownV2"`` on a response: a markdown reply);
* ``Location``, ``Contact``, ``Poll`` <-> location, contact, poll;
* ``Image``/``Audio``/``Video``/``VoiceMessage``/``Document`` (also ``Animation``, ``Sticker``,
  ``VideoMessage``, ``MediaGroup``) <-> file replies and attachments: ours reach Chatsky as a local
  path (``source``) when the storage has one, else by ``id`` with the download URL in the extra
  ``url``; Chatsky's are read from their path or URL and stored as attachments;
* a ``reply_markup`` keyboard on a response (Telegram's ``InlineKeyboardMarkup`` /
  ``ReplyKeyboardMarkup``, or the same as a dict; ``buttons()`` builds one) -> an options reply;
  choosing an option -> a request with the label as text and a ``CallbackQuery`` whose
  ``query_string`` is the option's value (``cnd.HasCallbackQuery`` and ``cnd.ExactMatch`` both work).

Chatsky's turn state lives in our ``Context.misc["chatsky"]`` (the last ``keep_turns`` turns of
each Chatsky context, its labels, misc and slots), not only in the pipeline's memory: the worker
saves that Context with the turn's replies in one transaction, so a restart, another worker
process or a failed turn (nothing saved) never leaves the two out of step. A pipeline configured
with a real Chatsky context storage (SQL, Redis, ...) keeps its own and is left alone.

Importing ``chatsky`` normally applies ``nest_asyncio`` to the whole process (pure-Python asyncio
tasks, re-entrant loops). This module imports it without that patch: the adapter runs each turn on
a fresh event loop in the worker's thread pool (``asyncio.run``), so nothing nests, and a script
that blocks can never stall the worker's loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import mimetypes
import sys
import threading
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from django.utils.module_loading import import_string

from ..base import Bot, BotMessage
from ..context import Context
from ..replies import Reply, ReplyError
from ..replies import contact as contact_reply
from ..replies import file as file_reply
from ..replies import location as location_reply
from ..replies import markdown as markdown_reply
from ..replies import options as options_reply
from ..replies import poll as poll_reply
from ..replies import text as text_reply

logger = logging.getLogger(__name__)


def _import_chatsky():
    """Import chatsky without its process-wide ``nest_asyncio.apply()`` (see the module docstring)."""
    if "chatsky" in sys.modules:
        return sys.modules["chatsky"]
    import nest_asyncio

    original = nest_asyncio.apply
    nest_asyncio.apply = lambda loop=None: None
    try:
        import chatsky
    finally:
        nest_asyncio.apply = original
    return chatsky


chatsky = _import_chatsky()

from chatsky.context_storages import DBContextStorage, MemoryContextStorage  # noqa: E402
from chatsky.core.ctx_utils import ContextMainInfo  # noqa: E402
from chatsky.core.message import (  # noqa: E402
    Audio,
    CallbackQuery,
    Contact,
    DataAttachment,
    Document,
    Image,
    Location,
    MediaGroup,
    Origin,
    Poll,
    PollOption,
    Video,
    VideoMessage,
    VoiceMessage,
)
from chatsky.core.message import Message as ChatskyMessage  # noqa: E402

__all__ = ["ChatskyBot", "RoomContextStorage", "buttons", "from_chatsky", "to_chatsky"]

#: Chatsky turns kept per context in ``Context.misc`` (labels, requests, responses each).
KEEP_TURNS = 10
#: Chatsky contexts kept per bot participant when each sender has their own (``per_sender``).
MAX_CONTEXTS = 200
#: Bytes read from a Chatsky attachment given by URL.
MAX_DOWNLOAD = 50 * 1024 * 1024
MISC_KEY = "chatsky"

_FIELDS = ("labels", "requests", "responses")
_OUR_KIND = {Image: "image", Audio: "audio", Video: "video", VideoMessage: "video", VoiceMessage: "voice"}
_THEIR_CLASS = {"image": Image, "audio": Audio, "video": Video, "voice": VoiceMessage, "file": Document}
_storage_lock = threading.Lock()


# ---- Chatsky's context storage, kept in our Context --------------------------------------------


class RoomContextStorage(DBContextStorage):
    """An in-memory Chatsky storage whose contents move in and out of ``Context.misc``.

    Before a turn the adapter ``restore``s the Chatsky context from the snapshot in our Context;
    after it, ``snapshot`` takes it back out (and ``forget`` drops it from memory). Values are
    Chatsky's own JSON serialisation (what its database backends store), parsed, so the admin
    shows a readable snapshot.
    """

    is_concurrent: bool = True

    def __init__(self) -> None:
        super().__init__("memory://chatroom")
        self._main: dict[str, str] = {}
        self._turns: dict[str, dict[str, dict[int, str]]] = {}

    async def _connect(self) -> None:
        return None

    async def _load_main_info(self, ctx_id: str) -> ContextMainInfo | None:
        raw = self._main.get(ctx_id)
        return ContextMainInfo.model_validate_json(raw) if raw is not None else None

    async def _update_context(self, ctx_id: str, ctx_info: Any, field_info: list) -> None:
        if ctx_info is not None:
            self._main[ctx_id] = ctx_info.model_dump_json()
        fields = self._turns.setdefault(ctx_id, {})
        for name, items in field_info:
            target = fields.setdefault(name, {})
            for key, value in items:
                if value is None:
                    target.pop(key, None)
                else:
                    target[key] = value.decode() if isinstance(value, bytes) else value

    async def _delete_context(self, ctx_id: str) -> None:
        self.forget(ctx_id)

    def _field(self, ctx_id: str, name: str) -> dict[int, str]:
        return self._turns.get(ctx_id, {}).get(name, {})

    async def _load_field_latest(self, ctx_id: str, field_name: str) -> list[tuple[int, bytes]]:
        items = self._field(ctx_id, field_name)
        keys = sorted(items, reverse=True)
        subscript = self._subscripts[field_name]
        if isinstance(subscript, int):
            keys = keys[:subscript]
        elif isinstance(subscript, set):
            keys = [k for k in keys if k in subscript]
        return [(k, items[k].encode()) for k in keys]

    async def _load_field_keys(self, ctx_id: str, field_name: str) -> list[int]:
        return list(self._field(ctx_id, field_name))

    async def _load_field_items(self, ctx_id: str, field_name: str, keys: list[int]) -> list[tuple[int, bytes]]:
        items = self._field(ctx_id, field_name)
        return [(k, items[k].encode()) for k in keys if k in items]

    async def _clear_all(self) -> None:
        self._main.clear()
        self._turns.clear()

    # ---- moving a context in and out ----------------------------------------------------------

    def restore(self, ctx_id: str, snapshot: Mapping[str, Any] | None) -> None:
        self.forget(ctx_id)
        if not snapshot or not isinstance(snapshot.get("main"), dict):
            return
        self._main[ctx_id] = json.dumps(snapshot["main"])
        self._turns[ctx_id] = {
            name: {int(k): json.dumps(v) for k, v in (snapshot.get(name) or {}).items()} for name in _FIELDS
        }

    def snapshot(self, ctx_id: str, keep: int = KEEP_TURNS) -> dict[str, Any] | None:
        if ctx_id not in self._main:
            return None
        out: dict[str, Any] = {"main": json.loads(self._main[ctx_id])}
        for name in _FIELDS:
            items = self._field(ctx_id, name)
            out[name] = {str(k): json.loads(items[k]) for k in sorted(items)[-keep:]}
        return out

    def forget(self, ctx_id: str) -> None:
        self._main.pop(ctx_id, None)
        self._turns.pop(ctx_id, None)


# ---- our message -> Chatsky ----------------------------------------------------------------------


def _local_path(attachment_id: str) -> str | None:
    """Where the stored file is on this host (None for storages without paths)."""
    from conversations.models import Attachment

    row = Attachment.objects.filter(pk=attachment_id).first()
    if row is None:
        return None
    try:
        path = row.file.path
    except (NotImplementedError, ValueError):
        return None
    return path if Path(path).is_file() else None


def _attachment_to_chatsky(item: Mapping[str, Any], *, resolve_paths: bool = True) -> DataAttachment:
    cls = _THEIR_CLASS.get(item.get("kind") or "file", Document)
    extras = {"filename": item.get("name") or "file", "mime_type": item.get("mime") or "", "url": item.get("url")}
    path = _local_path(str(item.get("id"))) if resolve_paths and item.get("id") else None
    if path is not None:
        return cls(source=path, **extras)
    return cls(id=str(item.get("id") or item.get("url")), **extras)


def to_chatsky(message: BotMessage, *, resolve_paths: bool = True) -> ChatskyMessage:
    """A delivered message as a Chatsky request (sync: may read the ORM for attachment paths)."""
    attachments: list[Any] = []
    data = message.data or {}
    if message.option is not None:
        attachments.append(CallbackQuery(query_string=str(message.option)))
    if message.kind == "location" and "latitude" in data and "longitude" in data:
        attachments.append(Location(latitude=float(data["latitude"]), longitude=float(data["longitude"])))
    elif message.kind == "contact" and data.get("name"):
        first, _, last = str(data["name"]).partition(" ")
        attachments.append(Contact(phone_number=str(data.get("phone") or ""), first_name=first, last_name=last or None))
    elif message.kind == "poll" and isinstance(data.get("options"), list):
        attachments.append(
            Poll(
                question=str(data.get("question") or message.text),
                options=[PollOption(text=str(o.get("label"))) for o in data["options"] if isinstance(o, dict)],
            )
        )
    for item in message.attachments:
        attachments.append(_attachment_to_chatsky(item, resolve_paths=resolve_paths))
    return ChatskyMessage(
        text=message.text or None,
        attachments=attachments or None,
        misc={
            "message_id": message.id,
            "conversation_id": message.conversation_id,
            "sender": message.sender,
            "quoted_message_id": message.quoted_message_id,
        },
        origin=Origin(interface="chatroom"),
    )


# ---- Chatsky's response -> our replies -------------------------------------------------------------


def buttons(text: str, choices: Iterable[Any], **extras: Any) -> ChatskyMessage:
    """A Chatsky response with inline buttons (Telegram's ``reply_markup`` shape, as a dict):
    ``buttons("Pick", ["a", ("Bee", "b")])``. In a room it becomes an options message."""
    row = []
    for choice in choices:
        label, value = (choice, choice) if isinstance(choice, str) else choice
        row.append({"text": str(label), "callback_data": str(value)})
    return ChatskyMessage(text=text, reply_markup={"inline_keyboard": [[b] for b in row]}, **extras)


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def _keyboard_choices(markup: Any) -> list[tuple[str, str]]:
    """Buttons of a Telegram-style keyboard (object or dict): (label, value) pairs."""
    rows = _get(markup, "inline_keyboard") or _get(markup, "keyboard") or []
    choices = []
    for row in rows:
        for button in row if isinstance(row, (list, tuple)) else [row]:
            if isinstance(button, str):
                choices.append((button, button))
                continue
            label = _get(button, "text")
            value = _get(button, "callback_data") or label
            if label:
                choices.append((str(label), str(value)))
    return choices


def _read_source(attachment: DataAttachment) -> bytes:
    source = attachment.source
    if source is None:
        raise ReplyError(f"a Chatsky {attachment.chatsky_attachment_type} with only an id cannot be posted here")
    if isinstance(source, Path):
        return source.read_bytes()
    with urllib.request.urlopen(str(source), timeout=10) as response:
        content = response.read(MAX_DOWNLOAD + 1)
    if len(content) > MAX_DOWNLOAD:
        raise ReplyError(f"{source} is larger than {MAX_DOWNLOAD} bytes")
    return content


def _file_name(attachment: DataAttachment) -> str:
    extra = attachment.model_extra or {}
    name = extra.get("filename") or extra.get("name")
    if name:
        return str(name)
    source = attachment.source
    if source is not None:
        tail = Path(str(source.path if not isinstance(source, Path) else source)).name
        if tail:
            return tail
    ext = mimetypes.guess_extension(str(extra.get("mime_type") or "")) or ""
    return f"{attachment.chatsky_attachment_type}{ext}"


def _attachment_replies(attachment: Any) -> list[Reply]:
    if isinstance(attachment, Location):
        return [location_reply(attachment.latitude, attachment.longitude, str(_get(attachment, "label") or ""))]
    if isinstance(attachment, Contact):
        name = " ".join(p for p in (attachment.first_name, attachment.last_name) if p)
        return [contact_reply(name or attachment.phone_number, phone=attachment.phone_number)]
    if isinstance(attachment, Poll):
        multiple = bool((attachment.model_extra or {}).get("allows_multiple_answers"))
        return [poll_reply(attachment.question, [o.text for o in attachment.options], multiple=multiple)]
    if isinstance(attachment, MediaGroup):
        return [r for item in attachment.group for r in _attachment_replies(item)]
    if isinstance(attachment, DataAttachment):
        kind = next((k for cls, k in _OUR_KIND.items() if type(attachment) is cls), "file")
        caption = str((attachment.model_extra or {}).get("caption") or "")
        return [file_reply(_read_source(attachment), _file_name(attachment), caption, kind=kind)]
    if isinstance(attachment, CallbackQuery):
        return []  # a request-side attachment; nothing to show
    logger.warning("Chatsky attachment %s has no counterpart in a room; left out", type(attachment).__name__)
    return []


def from_chatsky(response: ChatskyMessage | None) -> list[Reply]:
    """A Chatsky response as our replies: its text (or options, with a keyboard), then each
    attachment in order (sync: may read files or URLs)."""
    if response is None:
        return []
    extra = response.model_extra or {}
    out: list[Reply] = []
    markup = extra.get("reply_markup")
    choices = _keyboard_choices(markup) if markup is not None else []
    if choices:
        out.append(options_reply(response.text or "", choices))
    elif response.text:
        markdown = str(extra.get("parse_mode") or "").lower().startswith("markdown")
        out.append(markdown_reply(response.text) if markdown else text_reply(response.text))
    for attachment in response.attachments or []:
        out.extend(_attachment_replies(attachment))
    return out


# ---- the bot ---------------------------------------------------------------------------------------------


def _resolve(value: Any) -> Any:
    """A dotted path (``"pkg.module.NAME"``) becomes the object it names; calling it if it is a
    factory is left to the caller."""
    return import_string(value) if isinstance(value, str) else value


def _label(label: Any) -> str:
    flow = getattr(label, "flow_name", None)
    node = getattr(label, "node_name", None)
    return f"{flow}:{node}" if flow is not None else str(label)


class ChatskyBot(Bot):
    """A Chatsky pipeline in a room. Give ``pipeline`` (a ``Pipeline``, or a dotted path to one
    or to a function returning one) or ``script`` (a dict or dotted path) with ``start_label`` and
    ``fallback_label`` (lists in JSON). ``per_sender``: each person of the room walks the script
    on their own (one Chatsky context each) instead of the room sharing one."""

    def __init__(
        self,
        pipeline: Any = None,
        *,
        script: Any = None,
        start_label: Any = None,
        fallback_label: Any = None,
        per_sender: bool = False,
        keep_turns: int = KEEP_TURNS,
        **pipeline_kwargs: Any,
    ) -> None:
        super().__init__()
        self.pipeline = self._make_pipeline(pipeline, script, start_label, fallback_label, pipeline_kwargs)
        self.per_sender = per_sender
        self.keep_turns = max(1, int(keep_turns))
        self.start_label = _label(self.pipeline.start_label)
        with _storage_lock:  # pipelines may be shared by several rooms: swap their storage once
            if type(self.pipeline.context_storage) is MemoryContextStorage:
                self.pipeline.context_storage = RoomContextStorage()
        self.storage = self.pipeline.context_storage

    @staticmethod
    def _make_pipeline(pipeline, script, start_label, fallback_label, kwargs) -> Any:
        if pipeline is not None:
            pipeline = _resolve(pipeline)
            if not isinstance(pipeline, chatsky.Pipeline) and callable(pipeline):
                pipeline = pipeline()
            if not isinstance(pipeline, chatsky.Pipeline):
                raise TypeError(f"pipeline must be a chatsky Pipeline, not {type(pipeline).__name__}")
            return pipeline
        if script is None or start_label is None:
            raise TypeError("ChatskyBot needs a pipeline, or a script with a start_label")
        labels = {"start_label": tuple(start_label) if isinstance(start_label, list) else start_label}
        if fallback_label is not None:
            labels["fallback_label"] = tuple(fallback_label) if isinstance(fallback_label, list) else fallback_label
        return chatsky.Pipeline(script=_resolve(script), **labels, **kwargs)

    def context_id(self, message: BotMessage) -> str:
        """Chatsky's context id: this bot participant, or (``per_sender``) participant and sender."""
        if self.per_sender:
            return f"{self.participant_id}:{(message.sender or {}).get('id', '')}"
        return self.participant_id or "chatroom"

    def on_message(self, message: BotMessage, context: Context) -> list[Reply]:
        """Run one Chatsky turn (in the worker's thread pool, on a loop of its own)."""
        request = to_chatsky(message)
        ctx_id = self.context_id(message)
        saved: dict[str, Any] = context.misc.setdefault(MISC_KEY, {})
        chatroom = {
            "conversation_id": message.conversation_id,
            "participant_id": self.participant_id,
            "bot": self.name,
            "sender": message.sender,
        }
        response, label, snapshot = asyncio.run(self._turn(request, ctx_id, saved.get(ctx_id), chatroom))
        if snapshot is not None:
            saved.pop(ctx_id, None)
            saved[ctx_id] = snapshot  # most recent last
            while len(saved) > MAX_CONTEXTS:
                saved.pop(next(iter(saved)))
        if label:
            context.add_label(label)
        return from_chatsky(response)

    async def _turn(self, request: ChatskyMessage, ctx_id: str, saved: Any, chatroom: dict) -> tuple:
        storage = self.storage
        ours = isinstance(storage, RoomContextStorage)
        if not storage.connected:
            await storage.connect()
        if ours:
            storage.restore(ctx_id, saved)
        try:
            ctx = await self.pipeline._run_pipeline(request, ctx_id, {"chatroom": chatroom})
            response = await ctx.responses.get(ctx.current_turn_id)
            label = await ctx.labels.get(ctx.current_turn_id)
            snapshot = storage.snapshot(ctx_id, self.keep_turns) if ours else None
        finally:
            if ours:
                storage.forget(ctx_id)
        return response, _label(label) if label is not None else None, snapshot
