"""The precompiled reads (conversations/rows.py): a sender's state (conversations/sender_state.py)
and a bot delivery's participant and Context (bots/delivery.py) are exactly what the ORM reads,
converted the same way, on whichever database the suite runs."""

from __future__ import annotations

import uuid
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
