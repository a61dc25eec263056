"""The precompiled sender query (conversations/sender_state.py) reads exactly what the ORM
reads, converted the same way, on whichever database the suite runs."""

from __future__ import annotations

from datetime import timedelta

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
    import uuid

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
