"""Django's PostgreSQL backend, but for how a kept connection is checked before reuse.

With persistent connections and ``CONN_HEALTH_CHECKS``, Django checks a connection with a
``SELECT 1`` at the start of each request, and Channels' ``database_sync_to_async`` starts one
per call: every socket call and every bot-worker step paid a round trip more (bench/: a third of
a message's database round trips; py-spy: ~13 % of daphne's busy samples at N = 10).

The check here looks at the connection instead. A server that ends a connection (a restart,
``pg_terminate_backend``, an idle timeout) sends an error and closes the socket, so the socket
of an ended connection is readable while an idle healthy one has nothing to read: one
``poll`` with no wait. A connection in a failed or unknown state is not reused either. What it
cannot see is a network path that died without a word, which ``SELECT 1`` would only find
after a TCP time-out as well.

``prepared_cursor`` is for the few hot statements written by hand (a message's send, a bot
delivery's read): PostgreSQL parses and plans each once per connection instead of once per
message (bench/: the send's statement took 0.78 ms unprepared, 0.43 ms prepared, most of the
difference its planning).

Timestamps are read by psycopg's own loader (in C) where Django's connection is in UTC (the
session's ``TimeZone`` as Django sets it, ``USE_TZ`` without a database ``TIME_ZONE``): Django
registers a loader of its own for any time zone, a Python subclass that parses each value in
Python and then replaces its zone; ~10x psycopg's time per value, ~10 % of daphne's busy
samples while sockets connect (bench/). psycopg's gives the same aware datetimes, in
``datetime.timezone.utc``.
"""

from __future__ import annotations

import datetime
import functools
import select

from django.conf import settings
from django.db.backends.postgresql import base
from django.db.backends.postgresql.psycopg_any import register_tzloader
from django.db.backends.utils import CursorWrapper
from django.utils.asyncio import async_unsafe
from psycopg import adapt, pq
from psycopg.types.datetime import TimestamptzLoader

_REUSABLE = (pq.TransactionStatus.IDLE, pq.TransactionStatus.INTRANS)


@functools.cache
def _reading_utc_in_c(template: adapt.AdaptersMap) -> adapt.AdaptersMap:
    """Django's adapters (its template, cached and shared by every connection of its backend
    with the same time zone: not changed here) with psycopg's own timestamp loader, the C
    implementation where psycopg has one, in place of Django's (see the module)."""
    adapters = adapt.AdaptersMap(template)
    adapters.register_loader("timestamptz", TimestamptzLoader)
    return adapters


class _PreparingCursor(base.ServerBindingCursor):
    """Binds on the server and prepares every statement on its first run on the connection.

    psycopg prepares nothing while the connection's ``prepare_threshold`` is None, Django's
    setting (so that the ORM's client-side cursors stay as they are): it is lifted for the
    statement only."""

    def execute(self, query, params=None, *, prepare=None, binary=None):
        conn = self.connection
        threshold = conn.prepare_threshold
        conn.prepare_threshold = 0
        try:
            return super().execute(query, params, prepare=True, binary=binary)
        finally:
            conn.prepare_threshold = threshold


class DatabaseOperations(base.DatabaseOperations):
    def last_executed_query(self, cursor, sql, params):
        """The logged SQL (``DEBUG``, the test suite's query capture) of a prepared statement
        too: composed on the client, as Django does for server-side binding."""
        if isinstance(cursor, _PreparingCursor):
            return self.compose_sql(sql, params)
        return super().last_executed_query(cursor, sql, params)


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations

    @property
    def _utc_by_psycopg(self) -> bool:
        """Timestamps read by psycopg's own loader: Django's connection is in UTC."""
        return settings.USE_TZ and self.timezone is datetime.UTC

    def get_connection_params(self) -> dict:
        params = super().get_connection_params()
        if self._utc_by_psycopg:
            params["context"] = _reading_utc_in_c(params["context"])
        return params

    @async_unsafe
    def create_cursor(self, name=None):
        """Django's, but without its check of the loader's time zone where psycopg's loader
        reads the connection's timestamps (that check reads an attribute psycopg's lacks)."""
        if not self._utc_by_psycopg:
            return super().create_cursor(name)
        if name is None:
            return self.connection.cursor()
        if self.settings_dict["OPTIONS"].get("server_side_binding") is not True:  # as Django
            return base.ServerSideCursor(
                self.connection, name=name, scrollable=False, withhold=self.connection.autocommit
            )
        return self.connection.cursor(name, scrollable=False, withhold=self.connection.autocommit)

    @async_unsafe
    def prepared_cursor(self) -> CursorWrapper:
        """A cursor for a hand-written statement (``%s`` placeholders, no literal ``%``) that
        is prepared on the server once per connection. ``"PREPARED_STATEMENTS": False`` in the
        database's settings (a pooler that cannot keep them) gives Django's plain cursor.
        The ORM's SQL keeps client-side binding (it is not written for the other, Django
        ticket #20516)."""
        if not self.settings_dict.get("PREPARED_STATEMENTS", True):
            return self.cursor()
        self.close_if_health_check_failed()
        self.ensure_connection()
        with self.wrap_database_errors:
            cursor = _PreparingCursor(self.connection)
            # As create_cursor does: the connection's time zone, if it differs.
            if not self._utc_by_psycopg:
                loader = self.connection.adapters.get_loader(base.TIMESTAMPTZ_OID, pq.Format.TEXT)
                if self.timezone != loader.timezone:
                    register_tzloader(self.timezone, cursor)
            return self._prepare_cursor(cursor)

    def is_usable(self) -> bool:
        conn = self.connection
        if conn is None or conn.closed or conn.info.transaction_status not in _REUSABLE:
            return False
        try:
            poller = select.poll()
            poller.register(conn.fileno(), select.POLLIN | select.POLLPRI)
            return not poller.poll(0)  # anything to read while idle: the server's farewell
        except (OSError, ValueError):
            return False
