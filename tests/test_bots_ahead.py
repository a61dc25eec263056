"""A pure bot's turn run from its wake-up, claimed by the statement that stores it
(``bots/ahead.py``), on the real database and Chat.

On PostgreSQL the delivery a wake-up carries runs at once on the Context the worker kept, and
the turn's statement takes the lane and claims the delivery; where the claim cannot be had
(the Context changed, an older delivery waits, another worker holds the lane) it stores
nothing and the usual way runs the delivery again. SQLite always takes the usual way. Either
way each reply is stored once, in order, on the stored Context.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from bots import ahead, lanes, outbox
from bots.base import Bot
from bots.delivery import import_context
from bots.models import BotContext, BotDelivery, BotLane
from bots.testing import running_worker
from bots.worker import db
from conversations.chat import Chat
from conversations.models import Message

pytestmark = pytest.mark.django_db(transaction=True)

ON_LOOP = connection.vendor == "postgresql"


class Pure(Bot):
    """Answers "got <text> (turn n)"; records every call, the ones run for nothing included."""

    pure = True

    def __init__(self):
        super().__init__()
        self.calls: list[str] = []

    def on_message(self, message, context):
        self.calls.append(message.text)
        context.misc["seen"] = context.misc.get("seen", 0) + 1
        return f"got {message.text} (turn {context.current_turn_id})"


class Impure(Pure):
    pure = False


@pytest.fixture
def takes(monkeypatch):
    """How many times a lane was taken (both ways: on the loop, in a thread)."""
    seen = []
    for name in ("take_and_claim_on_loop", "take_and_claim"):
        real = getattr(lanes, name)

        def counted(*args, real=real, **kwargs):
            seen.append(args[0])
            return real(*args, **kwargs)

        monkeypatch.setattr(lanes, name, counted)
    return seen


async def room_with(local_bots, bot: Bot):
    local_bots("p", bot, trigger="all")
    chat, people = await db(Chat.create, "Room", "alice", ["p"])
    return chat, people[0], people[1]


async def say(worker, chat, who, text):
    """Send, and wait until the bot's deliveries are done and its lane has ended (a wake-up
    that finds the lane running joins it instead of running ahead)."""
    await db(chat.save_message, who, {"text": text, "client_id": text})
    await worker.wait_until(lambda: not BotDelivery.objects.filter(status__in=["pending", "running"]).exists())
    while worker.lanes:
        await asyncio.wait(list(worker.lanes.values()))


def replies(bot_participant) -> list[str]:
    return list(Message.objects.filter(sender=bot_participant).order_by("seq").values_list("text", flat=True))


async def test_a_pure_bot_runs_the_delivery_of_its_wake_up_before_claiming_it(local_bots, takes):
    bot = Pure()
    chat, alice, me = await room_with(local_bots, bot)
    async with running_worker(owner="w1") as worker:
        for text in ("one", "two", "three"):
            await say(worker, chat, alice, text)

    assert await db(replies, me) == ["got one (turn 1)", "got two (turn 2)", "got three (turn 3)"]
    assert bot.calls == ["one", "two", "three"]  # nothing run for nothing
    assert len(takes) == (1 if ON_LOOP else 3)  # the first turn has no kept Context yet
    items = await db(lambda: list(BotDelivery.objects.filter(participant=me).order_by("id")))
    assert [(d.status, d.attempts, d.worker) for d in items] == [("done", 1, "w1")] * 3
    ran_ahead = [d.started_at == d.finished_at for d in items]  # one statement claimed and ended it
    assert ran_ahead == ([False, True, True] if ON_LOOP else [False, False, False])
    stored = await db(BotContext.objects.get, participant=me)
    seqs = await db(lambda: list(Message.objects.filter(sender=alice).order_by("seq").values_list("seq", flat=True)))
    assert [stored.requests[str(t)]["seq"] for t in (1, 2, 3)] == seqs  # the wake-up's payload is the row's
    assert (stored.current_turn_id, stored.misc) == (3, {"seen": 3})
    lane = await db(BotLane.objects.get, participant=me)
    assert (lane.owner, lane.lease_until) == ("", None)  # given up once idle, as on the usual way


async def test_two_workers_woken_for_every_delivery_store_each_reply_once_in_order(local_bots):
    """Both workers of this process hear every wake-up and race for each delivery, ahead of
    its claim where they kept the Context: one stores each turn, in order, claimed once."""
    bot = Pure()
    chat, alice, me = await room_with(local_bots, bot)
    texts = [f"m{i}" for i in range(20)]
    async with running_worker(owner="w1") as first, running_worker(owner="w2") as second:
        for text in texts:
            await db(chat.save_message, alice, {"text": text, "client_id": text})
        await first.wait_until(lambda: BotDelivery.objects.filter(participant=me, status="done").count() == 20)
        for worker in (first, second):
            while worker.lanes:
                await asyncio.wait(list(worker.lanes.values()))

    assert await db(replies, me) == [f"got {text} (turn {n})" for n, text in enumerate(texts, 1)]
    items = await db(lambda: list(BotDelivery.objects.filter(participant=me).order_by("id")))
    assert {(d.status, d.attempts) for d in items} == {("done", 1)}
    stored = await db(BotContext.objects.get, participant=me)
    assert (stored.current_turn_id, stored.misc) == (20, {"seen": 20})
    assert [stored.requests[str(n)]["text"] for n in range(1, 21)] == texts


async def test_an_impure_bot_never_runs_before_its_claim(local_bots, takes):
    bot = Impure()
    chat, alice, me = await room_with(local_bots, bot)
    async with running_worker() as worker:
        for text in ("one", "two", "three"):
            await say(worker, chat, alice, text)
    assert bot.calls == ["one", "two", "three"]
    assert len(takes) == 3
    assert await db(replies, me) == ["got one (turn 1)", "got two (turn 2)", "got three (turn 3)"]


async def test_a_context_changed_since_the_last_turn_makes_the_turn_run_again_on_it(local_bots):
    """The kept Context is older than the stored one (imported meanwhile): the statement
    stores nothing, and the usual way runs the delivery again on the stored Context."""
    bot = Pure()
    chat, alice, me = await room_with(local_bots, bot)
    async with running_worker() as worker:
        await say(worker, chat, alice, "one")
        exported = (await db(BotContext.objects.get, participant=me)).misc
        assert exported == {"seen": 1}

        def imported():
            context = import_context(me, {"current_turn_id": 1, "misc": {"seen": 10}, "labels": {"0": "start"}})
            return context

        await db(imported)
        await say(worker, chat, alice, "two")

    assert await db(replies, me) == ["got one (turn 1)", "got two (turn 2)"]
    assert bot.calls == (["one", "two", "two"] if ON_LOOP else ["one", "two"])
    stored = await db(BotContext.objects.get, participant=me)
    assert stored.misc == {"seen": 11}  # the imported Context, and this turn on it
    item = await db(BotDelivery.objects.filter(participant=me).latest, "id")
    assert (item.status, item.attempts) == ("done", 1)


async def test_an_older_delivery_waiting_runs_first(local_bots):
    """A delivery written without a wake-up (a lost one) waits before the new one: the turn
    run ahead stores nothing, and both run in order."""
    bot = Pure()
    chat, alice, me = await room_with(local_bots, bot)
    async with running_worker() as worker:
        await say(worker, chat, alice, "one")
        await db(
            BotDelivery.objects.create,
            participant=me,
            conversation_id=me.conversation_id,
            bot_name="p",
            type=BotDelivery.Type.MESSAGE,
            payload={"type": "bot.message", "participant_id": str(me.pk), "message": {"text": "lost"}},
        )
        await say(worker, chat, alice, "two")

    assert bot.calls == (["one", "two", "lost", "two"] if ON_LOOP else ["one", "lost", "two"])
    assert await db(replies, me) == ["got one (turn 1)", "got lost (turn 2)", "got two (turn 3)"]
    items = await db(lambda: list(BotDelivery.objects.filter(participant=me).order_by("id")))
    assert [(d.status, d.attempts) for d in items] == [("done", 1)] * 3


async def test_a_lane_another_worker_holds_is_left_to_it(local_bots):
    bot = Pure()
    chat, alice, me = await room_with(local_bots, bot)
    async with running_worker() as worker:
        await say(worker, chat, alice, "one")
        await db(
            BotLane.objects.filter(participant=me).update,
            owner="elsewhere",
            lease_until=timezone.now() + timedelta(minutes=5),
        )
        await db(chat.save_message, alice, {"text": "two", "client_id": "two"})
        # The wake-up was queued on this loop before the send returned: its lane has started;
        # it finds the lane taken and ends.
        assert worker.lanes
        await asyncio.wait(list(worker.lanes.values()))
        assert await db(replies, me) == ["got one (turn 1)"]
        assert (await db(BotContext.objects.get, participant=me)).current_turn_id == 1
        item = await db(BotDelivery.objects.filter(participant=me).latest, "id")
        assert (item.status, item.attempts) == ("pending", 0)

        await db(BotLane.objects.filter(participant=me).update, owner="", lease_until=None)  # its holder left
        worker.wake(str(me.pk))
        await worker.wait_until(lambda: BotDelivery.objects.filter(status="pending").count() == 0)
        while worker.lanes:
            await asyncio.wait(list(worker.lanes.values()))

    assert await db(replies, me) == ["got one (turn 1)", "got two (turn 2)"]
    assert bot.calls == (["one", "two", "two"] if ON_LOOP else ["one", "two"])


async def test_a_wake_up_carries_its_delivery_and_a_malformed_one_is_ignored(local_bots):
    bot = Pure()
    chat, alice, me = await room_with(local_bots, bot)
    await db(chat.save_message, alice, {"text": "one", "client_id": "one"})
    row = await db(BotDelivery.objects.get, participant=me)

    carried = outbox.ahead_of(row)
    assert carried == {"id": row.pk, "type": "message", "bot": "p", "hop": 0, "payload": row.payload}
    item = ahead.delivery_from_wake(str(me.pk), carried)
    assert (item.pk, item.type, item.hop, item.payload) == (row.pk, row.type, 0, row.payload)
    assert ahead.delivery_from_wake("another participant", carried) is None
    for broken in (None, "x", {**carried, "id": "1"}, {**carried, "type": "other"}, {**carried, "payload": []}):
        assert ahead.delivery_from_wake(str(me.pk), broken) is None
    row.available_at = timezone.now() + timedelta(minutes=1)  # waiting for a retry: not runnable now
    assert outbox.ahead_of(row) is None

    async with running_worker() as worker:  # a wake-up from the channel with a broken delivery
        await worker.handle({"type": "bot.wake", "participant_id": str(me.pk), "delivery": {"id": "nonsense"}})
        await worker.wait_until(lambda: BotDelivery.objects.filter(status="done").count() == 1)
    assert await db(replies, me) == ["got one (turn 1)"]


async def test_a_wake_up_through_the_channel_layer_runs_ahead_too(local_bots, monkeypatch):
    """A worker in another process hears the wake-up through Redis: the delivery it carries,
    packed and unpacked as the layer does (msgpack), runs ahead as a local one does."""
    import msgpack

    bot = Pure()
    chat, alice, me = await room_with(local_bots, bot)
    async with running_worker() as worker:
        await say(worker, chat, alice, "one")
        heard = []
        monkeypatch.setattr(outbox, "wake", lambda pid, delivery=None: heard.append((str(pid), delivery)))
        await db(chat.save_message, alice, {"text": "two", "client_id": "two"})
        [(pid, delivery)] = heard
        sent = {"type": "bot.wake", "participant_id": pid, "delivery": outbox.ahead_of(delivery)}
        await worker.handle(msgpack.unpackb(msgpack.packb(sent)))
        await worker.wait_until(lambda: BotDelivery.objects.filter(status="done").count() == 2)

    assert await db(replies, me) == ["got one (turn 1)", "got two (turn 2)"]
    assert bot.calls == ["one", "two"]
    item = await db(BotDelivery.objects.filter(participant=me).latest, "id")
    assert (item.started_at == item.finished_at) is ON_LOOP  # claimed by the turn's statement


async def test_a_claim_leaves_the_kept_context_unread_while_it_is_current(local_bots, monkeypatch):
    """Any bot: a claim that finds the stored Context to be the one the worker kept from the
    last turn does not read it back (PostgreSQL); one changed meanwhile (imported) is read,
    and the turn runs on it. SQLite reads it for every turn."""
    from bots import delivery

    read = []
    real = delivery.context_from_row
    monkeypatch.setattr(delivery, "context_from_row", lambda p, row: read.append(row.current_turn_id) or real(p, row))
    bot = Impure()
    chat, alice, me = await room_with(local_bots, bot)
    async with running_worker() as worker:
        for text in ("one", "two", "three"):
            await say(worker, chat, alice, text)
        imported = {"current_turn_id": 3, "misc": {"seen": 10}, "labels": {"0": "start"}}
        await db(lambda: import_context(me, imported))
        await say(worker, chat, alice, "four")

    assert read == ([3] if ON_LOOP else [1, 2, 3])
    assert await db(replies, me) == [f"got {t} (turn {n})" for n, t in enumerate(["one", "two", "three", "four"], 1)]
    stored = await db(BotContext.objects.get, participant=me)
    assert (stored.current_turn_id, stored.misc) == (4, {"seen": 11})
