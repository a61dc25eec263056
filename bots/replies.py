"""Reply builders and their validator: what a bot may answer, and the ``data`` shape of each kind.

A bot returns ``None``, one reply or a list of replies. A reply is a ``Reply`` (from the
builders below), a plain ``str`` (a text reply) or a dict ``{"kind", "text", "data", ...}``
(the JSON shape external bots use too). Everything is checked by ``coerce`` before anything is
stored: a malformed reply raises ``ReplyError`` with the reason, which the worker logs and
records on the delivery. The shapes (``Message.data``) are documented in docs/bots.md.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

MAX_DATA_BYTES = 256 * 1024  # JSON size of one reply's data
MAX_OPTIONS = 25
MAX_TABLE_ROWS = 1000
MAX_TABLE_COLUMNS = 50
MAX_LABEL = 200
FILE_KINDS = ("file", "image", "audio", "video", "voice")
KINDS = ("text", "markdown", "options", *FILE_KINDS, "location", "contact", "poll", "table", "chart")


class ReplyError(ValueError):
    """A bot's reply that cannot be stored; the message says why."""


@dataclass
class FileSource:
    """Bytes or a local path (Python bots only), stored as an Attachment when the reply is saved."""

    name: str
    content: bytes | None = None
    path: str | None = None

    def read(self) -> bytes:
        if self.content is not None:
            return self.content
        assert self.path is not None
        return Path(self.path).read_bytes()


@dataclass
class Reply:
    kind: str
    text: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    files: list[FileSource] = field(default_factory=list)
    quote: str | None = None  # id of a message of the conversation this reply refers to

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape (file contents left out), as recorded in the Context."""
        out: dict[str, Any] = {"kind": self.kind, "text": self.text, "data": self.data}
        if self.files:
            out["files"] = [{"name": f.name} for f in self.files]
        if self.quote:
            out["quoted_message_id"] = self.quote
        return out


# ---- builders ---------------------------------------------------------------------------------


def text(body: str, *, quote: str | None = None) -> Reply:
    return Reply("text", body, quote=quote)


def markdown(body: str, *, quote: str | None = None) -> Reply:
    """Markdown source; clients render it without raw HTML."""
    return Reply("markdown", body, quote=quote)


def options(prompt: str, choices: Iterable[Any], *, quote: str | None = None) -> Reply:
    """Buttons. Each choice is ``"label"`` (value = label), ``(label, value)`` or
    ``{"label": ..., "value": ...}``. The choice comes back as a message whose
    ``data["option"] == {"message_id": <this message>, "value": value}``."""
    items = []
    for choice in choices:
        if isinstance(choice, str):
            items.append({"label": choice, "value": choice})
        elif isinstance(choice, tuple) and len(choice) == 2:
            items.append({"label": choice[0], "value": choice[1]})
        elif isinstance(choice, Mapping):
            items.append({"label": choice.get("label"), "value": choice.get("value")})
        else:
            raise ReplyError(f"an option is a label, a (label, value) pair or a dict, not {type(choice).__name__}")
    return Reply("options", prompt, {"options": items}, quote=quote)


def _file_source(source: bytes | str | Path, name: str | None) -> FileSource:
    if isinstance(source, (bytes, bytearray)):
        return FileSource(name=name or "file", content=bytes(source))
    if isinstance(source, (str, Path)):
        return FileSource(name=name or Path(source).name, path=str(source))
    raise ReplyError(f"a file is bytes or a path, not {type(source).__name__}")


def file(source: bytes | str | Path, name: str | None = None, caption: str = "", *, kind: str = "file") -> Reply:
    """Any file; its real type is judged from the bytes when it is stored."""
    return Reply(kind, caption, files=[_file_source(source, name)])


def image(source: bytes | str | Path, name: str | None = None, caption: str = "") -> Reply:
    return file(source, name, caption, kind="image")


def audio(source: bytes | str | Path, name: str | None = None, caption: str = "") -> Reply:
    return file(source, name, caption, kind="audio")


def video(source: bytes | str | Path, name: str | None = None, caption: str = "") -> Reply:
    return file(source, name, caption, kind="video")


def voice(source: bytes | str | Path, name: str | None = None, caption: str = "") -> Reply:
    return file(source, name, caption, kind="voice")


def location(latitude: float, longitude: float, label: str = "") -> Reply:
    data: dict[str, Any] = {"latitude": latitude, "longitude": longitude}
    if label:
        data["label"] = label
    return Reply("location", label, data)


def contact(name: str, *, phone: str = "", email: str = "", url: str = "") -> Reply:
    data = {"name": name, **{k: v for k, v in {"phone": phone, "email": email, "url": url}.items() if v}}
    return Reply("contact", name, data)


def poll(question: str, choices: Iterable[str], *, multiple: bool = False) -> Reply:
    items = [{"label": c, "value": c} if isinstance(c, str) else c for c in choices]
    return Reply("poll", question, {"question": question, "options": items, "multiple": multiple})


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None  # NaN is not JSON
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return _cell(value.item())
    return str(value)


def table(rows: Any, columns: Iterable[str] | None = None, caption: str = "") -> Reply:
    """A table from a list of dicts, a list of lists with ``columns``, or a DataFrame-like
    object (anything with ``columns`` and ``to_dict(orient="split")``; pandas is not required)."""
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):
        split = rows.to_dict(orient="split")
        cols, body = [str(c) for c in split["columns"]], split["data"]
    else:
        body = list(rows)
        if body and all(isinstance(r, Mapping) for r in body):
            cols = list(columns) if columns is not None else list(dict.fromkeys(k for r in body for k in r))
            body = [[r.get(c) for c in cols] for r in body]
        else:
            if columns is None:
                raise ReplyError("a table of lists needs its columns")
            cols = list(columns)
    data = {"columns": [str(c) for c in cols], "rows": [[_cell(v) for v in row] for row in body]}
    return Reply("table", caption, data)


def _plain(value: Any) -> Any:
    """JSON-able copy of a Plotly figure dict (numpy arrays become lists)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    return _cell(value)


