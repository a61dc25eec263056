"""The bot worker in this process, on the real database and Chat: order, parallel rooms,
several workers, Context across restarts, triggers, loop protection, isolation, proactive sends."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

import pytest
from channels.layers import InMemoryChannelLayer
from django.db import connection
from django.utils import timezone

from bots import lanes
from bots.base import Bot
from bots.models import BotContext, BotDelivery, BotLane
from bots.testing import running_worker
from bots.worker import db
from conversations import protocol
from conversations.chat import Chat
from conversations.models import Message, Participant

pytestmark = pytest.mark.django_db(transaction=True)


async def make_room(*bots, nickname="alice"):
    chat, people = await db(Chat.create, "Room", nickname, list(bots))
    return chat, people[0], {p.bot_name: p for p in people[1:]}


async def say(chat, who, text, n=[0], **extra):  # noqa: B006 - a counter for unique client ids
    n[0] += 1
    return await db(chat.save_message, who, {"text": text, "client_id": f"c{n[0]}", **extra})


def deliveries(participant, **filters):
    return BotDelivery.objects.filter(participant=participant, **filters)


def all_settled() -> bool:
    return not BotDelivery.objects.filter(status__in=["pending", "running"]).exists()


def bot_texts(participant) -> list[str]:
    return list(Message.objects.filter(sender=participant).order_by("seq").values_list("text", flat=True))


class Recorder(Bot):
    """Answers "got <text>"; records the order and how many deliveries ran at once."""

    def __init__(self):
        super().__init__()
        self.seen, self.active, self.most = [], 0, 0

    async def on_message(self, message, context):
        self.active += 1
        self.most = max(self.most, self.active)
        for _ in range(3):
            await asyncio.sleep(0)  # let other lanes run in between
        self.seen.append(message.text)
        self.active -= 1
        return f"got {message.text}"


async def test_one_bot_in_one_room_gets_its_messages_in_order_one_at_a_time(local_bots):
    local_bots("rec", Recorder, trigger="all")
    chat, alice, bots = await make_room("rec")
    async with running_worker() as worker:
        texts = [f"m{i}" for i in range(15)]
        for text in texts:
            await say(chat, alice, text)
        await worker.wait_until(lambda: deliveries(bots["rec"], status="done").count() == 15)
        bot = worker.instance_for(bots["rec"].pk)
    assert bot.seen == texts
    assert bot.most == 1
    assert await db(bot_texts, bots["rec"]) == [f"got {t}" for t in texts]


class Meeting(Bot):
    """Waits at a barrier shared by two rooms: passes only if both rooms run at once."""

    def __init__(self, barrier):
        super().__init__()
        self.barrier = barrier

    async def on_message(self, message, context):
        await self.barrier.wait()
        return "met"


async def test_rooms_run_in_parallel(local_bots):
    local_bots("meet", Meeting, trigger="all", kwargs={"barrier": asyncio.Barrier(2)}, timeout=10)
    chat_a, alice, bots_a = await make_room("meet")
    chat_b, bob, bots_b = await make_room("meet", nickname="bob")
    async with running_worker() as worker:
        await say(chat_a, alice, "a")
        await say(chat_b, bob, "b")
        await worker.wait_until(all_settled)
    for bots in (bots_a, bots_b):
        assert await db(lambda p=bots["meet"]: list(deliveries(p).values_list("status", flat=True))) == ["done"]


async def test_several_workers_keep_the_order_of_a_bot(local_bots):
    local_bots("rec", Recorder, trigger="all")
    chat, alice, bots = await make_room("rec")
    async with running_worker(owner="w1") as first, running_worker(owner="w2"):
        texts = [f"m{i}" for i in range(20)]
        for text in texts:
            await say(chat, alice, text)
        await first.wait_until(lambda: deliveries(bots["rec"], status="done").count() == 20)
    replies = await db(bot_texts, bots["rec"])
    assert replies == [f"got {t}" for t in texts]  # once each, in order, whoever ran them


class Counter(Bot):
    """Remembers in the Context, not in itself."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def on_message(self, message, context):
        self.calls += 1
        earlier = [r["text"] for t, r in sorted(context.requests.items()) if t < context.current_turn_id]
        context.misc["count"] = context.misc.get("count", 0) + 1
        context.add_label(f"turn{context.current_turn_id}")
        return f"turn {context.current_turn_id}, count {context.misc['count']}, calls {self.calls}, before {earlier}"


