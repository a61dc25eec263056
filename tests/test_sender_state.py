"""The precompiled reads and writes (conversations/rows.py): a sender's state
(conversations/sender_state.py), a room's bots (conversations/room_bots.py), what a socket
reads when it connects (conversations/socket_reads.py), a bot delivery's participant and
Context (bots/delivery.py) and a delivery's insert are exactly what the ORM reads and writes,
converted the same way, on whichever database the suite runs."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from conversations import sender_state
from conversations.models import Conversation, Participant


def test_load_matches_the_orm_field_by_field(make_chat):
    chat, owner = make_chat(bots=["echo"])
    bob = chat.join("bob")
    Participant.objects.filter(pk=bob.pk).update(muted_until=timezone.now() + timedelta(minutes=5), last_read_seq=2)
    Conversation.objects.filter(pk=chat.conversation.pk).update(premoderation="bots", join_policy="invite")
    for i in range(3):
        chat.save_message(owner, {"client_id": f"c{i}", "text": "hi"})
    since = timezone.now() - timedelta(minutes=1)

    for person, sent in ((bob, 0), (owner, 3)):
        loaded = sender_state.load(person.pk, since)
        orm = Participant.objects.select_related("conversation").get(pk=person.pk)
        for field in Participant._meta.concrete_fields:
            assert getattr(loaded, field.attname) == getattr(orm, field.attname), field.name
        for field in Conversation._meta.concrete_fields:
            assert getattr(loaded.conversation, field.attname) == getattr(orm.conversation, field.attname), field.name
        assert (loaded.recent_messages, loaded.has_active_bots) == (sent, True)
        assert not loaded._state.adding  # a loaded row: save() updates it
    assert sender_state.load(owner.pk, timezone.now() + timedelta(seconds=1)).recent_messages == 0


def test_load_of_an_unknown_participant_is_none(db):
    assert sender_state.load(uuid.uuid4(), timezone.now()) is None


def test_a_bot_does_not_count_itself_among_the_rooms_bots(make_chat):
    """A reply of the room's only bot needs no bot lookup after its commit; a second bot does."""
    chat, owner = make_chat(bots=["echo"])
    echo = Participant.objects.get(conversation=chat.conversation, kind=Participant.Kind.BOT)
    now = timezone.now()
    assert sender_state.load(owner.pk, now).has_active_bots
    assert not sender_state.load(echo.pk, now).has_active_bots
    chat.add_bot("echo")
    assert sender_state.load(echo.pk, now).has_active_bots


def test_a_bot_deliverys_participant_and_context_match_the_orm(make_chat):
    """bots.delivery.participant_and_context: the same rows as the ORM, the Context or None."""
    from bots.delivery import import_context, participant_and_context
    from bots.models import BotContext

    chat, owner = make_chat(bots=["echo"])
    echo = Participant.objects.get(conversation=chat.conversation, kind=Participant.Kind.BOT)
    loaded, context = participant_and_context(echo.pk)
    assert context is None
    orm = Participant.objects.select_related("conversation").get(pk=echo.pk)
    for field in Participant._meta.concrete_fields:
        assert getattr(loaded, field.attname) == getattr(orm, field.attname), field.name
    for field in Conversation._meta.concrete_fields:
        assert getattr(loaded.conversation, field.attname) == getattr(orm.conversation, field.attname), field.name

    stored = {"current_turn_id": 2, "requests": {"1": {"text": "hi"}}, "responses": {"1": [{"text": "hi!"}]},
              "labels": {"1": "start"}, "misc": {"seen": ["ü", 1.5, None, True]}}  # fmt: skip
    import_context(echo, stored)
    _, context = participant_and_context(echo.pk)
    row = BotContext.objects.get(pk=echo.pk)
    exported = context.to_dict()
    assert exported["misc"] == row.misc == stored["misc"]
    assert (exported["current_turn_id"], exported["requests"], exported["labels"]) == (2, row.requests, row.labels)
    assert participant_and_context(owner.pk)[1] is None  # a human: no Context
    assert participant_and_context(uuid.uuid4()) == (None, None)


def test_a_rooms_active_bots_match_the_orm_in_joining_order(make_chat):
    from conversations import room_bots

    chat, _owner = make_chat(bots=["echo"])
    second, gone, banned = chat.add_bot("echo"), chat.add_bot("echo"), chat.add_bot("echo")
    Participant.objects.filter(pk=gone.pk).update(left_at=timezone.now())
    Participant.objects.filter(pk=banned.pk).update(banned=True)
    _, _other_room_owner = make_chat("Other", bots=["echo"])

    loaded = room_bots.active(chat.conversation.pk)
    orm = list(
        Participant.objects.filter(conversation=chat.conversation, kind="bot", left_at=None, banned=False).order_by(
            "joined_at", "id"
        )
    )
    assert [p.pk for p in loaded] == [p.pk for p in orm] and second.pk in [p.pk for p in loaded] and len(orm) == 2
    for mine, theirs in zip(loaded, orm, strict=True):
        for field in Participant._meta.concrete_fields:
            assert getattr(mine, field.attname) == getattr(theirs, field.attname), field.name
        assert not mine._state.adding
    assert room_bots.active(uuid.uuid4()) == []