def chart(figure: Any, caption: str = "") -> Reply:
    """A Plotly figure: a dict ``{"data": [...], "layout": {...}}`` or a ``plotly`` Figure
    (plotly itself is optional)."""
    if hasattr(figure, "to_plotly_json"):
        figure = figure.to_plotly_json()
    elif hasattr(figure, "to_dict") and not isinstance(figure, Mapping):
        figure = figure.to_dict()
    return Reply("chart", caption, {"figure": _plain(figure)})


# ---- validation -------------------------------------------------------------------------------


def _need(condition: bool, reason: str) -> None:
    if not condition:
        raise ReplyError(reason)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_choices(kind: str, items: Any, minimum: int) -> None:
    _need(isinstance(items, list) and minimum <= len(items) <= MAX_OPTIONS, f"{kind} needs {minimum}..25 options")
    values = set()
    for item in items:
        _need(isinstance(item, dict), f"each {kind} option is an object with label and value")
        label, value = item.get("label"), item.get("value")
        _need(isinstance(label, str) and 0 < len(label) <= MAX_LABEL, f"{kind} option labels are 1..200 characters")
        _need(
            isinstance(value, (str, int, float, bool)) and not isinstance(value, dict),
            f"{kind} option values are strings, numbers or booleans",
        )
        _need(repr(value) not in values, f"{kind} option values must differ")
        values.add(repr(value))