async def test_context_survives_a_worker_restart(local_bots):
    local_bots("counter", Counter, trigger="all")
    chat, alice, bots = await make_room("counter")
    me = bots["counter"]
    async with running_worker() as worker:
        await say(chat, alice, "one")
        await say(chat, alice, "two")
        await worker.wait_until(lambda: deliveries(me, status="done").count() == 2)
    async with running_worker() as worker:  # a new worker: new bot object, same Context
        await say(chat, alice, "three")
        await worker.wait_until(lambda: deliveries(me, status="done").count() == 3)
    assert await db(bot_texts, me) == [
        "turn 1, count 1, calls 1, before []",
        "turn 2, count 2, calls 2, before ['one']",
        "turn 3, count 3, calls 1, before ['one', 'two']",
    ]
    row = await db(BotContext.objects.get, participant=me)
    assert row.current_turn_id == 3
    assert row.labels == {"0": "start", "1": "turn1", "2": "turn2", "3": "turn3"}
    assert row.requests["1"]["sender"]["name"] == "alice"
    assert row.responses["3"][0]["kind"] == "text"


async def test_a_delivery_left_running_by_a_dead_worker_is_run_again(local_bots):
    local_bots("rec", Recorder, trigger="all")
    chat, alice, bots = await make_room("rec")
    me = bots["rec"]
    await say(chat, alice, "lost")  # no worker yet: the row waits

    def crash():
        deliveries(me).update(status="running", attempts=1, worker="dead")
        BotLane.objects.update_or_create(
            participant=me, defaults={"owner": "dead", "lease_until": timezone.now() - timedelta(seconds=1)}
        )

    await db(crash)
    async with running_worker() as worker:  # its first sweep finds the orphan
        await worker.wait_until(lambda: deliveries(me, status="done").exists())
    item = await db(deliveries(me).get)
    assert item.attempts == 2
    assert await db(bot_texts, me) == ["got lost"]


async def test_a_lane_step_that_fails_gives_the_lane_up_for_the_sweep(local_bots, monkeypatch, settings):
    """A database error right after taking the lane must not leave it leased until expiry."""
    settings.CHAT_BOT_SWEEP_INTERVAL = 0.2
    local_bots("rec", Recorder, trigger="all")
    chat, alice, bots = await make_room("rec")
    me = bots["rec"]
    real, real_on_loop, calls = lanes.take_and_claim, lanes.take_and_claim_on_loop, []

    def failing_once(taken):
        calls.append(taken)
        if len(calls) == 1:
            assert taken is not None  # the lane is ours: the failure must give it up
            raise RuntimeError("the database went away")
        return taken

    async def on_loop(*args):  # PostgreSQL takes the lane on the loop's connection
        return failing_once(await real_on_loop(*args))

    monkeypatch.setattr(lanes, "take_and_claim", lambda *args: failing_once(real(*args)))
    monkeypatch.setattr(lanes, "take_and_claim_on_loop", on_loop)
    async with running_worker() as worker:
        await say(chat, alice, "still there?")
        await worker.wait_until(lambda: deliveries(me, status="done").exists(), within=10)
    assert len(calls) >= 2
    assert await db(bot_texts, me) == ["got still there?"]


async def test_a_raw_payload_on_the_bots_channel_is_recorded_and_delivered(local_bots):
    local_bots("rec", Recorder, trigger="all")
    chat, alice, bots = await make_room("rec")
    layer = InMemoryChannelLayer()
    message = await say(chat, alice, "direct")
    await db(BotDelivery.objects.all().delete)
    payload = await db(
        lambda: {
            "type": "bot.message",
            "conversation_id": str(chat.conversation.pk),
            "participant_id": str(bots["rec"].pk),
            "bot": "rec",
            "message": protocol.message_to_dict(message),
        }
    )
    async with running_worker(listen=True, layer=layer) as worker:
        await layer.send("bots", payload)
        await worker.wait_until(lambda: deliveries(bots["rec"], status="done").exists())
    assert await db(bot_texts, bots["rec"]) == ["got direct"]


class Echo(Bot):
    def on_message(self, message, context):
        return f"{self.name}: {message.text}"


