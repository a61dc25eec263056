"""Model rows read by hand-written SQL, converted exactly as the ORM would convert them.

On the hot paths (a message's sender, a bot delivery's participant and Context) building the
same ``select_related`` query with the ORM cost ~1-2 ms of Python per call on the machines
here (bench/). Their SQL never changes, so it is written once; ``Columns`` lists the columns
of some models for a ``SELECT`` and turns a result row back into model instances with the
converters the ORM's compiler would apply (SQLite: text to UUID, datetimes, booleans; every
backend: JSON, by orjson: ``json_from_db``, ``json_to_db``). ``hot_cursor`` runs such
statements prepared where the database can.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from typing import Any

import orjson
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.backends.utils import CursorWrapper
from django.db.models import JSONField, Model


def hot_cursor() -> CursorWrapper:
    """A cursor for a hand-written statement on a hot path: prepared on the server once per
    connection where the backend offers it (``chatroom.postgresql``), Django's own elsewhere."""
    prepared = getattr(connection, "prepared_cursor", None)
    return prepared() if prepared is not None else connection.cursor()


@cache
def insert_statement(model: type[Model], vendor: str) -> tuple[list, str]:
    meta = model._meta
    fields = [f for f in meta.local_concrete_fields if f is not meta.auto_field]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    returning = connection.ops.quote_name(meta.pk.column)
    return fields, f"INSERT INTO {meta.db_table} ({columns}) VALUES ({placeholders}) RETURNING {returning}"


def insert(obj: Model) -> None:
    """Store an unsaved instance of a model with an automatic primary key as ``save()`` would
    (each field's ``pre_save``, its value made ready for the driver) by a statement built once
    per model, and set its primary key. The ORM's insert compiler costs ~0.3 ms of Python per
    row here (bench/: a bot delivery per message in a room with bots). No signals are sent."""
    fields, sql = insert_statement(type(obj), connection.vendor)
    params = [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields]
    with hot_cursor() as cursor:
        cursor.execute(sql, params)
        obj.pk = cursor.fetchone()[0]
    obj._state.adding, obj._state.db = False, connection.alias


def column(model: type[Model], field: str, table: str = "") -> str:
    """``table.column`` of a model field (``table``: the name a statement gives the model's
    table, else the table's own)."""
    return f"{table or model._meta.db_table}.{model._meta.get_field(field).column}"


class Columns:
    """The concrete columns of ``models`` (in order) and how to read them back."""

    def __init__(self, *models: type[Model]) -> None:
        self.models = models
        references = [column(model, f.name) for model in models for f in model._meta.concrete_fields]
        self.sql = ", ".join(references)
        self.count = len(references)
        # The same list with a distinct name per column, for a WITH query whose rows are read
        # again by name (the models share column names such as ``id``).
        self.names = [f"c{i}" for i in range(self.count)]
        self.aliased_sql = ", ".join(f"{ref} AS {name}" for ref, name in zip(references, self.names, strict=True))
        # Per model, read once here rather than per row (a sender's state is read per message):
        # its field names, where its values start and end in a row, and where its primary key is.
        self._layout = []
        start = 0
        for model in models:
            fields = model._meta.concrete_fields
            self._layout.append(
                (model, [f.attname for f in fields], start, start + len(fields), fields.index(model._meta.pk))
            )
            start += len(fields)
        # Per field, the converters the ORM's compiler would apply on this connection's vendor
        # (a JSON field's own by orjson: ``json_from_db``).
        self.converters = [
            [
                (_faster(field, converter), field.get_col(model._meta.db_table))
                for converter in connection.ops.get_db_converters(field.get_col(model._meta.db_table))
                + field.get_db_converters(connection)
            ]
            for model in models
            for field in model._meta.concrete_fields
        ]

    def instances(self, values: Sequence[Any]) -> list[Model | None]:
        """One instance per model from the first ``count`` values of a row; None for a model
        whose primary key is NULL (the missing side of a LEFT JOIN)."""
        conn = connections[DEFAULT_DB_ALIAS]  # once: each use of the proxy looks it up (bench/)
        out: list[Model | None] = []
        for model, attnames, start, end, pk_index in self._layout:
            chunk = []
            for value, converters in zip(values[start:end], self.converters[start:end], strict=True):
                for converter, expression in converters:
                    value = converter(value, expression, conn)
                chunk.append(value)
            out.append(None if chunk[pk_index] is None else model.from_db(conn.alias, attnames, chunk))
        return out


def json_from_db(value: Any, expression: Any, connection: Any) -> Any:
    """``JSONField.from_db_value`` (no decoder) by orjson, ~2x faster on a bot's Context of 200
    turns (bench/); what orjson cannot read (an integer past 64 bits) goes to ``json``, and what
    neither can is returned as it came, as Django's does."""
    if value is None:
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value


def json_to_db(value: Any) -> bytes:
    """A JSON field's value as ``json.dumps`` (Django's JSONField without an encoder) writes
    it, by orjson, for a parameter of hand-written SQL (``Jsonb(value, dumps=json_to_db)``): a
    bot's Context of 200 turns in 0.07 ms against 1.1 (bench/). Whatever orjson refuses (an
    integer past 64 bits, a datetime) goes to ``json``, which writes or refuses it as before.
    orjson also writes a UUID (as its string) and NaN or an infinity (as null), where ``json``
    wrote a value PostgreSQL refused."""
    try:
        return orjson.dumps(value, option=_ORJSON_AS_JSON)
    except TypeError:
        return json.dumps(value).encode()


#: ``json.dumps``'s way with keys that are not strings; datetimes, dataclasses and subclasses of
#: str, int, dict and list left to it too (orjson would write what it refuses, or differently).
_ORJSON_AS_JSON = (
    orjson.OPT_NON_STR_KEYS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def _faster(field: Any, converter: Any) -> Any:
    """``json_from_db`` in place of a plain JSON field's own converter; any other as it is."""
    if isinstance(field, JSONField) and field.decoder is None and converter == field.from_db_value:
        return json_from_db
    return converter