def test_a_sockets_reads_match_the_orm(make_chat):
    """The participant behind a token with its conversation, the newest seq and the people of
    the room's list: the ORM's rows, field by field, in joining order, and the same list."""
    from conversations import protocol, room_bots, room_list, socket_reads

    chat, owner = make_chat(bots=["echo"])
    bob, gone, banned = chat.join("bob"), chat.join("gone"), chat.join("banned")
    Participant.objects.filter(pk=bob.pk).update(muted_until=timezone.now() + timedelta(minutes=5), last_read_seq=2)
    Participant.objects.filter(pk=gone.pk).update(left_at=timezone.now())
    Participant.objects.filter(pk=banned.pk).update(banned=True)
    Conversation.objects.filter(pk=chat.conversation.pk).update(premoderation="bots", join_policy="invite")
    chat.save_message(owner, {"client_id": "c1", "text": "hi"})
    _, _other_room_owner = make_chat("Other", bots=["echo"])

    def same(mine, theirs, model):
        for field in model._meta.concrete_fields:
            assert getattr(mine, field.attname) == getattr(theirs, field.attname), field.name
        assert not mine._state.adding

    for person in (owner, bob, gone, banned):
        loaded = socket_reads.participant(person.pk)
        orm = Participant.objects.select_related("conversation").get(pk=person.pk)
        same(loaded, orm, Participant)
        same(loaded.conversation, orm.conversation, Conversation)
    assert socket_reads.participant(uuid.uuid4()) is None

    conversation = Conversation.objects.get(pk=chat.conversation.pk)
    assert socket_reads.newest_seq(conversation.pk) == conversation.next_seq - 1 > 0
    with pytest.raises(Conversation.DoesNotExist):
        socket_reads.newest_seq(uuid.uuid4())

    people = room_bots.people(chat.conversation.pk)
    present = Participant.objects.filter(conversation=chat.conversation, left_at=None, banned=False)
    orm = list(present.order_by("joined_at", "id"))
    assert [p.pk for p in people] == [p.pk for p in orm] and len(orm) == 3  # the owner, the bot, bob
    for mine, theirs in zip(people, orm, strict=True):
        same(mine, theirs, Participant)
    assert room_bots.people(uuid.uuid4()) == []

    # The room's list as JSON text (on PostgreSQL written by the server) reads as the API's
    # dicts, timestamps to the character: one with a fraction of a second, one without.
    whole = timezone.now().replace(microsecond=0) + timedelta(minutes=10)
    Participant.objects.filter(pk=owner.pk).update(muted_until=whole)
    quoted = '"b\\ob" </script> \u00fc\U0001f642\t'  # JSON's escapes, non-ASCII
    Participant.objects.filter(pk=bob.pk).update(name=quoted)
    orm = list(present.order_by("joined_at", "id"))
    online = {str(bob.pk), str(gone.pk)}
    text = room_list.json_text(chat.conversation.pk, online)
    assert json.loads(text) == [protocol.participant_to_dict(p, online=p.is_bot or str(p.pk) in online) for p in orm]
    assert [p["online"] for p in json.loads(text)] == [False, True, True]  # the owner, the bot, bob
    assert json.loads(text)[-1]["name"] == quoted
    assert json.loads(text)[0]["muted_until"] == whole.isoformat() and "." not in whole.isoformat()
    assert room_list.json_text(uuid.uuid4(), online) == "[]"


def test_an_insert_stores_what_create_would(make_chat):
    from bots.models import BotDelivery
    from conversations.rows import insert

    chat, _owner = make_chat(bots=["echo"])
    echo = Participant.objects.get(conversation=chat.conversation, kind="bot")
    fields = {"participant": echo, "conversation_id": chat.conversation.pk, "bot_name": "echo", "type": "message",
              "payload": {"text": "ü", "n": [1, None]}, "hop": 2}  # fmt: skip
    mine, theirs = BotDelivery(**fields), BotDelivery.objects.create(**fields)
    insert(mine)

    assert mine.pk is not None and mine.pk != theirs.pk and not mine._state.adding
    stored, created = BotDelivery.objects.get(pk=mine.pk), BotDelivery.objects.get(pk=theirs.pk)
    for field in BotDelivery._meta.concrete_fields:
        if field.name not in ("id", "available_at", "created_at"):  # defaults of their own moment
            assert getattr(stored, field.attname) == getattr(created, field.attname), field.name
    assert stored.available_at == mine.available_at and stored.status == "pending"


@pytest.mark.django_db(transaction=True)  # the fan-out runs on commit
def test_a_sockets_chat_reads_the_rooms_bots_again_only_when_they_changed(make_chat):
    """A socket's Chat keeps the room's bots of its last message; on PostgreSQL the send's
    statement says whether they are still the ones, so only a change reads them again. A bot
    that left and one that joined through another Chat (another process) are seen at once."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from bots.models import BotDelivery
    from conversations import room_bots
    from conversations.chat import Chat

    chat, owner = make_chat(bots=["echo"])
    first = Participant.objects.get(conversation=chat.conversation, kind=Participant.Kind.BOT)
    socket = Chat.get_chat(chat.conversation.pk)
    bots_sql = room_bots._statement(connection.vendor)[1].split("%s")[0]  # as logged, with its values

    def send(text: str) -> int:
        """Send as the socket would; how many times the room's bots were read."""
        with CaptureQueriesContext(connection) as queries:
            socket.save_message(owner, {"client_id": text, "text": text})
        return sum(bots_sql in query["sql"] for query in queries)

    assert send("m1") == 1
    assert send("m2") == (0 if connection.vendor == "postgresql" else 1)
    other = Chat.get_chat(chat.conversation.pk)
    other.leave(first)
    second = other.add_bot("echo")
    assert send("m3") == 1  # not the ones it had: read again

    def texts(bot):
        deliveries = BotDelivery.objects.filter(participant=bot).order_by("id")
        return [item.payload["message"]["text"] for item in deliveries]

    assert texts(first) == ["m1", "m2"]
    assert texts(second) == ["m3"]