async def test_triggers_all_mention_and_auto(local_bots):
    local_bots("every", Echo, trigger="all")
    local_bots("called", Echo, trigger="mention")
    local_bots("auto", Echo)  # the default trigger
    alone_chat, bob, alone = await make_room("auto", nickname="bob")
    chat, alice, bots = await make_room("every", "called", "auto")
    async with running_worker() as worker:
        await say(alone_chat, bob, "anyone?")
        await say(chat, alice, "hello room")
        await say(chat, alice, "hi @called")
        await say(chat, alice, "@AUTO, and you?")
        await worker.wait_until(all_settled)
        offer = await db(Message.objects.get, sender=bots["called"])
        await say(chat, alice, "answering you", quoted_message_id=str(offer.pk))  # a reply addresses the bot
        await worker.wait_until(all_settled)
    assert await db(bot_texts, alone["auto"]) == ["auto: anyone?"]  # the only bot hears everything
    assert await db(bot_texts, bots["every"]) == [
        "every: hello room",
        "every: hi @called",
        "every: @AUTO, and you?",
        "every: answering you",
    ]
    assert await db(bot_texts, bots["called"]) == ["called: hi @called", "called: answering you"]
    assert await db(bot_texts, bots["auto"]) == ["auto: @AUTO, and you?"]


class Chatty(Echo):
    accepts_bot_messages = True


async def test_a_lane_woken_from_a_database_thread_hands_a_reply_to_the_other_bots(local_bots, settings):
    """The person's send runs in the thread-sensitive database thread, which wakes the lane.
    The lane must not inherit that call's context: asgiref would then refuse the lane's own
    thread-sensitive call, which writes the bot's reply's deliveries to the room's other bots."""
    from channels.db import database_sync_to_async

    settings.CHAT_BOT_HOP_LIMIT = 2
    local_bots("ping", Echo, trigger="all")
    local_bots("pong", Chatty, trigger="all")
    chat, alice, bots = await make_room("ping", "pong")
    async with running_worker() as worker:
        await database_sync_to_async(chat.save_message)(alice, {"text": "go", "client_id": "c-thread"})
        await worker.wait_until(lambda: deliveries(bots["pong"], status="done").count() == 2 and all_settled())
    assert await db(bot_texts, bots["ping"]) == ["ping: go"]
    assert sorted(await db(bot_texts, bots["pong"])) == ["pong: go", "pong: ping: go"]
    assert not await db(lambda: deliveries(bots["ping"], status="failed").exists())


async def test_bot_to_bot_loops_stop_at_the_hop_limit(local_bots, settings):
    settings.CHAT_BOT_HOP_LIMIT = 3
    local_bots("ping", Chatty, trigger="all")
    local_bots("pong", Chatty, trigger="all")
    local_bots("quiet", Echo, trigger="all")  # not opted in: never hears bots
    chat, alice, bots = await make_room("ping", "pong", "quiet")
    async with running_worker() as worker:
        await say(chat, alice, "go")
        # A reply's deliveries to the other bots are written just after its turn commits: wait
        # for every reply the limit allows, not only for no delivery waiting at some moment.
        await worker.wait_until(
            lambda: (
                all_settled()
                and deliveries(bots["quiet"], status="done").exists()
                and Message.objects.filter(sender__in=[bots["ping"], bots["pong"]]).count() >= 10
            )
        )
    assert await db(bot_texts, bots["quiet"]) == ["quiet: go"]
    ping, pong = await db(bot_texts, bots["ping"]), await db(bot_texts, bots["pong"])
    # hop 0 (alice) -> 1 -> 2 -> 3: the hop-3 replies reach no bot, so the chatter ends.
    assert sorted(ping) == [
        "ping: go",
        "ping: pong: go",
        "ping: pong: ping: go",
        "ping: pong: quiet: go",
        "ping: quiet: go",
    ]
    assert sorted(pong) == [
        "pong: go",
        "pong: ping: go",
        "pong: ping: pong: go",
        "pong: ping: quiet: go",
        "pong: quiet: go",
    ]
    assert await db(lambda: max(BotDelivery.objects.values_list("hop", flat=True))) == 2


class Raises(Bot):
    def on_message(self, message, context):
        return 1 / 0


class HangsAsync(Bot):
    async def on_message(self, message, context):
        await asyncio.Event().wait()


RELEASE = threading.Event()


class HangsInThread(Bot):
    def on_message(self, message, context):
        RELEASE.wait(60)


