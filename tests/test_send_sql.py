"""A message's send (conversations/send_sql.py). On PostgreSQL the sender's state, the checks
and the insert are one prepared statement; SQLite keeps its separate steps. On both, a send that
is refused writes nothing and takes no seq, and an accepted one sees the sender as it is now."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from conversations.errors import Banned, ChatError, ConversationEnded, Muted, NotParticipant, RateLimited
from conversations.models import Conversation, Message, Participant

# The statements of a plain send that reach the database (savepoints aside: the test's
# transaction makes the send nest one).
STATEMENTS = {"postgresql": 1, "sqlite": 3}  # SQLite: the sender's state, the seq, the insert


def _executions_of_the_prepared_send() -> int:
    """How often this connection ran the prepared send (0 before it was prepared)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(generic_plans + custom_plans), 0) FROM pg_prepared_statements"
            " WHERE statement LIKE 'WITH state AS (%%'"
        )
        return cursor.fetchone()[0]


def _next_seq(chat) -> int:
    return Conversation.objects.values_list("next_seq", flat=True).get(pk=chat.conversation.pk)


@pytest.mark.parametrize("prepared", [True, False], ids=["prepared", "not-prepared"])
def test_a_plain_send_takes_one_statement_on_postgresql(make_chat, prepared, monkeypatch):
    chat, owner = make_chat()
    monkeypatch.setitem(connection.settings_dict, "PREPARED_STATEMENTS", prepared)
    ran_before = _executions_of_the_prepared_send() if connection.vendor == "postgresql" else 0
    seq = _next_seq(chat)

    with CaptureQueriesContext(connection) as queries:
        message = chat.save_message(owner, {"client_id": "c1", "text": "hi"})

    statements = [q["sql"] for q in queries if not q["sql"].upper().startswith(("SAVEPOINT", "RELEASE"))]
    assert len(statements) == STATEMENTS[connection.vendor], statements
    assert (message.seq, message.created) == (seq, True)
    assert Message.objects.get(pk=message.pk).text == "hi" and _next_seq(chat) == seq + 1
    if connection.vendor == "postgresql":
        assert _executions_of_the_prepared_send() == ran_before + (1 if prepared else 0)


def _mute(p):
    p.muted_until = timezone.now() + timedelta(minutes=5)


def _ban(p):
    p.banned = True


def _leave(p):
    p.left_at = timezone.now()


@pytest.mark.parametrize(
    "change, error", [(_mute, Muted), (_ban, Banned), (_leave, NotParticipant)], ids=["muted", "banned", "left"]
)
def test_a_refused_send_writes_nothing_and_takes_no_seq(make_chat, change, error):
    """Changed by another process (the admin): the socket's participant object is stale."""
    chat, _owner = make_chat()
    bob = chat.join("bob")
    row = Participant.objects.get(pk=bob.pk)
    change(row)
    row.save()
    seq = _next_seq(chat)

    with pytest.raises(error):
        chat.save_message(bob, {"client_id": "c1", "text": "hi"})

    assert _next_seq(chat) == seq
    assert not Message.objects.filter(sender=bob).exclude(kind=Message.Kind.SYSTEM).exists()


def test_a_mute_that_has_ended_lets_the_send_through(make_chat):
    chat, owner = make_chat()
    Participant.objects.filter(pk=owner.pk).update(muted_until=timezone.now() - timedelta(seconds=1))
    assert chat.save_message(owner, {"client_id": "c1", "text": "hi"}).seq == _next_seq(chat) - 1


def test_the_rate_limit_refuses_without_a_seq(make_chat, settings):
    settings.CHAT_LIMITS = {"RATE_LIMIT_MESSAGES": 1, "RATE_LIMIT_WINDOW": 60}
    chat, owner = make_chat()
    chat.save_message(owner, {"client_id": "c1", "text": "one"})
    seq = _next_seq(chat)
    with pytest.raises(RateLimited):
        chat.save_message(owner, {"client_id": "c2", "text": "two"})
    assert _next_seq(chat) == seq
    # A resend of the stored one is still answered with it (the idempotency path).
    assert chat.save_message(owner, {"client_id": "c1", "text": "one"}).created is False


def test_an_ended_conversation_refuses_without_a_seq(make_chat):
    chat, owner = make_chat()
    bob = chat.join("bob")
    chat.end(by=owner)
    seq = _next_seq(chat)
    with pytest.raises(ConversationEnded):
        chat.save_message(bob, {"client_id": "c1", "text": "hi"})
    assert _next_seq(chat) == seq


def test_premoderation_stores_the_message_pending_without_a_seq(make_chat):
    chat, _owner = make_chat()
    bob = chat.join("bob")
    Conversation.objects.filter(pk=chat.conversation.pk).update(premoderation=Conversation.Premoderation.ALL)
    seq = _next_seq(chat)
    message = chat.save_message(bob, {"client_id": "c1", "text": "hi"})
    assert (message.seq, message.approval) == (None, Message.Approval.PENDING)
    assert _next_seq(chat) == seq


def test_the_stored_message_shows_the_sender_as_it_is_now(make_chat):
    """The nickname changed in another process: the fan-out shows the new one, as stored."""
    chat, owner = make_chat()
    Participant.objects.filter(pk=owner.pk).update(name="alice2")
    message = chat.save_message(owner, {"client_id": "c1", "text": "hi"})
    assert message.sender.name == "alice2"
    assert chat.conversation.next_seq == message.seq  # the state is read before the seq is taken


def test_a_participant_of_another_conversation_cannot_send_here(make_chat):
    chat, _owner = make_chat()
    _other, stranger = make_chat("Other")
    seq = _next_seq(chat)
    with pytest.raises(ChatError):
        chat.save_message(stranger, {"client_id": "c1", "text": "hi"})
    assert _next_seq(chat) == seq
