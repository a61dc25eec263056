"""The models' invariants hold in the database itself: rows written around ``Chat`` (ORM
``create`` or raw SQL) that break them are refused with an IntegrityError."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from conversations.models import Conversation, Message, Participant


def refused(callable_, *args, **kwargs) -> None:
    """Assert the database refuses the write, checking deferred constraints before the end."""
    with pytest.raises(IntegrityError), transaction.atomic():
        callable_(*args, **kwargs)
        connection.check_constraints()


def conversation(name: str = "room") -> Conversation:
    return Conversation.objects.create(name=name)


def human(conv: Conversation, name: str = "alice") -> Participant:
    return Participant.objects.create(conversation=conv, name=name)


def text(conv: Conversation, sender: Participant | None, seq: int | None, **fields) -> Message:
    fields.setdefault("kind", Message.Kind.TEXT)
    return Message.objects.create(conversation=conv, sender=sender, seq=seq, text="hi", **fields)


pytestmark = pytest.mark.django_db


# ---- seq ------------------------------------------------------------------------------------


def test_seq_is_unique_per_conversation():
    conv = conversation()
    alice = human(conv)
    text(conv, alice, 1)
    refused(text, conv, alice, 1)
    assert Message.objects.filter(conversation=conv).count() == 1


def test_same_seq_in_two_conversations_is_allowed():
    a, b = conversation("a"), conversation("b")
    text(a, human(a), 1)
    text(b, human(b), 1)
    assert Message.objects.filter(seq=1).count() == 2


def test_visible_message_needs_a_seq_pending_and_rejected_do_not():
    conv = conversation()
    alice = human(conv)
    refused(text, conv, alice, None)
    refused(text, conv, alice, None, approval=Message.Approval.APPROVED)
    text(conv, alice, None, approval=Message.Approval.PENDING)
    text(conv, alice, None, approval=Message.Approval.REJECTED)
    assert Message.objects.filter(conversation=conv, seq__isnull=True).count() == 2


def test_conversation_next_seq_must_be_positive():
    refused(Conversation.objects.create, name="x", next_seq=0)


# ---- sender ---------------------------------------------------------------------------------


def test_system_message_with_a_sender_is_refused():
    conv = conversation()
    refused(text, conv, human(conv), 1, kind=Message.Kind.SYSTEM)


def test_non_system_message_without_a_sender_is_refused():
    conv = conversation()
    refused(text, conv, None, 1)
    refused(text, conv, None, 1, kind=Message.Kind.IMAGE)
    text(conv, None, 1, kind=Message.Kind.SYSTEM)  # the legal shape


def test_system_iff_no_sender_holds_for_raw_sql_too():
    conv = conversation()
    alice = human(conv)
    table = Message._meta.db_table
    pk = Conversation._meta.pk.get_db_prep_value
    sql = (
        f"INSERT INTO {table} (id, conversation_id, seq, sender_id, kind, text, data, approval, hidden, created_at)"
        " VALUES (%s, %s, %s, %s, %s, '', '{}', 'auto', %s, %s)"
    )

    def insert(sender, kind, seq):
        with connection.cursor() as cursor:
            cursor.execute(
                sql,
                [
                    pk(uuid.uuid4(), connection),
                    pk(conv.pk, connection),
                    seq,
                    pk(sender.pk, connection) if sender else None,
                    kind,
                    False,
                    timezone.now(),
                ],
            )

    refused(insert, alice, "system", 1)
    refused(insert, None, "text", 1)
    insert(None, "system", 1)
    insert(alice, "text", 2)
    assert list(Message.objects.filter(conversation=conv).values_list("seq", "kind")) == [(1, "system"), (2, "text")]


def test_sender_from_another_conversation_is_refused():
    """A participant of room A cannot be the sender of a message in room B (composite FK on
    PostgreSQL, checked at commit; a trigger on SQLite)."""
    a, b = conversation("a"), conversation("b")
    mallory = human(a, "mallory")
    human(b, "bob")
    refused(text, b, mallory, 1)
    assert not Message.objects.filter(conversation=b).exists()


def test_sender_cannot_be_moved_to_another_conversations_participant():
    a, b = conversation("a"), conversation("b")
    mallory, bob = human(a, "mallory"), human(b, "bob")
    message = text(b, bob, 1)
    refused(Message.objects.filter(pk=message.pk).update, sender=mallory)
    message.refresh_from_db()
    assert message.sender_id == bob.pk


def test_postgresql_sender_check_is_deferred_to_commit():
    """On PostgreSQL the insert itself passes and the constraint check at the end refuses it;
    on SQLite the trigger refuses the insert at once. Either way the row never persists."""
    a, b = conversation("a"), conversation("b")
    mallory = human(a, "mallory")
    with pytest.raises(IntegrityError), transaction.atomic():
        try:
            text(b, mallory, 1)
        except IntegrityError:
            assert connection.vendor == "sqlite"
            raise
        assert connection.vendor == "postgresql"
        connection.check_constraints()
    assert not Message.objects.filter(conversation=b).exists()


# ---- client_id ------------------------------------------------------------------------------


def test_client_id_is_unique_per_sender():
    conv = conversation()
    alice, bob = human(conv, "alice"), human(conv, "bob")
    text(conv, alice, 1, client_id="c1")
    refused(text, conv, alice, 2, client_id="c1")
    text(conv, bob, 2, client_id="c1")  # another sender may use the same client_id
    assert Message.objects.filter(client_id="c1").count() == 2


def test_many_messages_without_client_id_are_allowed():
    conv = conversation()
    alice = human(conv)
    for seq in (1, 2, 3):
        text(conv, alice, seq, client_id=None)
    assert Message.objects.filter(sender=alice).count() == 3


# ---- participant ----------------------------------------------------------------------------


def test_bot_participant_needs_a_bot_name_and_a_human_has_none():
    conv = conversation()
    refused(Participant.objects.create, conversation=conv, name="b", kind=Participant.Kind.BOT, bot_name="")
    refused(Participant.objects.create, conversation=conv, name="h", kind=Participant.Kind.HUMAN, bot_name="echo")
    Participant.objects.create(conversation=conv, name="echo", kind=Participant.Kind.BOT, bot_name="echo")
    assert conv.participants.count() == 1


def test_participant_state_properties():
    conv = conversation()
    p = human(conv)
    assert p.is_active and not p.is_muted() and not p.is_bot
    p.muted_until = timezone.now() + timedelta(minutes=5)
    assert p.is_muted()
    assert not p.is_muted(now=p.muted_until + timedelta(seconds=1))
    p.left_at = timezone.now()
    assert not p.is_active
    p.left_at, p.banned = None, True
    assert not p.is_active


def test_message_visibility():
    conv = conversation()
    alice = human(conv)
    shown = text(conv, alice, 1)
    pending = text(conv, alice, None, approval=Message.Approval.PENDING)
    hidden = text(conv, alice, 2, hidden=True)
    assert shown.is_visible and not pending.is_visible and not hidden.is_visible


@pytest.mark.django_db(transaction=True)
def test_sender_from_another_conversation_is_refused_at_commit():
    """Outside any test transaction: the real COMMIT (PostgreSQL) or the insert (SQLite) fails."""
    a, b = conversation("a"), conversation("b")
    mallory = human(a, "mallory")
    with pytest.raises(IntegrityError), transaction.atomic():
        text(b, mallory, 1)
    assert not Message.objects.filter(conversation=b).exists()
    with transaction.atomic():  # the legal row commits
        text(a, mallory, 1)
    assert Message.objects.filter(conversation=a, sender=mallory).count() == 1