class Garbage(Bot):
    def on_message(self, message, context):
        return [f"fine: {message.text}", {"kind": "table", "data": {"columns": "not a list"}}]


class Nonsense(Bot):
    def on_message(self, message, context):
        return object()


async def test_a_raising_hanging_or_garbage_bot_is_isolated_and_recorded(local_bots, caplog):
    local_bots("raises", Raises, trigger="all")
    local_bots("hangs", HangsAsync, trigger="all", timeout=0.5)
    local_bots("stuck", HangsInThread, trigger="all", timeout=0.5)
    local_bots("garbage", Garbage, trigger="all")
    local_bots("nonsense", Nonsense, trigger="all")
    local_bots("echo2", Echo, trigger="all")
    chat, alice, bots = await make_room("raises", "hangs", "stuck", "garbage", "nonsense", "echo2")
    try:
        async with running_worker() as worker:
            await say(chat, alice, "first")
            await say(chat, alice, "second")
            await worker.wait_until(all_settled)
    finally:
        RELEASE.set()
    assert await db(bot_texts, bots["echo2"]) == ["echo2: first", "echo2: second"]  # the room went on

    def errors(name):
        return list(deliveries(bots[name]).order_by("id").values_list("status", "last_error"))

    for name, reason in [
        ("raises", "ZeroDivisionError"),
        ("hangs", "timed out after 0.5 s"),
        ("stuck", "timed out after 0.5 s"),
        ("garbage", "malformed reply refused: table columns"),
        ("nonsense", "malformed reply refused: a bot returned object"),
    ]:
        rows = await db(errors, name)
        assert [status for status, _ in rows] == ["failed", "failed"], name
        assert all(reason.split(":")[0] in error for _, error in rows), (name, rows)
    assert await db(bot_texts, bots["garbage"]) == []  # a reply with garbage in it is refused whole
    assert "bot raises failed on delivery" in caplog.text


LATE = threading.Event()


class AnswersLate(Bot):
    """A synchronous bot that answers once released, after its time-out."""

    def on_message(self, message, context):
        LATE.wait(60)
        return f"late: {message.text}"


async def test_a_thread_bot_that_answers_after_its_time_out_stores_nothing(local_bots):
    local_bots("late", AnswersLate, trigger="all", timeout=0.3)
    chat, alice, bots = await make_room("late")
    try:
        async with running_worker() as worker:
            await say(chat, alice, "hello")
            await worker.wait_until(all_settled)
    finally:
        LATE.set()
    await asyncio.to_thread(worker._executor.shutdown, True)  # the bot's thread has returned
    rows = await db(lambda: list(deliveries(bots["late"]).values_list("status", "last_error")))
    assert rows == [("failed", "timed out after 0.3 s")]
    assert await db(bot_texts, bots["late"]) == []
    assert not await db(BotContext.objects.filter(participant=bots["late"]).exists)


class Later(Bot):
    """Answers nothing now; speaks when poked (proactive)."""

    def on_message(self, message, context):
        return None


async def test_a_bot_can_send_on_its_own(local_bots):
    local_bots("later", Later, trigger="all")
    local_bots("listener", Chatty, trigger="all")
    chat, alice, bots = await make_room("later", "listener")
    other_chat, _bob, other = await make_room("later", nickname="bob")
    async with running_worker() as worker:
        await say(chat, alice, "wake up")
        await worker.wait_until(lambda: deliveries(bots["later"], status="done").exists())
        bot = worker.instance_for(bots["later"].pk)
        await bot.asend("good morning", {"kind": "location", "data": {"latitude": 1.5, "longitude": 2.5}})
        await db(bot.send, "from a thread")
        await db(bot.send, "elsewhere", conversation_id=str(other_chat.conversation.pk))
        await worker.wait_until(lambda: all_settled() and deliveries(bots["listener"], status="done").count() == 4)
    assert await db(bot_texts, bots["later"]) == ["good morning", "", "from a thread"]
    assert await db(bot_texts, other["later"]) == ["elsewhere"]
    # Other bots hear proactive messages like any bot message (hop 1).
    assert await db(bot_texts, bots["listener"]) == [
        "listener: wake up",
        "listener: good morning",
        "listener: ",
        "listener: from a thread",
    ]


# ---- a turn's commit -----------------------------------------------------------------------------


