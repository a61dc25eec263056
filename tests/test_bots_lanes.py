"""The lane statements (bots/lanes.py) on whichever database the suite runs: one holder at a
time, deliveries claimed oldest first, a retry blocking the ones after it, an idle lane given up
only when nothing can run, deliveries of a dead holder recovered."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from bots import lanes, outbox
from bots.models import BotDelivery, BotLane
from conversations.models import Participant

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def lane(make_chat, monkeypatch):
    """An echo bot participant (as a string id) with three pending deliveries and no worker."""
    monkeypatch.setattr(outbox, "wake", lambda participant_id, delivery=None: None)
    chat, alice = make_chat(bots=["echo"])
    echo = Participant.objects.get(conversation=chat.conversation, kind=Participant.Kind.BOT)
    for i in range(3):
        chat.save_message(alice, {"client_id": f"c{i}", "text": f"m{i}"})
    assert BotDelivery.objects.filter(participant=echo, status="pending").count() == 3
    return str(echo.pk)


def texts(items):
    return [item.payload["message"]["text"] for item in items]


def test_one_holder_at_a_time_until_the_lease_expires(lane):
    until = lanes.take(lane, "w1", 60)
    assert until is not None and until > timezone.now()
    assert lanes.take(lane, "w2", 60) is None
    assert lanes.renew(lane, "w2", 60) is None
    assert lanes.renew(lane, "w1", 60) is not None
    BotLane.objects.filter(participant_id=lane).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert lanes.renew(lane, "w1", 60) is None  # expired: w1 must take it again, as anyone
    assert lanes.take(lane, "w2", 60) is not None
    assert BotLane.objects.get(participant_id=lane).owner == "w2"


def test_deliveries_are_claimed_oldest_first_then_none(lane):
    lanes.take(lane, "w1", 60)
    claimed = [lanes.claim_next(lane, "w1") for _ in range(4)]
    assert texts(claimed[:3]) == ["m0", "m1", "m2"]
    assert claimed[3] is None
    first = BotDelivery.objects.get(pk=claimed[0].pk)
    assert (first.status, first.attempts, first.worker) == ("running", 1, "w1")
    for field in BotDelivery._meta.concrete_fields:  # the claimed row as the ORM reads it
        assert getattr(claimed[0], field.attname) == getattr(first, field.attname), field.name
    assert not claimed[0]._state.adding


def test_a_delivery_waiting_for_its_retry_blocks_the_ones_after_it(lane):
    lanes.take(lane, "w1", 60)
    first = lanes.claim_next(lane, "w1")
    outbox.retry_later(first.pk, 60, "webhook said 503")
    assert lanes.claim_next(lane, "w1") is None  # order before speed
    assert lanes.release_if_idle(lane, "w1")  # nothing can run now: the lane is given up
    assert BotLane.objects.get(participant_id=lane).owner == ""
    BotDelivery.objects.filter(pk=first.pk).update(available_at=timezone.now())
    lanes.take(lane, "w1", 60)
    assert texts([lanes.claim_next(lane, "w1")]) == ["m0"]


def test_an_idle_lane_is_kept_while_a_delivery_can_run(lane):
    lanes.take(lane, "w1", 60)
    assert not lanes.release_if_idle(lane, "w1")  # three wait: claim them first
    for _ in range(3):
        outbox.finish(lanes.claim_next(lane, "w1").pk, BotDelivery.Status.DONE)
    assert not lanes.release_if_idle(lane, "w2")  # not w2's to give up
    assert lanes.release_if_idle(lane, "w1")
    assert lanes.take(lane, "w2", 60) is not None


def test_deliveries_left_running_by_a_dead_holder_are_recovered(lane, settings):
    settings.CHAT_BOT_MAX_ATTEMPTS = 2
    lanes.take(lane, "dead", 60)
    tried_once, tried_twice = lanes.claim_next(lane, "dead"), lanes.claim_next(lane, "dead")
    BotDelivery.objects.filter(pk=tried_twice.pk).update(attempts=2)
    BotLane.objects.filter(participant_id=lane).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert lanes.take(lane, "w1", 60) is not None
    statuses = dict(BotDelivery.objects.filter(participant_id=lane).values_list("id", "status"))
    assert statuses[tried_once.pk] == "pending"
    assert statuses[tried_twice.pk] == "failed"
    assert texts([lanes.claim_next(lane, "w1")]) == ["m0"]


def test_a_lane_row_is_created_on_first_take_and_none_for_a_deleted_participant(lane):
    assert not BotLane.objects.filter(participant_id=lane).exists()
    assert lanes.take(lane, "w1", 60) is not None
    assert BotLane.objects.filter(participant_id=lane).exists()
    Participant.objects.filter(pk=lane).delete()
    assert lanes.take(lane, "w1", 60) is None


def test_take_and_claim_takes_claims_the_oldest_and_reads_what_it_needs(lane):
    taken = lanes.take_and_claim(lane, "w1", 60)
    assert taken is not None and taken.until > timezone.now()
    assert BotLane.objects.get(participant_id=lane).owner == "w1"
    stored = BotDelivery.objects.get(pk=taken.item.pk)
    assert (stored.status, stored.attempts, stored.worker) == ("running", 1, "w1")
    fields = [f.attname for f in BotDelivery._meta.concrete_fields]
    assert [getattr(taken.item, f) for f in fields] == [getattr(stored, f) for f in fields]
    assert texts([taken.item]) == ["m0"]
    if taken.read is not None:  # PostgreSQL: read by the same statement
        participant, context = taken.read
        assert participant.pk == stored.participant_id
        assert participant.conversation.pk == stored.conversation_id
        assert context is None  # no turn has saved one yet
    assert lanes.take_and_claim(lane, "w2", 60) is None  # w1 holds it
    if connection.vendor == "postgresql":  # its lazy commit was its own: the next ones wait for the WAL
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            assert cursor.fetchone()[0] == "on"


def test_take_and_claim_reads_a_stored_context(lane):
    from bots import delivery

    echo = Participant.objects.select_related("conversation").get(pk=lane)
    context = delivery.load_context(echo)
    context.misc["seen"] = 3
    delivery.save_context(context)
    taken = lanes.take_and_claim(lane, "w1", 60)
    if taken.read is not None:
        participant, row = taken.read
        assert delivery.context_from_row(participant, row).misc == {"seen": 3}


def test_take_and_claim_recovers_a_dead_holders_deliveries_before_claiming(lane):
    lanes.take(lane, "dead", 60)
    running = lanes.claim_next(lane, "dead")
    BotLane.objects.filter(participant_id=lane).update(lease_until=timezone.now() - timedelta(seconds=1))
    taken = lanes.take_and_claim(lane, "w1", 60)
    assert taken is not None
    # PostgreSQL's one statement claims nothing when it finds deliveries left running: they
    # are recovered first, then claimed in order by the next claim.
    item = taken.item or lanes.claim_next(lane, "w1")
    assert texts([item]) == ["m0"] and item.pk == running.pk
    stored = BotDelivery.objects.get(pk=running.pk)
    assert (stored.status, stored.attempts, stored.worker) == ("running", 2, "w1")


def test_take_and_claim_with_nothing_to_run_or_no_participant(lane):
    BotDelivery.objects.filter(participant_id=lane).update(status="done")
    taken = lanes.take_and_claim(lane, "w1", 60)
    assert taken is not None and taken.item is None and taken.read is None
    assert lanes.release_if_idle(lane, "w1")
    Participant.objects.filter(pk=lane).delete()
    assert lanes.take_and_claim(lane, "w1", 60) is None


# ---- a worker's step: its common cases on the event loop's own connection ------------------------


def _step(worker, participant_id, until=None):
    from asgiref.sync import async_to_sync

    return async_to_sync(worker._step)(participant_id, until, 60)


@pytest.mark.parametrize("broken", [False, True])
def test_a_workers_step_claims_in_order_and_prepares_what_it_read(lane, loop_statements, broken):
    """On PostgreSQL a lane's take-and-claim and its next claims run on the loop's connection,
    each read with the participant, its conversation and its Context; SQLite (or a broken loop
    connection) takes the thread's statements. Either way: the same deliveries in order, the
    same rows, the lane given up once idle."""
    from bots import delivery
    from bots.worker import BotWorker

    loop_statements.broken = broken
    on_loop = connection.vendor == "postgresql"
    worker = BotWorker(listen=False, owner="w1")
    until, first, (spec, participant, context) = _step(worker, lane)
    assert loop_statements.count == (1 if on_loop else 0)
    assert until > timezone.now() and BotLane.objects.get(participant_id=lane).owner == "w1"
    stored = BotDelivery.objects.get(pk=first.pk)
    assert (stored.status, stored.attempts, stored.worker) == ("running", 1, "w1")
    fields = [f.attname for f in BotDelivery._meta.concrete_fields]
    assert [getattr(first, f) for f in fields] == [getattr(stored, f) for f in fields]
    echo = Participant.objects.select_related("conversation").get(pk=lane)
    assert (spec.name, participant.pk, participant.conversation.name) == ("echo", echo.pk, echo.conversation.name)
    assert participant.conversation.next_seq == echo.conversation.next_seq
    assert context is None  # no turn saved one yet

    saved = delivery.load_context(echo)
    saved.misc["seen"] = 1
    delivery.save_context(saved)
    outbox.finish(first.pk, BotDelivery.Status.DONE)
    _, second, (_, _, context) = _step(worker, lane, until)
    assert texts([first, second]) == ["m0", "m1"]
    assert context.misc == {"seen": 1} and context.participant_id == lane
    assert loop_statements.count == (2 if on_loop else 0)

    for item in BotDelivery.objects.filter(participant_id=lane, status__in=["pending", "running"]):
        outbox.finish(item.pk, BotDelivery.Status.DONE)
    assert _step(worker, lane, until) == (None, None, None)  # nothing to run: given up
    assert BotLane.objects.get(participant_id=lane).owner == ""
    assert loop_statements.count == (3 if on_loop else 0)  # by the same statement as a claim


def test_a_workers_step_gives_the_lane_up_while_its_oldest_waits_for_a_retry(lane, loop_statements):
    from bots.worker import BotWorker

    worker = BotWorker(listen=False, owner="w1")
    until, first, _ = _step(worker, lane)
    outbox.retry_later(first.pk, 60, "webhook said 503")
    assert _step(worker, lane, until) == (None, None, None)  # order before speed: m1 waits too
    assert BotLane.objects.get(participant_id=lane).owner == ""
    assert BotDelivery.objects.filter(participant_id=lane, status="running").count() == 0


def test_a_workers_step_recovers_what_a_dead_holder_left_running(lane, loop_statements, settings):
    """The loop's statement claims nothing where deliveries were left running; the thread's way
    recovers them (counted attempts kept) and claims them again in order."""
    from bots.worker import BotWorker

    lanes.take(lane, "dead", 60)
    running = lanes.claim_next(lane, "dead")
    BotLane.objects.filter(participant_id=lane).update(lease_until=timezone.now() - timedelta(seconds=1))
    _, item, prepared = _step(BotWorker(listen=False, owner="w1"), lane)
    assert item.pk == running.pk and prepared is not None
    stored = BotDelivery.objects.get(pk=running.pk)
    assert (stored.status, stored.attempts, stored.worker) == ("running", 2, "w1")


def test_a_workers_step_leaves_a_lane_another_worker_holds(lane, loop_statements):
    from bots.worker import BotWorker

    lanes.take(lane, "w2", 60)
    assert _step(BotWorker(listen=False, owner="w1"), lane) == (None, None, None)
    assert BotLane.objects.get(participant_id=lane).owner == "w2"
    assert not BotDelivery.objects.filter(participant_id=lane, status="running").exists()


def test_a_workers_step_skips_a_delivery_to_a_bot_that_left(lane, loop_statements):
    """What needs the database (a participant gone) is ``_prepare``'s, in a thread."""
    from bots.worker import BotWorker

    Participant.objects.filter(pk=lane).update(left_at=timezone.now())
    _, item, prepared = _step(BotWorker(listen=False, owner="w1"), lane)
    assert prepared[2] is None and not prepared[1].is_active
    assert BotDelivery.objects.get(pk=item.pk).status == "skipped"
