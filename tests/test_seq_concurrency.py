"""``seq`` stays gap-free and unique under concurrent writers, on the configured database.

Each writer is a thread with its own database connection, writing through ``Chat.save_message``
like a real process would. On PostgreSQL the conversation row lock serialises the numbering;
on SQLite the writers queue on the database lock (IMMEDIATE transactions, busy timeout).
"""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from django.db import connection

from conversations.chat import Chat
from conversations.models import Conversation, Message, Participant

WRITERS = 20
MESSAGES_EACH = 5


def run_threads(count: int, work) -> list[object]:
    """Start ``count`` threads together on ``work(index)``; return their results (or errors)."""
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = work(index)
        except BaseException as error:  # reported by the test, not lost in the thread
            results[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def assert_gap_free(conversation_id) -> list[int]:
    seqs = list(
        Message.objects.filter(conversation_id=conversation_id, seq__isnull=False)
        .order_by("seq")
        .values_list("seq", flat=True)
    )
    assert seqs == list(range(1, len(seqs) + 1))
    assert Conversation.objects.get(pk=conversation_id).next_seq == len(seqs) + 1
    return seqs


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_get_seqs_1_to_n_exactly():
    chat, _participants = Chat.create("busy", "owner", [])
    writers = [chat.join(f"writer-{i}") for i in range(WRITERS)]
    conversation_id = chat.conversation.pk

    def write(index: int) -> list[int]:
        my_chat = Chat.get_chat(conversation_id)  # each writer builds its own controller
        me = Participant.objects.get(pk=writers[index].pk)
        return [
            my_chat.save_message(me, {"text": f"{index}:{n}", "client_id": f"w{index}-{n}"}).seq
            for n in range(MESSAGES_EACH)
        ]

    results = run_threads(WRITERS, write)

    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []
    seqs = assert_gap_free(conversation_id)
    system = 2 + WRITERS  # created, the owner's joined, each writer's joined
    assert len(seqs) == system + WRITERS * MESSAGES_EACH
    # every message was saved, once, with the seq its writer was told
    answered = sorted(seq for r in results for seq in r)
    assert answered == seqs[system:]
    for index, writer in enumerate(writers):
        stored = list(Message.objects.filter(sender=writer).order_by("seq").values_list("text", "seq"))
        assert [text for text, _ in stored] == [f"{index}:{n}" for n in range(MESSAGES_EACH)]
        assert [seq for _, seq in stored] == results[index]  # each writer's own order is kept


@pytest.mark.django_db(transaction=True)
def test_concurrent_resends_of_one_client_id_store_one_message():
    """Ten sockets of one participant resend the same message at once: one row, one seq,
    and every sender is answered with that message."""
    chat, (owner,) = Chat.create("resend", "owner", [])
    conversation_id = chat.conversation.pk

    def resend(index: int) -> str:
        me = Participant.objects.get(pk=owner.pk)
        return str(Chat.get_chat(conversation_id).save_message(me, {"text": "once", "client_id": "same"}).pk)

    results = run_threads(10, resend)

    assert [r for r in results if isinstance(r, BaseException)] == []
    stored = Message.objects.get(sender=owner, client_id="same")
    assert Counter(results) == Counter({str(stored.pk): 10})
    assert assert_gap_free(conversation_id) == [1, 2, 3]


@pytest.mark.django_db(transaction=True)
def test_concurrent_joins_and_messages_interleave_without_gaps():
    """System messages (joins) and user messages share one numbering."""
    chat, (owner,) = Chat.create("mixed", "owner", [])
    conversation_id = chat.conversation.pk

    def act(index: int) -> int:
        my_chat = Chat.get_chat(conversation_id)
        if index % 2:
            my_chat.join(f"guest-{index}")
            return 0
        me = Participant.objects.get(pk=owner.pk)
        return my_chat.save_message(me, {"text": f"m{index}"}).seq

    results = run_threads(WRITERS, act)

    assert [r for r in results if isinstance(r, BaseException)] == []
    seqs = assert_gap_free(conversation_id)
    assert len(seqs) == 2 + WRITERS  # created, joined, then one message or one "joined" each
    assert Participant.objects.filter(conversation_id=conversation_id).count() == 1 + WRITERS // 2