def _a_pending_turn(replies):
    """A room with the echo bot, a pending delivery to it, and a turn's replies and Context."""
    from bots.context import Context
    from bots.replies import coerce

    chat, people = Chat.create("Room", "alice", ["echo"])
    chat.save_message(people[0], {"text": "hi", "client_id": "c1"})
    bot = Participant.objects.select_related("conversation").get(pk=people[1].pk)
    item = BotDelivery.objects.get(participant=bot)
    context = Context.start("start", participant_id=str(bot.pk), conversation_id=str(bot.conversation_id))
    context.add_request({"text": "hi"})
    return item, bot, coerce(replies), context


def test_a_turn_on_postgresql_is_a_statement_per_reply_and_one_to_end_it():
    """No savepoint per reply and one statement for the Context and the delivery's state (the
    echo's path); SQLite keeps its steps (its savepoints cost no round trip)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from bots.delivery import save_context
    from bots.worker import BotWorker

    item, bot, replies, context = _a_pending_turn(["one", "two"])
    save_context(context)  # as after a first turn: the Context's row exists
    with CaptureQueriesContext(connection) as queries:
        BotWorker._commit(item, bot, replies, context)
    savepoints = [q for q in queries if q["sql"].upper().startswith("SAVEPOINT")]
    assert len(savepoints) == (0 if connection.vendor == "postgresql" else 2)
    if connection.vendor == "postgresql":  # BEGIN, a statement per reply, one to end the turn, COMMIT
        assert len(queries) == 5, [q["sql"][:60] for q in queries]
    assert BotContext.objects.get(participant=bot).requests == context.to_dict()["requests"]
    assert bot_texts(bot) == ["one", "two"]
    assert BotDelivery.objects.get(pk=item.pk).status == "done"


def test_a_turn_committed_twice_stores_each_reply_once():
    """A delivery run twice (its lease ran out mid-turn): the second commit conflicts on the
    replies' client ids, runs again with savepoints, and finds them stored."""
    from bots.worker import BotWorker

    item, bot, replies, context = _a_pending_turn(["one", "two"])
    BotWorker._commit(item, bot, replies, context)
    context.misc["again"] = True
    BotWorker._commit(item, bot, replies, context)

    assert bot_texts(bot) == ["one", "two"]
    assert BotDelivery.objects.get(pk=item.pk).status == "done"
    assert BotContext.objects.get(participant=bot).misc == {"again": True}  # the second turn committed


