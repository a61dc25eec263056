"""Timestamps read back as Django reads them, whichever loader reads them.

On PostgreSQL in UTC, psycopg's own loader reads them (chatroom/postgresql/base.py), not
Django's Python one: the values must stay aware, equal, and in ``datetime.timezone.utc``
through every kind of cursor (the ORM's, a named one, a prepared one). A database with a
``TIME_ZONE`` of its own keeps Django's loader. SQLite converts in Django: the checks of
every cursor hold there too.
"""

from __future__ import annotations

import datetime
import zoneinfo

import pytest
from django.db import connection
from django.db.backends.postgresql.base import TIMESTAMPTZ_OID  # the OID chatroom/postgresql/base.py reads by
from django.db.backends.postgresql.psycopg_any import BaseTzLoader, get_adapters_template
from django.db.utils import ConnectionHandler
from psycopg import pq

from conversations import socket_reads
from conversations.models import Conversation, Participant

pytestmark = pytest.mark.django_db(transaction=True)

WHEN = datetime.datetime(2026, 3, 29, 0, 59, 58, 123456, tzinfo=datetime.UTC)  # a DST change in Paris


@pytest.fixture
def conversation():
    conversation = Conversation.objects.create(name="times", created_at=WHEN)
    Participant.objects.create(conversation=conversation, name="ann", joined_at=WHEN + datetime.timedelta(seconds=1))
    return conversation


def test_every_cursor_reads_timestamps_aware_in_utc(conversation):
    read = Conversation.objects.get(pk=conversation.pk)
    assert read.created_at == WHEN and read.created_at.tzinfo is datetime.UTC

    [named] = list(Conversation.objects.filter(pk=conversation.pk).iterator(chunk_size=10))  # a named cursor on PG
    assert named.created_at == WHEN and named.created_at.tzinfo is datetime.UTC

    person = Participant.objects.get(conversation=conversation)
    prepared = socket_reads.participant(person.pk)  # a hand-written statement, prepared on PG
    assert prepared.joined_at == WHEN + datetime.timedelta(seconds=1)
    assert prepared.joined_at.tzinfo is datetime.UTC
    assert prepared.conversation.created_at == WHEN

    if connection.vendor != "postgresql":
        return
    loader = connection.connection.adapters.get_loader(TIMESTAMPTZ_OID, pq.Format.TEXT)
    assert not issubclass(loader, BaseTzLoader), "Django's Python loader still reads timestamps"
    # Django's own adapters, shared by its stock backend's connections, are not changed.
    django_template = get_adapters_template(True, datetime.UTC)
    assert issubclass(django_template.get_loader(TIMESTAMPTZ_OID, pq.Format.TEXT), BaseTzLoader)

    # A database with a TIME_ZONE of its own: its session is in that zone and Django's loader
    # gives the values in it, the same instants.
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    other = ConnectionHandler({"default": {**connection.settings_dict, "TIME_ZONE": "Europe/Paris"}})["default"]
    try:
        with other.cursor() as cursor:
            cursor.execute(f"SELECT created_at FROM {Conversation._meta.db_table} WHERE id = %s", [conversation.pk])
            [value] = cursor.fetchone()
        assert value == WHEN and value.tzinfo == paris
        assert issubclass(other.connection.adapters.get_loader(TIMESTAMPTZ_OID, pq.Format.TEXT), BaseTzLoader)
    finally:
        other.close()
