"""A PostgreSQL connection of the event loop's own, for a hot statement run on the loop.

Every database call of a socket hops to the process's one database thread
(``database_sync_to_async``) and back: an executor hand-off, two context copies, the GIL passed
between threads and ``close_old_connections`` on each side. For a message's send (one statement
in autocommit, ``send_sql.state_and_insert``) the hop cost more of daphne's CPU than the
statement (bench/: py-spy at N = 10). ``fetchone`` runs such a statement on an
``AsyncConnection`` held per event loop instead: its wait is the loop's, not a thread's.

The connection follows the database's settings as Django's do: the same parameters and
adapters (``get_connection_params``), ``CONN_MAX_AGE`` (0: a connection per statement, as in
the test process; seconds; None: kept while healthy) and ``PREPARED_STATEMENTS``. A statement
that fails, for whatever reason, returns None with nothing committed by it, and the caller
takes the ordinary path, which raises or answers as it always has; a connection that failed
is dropped and the next statement opens another.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import weakref
from typing import Any

import psycopg
from django.db import connections
from psycopg.types.datetime import TimestamptzLoader

logger = logging.getLogger(__name__)

#: How the connection shows in ``pg_stat_activity``.
APPLICATION_NAME = "chatroom-loop"


class _Held:
    """One loop's connection (or none yet), its cursor and when it was opened. A cursor kept
    keeps its adapters' cache (psycopg looks a dumper up per type, per cursor)."""

    __slots__ = ("conn", "cursor", "lock", "opened")

    def __init__(self) -> None:
        self.conn: psycopg.AsyncConnection | None = None
        self.cursor: psycopg.AsyncCursor | None = None
        self.opened = 0.0
        self.lock = asyncio.Lock()  # one statement at a time, as on any connection


_held: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Held] = weakref.WeakKeyDictionary()


def available(alias: str = "default") -> bool:
    """Whether ``alias`` is a PostgreSQL database this module can reach."""
    return connections[alias].vendor == "postgresql"


@functools.lru_cache(maxsize=64)
def _encoded(sql: str) -> bytes:
    """The same bytes for the same statement: psycopg's cache of converted queries then hashes
    a few kilobytes once, not per call."""
    return sql.encode()


async def fetchone(sql: str, params: list[Any], alias: str = "default") -> tuple[Any, ...] | None:
    """The first row of one statement run in autocommit on this loop's connection; None for
    no row or any error (the statement's transaction rolled back: nothing of it committed)."""
    wrapper = connections[alias]
    max_age = wrapper.settings_dict["CONN_MAX_AGE"]
    held = _Held()  # CONN_MAX_AGE = 0: a connection of the statement's own
    if max_age != 0:
        loop = asyncio.get_running_loop()
        held = _held.get(loop) or _held.setdefault(loop, held)
    prepare = wrapper.settings_dict.get("PREPARED_STATEMENTS", True)
    async with held.lock:
        cursor = await _cursor(held, wrapper, max_age)
        if cursor is None:
            return None
        try:
            await cursor.execute(_encoded(sql), params, prepare=prepare)
            return await cursor.fetchone()
        except psycopg.Error as error:
            if cursor.connection.broken or not isinstance(error, psycopg.errors.IntegrityError):
                logger.info("loop connection: %s; the ordinary path takes the statement", error)
                await _drop(held)
            return None
        finally:
            if max_age == 0:
                await _drop(held)


async def _cursor(held: _Held, wrapper: Any, max_age: int | None) -> psycopg.AsyncCursor | None:
    """``held``'s cursor, on a connection opened now if it has none, or none that is open and
    younger than ``max_age``; None if none can be opened."""
    conn = held.conn
    if conn is not None and (conn.closed or (max_age and time.monotonic() - held.opened > max_age)):
        await _drop(held)
    if held.cursor is None:
        params = wrapper.get_connection_params()
        params.pop("cursor_factory", None)  # Django's is a synchronous cursor
        params.update(autocommit=True, prepare_threshold=0, application_name=APPLICATION_NAME)
        # Timestamps in UTC, as Django reads them, by psycopg's C loader: Django's loader (in
        # Python, for any TIME_ZONE) took ~4 % of daphne's samples at N = 10 (bench/).
        params["options"] = f"{params.get('options', '')} -c TimeZone=UTC".strip()
        try:
            conn = await psycopg.AsyncConnection.connect(**params)
        except psycopg.Error as error:
            logger.warning("loop connection: cannot connect (%s); the ordinary path takes the statement", error)
            return None
        conn.adapters.register_loader("timestamptz", TimestamptzLoader)
        held.conn, held.cursor, held.opened = conn, conn.cursor(), time.monotonic()
    return held.cursor


async def _drop(held: _Held) -> None:
    conn, held.conn, held.cursor = held.conn, None, None
    if conn is not None and not conn.closed:
        await conn.close()


async def close() -> None:
    """Close this loop's connection (a test, a server shutting down)."""
    held = _held.get(asyncio.get_running_loop())
    if held is not None:
        async with held.lock:
            await _drop(held)