@pytest.mark.parametrize("first_turn", [True, False])
def test_a_turn_of_one_reply_is_one_statement_on_postgresql(first_turn):
    """The reply, the Context (created on the first turn) and the delivery done: one statement."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from bots.delivery import save_context
    from bots.worker import BotWorker

    item, bot, replies, context = _a_pending_turn(["one"])
    if not first_turn:
        save_context(context)
        context.misc["turn"] = 2
    with CaptureQueriesContext(connection) as queries:
        BotWorker._commit(item, bot, replies, context)
    if connection.vendor == "postgresql":
        assert len(queries) == 1, [q["sql"][:60] for q in queries]
    stored = BotContext.objects.get(participant=bot)
    assert (stored.current_turn_id, stored.requests) == (context.current_turn_id, context.to_dict()["requests"])
    assert stored.misc == ({} if first_turn else {"turn": 2})
    assert bot_texts(bot) == ["one"]
    assert BotDelivery.objects.get(pk=item.pk).status == "done"


def test_a_turn_without_replies_ends_in_one_statement_on_postgresql():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from bots.worker import BotWorker

    item, bot, replies, context = _a_pending_turn(None)
    assert replies == []
    with CaptureQueriesContext(connection) as queries:
        BotWorker._commit(item, bot, replies, context)
    if connection.vendor == "postgresql":
        assert len(queries) == 1, [q["sql"][:60] for q in queries]
    assert BotContext.objects.get(participant=bot).requests == context.to_dict()["requests"]
    assert BotDelivery.objects.get(pk=item.pk).status == "done"
    assert bot_texts(bot) == []


def test_a_refused_reply_writes_nothing_of_its_turn():
    """A muted bot: the one statement stores nothing and ends nothing; the ordinary turn then
    refuses the reply as before, and its transaction leaves no Context and no state behind."""
    from bots.worker import BotWorker
    from conversations.errors import Muted

    item, bot, replies, context = _a_pending_turn(["one"])
    Participant.objects.filter(pk=bot.pk).update(muted_until=timezone.now() + timedelta(hours=1))
    with pytest.raises(Muted):
        BotWorker._commit(item, bot, replies, context)
    assert bot_texts(bot) == []
    assert not BotContext.objects.filter(participant=bot).exists()
    assert BotDelivery.objects.get(pk=item.pk).status == "pending"


def test_stores_in_one_statement_writes_nothing_unless_it_stores_the_message():
    """Every way the message is not stored by the one statement (a resent client id, a
    premoderated room, another database) raises ``NotStoredInOneStatement``: the caller's
    writes are not done, and no message is stored."""
    from bots import delivery
    from conversations.chat import NotStoredInOneStatement, stores_in_one_statement
    from conversations.models import Conversation

    item, bot, _, context = _a_pending_turn(["one"])
    chat = Chat(bot.conversation)
    chat.save_message(bot, {"text": "earlier", "client_id": "bot-x"})

    def attempt(client_id):
        also = delivery.context_and_finish_with_reply(context, item.id)
        with pytest.raises(NotStoredInOneStatement), stores_in_one_statement(also):
            chat.save_message(bot, {"text": "again", "client_id": client_id})

    attempt("bot-x")  # resent
    Conversation.objects.filter(pk=bot.conversation_id).update(premoderation=Conversation.Premoderation.ALL)
    attempt("bot-y")  # would wait for approval
    assert list(Message.objects.filter(sender=bot).values_list("text", flat=True)) == ["earlier"]
    assert not BotContext.objects.filter(participant=bot).exists()
    assert BotDelivery.objects.get(pk=item.pk).status == "pending"


# ---- a turn ended on the event loop's own connection ----------------------------------------------

ON_LOOP = connection.vendor == "postgresql"


def _end_turn(item, bot, replies, context):
    from asgiref.sync import async_to_sync

    from bots.worker import BotWorker

    async_to_sync(BotWorker(listen=False)._end_turn)(item, bot, replies, context)


def test_a_turn_of_one_reply_ends_on_the_loop_on_postgresql(loop_statements):
    """The reply, the Context and the delivery done by one statement on the loop's connection
    (no thread hop before the reply is out); SQLite ends it in a thread. The same rows."""
    item, bot, replies, context = _a_pending_turn(["one"])
    context.misc["turn"] = 1
    _end_turn(item, bot, replies, context)
    assert loop_statements.count == (1 if ON_LOOP else 0)
    stored = BotContext.objects.get(participant=bot)
    assert (stored.current_turn_id, stored.requests) == (context.current_turn_id, context.to_dict()["requests"])
    assert (stored.responses, stored.misc) == (context.to_dict()["responses"], {"turn": 1})
    reply = Message.objects.get(sender=bot)
    asked = Message.objects.get(conversation_id=bot.conversation_id, text="hi")
    assert (reply.text, reply.client_id, reply.seq) == ("one", f"bot-{item.pk}-0", asked.seq + 1)
    assert BotDelivery.objects.get(pk=item.pk).status == "done"


def test_a_turn_ended_twice_on_the_loop_stores_its_reply_once(loop_statements):
    """A delivery run twice: the loop's statement conflicts on the reply's client id and writes
    nothing; the thread's turn then finds the reply stored and commits the second Context."""
    item, bot, replies, context = _a_pending_turn(["one"])
    _end_turn(item, bot, replies, context)
    context.misc["again"] = True
    _end_turn(item, bot, replies, context)
    assert loop_statements.count == (2 if ON_LOOP else 0)
    assert bot_texts(bot) == ["one"]
    assert BotContext.objects.get(participant=bot).misc == {"again": True}
    assert BotDelivery.objects.get(pk=item.pk).status == "done"


def test_a_refused_reply_on_the_loop_writes_nothing_of_its_turn(loop_statements):
    """A muted bot: the loop's statement stores and ends nothing; the thread's turn refuses."""
    from conversations.errors import Muted

    item, bot, replies, context = _a_pending_turn(["one"])
    Participant.objects.filter(pk=bot.pk).update(muted_until=timezone.now() + timedelta(hours=1))
    with pytest.raises(Muted):
        _end_turn(item, bot, replies, context)
    assert loop_statements.count == (1 if ON_LOOP else 0)
    assert bot_texts(bot) == []
    assert not BotContext.objects.filter(participant=bot).exists()
    assert BotDelivery.objects.get(pk=item.pk).status == "pending"
