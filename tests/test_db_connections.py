"""Kept database connections: one the server ended is replaced before it is used again.

On PostgreSQL the health check is a ``poll`` of the connection's socket, not a ``SELECT 1``
(chatroom/postgresql/base.py); the server ends the connection here with
``pg_terminate_backend``. SQLite opens a file and has no server to end it: the same steps
must simply keep working.
"""

from __future__ import annotations

import select

import psycopg
import pytest
from django.db import close_old_connections, connection

from conversations.models import Conversation

pytestmark = pytest.mark.django_db(transaction=True)

WAIT_MS = 10_000  # an upper bound on waiting for the server's farewell, not a sleep


@pytest.fixture
def kept_connection():
    """This test's connection kept across "requests", as daphne's are (the suite sets 0)."""
    settings_dict = connection.settings_dict
    max_age = settings_dict["CONN_MAX_AGE"]
    connection.close()
    settings_dict["CONN_MAX_AGE"] = None  # kept for good
    try:
        connection.ensure_connection()
        yield connection
    finally:
        settings_dict["CONN_MAX_AGE"] = max_age
        connection.close()


def _end_from_the_server(conn) -> None:
    pid = conn.connection.info.backend_pid
    params = conn.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone() == (True,)
    poller = select.poll()
    poller.register(conn.connection.fileno(), select.POLLIN)
    assert poller.poll(WAIT_MS), "the server did not end the connection"


def test_a_healthy_kept_connection_is_reused(kept_connection):
    before = kept_connection.connection
    close_old_connections()  # what each database_sync_to_async call does, before and after
    assert Conversation.objects.count() == 0
    assert kept_connection.connection is before
    assert kept_connection.is_usable()


def test_a_connection_the_server_ended_is_replaced_before_use(kept_connection):
    before = kept_connection.connection
    if kept_connection.vendor == "postgresql":
        _end_from_the_server(kept_connection)
        assert not kept_connection.is_usable()
    close_old_connections()
    assert Conversation.objects.count() == 0  # no "server closed the connection" error
    if kept_connection.vendor == "postgresql":
        assert kept_connection.connection is not before
        assert kept_connection.is_usable()