def validate(reply: Reply) -> Reply:
    """Check one reply's kind and data shape; return it or raise ReplyError."""
    kind, data = reply.kind, reply.data
    _need(kind in KINDS, f"unknown reply kind {kind!r}")
    _need(isinstance(reply.text, str), "text must be a string")
    _need(isinstance(data, dict), "data must be an object")
    if kind in ("text", "markdown"):
        _need(bool(reply.text.strip()), f"an empty {kind} reply")
        _need(not data, f"a {kind} reply has no data")
    elif kind == "options":
        _check_choices("options", data.get("options"), 1)
    elif kind in FILE_KINDS:
        _need(bool(reply.files), f"a {kind} reply needs a file")
        _need(all(isinstance(f, FileSource) for f in reply.files), "files must be FileSource")
    elif kind == "location":
        lat, lon = data.get("latitude"), data.get("longitude")
        _need(_is_number(lat) and _is_number(lon), "a location needs numeric latitude and longitude")
        _need(-90 <= lat <= 90 and -180 <= lon <= 180, "latitude is -90..90 and longitude -180..180")
        _need(isinstance(data.get("label", ""), str), "a location label is a string")
    elif kind == "contact":
        _need(isinstance(data.get("name"), str) and data["name"].strip() != "", "a contact needs a name")
        extra = [data.get(k) for k in ("phone", "email", "url") if k in data]
        _need(bool(extra) and all(isinstance(v, str) and v for v in extra), "a contact needs a phone, email or url")
    elif kind == "poll":
        _need(isinstance(data.get("question"), str) and data["question"].strip() != "", "a poll needs a question")
        _check_choices("poll", data.get("options"), 2)
        _need(isinstance(data.get("multiple", False), bool), "poll 'multiple' is a boolean")
    elif kind == "table":
        columns, rows = data.get("columns"), data.get("rows")
        _need(isinstance(columns, list) and 0 < len(columns) <= MAX_TABLE_COLUMNS, "a table needs 1..50 columns")
        _need(all(isinstance(c, str) for c in columns), "table columns are strings")
        _need(isinstance(rows, list) and len(rows) <= MAX_TABLE_ROWS, "a table has at most 1000 rows")
        for row in rows:
            _need(isinstance(row, list) and len(row) == len(columns), "every table row has one cell per column")
            _need(
                all(c is None or isinstance(c, (str, int, float, bool)) for c in row),
                "table cells are strings, numbers, booleans or null",
            )
    elif kind == "chart":
        figure = data.get("figure")
        _need(isinstance(figure, dict) and isinstance(figure.get("data"), list), "a chart needs a Plotly figure")
        _need(isinstance(figure.get("layout", {}), dict), "a chart's layout is an object")
    if kind not in FILE_KINDS:
        _need(not reply.files, f"a {kind} reply has no files")
    try:
        size = len(json.dumps(data, allow_nan=False))
    except (TypeError, ValueError) as error:
        raise ReplyError(f"data is not JSON: {error}") from None
    _need(size <= MAX_DATA_BYTES, f"data is {size} bytes; at most {MAX_DATA_BYTES}")
    _need(reply.quote is None or isinstance(reply.quote, str), "quoted_message_id is a string")
    return reply


def from_dict(raw: Mapping[str, Any]) -> Reply:
    """A reply in JSON shape (Python bots and external ones). Files come as
    ``{"name": ..., "content_base64": ...}``; paths are never read from a dict."""
    files = []
    for item in raw.get("files") or ([raw["file"]] if raw.get("file") else []):
        if not isinstance(item, Mapping) or not isinstance(item.get("content_base64"), str):
            raise ReplyError("a file in a reply dict is {name, content_base64}")
        try:
            content = base64.b64decode(item["content_base64"], validate=True)
        except ValueError:
            raise ReplyError("content_base64 is not base64") from None
        files.append(FileSource(name=str(item.get("name") or "file"), content=content))
    quote = raw.get("quoted_message_id") or raw.get("quote")
    return Reply(
        kind=raw.get("kind") or "text",
        text=raw.get("text", "") if raw.get("text") is not None else "",
        data=raw.get("data") if raw.get("data") is not None else {},
        files=files,
        quote=str(quote) if quote is not None else None,
    )


def coerce(result: Any) -> list[Reply]:
    """What a bot returned -> validated replies (None, a reply, or a flat list of them)."""
    if result is None:
        return []
    items = list(result) if isinstance(result, (list, tuple)) else [result]
    replies = []
    for item in items:
        if isinstance(item, Reply):
            reply = item
        elif isinstance(item, str):
            reply = text(item)
        elif isinstance(item, Mapping):
            reply = from_dict(item)
        else:
            raise ReplyError(f"a bot returned {type(item).__name__}; expected str, dict, Reply or a list of them")
        replies.append(validate(reply))
    return replies
